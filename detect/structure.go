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
	// Peer is set when the operation's spans are calls to one other
	// service and nothing else (client spans): their self time is then the
	// link's network time, which either end's network can stretch, so a
	// change is judged for both ends.
	Peer graph.Node
	// ReqMs and RespMs split a link's network time (medians; NaN, or both
	// 0, when unknown): from the client span's start to its callee's, and
	// from the callee's end to the client span's. A pod whose egress is delayed
	// stretches the response leg of the calls it answers and the request
	// leg of those it makes; a CPU-starved pod queues the requests it gets
	// (their request leg) and reads its responses late (response leg).
	ReqMs, RespMs float64
}

// StructureConfig tunes the trace-structure detector.
type StructureConfig struct {
	// Live traffic: spans are judged in windows of Window, Settle after the
	// window ends (their children must have arrived), holding at most
	// MaxSpans spans meanwhile.
	Enabled  bool          `yaml:"enabled"`
	Window   time.Duration `yaml:"window"`   // default 30s
	Settle   time.Duration `yaml:"settle"`   // default 20s
	MaxSpans int           `yaml:"maxSpans"` // default 100000

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
	return StructureConfig{Enabled: true, Window: 30 * time.Second, Settle: 20 * time.Second, MaxSpans: 100_000, MinBaseline: 20, Threshold: 20, Decay: 0.99, SelfRatio: 2, MinSelfMs: 1, ResolveAfter: 2, NoiseWeight: 4, AdaptAfter: 20}
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
	if c.Window <= 0 {
		p = append(p, "window: must be > 0")
	}
	if c.Settle < 0 {
		p = append(p, "settle: must be >= 0")
	}
	if c.MaxSpans < 1 {
		p = append(p, "maxSpans: must be >= 1")
	}
	return p
}

// Attach judges live traces: on each closed bucket of g, every window of
// cfg.Window that ended cfg.Settle ago is taken from w and observed.
func (s *Structure) Attach(g SnapshotSource, w *SpanWindows) {
	var next time.Time // start of the next window to judge
	g.OnBucketClose(func(ev graph.BucketClosed) {
		ready := ev.End.Add(-s.cfg.Settle)
		if next.IsZero() {
			next = ready.Truncate(s.cfg.Window)
		}
		for !next.Add(s.cfg.Window).After(ready) {
			s.Observe(next, s.cfg.Window, w.Take(next, next.Add(s.cfg.Window)))
			next = next.Add(s.cfg.Window)
		}
	})
}

// Structure compares each service operation's call structure and self time
// with its own baseline and raises node anomalies on services whose own
// behaviour changed. Calls per span are judged per parent operation, so a
// drop on the edge S->T while S keeps serving blames S, the caller, and not
// T; T's own changes show in T's operations.
type Structure struct {
	e      *Engine
	cfg    StructureConfig
	ops    map[string]*opBase
	nodes  map[string]*structNode
	self   []float64
	legBuf []float64
	added  []windowAdded // per window, the nodes' added time; the last hour
	slow   []bool        // per op of the last window: its self time was judged surely slow
}

type windowAdded struct {
	t     time.Time
	nodes []NodeAdded
}

type opBase struct {
	node     graph.Node // whose operation, for exported state
	op       string
	n        float64            // decayed span count
	children map[string]float64 // decayed child counts
	selfLog  []float64          // recent window medians of log(self ms + floor), bounded
	legs     [][2]float64       // a link's recent window medians of its request and response legs (ms), bounded
	slowRun  int                // windows in a row its self time was judged surely slow
}

type structNode struct {
	ops          []string // op keys of the node, for its operation mix
	judged, hot  int
	firing       *Anomaly
	cold, hotRun int
	excess       []float64 // added time of the node's recent windows
	pending      []float64 // added time of the current hot run's windows, not yet learned
}

