package detect

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

func TestSpanWindows(t *testing.T) {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	at := func(ms int) int64 { return t0.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	tr := [16]byte{1}
	span := func(id, parent byte, n, op string, startMs, durMs int) TraceSpan {
		s := TraceSpan{Trace: tr, ID: [8]byte{id}, Node: node(n), Operation: op, Start: at(startMs), End: at(startMs + durMs)}
		if parent != 0 {
			s.Parent = [8]byte{parent}
		}
		return s
	}
	w := NewSpanWindows(100, 30*time.Second)
	// frontend's GET /cart calls cart (a client span, then cart's server
	// span with a query of its own); a later request in the next window.
	w.Add([]TraceSpan{
		span(1, 0, "frontend", "GET /cart", 1000, 50),
		span(2, 1, "frontend", "HTTP GET", 1005, 40),
		span(3, 2, "cart", "GetCart", 1010, 30),
		span(4, 3, "cart", "SELECT carts", 1015, 10),
	})
	w.Add([]TraceSpan{span(9, 0, "frontend", "GET /cart", 40_000, 5)})

	ops := w.Take(t0, t0.Add(30*time.Second))
	got := map[string]OpStat{}
	for _, o := range ops {
		got[o.Node.Name()+" "+o.Operation] = o
	}
	if len(got) != 4 {
		t.Fatalf("ops %v, want 4", got)
	}
	call := got["frontend HTTP GET -> cart"]
	if call.Spans != 1 || call.Peer.Name() != "cart" || call.Children["call:cart"] != 1 || call.SelfMs != 10 {
		t.Errorf("the call to cart: %+v; want one span, peer cart, 10ms of network time", call)
	}
	if g := got["cart GetCart"]; g.Children["op:SELECT carts"] != 1 || g.SelfMs != 20 || !g.Peer.IsZero() {
		t.Errorf("cart GetCart: %+v; want one SELECT child, 20ms self, no peer", g)
	}
	if r := got["frontend GET /cart"]; r.SelfMs != 10 || r.Children["op:HTTP GET"] != 1 {
		t.Errorf("frontend GET /cart: %+v; want 10ms self and its HTTP GET child", r)
	}
	next := w.Take(t0.Add(30*time.Second), t0.Add(time.Minute))
	if len(next) != 1 || next[0].Spans != 1 {
		t.Errorf("next window: %+v, want the later request alone (the first window's spans forgotten)", next)
	}
	if again := w.Take(t0, t0.Add(time.Minute)); len(again) != 0 {
		t.Errorf("taking again: %+v, want nothing", again)
	}

	full := NewSpanWindows(2, 30*time.Second)
	full.Add([]TraceSpan{span(1, 0, "a", "x", 0, 1), span(2, 0, "a", "x", 1, 1), span(3, 0, "a", "x", 2, 1)})
	if d, _ := full.Dropped(); d != 1 {
		t.Errorf("dropped %d, want 1 beyond the bound", d)
	}
	full.Take(t0, t0.Add(30*time.Second))
	full.Add([]TraceSpan{span(4, 0, "a", "x", 10, 1)})
	if d, _ := full.Dropped(); d != 2 {
		t.Errorf("dropped %d, want the span of an already taken window dropped too", d)
	}
	// A span stamped days ahead (a broken clock) is not held.
	full.Add([]TraceSpan{span(5, 0, "a", "x", 3*24*3600*1000, 1)})
	if d, _ := full.Dropped(); d != 3 {
		t.Errorf("dropped %d, want the span stamped days ahead dropped", d)
	}
}

// Above half its bound (the budget) a window's traffic makes the next
// window sample whole traces by ID: about the budget is kept, every trace
// whole or not at all.
func TestSpanWindowsSampleTraces(t *testing.T) {
	node := graph.Node{Workload: "a", App: "a", Kind: graph.KindWorkload}
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	w := NewSpanWindows(1000, 30*time.Second)
	traffic := func(win int) []TraceSpan {
		var out []TraceSpan
		for i := 0; i < 1000; i++ { // 1000 traces of two spans: 4x the budget of 500 spans
			tr := [16]byte{byte(win), byte(i), byte(i >> 8), 0x5a}
			start := t0.Add(time.Duration(win)*30*time.Second + time.Duration(i)*time.Millisecond).UnixNano()
			out = append(out,
				TraceSpan{Trace: tr, ID: [8]byte{1}, Node: node, Operation: "root", Start: start, End: start + 2e6},
				TraceSpan{Trace: tr, ID: [8]byte{2}, Parent: [8]byte{1}, Node: node, Operation: "child", Start: start + 1e6, End: start + 2e6})
		}
		return out
	}
	w.Add(traffic(0))
	w.Take(t0, t0.Add(30*time.Second))
	w.Add(traffic(1))
	ops := w.Take(t0.Add(30*time.Second), t0.Add(time.Minute))
	got := map[string]OpStat{}
	for _, o := range ops {
		got[o.Operation] = o
	}
	root, child := got["root"], got["child"]
	if kept := root.Spans + child.Spans; kept < 400 || kept > 600 || root.Spans != child.Spans || root.Children["op:child"] != root.Spans {
		t.Errorf("sampled window: %d roots, %d children (%v); want about 500 spans in whole traces", root.Spans, child.Spans, root.Children)
	}
	if _, skipped := w.Dropped(); skipped != uint64(2000-root.Spans-child.Spans) {
		t.Errorf("skipped %d, want the %d spans not kept", skipped, 2000-root.Spans-child.Spans)
	}
}

// Live traces end to end: spans go into SpanWindows, Structure.Attach judges
// each window on the graph's bucket clock once it has settled, and the
// suspects endpoint ranks the service whose own work slowed first.
func TestStructureAttachAndSuspects(t *testing.T) {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	gw, travel := node("gateway"), node("travel")
	g := graph.New(graph.Config{Resolution: 10 * time.Second, Window: time.Hour})
	eng, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultStructureConfig()
	st, err := NewStructure(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := NewSpanWindows(cfg.MaxSpans, cfg.Window)
	eng.Attach(g) // the engine's clock: the graph's buckets
	st.Attach(g, w)
	eng.SetRecentRank(RecentRankConfig{Recent: 10 * time.Minute, Tau: 5 * time.Minute, Added: st})

	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	var id byte
	request := func(at time.Time, selfMs int) []TraceSpan {
		ms := func(d int) int64 { return at.Add(time.Duration(d) * time.Millisecond).UnixNano() }
		id++
		tr := [16]byte{id, 7}
		return []TraceSpan{
			{Trace: tr, ID: [8]byte{1}, Node: gw, Operation: "GET /trips", Start: ms(0), End: ms(selfMs + 12)},
			{Trace: tr, ID: [8]byte{2}, Parent: [8]byte{1}, Node: gw, Operation: "HTTP GET", Start: ms(1), End: ms(selfMs + 11)},
			{Trace: tr, ID: [8]byte{3}, Parent: [8]byte{2}, Node: travel, Operation: "/trips/left", Start: ms(2), End: ms(selfMs + 10)},
			{Trace: tr, ID: [8]byte{4}, Parent: [8]byte{3}, Node: travel, Operation: "SELECT trips", Start: ms(3), End: ms(5)},
		}
	}
	step := 3 * time.Second
	var fired []Anomaly
	eng.Subscribe(func(c Change) {
		if c.Action == "fired" && c.Anomaly != nil {
			fired = append(fired, *c.Anomaly)
		}
	})
	end := t0.Add(25 * time.Minute)
	for at := t0; at.Before(end); at = at.Add(step) {
		self := 5 + int(at.Unix()%3)
		if !at.Before(t0.Add(22 * time.Minute)) {
			self = 120 // travel's own work slows
		}
		w.Add(request(at, self))
		g.Advance(at.Add(step))
	}
	var travelFired bool
	for _, a := range fired {
		if a.Subject.Node != nil && a.Subject.Node.Name == "travel" && a.Metric == "trace_structure" {
			travelFired = true
		}
	}
	if !travelFired {
		t.Fatalf("no trace-structure anomaly on travel; fired %d anomalies", len(fired))
	}
	rec := httptest.NewRecorder()
	eng.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/suspects?window=5m", nil))
	var body struct {
		Window   string      `json:"window"`
		Suspects []RootCause `json:"suspects"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("suspects: %d %s", rec.Code, rec.Body.String())
	}
	if body.Window != "5m0s" || len(body.Suspects) == 0 || body.Suspects[0].Node.Name != "travel" || !strings.Contains(body.Suspects[0].Explanation, "its own work added") {
		t.Errorf("suspects %+v (window %s), want travel first with the time it added", body.Suspects, body.Window)
	}
	rec = httptest.NewRecorder()
	eng.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/suspects?window=forever", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "window") {
		t.Errorf("bad window: %d %s, want 400 naming the window", rec.Code, rec.Body.String())
	}
}

// A link's network time splits into the request leg (client start to the
// callee's start) and the response leg (callee's end to client end).
func TestOpStatsLegs(t *testing.T) {
	basic, station := graph.Node{Workload: "basic"}, graph.Node{Workload: "station"}
	ms := func(v int) int64 { return int64(v) * int64(time.Millisecond) }
	var spans []TraceSpan
	var idx []int
	// client (req, resp) legs: (10, 10), (5, 40), (20, 30)
	for i, leg := range [][2]int{{10, 10}, {5, 40}, {20, 30}} {
		var tr [16]byte
		tr[0] = byte(i + 1)
		c := TraceSpan{Trace: tr, ID: [8]byte{1}, Node: basic, Operation: "HTTP GET", Start: 0, End: ms(100)}
		s := TraceSpan{Trace: tr, ID: [8]byte{2}, Parent: [8]byte{1}, Node: station, Operation: "/stations", Start: ms(leg[0]), End: ms(100 - leg[1])}
		idx = append(idx, len(spans))
		spans = append(spans, c, s)
	}
	stats := OpStatsOf(spans, idx)
	if len(stats) != 1 || stats[0].Peer != station {
		t.Fatalf("stats = %+v, want one link to station", stats)
	}
	if st := stats[0]; st.ReqMs != 10 || st.RespMs != 30 || st.SelfMs != 45 {
		t.Errorf("req %.1f resp %.1f self %.1f ms, want medians 10, 30, 45", st.ReqMs, st.RespMs, st.SelfMs)
	}
	// An operation doing its own work has no legs.
	own := OpStatsOf(spans, []int{1})
	if len(own) != 1 || !math.IsNaN(own[0].ReqMs) || !math.IsNaN(own[0].RespMs) {
		t.Errorf("server span stats %+v, want NaN legs", own)
	}
}
