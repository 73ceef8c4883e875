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
	register("ask", "ask the assistant of a running server: ask [--server URL] [--token T] [--session ID] \"question\" (token also from MESHLENS_TOKEN)", runAsk)
	register("eval-assistant", "evaluate the assistant's built-in engine: eval-assistant --cases DIR [-v]", runEvalAssistant)
}

// tokenEnv holds the API token for `ask` when --token is not given; the
// environment keeps it out of the process list and the shell history.
const tokenEnv = "MESHLENS_TOKEN"

type askOptions struct {
	server, session, token, question string
	asJSON                           bool
	timeout                          time.Duration
}

// parseAsk reads ask's flags; getenv supplies MESHLENS_TOKEN when --token is absent.
func parseAsk(args []string, getenv func(string) string) (askOptions, error) {
	var o askOptions
	fs := flag.NewFlagSet("ask", flag.ContinueOnError)
	fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "meshlens server URL")
	fs.StringVar(&o.session, "session", "", "chat session id (for follow-up questions)")
	fs.StringVar(&o.token, "token", "", "API token of an operator or above (default $"+tokenEnv+"); `meshlens auth token` makes one")
	fs.BoolVar(&o.asJSON, "json", false, "print the full JSON answer")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "request timeout")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "token" })
	if !set {
		o.token = getenv(tokenEnv)
	}
	// A token read with $(cat file) may carry a newline; it is never part of a token.
	o.token = strings.TrimSpace(o.token)
	if set && o.token == "" {
		return o, errors.New("ask: --token is empty")
	}
	o.question = strings.Join(fs.Args(), " ")
	if strings.TrimSpace(o.question) == "" {
		return o, errors.New("ask: want a question, e.g. meshlens ask \"which service is failing?\"")
	}
	return o, nil
}

// runAsk posts one question to a running server's /api/v1/chat.
func runAsk(ctx context.Context, args []string) error {
	o, err := parseAsk(args, os.Getenv)
	if err != nil {
		return err
	}
	return ask(ctx, http.DefaultClient, o, os.Stdout, os.Stderr)
}

func ask(ctx context.Context, client *http.Client, o askOptions, stdout, stderr io.Writer) error {
	body, _ := json.Marshal(map[string]string{"sessionId": o.session, "message": o.question})
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(o.server, "/")+"/api/v1/chat", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ask: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", o.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("ask %s: read answer: %w", o.server, err)
	}
	if resp.StatusCode != http.StatusOK {
		return askError(o, resp, data)
	}
	if o.asJSON {
		_, err := stdout.Write(data)
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
		return fmt.Errorf("ask %s: decode answer: %w", o.server, err)
	}
	fmt.Fprintln(stdout, ans.Answer)
	for _, p := range ans.Proposals {
		fmt.Fprintf(stdout, "\nproposal %s (%s): %s\nsha256 %s\n%s", p.ID, p.Status, p.Title, p.SHA256, p.YAML)
	}
	fmt.Fprintf(stderr, "(engine %s, session %s)\n", ans.Engine, ans.SessionID)
	return nil
}

// askError turns a refusal into what to do about it; the server's own
// message ({"error": ...}) is kept, the token never appears.
func askError(o askOptions, resp *http.Response, data []byte) error {
	msg := strings.TrimSpace(string(data))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && o.token == "":
		return fmt.Errorf("ask %s: %s: the server requires authentication (%s): pass --token or set %s to an API token of role operator or above", o.server, resp.Status, msg, tokenEnv)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("ask %s: %s: the server did not accept the token (%s): check --token or %s", o.server, resp.Status, msg, tokenEnv)
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("ask %s: %s: refused (%s): asking needs a token of role operator or above", o.server, resp.Status, msg)
	}
	return fmt.Errorf("ask %s: %s: %s", o.server, resp.Status, msg)
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
