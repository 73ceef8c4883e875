package assistant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/meshlens/meshlens/assistant"
)

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An endpoint that refuses the key and quotes it back in its error (some
// OpenAI-compatible proxies do) must not get the key into the fallback
// note, the answer, the streamed events or the log.
func TestFallbackDoesNotLeakEchoedKey(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"message": "Incorrect API key provided: " + key, "type": "invalid_request_error", "code": "invalid_api_key"}})
	}))
	defer echo.Close()
	for _, stream := range []bool{false, true} {
		w := world(t, "bookinfo-ratings-latency")
		cfg := assistant.DefaultConfig()
		cfg.ExportDir = t.TempDir()
		llmConfig(echo.URL+"/v1", stream)(&cfg)
		logs := &lockedLog{}
		a, err := assistant.New(assistant.Options{Config: cfg, Graph: w.Graph, Detector: w.Detector,
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		var events strings.Builder
		ans, err := a.Ask(context.Background(), assistant.Question{Message: "which service is failing?"}, func(ev assistant.Event) {
			b, _ := json.Marshal(ev)
			events.Write(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		if ans.Engine != assistant.EngineBuiltin || !strings.Contains(ans.Fallback, "401") {
			t.Fatalf("stream %v: engine %s, fallback %q", stream, ans.Engine, ans.Fallback)
		}
		all, _ := json.Marshal(ans)
		for what, s := range map[string]string{"answer": string(all), "events": events.String(), "log": logs.String()} {
			if strings.Contains(s, testKey) {
				t.Errorf("stream %v: the API key is in the %s: %.300s", stream, what, s)
			}
		}
	}
}
