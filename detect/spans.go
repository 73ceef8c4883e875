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
	childNs  int64
	selfMs   float64
	peer     graph.Node // the service of the first child, when it is another one; zero once mixed
	mixed    bool       // calls more than one service or does work of its own
	// first and last: the earliest start and latest end of its children
	// in other services, for the request and response legs of a link.
	first, last int64
}

// shapeIndex keys a span by trace and ID.
type shapeIndex struct {
	t [16]byte
	s [8]byte
}

// shapes works out, for the spans at want, their direct children among
// spans (same trace, parent ID) by kind — the callee service for calls to
// other services, the operation for the service's own internal spans — and
// their self time (duration minus the children's, not below 0). out[k] is
// the shape of spans[want[k]].
func shapes(spans []TraceSpan, want []int) []spanShape {
	idx := make(map[shapeIndex]int32, len(want))
	for k, i := range want {
		idx[shapeIndex{spans[i].Trace, spans[i].ID}] = int32(k)
	}
	out := make([]spanShape, len(want))
	for i := range spans {
		c := &spans[i]
		if c.Parent == ([8]byte{}) {
			continue
		}
		k, ok := idx[shapeIndex{c.Trace, c.Parent}]
		if !ok || want[k] == i {
			continue
		}
		sh := &out[k]
		kind := "op:" + c.Operation
		if spans[want[k]].Node != c.Node {
			kind = "call:" + c.Node.Name()
			if sh.first == 0 || c.Start < sh.first {
				sh.first = c.Start
			}
			sh.last = max(sh.last, c.End)
			if len(sh.children) == 0 {
				sh.peer = c.Node
			} else if sh.peer != c.Node {
				sh.mixed = true
			}
		} else {
			sh.mixed = true
		}
		if sh.children == nil {
			sh.children = map[string]int{}
		}
		sh.children[kind]++
		sh.childNs += c.End - c.Start
	}
	for k, i := range want {
		sh := &out[k]
		sh.selfMs = math.Max(float64(spans[i].End-spans[i].Start-sh.childNs), 0) / 1e6
		if sh.mixed {
			sh.peer = graph.Node{}
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
	type key struct {
		node graph.Node
		op   string
		peer graph.Node
	}
	type acc struct {
		st        OpStat
		self      []float64
		req, resp []float64
	}
	byOp := map[key]*acc{}
	var order []key
	for n, i := range idx {
		s := &spans[i]
		h := &sh[n]
		k := key{node: s.Node, op: s.Operation, peer: h.peer}
		a := byOp[k]
		if a == nil {
			a = &acc{st: OpStat{Node: s.Node, Operation: s.Operation, Children: map[string]int{}, Peer: h.peer}}
			if !h.peer.IsZero() {
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
		if !h.peer.IsZero() && h.first != 0 {
			a.req = append(a.req, float64(h.first-s.Start)/1e6)
			a.resp = append(a.resp, float64(s.End-h.last)/1e6)
		}
	}
	out := make([]OpStat, 0, len(order))
	for _, k := range order {
		a := byOp[k]
		slices.Sort(a.self)
		a.st.SelfMs = a.self[len(a.self)/2]
		a.st.ReqMs, a.st.RespMs = math.NaN(), math.NaN()
		if len(a.req) > 0 {
			slices.Sort(a.req)
			slices.Sort(a.resp)
			a.st.ReqMs, a.st.RespMs = a.req[len(a.req)/2], a.resp[len(a.resp)/2]
		}
		out = append(out, a.st)
	}
	return out
}

// SpanWindows holds recent spans of live traffic until their window is
// judged: a window's spans are measured once their children have had time
// to arrive. Spans are kept per window of the width given, so taking one
// window touches only it and the next (where late children start). Safe
// for concurrent use.
type SpanWindows struct {
	mu      sync.Mutex
	max     int
	width   int64 // window width, ns
	held    int
	byWin   map[int64][]TraceSpan // window index -> spans that start in it
	offered map[int64]int         // window index -> spans offered
	done    int64                 // windows before this index were taken
	dropped uint64
	skipped uint64
}

// NewSpanWindows holds at most limit spans in windows of width; beyond that,
// and for windows already taken, new spans are dropped (and counted). When
// a window was offered more than limit/2 spans, the next one keeps whole
// traces sampled by trace ID to about that many: structure statistics need
// a fair sample, not every trace, and a bound on work.
func NewSpanWindows(limit int, width time.Duration) *SpanWindows {
	return &SpanWindows{max: limit, width: max(width.Nanoseconds(), 1), byWin: map[int64][]TraceSpan{},
		offered: map[int64]int{}, done: math.MinInt64}
}

// maxAhead is how many windows past the last judged one a span may start
// in; maxOffered bounds the windows whose traffic is counted, so spans
// stamped all over time cannot grow memory.
const (
	maxAhead   = 240
	maxOffered = 1024
)

// keepRatio is the share of traces window k keeps, from what the window
// before it was offered.
func (w *SpanWindows) keepRatio(k int64) float64 {
	prev, budget := w.offered[k-1], w.max/2
	if prev <= budget {
		return 1
	}
	return float64(budget) / float64(prev)
}

// traceUnit maps a trace ID to [0, 1), evenly for random IDs.
func traceUnit(t [16]byte) float64 {
	var h uint64
	for _, b := range t {
		h = (h ^ uint64(b)) * 0x100000001b3
	}
	h ^= h >> 29
	return float64(h>>11) / (1 << 53)
}

// win is the index of the window t (unix ns) falls in.
func (w *SpanWindows) win(t int64) int64 {
	k := t / w.width
	if t < 0 && t%w.width != 0 {
		k--
	}
	return k
}

// Add copies spans in.
func (w *SpanWindows) Add(spans []TraceSpan) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range spans {
		k := w.win(spans[i].Start)
		if k < w.done || w.done != math.MinInt64 && k > w.done+maxAhead {
			w.dropped++ // judged already, or absurdly far ahead
			continue
		}
		if _, ok := w.offered[k]; ok || len(w.offered) < maxOffered {
			w.offered[k]++
		}
		if r := w.keepRatio(k); r < 1 && traceUnit(spans[i].Trace) >= r {
			w.skipped++
			continue
		}
		if w.held >= w.max {
			w.dropped++
			continue
		}
		w.byWin[k] = append(w.byWin[k], spans[i])
		w.held++
	}
}

// Take returns the op stats of the spans that started in [from, to) and
// forgets every window that ends by to: later windows measure later spans,
// and a child needs its parent only to be counted for it.
func (w *SpanWindows) Take(from, to time.Time) []OpStat {
	all, idx := w.take(from, to)
	if len(idx) == 0 {
		return nil
	}
	// Measured outside the lock: the receivers' taps keep adding meanwhile.
	return OpStatsOf(all, idx)
}

// take copies out the spans Take measures (idx: those that start in
// [from, to); all: with the next window's, where late children start) and
// forgets the windows that end by to.
func (w *SpanWindows) take(from, to time.Time) (all []TraceSpan, idx []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, t := from.UnixNano(), to.UnixNano()
	first, last := w.win(f), w.win(t-1)
	var keys []int64
	for k := range w.byWin {
		if k >= first && k <= last+1 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		ss := w.byWin[k]
		for i := range ss {
			if s := ss[i].Start; s >= f && s < t {
				idx = append(idx, len(all)+i)
			}
		}
		all = append(all, ss...)
	}
	end := w.win(t)
	for k, ss := range w.byWin {
		if k < end {
			w.held -= len(ss)
			delete(w.byWin, k)
		}
	}
	for k := range w.offered {
		if k < end-1 { // the last taken window still sets the next one's ratio
			delete(w.offered, k)
		}
	}
	w.done = max(w.done, end)
	return all, idx
}

// Dropped is how many spans did not fit or came after their window was
// taken; Skipped how many were left out by trace sampling.
func (w *SpanWindows) Dropped() (dropped, skipped uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped, w.skipped
}
