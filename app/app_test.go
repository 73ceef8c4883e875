package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/config"
)

// testConfig runs everything on loopback ephemeral ports, receivers off unless asked.
func testConfig(tb testing.TB) config.Config {
	tb.Helper()
	c := config.Default()
	c.HTTP.Addr = "127.0.0.1:0"
	c.DataDir = tb.TempDir()
	c.Traces.OTLPGRPCAddr, c.Traces.OTLPHTTPAddr = "", ""
	c.Traces.JaegerGRPCAddr, c.Traces.JaegerHTTPAddr, c.Traces.ZipkinAddr = "", "", ""
	return c
}

// startApp builds and starts the app of cfg and shuts it down when the test ends.
func startApp(tb testing.TB, cfg config.Config, log *slog.Logger) *App {
	tb.Helper()
	a, err := New(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Start(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
	})
	return a
}

func TestDemoServesBookinfoGraph(t *testing.T) {
	cfg := testConfig(t)
	cfg.Demo.Scenario = "bookinfo"
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("second shutdown: %v", err)
		}
	})
	resp, err := http.Get("http://" + a.Web.Addr() + "/api/v1/graph?view=app&window=5m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var g struct {
		Elements struct {
			Nodes []struct{ Data map[string]any } `json:"nodes"`
			Edges []struct {
				Data struct {
					Source, Target string
					Stats          struct{ RPS, P50, P99 float64 }
				}
			} `json:"edges"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(body, &g); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	labels := map[string]bool{}
	for _, n := range g.Elements.Nodes {
		labels[n.Data["label"].(string)] = true
	}
	for _, want := range []string{"productpage", "details", "reviews", "ratings"} {
		if !labels[want] {
			t.Errorf("bookinfo node %s missing; have %v", want, labels)
		}
	}
	for _, e := range g.Elements.Edges {
		if strings.Contains(e.Data.Target, "|reviews|") && (e.Data.Stats.RPS <= 0 || e.Data.Stats.P50 <= 0 || e.Data.Stats.P99 < e.Data.Stats.P50) {
			t.Errorf("edge to reviews without live figures: %+v", e.Data.Stats)
		}
	}
}

func TestInvalidConfigRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.Graph.Resolution = 0
	cfg.Log.Level = "chatty"
	_, err := New(cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "graph.resolution") || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("err = %v, want every problem listed", err)
	}
}
