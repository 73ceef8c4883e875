package detect

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// missingLat stands for "no latency in this bucket" in exported rings (JSON has no NaN).
const missingLat = -1000

// State is the engine's baseline state, JSON-serialisable, for restoring
// baselines after a restart. Detector state machines and anomalies are not
// part of it: they restart cold (anomalies are kept by storage).
type State struct {
	Version    int            `json:"version"`
	Start      time.Time      `json:"start"`
	Last       time.Time      `json:"last"`
	Resolution time.Duration  `json:"resolution"`
	Subjects   []SubjectState `json:"subjects"`
	Edges      []EdgeState    `json:"edges"`
	Nodes      []NodeState    `json:"nodes"`
	// Structure holds the trace-structure detector's baselines, when the
	// engine has one.
	Structure *StructureState `json:"structure,omitempty"`
}

// SubjectState is one subject's ring, oldest bucket first.
type SubjectState struct {
	Key        string         `json:"key"`
	Kind       string         `json:"kind"`
	Source     graph.Node     `json:"source"`
	Target     graph.Node     `json:"target"`
	Protocol   graph.Protocol `json:"protocol"`
	Newest     time.Time      `json:"newest"`
	LastActive time.Time      `json:"lastActive"`
	Requests   []float32      `json:"requests"`
	LogLatency [3][]float32   `json:"logLatency"` // p50, p95, p99; -1000 = none
	Errors     [4][]uint32    `json:"errors"`     // 5xx, grpc, noResponse, connectFailure
	Plain      []uint32       `json:"plain"`
	Units      []uint32       `json:"units"`
	Excluded   []uint8        `json:"excluded"`
}

// EdgeState is one edge of the learned edge baseline.
type EdgeState struct {
	Source  graph.Node `json:"source"`
	Target  graph.Node `json:"target"`
	First   time.Time  `json:"first"`
	Last    time.Time  `json:"last"`
	Learned bool       `json:"learned"`
}

