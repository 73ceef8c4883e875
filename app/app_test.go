package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/config"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/nezha"
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

// Received spans reach the trace-structure detector with their operation
// names, and the suspects ranking is served.
func TestSpansReachStructureAndSuspects(t *testing.T) {
	cfg := testConfig(t)
	cfg.Traces.ZipkinAddr = "127.0.0.1:0"
	a := startApp(t, cfg, slog.New(slog.DiscardHandler))
	now := time.Now().UnixMicro()
	body := fmt.Sprintf(`[
	 {"traceId":"5af7183fb1d4cf5f","id":"6b221d5bc9e6496c","name":"get /api","kind":"SERVER","timestamp":%d,"duration":20000,"localEndpoint":{"serviceName":"frontend"}},
	 {"traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","id":"7c331d5bc9e6496d","name":"get /cart","kind":"CLIENT","timestamp":%d,"duration":15000,"localEndpoint":{"serviceName":"frontend"}}]`, now, now+1000)
	resp, err := http.Post("http://"+a.Traces.Addr(traces.RecvZipkin).String()+"/api/v2/spans", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("zipkin post: %d", resp.StatusCode)
	}
	at := time.UnixMicro(now)
	ops := map[string]bool{}
	for _, o := range a.spans.Take(at.Add(-time.Minute), at.Add(time.Minute)) {
		ops[o.Node.Name()+" "+o.Operation] = true
	}
	if !ops["frontend get /api"] || !ops["frontend get /cart"] {
		t.Errorf("structure windows hold %v, want frontend's two operations", ops)
	}
	mresp, err := http.Get("http://" + a.Web.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, m := range []string{"meshlens_structure_spans_dropped_total 0", "meshlens_structure_spans_sampled_out_total 0"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	resp, err = http.Get("http://" + a.Web.Addr() + "/api/v1/suspects?window=15m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Window   string            `json:"window"`
		Suspects []json.RawMessage `json:"suspects"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got.Window != "15m0s" || got.Suspects == nil {
		t.Errorf("suspects: %d %+v %v, want 200 with a (possibly empty) list for 15m", resp.StatusCode, got, err)
	}
}

// Pods' resource metrics pushed by remote-write reach the detector: a pod
// pinned at its CPU limit shows as a resource anomaly on its service.
func TestPodResourcesReachDetector(t *testing.T) {
	cfg := testConfig(t)
	cfg.Detect.Resources.Every = 8760 * time.Hour // the test flushes; the bucket clock must not (its next period starts in up to a year)
	a := startApp(t, cfg, slog.New(slog.DiscardHandler))
	t0 := time.Now().Truncate(time.Minute)
	for i := 0; i < 2; i++ {
		ls := []prompb.Label{{Name: "__name__", Value: "k8s_pod_cpu_limit_utilization_ratio"},
			{Name: "k8s_namespace_name", Value: "shop"}, {Name: "k8s_pod_name", Value: "cart-7f9c8d6b5-qwxzt"}}
		raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ls,
			Samples: []prompb.Sample{{Value: 0.99, Timestamp: t0.Add(time.Duration(i) * time.Minute).UnixMilli()}}}}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.Web.Addr()+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("remote-write: %d", resp.StatusCode)
		}
		a.resources.Flush(t0.Add(time.Duration(i)*time.Minute), nil)
	}
	resp, err := http.Get("http://" + a.Web.Addr() + "/api/v1/anomalies")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Anomalies []struct {
			Type, Metric, Summary string
			Subject               struct {
				Node *struct{ Name string } `json:"node"`
			} `json:"subject"`
		} `json:"anomalies"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, an := range got.Anomalies {
		found = found || an.Type == "resource" && an.Metric == "cpu" && an.Subject.Node != nil && an.Subject.Node.Name == "cart"
	}
	if !found {
		t.Errorf("anomalies %+v, want a CPU resource anomaly on cart", got.Anomalies)
	}
	mresp, err := http.Get("http://" + a.Web.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	if m, _ := io.ReadAll(mresp.Body); !strings.Contains(string(m), "meshlens_resources_readings_dropped_total 0") {
		t.Error("/metrics lacks meshlens_resources_readings_dropped_total")
	}
}

// The Nezha replay into a running app: the real OTLP receiver takes the
// spans (the graph draws the Train Ticket calls, the structure detector
// gets them) and the pod metric rows (the collector turns them into
// resource readings), as `meshlens replay nezha` does against serve.
func TestNezhaReplayIntoServe(t *testing.T) {
	cfg := testConfig(t)
	cfg.Traces.OTLPHTTPAddr = "127.0.0.1:0"
	a := startApp(t, cfg, slog.New(slog.DiscardHandler))
	days, err := nezha.FindDays(filepath.Join("..", "nezha", "testdata", "dataset"))
	if err != nil || len(days) == 0 {
		t.Fatalf("testdata days: %v %v", days, err)
	}
	l, err := nezha.Load(days[0])
	if err != nil {
		t.Fatal(err)
	}
	st, err := nezha.Replay(t.Context(), l, nezha.ReplayConfig{Endpoint: "http://" + a.Traces.Addr(traces.RecvOTLPHTTP).String(),
		Speed: 1e4, SamplingProbability: 0.25, Metrics: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Spans != len(l.Spans) || st.MetricRows == 0 {
		t.Fatalf("replay sent %d of %d spans and %d metric rows", st.Spans, len(l.Spans), st.MetricRows)
	}
	// Rows of one pod in one request make one reading (the latest).
	if got := a.Metrics.Status().ResourceReadings; got == 0 {
		t.Errorf("collector made no resource readings of %d metric rows sent", st.MetricRows)
	}
	// The spans were shifted to now: the structure detector holds them
	// until their window has settled.
	held := 0
	for _, o := range a.spans.Take(time.Now().Add(-10*time.Minute), time.Now().Add(time.Minute)) {
		held += o.Spans
	}
	if held == 0 {
		t.Error("the structure detector's windows hold none of the replayed spans")
	}
	a.Graph.Advance(time.Now().Add(time.Minute))
	snap, err := a.Graph.Snapshot(graph.Query{View: graph.ViewWorkload, Window: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	edges := map[string]bool{}
	for _, e := range snap.Edges {
		edges[e.Source.Name()+" -> "+e.Target.Name()] = true
	}
	for _, want := range []string{"ts-gateway-service -> ts-auth-service", "ts-auth-service -> ts-verification-code-service"} {
		if !edges[want] {
			t.Errorf("graph edges %v lack %s", edges, want)
		}
	}
}
