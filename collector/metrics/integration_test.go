package metrics

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

	stop := startPrometheus(t, rwSrv.URL, strings.TrimPrefix(simSrv.URL, "http://"))

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
	stop()

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

// startPrometheus runs a real Prometheus that scrapes targets every second
// and remote-writes to rwURL; stop ends it (also done when the test ends).
func startPrometheus(t *testing.T, rwURL string, targets ...string) (stop func()) {
	t.Helper()
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not installed (scripts/install-prometheus.sh): %v", err)
	}
	dir := t.TempDir()
	var jobs strings.Builder
	for i, tg := range targets {
		fmt.Fprintf(&jobs, "  - job_name: target-%d\n    static_configs:\n      - targets: [%q]\n", i, tg)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
%sremote_write:
  - url: %s/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      max_shards: 4
      min_backoff: 50ms
`, jobs.String(), rwURL)
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
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	return stop
}

// TestPrometheusRemoteWriteResources runs a real Prometheus that scrapes a
// cAdvisor-like and a kube-state-metrics-like endpoint and remote-writes to
// meshlens: the pod's CPU readings must give the rate the endpoint's
// counters grow at, as a share of the containers' limits.
func TestPrometheusRemoteWriteResources(t *testing.T) {
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		t.Skip("set MESHLENS_INTEGRATION=1 (make test) to run against a real Prometheus")
	}
	const pod = `namespace="bookinfo",pod="reviews-v2-5b8d9c7f6d-x7k2p"`
	began := time.Now()
	cadvisor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secs := time.Since(began).Seconds()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE container_cpu_usage_seconds_total counter\n")
		// 0.2 + 0.05 cores in the containers; the pod cgroup sums them.
		fmt.Fprintf(w, "container_cpu_usage_seconds_total{container=\"reviews\",%s} %f\n", pod, 100+0.2*secs)
		fmt.Fprintf(w, "container_cpu_usage_seconds_total{container=\"istio-proxy\",%s} %f\n", pod, 50+0.05*secs)
		fmt.Fprintf(w, "container_cpu_usage_seconds_total{container=\"\",%s} %f\n", pod, 150+0.25*secs)
	}))
	t.Cleanup(cadvisor.Close)
	ksm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE kube_pod_container_resource_limits gauge\n")
		fmt.Fprintf(w, "kube_pod_container_resource_limits{container=\"reviews\",%s,resource=\"cpu\",unit=\"core\"} 0.5\n", pod)
		fmt.Fprintf(w, "kube_pod_container_resource_limits{container=\"istio-proxy\",%s,resource=\"cpu\",unit=\"core\"} 2\n", pod)
	}))
	t.Cleanup(ksm.Close)

	rr := &resRecorder{}
	c, err := New(DefaultConfig(), &recorder{}, nil, nil, WithResourceSink(rr))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", c.RemoteWriteHandler())
	rwSrv := httptest.NewServer(mux)
	t.Cleanup(rwSrv.Close)
	stop := startPrometheus(t, rwSrv.URL, strings.TrimPrefix(cadvisor.URL, "http://"), strings.TrimPrefix(ksm.URL, "http://"))

	var pcts, used []float64
	deadline := time.Now().Add(120 * time.Second)
	for len(pcts) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("%d CPU readings with a limit in time, want 8; status %+v", len(pcts), c.Status())
		}
		time.Sleep(250 * time.Millisecond)
		rr.mu.Lock()
		for _, x := range rr.rs {
			if x.Resource == ResourceCPU && !math.IsNaN(x.LimitPct) {
				pcts, used = append(pcts, x.LimitPct), append(used, x.Used)
			}
		}
		rr.rs = nil
		rr.mu.Unlock()
	}
	stop()
	slices.Sort(pcts)
	slices.Sort(used)
	// Scrape timestamps and the endpoint's clock differ by milliseconds.
	if p, u := pcts[len(pcts)/2], used[len(used)/2]; math.Abs(p-10) > 1 || math.Abs(u-0.25) > 0.025 {
		t.Errorf("median reading %.2f%% of the limit, %.3f cores; want 10%%, 0.25 cores (all: %v)", p, u, pcts)
	}
}
