package nezha

import (
	"math"
	"slices"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// spanShape is what the structure detector needs of one span: its
// operation, its direct children by kind, and its self time.
type spanShape struct {
	children map[string]int
	selfMs   float64
	peer     string // the one other service the span calls, if it calls nothing else
}

// shapes links every span to its direct children (same trace, parent ID)
// and works out its child kinds (the callee service for calls to other
// services, the operation for the service's own internal spans) and self
// time (duration minus the children's, not below 0).
func shapes(spans []Span) []spanShape {
	parent := parents(spans)
	out := make([]spanShape, len(spans))
	childNs := make([]int64, len(spans))
	for i := range spans {
		c := &spans[i]
		p := parent[i]
		if p < 0 {
			continue
		}
		k := "op:" + c.Operation
		if spans[p].Service != c.Service {
			k = "call:" + c.Service
			switch pe := &out[p].peer; {
			case len(out[p].children) == 0:
				*pe = c.Service
			case *pe != c.Service:
				*pe = "\x00" // calls more than one service
			}
		} else {
			out[p].peer = "\x00" // does work of its own
		}
		if out[p].children == nil {
			out[p].children = map[string]int{}
		}
		out[p].children[k]++
		childNs[p] += c.End - c.Start
	}
	for i := range spans {
		out[i].selfMs = math.Max(float64(spans[i].End-spans[i].Start-childNs[i]), 0) / 1e6
		if out[i].peer == "\x00" {
			out[i].peer = ""
		}
	}
	return out
}

// parents is the index of each span's parent in spans (same trace, parent
// ID), -1 for roots and spans whose parent is not in the data.
func parents(spans []Span) []int {
	type key struct {
		t [16]byte
		s [8]byte
	}
	idx := make(map[key]int, len(spans))
	for i := range spans {
		idx[key{spans[i].TraceID, spans[i].SpanID}] = i
	}
	out := make([]int, len(spans))
	for i := range spans {
		out[i] = -1
		if !spans[i].ParentID.IsZero() {
			if p, ok := idx[key{spans[i].TraceID, spans[i].ParentID}]; ok {
				out[i] = p
			}
		}
	}
	return out
}

// opStats aggregates spans [i, j) into per-operation stats of one window.
func opStats(spans []Span, sh []spanShape, i, j int, nodes map[string]graph.Node) []detect.OpStat {
	type acc struct {
		st   detect.OpStat
		self []float64
	}
	byOp := map[[3]string]*acc{}
	var order [][3]string
	for k := i; k < j; k++ {
		s := &spans[k]
		peer := sh[k].peer
		// Calls are told apart by callee: each link has its own network time.
		key := [3]string{s.Service, s.Operation, peer}
		a := byOp[key]
		if a == nil {
			a = &acc{st: detect.OpStat{Node: nodeIn(nodes, s.Service), Operation: s.Operation, Children: map[string]int{}}}
			if peer != "" {
				a.st.Peer = nodeIn(nodes, peer)
				a.st.Operation += " -> " + peer
			}
			byOp[key] = a
			order = append(order, key)
		}
		a.st.Spans++
		for c, v := range sh[k].children {
			a.st.Children[c] += v
		}
		a.self = append(a.self, sh[k].selfMs)
	}
	out := make([]detect.OpStat, 0, len(order))
	for _, key := range order {
		a := byOp[key]
		slices.Sort(a.self)
		a.st.SelfMs = a.self[len(a.self)/2]
		out = append(out, a.st)
	}
	return out
}
