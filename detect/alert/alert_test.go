package alert

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshlens/meshlens/detect"
)

func incident(state string) detect.Incident {
	in := detect.Incident{ID: "inc-1", State: state, Severity: detect.SeverityCritical, Start: time.Date(2024, 1, 1, 10, 42, 0, 0, time.UTC),
		Title: "ratings-v1: p99 1.8s vs 40ms baseline",
		RootCauses: []detect.RootCause{{Node: detect.NodeRef{ID: "w|ratings-v1", Name: "ratings-v1", Namespace: "default"}, Score: 4.2,
			Explanation: "ratings-v1 (inbound): p99 1.8s vs 40ms baseline since 10:42:00; reviews-v2 degraded because they call it"}}}
	if state == detect.StateResolved {
		t := in.Start.Add(10 * time.Minute)
		in.ResolvedAt = &t
	}
	return in
}

func TestRender(t *testing.T) {
	tests := []struct {
		format string
		check  func(t *testing.T, m map[string]any)
	}{
		{"alertmanager", func(t *testing.T, m map[string]any) {
			alerts := m["alerts"].([]any)
			a := alerts[0].(map[string]any)
			labels := a["labels"].(map[string]any)
			if m["version"] != "4" || m["status"] != "resolved" || labels["alertname"] != "MeshlensIncident" || labels["root_cause"] != "ratings-v1" {
				t.Errorf("bad alertmanager payload: %v", m)
			}
			if a["endsAt"] == "0001-01-01T00:00:00Z" {
				t.Error("resolved alert without endsAt")
			}
		}},
		{"slack", func(t *testing.T, m map[string]any) {
			if !strings.Contains(m["text"].(string), "RESOLVED") || !strings.Contains(m["text"].(string), "reviews-v2 degraded") {
				t.Errorf("bad slack text: %v", m["text"])
			}
		}},
		{"json", func(t *testing.T, m map[string]any) {
			if m["status"] != "resolved" || m["incident"].(map[string]any)["id"] != "inc-1" {
				t.Errorf("bad json payload: %v", m)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			b, err := Render(tt.format, "r", "http://meshlens:8080", incident(detect.StateResolved), "resolved")
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
	if _, err := Render("teams", "r", "", incident(detect.StateFiring), "firing"); err == nil {
		t.Error("unknown format rendered")
	}
}

func newNotifier(t *testing.T, urls ...string) (*Notifier, *prometheus.Registry) {
	t.Helper()
	cfg := detect.DefaultConfig().Alerts
	cfg.MaxRetries = 3
	cfg.QueueSize = 2
	cfg.Timeout = 200 * time.Millisecond
	for i, u := range urls {
		cfg.Webhooks = append(cfg.Webhooks, detect.Webhook{Name: string(rune('a' + i)), URL: u, Format: "alertmanager"})
	}
	reg := prometheus.NewRegistry()
	n, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	n.backoff = time.Millisecond
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		_ = n.Shutdown(ctx) // twice is fine
	})
	return n, reg
}

func TestRetryDedupeResolve(t *testing.T) {
	var calls atomic.Int32
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusInternalServerError) // first two attempts fail
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		got <- m["status"].(string)
	}))
	defer srv.Close()
	n, _ := newNotifier(t, srv.URL)
	in := incident(detect.StateFiring)
	n.Handle(detect.Change{Action: "fired", Incident: &in})
	n.Handle(detect.Change{Action: "updated", Incident: &in}) // same content: deduplicated
	if s := wait(t, got); s != "firing" {
		t.Fatalf("first notification %q", s)
	}
	res := incident(detect.StateResolved)
	n.Handle(detect.Change{Action: "resolved", Incident: &res})
	if s := wait(t, got); s != "resolved" {
		t.Fatalf("second notification %q", s)
	}
	if c := calls.Load(); c != 4 {
		t.Errorf("%d HTTP calls, want 4 (2 failed + firing + resolved)", c)
	}
}

func wait(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	return ""
}

// A hanging receiver never blocks Handle: the bounded queue drops instead.
func TestHangingReceiverNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	n, reg := newNotifier(t, srv.URL)
	for i := 0; i < 50; i++ {
		in := incident(detect.StateFiring)
		in.ID = "inc-" + string(rune('A'+i))
		n.Handle(detect.Change{Action: "fired", Incident: &in})
	}
	_ = reg
	var m dto.Metric
	if err := n.dropped.WithLabelValues("a").Write(&m); err != nil {
		t.Fatal(err)
	}
	if d := m.GetCounter().GetValue(); d < 40 {
		t.Errorf("dropped %v notifications, want most of 50 with a queue of 2", d)
	}
}
