package traces

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// memSink records observations.
type memSink struct {
	mu  sync.Mutex
	obs []graph.Observation
}

func (m *memSink) Ingest(b []graph.Observation) {
	m.mu.Lock()
	m.obs = append(m.obs, b...)
	m.mu.Unlock()
}

func (m *memSink) all() []graph.Observation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.obs)
}

// edges renders observations as "src->dst[kind] n err=e lat=ms" sorted, for comparison.
func edges(obs []graph.Observation) []string {
	var out []string
	for _, o := range obs {
		s := fmt.Sprintf("%s->%s", o.Src.Name(), o.Dst.Name())
		if o.Dst.Kind != graph.KindWorkload {
			s += "[" + o.Dst.Kind.String() + "]"
		}
		s += fmt.Sprintf(" n=%d", o.Requests)
		if e := o.Errors.Total(); e > 0 {
			for c := graph.ErrorClass(0); c < graph.NumErrorClasses; c++ {
				if o.Errors[c] > 0 {
					s += " err=" + c.String()
				}
			}
		}
		if o.Latency == nil {
			s += fmt.Sprintf(" lat=%g", o.LatencyMs)
		} else {
			s += " lat=none"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func svc(name string) graph.Node {
	return Identity{}.NodeFromResource(&ResourceAttrs{ServiceName: name})
}

// sp builds a span: trace t, id, parent (0 = root), service, kind, start offset and duration in ms.
func sp(t byte, id, parent byte, service string, kind SpanKind, startMs, durMs int64, opts ...func(*Span)) Span {
	s := Span{Kind: kind, Service: svc(service), GRPCStatus: -1}
	s.TraceID[0], s.TraceID[15] = 1, t
	s.SpanID[7] = id
	s.ParentID[7] = parent
	s.StartUnixNano = t0.Add(time.Duration(startMs) * time.Millisecond).UnixNano()
	s.EndUnixNano = s.StartUnixNano + durMs*int64(time.Millisecond)
	for _, o := range opts {
		o(&s)
	}
	return s
}

func peer(p Peer) func(*Span)             { return func(s *Span) { s.Peer = p } }
func withStatus(c StatusCode) func(*Span) { return func(s *Span) { s.Status = c } }
func httpCode(c uint16) func(*Span)       { return func(s *Span) { s.HTTPStatus = c } }
func ratio(r float64) func(*Span)         { return func(s *Span) { s.SamplingRatio = r } }
func grpcCode(c int16) func(*Span) {
	return func(s *Span) { s.GRPCStatus = c; s.Protocol = graph.ProtoGRPC }
}

func TestPairer(t *testing.T) {
	cases := []struct {
		name    string
		batches [][]Span
		want    []string
		paired  uint64
		virtual uint64
		noEdge  uint64
	}{
		{
			name: "client then server",
			batches: [][]Span{
				{sp(1, 1, 0, "frontend", KindClient, 0, 30)},
				{sp(1, 2, 1, "customer", KindServer, 2, 25)},
			},
			want:   []string{"frontend->customer n=1 lat=25"},
			paired: 2,
		},
		{
			name: "server before client, both in one batch",
			batches: [][]Span{{
				sp(1, 2, 1, "customer", KindServer, 2, 25),
				sp(1, 1, 0, "frontend", KindClient, 0, 30),
			}},
			want:   []string{"frontend->customer n=1 lat=25"},
			paired: 2,
		},
		{
			name: "unpaired client to a database",
			batches: [][]Span{
				{sp(1, 1, 0, "orders", KindClient, 0, 4, peer(Peer{DBSystem: "postgresql", DBNamespace: "orders"}))},
			},
			want:    []string{"orders->postgresql/orders[database] n=1 lat=4"},
			virtual: 1,
		},
		{
			name: "unpaired client named by url host and by peer.service",
			batches: [][]Span{{
				sp(1, 1, 0, "checkout", KindClient, 0, 80, peer(Peer{HTTPHost: "api.stripe.com"})),
				sp(2, 1, 0, "checkout", KindClient, 0, 5, peer(Peer{Service: "payments", Address: "10.0.0.7"})),
				sp(3, 1, 0, "checkout", KindProducer, 0, 1, peer(Peer{MessagingSystem: "kafka", MessagingDestination: "orders"})),
				sp(4, 1, 0, "checkout", KindClient, 0, 1),
			}},
			want: []string{
				"checkout->api.stripe.com[external] n=1 lat=80",
				"checkout->kafka/orders[queue] n=1 lat=1",
				"checkout->payments[external] n=1 lat=5",
				"checkout->unknown-peer[external] n=1 lat=1",
			},
			virtual: 4,
		},
		{
			name: "peer that names an instrumented service is that service",
			batches: [][]Span{{
				sp(1, 1, 0, "payments", KindServer, 0, 5),
				sp(2, 1, 0, "checkout", KindClient, 0, 9, peer(Peer{Address: "payments.shop.svc.cluster.local"})),
			}},
			want:    []string{"checkout->payments n=1 lat=9", "unknown->payments n=1 lat=5"},
			virtual: 2,
		},
		{
			name: "root server and server whose caller never arrives",
			batches: [][]Span{{
				sp(1, 1, 0, "frontend", KindServer, 0, 100),
				sp(2, 2, 9, "route", KindServer, 0, 50),
			}},
			want:    []string{"unknown->frontend n=1 lat=100", "unknown->route n=1 lat=50"},
			virtual: 2,
		},
		{
			name: "hotrod: client span recorded under the database's own name",
			batches: [][]Span{
				{sp(1, 1, 0, "frontend", KindClient, 0, 300)},
				{
					sp(1, 2, 1, "customer", KindServer, 1, 290),
					sp(1, 3, 2, "mysql", KindClient, 2, 280, peer(Peer{Service: "mysql", DBSystem: "mysql"})),
				},
			},
			want:   []string{"customer->mysql[database] n=1 lat=280", "frontend->customer n=1 lat=290"},
			paired: 3,
		},
		{
			name: "hotrod: redis driver spans under their own service name, no peer attributes",
			batches: [][]Span{{
				sp(1, 1, 0, "driver", KindServer, 0, 100),
				sp(1, 2, 1, "redis-manual", KindClient, 1, 10),
				sp(1, 3, 1, "redis-manual", KindClient, 12, 10),
				sp(2, 1, 0, "customer", KindServer, 0, 100),
				sp(2, 2, 1, "mysql", KindClient, 1, 90, peer(Peer{Service: "mysql"})),
			}},
			want: []string{
				"customer->mysql[database] n=1 lat=90",
				"driver->redis-manual[database] n=1 lat=10", "driver->redis-manual[database] n=1 lat=10",
				"unknown->customer n=1 lat=100", "unknown->driver n=1 lat=100",
			},
			paired: 5,
		},
		{
			name: "envoy ingress gateway: both hops as CLIENT",
			batches: [][]Span{{
				sp(1, 1, 0, "istio-ingressgateway", KindClient, 0, 40, peer(Peer{HTTPHost: "bookinfo.example.com"})),
				sp(1, 2, 1, "istio-ingressgateway", KindClient, 1, 38, peer(Peer{Address: "productpage.bookinfo.svc.cluster.local"})),
				sp(1, 3, 2, "productpage", KindServer, 2, 35),
			}},
			want:    []string{"istio-ingressgateway->productpage n=1 lat=35", "unknown->istio-ingressgateway n=1 lat=40"},
			paired:  2,
			virtual: 1,
		},
		{
			name: "internal span crossing services and internal span within one",
			batches: [][]Span{{
				sp(1, 1, 0, "api", KindServer, 0, 20),
				sp(1, 2, 1, "api", KindInternal, 1, 18),
				sp(1, 3, 2, "worker", KindInternal, 2, 15),
			}},
			want:    []string{"api->worker n=1 lat=15", "unknown->api n=1 lat=20"},
			paired:  2,
			noEdge:  0,
			virtual: 1,
		},
		{
			name: "producer to consumer, and a consumer of a queue with no producer span",
			batches: [][]Span{{
				sp(1, 1, 0, "orders", KindProducer, 0, 2, peer(Peer{MessagingSystem: "kafka", MessagingDestination: "orders"})),
				sp(1, 2, 1, "shipping", KindConsumer, 50, 10),
				sp(2, 1, 0, "billing", KindConsumer, 0, 3, peer(Peer{MessagingSystem: "kafka", MessagingDestination: "invoices"})),
			}},
			want:    []string{"kafka/invoices->billing n=1 lat=3", "orders->shipping n=1 lat=10"},
			paired:  2,
			virtual: 1,
		},
		{
			name: "status from either side",
			batches: [][]Span{{
				sp(1, 1, 0, "a", KindClient, 0, 10, withStatus(StatusError)),
				sp(1, 2, 1, "b", KindServer, 0, 9, httpCode(503)),
				sp(2, 1, 0, "a", KindClient, 0, 10, withStatus(StatusError)),
				sp(2, 2, 1, "b", KindServer, 0, 9),
				sp(3, 1, 0, "a", KindClient, 0, 10),
				sp(3, 2, 1, "b", KindServer, 0, 9, grpcCode(14)),
				sp(4, 1, 0, "a", KindClient, 0, 10, httpCode(404)),
				sp(4, 2, 1, "b", KindServer, 0, 9),
				sp(5, 1, 0, "a", KindClient, 0, 10, withStatus(StatusError), peer(Peer{Service: "c"})),
			}},
			want: []string{
				"a->b n=1 err=4xx lat=9",
				"a->b n=1 err=5xx lat=9",
				"a->b n=1 err=5xx lat=9",
				"a->b n=1 err=grpc lat=9",
				"a->c[external] n=1 err=noResponse lat=10",
			},
			paired:  8,
			virtual: 1,
		},
		{
			name: "sampling ratio scales counts",
			batches: [][]Span{{
				sp(1, 1, 0, "a", KindClient, 0, 10, ratio(0.25)),
				sp(1, 2, 1, "b", KindServer, 0, 9, ratio(0.25)),
			}},
			want:   []string{"a->b n=4 lat=9"},
			paired: 2,
		},
		{
			name: "absurd durations keep the call but not the latency",
			batches: [][]Span{{
				sp(1, 1, 0, "a", KindClient, 0, -5),
				sp(1, 2, 1, "b", KindServer, 0, 10*365*24*3600*1000),
				sp(2, 1, 0, "a", KindClient, 0, 7),
				sp(2, 2, 1, "b", KindServer, 0, -1),
			}},
			want:   []string{"a->b n=1 lat=7", "a->b n=1 lat=none"},
			paired: 4,
		},
		{
			name: "zipkin shared span",
			batches: [][]Span{{
				sp(1, 2, 1, "frontend", KindClient, 0, 12),
				sp(1, 2, 1, "backend", KindServer, 1, 10, func(s *Span) {}),
				sp(1, 1, 0, "frontend", KindServer, 0, 15),
			}},
			want:    []string{"frontend->backend n=1 lat=10", "unknown->frontend n=1 lat=15"},
			paired:  2,
			virtual: 1,
		},
		{
			name: "telemetrygen: client and server in one service",
			batches: [][]Span{{
				sp(1, 1, 0, "telemetrygen", KindClient, 0, 2, peer(Peer{Service: "telemetrygen-server"})),
				sp(1, 2, 1, "telemetrygen", KindServer, 0, 1, peer(Peer{Service: "telemetrygen-client"})),
			}},
			want:   []string{"telemetrygen->telemetrygen n=1 lat=1"},
			paired: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			p := NewPairer(PairerConfig{}, sink)
			p.Expire(t0)
			for i, b := range tc.batches {
				p.Add(b)
				p.Expire(t0.Add(time.Duration(i) * time.Second))
			}
			p.Expire(t0.Add(time.Minute))
			got := edges(sink.all())
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("calls:\n got %q\nwant %q", got, tc.want)
			}
			for _, o := range sink.all() {
				if o.Src == o.Dst && o.Src.Name() != "telemetrygen" {
					t.Errorf("self-loop %s", o.Src.Name())
				}
				if o.Signal != graph.SignalTraces {
					t.Errorf("signal %v", o.Signal)
				}
			}
			st := p.Stats()
			if st.Paired != tc.paired || st.Virtual != tc.virtual || st.NoEdge != tc.noEdge {
				t.Errorf("stats paired/virtual/noEdge = %d/%d/%d, want %d/%d/%d",
					st.Paired, st.Virtual, st.NoEdge, tc.paired, tc.virtual, tc.noEdge)
			}
			if st.Added != st.Paired+st.Virtual+st.NoEdge || st.InFlight != 0 {
				t.Errorf("unaccounted spans: %+v", st)
			}
		})
	}
}

func TestPairerSharedSpanFlag(t *testing.T) {
	// A shared server half must not also pair with its parent by the
	// cross-service rule (it would count the call twice).
	sink := &memSink{}
	p := NewPairer(PairerConfig{}, sink)
	p.Add([]Span{sp(1, 1, 0, "frontend", KindServer, 0, 15)})
	p.Add([]Span{sp(1, 2, 1, "frontend", KindClient, 0, 12)})
	p.Add([]Span{sp(1, 2, 1, "backend", KindServer, 1, 10)})
	p.Flush()
	want := []string{"frontend->backend n=1 lat=10", "unknown->frontend n=1 lat=15"}
	if got := edges(sink.all()); !slices.Equal(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestPairerBoundedStore(t *testing.T) {
	sink := &memSink{}
	p := NewPairer(PairerConfig{MaxSpans: 1000, Expiry: time.Minute}, sink)
	p.Expire(t0)
	var batch []Span
	for i := 0; i < 5000; i++ {
		s := sp(byte(i), byte(i>>8)+1, 0, "a", KindClient, 0, 1, peer(Peer{Service: "b"}))
		s.TraceID[1], s.TraceID[2] = byte(i), byte(i>>8)
		batch = append(batch, s)
	}
	p.Add(batch)
	st := p.Stats()
	if st.InFlight > 1024 || st.Evicted < 3976 {
		t.Fatalf("store not bounded: %+v", st)
	}
	// The oldest went first: the newest span is still held and pairs.
	last := batch[len(batch)-1]
	srv := sp(0, 0, 0, "b", KindServer, 0, 1)
	srv.TraceID, srv.ParentID, srv.SpanID = last.TraceID, last.SpanID, SpanID{9, 9}
	p.Add([]Span{srv})
	p.Flush()
	st = p.Stats()
	if st.Paired != 2 || st.Added != st.Paired+st.Virtual+st.NoEdge {
		t.Fatalf("after flush: %+v", st)
	}
}

func TestPairerRejects(t *testing.T) {
	p := NewPairer(PairerConfig{}, nil)
	s := sp(1, 1, 0, "a", KindServer, 0, 1)
	noTrace := s
	noTrace.TraceID = TraceID{}
	noSpan := s
	noSpan.SpanID = SpanID{}
	p.Add([]Span{s, s, noTrace, noSpan})
	if st := p.Stats(); st.Dropped != 3 || st.Added != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPairerClockSkew(t *testing.T) {
	sink := &memSink{}
	p := NewPairer(PairerConfig{}, sink)
	p.Expire(t0)
	old := sp(1, 1, 0, "a", KindServer, 0, 1)
	old.StartUnixNano = t0.AddDate(-10, 0, 0).UnixNano()
	old.EndUnixNano = old.StartUnixNano + 1e6
	p.Add([]Span{old})
	obs := sink.all()
	if len(obs) != 1 || !obs[0].Time.Equal(t0) || p.Stats().Skewed != 1 {
		t.Fatalf("obs %+v stats %+v", obs, p.Stats())
	}
}
