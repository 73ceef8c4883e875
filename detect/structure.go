package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// OpStat is what the spans of one service operation looked like in one
// window: how many there were, what they called per span, and their self
// time. Code that returns early or throws changes this shape (calls per span
// drop or vanish, an error handler's operation appears) even when durations
// and the mesh's edge rates barely move.
type OpStat struct {
	Node      graph.Node
	Operation string
	Spans     int
	// Children counts the direct child spans by kind: opaque keys, e.g. the
	// callee's node ID for calls to other services and the operation for
	// the service's own internal spans.
	Children map[string]int
	// SelfMs is the median self time (duration minus direct children) of
	// the window's spans; NaN or <= 0 when unknown.
	SelfMs float64
}

// StructureConfig tunes the trace-structure detector.
type StructureConfig struct {
	MinBaseline float64 `yaml:"minBaseline"` // baseline spans of an operation before it is judged; default 20
	Threshold   float64 `yaml:"threshold"`   // node score (sum of log-likelihood ratios) to fire; default 20
	// Decay is the weight the baseline keeps per observed window, so it
	// follows slow changes of the request mix; default 0.99.
	Decay        float64 `yaml:"decay"`
	SelfRatio    float64 `yaml:"selfRatio"`    // smallest self-time ratio that counts; default 2
	MinSelfMs    float64 `yaml:"minSelfMs"`    // self times are compared as log(ms + this); default 1
	ResolveAfter int     `yaml:"resolveAfter"` // cold windows in a row to resolve; default 2
	// NoiseWeight raises a node's threshold by this times the share of its
	// judged windows that were hot: chronically unstable services need more.
	NoiseWeight float64 `yaml:"noiseWeight"` // default 4
	AdaptAfter  int     `yaml:"adaptAfter"`  // hot windows in a row after which the baseline learns anyway; default 20
}

// DefaultStructureConfig is the trace-structure detector's default tuning.
func DefaultStructureConfig() StructureConfig {
	return StructureConfig{MinBaseline: 20, Threshold: 20, Decay: 0.99, SelfRatio: 2, MinSelfMs: 1, ResolveAfter: 2, NoiseWeight: 4, AdaptAfter: 20}
}

// Validate lists the problems of c.
func (c StructureConfig) Validate() []string {
	var p []string
	if c.MinBaseline < 1 {
		p = append(p, "minBaseline: must be >= 1")
	}
	if c.Threshold <= 0 {
		p = append(p, "threshold: must be > 0")
	}
	if c.Decay <= 0 || c.Decay > 1 {
		p = append(p, "decay: must be in (0, 1]")
	}
	if c.SelfRatio <= 1 {
		p = append(p, "selfRatio: must be > 1")
	}
	if c.MinSelfMs < 0 {
		p = append(p, "minSelfMs: must be >= 0")
	}
	if c.ResolveAfter < 1 {
		p = append(p, "resolveAfter: must be >= 1")
	}
	if c.NoiseWeight < 0 {
		p = append(p, "noiseWeight: must be >= 0")
	}
	if c.AdaptAfter < 1 {
		p = append(p, "adaptAfter: must be >= 1")
	}
	return p
}

// Structure compares each service operation's call structure and self time
// with its own baseline and raises node anomalies on services whose own
// behaviour changed. Calls per span are judged per parent operation, so a
// drop on the edge S->T while S keeps serving blames S, the caller, and not
// T; T's own changes show in T's operations.
type Structure struct {
	e     *Engine
	cfg   StructureConfig
	ops   map[string]*opBase
	nodes map[string]*structNode
	self  []float64
}

type opBase struct {
	n        float64            // decayed span count
	children map[string]float64 // decayed child counts
	selfLog  []float64          // recent window medians of log(self ms + floor), bounded
}

type structNode struct {
	ops          []string // op keys of the node, for its operation mix
	judged, hot  int
	firing       *Anomaly
	cold, hotRun int
}

// NewStructure builds the trace-structure detector of e; it starts nothing.
func NewStructure(e *Engine, cfg StructureConfig) (*Structure, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("detect structure config: %s", strings.Join(p, "; "))
	}
	return &Structure{e: e, cfg: cfg, ops: map[string]*opBase{}, nodes: map[string]*structNode{}}, nil
}

// llr is the Poisson log-likelihood ratio of observing obs where exp was
// expected (0 when they agree).
func llr(obs, exp float64) float64 {
	if exp <= 0 {
		return 0
	}
	v := exp - obs
	if obs > 0 {
		v += obs * math.Log(obs/exp)
	}
	return 2 * v
}

