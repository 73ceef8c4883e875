package nezha

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/graph"
)

func loadTB(tb testing.TB, dir string) *Loaded {
	tb.Helper()
	days, err := FindDays(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if len(days) != 1 {
		tb.Fatalf("FindDays(%s): %d days, want 1", dir, len(days))
	}
	l, err := Load(days[0])
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func TestLoadDay(t *testing.T) {
	l := loadTB(t, "testdata/dataset")
	if len(l.Problems) != 0 {
		t.Errorf("problems on clean data: %v", l.Problems)
	}
	if len(l.Faults) != 2 {
		t.Fatalf("faults = %d, want 2", len(l.Faults))
	}
	// inject_time read as UTC (inject_timestamp is 8 hours off and ignored).
	if want := time.Date(2023, 1, 29, 8, 43, 4, 0, time.UTC); !l.Faults[0].Time.Equal(want) {
		t.Errorf("fault time %s, want %s", l.Faults[0].Time, want)
	}
	if l.Faults[0].Service != "ts-contacts-service" || l.Faults[0].Type != "return" {
		t.Errorf("fault 0 = %+v", l.Faults[0])
	}
	if l.Trace.Spans != 86 || len(l.Spans) != 86 {
		t.Errorf("spans read %d kept %d, want 86", l.Trace.Spans, len(l.Spans))
	}
	for i := 1; i < len(l.Spans); i++ {
		if l.Spans[i].Start < l.Spans[i-1].Start {
			t.Fatalf("spans not in start order at %d", i)
		}
	}
	if len(l.Metrics) != 16 {
		t.Errorf("metric rows = %d, want 16", len(l.Metrics))
	}
	if !l.Covered(time.Unix(0, l.Spans[0].Start), time.Unix(0, l.Spans[0].Start+1)) || l.Covered(l.Faults[0].Time.Add(time.Hour), l.Faults[0].Time.Add(2*time.Hour)) {
		t.Error("coverage wrong")
	}
}

type collect struct {
	mu  sync.Mutex
	obs []graph.Observation
}

func (c *collect) Ingest(b []graph.Observation) {
	c.mu.Lock()
	c.obs = append(c.obs, b...)
	c.mu.Unlock()
}

// The spans carry no kinds: calls come from cross-service parent->child
// pairs through the traces collector's own pairer. The Online Boutique
// layout of the same study (gRPC operation names, some server spans
// prefixed "grpc.", internal spans) pairs the same way.
func TestSpansPairIntoCalls(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want map[string]uint64
	}{
		{"testdata/dataset", map[string]uint64{
			"ts-auth-service>ts-verification-code-service": 2,
			"ts-execute-service>ts-order-service":          2,
			"ts-food-service>ts-station-food-service":      1,
			"ts-food-service>ts-train-food-service":        1,
			"ts-food-service>ts-travel-service":            1,
			"ts-gateway-service>ts-auth-service":           2,
			"ts-gateway-service>ts-execute-service":        1,
			"ts-gateway-service>ts-food-service":           1,
			"ts-travel-service>ts-route-service":           1,
		}},
		{"testdata/boutique", map[string]uint64{
			"frontend>productcatalogservice": 1,
			"frontend>cartservice":           2,
			"frontend>currencyservice":       1,
		}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			l := loadTB(t, tc.dir)
			if len(l.Problems) != 0 {
				t.Errorf("problems on clean data: %v", l.Problems)
			}
			var sink collect
			p := traces.NewPairer(traces.PairerConfig{}, &sink)
			nodes := map[string]graph.Node{}
			spans := make([]traces.Span, len(l.Spans))
			for i := range l.Spans {
				spans[i] = l.Spans[i].ToSpan(nodes)
			}
			p.Add(spans)
			p.Flush()
			got := map[string]uint64{}
			for _, o := range sink.obs {
				got[o.Src.Name()+">"+o.Dst.Name()] += o.Requests
				if o.Signal != graph.SignalTraces || o.LatencyMs <= 0 {
					t.Errorf("observation %+v: want a traces signal with latency", o)
				}
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("calls %s = %d, want %d", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("unexpected edge %s (%d calls)", k, got[k])
				}
			}
		})
	}
}

