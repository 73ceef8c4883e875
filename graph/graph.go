package graph

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Config sizes the in-memory graph.
type Config struct {
	Resolution time.Duration // bucket width; default 10s
	Window     time.Duration // history held in memory; default 1h
	// Grace keeps a bucket open this long after its end for late data before
	// it is final and bucket-close hooks fire; default one bucket.
	Grace time.Duration
	// Clock is read by Start's ticker; default time.Now. Virtual-time users
	// call Advance themselves and never Start.
	Clock func() time.Time
	// RawLatency is how long per-bucket latency sketches are kept; older
	// latency is held per rollup (about one minute) only, which saves most of
	// their memory. Counters always stay per bucket. The default, 6m, keeps
	// 5-minute windows ending now exact to the bucket.
	RawLatency time.Duration
	// DefaultCluster names the cluster of nodes reported without one, so the
	// same workload seen by a dialect that names its cluster (Istio reports
	// "Kubernetes" by default) and by one that does not (Linkerd, most
	// tracing SDKs) is one node. Empty leaves identities as reported.
	DefaultCluster string
	// Cardinality guards: a misbehaving client spraying random identities
	// must not exhaust memory. Beyond MaxNodes new identities fold into the
	// overflow node; beyond MaxEdges new edges lead to it. Identity fields
	// longer than MaxLabelLen are cut. Defaults: 50,000 / 200,000 / 256.
	MaxNodes    int
	MaxEdges    int
	MaxLabelLen int
}

// OverflowNode stands for every identity that arrived after a cardinality cap was reached.
var OverflowNode = Node{Workload: "overflow", Kind: KindUnknown}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Resolution <= 0 {
		out.Resolution = 10 * time.Second
	}
	if out.Window <= 0 {
		out.Window = time.Hour
	}
	if out.Grace < 0 {
		out.Grace = 0
	} else if out.Grace == 0 {
		out.Grace = out.Resolution
	}
	if out.Clock == nil {
		out.Clock = time.Now
	}
	if out.RawLatency <= 0 {
		out.RawLatency = 6 * time.Minute
	}
	if out.MaxNodes <= 0 {
		out.MaxNodes = 50_000
	}
	if out.MaxEdges <= 0 {
		out.MaxEdges = 200_000
	}
	if out.MaxLabelLen <= 0 {
		out.MaxLabelLen = 256
	}
	return out
}

// channels keep the same traffic seen from different vantage points apart so
// it is never counted twice.
const (
	chMetricsDst = iota // destination proxy, waypoint, ztunnel
	chMetricsSrc        // source proxy, plain Envoy upstream stats
	chTraces            // spans
	numChannels
)

func channelOf(o *Observation) int {
	if o.Signal&SignalTraces != 0 {
		return chTraces
	}
	switch o.Reporter {
	case ReporterSource, ReporterProxy, ReporterClientSpan:
		return chMetricsSrc
	}
	return chMetricsDst
}

// nodeRec is one interned raw node; edges point at it, so an edge costs two
// pointers rather than two copies of the identity, and snapshots project
// each node once rather than once per edge.
type nodeRec struct {
	node  Node
	first int64 // first seen, ns
	// id is dense in [0, len(Graph.nodes)), so snapshots index their
	// projection by it rather than hashing the pointer.
	id int32
}

type edgeKey struct {
	src, dst *nodeRec
	proto    Protocol
}

type edge struct {
	key        edgeKey
	ch         [numChannels]*series // nil until the channel sees data
	principals []string
	firstSeen  int64
	lastSeen   int64
}

// Counters are what the graph reports about itself.
type Counters struct {
	Observations uint64 // accepted
	Late         uint64 // arrived after their bucket was final; folded into the oldest open bucket
	TooOld       uint64 // older than the window; dropped
	Nodes, Edges int
	Buckets      int    // closed bucket records held
	Bytes        int    // encoded bytes held by closed buckets
	Overflowed   uint64 // observations folded into the overflow node by a cardinality cap
}

// BucketClosed is passed to hooks when a bucket becomes final.
type BucketClosed struct {
	Start, End time.Time
}

