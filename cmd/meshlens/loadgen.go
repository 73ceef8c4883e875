package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/gorilla/websocket"
	"github.com/prometheus/prometheus/prompb"
)

func init() {
	register("loadgen", "load generators for the soak test (loadgen remote-write | api | watch)", runLoadgen)
}

func runLoadgen(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("loadgen: want remote-write, api or watch")
	}
	switch args[0] {
	case "remote-write":
		return loadgenRemoteWrite(ctx, args[1:])
	case "api":
		return loadgenAPI(ctx, args[1:])
	case "watch":
		return loadgenWatch(ctx, args[1:])
	}
	return fmt.Errorf("loadgen: unknown %q", args[0])
}

// loadgenRemoteWrite pushes Istio request counters for a synthetic mesh in
// its own namespace and reports how many requests the acknowledged samples
// account for (per series: last acknowledged value - first acknowledged
// value), which is what the graph must show for that namespace.
func loadgenRemoteWrite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen remote-write", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/api/v1/write", "remote-write endpoint")
	rate := fs.Float64("rate", 20, "write requests per second")
	edges := fs.Int("edges", 50, "edges (series) per request")
	ns := fs.String("namespace", "loadgen", "namespace of the synthetic workloads")
	dur := fs.Duration("duration", time.Minute, "how long to send")
	token := fs.String("token-file", "", "file with a bearer token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bearer := ""
	if *token != "" {
		b, err := os.ReadFile(*token)
		if err != nil {
			return err
		}
		bearer = string(bytes.TrimSpace(b))
	}
	first := make([]float64, *edges)
	last := make([]float64, *edges)
	val := make([]float64, *edges)
	acked := make([]bool, *edges)
	var sent, ok, retried, failed int
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()
	end := time.Now().Add(*dur)
	for time.Now().Before(end) && ctx.Err() == nil {
		<-tick.C
		ts := time.Now().UnixMilli()
		var wr prompb.WriteRequest
		for i := range *edges {
			val[i] += float64(1 + i%5)
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: []prompb.Label{
				{Name: "__name__", Value: "istio_requests_total"},
				{Name: "destination_workload", Value: fmt.Sprintf("svc-%d", i)}, {Name: "destination_workload_namespace", Value: *ns},
				{Name: "destination_app", Value: fmt.Sprintf("svc-%d", i)}, {Name: "destination_service", Value: fmt.Sprintf("svc-%d.%s.svc.cluster.local", i, *ns)},
				{Name: "instance", Value: "loadgen"}, {Name: "job", Value: "loadgen-" + *ns},
				{Name: "reporter", Value: "destination"}, {Name: "response_code", Value: "200"},
				{Name: "source_app", Value: "client"}, {Name: "source_workload", Value: "client"}, {Name: "source_workload_namespace", Value: *ns},
			}, Samples: []prompb.Sample{{Value: val[i], Timestamp: ts}}})
		}
		raw, err := wr.Marshal()
		if err != nil {
			return err
		}
		body := snappy.Encode(nil, raw)
		sent++
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			req.Header.Set("Content-Encoding", "snappy")
			req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			if code/100 == 2 {
				ok++
				for i := range *edges {
					if !acked[i] {
						first[i], acked[i] = val[i], true
					}
					last[i] = val[i]
				}
				break
			}
			if (code == 429 || code == 503 || err != nil) && attempt < 5 && ctx.Err() == nil {
				retried++
				time.Sleep(200 * time.Millisecond)
				continue
			}
			failed++ // dropped by us: not acknowledged, not counted
			break
		}
	}
	var want float64
	for i := range *edges {
		want += last[i] - first[i]
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"namespace": *ns, "requestsSent": sent, "acked": ok,
		"retried": retried, "failed": failed, "expectedGraphRequests": want})
}

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
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"requests": len(lat), "errors": errs,
		"p50ms": q(0.5), "p99ms": q(0.99), "maxms": q(1)})
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
