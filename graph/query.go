package graph

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// ErrBadQuery wraps every problem with a Query.
var ErrBadQuery = errors.New("bad graph query")

// DefaultWindow is the snapshot window when a query names none.
const DefaultWindow = 5 * time.Minute

// projEdge is a snapshot edge by its projected end nodes' indexes.
type projEdge struct {
	src, dst int32
	proto    Protocol
}

// rangeOf turns a query's window into bucket indexes [from, to).
func (g *Graph) rangeOf(q Query) (from, to int64, err error) {
	w := q.Window
	if w == 0 {
		w = DefaultWindow
	}
	if w < 0 {
		return 0, 0, fmt.Errorf("%w: window %s must be positive", ErrBadQuery, w)
	}
	if w > g.cfg.Window {
		return 0, 0, fmt.Errorf("%w: window %s exceeds the %s held in memory", ErrBadQuery, w, g.cfg.Window)
	}
	if q.At.IsZero() {
		to = g.watermark
	} else {
		to = g.index(q.At.Add(g.cfg.Resolution - 1))
	}
	n := int64((w + g.cfg.Resolution - 1) / g.cfg.Resolution)
	return to - n, to, nil
}

// Snapshot returns the graph over the query's window, projected on its view.
// It is consistent: taken under one lock at one clock reading.
func (g *Graph) Snapshot(q Query) (*Snapshot, error) {
	if q.View >= numViews {
		return nil, fmt.Errorf("%w: unknown view %d", ErrBadQuery, q.View)
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	from, to, err := g.rangeOf(q)
	if err != nil {
		return nil, err
	}
	lo := g.liveFrom(from)
	nsFilter := len(q.Namespaces) > 0
	snap := &Snapshot{
		View:       q.View,
		Namespaces: q.Namespaces,
		Start:      g.timeOf(from),
		End:        g.timeOf(to),
		Resolution: g.cfg.Resolution,
	}
	// When no two raw nodes project onto one node, raw edges are snapshot
	// edges one to one: no need to look each up (a map of every edge is a
	// cache miss per edge), nor each projected node.
	oneToOne := g.projectsOneToOne(q.View)
	if !nsFilter {
		snap.Nodes = make([]NodeSnapshot, 0, len(g.nodes))
	}
	// Raw nodes are projected once each; edges are then keyed by small ints.
	proj := make([]int32, len(g.nodes)) // by nodeRec.id: snapshot node index + 1, 0 when not yet projected
	var nodeIdx map[Node]int32
	if !oneToOne {
		nodeIdx = make(map[Node]int32)
	}
	projOf := func(r *nodeRec) int32 {
		if i := proj[r.id]; i > 0 {
			return i - 1
		}
		p := q.View.Project(r.node)
		var i int32
		ok := false
		if nodeIdx != nil {
			key := nodeKey(q.View, p)
			if i, ok = nodeIdx[key]; !ok {
				nodeIdx[key] = int32(len(snap.Nodes))
			}
		}
		if !ok {
			i = int32(len(snap.Nodes))
			snap.Nodes = append(snap.Nodes, NodeSnapshot{Node: p, FirstSeen: time.Unix(0, r.first)})
		} else {
			n := &snap.Nodes[i].Node
			if n.App == "" {
				n.App = p.App
			}
			if n.Version == "" {
				n.Version = p.Version
			}
			if fs := time.Unix(0, r.first); fs.Before(snap.Nodes[i].FirstSeen) {
				snap.Nodes[i].FirstSeen = fs
			}
		}
		proj[r.id] = i + 1
		return i
	}
	var edges map[projEdge]int32
	if !oneToOne {
		edges = make(map[projEdge]int32, len(g.edgeList))
	}
	var ends []projEdge // per snapshot edge
	if !nsFilter {
		snap.Edges = make([]EdgeSnapshot, 0, len(g.edgeList))
		ends = make([]projEdge, 0, len(g.edgeList))
	}
	var chs [numChannels]chAcc
	var bins binArena
	var wa winArena
	// Evidence of each edge's primary channel, for the node totals.
	type edgeEv struct {
		edge int32
		evEntry
	}
	var evs []edgeEv
	if !nsFilter {
		evs = make([]edgeEv, 0, len(g.edgeList)) // most edges see an error or two
	}
	for _, e := range g.edgeList {
		if nsFilter && !slices.Contains(q.Namespaces, e.key.src.node.Namespace) && !slices.Contains(q.Namespaces, e.key.dst.node.Namespace) {
			continue
		}
		var have [numChannels]bool
		anyData := false
		for i, s := range e.ch {
			if s == nil {
				continue
			}
			chs[i].reset()
			have[i] = s.sum(lo, to, &chs[i], &g.lay, &wa)
			anyData = anyData || have[i]
		}
		if !anyData {
			continue
		}
		// One view of the traffic: destination-side metrics, else source-side, else traces.
		primary, secondary := -1, -1
		for i := range have {
			if have[i] {
				if primary < 0 {
					primary = i
				} else if i == chMetricsSrc {
					secondary = i
				}
			}
		}
		// Calls that fail before reaching the callee (connect failures, local
		// overflow, no route) are seen only by the caller's proxy: where the
		// caller counted more, its count stands in the destination view.
		if primary == chMetricsDst && have[chMetricsSrc] {
			addCallerOnlyFailures(&chs[primary], &chs[chMetricsSrc])
		}
		var signals Signal
		var reporters uint16
		for i := range have {
			if have[i] {
				signals |= chs[i].st.Signals
				reporters |= chs[i].st.Reporters
			}
		}
		k := projEdge{src: projOf(e.key.src), dst: projOf(e.key.dst), proto: e.key.proto}
		j, ok := int32(len(snap.Edges)), false
		if edges != nil {
			if j, ok = edges[k]; !ok {
				j = int32(len(snap.Edges))
				edges[k] = j
			}
		}
		if !ok {
			ends = append(ends, k)
			snap.Edges = append(snap.Edges, EdgeSnapshot{
				Protocol:  k.proto, // Source and Target: see sortSnapshot
				FirstSeen: time.Unix(0, e.firstSeen), LastSeen: time.Unix(0, e.lastSeen),
			})
		}
		es := &snap.Edges[j]
		pri := &chs[primary]
		if !ok {
			// Take the channel's stats with an exact-size copy of its sketch;
			// the channel keeps its buffer for the next edge.
			es.Stats = pri.st
			es.Stats.Latency = pri.st.Latency.tightCloneFrom(&bins)
		} else {
			es.Stats.Add(&pri.st)
		}
		pri.addEvidenceTo(&es.Stats)
		for _, ev := range pri.ev {
			evs = append(evs, edgeEv{j, ev})
		}
		es.Stats.Signals |= signals
		es.Stats.Reporters |= reporters
		if secondary >= 0 {
			if es.SourceReported == nil {
				es.SourceReported = &Stats{}
			}
			es.SourceReported.Add(&chs[secondary].st)
			chs[secondary].addEvidenceTo(es.SourceReported)
		}
		for _, p := range e.principals {
			if !slices.Contains(es.Principals, p) && len(es.Principals) < maxPrincipals {
				es.Principals = append(es.Principals, p)
			}
		}
		if fs := time.Unix(0, e.firstSeen); fs.Before(es.FirstSeen) {
			es.FirstSeen = fs
		}
		if ls := time.Unix(0, e.lastSeen); ls.After(es.LastSeen) {
			es.LastSeen = ls
		}
	}
	// Size each node's sketches to the union of its edges' bins first, so
	// the merges below never grow or shift them.
	type span struct{ lo, hi int32 }
	spans := make([]span, 2*len(snap.Nodes)) // [2i] in, [2i+1] out
	for i := range spans {
		spans[i] = span{math.MaxInt32, math.MinInt32}
	}
	for i := range snap.Edges {
		sk := &snap.Edges[i].Stats.Latency
		if len(sk.counts) == 0 {
			continue
		}
		lo, hi := sk.offset, sk.offset+int32(len(sk.counts))-1
		for _, j := range [2]int32{2 * ends[i].dst, 2*ends[i].src + 1} {
			spans[j].lo = min(spans[j].lo, lo)
			spans[j].hi = max(spans[j].hi, hi)
		}
	}
	for i := range snap.Nodes {
		for d, sk := range [2]*Sketch{&snap.Nodes[i].In.Latency, &snap.Nodes[i].Out.Latency} {
			if sp := spans[2*i+d]; sp.lo <= sp.hi {
				sk.offset = sp.lo
				sk.counts = bins.take(int(sp.hi - sp.lo + 1))
			}
		}
	}
	for i := range snap.Edges {
		e := &snap.Edges[i]
		snap.Nodes[ends[i].src].Out.addCounters(&e.Stats)
		snap.Nodes[ends[i].dst].In.addCounters(&e.Stats)
	}
	for _, ev := range evs {
		snap.Nodes[ends[ev.edge].src].Out.addEvidence(ev.k, ev.n)
		snap.Nodes[ends[ev.edge].dst].In.addEvidence(ev.k, ev.n)
	}
	for i := range snap.Nodes {
		n := &snap.Nodes[i]
		n.Signals = n.In.Signals | n.Out.Signals
	}
	sortSnapshot(snap, ends)
	return snap, nil
}

// evEntry is one evidence entry: kind<<evShift | code, and its count.
type evEntry struct {
	k uint32
	n uint64
}

// chAcc is a channel's sum over a window while a snapshot is built: Stats
// with the evidence kept as a short list rather than maps, as an edge has a
// handful of entries at most and node totals then add them without
// iterating maps.
type chAcc struct {
	st Stats
	ev []evEntry
}

func (a *chAcc) reset() {
	a.st = Stats{Latency: a.st.Latency}
	a.st.Latency.Reset()
	a.ev = a.ev[:0]
}

func (a *chAcc) addEvidence(k uint32, n uint64) {
	for i := range a.ev {
		if a.ev[i].k == k {
			a.ev[i].n += n
			return
		}
	}
	a.ev = append(a.ev, evEntry{k, n})
}

// addEvidenceTo adds a's evidence into st's maps.
func (a *chAcc) addEvidenceTo(st *Stats) {
	for _, e := range a.ev {
		st.addEvidence(e.k, e.n)
	}
}

// nodeKey is what makes projected nodes one node in view v.
func nodeKey(v View, p Node) Node {
	if v == ViewWorkload && p.Workload != "" {
		// A workload is one node whoever reported it: a tracing SDK may not
		// know the version or app label that the mesh reports.
		return Node{Cluster: p.Cluster, Namespace: p.Namespace, Workload: p.Workload, Kind: p.Kind}
	}
	return p
}

// projectsOneToOne reports whether every node the graph holds projects onto
// its own node in view v (the usual case in the workload view). The answer
// is kept until the nodes change: finding it hashes every node.
func (g *Graph) projectsOneToOne(v View) bool {
	if c := g.oneToOne[v].Load(); c&1 != 0 && c>>2 == g.nodesGen {
		return c&2 != 0
	}
	ok := g.computeOneToOne(v)
	c := g.nodesGen<<2 | 1
	if ok {
		c |= 2
	}
	g.oneToOne[v].Store(c)
	return ok
}

func (g *Graph) computeOneToOne(v View) bool {
	seen := make(map[Node]struct{}, len(g.nodes))
	for n := range g.nodes {
		k := nodeKey(v, v.Project(n))
		if _, dup := seen[k]; dup {
			return false
		}
		seen[k] = struct{}{}
	}
	return true
}

// binArena hands out the bins of a snapshot's sketches from a few large
// chunks rather than one allocation per sketch. Slices are capped at their
// length, so a sketch that grows later moves out instead of overwriting its
// neighbour.
type binArena struct{ buf []uint64 }

const binChunk = 1 << 15

func (a *binArena) take(n int) []uint64 {
	if n > len(a.buf) {
		if n > binChunk/8 {
			return make([]uint64, n)
		}
		a.buf = make([]uint64, binChunk)
	}
	s := a.buf[:n:n]
	a.buf = a.buf[n:]
	return s
}

// tightCloneFrom is a copy of s whose bins, taken from a, are exactly its
// non-empty range.
func (s *Sketch) tightCloneFrom(a *binArena) Sketch {
	c := *s
	lo, hi := 0, len(s.counts)
	for lo < hi && s.counts[lo] == 0 {
		lo++
	}
	for hi > lo && s.counts[hi-1] == 0 {
		hi--
	}
	c.counts = nil
	if lo < hi {
		c.offset = s.offset + int32(lo)
		c.counts = a.take(hi - lo)
		copy(c.counts, s.counts[lo:hi])
	}
	return c
}

// liveFrom clamps a range start to the buckets the window still holds:
// groups are trimmed whole, so a few older buckets may linger unseen.
func (g *Graph) liveFrom(from int64) int64 {
	if g.started && from <= g.watermark-g.slots {
		return g.watermark - g.slots + 1
	}
	return from
}

// protoOrder ranks known protocols by name, as snapshots order them;
// unknown values (never ingested in practice) come after them.
func protoOrder(p Protocol) uint64 {
	if p >= numProtocols {
		return uint64(numProtocols) + uint64(p)
	}
	n := uint64(0)
	for q := Protocol(0); q < numProtocols; q++ {
		if protoNames[q] < protoNames[p] {
			n++
		}
	}
	return n
}

// sortSnapshot orders nodes by ID and edges by (source ID, target ID,
// protocol), and sets the edges' Source and Target; ends[i] are edge i's
// node indexes before sorting.
func sortSnapshot(s *Snapshot, ends []projEdge) {
	type keyed struct {
		key string
		i   int
	}
	nk := make([]keyed, len(s.Nodes))
	for i := range s.Nodes {
		nk[i] = keyed{s.Nodes[i].Node.ID(), i}
	}
	slices.SortFunc(nk, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	rank := make([]int32, len(s.Nodes))
	nodes := make([]NodeSnapshot, len(s.Nodes))
	for r, k := range nk {
		nodes[r] = s.Nodes[k.i]
		rank[k.i] = int32(r)
	}
	s.Nodes = nodes
	// IDs hold no NUL, so ordering by ranks is ordering by the ID strings:
	// one integer key per edge of source rank, target rank, protocol.
	var porder [numProtocols + 1]uint64
	for p := range porder {
		porder[p] = protoOrder(Protocol(p))
	}
	order := make([]int32, len(s.Edges))
	poOf := func(p Protocol) uint64 {
		if p < numProtocols {
			return porder[p]
		}
		return uint64(numProtocols) + uint64(p)
	}
	nb, eb := uint(bits.Len(uint(len(s.Nodes)))), uint(bits.Len(uint(len(s.Edges))))
	const pb = 9 // poOf < 2^9
	if 2*nb+pb+eb <= 64 {
		// The edge's index in the low bits: a plain integer sort, no closure.
		keys := make([]uint64, len(s.Edges))
		for i, e := range ends {
			keys[i] = ((uint64(rank[e.src])<<nb|uint64(rank[e.dst]))<<pb|poOf(e.proto))<<eb | uint64(i)
		}
		if len(keys) < 1024 {
			slices.Sort(keys)
		} else {
			// Indexes ascend already: a stable sort on the bits above them suffices.
			radixSort(keys, eb, 2*nb+pb+eb)
		}
		for i, k := range keys {
			order[i] = int32(k & (1<<eb - 1))
		}
	} else {
		type keyedEdge struct {
			key uint64
			i   int32
		}
		keys := make([]keyedEdge, len(s.Edges))
		for i, e := range ends {
			keys[i] = keyedEdge{uint64(rank[e.src])<<37 | uint64(rank[e.dst])<<10 | poOf(e.proto), int32(i)}
		}
		slices.SortFunc(keys, func(a, b keyedEdge) int { return cmp.Compare(a.key, b.key) })
		for i, k := range keys {
			order[i] = k.i
		}
	}
	orig := slices.Clone(order)
	// Apply the permutation in place, one cycle at a time.
	for i := range order {
		if order[i] < 0 {
			continue
		}
		tmp := s.Edges[i]
		j := i
		for {
			k := int(order[j])
			order[j] = -1
			if k == i {
				s.Edges[j] = tmp
				break
			}
			s.Edges[j] = s.Edges[k]
			j = k
		}
	}
	// Ends are set once edges are in place (less to move), and nodes
	// complete: they may have gained attributes after their first edge.
	for i := range s.Edges {
		e := &s.Edges[i]
		k := ends[orig[i]]
		e.Source, e.Target = s.Nodes[rank[k.src]].Node, s.Nodes[rank[k.dst]].Node
	}
}

// radixSort sorts keys stably by their bits [lo, hi), least significant
// digit first: linear, where comparison sorts dominate a large snapshot's sort.
func radixSort(keys []uint64, lo, hi uint) {
	const digit = 11
	src, dst := keys, make([]uint64, len(keys))
	for sh := lo; sh < hi; sh += digit {
		var at [1 << digit]int
		for _, k := range src {
			at[k>>sh&(1<<digit-1)]++
		}
		n := 0
		for i, c := range at {
			at[i] = n
			n += c
		}
		for _, k := range src {
			b := k >> sh & (1<<digit - 1)
			dst[at[b]] = k
			at[b]++
		}
		src, dst = dst, src
	}
	copy(keys, src) // src is keys itself after an even number of passes
}

// EdgeFilter picks the raw edges whose per-bucket history a caller wants, in a view.
type EdgeFilter struct {
	View     View
	Source   *Node // projected identity; nil matches any
	Target   *Node
	Protocol *Protocol
}

// History returns per-bucket statistics over [from, to) of the primary channel
// of all edges matching f (summed), one Stats per bucket. Used for sparklines
// and detector baselines.
func (g *Graph) History(f EdgeFilter, window time.Duration, at time.Time) (start time.Time, buckets []Stats, err error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	from, to, err := g.rangeOf(Query{Window: window, At: at})
	if err != nil {
		return time.Time{}, nil, err
	}
	lo := min(g.liveFrom(from), to) // a window wholly past what is held is empty
	out := make([]Stats, to-from)
	var tmp [numChannels][]Stats
	for i := range tmp {
		tmp[i] = make([]Stats, to-from)
	}
	for _, e := range g.edgeList {
		if f.Protocol != nil && *f.Protocol != e.key.proto {
			continue
		}
		if f.Source != nil && !f.View.matches(e.key.src.node, *f.Source) {
			continue
		}
		if f.Target != nil && !f.View.matches(e.key.dst.node, *f.Target) {
			continue
		}
		for i, s := range e.ch {
			clear(tmp[i])
			if s != nil {
				s.bucketSeries(lo, tmp[i][lo-from:], &g.lay)
			}
		}
		// Per bucket, the first channel with data, as Snapshot picks per window.
		for b := range out {
			for i := range tmp {
				if tmp[i][b].hasData() {
					out[b].Add(&tmp[i][b])
					break
				}
			}
		}
	}
	return g.timeOf(from), out, nil
}

func (s *Stats) hasData() bool {
	return s.Requests+s.ConnOpened+s.RequestBytes+s.ResponseBytes+s.Latency.Count() != 0
}

// addCallerOnlyFailures raises dst's request and failure counts (per class,
// code and flag) to src's where the caller saw more. Latency stays the callee's.
func addCallerOnlyFailures(dst, src *chAcc) {
	if src.st.Errors.Total() == 0 {
		return
	}
	dst.st.Requests = max(dst.st.Requests, src.st.Requests)
	for c := range dst.st.Errors {
		dst.st.Errors[c] = max(dst.st.Errors[c], src.st.Errors[c])
	}
	// Per code and flag (flag names are one per bit, so per key).
next:
	for _, e := range src.ev {
		for i := range dst.ev {
			if dst.ev[i].k == e.k {
				dst.ev[i].n = max(dst.ev[i].n, e.n)
				continue next
			}
		}
		if e.n > 0 {
			dst.ev = append(dst.ev, e)
		}
	}
}

// matches reports whether raw node n shows as projected node p in view v,
// with Snapshot's rule that a workload is one node whatever its labels.
func (v View) matches(n, p Node) bool {
	got := v.Project(n)
	if v == ViewWorkload && got.Workload != "" {
		return got.Cluster == p.Cluster && got.Namespace == p.Namespace && got.Workload == p.Workload && got.Kind == p.Kind
	}
	return got == p
}