// Graph is the live service graph. It is safe for concurrent writers and readers.
type Graph struct {
	cfg   Config
	res   int64 // ns
	slots int64
	grace int64 // buckets
	lay   layout

	mu        sync.RWMutex
	watermark int64 // index of the newest bucket the clock has reached; buckets <= watermark-grace-1 are final
	started   bool
	edges     map[edgeKey]*edge
	edgeList  []*edge
	nodes     map[Node]*nodeRec
	nodesGen  uint64 // bumped when nodes changes, under mu
	// oneToOne caches projectsOneToOne per view for nodesGen, as
	// nodesGen<<2 | result<<1 | 1; snapshots fill it under the read lock.
	oneToOne [numViews]atomic.Uint64
	dirty    []*series // series with open buckets
	hooks    []func(BucketClosed)
	last     *edge // one-entry cache for runs of observations on one edge

	observations, late, tooOld, overflowed atomic.Uint64

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds an empty graph; it starts nothing.
func New(cfg Config) *Graph {
	c := cfg.withDefaults()
	g := &Graph{
		cfg:   c,
		res:   int64(c.Resolution),
		slots: int64(c.Window / c.Resolution),
		grace: int64((c.Grace + c.Resolution - 1) / c.Resolution),
		edges: make(map[edgeKey]*edge),
		nodes: make(map[Node]*nodeRec),
	}
	if g.slots < 1 {
		g.slots = 1
	}
	// Rollups of about a minute, at most maxGroupBuckets buckets, aligned on
	// multiples of their span so every series cuts time the same way.
	g.lay.n = min(max(int64((time.Minute+c.Resolution/2)/c.Resolution), 1), maxGroupBuckets)
	g.lay.keepRaw = max(int64((c.RawLatency+c.Resolution-1)/c.Resolution), g.lay.n)
	return g
}

// Resolution is the bucket width.
func (g *Graph) Resolution() time.Duration { return g.cfg.Resolution }

// Window is how much history the graph holds.
func (g *Graph) Window() time.Duration { return g.cfg.Window }

// OnBucketClose registers fn to run (outside the graph's lock, in order) each
// time a bucket becomes final. Register before Start or Advance.
func (g *Graph) OnBucketClose(fn func(BucketClosed)) {
	g.mu.Lock()
	g.hooks = append(g.hooks, fn)
	g.mu.Unlock()
}

// Start advances the graph's clock every second until Shutdown.
func (g *Graph) Start(ctx context.Context) error {
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.cancel != nil {
		return fmt.Errorf("graph already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	done := make(chan struct{})
	g.done = done
	g.Advance(g.cfg.Clock())
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.Advance(g.cfg.Clock())
			}
		}
	}()
	return nil
}

// Shutdown stops the clock; safe to call twice and without Start.
func (g *Graph) Shutdown(ctx context.Context) error {
	g.runMu.Lock()
	if g.cancel != nil {
		g.cancel()
	}
	done := g.done
	g.runMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("graph shutdown: %w", ctx.Err())
	}
}

func (g *Graph) index(t time.Time) int64 {
	ns := t.UnixNano()
	if ns < 0 {
		return (ns - g.res + 1) / g.res
	}
	return ns / g.res
}

func (g *Graph) timeOf(idx int64) time.Time { return time.Unix(0, idx*g.res) }

// Ingest adds a batch of observations under one lock.
func (g *Graph) Ingest(batch []Observation) {
	if len(batch) == 0 {
		return
	}
	g.mu.Lock()
	for i := range batch {
		g.ingestLocked(&batch[i])
	}
	g.mu.Unlock()
}

// IngestOne adds a single observation.
func (g *Graph) IngestOne(o *Observation) {
	g.mu.Lock()
	g.ingestLocked(o)
	g.mu.Unlock()
}

// bucketIndex is the bucket t falls in, after the late and too-old rules;
// false when t is older than the window.
func (g *Graph) bucketIndex(t time.Time) (int64, bool) {
	idx := g.index(t)
	if g.started {
		if idx <= g.watermark-g.slots {
			g.tooOld.Add(1)
			return 0, false
		}
		if final := g.watermark - g.grace; idx < final {
			idx = final
			g.late.Add(1)
		}
	}
	return idx, true
}

