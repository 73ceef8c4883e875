package traces

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// The fuzz targets run each decoder and then the pairer on what it made:
// no input may panic, and spans kept must be pairable. Seeds: the realistic
// testdata plus testdata/fuzz/<Target>.

func fuzzDecoder() (Decoder, *Pairer) {
	cfg := DefaultPairerConfig()
	cfg.MaxSpans = 1000
	return Decoder{Identity: Identity{ServiceDomain: "svc.cluster.local"}, MaxAttrLen: 64}, NewPairer(cfg, &memSink{})
}

func addFile(f *testing.F, path string) {
	if b, err := os.ReadFile(path); err == nil {
		f.Add(b)
	}
}

func FuzzOTLPProto(f *testing.F) {
	if b, err := ptraceotlp.NewExportRequestFromTraces(loadTraces(f, "otlp_bookinfo.json")).MarshalProto(); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := ptraceotlp.NewExportRequest()
		if req.UnmarshalProto(b) != nil {
			return
		}
		d, p := fuzzDecoder()
		var st DecodeStats
		p.Add(d.AppendOTLP(nil, req.Traces(), &st))
		p.Flush()
	})
}

func FuzzOTLPJSON(f *testing.F) {
	addFile(f, "testdata/otlp_bookinfo.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		req := ptraceotlp.NewExportRequest()
		if req.UnmarshalJSON(b) != nil {
			return
		}
		d, p := fuzzDecoder()
		var st DecodeStats
		p.Add(d.AppendOTLP(nil, req.Traces(), &st))
		p.Flush()
	})
}

func FuzzZipkinJSON(f *testing.F) {
	addFile(f, "testdata/zipkin_frontend.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, p := fuzzDecoder()
		var st DecodeStats
		spans, err := d.AppendZipkinJSON(nil, b, &st)
		if err != nil {
			return
		}
		p.Add(spans)
		p.Flush()
	})
}

func FuzzJaegerThrift(f *testing.F) {
	f.Add(thriftBatch(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		batch, err := decodeThriftBatch(context.Background(), b, 1<<20)
		if err != nil {
			return
		}
		d, p := fuzzDecoder()
		var st DecodeStats
		p.Add(d.AppendJaegerThrift(nil, batch, &st))
		p.Flush()
	})
}

func FuzzJaegerProto(f *testing.F) {
	if b, err := (&api_v2.PostSpansRequest{Batch: jaegerBatch()}).Marshal(); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api_v2.PostSpansRequest
		if req.Unmarshal(b) != nil {
			return
		}
		d, p := fuzzDecoder()
		var st DecodeStats
		p.Add(d.AppendJaeger(nil, &req.Batch, &st))
		p.Flush()
	})
}

// TestWriteFuzzSeeds refreshes testdata/fuzz from the realistic inputs
// above (MESHLENS_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("MESHLENS_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set MESHLENS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	otlp, err := ptraceotlp.NewExportRequestFromTraces(loadTraces(t, "otlp_bookinfo.json")).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	jp, err := (&api_v2.PostSpansRequest{Batch: jaegerBatch()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	otlpJSON, _ := os.ReadFile("testdata/otlp_bookinfo.json")
	zipkin, _ := os.ReadFile("testdata/zipkin_frontend.json")
	for target, b := range map[string][]byte{
		"FuzzOTLPProto": otlp, "FuzzOTLPJSON": otlpJSON, "FuzzZipkinJSON": zipkin,
		"FuzzJaegerThrift": thriftBatch(t), "FuzzJaegerProto": jp,
	} {
		writeSeed(t, target, "realistic", b)
	}
}

func writeSeed(tb testing.TB, target, name string, b []byte) {
	tb.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
		tb.Fatal(err)
	}
}