// NewStructure builds the trace-structure detector of e; it starts nothing.
func NewStructure(e *Engine, cfg StructureConfig) (*Structure, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("detect structure config: %s", strings.Join(p, "; "))
	}
	s := &Structure{e: e, cfg: cfg, ops: map[string]*opBase{}, nodes: map[string]*structNode{}}
	e.mu.Lock()
	e.structure = s
	e.mu.Unlock()
	return s, nil
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
	// ExcessMs is how much longer the node's own work took in the window
	// than the same spans took at baseline: its operations' self times, and
	// its share of slow links' network time. It is what the node added to
	// its requests' latency.
	ExcessMs float64
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
	s.record(t, scores)
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
		// hotRun stands: a gap in the traces says nothing of whether the
		// change has become the new normal.
		if n.cold++; n.cold >= s.cfg.ResolveAfter {
			e.resolve(n.firing, end)
			n.firing, n.cold = nil, 0
		}
	}
	s.learn(ops, scores)
	e.updateIncidents(end)
	e.unlockAndNotify(nil)
	return scores
}

// record keeps the window's added times for AddedMs.
func (s *Structure) record(t time.Time, scores []NodeStructureScore) {
	var w windowAdded
	for i := range scores {
		sc := &scores[i]
		n := s.nodeOf(sc)
		if n == nil {
			continue // nothing to compare with, so nothing added
		}
		// What the node usually adds in a window (the upper quartile of
		// its recent windows, zeros included) is its noise, not a change.
		ms := sc.ExcessMs
		if len(n.excess) >= minSelfWindows {
			s.self = append(s.self[:0], n.excess...)
			slices.Sort(s.self)
			ms -= quantileSorted(s.self, usualExcessQ)
		}
		if ms > 0 {
			w.nodes = append(w.nodes, NodeAdded{Node: RefOf(sc.Node), Ms: ms})
		}
	}
	cut := 0
	for cut < len(s.added) && t.Sub(s.added[cut].t) > time.Hour {
		cut++
	}
	s.added = s.added[cut:]
	if len(w.nodes) > 0 {
		w.t = t
		s.added = append(s.added, w)
	}
}

// AddedMs sums each node's added time, net of what it usually adds in a
// window, over the windows starting in [from, to], each weighed by
// exp(-age/tau) (tau <= 0: all alike). It reads what Observe wrote under
// the engine's lock, which RankRecent holds when it asks.
func (s *Structure) AddedMs(from, to time.Time, tau time.Duration) []NodeAdded {
	idx := map[string]int{}
	var out []NodeAdded
	for _, w := range s.added {
		if w.t.Before(from) || w.t.After(to) {
			continue
		}
		wt := 1.0
		if tau > 0 {
			wt = math.Exp(-to.Sub(w.t).Seconds() / tau.Seconds())
		}
		for _, n := range w.nodes {
			i, ok := idx[n.Node.ID]
			if !ok {
				i = len(out)
				idx[n.Node.ID] = i
				out = append(out, NodeAdded{Node: n.Node})
			}
			out[i].Ms += wt * n.Ms
		}
	}
	return out
}

func opKey(n graph.Node, op string) string { return n.ID() + "\x00" + op }