// openFor is the open bucket idx of e's channel ch, made when missing.
func (g *Graph) openFor(e *edge, ch int, idx int64) *openBucket {
	s := e.ch[ch]
	if s == nil {
		s = &series{}
		e.ch[ch] = s
	}
	b := s.openBucket(idx)
	if b == nil {
		if len(s.open) == 0 {
			g.dirty = append(g.dirty, s)
		}
		b = s.newOpen(idx)
	}
	return b
}

func (g *Graph) ingestLocked(o *Observation) {
	idx, ok := g.bucketIndex(o.Time)
	if !ok {
		return
	}
	src, dst := g.normalize(o.Src), g.normalize(o.Dst)
	e := g.last
	if e == nil || e.key.proto != o.Protocol || e.key.src.node != src || e.key.dst.node != dst {
		e = g.edgeFor(src, dst, o.Protocol, o.Time.UnixNano())
		g.last = e
	}
	if ns := o.Time.UnixNano(); ns > e.lastSeen {
		e.lastSeen = ns
	}
	if o.SrcPrincipal != "" || o.DstPrincipal != "" {
		e.addPrincipal(o.SrcPrincipal)
		e.addPrincipal(o.DstPrincipal)
	}
	g.openFor(e, channelOf(o), idx).add(o)
	g.observations.Add(1)
}

// normalize fills a missing identity and cluster and caps label lengths.
func (g *Graph) normalize(n Node) Node {
	if n.IsZero() {
		return UnknownNode
	}
	if n.Cluster == "" && g.cfg.DefaultCluster != "" && n.Kind != KindUnknown {
		n.Cluster = g.cfg.DefaultCluster
	}
	if max := g.cfg.MaxLabelLen; len(n.Cluster) > max || len(n.Namespace) > max || len(n.Workload) > max ||
		len(n.App) > max || len(n.Version) > max || len(n.Service) > max {
		for _, f := range []*string{&n.Cluster, &n.Namespace, &n.Workload, &n.App, &n.Version, &n.Service} {
			*f = cutLabel(*f, max)
		}
	}
	return n
}