// NodeState records when a node was first and last seen (for new versions).
type NodeState struct {
	ID    string    `json:"id"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// ExportState copies the baselines out.
func (e *Engine) ExportState() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := State{Version: 1, Start: e.start, Last: e.last, Resolution: e.res}
	for _, s := range e.subjects {
		n := s.filled
		ss := SubjectState{Key: s.key, Kind: s.kind, Source: s.src, Target: s.dst, Protocol: s.proto, Newest: s.newest, LastActive: s.lastActive}
		for j := n - 1; j >= 0; j-- {
			i := s.slotBack(j)
			ss.Requests = append(ss.Requests, s.req[i])
			for q := range s.lat {
				v := s.lat[q][i]
				if math.IsNaN(float64(v)) {
					v = missingLat
				}
				ss.LogLatency[q] = append(ss.LogLatency[q], v)
			}
			for c := range s.errs {
				ss.Errors[c] = append(ss.Errors[c], s.errs[c][i])
			}
			ss.Plain = append(ss.Plain, s.plain[i])
			ss.Units = append(ss.Units, s.units[i])
			ss.Excluded = append(ss.Excluded, s.excl[i])
		}
		st.Subjects = append(st.Subjects, ss)
	}
	for _, k := range e.known {
		st.Edges = append(st.Edges, EdgeState{Source: k.src, Target: k.dst, First: k.first, Last: k.last, Learned: k.learned})
	}
	for id, n := range e.nodes {
		st.Nodes = append(st.Nodes, NodeState{ID: id, First: n.first, Last: n.last})
	}
	if e.structure != nil {
		st.Structure = e.structure.exportState()
	}
	return st
}

// ImportState restores baselines exported by ExportState. Call it before the
// first Observe; it replaces whatever baselines the engine holds.
func (e *Engine) ImportState(st State) error {
	if st.Version != 1 {
		return fmt.Errorf("import detect state: unsupported version %d", st.Version)
	}
	w := e.cfg.BaselineBuckets
	subjects := make(map[string]*subject, len(st.Subjects))
	for _, ss := range st.Subjects {
		n := len(ss.Requests)
		ok := len(ss.Plain) == n && len(ss.Units) == n && len(ss.Excluded) == n
		for q := range ss.LogLatency {
			ok = ok && len(ss.LogLatency[q]) == n
		}
		for c := range ss.Errors {
			ok = ok && len(ss.Errors[c]) == n
		}
		if !ok {
			return fmt.Errorf("import detect state: subject %s: ring lengths differ", ss.Key)
		}
		switch ss.Kind {
		case SubjectEdge, SubjectNodeIn, SubjectNodeOut:
		default:
			return fmt.Errorf("import detect state: subject %s: unknown kind %q", ss.Key, ss.Kind)
		}
		s := newSubject(ss.Key, ss.Kind, w)
		s.src, s.dst, s.proto = ss.Source, ss.Target, ss.Protocol
		thr, on := e.cfg.thresholdsFor(ss.Target)
		s.thr, s.off = thr, !on
		// Keep the newest w buckets when the window shrank.
		from := max(0, n-w)
		for i := from; i < n; i++ {
			sm := sample{t: ss.Newest.Add(-time.Duration(n-1-i) * st.Resolution), n: uint64(ss.Requests[i]), plain: uint64(ss.Plain[i]), units: uint64(ss.Units[i])}
			for q := range sm.lat {
				v := float64(ss.LogLatency[q][i])
				if v == missingLat || !finite(v) {
					v = math.NaN()
				}
				sm.lat[q] = v
			}
			for c := range sm.errs {
				sm.errs[c] = uint64(ss.Errors[c][i])
			}
			s.write(&sm, ss.Excluded[i])
		}
		s.lastActive = ss.LastActive
		subjects[ss.Key] = s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subjects = subjects
	e.start, e.last, e.res = st.Start, st.Last, st.Resolution
	e.known = make(map[string]*edgeSeen, len(st.Edges))
	for _, es := range st.Edges {
		k := newEdgeSeen(es.Source, es.Target)
		k.first, k.last, k.learned = es.First, es.Last, es.Learned
		k.policy, k.polDeny = e.policyFor(es.Source, es.Target)
		e.known[k.srcID+">"+k.dstID] = k
	}
	e.nodes = make(map[string]*nodeSeen, len(st.Nodes))
	for _, n := range st.Nodes {
		e.nodes[n.ID] = &nodeSeen{first: n.First, last: n.Last}
	}
	if e.structure != nil && st.Structure != nil {
		e.structure.importState(st.Structure)
	}
	return nil
}

// StructureState is the trace-structure detector's baselines: per service
// operation its decayed span and child counts and recent self times, per
// service its judged/hot counts and recent added times.
type StructureState struct {
	Ops   []StructOpState   `json:"ops"`
	Nodes []StructNodeState `json:"nodes"`
}

// StructOpState is one operation's baseline.
type StructOpState struct {
	Node      graph.Node         `json:"node"`
	Operation string             `json:"operation"`
	N         float64            `json:"n"`
	Children  map[string]float64 `json:"children,omitempty"`
	SelfLog   []float64          `json:"selfLog,omitempty"` // log(ms + minSelfMs) of recent windows
	Legs      [][2]float64       `json:"legs,omitempty"`    // a link's request and response legs (ms) of recent windows
}

// StructNodeState is one service's structure history.
type StructNodeState struct {
	ID     string    `json:"id"`
	Judged int       `json:"judged"`
	Hot    int       `json:"hot"`
	Excess []float64 `json:"excess,omitempty"`
}

// exportState copies the baselines out; the engine's lock is held.
func (s *Structure) exportState() *StructureState {
	st := &StructureState{}
	for _, b := range s.ops {
		st.Ops = append(st.Ops, StructOpState{Node: b.node, Operation: b.op, N: b.n, Children: maps.Clone(b.children), SelfLog: slices.Clone(b.selfLog), Legs: slices.Clone(b.legs)})
	}
	for id, n := range s.nodes {
		st.Nodes = append(st.Nodes, StructNodeState{ID: id, Judged: n.judged, Hot: n.hot, Excess: slices.Clone(n.excess)})
	}
	return st
}

// importState replaces the baselines with st's; the engine's lock is held.
// What the bounds of live state would not hold (too many operations or
// child kinds, long histories, values that are not finite) is left out.
func (s *Structure) importState(st *StructureState) {
	s.ops = map[string]*opBase{}
	s.nodes = map[string]*structNode{}
	for _, o := range st.Ops {
		if len(s.ops) >= maxOps || !finite(o.N) || o.N < 0 || len(o.Operation) > maxImportKey || len(o.Node.ID()) > maxImportKey {
			continue
		}
		k := opKey(o.Node, o.Operation)
		if s.ops[k] != nil {
			continue
		}
		b := s.newOp(k, o.Node, o.Operation)
		b.n = o.N
		for c, v := range o.Children {
			if len(b.children) < maxChildKinds && finite(v) && v >= 0 && len(c) <= maxImportKey {
				b.children[c] = v
			}
		}
		for _, v := range lastN(o.SelfLog, selfWindows) {
			if finite(v) {
				b.selfLog = append(b.selfLog, v)
			}
		}
		for _, v := range lastN(o.Legs, selfWindows) {
			if finite(v[0]) && finite(v[1]) {
				b.legs = append(b.legs, v)
			}
		}
	}
	for _, ns := range st.Nodes {
		n := s.nodes[ns.ID]
		if n == nil {
			continue // no operation baseline: nothing to judge it against
		}
		n.judged, n.hot = max(ns.Judged, 0), min(max(ns.Hot, 0), max(ns.Judged, 0))
		for _, v := range lastN(ns.Excess, selfWindows) {
			if finite(v) {
				n.excess = append(n.excess, v)
			}
		}
	}
}

// maxImportKey bounds the operation names, node IDs and child keys an
// imported state may hold (live ones are clipped by the receivers).
const maxImportKey = 4096

// lastN is the last n elements of xs.
func lastN[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[len(xs)-n:]
	}
	return xs
}
