package app

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/config"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// closedPort is a loopback address nothing listens on.
func closedPort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentLLM accepts connections and never answers: an LLM that hangs.
func silentLLM(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// rejectingLLM answers every call 401 and echoes the key it was sent, as
// some OpenAI-compatible proxies do in their error message.
func rejectingLLM(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"message": "Incorrect API key provided: " + key + ". You can find your API key at your provider.",
			"type":    "invalid_request_error", "code": "invalid_api_key"}})
	})}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestChatWhenLLMIsDown runs the whole app with the OpenAI engine pointed
// at an LLM that is down in three ways. The chat must still answer from
// the built-in engine with a note saying why, well within the LLM timeout
// when the endpoint refuses connections, and the API key must not appear in
// the answer, the logs or /metrics.
func TestChatWhenLLMIsDown(t *testing.T) {
	var kb [16]byte
	_, _ = rand.Read(kb[:])
	key := "sk-meshlens-test-" + hex.EncodeToString(kb[:])
	tests := []struct {
		name    string
		addr    func(testing.TB) string
		timeout time.Duration // the LLM call's timeout
		// within bounds the answer's time: it proves the app did not wait
		// for a timeout it should not have needed (far above normal times).
		within time.Duration
		reason string // in the fallback note
	}{
		{"connection refused", closedPort, time.Minute, 20 * time.Second, "connection refused"},
		{"accepts and hangs", silentLLM, 2 * time.Second, 40 * time.Second, "deadline exceeded"},
		{"rejects the key", rejectingLLM, time.Minute, 20 * time.Second, "401"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Demo.Scenario = "bookinfo-ratings-latency"
			cfg.Assistant.Engine = assistant.EngineOpenAI
			cfg.Assistant.ExportDir = t.TempDir()
			cfg.Assistant.LLM.BaseURL = "http://" + tc.addr(t) + "/v1"
			cfg.Assistant.LLM.Timeout = tc.timeout
			// The key comes the one way it can: the environment.
			config.ApplyEnv(&cfg, func(k string) string {
				if k == assistant.APIKeyEnv {
					return key
				}
				return ""
			})
			if cfg.Assistant.LLM.APIKey != key {
				t.Fatalf("API key not applied from %s", assistant.APIKeyEnv)
			}
			logs := &syncBuf{}
			a := startApp(t, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			base := "http://" + a.Web.Addr()
			client := &http.Client{Timeout: 2 * time.Minute}

			body := `{"message":"Which service is failing right now?"}`
			req, err := http.NewRequest(http.MethodPost, base+"/api/v1/chat", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Meshlens-Csrf", "1")
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("chat: %d %s", resp.StatusCode, raw)
			}
			var ans assistant.Answer
			if err := json.Unmarshal(raw, &ans); err != nil {
				t.Fatalf("%v: %s", err, raw)
			}
			t.Logf("answered in %s by %s; fallback: %.200s", took.Round(time.Millisecond), ans.Engine, ans.Fallback)
			if ans.Engine != assistant.EngineBuiltin || ans.Fallback == "" {
				t.Fatalf("engine %q, fallback %q: want the built-in engine with a reason", ans.Engine, ans.Fallback)
			}
			if !strings.Contains(ans.Answer, "The language model could not answer") || !strings.Contains(ans.Answer, "built-in engine answered") {
				t.Errorf("answer has no fallback note: %.300s", ans.Answer)
			}
			if !strings.Contains(ans.Fallback, tc.reason) {
				t.Errorf("fallback %q does not say %q", ans.Fallback, tc.reason)
			}
			// The built-in engine still did its job on the demo data.
			if len(ans.ToolCalls) == 0 || !strings.Contains(ans.Answer, "over the last") {
				t.Errorf("built-in answer without tool calls (%d) or figures: %.400s", len(ans.ToolCalls), ans.Answer)
			}
			if took > tc.within {
				t.Errorf("answer took %s; with the LLM %s it should come within %s", took, tc.name, tc.within)
			}

			resp, err = client.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(metrics), "meshlens_assistant_llm_fallbacks_total 1") {
				t.Errorf("fallback not counted in /metrics")
			}
			for what, s := range map[string]string{"response": string(raw), "logs": logs.String(), "/metrics": string(metrics)} {
				if strings.Contains(s, key) || strings.Contains(s, hex.EncodeToString(kb[:])) {
					t.Errorf("the API key appears in the %s", what)
				}
			}
		})
	}
}