// cutLabel shortens s to at most max bytes on a UTF-8 boundary.
func cutLabel(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// edgeFor finds or creates the edge src->dst, folding new identities into the
// overflow node once a cardinality cap is reached.
func (g *Graph) edgeFor(src, dst Node, proto Protocol, ns int64) *edge {
	folded := false
	sr, dr := g.node(src, ns), g.node(dst, ns)
	if sr == nil {
		sr, folded = g.overflowNode(ns), true
	}
	if dr == nil {
		dr, folded = g.overflowNode(ns), true
	}
	k := edgeKey{src: sr, dst: dr, proto: proto}
	e := g.edges[k]
	if e == nil && len(g.edgeList) >= g.cfg.MaxEdges {
		// Keep the caller's identity when it is known: "who is spraying" is the useful part.
		folded = true
		k.dst = g.overflowNode(ns)
		if e = g.edges[k]; e == nil {
			k.src = k.dst
			e = g.edges[k]
		}
	}
	if folded {
		g.overflowed.Add(1)
	}
	if e == nil {
		e = &edge{key: k, firstSeen: ns}
		g.edges[k] = e
		g.edgeList = append(g.edgeList, e)
	}
	return e
}

func (g *Graph) overflowNode(ns int64) *nodeRec {
	r := g.nodes[OverflowNode]
	if r == nil {
		r = &nodeRec{node: OverflowNode, first: ns, id: int32(len(g.nodes))}
		g.nodes[OverflowNode] = r
		g.nodesGen++
	}
	return r
}

// node interns n, first seen at ns; nil when n is new and the node cap is reached.
func (g *Graph) node(n Node, ns int64) *nodeRec {
	r := g.nodes[n]
	if r == nil {
		if len(g.nodes) >= g.cfg.MaxNodes {
			return nil
		}
		r = &nodeRec{node: n, first: ns, id: int32(len(g.nodes))}
		g.nodes[n] = r
		g.nodesGen++
	}
	return r
}

const maxPrincipals = 8

func (e *edge) addPrincipal(p string) {
	if p == "" || len(e.principals) >= maxPrincipals {
		return
	}
	for _, q := range e.principals {
		if q == p {
			return
		}
	}
	e.principals = append(e.principals, p)
}

// Advance moves the graph's clock to t: buckets that end before t minus the
// grace become final (hooks run), and buckets older than the window are dropped.
// Time never moves backwards.
func (g *Graph) Advance(t time.Time) {
	idx := g.index(t)
	g.mu.Lock()
	if g.started && idx <= g.watermark {
		g.mu.Unlock()
		return
	}
	oldFinal := g.watermark - g.grace
	if !g.started {
		oldFinal = idx - g.grace
		// Buckets ingested before the clock started become final in order too.
		for _, s := range g.dirty {
			for _, b := range s.open {
				if b.idx < oldFinal {
					oldFinal = b.idx
				}
			}
		}
	}
	g.started = true
	g.watermark = idx
	final := idx - g.grace // buckets < final are final
	keep := g.dirty[:0]
	for _, s := range g.dirty {
		s.closeBefore(final, &g.lay)
		if len(s.open) > 0 {
			keep = append(keep, s)
		}
	}
	clear(g.dirty[len(keep):])
	g.dirty = keep
	oldest := idx - g.slots
	g.trimLocked(final, oldest, idx-g.lay.keepRaw)
	hooks := g.hooks
	g.mu.Unlock()

	if len(hooks) == 0 {
		return
	}
	from := oldFinal
	if from < final-g.slots {
		from = final - g.slots
	}
	for b := from; b < final; b++ {
		ev := BucketClosed{Start: g.timeOf(b), End: g.timeOf(b + 1)}
		for _, h := range hooks {
			h(ev)
		}
	}
}

// trimLocked rolls up complete groups, folds raw sketches older than
// foldBefore, drops buckets older than oldest and edges left with nothing.
func (g *Graph) trimLocked(final, oldest, foldBefore int64) {
	// Once per minute of window, when series drop their oldest group, logs
	// move to fresh arena chunks (see logArena).
	if ep := floorDiv(oldest+1, g.lay.n); ep != g.lay.arena.epoch {
		g.lay.arena.epoch = ep
		g.lay.arena.bump()
	}
	keep := g.edgeList[:0]
	for _, e := range g.edgeList {
		empty := true
		for _, s := range e.ch {
			if s == nil {
				continue
			}
			s.maintain(final, oldest, foldBefore, &g.lay)
			if !s.empty() {
				empty = false
			}
		}
		if empty && e.lastSeen < oldest*g.res {
			delete(g.edges, e.key)
			if g.last == e {
				g.last = nil
			}
			continue
		}
		keep = append(keep, e)
	}
	clear(g.edgeList[len(keep):])
	g.edgeList = keep
	if len(g.nodes) > 2*len(g.edgeList)+16 {
		live := make(map[Node]*nodeRec, len(g.nodes))
		for _, e := range g.edgeList {
			for _, r := range [2]*nodeRec{e.key.src, e.key.dst} {
				if _, ok := live[r.node]; !ok {
					r.id = int32(len(live))
					live[r.node] = r
				}
			}
		}
		g.nodes = live
		g.nodesGen++
	}
}

// Now is the start of the bucket the graph's clock is in (zero before the clock starts).
func (g *Graph) Now() time.Time {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.started {
		return time.Time{}
	}
	return g.timeOf(g.watermark)
}

// Counters reports the graph's size and ingest counts.
func (g *Graph) Counters() Counters {
	g.mu.RLock()
	defer g.mu.RUnlock()
	c := Counters{
		Observations: g.observations.Load(),
		Late:         g.late.Load(),
		TooOld:       g.tooOld.Load(),
		Overflowed:   g.overflowed.Load(),
		Nodes:        len(g.nodes),
		Edges:        len(g.edgeList),
	}
	for _, e := range g.edgeList {
		for _, s := range e.ch {
			if s != nil {
				c.Buckets += int(s.nrecs)
				c.Bytes += len(s.log)
			}
		}
	}
	return c
}
