package traces

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	jaegermodel "github.com/jaegertracing/jaeger-idl/model/v1"
	"github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	jaegerthrift "github.com/jaegertracing/jaeger-idl/thrift-gen/jaeger"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func testConfig() Config {
	c := DefaultConfig()
	c.OTLPGRPCAddr, c.OTLPHTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	c.JaegerGRPCAddr, c.JaegerHTTPAddr, c.ZipkinAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.Pairing.Expiry = time.Hour // tests flush explicitly
	return c
}

func startReceiver(tb testing.TB, cfg Config, sink Sink, opts ...Option) (*Receiver, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	r, err := New(cfg, sink, nil, reg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
	})
	return r, reg
}

func loadTraces(tb testing.TB, name string) ptrace.Traces {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(b)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return td
}

var bookinfoWant = []string{
	"productpage-v1->details[external] n=1 lat=9",
	"productpage-v1->reviews-v2 n=1 lat=90",
	"reviews-v2->mysqldb[database] n=1 lat=2",
	"reviews-v2->ratings-v1 n=1 err=5xx lat=63",
	"unknown->productpage-v1 n=1 lat=120",
}

func post(tb testing.TB, url, ctype string, body []byte, gz bool) (*http.Response, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(body)
		zw.Close()
		req.Body = io.NopCloser(&b)
		req.ContentLength = int64(b.Len())
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func TestReceiverProtocols(t *testing.T) {
	td := loadTraces(t, "otlp_bookinfo.json")
	pb, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	js, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	zipkin, _ := os.ReadFile("testdata/zipkin_frontend.json")
	zipkinWant := []string{
		"backend->postgres[database] n=1 lat=9",
		"frontend->backend n=1 err=5xx lat=140",
		"unknown->frontend n=1 lat=207",
	}
	cases := []struct {
		name string
		send func(t *testing.T, r *Receiver)
		recv string
		want []string
		op   string // one operation name the spans carry
	}{
		{"otlp grpc", func(t *testing.T, r *Receiver) {
			cc := dial(t, r.Addr(RecvOTLPGRPC).String())
			resp, err := ptraceotlp.NewGRPCClient(cc).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
			if err != nil || resp.PartialSuccess().RejectedSpans() != 0 {
				t.Fatalf("export: %v %v", err, resp)
			}
		}, RecvOTLPGRPC, bookinfoWant, "GET /reviews/{id}"},
		{"otlp http protobuf gzip", func(t *testing.T, r *Receiver) {
			resp, body := post(t, "http://"+r.Addr(RecvOTLPHTTP).String()+"/v1/traces", "application/x-protobuf", pb, true)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-protobuf" {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
		}, RecvOTLPHTTP, bookinfoWant, "SELECT reviews"},
		{"otlp http json", func(t *testing.T, r *Receiver) {
			resp, body := post(t, "http://"+r.Addr(RecvOTLPHTTP).String()+"/v1/traces", "application/json", js, false)
			if resp.StatusCode != 200 || !strings.HasPrefix(body, "{") {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
		}, RecvOTLPHTTP, bookinfoWant, "SELECT reviews"},
		{"zipkin json", func(t *testing.T, r *Receiver) {
			resp, body := post(t, "http://"+r.Addr(RecvZipkin).String()+"/api/v2/spans", "application/json", zipkin, true)
			if resp.StatusCode != 202 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
		}, RecvZipkin, zipkinWant, "get /api"},
		{"jaeger thrift http", func(t *testing.T, r *Receiver) {
			resp, body := post(t, "http://"+r.Addr(RecvJaegerHTTP).String()+"/api/traces", "application/x-thrift", thriftBatch(t), false)
			if resp.StatusCode != 202 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
		}, RecvJaegerHTTP, []string{"api->redis[database] n=10 lat=3", "unknown->api n=10 lat=12"}, "GET /items"},
		{"jaeger grpc", func(t *testing.T, r *Receiver) {
			b, err := (&api_v2.PostSpansRequest{Batch: jaegerBatch()}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			cc := dial(t, r.Addr(RecvJaegerGRPC).String())
			if err := cc.Invoke(context.Background(), "/jaeger.api_v2.CollectorService/PostSpans", &rawMsg{b}, &rawMsg{}, grpc.ForceCodecV2(newRawCodec())); err != nil {
				t.Fatal(err)
			}
		}, RecvJaegerGRPC, []string{"driver->route n=1 err=grpc lat=40"}, "/route.RouteService/Compute"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			var mu sync.Mutex
			ops := map[string]bool{}
			tap := WithSpanTap(func(spans []Span) {
				mu.Lock()
				defer mu.Unlock()
				for _, s := range spans {
					ops[s.Name] = true
				}
			})
			r, reg := startReceiver(t, testConfig(), sink, tap)
			tc.send(t, r)
			r.Pairer().Flush()
			mu.Lock()
			if !ops[tc.op] {
				t.Errorf("the span tap saw operations %v, want %q among them", ops, tc.op)
			}
			mu.Unlock()
			if got := edges(sink.all()); !slices.Equal(got, tc.want) {
				t.Errorf("calls:\n got %q\nwant %q", got, tc.want)
			}
			st := r.Pairer().Stats()
			recv := metricValue(t, reg, "meshlens_spans_received_total", tc.recv)
			if recv == 0 || uint64(recv) != st.Paired+st.Virtual+st.NoEdge+st.Dropped {
				t.Errorf("received %v but pairer %+v", recv, st)
			}
			if v := metricValue(t, reg, "meshlens_spans_paired_total", ""); v != float64(st.Paired) {
				t.Errorf("paired metric %v, stats %d", v, st.Paired)
			}
		})
	}
}

func dial(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// jaegerBatch: a gRPC call driver -> route failing with UNAVAILABLE, as a Jaeger SDK reports it.
func jaegerBatch() jaegermodel.Batch {
	tid := jaegermodel.TraceID{High: 0x1234, Low: 0x5678}
	start := time.Unix(1795435200, 0)
	return jaegermodel.Batch{Spans: []*jaegermodel.Span{
		{TraceID: tid, SpanID: 1, OperationName: "/driver.DriverService/FindNearest", StartTime: start, Duration: 50 * time.Millisecond,
			Process: &jaegermodel.Process{ServiceName: "driver"},
			Tags: []jaegermodel.KeyValue{jaegermodel.String("span.kind", "client"), jaegermodel.String("rpc.system", "grpc"),
				jaegermodel.Bool("error", true)}},
		{TraceID: tid, SpanID: 2, OperationName: "/route.RouteService/Compute", StartTime: start.Add(time.Millisecond), Duration: 40 * time.Millisecond,
			References: []jaegermodel.SpanRef{{TraceID: tid, SpanID: 1, RefType: jaegermodel.ChildOf}},
			Process:    &jaegermodel.Process{ServiceName: "route"},
			Tags: []jaegermodel.KeyValue{jaegermodel.String("span.kind", "server"), jaegermodel.String("rpc.system", "grpc"),
				jaegermodel.Int64("rpc.grpc.status_code", 14)}},
	}}
}

// thriftBatch: a Jaeger Thrift batch from "api", sampled at 10% (sampler tags),
// with a server span and a Redis client span.
func thriftBatch(tb testing.TB) []byte {
	tb.Helper()
	str := func(s string) *string { return &s }
	f := func(v float64) *float64 { return &v }
	b := &jaegerthrift.Batch{
		Process: &jaegerthrift.Process{ServiceName: "api", Tags: []*jaegerthrift.Tag{
			{Key: "sampler.type", VType: jaegerthrift.TagType_STRING, VStr: str("probabilistic")},
			{Key: "sampler.param", VType: jaegerthrift.TagType_DOUBLE, VDouble: f(0.1)},
		}},
		Spans: []*jaegerthrift.Span{
			{TraceIdLow: 77, SpanId: 1, OperationName: "GET /items", StartTime: 1795435200000000, Duration: 12000,
				Tags: []*jaegerthrift.Tag{{Key: "span.kind", VType: jaegerthrift.TagType_STRING, VStr: str("server")}}},
			{TraceIdLow: 77, SpanId: 2, ParentSpanId: 1, OperationName: "GET", StartTime: 1795435200001000, Duration: 3000,
				Tags: []*jaegerthrift.Tag{
					{Key: "span.kind", VType: jaegerthrift.TagType_STRING, VStr: str("client")},
					{Key: "db.system", VType: jaegerthrift.TagType_STRING, VStr: str("redis")},
				}},
		},
	}
	tr := thrift.NewTMemoryBuffer()
	if err := b.Write(context.Background(), thrift.NewTBinaryProtocolConf(tr, nil)); err != nil {
		tb.Fatal(err)
	}
	return tr.Bytes()
}

func TestReceiverBadInput(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = 64 << 10
	sink := &memSink{}
	r, reg := startReceiver(t, cfg, sink)
	otlpURL := "http://" + r.Addr(RecvOTLPHTTP).String() + "/v1/traces"
	garbage := []byte("\x0a\xff\xff\xff\xff\x0fnot a protobuf at all")
	big := bytes.Repeat([]byte("a"), 100<<10)

	httpCases := []struct {
		name, url, ctype string
		body             []byte
		gz               bool
		code             int
		reason           string
	}{
		{"otlp bad protobuf", otlpURL, "application/x-protobuf", garbage, false, 400, "decode OTLP"},
		{"otlp bad json", otlpURL, "application/json", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"`), false, 400, "decode OTLP"},
		{"otlp bad gzip", otlpURL, "application/x-protobuf", garbage, false, 400, ""},
		{"otlp wrong type", otlpURL, "text/plain", []byte("hi"), false, 415, "Content-Type"},
		{"otlp oversized", otlpURL, "application/x-protobuf", big, false, 413, "larger than"},
		{"otlp gzip bomb", otlpURL, "application/x-protobuf", big, true, 413, "larger than"},
		{"jaeger bad thrift", "http://" + r.Addr(RecvJaegerHTTP).String() + "/api/traces", "application/x-thrift", garbage, false, 400, "decode Jaeger Thrift"},
		{"zipkin bad json", "http://" + r.Addr(RecvZipkin).String() + "/api/v2/spans", "application/json", []byte(`[{"traceId":`), false, 400, "Zipkin"},
		{"zipkin bad id", "http://" + r.Addr(RecvZipkin).String() + "/api/v2/spans", "application/json", []byte(`[{"traceId":"xyz","id":"1"}]`), false, 400, "bad ID"},
	}
	for _, tc := range httpCases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tc.url, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			if tc.name == "otlp bad gzip" {
				req.Header.Set("Content-Encoding", "gzip")
			}
			var resp *http.Response
			var body string
			if tc.gz {
				resp, body = post(t, tc.url, tc.ctype, tc.body, true)
			} else {
				rr, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rr.Body)
				rr.Body.Close()
				resp, body = rr, string(b)
			}
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.reason) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.code, tc.reason)
			}
		})
	}

	t.Run("grpc", func(t *testing.T) {
		cc := dial(t, r.Addr(RecvOTLPGRPC).String())
		err := cc.Invoke(context.Background(), "/"+otlpTraceService+"/Export", &rawMsg{garbage}, &rawMsg{}, grpc.ForceCodecV2(newRawCodec()))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "decode OTLP") {
			t.Errorf("garbage: %v", err)
		}
		err = cc.Invoke(context.Background(), "/"+otlpTraceService+"/Export", &rawMsg{big}, &rawMsg{}, grpc.ForceCodecV2(newRawCodec()))
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("oversized: %v", err)
		}
		jc := dial(t, r.Addr(RecvJaegerGRPC).String())
		err = jc.Invoke(context.Background(), "/"+jaegerCollector+"/PostSpans", &rawMsg{garbage}, &rawMsg{}, grpc.ForceCodecV2(newRawCodec()))
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("jaeger garbage: %v", err)
		}
	})

	t.Run("absurd spans are contained and partially rejected", func(t *testing.T) {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty() // no service.name at all
		ss := rs.ScopeSpans().AppendEmpty().Spans()
		s := ss.AppendEmpty() // no IDs: rejected
		s.SetKind(ptrace.SpanKindServer)
		s = ss.AppendEmpty()
		s.SetTraceID([16]byte{1})
		s.SetSpanID([8]byte{1})
		s.SetKind(ptrace.SpanKindClient)
		s.SetStartTimestamp(2e18)
		s.SetEndTimestamp(1e18) // ends before it starts
		s.Attributes().PutStr("peer.service", strings.Repeat("x", 1<<15))
		s = ss.AppendEmpty()
		s.SetTraceID([16]byte{2})
		s.SetSpanID([8]byte{2})
		s.SetKind(ptrace.SpanKindServer)
		s.SetStartTimestamp(1)
		s.SetEndTimestamp(pcommon.Timestamp(^uint64(0))) // ~584 years
		body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		resp, out := post(t, otlpURL, "application/x-protobuf", body, false)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
		er := ptraceotlp.NewExportResponse()
		if err := er.UnmarshalProto([]byte(out)); err != nil || er.PartialSuccess().RejectedSpans() != 1 {
			t.Fatalf("partial success: %v %d", err, er.PartialSuccess().RejectedSpans())
		}
		r.Pairer().Flush()
		for _, o := range sink.all() {
			if len(o.Dst.Workload) > cfg.MaxAttrLen || len(o.Src.Workload) > cfg.MaxAttrLen {
				t.Errorf("attribute not truncated: %d bytes", len(o.Dst.Workload))
			}
		}
		if st := r.Pairer().Stats(); st.BadTime != 2 || st.Dropped != 1 {
			t.Errorf("stats %+v", st)
		}
		if v := metricValue(t, reg, "meshlens_spans_repaired_total", "no_service"); v != 3 {
			t.Errorf("no_service repaired = %v", v)
		}
	})

	t.Run("good requests still pass", func(t *testing.T) {
		before := len(sink.all())
		td := loadTraces(t, "otlp_bookinfo.json")
		pb, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if resp, out := post(t, otlpURL, "application/x-protobuf", pb, false); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
		r.Pairer().Flush()
		if got := edges(sink.all()[before:]); !slices.Equal(got, bookinfoWant) {
			t.Errorf("got %q", got)
		}
	})
}