// judge scores each node of the window against the baselines.
func (s *Structure) judge(ops []OpStat) []NodeStructureScore {
	s.slow = slices.Grow(s.slow[:0], len(ops))[:len(ops)]
	clear(s.slow)
	byNode := map[string]int{}
	var out []NodeStructureScore
	var why [][]reason
	// Link (client span) self times: per node, the judged links, the slow
	// ones and their evidence. A node whose every link slowed is the likely
	// end at fault; one with a single slow link among many is not.
	type links struct {
		node         graph.Node
		judged, slow int
		sent         int // slow links whose slow leg this node sent
		rs           []linkReason
	}
	gaps := map[string]*links{}
	gapOf := func(n graph.Node) *links {
		g := gaps[n.ID()]
		if g == nil {
			g = &links{node: n}
			gaps[n.ID()] = g
		}
		return g
	}
	// share is the part of a node's links that slowed.
	share := func(id string) float64 {
		if g := gaps[id]; g != nil && g.judged > 0 {
			return float64(g.slow) / float64(g.judged)
		}
		return 0
	}
	// endWeight is how much of a slow link's added time between id and
	// other is id's: the share of id's links that slowed, and for the end
	// with the smaller share that share again against the other's. The end
	// common to all the slow links takes the time; a caller that waits on
	// one of them, little.
	endWeight := func(id, other string) float64 {
		a, b := share(id), share(other)
		if a <= 0 {
			return 0
		}
		return a * a / max(a, b)
	}
	// Added own time per node. slowBase/allBase: the baseline own time of
	// the node's operations that slowed surely, and of all it judged; CPU
	// starvation slows all of a service's work, a one-off slow call one
	// operation.
	type times struct{ excess, slowBase, allBase float64 }
	own := map[string]*times{}
	ownOf := func(id string) *times {
		t := own[id]
		if t == nil {
			t = &times{}
			own[id] = t
		}
		return t
	}
	// Sure slow links' added time, shared by the two ends once every
	// link of the window is judged.
	type linkTime struct {
		a, b   string // caller, callee
		excess float64
		req    float64 // the request leg's part of the network time; NaN when unknown
	}
	var linkTimes []linkTime
	// slowLink counts a slow link for both its ends; excessMs > 0 when it
	// is sure enough to add time.
	slowLink := func(o *OpStat, score, excessMs float64, text string) {
		req := s.reqPart(o)
		sender := -1 // which end sent the slow leg: 0 the caller, 1 the callee, -1 unknown
		switch {
		case req >= 0.5:
			sender = 0
			text += ", in the requests"
		case req < 0.5: // false for NaN
			sender = 1
			text += ", in the replies"
		}
		if excessMs > 0 {
			linkTimes = append(linkTimes, linkTime{o.Node.ID(), o.Peer.ID(), excessMs, req})
		}
		for k, n := range []graph.Node{o.Node, o.Peer} {
			g := gapOf(n)
			g.slow++
			role := legUnknown // either end may have sent it
			if sender >= 0 {
				role = legReceived
				if k == sender {
					role = legSent
				}
			}
			if excessMs > 0 && role != legReceived {
				g.sent++
			}
			g.rs = append(g.rs, linkReason{reason{score, text}, role})
		}
	}
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
	// Every link's network time in the window, and the links that have no
	// baseline of their own yet: those are judged against the others.
	var linkMs []float64
	var fresh []int // indexes into ops
	for i := range ops {
		o := &ops[i]
		add(o.Node, reason{})
		b := s.ops[opKey(o.Node, o.Operation)]
		k := float64(o.Spans)
		if !o.Peer.IsZero() && o.SelfMs > 0 && k > 0 {
			linkMs = append(linkMs, o.SelfMs)
			if b == nil || b.n < s.cfg.MinBaseline || len(b.selfLog) < minSelfWindows {
				fresh = append(fresh, i)
			}
		}
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
			if _, ok := b.children[c]; ok || len(b.children) >= maxChildKinds {
				continue // known, or an operation whose children are too many kinds to judge new ones
			}
			// Never seen under this operation: expect at most half a call
			// over the whole baseline.
			if v := llr(float64(n), k*0.5/b.n); v > 0 {
				add(o.Node, reason{v, fmt.Sprintf("%s: new %s %.2f/span", o.Operation, c, float64(n)/k)})
			}
		}
		// Self time against the medians of earlier windows.
		peer := !o.Peer.IsZero()
		if o.SelfMs > 0 && len(b.selfLog) >= minSelfWindows {
			s.self = append(s.self[:0], b.selfLog...)
			med, mad := medMAD(s.self)
			baseMs := math.Max(math.Exp(med)-s.cfg.MinSelfMs, 0)
			x := math.Log(o.SelfMs + s.cfg.MinSelfMs)
			d := x - med
			if peer {
				gapOf(o.Node).judged++
				gapOf(o.Peer).judged++
			} else {
				ownOf(o.Node.ID()).allBase += k * baseMs
			}
			if d < math.Log(s.cfg.SelfRatio) {
				continue
			}
			// Robust z against the spread of earlier window medians: a
			// steady operation that slows 50x is surer than a jittery
			// database call that does.
			z := math.Min(d/math.Max(1.4826*mad, 0.1), 10)
			score := 2 * z * math.Sqrt(k)
			// Only a sure slowdown adds to the node's excess time: the
			// jitter of a chronically noisy operation must not pile up.
			sure := z >= minExcessZ
			if sure {
				s.slow[i] = true
			}
			if !peer {
				if sure {
					t := ownOf(o.Node.ID())
					t.excess += k * (o.SelfMs - baseMs)
					t.slowBase += k * baseMs
				}
				add(o.Node, reason{score, fmt.Sprintf("%s: self time %.3gms vs %.3gms", o.Operation, o.SelfMs, baseMs)})
				continue
			}
			excess := 0.0
			if sure {
				excess = k * (o.SelfMs - baseMs)
			}
			slowLink(o, score, excess, fmt.Sprintf("%s -> %s: network time %.3gms vs %.3gms", o.Node.Name(), o.Peer.Name(), o.SelfMs, baseMs))
		}
	}
	// Links without a baseline (new ones, and every link in the first
	// windows after a start) are compared across the window instead: network
	// time inside one mesh is much alike from link to link, so the end whose
	// links all take several times the window's usual network time is slow
	// now, whatever its past.
	if len(fresh) > 0 && len(linkMs) >= minCrossLinks {
		s.self = s.self[:0]
		for _, ms := range linkMs {
			s.self = append(s.self, math.Log(ms+s.cfg.MinSelfMs))
		}
		med, mad := medMAD(s.self)
		refMs := math.Max(math.Exp(med)-s.cfg.MinSelfMs, 0)
		spread := math.Max(1.4826*mad, crossSpreadFloor)
		for _, i := range fresh {
			o := &ops[i]
			k := float64(o.Spans)
			if k < minCrossSpans {
				continue
			}
			gapOf(o.Node).judged++
			gapOf(o.Peer).judged++
			d := math.Log(o.SelfMs+s.cfg.MinSelfMs) - med
			if d < math.Log(crossRatio) || o.SelfMs-refMs < crossMinMs {
				continue
			}
			s.slow[i] = true
			slowLink(o, 2*math.Min(d/spread, 10)*math.Sqrt(k), k*(o.SelfMs-refMs),
				fmt.Sprintf("%s -> %s: network time %.3gms vs %.3gms on the window's links", o.Node.Name(), o.Peer.Name(), o.SelfMs, refMs))
		}
	}
	for _, t := range own {
		if t.allBase > 0 {
			t.excess *= math.Min(t.slowBase/t.allBase, 1)
		}
	}
	// A slow leg is the sending end's delay unless the receiving end's own
	// work slowed too (a starved pod queues requests and reads responses
	// late): then the ends' shares of slow links decide, as they do when
	// the legs are unknown.
	busy := map[string]bool{} // taken before the links add to own
	for id, t := range own {
		busy[id] = t.excess > 0
	}
	// sentShare: the part of a node's links whose slow leg it sent.
	sentShare := func(id string) float64 {
		if g := gaps[id]; g != nil && g.judged > 0 {
			return float64(g.sent) / float64(g.judged)
		}
		return 0
	}
	for _, lt := range linkTimes {
		wa, wb := endWeight(lt.a, lt.b), endWeight(lt.b, lt.a)
		if math.IsNaN(lt.req) {
			ownOf(lt.a).excess += lt.excess * wa
			ownOf(lt.b).excess += lt.excess * wb
			continue
		}
		req, resp := lt.excess*lt.req, lt.excess*(1-lt.req)
		ownOf(lt.a).excess += req * sentShare(lt.a)
		ownOf(lt.b).excess += resp * sentShare(lt.b)
		if busy[lt.b] {
			ownOf(lt.b).excess += req * wb
		}
		if busy[lt.a] {
			ownOf(lt.a).excess += resp * wa
		}
	}
	ids := make([]string, 0, len(gaps))
	for id, g := range gaps {
		if g.slow > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		g := gaps[id]
		for _, r := range g.rs {
			// A leg's sender is known: it takes the link's whole score; a
			// receiver only when busy; either end of a link with unknown
			// legs half.
			sc := r.score / 2 * share(id)
			switch r.role {
			case legSent:
				sc = r.score * sentShare(id)
			case legReceived:
				sc = 0
				if busy[id] {
					sc = r.score / 2 * share(id)
				}
			}
			add(g.node, reason{sc, r.text})
		}
		out[byNode[id]].Judged = true
	}
	for j := range out {
		if t := own[out[j].Node.ID()]; t != nil {
			out[j].ExcessMs = t.excess
		}
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

// reqPart is the part of a slow link's network time that its request leg
// added: each leg against its own baseline when the link has one (so a
// steady clock skew between the pods cancels out), else the legs as they
// are. NaN when the legs are unknown.
func (s *Structure) reqPart(o *OpStat) float64 {
	r, p := o.ReqMs, o.RespMs
	if !finite(r) || !finite(p) || r+p == 0 {
		return math.NaN()
	}
	if b := s.ops[opKey(o.Node, o.Operation)]; b != nil && len(b.legs) >= minSelfWindows {
		med := func(k int) float64 {
			s.legBuf = s.legBuf[:0]
			for _, l := range b.legs {
				s.legBuf = append(s.legBuf, l[k])
			}
			m, _ := medMAD(s.legBuf)
			return m
		}
		br, bp := med(0), med(1)
		if er, ep := math.Max(r-br, 0), math.Max(p-bp, 0); er+ep > 0 {
			return er / (er + ep)
		}
	}
	r, p = math.Max(r, 0), math.Max(p, 0)
	if r+p <= 0 {
		return math.NaN()
	}
	return r / (r + p)
}

// linkReason is a slow link's evidence for one of its ends, with that
// end's part in the slow leg.
type linkReason struct {
	reason
	role int
}

const (
	legUnknown = iota
	legSent
	legReceived
)

// excessUnitMs is the unit of added own time in a structure anomaly's
// score: 10 ms added in a window scores 10, every doubling 10 more.
const excessUnitMs = 10

// minExcessZ is how sure a self-time shift must be to count as added time.
const minExcessZ = 3

// A link without a baseline is slow when its network time is crossRatio
// times the window's median link and crossMinMs more, judged once it had
// minCrossSpans spans and the window minCrossLinks links; spreads across
// links below crossSpreadFloor (in log ms) are not trusted.
const (
	crossRatio       = 4
	crossMinMs       = 10
	minCrossSpans    = 2
	minCrossLinks    = 8
	crossSpreadFloor = 0.25
)

// medMAD is the median of xs and the median absolute deviation from it;
// it reorders and overwrites xs.
func medMAD(xs []float64) (med, mad float64) {
	slices.Sort(xs)
	med = quantileSorted(xs, 0.5)
	for i := range xs {
		xs[i] = math.Abs(xs[i] - med)
	}
	slices.Sort(xs)
	return med, quantileSorted(xs, 0.5)
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

// nodeOf is the state of sc's node, made once it has been judged; nil
// before: a service with no baseline holds no state.
func (s *Structure) nodeOf(sc *NodeStructureScore) *structNode {
	id := sc.Node.ID()
	n := s.nodes[id]
	if n == nil && sc.Judged && len(s.nodes) < maxOps {
		n = &structNode{}
		s.nodes[id] = n
	}
	return n
}

// learnExcess keeps ms among the node's recent added times.
func (n *structNode) learnExcess(ms float64) {
	n.excess = append(n.excess, ms)
	if len(n.excess) > selfWindows {
		n.excess = n.excess[len(n.excess)-selfWindows:]
	}
}

// step fires, updates or resolves the node's structure anomaly.
func (s *Structure) step(sc *NodeStructureScore, t, end time.Time) {
	n := s.nodeOf(sc)
	if n == nil {
		return // no baseline yet
	}
	if !sc.Judged && n.firing == nil {
		n.learnExcess(sc.ExcessMs)
		return
	}
	thr := s.cfg.Threshold
	if n.judged >= 10 {
		thr *= 1 + s.cfg.NoiseWeight*float64(n.hot)/float64(n.judged)
	}
	hot := sc.Score >= thr
	n.judged++
	// A lone hot window is the node's jitter: it raises the threshold and
	// its added time is usual noise. A run of them is a change, and counts
	// as neither until it has lasted long enough to be the new normal. A
	// hot window waits to see which it is.
	switch {
	case !hot:
		if len(n.pending) == 1 {
			n.hot++
			n.learnExcess(n.pending[0])
		}
		n.pending, n.hotRun = n.pending[:0], 0
		n.learnExcess(sc.ExcessMs)
	case n.hotRun+1 >= s.cfg.AdaptAfter:
		n.hotRun++
		n.hot += len(n.pending) + 1
		for _, ms := range n.pending {
			n.learnExcess(ms)
		}
		n.pending = n.pending[:0]
		n.learnExcess(sc.ExcessMs)
	default:
		n.hotRun++
		n.pending = append(n.pending, sc.ExcessMs)
	}
	e := s.e
	fill := func(a *Anomaly) {
		a.Observed, a.Baseline = sc.Score, thr
		// The time the service's own work added ranks it against other
		// suspects: 200 ms more on every call outranks a millisecond
		// database call that got three times slower, however sure both are.
		a.Score = math.Max(a.Score, capScore(sc.Score/thr*6))
		if sc.ExcessMs > 0 {
			a.Score = math.Max(a.Score, capScore(10*math.Log2(1+sc.ExcessMs/excessUnitMs)))
		}
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
		a.key = "structure|" + ref.ID
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
			if len(s.ops) >= maxOps {
				continue // operation names without bound (IDs in them): the first ones are judged
			}
			b = s.newOp(k, o.Node, o.Operation)
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
			if _, ok := b.children[c]; ok || len(b.children) < maxChildKinds {
				b.children[c] += float64(v)
			}
		}
		// A self time judged surely slow is the change, not the baseline,
		// until it has lasted AdaptAfter windows: otherwise a fault learned
		// as normal hides the next one on the same service.
		learnSelf := true
		if s.slow[i] {
			b.slowRun++
			learnSelf = b.slowRun >= s.cfg.AdaptAfter
		} else {
			b.slowRun = 0
		}
		if o.SelfMs > 0 && learnSelf {
			b.selfLog = append(b.selfLog, math.Log(o.SelfMs+s.cfg.MinSelfMs))
			if len(b.selfLog) > selfWindows {
				b.selfLog = b.selfLog[len(b.selfLog)-selfWindows:]
			}
			if finite(o.ReqMs) && finite(o.RespMs) && o.ReqMs+o.RespMs != 0 {
				b.legs = append(b.legs, [2]float64{o.ReqMs, o.RespMs})
				if len(b.legs) > selfWindows {
					b.legs = b.legs[len(b.legs)-selfWindows:]
				}
			}
		}
	}
}

// newOp adds an empty baseline for operation op of node, under key k, to
// the operations and to its node's.
func (s *Structure) newOp(k string, node graph.Node, op string) *opBase {
	b := &opBase{node: node, op: op, children: map[string]float64{}}
	s.ops[k] = b
	id := node.ID()
	n := s.nodes[id]
	if n == nil {
		n = &structNode{}
		s.nodes[id] = n
	}
	n.ops = append(n.ops, k)
	return b
}

// maxOps bounds the operations with a baseline (and the services with
// state), maxChildKinds the child kinds of one: live operation names can
// carry IDs.
const (
	maxOps        = 20000
	maxChildKinds = 64
)

// usualExcessQ is the quantile of a node's recent added times taken as
// its usual noise.
const usualExcessQ = 0.75

// selfWindows is how many window medians a self-time baseline keeps, and
// how many windows of added time a node's noise is learned from;
// minSelfWindows how many a self time (or a node's noise) needs before it
// is judged.
const (
	selfWindows    = 60
	minSelfWindows = 5
)
