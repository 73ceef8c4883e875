package detect

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// TraceSpan is what the trace-structure detector needs of a span: where it
// sits in its trace, which service recorded it, its operation and times.
type TraceSpan struct {
	Trace      [16]byte
	ID, Parent [8]byte // Parent zero for a root span
	Node       graph.Node
	Operation  string
	Start, End int64 // unix nanoseconds
}

// spanShape is one span's direct children by kind, its self time and the
// one other service it calls when it does nothing else.
type spanShape struct {
	children map[string]int
	selfMs   float64
	peer     graph.Node
	peerSet  bool // a call to one other service and nothing else
}

// shapeIndex keys a span by trace and ID.
type shapeIndex struct {
	t [16]byte
	s [8]byte
}

// shapes works out, for the spans whose index is in want (all when want is
// nil), their direct children among spans (same trace, parent ID) by kind —
// the callee service for calls to other services, the operation for the
// service's own internal spans — and their self time (duration minus the
// children's, not below 0).
func shapes(spans []TraceSpan, want []int) map[int]*spanShape {
	idx := make(map[shapeIndex]int, len(want))
	out := make(map[int]*spanShape, len(want))
	add := func(i int) {
		idx[shapeIndex{spans[i].Trace, spans[i].ID}] = i
		out[i] = &spanShape{}
	}
	if want == nil {
		for i := range spans {
			add(i)
		}
	} else {
		for _, i := range want {
			add(i)
		}
	}
	childNs := make(map[int]int64, len(out))
	mixed := map[int]bool{}
	for i := range spans {
		c := &spans[i]
		if c.Parent == ([8]byte{}) {
			continue
		}
		p, ok := idx[shapeIndex{c.Trace, c.Parent}]
		if !ok || p == i {
			continue
		}
		sh := out[p]
		k := "op:" + c.Operation
		if spans[p].Node.ID() != c.Node.ID() {
			k = "call:" + c.Node.Name()
			switch {
			case len(sh.children) == 0:
				sh.peer, sh.peerSet = c.Node, true
			case !sh.peerSet || sh.peer.ID() != c.Node.ID():
				mixed[p] = true // calls more than one service
			}
		} else {
			mixed[p] = true // does work of its own
		}
		if sh.children == nil {
			sh.children = map[string]int{}
		}
		sh.children[k]++
		childNs[p] += c.End - c.Start
	}
	for i, sh := range out {
		sh.selfMs = math.Max(float64(spans[i].End-spans[i].Start-childNs[i]), 0) / 1e6
		if mixed[i] {
			sh.peer, sh.peerSet = graph.Node{}, false
		}
	}
	return out
}

// OpStatsOf aggregates the spans at idx into per-operation stats of one
// window; their children are looked up among all of spans. Calls to one
// other service are told apart by callee (each link has its own network
// time) and named "OPERATION -> CALLEE".
func OpStatsOf(spans []TraceSpan, idx []int) []OpStat {
	sh := shapes(spans, idx)
	type key struct{ node, op, peer string }
	type acc struct {
		st   OpStat
		self []float64
	}
	byOp := map[key]*acc{}
	var order []key
	for _, i := range idx {
		s := &spans[i]
		h := sh[i]
		k := key{s.Node.ID(), s.Operation, ""}
		if h.peerSet {
			k.peer = h.peer.ID()
		}
		a := byOp[k]
		if a == nil {
			a = &acc{st: OpStat{Node: s.Node, Operation: s.Operation, Children: map[string]int{}}}
			if h.peerSet {
				a.st.Peer = h.peer
				a.st.Operation += " -> " + h.peer.Name()
			}
			byOp[k] = a
			order = append(order, k)
		}
		a.st.Spans++
		for c, v := range h.children {
			a.st.Children[c] += v
		}
		a.self = append(a.self, h.selfMs)
	}
	out := make([]OpStat, 0, len(order))
	for _, k := range order {
		a := byOp[k]
		slices.Sort(a.self)
		a.st.SelfMs = a.self[len(a.self)/2]
		out = append(out, a.st)
	}
	return out
}

// SpanWindows holds recent spans of live traffic until their window is
// judged: a window's spans are measured once their children have had time
// to arrive. Safe for concurrent use.
type SpanWindows struct {
	mu      sync.Mutex
	max     int
	spans   []TraceSpan
	dropped uint64
}

// NewSpanWindows holds at most max spans; beyond that new spans are
// dropped (and counted) until windows are taken.
func NewSpanWindows(max int) *SpanWindows { return &SpanWindows{max: max} }

// Add copies spans in.
func (w *SpanWindows) Add(spans []TraceSpan) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.max - len(w.spans)
	if room < len(spans) {
		w.dropped += uint64(len(spans) - max(room, 0))
		spans = spans[:max(room, 0)]
	}
	w.spans = append(w.spans, spans...)
}

// Take returns the op stats of the spans that started in [from, to) and
// forgets every span that started before to: later windows measure later
// spans, and a child needs its parent only to be counted for it.
func (w *SpanWindows) Take(from, to time.Time) []OpStat {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, t := from.UnixNano(), to.UnixNano()
	var idx []int
	for i := range w.spans {
		if s := w.spans[i].Start; s >= f && s < t {
			idx = append(idx, i)
		}
	}
	var out []OpStat
	if len(idx) > 0 {
		out = OpStatsOf(w.spans, idx)
	}
	w.spans = slices.DeleteFunc(w.spans, func(s TraceSpan) bool { return s.Start < t })
	return out
}

// Dropped is how many spans did not fit.
func (w *SpanWindows) Dropped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}
