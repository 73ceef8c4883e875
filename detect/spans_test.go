package detect

import (
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
	w := NewSpanWindows(100)
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

	full := NewSpanWindows(2)
	full.Add([]TraceSpan{span(1, 0, "a", "x", 0, 1), span(2, 0, "a", "x", 1, 1), span(3, 0, "a", "x", 2, 1)})
	if full.Dropped() != 1 {
		t.Errorf("dropped %d, want 1 beyond the bound", full.Dropped())
	}
}
