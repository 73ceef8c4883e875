package metrics

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

var update = flag.Bool("update", false, "rewrite the .golden files in testdata")

// recorder is a Sink that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	obs []graph.Observation
}

func (r *recorder) Ingest(b []graph.Observation) {
	r.mu.Lock()
	for _, o := range b { // the caller reuses b and its sketches
		if o.Latency != nil {
			o.Latency = o.Latency.Clone()
		}
		r.obs = append(r.obs, o)
	}
	r.mu.Unlock()
}

func (r *recorder) take() []graph.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.obs
	r.obs = nil
	return out
}

func newTestCollector(tb testing.TB, cfg Config, sink Sink) *Collector {
	tb.Helper()
	c, err := New(cfg, sink, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func nodeString(n graph.Node) string {
	s := n.Kind.String() + ":" + n.Namespace + "/" + n.Name()
	if n.Version != "" {
		s += "@" + n.Version
	}
	return s
}

// obsLine renders an observation for golden files and for matching in tests.
func obsLine(o graph.Observation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s %s reporter=%s req=%d", nodeString(o.Src), nodeString(o.Dst), o.Protocol, o.Reporter, o.Requests)
	for c := graph.ErrorClass(0); c < graph.NumErrorClasses; c++ {
		if o.Errors[c] > 0 {
			fmt.Fprintf(&b, " err.%s=%d", c, o.Errors[c])
		}
	}
	if o.Latency != nil && o.Latency.Count() > 0 {
		fmt.Fprintf(&b, " lat.n=%d lat.p50=%.3g lat.p99=%.3g", o.Latency.Count(), o.Latency.Quantile(0.5), o.Latency.Quantile(0.99))
	}
	if o.RequestBytes+o.ResponseBytes > 0 {
		fmt.Fprintf(&b, " bytes=%d/%d", o.RequestBytes, o.ResponseBytes)
	}
	if o.ConnOpened+o.ConnClosed > 0 {
		fmt.Fprintf(&b, " conns=+%d/-%d", o.ConnOpened, o.ConnClosed)
	}
	switch o.Security {
	case graph.SecurityMTLS:
		b.WriteString(" mtls")
	case graph.SecurityPlaintext:
		b.WriteString(" plaintext")
	}
	if o.ResponseCode != 0 {
		fmt.Fprintf(&b, " code=%d", o.ResponseCode)
	}
	if o.GRPCStatus != 0 {
		fmt.Fprintf(&b, " grpc=%d", o.GRPCStatus)
	}
	if o.ResponseFlags != 0 {
		fmt.Fprintf(&b, " flags=%s", o.ResponseFlags)
	}
	if o.L4Only {
		b.WriteString(" l4only")
	}
	return b.String()
}

type exposition struct {
	file, contentType string
	labels            map[string]string
}

var goldenCases = []struct {
	name  string
	steps [][]exposition // scrapes, 15 s apart; each scrape may hold several targets
	// want are lines (or line prefixes) that must be among the observations of the last scrape.
	want []string
	// absent are substrings that must not occur in any observation line.
	absent []string
}{
	{
		name: "istio_sidecar",
		steps: [][]exposition{
			{{file: "istio_sidecar_0.prom", contentType: "text/plain; version=0.0.4"}},
			{{file: "istio_sidecar_1.prom", contentType: "text/plain; version=0.0.4"}},
		},
		want: []string{
			// The destination and the source report the same 600 OK requests, each on its own channel.
			"gateway:istio-system/istio-ingressgateway@latest -> workload:bookinfo/productpage-v1@v1 http reporter=destination req=600 lat.n=600",
			"gateway:istio-system/istio-ingressgateway@latest -> workload:bookinfo/productpage-v1@v1 http reporter=source req=600 lat.n=600",
			"gateway:istio-system/istio-ingressgateway@latest -> workload:bookinfo/productpage-v1@v1 http reporter=destination req=10 err.5xx=10 lat.n=10",
			// Connect failures seen only by the caller.
			"workload:bookinfo/productpage-v1@v1 -> workload:bookinfo/reviews-v2@v2 http reporter=source req=30 err.connectFailure=30 lat.n=30 lat.p50=0.707 lat.p99=0.707 bytes=21000/150000 mtls code=503 flags=UF,URX",
			// gRPC status 14 on HTTP 200.
			"workload:bookinfo/reviews-v2@v2 -> workload:bookinfo/ratings-v1@v1 grpc reporter=destination req=60 err.grpc=60",
			// Downstream disconnect, HTTP code 0.
			"workload:bookinfo/productpage-v1@v1 -> workload:bookinfo/details-v1@v1 http reporter=destination req=5 err.noResponse=5",
			"workload:bookinfo/productpage-v1@v1 -> external:/api.github.com http reporter=source req=60",
			"unknown:/unknown -> workload:bookinfo/productpage-v1@v1 http reporter=destination req=20 err.4xx=20",
			"workload:bookinfo/reviews-v2@v2 -> workload:bookinfo/mongodb-v1@v1 tcp reporter=destination req=0 bytes=9000/40000 conns=+12/-12 mtls",
			"workload:bookinfo/reviews-v2@v2 -> workload:bookinfo/mongodb-v1@v1 tcp reporter=source req=0 bytes=9000/40000 conns=+12/-12 mtls",
		},
	},
	{
		name: "istio_ambient",
		steps: [][]exposition{
			{{file: "istio_ztunnel_0.om", contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8", labels: map[string]string{"app": "ztunnel"}},
				{file: "istio_waypoint_0.prom", contentType: "text/plain; version=0.0.4"}},
			{{file: "istio_ztunnel_1.om", contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8", labels: map[string]string{"app": "ztunnel"}},
				{file: "istio_waypoint_1.prom", contentType: "text/plain; version=0.0.4"}},
		},
		want: []string{
			"workload:demo/sleep@latest -> workload:demo/httpbin@v1 http reporter=waypoint req=300 lat.n=300",
			// The 504 UT timeouts are first seen in the second scrape: a new series of a known source counts in full.
			"workload:demo/sleep@latest -> workload:demo/httpbin@v1 http reporter=waypoint req=15 err.noResponse=15 lat.n=15",
			// L4 only: ztunnel's destination report, and its source report with sent/received swapped back.
			"workload:demo/tcp-client@v1 -> workload:demo/tcp-echo@v1 tcp reporter=ztunnel req=0 bytes=1000/2000 conns=+5/-5 mtls l4only",
			"workload:demo/tcp-client@v1 -> workload:demo/tcp-echo@v1 tcp reporter=source req=0 bytes=1000/2000 conns=+5/-5 mtls l4only",
		},
		// sleep -> httpbin also has ztunnel L4 telemetry: it must not be drawn a second time as tcp.
		absent: []string{"workload:demo/sleep@latest -> workload:demo/httpbin@v1 tcp"},
	},
	{
		name: "linkerd",
		steps: [][]exposition{
			{{file: "linkerd_web_0.prom", contentType: "text/plain; version=0.0.4", labels: map[string]string{"namespace": "emojivoto", "deployment": "web", "pod": "web-5f86686c4d-58p7k"}}},
			{{file: "linkerd_web_1.prom", contentType: "text/plain; version=0.0.4", labels: map[string]string{"namespace": "emojivoto", "deployment": "web", "pod": "web-5f86686c4d-58p7k"}}},
		},
		want: []string{
			"workload:emojivoto/web -> workload:emojivoto/emoji http reporter=source req=1800 mtls",
			"workload:emojivoto/web -> workload:emojivoto/emoji http reporter=source req=0 lat.n=1800",
			"workload:emojivoto/web -> workload:emojivoto/voting http reporter=source req=90 err.grpc=90 mtls code=200 grpc=2",
			// Inbound from a caller without identity; inbound from meshed callers is left to their outbound side.
			"unknown:/unknown -> workload:emojivoto/web http reporter=destination req=6 err.5xx=6 plaintext code=500",
			// A plain TCP peer is drawn as L4.
			"workload:emojivoto/web -> workload:emojivoto/redis tcp reporter=source req=0 bytes=4000/12000 conns=+3/-3 mtls l4only",
		},
		absent: []string{
			// HTTP/gRPC traffic's own TCP connections are not a second edge.
			"workload:emojivoto/web -> workload:emojivoto/emoji tcp",
			"unknown:/unknown -> workload:emojivoto/web http reporter=destination req=900",
		},
	},
	{
		name: "envoy",
		steps: [][]exposition{
			{{file: "envoy_front_0.prom", contentType: "text/plain; version=0.0.4", labels: map[string]string{"service": "front-envoy", "namespace": "edge"}}},
			{{file: "envoy_front_1.prom", contentType: "text/plain; version=0.0.4", labels: map[string]string{"service": "front-envoy", "namespace": "edge"}}},
		},
		want: []string{
			"workload:edge/front-envoy -> service:edge/service1 http reporter=proxy req=900 err.5xx=20 lat.n=900",
			"workload:edge/front-envoy -> service:edge/service2 http reporter=proxy req=300 err.4xx=10 lat.n=300",
		},
		absent: []string{"xds-grpc"},
	},
}

func TestGolden(t *testing.T) {
	t0 := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c := newTestCollector(t, DefaultConfig(), rec)
			var lines []string
			for i, step := range tc.steps {
				for _, e := range step {
					now := t0.Add(time.Duration(i) * 15 * time.Second)
					if _, err := c.IngestExposition(readTestdata(t, e.file), e.contentType, "scrape:"+e.file[:strings.LastIndexByte(e.file, '_')], e.labels, now); err != nil {
						t.Fatalf("%s: %v", e.file, err)
					}
				}
				obs := rec.take()
				if i == 0 {
					// The first scrape of a target is the baseline: totals since
					// the proxy started are not traffic of this interval.
					if len(obs) != 0 {
						t.Fatalf("first scrape produced %d observations, want 0: %s", len(obs), obsLine(obs[0]))
					}
					continue
				}
				for _, o := range obs {
					lines = append(lines, obsLine(o))
				}
			}
			slices.Sort(lines)
			for _, w := range tc.want {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
					t.Errorf("missing observation %q", w)
				}
			}
			for _, a := range tc.absent {
				for _, l := range lines {
					if strings.Contains(l, a) {
						t.Errorf("unexpected observation %q", l)
					}
				}
			}
			got := strings.Join(lines, "\n") + "\n"
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("observations differ from %s (go test -update rewrites it):\ngot:\n%s", path, got)
			}
		})
	}
}
