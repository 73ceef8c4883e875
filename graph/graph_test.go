package graph

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func wl(ns, workload, app, version string) Node {
	return Node{Cluster: "Kubernetes", Namespace: ns, Workload: workload, App: app, Version: version,
		Service: app + "." + ns + ".svc.cluster.local", Kind: KindWorkload}
}

var (
	productpage = wl("bookinfo", "productpage-v1", "productpage", "v1")
	reviewsV1   = wl("bookinfo", "reviews-v1", "reviews", "v1")
	reviewsV2   = wl("bookinfo", "reviews-v2", "reviews", "v2")
	ratings     = wl("bookinfo", "ratings-v1", "ratings", "v1")
)

func obs(at time.Time, src, dst Node, n, errs uint64, ms float64) Observation {
	o := Observation{Time: at, Src: src, Dst: dst, Protocol: ProtoHTTP, Requests: n, LatencyMs: ms,
		Reporter: ReporterDestination, Signal: SignalMetrics, Security: SecurityMTLS}
	o.Errors[Err5xx] = errs
	if errs > 0 {
		o.ResponseCode = 503
		o.ResponseFlags = ParseFlags("UF,URX")
	}
	return o
}

func newTestGraph(tb testing.TB) *Graph {
	tb.Helper()
	g := New(Config{Resolution: 10 * time.Second, Window: time.Hour})
	g.Advance(t0)
	return g
}

func edgeBetween(tb testing.TB, s *Snapshot, src, dst string) *EdgeSnapshot {
	tb.Helper()
	for i := range s.Edges {
		if s.Edges[i].Source.Label(s.View) == src && s.Edges[i].Target.Label(s.View) == dst {
			return &s.Edges[i]
		}
	}
	tb.Fatalf("no edge %s -> %s in %d edges", src, dst, len(s.Edges))
	return nil
}

