package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/meshlens/meshlens/collector/metrics"
	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/graph"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// rwPayloads builds the payloads loadgen remote-write would send.
func rwPayloads(tb testing.TB, shape, ns string, edges, perReq int) []*rwPayload {
	tb.Helper()
	var out []*rwPayload
	for from := 0; from < edges; from += perReq {
		series, err := rwShape(shape, ns, "loadgen-"+string(rune('a'+from/perReq)), from, min(from+perReq, edges))
		if err != nil {
			tb.Fatal(err)
		}
		p, err := newRWPayload(series)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// A patched block must decode to exactly the WriteRequest that marshalling
// the same samples would give: labels untouched, every value and timestamp
// rewritten.
func TestRWPayloadPatchDecodes(t *testing.T) {
	for _, tc := range []struct {
		shape         string
		edges, perReq int
	}{
		{"simple", 100, 100},
		{"istio", 3, 3},
		{"istio", 40, 20}, // > 64 KiB raw: the 64k copy window matters
	} {
		t.Run(tc.shape, func(t *testing.T) {
			for _, p := range rwPayloads(t, tc.shape, "ns-x", tc.edges, tc.perReq) {
				rawLen := 0
				for _, step := range []uint64{1, 2, 977, 1 << 20} {
					ts := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli() + int64(step)
					p.patch(step, ts)
					raw, err := snappy.Decode(nil, p.body)
					if err != nil {
						t.Fatalf("step %d: snappy: %v", step, err)
					}
					rawLen = len(raw)
					var wr prompb.WriteRequest
					if err := wr.Unmarshal(raw); err != nil {
						t.Fatalf("step %d: unmarshal: %v", step, err)
					}
					if len(wr.Timeseries) != len(p.series) {
						t.Fatalf("step %d: %d series, want %d", step, len(wr.Timeseries), len(p.series))
					}
					for i, got := range wr.Timeseries {
						s := p.series[i]
						if len(got.Labels) != len(s.labels) {
							t.Fatalf("series %d: %d labels, want %d", i, len(got.Labels), len(s.labels))
						}
						for j := range s.labels {
							if got.Labels[j].Name != s.labels[j].Name || got.Labels[j].Value != s.labels[j].Value {
								t.Fatalf("series %d label %d: %v, want %v", i, j, got.Labels[j], s.labels[j])
							}
						}
						if len(got.Samples) != 1 || got.Samples[0].Value != s.value(step) || got.Samples[0].Timestamp != ts {
							t.Fatalf("series %d step %d: samples %v, want value %v at %d", i, step, got.Samples, s.value(step), ts)
						}
					}
				}
				// The block must actually be compressed: label sets repeat.
				if len(p.body)*3 > rawLen {
					t.Errorf("%d series: block %d bytes for %d raw: not compressed", len(p.series), len(p.body), rawLen)
				}
			}
		})
	}
}

// Count in = count in the graph: what expected() promises for the
// acknowledged steps is what the collector puts in the graph for the
// namespace, for both shapes (the istio one has source and destination
// reports and failed requests).
func TestRWExpectedMatchesGraph(t *testing.T) {
	for _, shape := range []string{"simple", "istio"} {
		t.Run(shape, func(t *testing.T) {
			g := graph.New(graph.Config{Resolution: 10 * time.Second, Window: time.Hour})
			c, err := metrics.New(metrics.DefaultConfig(), g, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ps := rwPayloads(t, shape, "ns-"+shape, 12, 5)
			t0 := time.Now().Add(-10 * time.Minute).UnixMilli()
			for k := range 30 {
				for i, p := range ps {
					p.step++
					p.patch(p.step, t0+int64(k*1000+i))
					if k == 7 && i == 1 {
						continue // never acknowledged: counted by neither side
					}
					if _, err := c.IngestRemoteWrite(p.body); err != nil {
						t.Fatalf("step %d payload %d: %v", p.step, i, err)
					}
					if p.firstAck == 0 {
						p.firstAck = p.step
					}
					p.lastAck = p.step
				}
			}
			var want uint64
			for _, p := range ps {
				want += p.expected()
			}
			if want == 0 {
				t.Fatal("nothing expected")
			}
			g.Advance(time.Now().Add(2 * time.Minute))
			if got := graphRequests(t, g, "ns-"+shape); got != want {
				t.Errorf("graph shows %d requests in ns-%s, loadgen expects %d", got, shape, want)
			}
		})
	}
}

func graphRequests(tb testing.TB, g *graph.Graph, ns string) uint64 {
	tb.Helper()
	snap, err := g.Snapshot(graph.Query{View: graph.ViewWorkload, Namespaces: []string{ns}, Window: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for _, e := range snap.Edges {
		n += e.Stats.Requests
	}
	return n
}

// The OTLP template patched for a send decodes to fresh trace IDs at the
// given time, and the real decoder, pairer and graph turn each trace into
// otlpCallsPerTrace requests in the namespace.
func TestOTLPPayloadCallsPerTrace(t *testing.T) {
	const perReq = 7
	p, err := newOTLPPayload("ns-otlp", perReq)
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(graph.Config{Resolution: 10 * time.Second, Window: time.Hour})
	pr := traces.NewPairer(traces.DefaultPairerConfig(), g)
	dec := traces.Decoder{Identity: traces.DefaultConfig().Identity, MaxAttrLen: 256}
	now := time.Now().Add(-5 * time.Minute)
	pr.Expire(now)
	base := uint64(now.UnixNano())
	seen := map[[16]byte]int{}
	for send := range 3 {
		p.patch(0xabcdef01, uint64(send*perReq), base)
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(p.body); err != nil {
			t.Fatalf("send %d: %v", send, err)
		}
		var st traces.DecodeStats
		spans := dec.AppendOTLP(nil, req.Traces(), &st)
		if len(spans) != p.spans {
			t.Fatalf("send %d: %d spans decoded, want %d", send, len(spans), p.spans)
		}
		rss := req.Traces().ResourceSpans()
		for i := range rss.Len() {
			ss := rss.At(i).ScopeSpans().At(0).Spans()
			for j := range ss.Len() {
				s := ss.At(j)
				seen[s.TraceID()]++
				if s.StartTimestamp() < 1 || uint64(s.StartTimestamp()) < base || uint64(s.EndTimestamp()) > base+uint64(time.Second) {
					t.Fatalf("span %s at %d..%d, want within 1s of %d", s.Name(), s.StartTimestamp(), s.EndTimestamp(), base)
				}
			}
		}
		pr.Add(spans)
	}
	if len(seen) != 3*perReq {
		t.Fatalf("%d distinct trace IDs over 3 sends of %d traces", len(seen), perReq)
	}
	for id, n := range seen {
		if n != p.spans/perReq {
			t.Fatalf("trace %x has %d spans, want %d", id, n, p.spans/perReq)
		}
	}
	pr.Expire(now.Add(time.Minute)) // spans still waiting for a partner leave as virtual calls
	g.Advance(now.Add(3 * time.Minute))
	if got, want := graphRequests(t, g, "ns-otlp"), uint64(3*perReq*otlpCallsPerTrace); got != want {
		t.Errorf("graph shows %d requests for %d traces, loadgen expects %d (%d per trace)", got, 3*perReq, want, otlpCallsPerTrace)
	}
}

// askOnce counts only real answers: a refusal or an empty answer is an
// error that names the question, and the session is carried forward.
func TestAskOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"answer", 200, `{"sessionId":"s1","answer":"payment-v1 is failing","engine":"builtin"}`, ""},
		{"refused", 503, `{"error":"busy"}`, "HTTP 503"},
		{"empty answer", 200, `{"sessionId":"s1","answer":"","engine":"builtin"}`, "empty answer"},
		{"not JSON", 200, `<html>`, "decode answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				_ = json.Unmarshal(b, &got)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			_, ans, err := askOnce(context.Background(), srv.Client(), srv.URL, "", "prev", "which service is failing?")
			if got["message"] != "which service is failing?" || got["sessionId"] != "prev" {
				t.Errorf("server got %v", got)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "which service is failing?")):
				t.Fatalf("error %v, want one naming the question and %q", err, tc.wantErr)
			case tc.wantErr == "" && (ans.SessionID != "s1" || ans.Engine != "builtin"):
				t.Fatalf("answer %+v", ans)
			}
		})
	}
}
