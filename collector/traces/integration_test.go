package traces

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// tool returns the path of a real peer built by script, installing it when
// missing. Integration tests run only under MESHLENS_INTEGRATION=1, where a
// missing peer is a failure.
func tool(tb testing.TB, name, script string) string {
	tb.Helper()
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		tb.Skip("integration test: set MESHLENS_INTEGRATION=1")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	dir := os.Getenv("MESHLENS_TOOLS_DIR")
	if dir == "" {
		dir = filepath.Join(root, "bin", "tools")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", script))
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("install %s: %v\n%s", name, err, out)
		}
	}
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("%s not installed by %s: %v", name, script, err)
	}
	return path
}

func newIntegrationGraph() *graph.Graph {
	g := graph.New(graph.Config{Resolution: 10 * time.Second, Window: time.Hour})
	g.Advance(time.Now())
	return g
}

// snapshotNow closes every bucket held and returns the last five minutes.
func snapshotNow(tb testing.TB, g *graph.Graph) *graph.Snapshot {
	tb.Helper()
	g.Advance(time.Now().Add(time.Minute))
	s, err := g.Snapshot(graph.Query{View: graph.ViewWorkload, Window: 5 * time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestIntegrationTelemetrygen(t *testing.T) {
	tg := tool(t, "telemetrygen", "install-telemetrygen.sh")
	const workers, tracesPerWorker = 2, 300
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			g := newIntegrationGraph()
			r, reg := startReceiver(t, testConfig(), g)
			addr, recv := r.Addr(RecvOTLPGRPC).String(), RecvOTLPGRPC
			args := []string{"traces", "--otlp-insecure", "--rate", "0", "--workers", fmt.Sprint(workers), "--traces", fmt.Sprint(tracesPerWorker)}
			if transport == "http" {
				addr, recv = r.Addr(RecvOTLPHTTP).String(), RecvOTLPHTTP
				args = append(args, "--otlp-http")
			}
			args = append(args, "--otlp-endpoint", addr)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if out, err := exec.CommandContext(ctx, tg, args...).CombinedOutput(); err != nil {
				t.Fatalf("telemetrygen: %v\n%s", err, out)
			}
			r.Pairer().Flush()
			st := r.Pairer().Stats()
			received := uint64(metricValue(t, reg, "meshlens_spans_received_total", recv))
			want := uint64(workers * tracesPerWorker * 2) // a client span and one child server span per trace
			if received != want {
				t.Errorf("received %d spans, telemetrygen sent %d", received, want)
			}
			if st.Dropped != 0 || st.NoEdge != 0 || received != st.Paired+st.Virtual+st.Dropped {
				t.Errorf("spans unaccounted for: received %d, %+v", received, st)
			}
			snap := snapshotNow(t, g)
			var calls uint64
			for _, e := range snap.Edges {
				if e.Source.Workload == "telemetrygen" && e.Target.Workload == "telemetrygen" {
					calls += e.Stats.Requests
					if e.Stats.Signals != graph.SignalTraces || e.Stats.Latency.Count() == 0 {
						t.Errorf("edge stats %+v", e.Stats)
					}
				}
			}
			if calls != want/2 {
				t.Errorf("graph has %d telemetrygen calls, want %d (edges %+v)", calls, want/2, snap.Edges)
			}
		})
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestIntegrationHotROD(t *testing.T) {
	hotrod := tool(t, "hotrod", "install-hotrod.sh")
	g := newIntegrationGraph()
	cfg := testConfig()
	cfg.Pairing.Expiry = 3 * time.Second
	cfg.ExpireInterval = 200 * time.Millisecond
	r, _ := startReceiver(t, cfg, g)

	ports := map[string]int{}
	for _, s := range []string{"frontend", "customer", "driver", "route"} {
		ports[s] = freePort(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, hotrod, "all",
		"--frontend-service-port", fmt.Sprint(ports["frontend"]), "--customer-service-port", fmt.Sprint(ports["customer"]),
		"--driver-service-port", fmt.Sprint(ports["driver"]), "--route-service-port", fmt.Sprint(ports["route"]),
		"--frontend-service-hostname", "127.0.0.1", "--customer-service-hostname", "127.0.0.1",
		"--driver-service-hostname", "127.0.0.1", "--route-service-hostname", "127.0.0.1",
		"--fix-db-query-delay", "20ms")
	cmd.Env = append(os.Environ(),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+r.Addr(RecvOTLPHTTP).String(),
		"OTEL_BSP_SCHEDULE_DELAY=200")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})

	front := fmt.Sprintf("http://127.0.0.1:%d", ports["frontend"])
	client := &http.Client{Timeout: 20 * time.Second}
	ready := false
	for i := 0; i < 100 && !ready; i++ { // bounded wait for HotROD to listen
		if resp, err := client.Get(front + "/config"); err == nil {
			resp.Body.Close()
			ready = true
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatalf("HotROD frontend did not come up; logs:\n%s", logs.String())
	}
	for i, customer := range []int{123, 392, 731, 567} {
		resp, err := client.Get(fmt.Sprintf("%s/dispatch?customer=%d&nonse=%d", front, customer, i))
		if err != nil {
			t.Fatalf("dispatch: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("dispatch customer %d: %s", customer, resp.Status)
		}
	}
	// HotROD's SDKs export every second: wait (bounded) until no new span
	// arrived for two export periods, then stop it and let every span
	// still waiting for a partner go.
	last, quiet := uint64(0), 0
	for i := 0; i < 100 && quiet < 10; i++ {
		time.Sleep(200 * time.Millisecond)
		if n := r.Pairer().Stats().Added; n == last && n > 0 {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		<-done
	}
	r.Pairer().Flush()

	snap := snapshotNow(t, g)
	for _, e := range snap.Edges {
		t.Logf("%s -> %s[%s] %s: %d calls, %d errors, p50 %.1fms", e.Source.Name(), e.Target.Name(), e.Target.Kind,
			e.Protocol, e.Stats.Requests, e.Stats.ErrorTotal(), e.Stats.Latency.Quantile(0.5))
	}
	type want struct {
		src, dst string
		kind     graph.Kind
	}
	for _, w := range []want{
		{"frontend", "customer", graph.KindWorkload},
		{"frontend", "driver", graph.KindWorkload},
		{"frontend", "route", graph.KindWorkload},
		{"customer", "mysql", graph.KindDatabase},
		{"driver", "redis", graph.KindDatabase},
	} {
		var found *graph.EdgeSnapshot
		for i := range snap.Edges {
			e := &snap.Edges[i]
			if e.Source.Workload == w.src && strings.Contains(e.Target.Workload, w.dst) && e.Target.Kind == w.kind {
				found = e
			}
		}
		if found == nil {
			var have []string
			for _, e := range snap.Edges {
				have = append(have, fmt.Sprintf("%s->%s[%s]", e.Source.Name(), e.Target.Name(), e.Target.Kind))
			}
			t.Errorf("no edge %s->%s[%s]; graph has %v", w.src, w.dst, w.kind, have)
			continue
		}
		if found.Stats.Requests == 0 || found.Stats.Latency.Count() == 0 || found.Stats.Latency.Quantile(0.5) <= 0 {
			t.Errorf("edge %s->%s: requests %d, latency count %d p50 %g", w.src, w.dst,
				found.Stats.Requests, found.Stats.Latency.Count(), found.Stats.Latency.Quantile(0.5))
		}
		if rate := float64(found.Stats.Requests) / snap.Seconds(); rate <= 0 {
			t.Errorf("edge %s->%s: rate %g", w.src, w.dst, rate)
		}
	}
	for _, e := range snap.Edges {
		if e.Source == e.Target {
			t.Errorf("self-loop %s", e.Source.Name())
		}
	}
}
