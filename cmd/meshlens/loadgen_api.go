package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The load generator's API, websocket, chat part (see loadgen.go).

// loadgenAPI calls a GET endpoint at a fixed rate and prints latency quantiles.
func loadgenAPI(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen api", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/api/v1/graph?view=workload&window=5m", "URL to GET")
	rate := fs.Float64("rate", 5, "requests per second")
	dur := fs.Duration("duration", time.Minute, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var lat []float64
	errs := 0
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()
	for end := time.Now().Add(*dur); time.Now().Before(end) && ctx.Err() == nil; {
		<-tick.C
		start := time.Now()
		resp, err := client.Get(*url)
		if err != nil {
			errs++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			errs++
			continue
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	p50, p99, mx := quantiles(lat)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"requests": len(lat), "errors": errs,
		"p50ms": p50, "p99ms": p99, "maxms": mx})
}

// loadgenWatch holds a live websocket open and counts the messages by type.
func loadgenWatch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen watch", flag.ContinueOnError)
	url := fs.String("url", "ws://127.0.0.1:8080/api/v1/live?view=workload", "live feed URL")
	dur := fs.Duration("duration", time.Minute, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, *url, nil)
	if err != nil {
		return fmt.Errorf("watch %s: %w", *url, err)
	}
	defer conn.Close()
	counts := map[string]int{}
	var bytesIn atomic.Int64
	conn.SetReadDeadline(time.Now().Add(*dur))
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			break
		}
		bytesIn.Add(int64(len(msg)))
		var m struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(msg, &m)
		counts[m.Type]++
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"messages": counts, "bytes": strconv.FormatInt(bytesIn.Load(), 10)})
}

// chatQuestions are what an operator asks during an incident.
var chatQuestions = []string{
	"which service is failing?",
	"why is checkout slow?",
	"what changed in the last 5 minutes?",
	"show me the open incidents",
	"which edges have the highest error rate?",
}

// loadgenChat asks the assistant questions at a fixed rate, one session per
// run (follow-ups included), and prints counts and latency quantiles.
func loadgenChat(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen chat", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/api/v1/chat", "chat endpoint")
	rate := fs.Float64("rate", 0.5, "questions per second")
	dur := fs.Duration("duration", time.Minute, "how long")
	token := fs.String("token-file", "", "file with a bearer token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 {
		return fmt.Errorf("loadgen chat: rate must be > 0")
	}
	bearer, err := readToken(*token)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 60 * time.Second}
	var lat []float64
	errs, engines := 0, map[string]int{}
	lastErr, session, sample := "", "", ""
	pc := newPacer(*rate)
	for i, end := 0, time.Now().Add(*dur); time.Now().Before(end) && ctx.Err() == nil; i++ {
		pc.wait(ctx)
		ms, ans, err := askOnce(ctx, client, *url, bearer, session, chatQuestions[i%len(chatQuestions)])
		if err != nil {
			errs++
			lastErr = err.Error()
			continue
		}
		session = ans.SessionID
		engines[ans.Engine]++
		if i%len(chatQuestions) == 0 {
			sample = ans.Answer[:min(len(ans.Answer), 160)] // the latest "which service is failing?" answer, to see what it says under load
		}
		lat = append(lat, ms)
	}
	p50, p99, mx := quantiles(lat)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"questions": len(lat) + errs, "answered": len(lat), "errors": errs,
		"lastError": lastErr, "engines": engines, "p50ms": p50, "p99ms": p99, "maxms": mx, "lastFailingAnswer": sample})
}

type chatAnswer struct {
	SessionID string `json:"sessionId"`
	Answer    string `json:"answer"`
	Engine    string `json:"engine"`
}

func askOnce(ctx context.Context, client *http.Client, url, bearer, session, q string) (float64, chatAnswer, error) {
	var ans chatAnswer
	body, _ := json.Marshal(map[string]string{"sessionId": session, "message": q})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, ans, fmt.Errorf("ask %q: %w", q, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, ans, fmt.Errorf("ask %q: %w", q, err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	ms := float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		return 0, ans, fmt.Errorf("ask %q: read answer: %w", q, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, ans, fmt.Errorf("ask %q: HTTP %d: %s", q, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return 0, ans, fmt.Errorf("ask %q: decode answer: %w", q, err)
	}
	if ans.Answer == "" {
		return 0, ans, errors.New("ask " + strconv.Quote(q) + ": empty answer")
	}
	return ms, ans, nil
}
