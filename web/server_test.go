package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/graph"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func node(ns, app, version string) graph.Node {
	return graph.Node{Cluster: "Kubernetes", Namespace: ns, Workload: app + "-" + version, App: app, Version: version,
		Service: app + "." + ns + ".svc.cluster.local", Kind: graph.KindWorkload}
}

func seeded(tb testing.TB) (*graph.Graph, *Server) {
	tb.Helper()
	g := graph.New(graph.Config{})
	g.Advance(t0)
	pp, rv, rt := node("bookinfo", "productpage", "v1"), node("bookinfo", "reviews", "v2"), node("bookinfo", "ratings", "v1")
	for i := 0; i < 60; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		o := graph.Observation{Time: at, Src: pp, Dst: rv, Requests: 10, LatencyMs: 12, Signal: graph.SignalMetrics,
			Reporter: graph.ReporterDestination, Security: graph.SecurityMTLS}
		o2 := graph.Observation{Time: at, Src: rv, Dst: rt, Requests: 10, LatencyMs: 3, Signal: graph.SignalMetrics,
			Reporter: graph.ReporterDestination, Security: graph.SecurityPlaintext, ResponseCode: 503}
		o2.Errors[graph.Err5xx] = 2
		g.Ingest([]graph.Observation{o, o2})
	}
	g.Advance(t0.Add(time.Minute))
	reg := prometheus.NewRegistry()
	return g, New(Options{Addr: "127.0.0.1:0", Graph: g, Registerer: reg, Gatherer: reg})
}

func get(tb testing.TB, h http.Handler, target string) (int, map[string]any) {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		tb.Fatalf("GET %s: body %q is not JSON: %v", target, rec.Body.String(), err)
	}
	return rec.Code, body
}

func TestGraphEndpoint(t *testing.T) {
	_, s := seeded(t)
	code, body := get(t, s.Handler(), "/api/v1/graph?view=app&window=1m")
	if code != 200 {
		t.Fatalf("code %d: %v", code, body)
	}
	var g GraphJSON
	raw, _ := json.Marshal(body)
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Elements.Nodes) != 3 || len(g.Elements.Edges) != 2 {
		t.Fatalf("%d nodes, %d edges", len(g.Elements.Nodes), len(g.Elements.Edges))
	}
	for _, e := range g.Elements.Edges {
		d := e.Data
		switch {
		case strings.Contains(d.Target, "|reviews|"):
			if d.Stats.RPS != 10 || d.Health != "healthy" || d.Stats.MTLSShare != 1 || d.Stats.P50 < 11.8 || d.Stats.P50 > 12.2 {
				t.Errorf("productpage->reviews %+v", d)
			}
		case strings.Contains(d.Target, "|ratings|"):
			if d.Stats.ErrorRatio != 0.2 || d.Health != "failing" || d.Stats.Codes["503"] != 120 || d.Stats.MTLSShare != 0 {
				t.Errorf("reviews->ratings %+v", d)
			}
		default:
			t.Errorf("unexpected edge %s", d.ID)
		}
	}
}

func TestBadRequests(t *testing.T) {
	_, s := seeded(t)
	for _, target := range []string{
		"/api/v1/graph?view=pods",
		"/api/v1/graph?window=soon",
		"/api/v1/graph?window=-5m",
		"/api/v1/graph?window=48h",
		"/api/v1/graph?namespace=nope",
		"/api/v1/graph?at=yesterday",
		"/api/v1/history?view=app",
		"/api/v1/history?source=garbage",
	} {
		code, body := get(t, s.Handler(), target)
		if code != http.StatusBadRequest || body["error"] == "" {
			t.Errorf("GET %s: %d %v, want 400 with an error", target, code, body)
		}
	}
	if code, _ := get(t, s.Handler(), "/api/v1/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown API route: %d", code)
	}
}

func TestHistoryEndpoint(t *testing.T) {
	_, s := seeded(t)
	src := graph.ViewApp.Project(node("bookinfo", "reviews", "v2")).ID()
	code, body := get(t, s.Handler(), "/api/v1/history?view=app&window=1m&source="+url.QueryEscape(src))
	if code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	buckets := body["buckets"].([]any)
	if len(buckets) != 6 {
		t.Fatalf("%d buckets", len(buckets))
	}
	for _, b := range buckets {
		if m := b.(map[string]any); m["rps"].(float64) != 10 || m["errorRatio"].(float64) != 0.2 {
			t.Errorf("bucket %v", m)
		}
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	_, s := seeded(t)
	if code, _ := get(t, s.Handler(), "/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _ := get(t, s.Handler(), "/readyz"); code != 200 {
		t.Errorf("readyz %d", code)
	}
	get(t, s.Handler(), "/api/v1/graph")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "meshlens_graph_snapshot_seconds_count 1") {
		t.Errorf("metrics lack the snapshot histogram:\n%s", rec.Body.String())
	}
}

func TestLiveFeedSnapshotThenDelta(t *testing.T) {
	g, s := seeded(t)
	g.OnBucketClose(s.BucketClosed)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/api/v1/live?view=app&window=1m", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var first liveMessage
	if err := conn.ReadJSON(&first); err != nil || first.Type != "snapshot" || len(first.Graph.Elements.Edges) != 2 {
		t.Fatalf("first message %+v, %v", first, err)
	}
	// A new caller appears; the next bucket close sends it as an added node and edge.
	newcomer := node("bookinfo", "details", "v1")
	g.Ingest([]graph.Observation{{Time: t0.Add(65 * time.Second), Src: newcomer, Dst: node("bookinfo", "ratings", "v1"), Requests: 50}})
	g.Advance(t0.Add(80 * time.Second))
	for {
		var raw map[string]json.RawMessage
		if err := conn.ReadJSON(&raw); err != nil {
			t.Fatal(err)
		}
		var typ string
		_ = json.Unmarshal(raw["type"], &typ)
		if typ != "delta" {
			continue
		}
		var added elementsDelta
		_ = json.Unmarshal(raw["added"], &added)
		if len(added.Nodes) == 1 && len(added.Edges) == 1 && strings.Contains(string(added.Nodes[0]), `"label":"details"`) {
			return
		}
	}
}

func TestShutdownTwice(t *testing.T) {
	_, s := seeded(t)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
