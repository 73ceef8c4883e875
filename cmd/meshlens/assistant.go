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
	"strings"
	"time"

	aeval "github.com/meshlens/meshlens/assistant/eval"
)

func init() {
	register("ask", "ask the assistant of a running server: ask [--server URL] [--session ID] \"question\"", runAsk)
	register("eval-assistant", "evaluate the assistant's built-in engine: eval-assistant --cases DIR [-v]", runEvalAssistant)
}

// runAsk posts one question to a running server's /api/v1/chat.
func runAsk(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ask", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "meshlens server URL")
	session := fs.String("session", "", "chat session id (for follow-up questions)")
	asJSON := fs.Bool("json", false, "print the full JSON answer")
	timeout := fs.Duration("timeout", 2*time.Minute, "request timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := strings.Join(fs.Args(), " ")
	if strings.TrimSpace(q) == "" {
		return errors.New("ask: want a question, e.g. meshlens ask \"which service is failing?\"")
	}
	body, _ := json.Marshal(map[string]string{"sessionId": *session, "message": q})
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(*server, "/")+"/api/v1/chat", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ask: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", *server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("ask %s: read answer: %w", *server, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ask %s: %s: %s", *server, resp.Status, strings.TrimSpace(string(data)))
	}
	if *asJSON {
		_, err := os.Stdout.Write(data)
		return err
	}
	var ans struct {
		SessionID string `json:"sessionId"`
		Answer    string `json:"answer"`
		Engine    string `json:"engine"`
		Links     []struct{ Kind, ID, Label string }
		Proposals []struct{ ID, Title, Status, SHA256, YAML string }
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", *server, err)
	}
	fmt.Println(ans.Answer)
	for _, p := range ans.Proposals {
		fmt.Printf("\nproposal %s (%s): %s\nsha256 %s\n%s", p.ID, p.Status, p.Title, p.SHA256, p.YAML)
	}
	fmt.Fprintf(os.Stderr, "(engine %s, session %s)\n", ans.Engine, ans.SessionID)
	return nil
}

func runEvalAssistant(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eval-assistant", flag.ContinueOnError)
	dir := fs.String("cases", "assistant/testdata/eval", "directory of case YAML files")
	verbose := fs.Bool("v", false, "print every answer")
	min := fs.Float64("min", 0.9, "fail when the pass rate is below this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cases, err := aeval.LoadCases(*dir)
	if err != nil {
		return err
	}
	rs, err := aeval.Run(ctx, cases, aeval.Options{})
	if err != nil {
		return err
	}
	passed := aeval.Write(os.Stdout, rs, *verbose)
	if float64(passed) < *min*float64(len(rs)) {
		return fmt.Errorf("eval assistant: pass rate %d/%d below %.0f%%", passed, len(rs), *min*100)
	}
	return nil
}