func TestSnapshotRatesErrorsAndLatency(t *testing.T) {
	g := newTestGraph(t)
	// One minute of traffic: 10 req/s productpage->reviews-v1 at 20ms, 1% errors.
	for i := 0; i < 60; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		g.Ingest([]Observation{obs(at, productpage, reviewsV1, 10, 0, 20)})
		if i%10 == 0 {
			g.Ingest([]Observation{obs(at, productpage, reviewsV1, 6, 6, 200)})
		}
	}
	g.Advance(t0.Add(time.Minute))
	s, err := g.Snapshot(Query{Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e := edgeBetween(t, s, "productpage-v1", "reviews-v1")
	if e.Stats.Requests != 636 {
		t.Errorf("requests %d, want 636", e.Stats.Requests)
	}
	if e.Stats.Errors[Err5xx] != 36 || e.Stats.Codes[503] != 36 || e.Stats.Flags["UF"] != 36 {
		t.Errorf("errors %v codes %v flags %v", e.Stats.Errors, e.Stats.Codes, e.Stats.Flags)
	}
	if p50 := e.Stats.Latency.Quantile(0.5); math.Abs(p50-20) > 0.2 {
		t.Errorf("p50 %v, want ~20", p50)
	}
	if p99 := e.Stats.Latency.Quantile(0.99); math.Abs(p99-200) > 2 {
		t.Errorf("p99 %v, want ~200", p99)
	}
	if e.Stats.MTLSShare() != 1 {
		t.Errorf("mtls share %v", e.Stats.MTLSShare())
	}
	if got := s.Seconds(); got != 60 {
		t.Errorf("window %vs", got)
	}
}

func TestViewsProjectNodes(t *testing.T) {
	tests := []struct {
		view      View
		wantNodes int
		wantEdges int
		edgeSrc   string
		edgeDst   string
		wantReq   uint64
	}{
		{ViewWorkload, 4, 3, "reviews-v2", "ratings-v1", 5},
		{ViewApp, 3, 2, "productpage", "reviews", 20},
		{ViewVersionedApp, 4, 3, "reviews v2", "ratings v1", 5},
		{ViewService, 3, 2, "productpage", "reviews", 20},
	}
	g := newTestGraph(t)
	g.Ingest([]Observation{
		obs(t0, productpage, reviewsV1, 10, 0, 5),
		obs(t0, productpage, reviewsV2, 10, 0, 5),
		obs(t0, reviewsV2, ratings, 5, 0, 2),
	})
	g.Advance(t0.Add(10 * time.Second))
	for _, tc := range tests {
		t.Run(tc.view.String(), func(t *testing.T) {
			s, err := g.Snapshot(Query{View: tc.view, Window: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Nodes) != tc.wantNodes || len(s.Edges) != tc.wantEdges {
				t.Fatalf("%d nodes %d edges, want %d/%d", len(s.Nodes), len(s.Edges), tc.wantNodes, tc.wantEdges)
			}
			if e := edgeBetween(t, s, tc.edgeSrc, tc.edgeDst); e.Stats.Requests != tc.wantReq {
				t.Errorf("requests %d, want %d", e.Stats.Requests, tc.wantReq)
			}
		})
	}
}

func TestSourceAndDestinationReportsAreNotAddedUp(t *testing.T) {
	g := newTestGraph(t)
	dst := obs(t0, productpage, reviewsV1, 100, 1, 30)
	src := dst
	src.Reporter = ReporterSource
	src.LatencyMs = 33 // the caller also sees the network and its own proxy
	tr := dst
	tr.Signal, tr.Reporter, tr.Requests = SignalTraces, ReporterServerSpan, 25 // sampled traces
	g.Ingest([]Observation{dst, src, tr})
	g.Advance(t0.Add(10 * time.Second))
	s, _ := g.Snapshot(Query{Window: 10 * time.Second})
	e := edgeBetween(t, s, "productpage-v1", "reviews-v1")
	if e.Stats.Requests != 100 {
		t.Errorf("requests %d, want 100 (destination view only)", e.Stats.Requests)
	}
	if e.SourceReported == nil || e.SourceReported.Requests != 100 || math.Abs(e.SourceReported.Latency.Quantile(0.5)-33) > 0.5 {
		t.Errorf("source-reported view %+v", e.SourceReported)
	}
	if e.Stats.Signals != SignalMetrics|SignalTraces {
		t.Errorf("signals %v, want metrics and traces", e.Stats.Signals.Names())
	}
}

func TestMissingIdentityGoesToUnknown(t *testing.T) {
	g := newTestGraph(t)
	g.Ingest([]Observation{{Time: t0, Dst: reviewsV1, Requests: 3}, {Time: t0, Src: productpage, Requests: 2}})
	g.Advance(t0.Add(10 * time.Second))
	s, err := g.Snapshot(Query{Window: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	edgeBetween(t, s, "unknown", "reviews-v1")
	edgeBetween(t, s, "productpage-v1", "unknown")
}

func TestBucketCloseHooksAndWindow(t *testing.T) {
	g := New(Config{Resolution: 10 * time.Second, Window: time.Minute})
	var closed []BucketClosed
	g.OnBucketClose(func(b BucketClosed) { closed = append(closed, b) })
	g.Advance(t0)
	g.Ingest([]Observation{obs(t0, productpage, reviewsV1, 1, 0, 1)})
	// The bucket before t0 was still in its grace at the first Advance; with a
	// grace of one bucket, [t0-10s, t0+20s) is final now.
	g.Advance(t0.Add(35 * time.Second))
	if len(closed) != 3 || !closed[0].End.Equal(t0) || !closed[2].End.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("closed %v", closed)
	}
	// Late data for a final bucket is folded into the oldest open one, not lost.
	g.Ingest([]Observation{obs(t0.Add(time.Second), productpage, reviewsV1, 4, 0, 1)})
	if c := g.Counters(); c.Late != 1 || c.Observations != 2 {
		t.Errorf("counters %+v", c)
	}
	s, _ := g.Snapshot(Query{Window: time.Minute})
	if e := edgeBetween(t, s, "productpage-v1", "reviews-v1"); e.Stats.Requests != 5 {
		t.Errorf("requests %d, want 5", e.Stats.Requests)
	}
	// Past the window everything is gone and old data is refused.
	g.Advance(t0.Add(3 * time.Minute))
	g.Ingest([]Observation{obs(t0, productpage, reviewsV1, 1, 0, 1)})
	if c := g.Counters(); c.TooOld != 1 || c.Edges != 0 {
		t.Errorf("after window: %+v", c)
	}
}

func TestBadQueries(t *testing.T) {
	g := newTestGraph(t)
	for _, q := range []Query{{Window: -time.Second}, {Window: 2 * time.Hour}, {View: 9}} {
		if _, err := g.Snapshot(q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("Snapshot(%+v) err %v, want ErrBadQuery", q, err)
		}
	}
	for _, s := range []string{"workload", "app", "versionedApp", "versioned-app", "SERVICE", ""} {
		if _, err := ParseView(s); err != nil {
			t.Errorf("ParseView(%q): %v", s, err)
		}
	}
	if _, err := ParseView("pods"); err == nil {
		t.Error("ParseView(pods) accepted")
	}
}

func TestNamespaceFilter(t *testing.T) {
	g := newTestGraph(t)
	other := wl("shop", "cart-v1", "cart", "v1")
	g.Ingest([]Observation{obs(t0, productpage, reviewsV1, 1, 0, 1), obs(t0, other, other, 1, 0, 1), obs(t0, other, ratings, 1, 0, 1)})
	g.Advance(t0.Add(10 * time.Second))
	s, _ := g.Snapshot(Query{Window: 10 * time.Second, Namespaces: []string{"bookinfo"}})
	if len(s.Edges) != 2 {
		t.Errorf("%d edges, want 2 (either end in bookinfo)", len(s.Edges))
	}
}

// A snapshot is taken under one lock: with writers adding matched pairs of
// observations in one batch, every snapshot sees both or neither.
func TestSnapshotConsistentUnderConcurrentWrites(t *testing.T) {
	g := newTestGraph(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 20000; i++ {
				at := t0.Add(time.Duration(i%50) * time.Second)
				g.Ingest([]Observation{obs(at, productpage, reviewsV1, 1, 0, 3), obs(at, reviewsV1, ratings, 1, 0, 1)})
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			g.Advance(t0.Add(time.Duration(i) * time.Second))
		}
	}()
	for i := 0; i < 200; i++ {
		s, err := g.Snapshot(Query{Window: 10 * time.Minute, At: t0.Add(10 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		var a, b uint64
		for _, e := range s.Edges {
			if e.Target.Workload == reviewsV1.Workload { // projected: compare by name
				a = e.Stats.Requests
			} else {
				b = e.Stats.Requests
			}
		}
		if a != b {
			cancel()
			wg.Wait()
			t.Fatalf("inconsistent snapshot: %d vs %d", a, b)
		}
	}
	cancel()
	wg.Wait()
}

func TestHistoryPerBucket(t *testing.T) {
	g := newTestGraph(t)
	for i := 0; i < 6; i++ {
		g.Ingest([]Observation{obs(t0.Add(time.Duration(i)*10*time.Second), productpage, reviewsV1, uint64(i+1), 0, 10)})
	}
	g.Advance(t0.Add(time.Minute))
	src := ViewApp.Project(productpage)
	start, hs, err := g.History(EdgeFilter{View: ViewApp, Source: &src}, time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !start.Equal(t0) || len(hs) != 6 {
		t.Fatalf("start %v, %d buckets", start, len(hs))
	}
	for i, h := range hs {
		if h.Requests != uint64(i+1) {
			t.Errorf("bucket %d: %d requests", i, h.Requests)
		}
	}
}

func TestStartShutdownIdempotent(t *testing.T) {
	g := New(Config{})
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := g.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodeIDRoundTrip(t *testing.T) {
	for _, n := range []Node{productpage, UnknownNode, {Kind: KindDatabase, Workload: "mysql"}} {
		got, err := ParseNodeID(n.ID())
		if err != nil || got != n {
			t.Errorf("ParseNodeID(%q) = %+v, %v", n.ID(), got, err)
		}
	}
	for _, bad := range []string{"", "workload|a", "pod|a|b|c|d|e|f"} {
		if _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
}

func TestConnectFailuresOnlyTheCallerSeesShowOnTheEdge(t *testing.T) {
	g := newTestGraph(t)
	dst := obs(t0, productpage, reviewsV1, 100, 0, 10)
	src := dst
	src.Reporter = ReporterSource
	failed := Observation{Time: t0, Src: productpage, Dst: reviewsV1, Requests: 5, Reporter: ReporterSource,
		Signal: SignalMetrics, ResponseFlags: ParseFlags("UF")}
	failed.Errors[ErrConnectFailure] = 5
	g.Ingest([]Observation{dst, src, failed})
	g.Advance(t0.Add(10 * time.Second))
	s, _ := g.Snapshot(Query{Window: 10 * time.Second})
	e := edgeBetween(t, s, "productpage-v1", "reviews-v1")
	if e.Stats.Requests != 105 || e.Stats.Errors[ErrConnectFailure] != 5 || e.Stats.Flags["UF"] != 5 {
		t.Errorf("edge stats %d requests, errors %v, flags %v; want the 5 connect failures counted", e.Stats.Requests, e.Stats.Errors, e.Stats.Flags)
	}
	if e.Stats.Latency.Count() != 100 {
		t.Errorf("latency from %d requests, want the destination's 100", e.Stats.Latency.Count())
	}
}

func TestCardinalityCapsFoldIntoOverflow(t *testing.T) {
	g := New(Config{MaxNodes: 10, MaxEdges: 8, MaxLabelLen: 16})
	g.Advance(t0)
	var batch []Observation
	for i := 0; i < 100; i++ {
		// A client spraying random service names.
		dst := Node{Namespace: "spam", Workload: fmt.Sprintf("random-%03d", i), Kind: KindWorkload}
		batch = append(batch, obs(t0, productpage, dst, 1, 0, 1))
	}
	long := Node{Namespace: "bookinfo", Workload: strings.Repeat("é", 40), Kind: KindWorkload}
	batch = append(batch, obs(t0, productpage, long, 1, 0, 1))
	g.Ingest(batch)
	g.Advance(t0.Add(10 * time.Second))
	c := g.Counters()
	if c.Nodes > 11 || c.Edges > 9 {
		t.Fatalf("caps not held: %d nodes, %d edges", c.Nodes, c.Edges)
	}
	if c.Overflowed == 0 {
		t.Fatal("no observation counted as overflowed")
	}
	s, _ := g.Snapshot(Query{Window: 10 * time.Second})
	var total uint64
	var sawOverflow bool
	for _, e := range s.Edges {
		total += e.Stats.Requests
		if e.Target == OverflowNode {
			sawOverflow = true
		}
		if len(e.Target.Workload) > 16 || !utf8.ValidString(e.Target.Workload) {
			t.Errorf("label not cut on a rune boundary: %q", e.Target.Workload)
		}
	}
	if !sawOverflow || total != 101 {
		t.Errorf("overflow edge %v, %d requests kept, want all 101", sawOverflow, total)
	}
}

func TestDefaultClusterJoinsDialects(t *testing.T) {
	g := New(Config{DefaultCluster: "Kubernetes"})
	g.Advance(t0)
	fromTraces := Observation{Time: t0, Src: Node{Namespace: "bookinfo", Workload: "productpage-v1", App: "productpage", Kind: KindWorkload},
		Dst: Node{Namespace: "bookinfo", Workload: "reviews-v1", App: "reviews", Kind: KindWorkload}, Requests: 1, Signal: SignalTraces}
	fromIstio := obs(t0, productpage, reviewsV1, 1, 0, 1)
	g.Ingest([]Observation{fromTraces, fromIstio})
	g.Advance(t0.Add(10 * time.Second))
	s, _ := g.Snapshot(Query{Window: 10 * time.Second})
	if len(s.Edges) != 1 || s.Edges[0].Stats.Signals != SignalMetrics|SignalTraces {
		t.Fatalf("%d edges; want one seen by both signals", len(s.Edges))
	}
}

func TestLocalOverflowOnlyTheCallerSeesShowsOnTheEdge(t *testing.T) {
	g := newTestGraph(t)
	dst := obs(t0, productpage, reviewsV1, 100, 2, 10) // the callee answered 2 of them with 503
	src := dst
	src.Reporter = ReporterSource
	overflow := Observation{Time: t0, Src: productpage, Dst: reviewsV1, Requests: 7, Reporter: ReporterSource,
		Signal: SignalMetrics, ResponseCode: 503, ResponseFlags: ParseFlags("UO")}
	overflow.Errors[Err5xx] = 7 // circuit breaker in the caller's proxy: never reached reviews
	g.Ingest([]Observation{dst, src, overflow})
	g.Advance(t0.Add(10 * time.Second))
	s, _ := g.Snapshot(Query{Window: 10 * time.Second})
	e := edgeBetween(t, s, "productpage-v1", "reviews-v1")
	if e.Stats.Requests != 107 || e.Stats.Errors[Err5xx] != 9 || e.Stats.Codes[503] != 9 || e.Stats.Flags["UO"] != 7 {
		t.Errorf("edge %d requests, errors %v, codes %v, flags %v; want the caller's 107/9", e.Stats.Requests, e.Stats.Errors, e.Stats.Codes, e.Stats.Flags)
	}
}

// A workload reported first with its labels, then also without them (a
// tracing SDK), is one node in the workload view, including after a
// snapshot taken while only the first identity was known.
func TestSnapshotMergesIdentityAddedLater(t *testing.T) {
	g := newTestGraph(t)
	res := g.Resolution()
	g.Ingest([]Observation{obs(t0, productpage, reviewsV1, 5, 0, 10)})
	g.Advance(t0.Add(2 * res))
	s, err := g.Snapshot(Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || len(s.Edges) != 1 {
		t.Fatalf("before: %d nodes, %d edges, want 2 and 1", len(s.Nodes), len(s.Edges))
	}
	bare := reviewsV1
	bare.App, bare.Version = "", ""
	g.Ingest([]Observation{obs(t0.Add(res), productpage, bare, 3, 0, 10)})
	s, err = g.Snapshot(Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || len(s.Edges) != 1 || s.Edges[0].Stats.Requests != 8 {
		t.Fatalf("after: %d nodes, %d edges (%+v), want 2 and 1 with 8 requests", len(s.Nodes), len(s.Edges), s.Edges)
	}
}

// radixSort on the bits above an ascending index is a full sort.
func TestRadixSortMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ n, keyBits, idxBits uint }{{1, 5, 1}, {3000, 11, 12}, {5000, 29, 13}, {20000, 40, 15}} {
		keys := make([]uint64, tc.n)
		for i := range keys {
			keys[i] = r.Uint64()&(1<<tc.keyBits-1)<<tc.idxBits | uint64(i)
		}
		want := slices.Clone(keys)
		slices.Sort(want)
		radixSort(keys, tc.idxBits, tc.keyBits+tc.idxBits)
		if !slices.Equal(keys, want) {
			t.Errorf("n %d, %d key bits: not sorted", tc.n, tc.keyBits)
		}
	}
}