func TestReceiverOverload(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConcurrentRequests = 1
	r, _ := startReceiver(t, cfg, &memSink{})
	r.sem <- struct{}{} // one request in flight: the next is refused
	defer r.release()
	resp, _ := post(t, "http://"+r.Addr(RecvOTLPHTTP).String()+"/v1/traces", "application/x-protobuf", nil, false)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("http: %d retry-after %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	cc := dial(t, r.Addr(RecvOTLPGRPC).String())
	_, err := ptraceotlp.NewGRPCClient(cc).Export(context.Background(), ptraceotlp.NewExportRequest())
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || len(st.Details()) != 1 {
		t.Errorf("grpc: %v details %v", err, st.Details())
	}
}

func TestReceiverExtraRegistrations(t *testing.T) {
	var registered bool
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	r, _ := startReceiver(t, testConfig(), &memSink{},
		WithOTLPHTTPHandler("/v1/metrics", h),
		WithGRPCRegistration(func(s *grpc.Server) { registered = s != nil }))
	resp, _ := post(t, "http://"+r.Addr(RecvOTLPHTTP).String()+"/v1/metrics", "application/x-protobuf", nil, false)
	if resp.StatusCode != http.StatusTeapot || !registered {
		t.Errorf("extra handler %d, grpc registration %v", resp.StatusCode, registered)
	}
	// Shutdown twice is fine; Start after Start is a no-op.
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	if p := DefaultConfig().Validate(); len(p) != 0 {
		t.Fatalf("default config: %v", p)
	}
	c := DefaultConfig()
	c.OTLPGRPCAddr = "4317"
	c.MaxRequestBytes = 0
	c.Pairing.Expiry = 0
	got := strings.Join(c.Validate(), "\n")
	for _, want := range []string{"otlpGrpcAddr:", "maxRequestBytes:", "pairing.expiry:"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in %q", want, got)
		}
	}
}

// metricValue reads a counter or gauge from reg; label, when set, must be the
// value of its one label.
func metricValue(tb testing.TB, reg *prometheus.Registry, name, label string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	tb.Fatalf("no metric %s{%s}", name, label)
	return 0
}
