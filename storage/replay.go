package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// LiveGraph is the in-memory graph Replay falls back from.
type LiveGraph interface {
	Snapshot(graph.Query) (*graph.Snapshot, error)
	History(f graph.EdgeFilter, window time.Duration, at time.Time) (time.Time, []graph.Stats, error)
	Namespaces() []string
	Resolution() time.Duration
	Window() time.Duration
	Now() time.Time
}

var _ LiveGraph = (*graph.Graph)(nil)

// Replay serves graph snapshots from the live graph while the asked window
// is still in memory, and from stored history otherwise. It satisfies the
// web server's GraphSource, so GET /api/v1/graph?at=...&window=... replays
// any stored time with the same JSON.
type Replay struct {
	live  LiveGraph
	store HistoryStore
	ret   Retention
	// Timeout bounds one history query.
	Timeout time.Duration
}

// NewReplay builds a replaying graph source.
func NewReplay(live LiveGraph, store HistoryStore, ret Retention) *Replay {
	return &Replay{live: live, store: store, ret: ret, Timeout: 30 * time.Second}
}

func (r *Replay) History(f graph.EdgeFilter, window time.Duration, at time.Time) (time.Time, []graph.Stats, error) {
	return r.live.History(f, window, at)
}
func (r *Replay) Namespaces() []string      { return r.live.Namespaces() }
func (r *Replay) Resolution() time.Duration { return r.live.Resolution() }

// Window is how far back snapshots reach: the longest retention.
func (r *Replay) Window() time.Duration { return max(r.live.Window(), r.ret.Hour) }

// inMemory reports whether the live graph holds all of [at-window, at).
func (r *Replay) inMemory(q graph.Query) bool {
	w := q.Window
	if w == 0 {
		w = graph.DefaultWindow
	}
	if w > r.live.Window() {
		return false
	}
	if q.At.IsZero() {
		return true
	}
	now := r.live.Now()
	if now.IsZero() {
		return false
	}
	// One bucket of margin: the oldest slot may already be trimmed.
	oldest := now.Add(-r.live.Window() + r.live.Resolution())
	return !q.At.Add(-w).Before(oldest)
}

