package metrics

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
)

// tee feeds the graph and keeps a copy of what it was given.
type tee struct {
	g   *graph.Graph
	rec *recorder
}

func (t tee) Ingest(b []graph.Observation) { t.rec.Ingest(b); t.g.Ingest(b) }

// TestPrometheusRemoteWriteIntegration runs a real Prometheus that scrapes the
// simulator's Istio endpoint and remote-writes to meshlens; the graph built
// must have the simulator's edges and rates (within 5%).
func TestPrometheusRemoteWriteIntegration(t *testing.T) {
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		t.Skip("set MESHLENS_INTEGRATION=1 (make test) to run against a real Prometheus")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not installed (scripts/install-prometheus.sh): %v", err)
	}

	sc, err := fixtures.Load("bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	sim := fixtures.NewSimulator(sc, 1)
	sim.SetExactCounts(true)
	exp := fixtures.NewIstioExporter(sim, nil)
	simSrv := httptest.NewServer(exp)
	t.Cleanup(simSrv.Close)

	g := graph.New(graph.Config{Resolution: time.Second, Window: 10 * time.Minute})
	rec := &recorder{}
	c := newTestCollector(t, DefaultConfig(), tee{g: g, rec: rec})
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", c.RemoteWriteHandler())
	rwSrv := httptest.NewServer(mux)
	t.Cleanup(rwSrv.Close)

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: istio-sim
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      max_shards: 4
      min_backoff: 50ms
`, strings.TrimPrefix(simSrv.URL, "http://"), rwSrv.URL)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, promBin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0",
		"--storage.tsdb.retention.time=1h")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	// Wait until deltas cover 20 s of scrapes (bounded: 120 s).
	const span = 20 * time.Second
	deadline := time.Now().Add(120 * time.Second)
	for {
		if first, last := timeRange(rec); !first.IsZero() && last.Sub(first) >= span {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote-write did not bring %s of data in time; status: %+v", span, c.Status())
		}
		time.Sleep(250 * time.Millisecond)
	}
	cancel()
	_ = cmd.Wait()

	obs := rec.take()
	first, last := obsRange(obs)
	secs := last.Sub(first).Seconds()
	want := exp.ExpectedRates(first.Add(last.Sub(first) / 2))
	if len(want) == 0 {
		t.Fatal("simulator expects no traffic")
	}

	type key struct{ src, dst string }
	measured := map[key]*[2]float64{} // [source-reported, destination-reported]
	for _, o := range obs {
		if !o.Time.After(first) {
			continue // the first delta: its interval starts before the measured span
		}
		dst := o.Dst.Workload
		if o.Dst.Kind == graph.KindService {
			dst = o.Dst.Service
		}
		k := key{o.Src.Namespace + "/" + o.Src.Workload, dst}
		m := measured[k]
		if m == nil {
			m = &[2]float64{}
			measured[k] = m
		}
		n := float64(o.Requests)
		if o.Protocol == graph.ProtoTCP {
			n = float64(o.ConnOpened)
		}
		switch o.Reporter {
		case graph.ReporterSource:
			m[0] += n
		case graph.ReporterDestination:
			m[1] += n
		default:
			t.Errorf("unexpected reporter %s in %s", o.Reporter, obsLine(o))
		}
	}
	seen := map[key]bool{}
	for _, er := range want {
		dst := er.DestinationWorkload
		if dst == "unknown" {
			dst = er.DestinationService
		}
		k := key{er.SourceWorkloadNamespace + "/" + er.SourceWorkload, dst}
		seen[k] = true
		m := measured[k]
		if m == nil {
			t.Errorf("edge %s -> %s (%.1f/s) missing", k.src, k.dst, er.Rate)
			continue
		}
		for i, exp := range [2]float64{er.Rate, er.DestinationRate} {
			got := m[i] / secs
			// 5%, plus one request of rounding over the span.
			if tol := 0.05*exp + 1/secs; got < exp-tol || got > exp+tol {
				t.Errorf("edge %s -> %s %s rate %.2f/s, want %.2f/s ±5%%", k.src, k.dst, [2]string{"source", "destination"}[i], got, exp)
			}
		}
		t.Logf("edge %s -> %s: source %.2f/s destination %.2f/s (want %.2f, %.2f)", k.src, k.dst, m[0]/secs, m[1]/secs, er.Rate, er.DestinationRate)
	}
	for k := range measured {
		if !seen[k] {
			t.Errorf("edge %s -> %s not in the simulator's topology", k.src, k.dst)
		}
	}

	// The graph shows the same topology: one edge per simulated edge.
	g.Advance(time.Now().Add(5 * time.Second))
	snap, err := g.Snapshot(graph.Query{View: graph.ViewWorkload, Window: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Edges) != len(want) {
		for _, e := range snap.Edges {
			t.Logf("graph edge %s -> %s %s", e.Source.Name(), e.Target.Name(), e.Protocol)
		}
		t.Errorf("graph has %d edges, simulator %d", len(snap.Edges), len(want))
	}
	for _, e := range snap.Edges {
		if e.SourceReported == nil && e.Stats.Reporters&(1<<graph.ReporterDestination) != 0 {
			// Every meshed-to-meshed edge is reported by both proxies and must keep them apart.
			t.Errorf("edge %s -> %s lost its source-reported view", e.Source.Name(), e.Target.Name())
		}
	}
	st := c.Status()
	if st.Series.Seen == 0 || st.Observations == 0 {
		t.Errorf("status counts nothing: %+v", st)
	}
}

func obsRange(obs []graph.Observation) (first, last time.Time) {
	for _, o := range obs {
		if first.IsZero() || o.Time.Before(first) {
			first = o.Time
		}
		if o.Time.After(last) {
			last = o.Time
		}
	}
	return first, last
}

func timeRange(r *recorder) (time.Time, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return obsRange(r.obs)
}
