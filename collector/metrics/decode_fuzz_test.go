package metrics

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/meshlens/meshlens/graph"
)

type discardSink struct{ n int }

func (d *discardSink) Ingest(obs []graph.Observation) { d.n += len(obs) }

func fuzzCollector(tb testing.TB) *Collector {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 1 << 20
	cfg.MaxSeries = 1000
	c, err := New(cfg, &discardSink{}, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// FuzzRemoteWrite feeds the decoded (snappy-free) WriteRequest bytes, so
// the fuzzer works on the protobuf walk rather than on snappy framing; the
// raw bytes are also tried as a snappy body.
func FuzzRemoteWrite(f *testing.F) {
	f.Add(istioWriteRequest(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := fuzzCollector(t)
		c.IngestRemoteWrite(snappy.Encode(nil, b))
		c.IngestRemoteWrite(b)
	})
}

// FuzzExposition parses Prometheus text and OpenMetrics and maps the series.
func FuzzExposition(f *testing.F) {
	files, _ := filepath.Glob("testdata/*_0.prom")
	om, _ := filepath.Glob("testdata/*_0.om")
	for _, p := range append(files, om...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, filepath.Ext(p) == ".om")
		}
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte, openMetrics bool) {
		ct := "text/plain; version=0.0.4"
		if openMetrics {
			ct = "application/openmetrics-text; version=1.0.0"
		}
		c := fuzzCollector(t)
		c.IngestExposition(b, ct, "fuzz", map[string]string{"cluster": "c1"}, now)
		c.IngestExposition(b, ct, "fuzz", nil, now.Add(15*time.Second))
	})
}

// istioWriteRequest is a remote-write 1.0 body (before snappy) with an Istio
// request counter and a latency bucket, as a sidecar's Prometheus sends.
func istioWriteRequest(tb testing.TB) []byte {
	ls := func(name string, extra ...prompb.Label) []prompb.Label {
		base := []prompb.Label{{Name: "__name__", Value: name}, {Name: "destination_workload", Value: "reviews-v2"},
			{Name: "destination_workload_namespace", Value: "bookinfo"}, {Name: "reporter", Value: "destination"},
			{Name: "response_code", Value: "200"}, {Name: "source_workload", Value: "productpage-v1"},
			{Name: "source_workload_namespace", Value: "bookinfo"}, {Name: "job", Value: "kubernetes-pods"}, {Name: "instance", Value: "10.0.0.7:15020"}}
		return append(base, extra...)
	}
	wr := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: ls("istio_requests_total"), Samples: []prompb.Sample{{Value: 100, Timestamp: 1_800_000_000_000}, {Value: 160, Timestamp: 1_800_000_015_000}}},
		{Labels: ls("istio_request_duration_milliseconds_bucket", prompb.Label{Name: "le", Value: "25"}), Samples: []prompb.Sample{{Value: 90, Timestamp: 1_800_000_000_000}}},
	}}
	b, err := wr.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestWriteFuzzSeeds refreshes testdata/fuzz (MESHLENS_WRITE_FUZZ_SEEDS=1).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("MESHLENS_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set MESHLENS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	write := func(target, name, body string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzRemoteWrite", "istio", fmt.Sprintf("[]byte(%q)\n", istioWriteRequest(t)))
	for _, p := range []string{"testdata/istio_sidecar_0.prom", "testdata/linkerd_web_0.prom", "testdata/envoy_front_0.prom", "testdata/istio_ztunnel_0.om"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzExposition", strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)), fmt.Sprintf("[]byte(%q)\nbool(%v)\n", b, filepath.Ext(p) == ".om"))
	}
}