type reason struct {
	score float64
	text  string
}

// NodeStructureScore is one node's structure verdict of a window.
type NodeStructureScore struct {
	Node    graph.Node
	Score   float64
	Reasons []string // strongest first
	Judged  bool     // some operation had a baseline to compare with
}

// Observe judges one window [t, t+step) of operation stats and updates the
// engine's anomalies and incidents. Windows must come in time order; call it
// for empty windows too (nil ops), so anomalies of services that stopped
// showing up resolve.
func (s *Structure) Observe(t time.Time, step time.Duration, ops []OpStat) []NodeStructureScore {
	e := s.e
	e.mu.Lock()
	end := t.Add(step)
	scores := s.judge(ops)
	seen := make(map[string]bool, len(scores))
	for i := range scores {
		seen[scores[i].Node.ID()] = true
		s.step(&scores[i], t, end)
	}
	// A service with no spans in a window shows no change: count the
	// window cold, so anomalies resolve across gaps in the traces too.
	for id, n := range s.nodes {
		if n.firing == nil || seen[id] {
			continue
		}
		n.hotRun = 0
		if n.cold++; n.cold >= s.cfg.ResolveAfter {
			e.resolve(n.firing, end)
			n.firing, n.cold = nil, 0
		}
	}
	s.learn(ops, scores)
	e.updateIncidents(end)
	changes := e.pending
	e.pending = nil
	subs := make([]func(Change), 0, len(e.subs))
	for i := 0; i < e.nextSub; i++ {
		if fn, ok := e.subs[i]; ok {
			subs = append(subs, fn)
		}
	}
	e.mu.Unlock()
	for _, c := range changes {
		for _, fn := range subs {
			fn(c)
		}
	}
	return scores
}

func opKey(n graph.Node, op string) string { return n.ID() + "\x00" + op }

