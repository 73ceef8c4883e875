package graph

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrBadQuery wraps every problem with a Query.
var ErrBadQuery = errors.New("bad graph query")

// DefaultWindow is the snapshot window when a query names none.
const DefaultWindow = 5 * time.Minute

type projKey struct {
	src, dst Node
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
	nsFilter := len(q.Namespaces) > 0
	snap := &Snapshot{
		View:       q.View,
		Namespaces: q.Namespaces,
		Start:      g.timeOf(from),
		End:        g.timeOf(to),
		Resolution: g.cfg.Resolution,
	}
	edges := make(map[projKey]int, len(g.edgeList))
	var chs [numChannels]Stats
	for _, e := range g.edgeList {
		if nsFilter && !slices.Contains(q.Namespaces, e.key.src.Namespace) && !slices.Contains(q.Namespaces, e.key.dst.Namespace) {
			continue
		}
		var have [numChannels]bool
		anyData := false
		for i := range e.ch {
			chs[i] = Stats{Latency: chs[i].Latency}
			chs[i].Latency.Reset()
			have[i] = e.ch[i].sum(from, to, &chs[i])
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
		var signals Signal
		var reporters uint16
		for i := range have {
			if have[i] {
				signals |= chs[i].Signals
				reporters |= chs[i].Reporters
			}
		}
		k := projKey{src: q.View.Project(e.key.src), dst: q.View.Project(e.key.dst), proto: e.key.proto}
		j, ok := edges[k]
		if !ok {
			j = len(snap.Edges)
			edges[k] = j
			snap.Edges = append(snap.Edges, EdgeSnapshot{
				Source: k.src, Target: k.dst, Protocol: k.proto,
				FirstSeen: time.Unix(0, e.firstSeen), LastSeen: time.Unix(0, e.lastSeen),
			})
		}
		es := &snap.Edges[j]
		if !ok {
			// Hand the channel's buffers to the edge instead of merging into an empty one.
			es.Stats, chs[primary] = chs[primary], Stats{}
		} else {
			es.Stats.Add(&chs[primary])
		}
		es.Stats.Signals |= signals
		es.Stats.Reporters |= reporters
		if secondary >= 0 {
			if es.SourceReported == nil {
				es.SourceReported = &Stats{}
			}
			es.SourceReported.Add(&chs[secondary])
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
	nodes := make(map[Node]int)
	nodeOf := func(n Node) *NodeSnapshot {
		i, ok := nodes[n]
		if !ok {
			i = len(snap.Nodes)
			nodes[n] = i
			snap.Nodes = append(snap.Nodes, NodeSnapshot{Node: n})
		}
		return &snap.Nodes[i]
	}
	for i := range snap.Edges {
		e := &snap.Edges[i]
		nodeOf(e.Source).Out.Add(&e.Stats)
		nodeOf(e.Target).In.Add(&e.Stats)
	}
	for i := range snap.Nodes {
		n := &snap.Nodes[i]
		n.Signals = n.In.Signals | n.Out.Signals
	}
	sortSnapshot(snap)
	return snap, nil
}

func sortSnapshot(s *Snapshot) {
	// IDs are computed once; comparing them inside the sort would allocate per comparison.
	nodeIDs := make(map[Node]string, len(s.Nodes))
	id := func(n Node) string {
		v, ok := nodeIDs[n]
		if !ok {
			v = n.ID()
			nodeIDs[n] = v
		}
		return v
	}
	type keyed struct {
		key string
		i   int
	}
	nk := make([]keyed, len(s.Nodes))
	for i := range s.Nodes {
		nk[i] = keyed{id(s.Nodes[i].Node), i}
	}
	slices.SortFunc(nk, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	nodes := make([]NodeSnapshot, len(s.Nodes))
	for i, k := range nk {
		nodes[i] = s.Nodes[k.i]
	}
	s.Nodes = nodes
	ek := make([]keyed, len(s.Edges))
	for i := range s.Edges {
		e := &s.Edges[i]
		ek[i] = keyed{id(e.Source) + "\x00" + id(e.Target) + "\x00" + e.Protocol.String(), i}
	}
	slices.SortFunc(ek, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	edges := make([]EdgeSnapshot, len(s.Edges))
	for i, k := range ek {
		edges[i] = s.Edges[k.i]
	}
	s.Edges = edges
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
	out := make([]Stats, to-from)
	var tmp [numChannels][]Stats
	for i := range tmp {
		tmp[i] = make([]Stats, to-from)
	}
	for _, e := range g.edgeList {
		if f.Protocol != nil && *f.Protocol != e.key.proto {
			continue
		}
		if f.Source != nil && f.View.Project(e.key.src) != *f.Source {
			continue
		}
		if f.Target != nil && f.View.Project(e.key.dst) != *f.Target {
			continue
		}
		for i := range e.ch {
			clear(tmp[i])
			e.ch[i].bucketSeries(from, tmp[i])
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