// Snapshot answers from memory when it can, else from storage.
func (r *Replay) Snapshot(q graph.Query) (*graph.Snapshot, error) {
	if r.inMemory(q) {
		return r.live.Snapshot(q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	return r.SnapshotAt(ctx, q)
}

// tierPlan is one way to answer a window from one resolution.
type tierPlan struct {
	res      time.Duration
	from, to time.Time
}

// plans lists the tiers to try for [from, to), best first: the coarsest
// tier that covers the window exactly (fewest rows), then the finest tier
// that still holds the start, widening to its bucket edges.
func (r *Replay) plans(ctx context.Context, from, to time.Time, raw time.Duration) []tierPlan {
	var out []tierPlan
	tiers := []time.Duration{raw, Res1m, Res1h}
	for i := len(tiers) - 1; i >= 0; i-- {
		res := tiers[i]
		if i > 0 && res <= raw {
			continue
		}
		if !from.Truncate(res).Equal(from) || !to.Truncate(res).Equal(to) {
			continue
		}
		if res != raw {
			wm, err := r.store.RolledUpTo(ctx, res)
			if err != nil || wm.Before(to) {
				continue
			}
		}
		out = append(out, tierPlan{res, from, to})
		break
	}
	for i, res := range tiers {
		if i > 0 && res <= raw {
			continue
		}
		f := from.Truncate(res)
		t := to.Truncate(res)
		if t.Before(to) {
			t = t.Add(res)
		}
		out = append(out, tierPlan{res, f, t})
	}
	return out
}

// segments covers [from, to) exactly with the coarsest rolled-up tiers:
// whole hours, then whole minutes, then raw buckets at the ragged ends.
func (r *Replay) segments(ctx context.Context, from, to time.Time, raw time.Duration) []tierPlan {
	var out []tierPlan
	var fill func(from, to time.Time, tiers []time.Duration)
	fill = func(from, to time.Time, tiers []time.Duration) {
		if !from.Before(to) {
			return
		}
		if len(tiers) == 0 {
			out = append(out, tierPlan{raw, from, to})
			return
		}
		res := tiers[0]
		lo := from.Truncate(res)
		if lo.Before(from) {
			lo = lo.Add(res)
		}
		hi := to.Truncate(res)
		wm, err := r.store.RolledUpTo(ctx, res)
		if err == nil && wm.Before(hi) {
			hi = wm.Truncate(res)
		}
		if err != nil || !lo.Before(hi) {
			fill(from, to, tiers[1:])
			return
		}
		fill(from, lo, tiers[1:])
		out = append(out, tierPlan{res, lo, hi})
		fill(hi, to, tiers[1:])
	}
	var tiers []time.Duration
	for _, t := range []time.Duration{Res1h, Res1m} {
		if t > raw && t%raw == 0 {
			tiers = append(tiers, t)
		}
	}
	fill(from, to, tiers)
	return out
}

// spanSummer is a store that sums several tier ranges in one pass.
type spanSummer interface {
	sumSpans(ctx context.Context, spans []sumSpan) ([]EdgeTotal, error)
}

// sumSegments sums each segment and merges the totals per edge.
func (r *Replay) sumSegments(ctx context.Context, segs []tierPlan) ([]EdgeTotal, error) {
	if len(segs) == 1 {
		return r.store.SumBuckets(ctx, segs[0].res, segs[0].from, segs[0].to)
	}
	raw := r.live.Resolution()
	if ss, ok := r.store.(spanSummer); ok {
		spans := make([]sumSpan, len(segs))
		for i, sg := range segs {
			spans[i] = sumSpan{res: sg.res, from: sg.from, to: sg.to, shift: sg.res - raw}
		}
		return ss.sumSpans(ctx, spans)
	}
	type key struct {
		src, dst graph.Node
		proto    graph.Protocol
	}
	idx := map[key]int{}
	var out []EdgeTotal
	for _, sg := range segs {
		ts, err := r.store.SumBuckets(ctx, sg.res, sg.from, sg.to)
		if err != nil {
			return nil, err
		}
		for i := range ts {
			t := &ts[i]
			t.LastSeen = t.LastSeen.Add(sg.res - raw) // last raw bucket the row covers
			k := key{t.Source, t.Target, t.Protocol}
			j, ok := idx[k]
			if !ok {
				idx[k] = len(out)
				out = append(out, *t)
				continue
			}
			o := &out[j]
			o.Stats.Add(&t.Stats)
			if t.FirstSeen.Before(o.FirstSeen) {
				o.FirstSeen = t.FirstSeen
			}
			if t.LastSeen.After(o.LastSeen) {
				o.LastSeen = t.LastSeen
			}
		}
	}
	return out, nil
}

// SnapshotAt builds the snapshot of q from stored history: the window ending
// at q.At (rounded up to the raw resolution), in q's view and namespaces.
func (r *Replay) SnapshotAt(ctx context.Context, q graph.Query) (*graph.Snapshot, error) {
	if q.View > graph.ViewService {
		return nil, fmt.Errorf("%w: unknown view %d", graph.ErrBadQuery, q.View)
	}
	w := q.Window
	if w == 0 {
		w = graph.DefaultWindow
	}
	if w < 0 {
		return nil, fmt.Errorf("%w: window %s must be positive", graph.ErrBadQuery, w)
	}
	raw := r.live.Resolution()
	at := q.At
	if at.IsZero() {
		at = r.live.Now()
	}
	to := at.Truncate(raw)
	if to.Before(at) {
		to = to.Add(raw)
	}
	from := to.Add(-w).Truncate(raw)
	plan := tierPlan{raw, from, to}
	// Exact first: tiers stitched together over exactly [from, to). When
	// retention has dropped the fine rows, widen to a coarser tier's edges.
	totals, err := r.sumSegments(ctx, r.segments(ctx, from, to, raw))
	if err != nil {
		return nil, fmt.Errorf("replay %s..%s: %w", from, to, err)
	}
	if len(totals) == 0 {
		for _, p := range r.plans(ctx, from, to, raw) {
			t, err := r.store.SumBuckets(ctx, p.res, p.from, p.to)
			if err != nil {
				return nil, fmt.Errorf("replay %s..%s: %w", p.from, p.to, err)
			}
			if len(t) > 0 {
				totals, plan = t, p
				break
			}
		}
	}
	// A scratch graph of one bucket per edge projects, merges and sorts
	// exactly as the live graph does.
	span := plan.to.Sub(plan.from)
	tg := graph.New(graph.Config{Resolution: plan.res, Window: span})
	for i := range totals {
		e := &totals[i]
		tg.IngestStats(plan.from, e.Source, e.Target, e.Protocol, &e.Stats, e.Principals)
	}
	snap, err := tg.Snapshot(graph.Query{View: q.View, Namespaces: q.Namespaces, Window: span, At: plan.to})
	if err != nil {
		return nil, err
	}
	// First and last seen within the window, from the stored buckets.
	seen := make(map[[2]graph.Node][2]time.Time, len(totals))
	for i := range totals {
		e := &totals[i]
		k := [2]graph.Node{q.View.Project(e.Source), q.View.Project(e.Target)}
		v, ok := seen[k]
		if !ok || e.FirstSeen.Before(v[0]) {
			v[0] = e.FirstSeen
		}
		if e.LastSeen.After(v[1]) {
			v[1] = e.LastSeen
		}
		seen[k] = v
	}
	for i := range snap.Edges {
		if v, ok := seen[[2]graph.Node{snap.Edges[i].Source, snap.Edges[i].Target}]; ok {
			snap.Edges[i].FirstSeen, snap.Edges[i].LastSeen = v[0], v[1].Add(plan.res)
		}
	}
	return snap, nil
}