// An Online Boutique day evaluates like a Train Ticket one: its fault is
// scored, its pod metrics read.
func TestEvalBoutiqueDay(t *testing.T) {
	l := loadTB(t, "testdata/boutique")
	if len(l.Faults) != 1 || l.Faults[0].Service != "cartservice" || l.Faults[0].Type != "network_delay" {
		t.Fatalf("faults %+v, want the cartservice network_delay", l.Faults)
	}
	if len(l.Metrics) != 3 || l.Metrics[0].Service != "cartservice" {
		t.Fatalf("metric rows %+v, want 3 of cartservice", l.Metrics)
	}
	r, err := EvalDay(l, DefaultEvalConfig(SignalsAll))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Faults) != 1 || len(r.Skipped) != 0 || r.Spans != 12 {
		t.Errorf("scored %d, skipped %v, spans %d; want the one fault scored from 12 spans", len(r.Faults), r.Skipped, r.Spans)
	}
}

func TestBadInput(t *testing.T) {
	l := loadTB(t, "testdata/broken")
	text := ""
	for _, p := range l.Problems {
		text += p.String() + "\n"
	}
	for _, want := range []string{"bad trace id", "bad times", "bad span id", "inject_time \"noon\"", "no inject_pod", "bad timestamp", "10_01_trace.csv"} {
		if !strings.Contains(text, want) {
			t.Errorf("problems do not mention %q:\n%s", want, text)
		}
	}
	if len(l.Faults) != 1 {
		t.Errorf("faults = %d, want the one readable", len(l.Faults))
	}
	// 11 data rows + a truncated one: 3 broken ids/times, the truncated row, 8 good.
	if len(l.Spans) != 8 {
		t.Errorf("spans = %d, want 8", len(l.Spans))
	}
	if len(l.Metrics) != 1 {
		t.Errorf("metric rows = %d, want 1", len(l.Metrics))
	}
	// The evaluation goes on and scores what it can.
	for _, mode := range []string{SignalsTraces, SignalsAll} {
		r, err := EvalDay(l, DefaultEvalConfig(mode))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if len(r.Faults) != 1 {
			t.Errorf("%s: scored %d faults, want 1", mode, len(r.Faults))
		}
	}
}

func TestEvalDaySkipsUnknownPod(t *testing.T) {
	l := loadTB(t, "testdata/dataset")
	for _, mode := range []string{SignalsTraces, SignalsAll} {
		r, err := EvalDay(l, DefaultEvalConfig(mode))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if len(r.Faults) != 1 || r.Faults[0].Service != "ts-contacts-service" {
			t.Errorf("%s: scored %+v, want the contacts fault only", mode, r.Faults)
		}
		if len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0].Item, "ts-nowhere-service") {
			t.Errorf("%s: skipped %v, want the fault on a pod that never appears", mode, r.Skipped)
		}
		if r.Spans != 86 || r.Calls != 12 {
			t.Errorf("%s: spans %d calls %d, want 86 and 12", mode, r.Spans, r.Calls)
		}
		var b strings.Builder
		Write(&b, []*DayResult{r}, WriteOptions{Explain: 3})
		if !strings.Contains(b.String(), "overall top1=") || !strings.Contains(b.String(), "1 faults scored") {
			t.Errorf("%s: report lacks the final line:\n%s", mode, b.String())
		}
	}
}