// judge scores each node of the window against the baselines.
func (s *Structure) judge(ops []OpStat) []NodeStructureScore {
	byNode := map[string]int{}
	var out []NodeStructureScore
	var why [][]reason
	add := func(n graph.Node, r reason) {
		id := n.ID()
		j, ok := byNode[id]
		if !ok {
			j = len(out)
			byNode[id] = j
			out = append(out, NodeStructureScore{Node: n})
			why = append(why, nil)
		}
		out[j].Score += r.score
		why[j] = append(why[j], r)
	}
	for i := range ops {
		o := &ops[i]
		add(o.Node, reason{})
		b := s.ops[opKey(o.Node, o.Operation)]
		k := float64(o.Spans)
		if b == nil || b.n < s.cfg.MinBaseline || k <= 0 {
			continue
		}
		out[byNode[o.Node.ID()]].Judged = true
		// Calls per span of this operation, by child kind.
		for c, bc := range b.children {
			obs := float64(o.Children[c])
			exp := k * bc / b.n
			if v := llr(obs, exp); v > 0 {
				add(o.Node, reason{v, fmt.Sprintf("%s: %s %.2f/span vs %.2f", o.Operation, c, obs/k, bc/b.n)})
			}
		}
		for c, n := range o.Children {
			if _, ok := b.children[c]; ok {
				continue
			}
			// Never seen under this operation: expect at most half a call
			// over the whole baseline.
			if v := llr(float64(n), k*0.5/b.n); v > 0 {
				add(o.Node, reason{v, fmt.Sprintf("%s: new %s %.2f/span", o.Operation, c, float64(n)/k)})
			}
		}
		// Self time against the medians of earlier windows.
		if o.SelfMs > 0 && len(b.selfLog) >= 5 {
			s.self = append(s.self[:0], b.selfLog...)
			slices.Sort(s.self)
			med := quantileSorted(s.self, 0.5)
			x := math.Log(o.SelfMs + s.cfg.MinSelfMs)
			if d := x - med; d >= math.Log(s.cfg.SelfRatio) {
				// Robust z against the spread of earlier window medians:
				// a steady operation that slows 50x is surer than a
				// jittery database call that does.
				for i := range s.self {
					s.self[i] = math.Abs(s.self[i] - med)
				}
				slices.Sort(s.self)
				z := math.Min(d/math.Max(1.4826*quantileSorted(s.self, 0.5), 0.1), 10)
				add(o.Node, reason{2 * z * math.Sqrt(k), fmt.Sprintf("%s: self time %.3gms vs %.3gms", o.Operation, o.SelfMs, math.Exp(med)-s.cfg.MinSelfMs)})
			}
		}
	}
	for j := range out {
		slices.SortFunc(why[j], func(a, b reason) int {
			if c := cmpF(b.score, a.score); c != 0 {
				return c
			}
			return strings.Compare(a.text, b.text)
		})
		for _, r := range why[j] {
			if r.text != "" && len(out[j].Reasons) < 3 {
				out[j].Reasons = append(out[j].Reasons, r.text)
			}
		}
	}
	return out
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// step fires, updates or resolves the node's structure anomaly.
func (s *Structure) step(sc *NodeStructureScore, t, end time.Time) {
	id := sc.Node.ID()
	n := s.nodes[id]
	if n == nil {
		n = &structNode{}
		s.nodes[id] = n
	}
	if !sc.Judged && n.firing == nil {
		return // no baseline yet
	}
	thr := s.cfg.Threshold
	if n.judged >= 10 {
		thr *= 1 + s.cfg.NoiseWeight*float64(n.hot)/float64(n.judged)
	}
	hot := sc.Score >= thr
	n.judged++
	if hot {
		n.hot++
		n.hotRun++
	} else {
		n.hotRun = 0
	}
	e := s.e
	fill := func(a *Anomaly) {
		a.Observed, a.Baseline = sc.Score, thr
		a.Score = math.Max(a.Score, capScore(sc.Score/thr*6))
		a.Summary = fmt.Sprintf("%s: trace structure changed (%s)", a.Subject.String(), strings.Join(sc.Reasons, "; "))
		a.Severity = SeverityWarning
		if sc.Score >= 3*thr {
			a.Severity = SeverityCritical
		}
	}
	if n.firing == nil {
		if !hot {
			return
		}
		ref := RefOf(sc.Node)
		a := &Anomaly{Type: TypeNodeMetric, Metric: "trace_structure", Direction: "changed", Subject: Subject{Kind: SubjectNode, Node: &ref}, Unit: "llr",
			Evidence: Evidence{Notes: []string{"calls per span, operation mix or self time of the service's own spans left their baseline"}}}
		fill(a)
		a.key = "structure|" + id
		a.Since, a.FiredAt, a.UpdatedAt, a.State = t, end, end, StateFiring
		a.ID = stableID("an", a.key, a.Since)
		n.firing, n.cold = a, 0
		e.fire(a)
		return
	}
	if hot {
		n.cold = 0
		fill(n.firing)
		n.firing.UpdatedAt = end
		return
	}
	n.cold++
	if n.cold >= s.cfg.ResolveAfter {
		e.resolve(n.firing, end)
		n.firing, n.cold = nil, 0
	}
}

// learn adds the window to the baselines of nodes that were not hot (or
// have been hot so long that it is the new normal).
func (s *Structure) learn(ops []OpStat, scores []NodeStructureScore) {
	skip := map[string]bool{}
	for i := range scores {
		id := scores[i].Node.ID()
		if n := s.nodes[id]; n != nil && n.hotRun > 0 && n.hotRun < s.cfg.AdaptAfter {
			skip[id] = true
		}
	}
	touched := map[string]bool{}
	for i := range ops {
		o := &ops[i]
		id := o.Node.ID()
		if skip[id] || o.Spans <= 0 {
			continue
		}
		k := opKey(o.Node, o.Operation)
		b := s.ops[k]
		if b == nil {
			b = &opBase{children: map[string]float64{}}
			s.ops[k] = b
			n := s.nodes[id]
			if n == nil {
				n = &structNode{}
				s.nodes[id] = n
			}
			n.ops = append(n.ops, k)
		}
		if !touched[id] {
			touched[id] = true
			// Decay every operation of the node once per window it is seen.
			for _, ok := range s.nodes[id].ops {
				ob := s.ops[ok]
				ob.n *= s.cfg.Decay
				for c := range ob.children {
					ob.children[c] *= s.cfg.Decay
				}
			}
		}
		b.n += float64(o.Spans)
		for c, v := range o.Children {
			b.children[c] += float64(v)
		}
		if o.SelfMs > 0 {
			b.selfLog = append(b.selfLog, math.Log(o.SelfMs+s.cfg.MinSelfMs))
			if len(b.selfLog) > 60 {
				b.selfLog = b.selfLog[len(b.selfLog)-60:]
			}
		}
	}
}