func TestReplayOverOTLPHTTP(t *testing.T) {
	l := loadTB(t, "testdata/dataset")
	var mu sync.Mutex
	var spans, sampled int
	services := map[string]bool{}
	var starts []int64
	cpu := map[string][]float64{} // pod -> CPU shares of the limit received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/metrics" {
			b, _ := io.ReadAll(r.Body)
			req := pmetricotlp.NewExportRequest()
			if err := req.UnmarshalProto(b); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			rms := req.Metrics().ResourceMetrics()
			for i := 0; i < rms.Len(); i++ {
				pod, _ := rms.At(i).Resource().Attributes().Get("k8s.pod.name")
				ms := rms.At(i).ScopeMetrics().At(0).Metrics()
				for k := 0; k < ms.Len(); k++ {
					if ms.At(k).Name() == "k8s.pod.cpu_limit_utilization" {
						cpu[pod.Str()] = append(cpu[pod.Str()], ms.At(k).Gauge().DataPoints().At(0).DoubleValue())
					}
				}
			}
			return
		}
		td, ok := readTraces(w, r)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			name, _ := rs.Resource().Attributes().Get("service.name")
			services[name.Str()] = true
			ss := rs.ScopeSpans().At(0).Spans()
			for k := 0; k < ss.Len(); k++ {
				spans++
				starts = append(starts, int64(ss.At(k).StartTimestamp()))
				if v, ok := ss.At(k).Attributes().Get("sampling.probability"); ok && v.Double() == 0.25 {
					sampled++
				}
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	before := time.Now()
	// Speed high enough that the ~2 minutes of excerpt take well under a second.
	st, err := Replay(context.Background(), l, ReplayConfig{Endpoint: srv.URL, Speed: 1e4, SamplingProbability: 0.25, Metrics: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The excerpt's metric rows during its spans (08:43, 08:44) reach
	// /v1/metrics as shares of the limit; those before the first span do not.
	const pod = "ts-contacts-service-866bd68c97-xcqfx"
	if got := cpu[pod]; st.MetricRows == 0 || len(got) == 0 || got[0] <= 0 || got[0] >= 1 {
		t.Errorf("sent %d metric rows; %s CPU shares received %v, want some in (0, 1)", st.MetricRows, pod, got)
	}
	if st.Spans != 86 || spans != 86 || sampled != 86 {
		t.Errorf("sent %d, received %d (%d with sampling), want 86", st.Spans, spans, sampled)
	}
	if !services["ts-gateway-service"] || services["ts-gateway-service-6f6cfc45b-h5m2n"] {
		t.Errorf("services %v: want service names, not pod names", services)
	}
	for _, s := range starts {
		if s < before.UnixNano()-int64(time.Second) {
			t.Fatalf("span start %s not shifted to now (%s)", time.Unix(0, s), before)
		}
	}
}

func TestReplayReportsReceiverErrors(t *testing.T) {
	l := loadTB(t, "testdata/dataset")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, err := Replay(context.Background(), l, ReplayConfig{Endpoint: srv.URL, Speed: 1e4}, nil)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want the receiver's 503", err)
	}
}

func TestScoreTimes(t *testing.T) {
	t0 := time.Date(2023, 1, 29, 9, 0, 0, 0, time.UTC)
	at := func(m, s int) time.Time { return t0.Add(time.Duration(m)*time.Minute + time.Duration(s)*time.Second) }
	faults := []Fault{{Time: at(0, 0)}, {Time: at(4, 10)}, {Time: at(20, 0)}, {Time: at(20, 10)}}
	got := scoreTimes(faults, 5*time.Minute, 30*time.Second)
	want := []time.Time{
		at(3, 40),  // the next fault comes before the horizon: one bucket before it
		at(9, 10),  // the next fault is far: the horizon
		at(25, 0),  // the next fault is within a bucket: nothing to score before it, the horizon
		at(25, 10), // the last fault: the horizon
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("fault %d at %s scored at %s, want %s", i, faults[i].Time.Format("15:04:05"), got[i].Format("15:04:05"), want[i].Format("15:04:05"))
		}
	}
}

// A receiver that takes traces but not metrics: the replay warns, leaves
// the metric rows out, and sends every span.
func TestReplayWithoutMetricsReceiver(t *testing.T) {
	l := loadTB(t, "testdata/dataset")
	var mu sync.Mutex
	spans := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		td, ok := readTraces(w, r)
		if !ok {
			return
		}
		mu.Lock()
		spans += td.SpanCount()
		mu.Unlock()
	}))
	defer srv.Close()
	st, err := Replay(context.Background(), l, ReplayConfig{Endpoint: srv.URL, Speed: 1e4, Metrics: true}, nil)
	if err != nil || st.Spans != 86 || spans != 86 || st.MetricRows != 0 {
		t.Errorf("replay: %v, sent %d spans (%d received), %d metric rows; want all 86 spans and no rows", err, st.Spans, spans, st.MetricRows)
	}
}

// readTraces decodes an OTLP/HTTP protobuf trace export, answering 400 to
// anything else.
func readTraces(w http.ResponseWriter, r *http.Request) (ptrace.Traces, bool) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return ptrace.Traces{}, false
	}
	b, _ := io.ReadAll(r.Body)
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return ptrace.Traces{}, false
	}
	return req.Traces(), true
}
