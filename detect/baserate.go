package detect

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// BaseRates learns how often each node is blamed by anomalies: time is cut
// into slots, and a node's base rate is the share of active slots (slots in
// which anything fired) in which it was blamed too. A service that is
// anomalous in most slots — chronically noisy, or degrading all day — is weak
// evidence when it shows up in yet another incident.
type BaseRates struct {
	mu    sync.Mutex
	slot  time.Duration
	keep  int
	slots map[int64]map[string]bool // slot index -> blamed nodes
	order []int64                   // active slots, oldest first
}

// NewBaseRates keeps the last keep active slots of width slot.
func NewBaseRates(slot time.Duration, keep int) (*BaseRates, error) {
	if slot <= 0 || keep < 1 {
		return nil, fmt.Errorf("detect base rates: slot %s and keep %d must be positive", slot, keep)
	}
	return &BaseRates{slot: slot, keep: keep, slots: map[int64]map[string]bool{}}, nil
}

// Attach records every anomaly e fires from now on; cancel stops it.
func (b *BaseRates) Attach(e *Engine) (cancel func()) {
	return e.Subscribe(func(c Change) {
		if c.Action == "fired" && c.Anomaly != nil {
			b.Record(c.Anomaly)
		}
	})
}

// Record counts one fired anomaly for the nodes it blames.
func (b *BaseRates) Record(a *Anomaly) {
	ids, ws := blame(a)
	b.mu.Lock()
	defer b.mu.Unlock()
	k := a.FiredAt.UnixNano() / int64(b.slot)
	m := b.slots[k]
	if m == nil {
		m = map[string]bool{}
		b.slots[k] = m
		i, _ := slices.BinarySearch(b.order, k)
		b.order = slices.Insert(b.order, i, k)
		for len(b.order) > b.keep {
			delete(b.slots, b.order[0])
			b.order = b.order[1:]
		}
	}
	sig := signalOf(a)
	for i, id := range ids {
		// Weak blame (a caller's outbound errors) is not the node's own noise.
		if ws == nil || ws[i] >= 0.5 {
			m[rateKey(id, sig)] = true
		}
	}
}

// signalOf is the kind of evidence a is, for base rates: a service whose
// trace timing wobbles all day still has a telling CPU jump.
func signalOf(a *Anomaly) string { return a.Type + "/" + a.Metric }

func rateKey(node, signal string) string { return node + "\x00" + signal }

// Rate is the share of active slots ending before t in which node was
// blamed by anomalies of signal (Anomaly.Type + "/" + Anomaly.Metric), and
// how many active slots that is out of.
func (b *BaseRates) Rate(node, signal string, before time.Time) (rate float64, slots int) {
	key := rateKey(node, signal)
	b.mu.Lock()
	defer b.mu.Unlock()
	lim := before.UnixNano() / int64(b.slot)
	hit := 0
	for _, k := range b.order {
		if k >= lim {
			break
		}
		slots++
		if b.slots[k][key] {
			hit++
		}
	}
	if slots == 0 {
		return 0, 0
	}
	return float64(hit) / float64(slots), slots
}

// RecentRankConfig tunes RankRecent.
type RecentRankConfig struct {
	// Recent: only anomalies fired within this long before the ranking time
	// count; older ones of a long-lived incident are stale.
	Recent time.Duration
	// Noise, when set, discounts each piece of evidence by exp(-NoiseWeight
	// * base rate) of its node and signal, learned from slots before the
	// recent window.
	Noise       *BaseRates
	NoiseWeight float64
	// MinSlots: below this many learned slots no discount applies.
	MinSlots int
	// Tau, when > 0, weighs each piece of evidence by exp(-age/Tau), age
	// counted from when it was last seen hot to the ranking time: what is
	// wrong now outranks what was wrong a few minutes ago.
	Tau time.Duration
	// Added, when set, adds to each node log2(1 + ms/10) for the time its
	// own work added to requests in the window beyond what it usually adds
	// (Structure measures it from trace timing): the service that made
	// requests slower outranks the ones that only waited for it or wobbled
	// by a millisecond. It is net of the node's noise already, so no base
	// rate discounts it.
	Added AddedTime
}

// AddedTime reports, per node, how much time its own work added to its
// requests in [from, to] beyond baseline, recent windows weighing more.
type AddedTime interface {
	// AddedMs weighs each window by exp(-age/tau), age counted back from to.
	AddedMs(from, to time.Time, tau time.Duration) []NodeAdded
}

// NodeAdded is one node's added time.
type NodeAdded struct {
	Node NodeRef
	Ms   float64
}

// DefaultRecentRankConfig ranks the last 10 minutes with a noise discount
// once 8 active slots are known.
func DefaultRecentRankConfig(noise *BaseRates) RecentRankConfig {
	return RecentRankConfig{Recent: 10 * time.Minute, Noise: noise, NoiseWeight: 2.5, MinSlots: 8, Tau: 5 * time.Minute}
}

// lastSeen is when a was last known hot: its resolution, or its last update
// while it fires.
func lastSeen(a *Anomaly) time.Time {
	switch {
	case a.ResolvedAt != nil:
		return *a.ResolvedAt
	case a.UpdatedAt.After(a.FiredAt):
		return a.UpdatedAt
	}
	return a.FiredAt
}

// recency is exp(-age/tau) of evidence last seen hot at lastSeen(a); 1
// when tau <= 0.
func recency(a *Anomaly, at time.Time, tau time.Duration) float64 {
	seen := lastSeen(a)
	if tau <= 0 || !seen.Before(at) {
		return 1
	}
	return math.Exp(-at.Sub(seen).Seconds() / tau.Seconds())
}

// onset weighs down evidence that began before the window from by
// exp(-(from - Since)/recent): what has been wrong for hours is the old
// normal, not what broke now, even while it still fires.
func onset(a *Anomaly, from time.Time, recent time.Duration) float64 {
	if !a.Since.Before(from) || recent <= 0 {
		return 1
	}
	return math.Exp(-from.Sub(a.Since).Seconds() / recent.Seconds())
}

// activeIn reports whether a fired in [from, at] or was last seen hot then:
// a service slow since just before the window is as much a suspect as one
// that just turned, one left firing but not updated for long is not.
func activeIn(a *Anomaly, from, at time.Time) bool {
	return !a.FiredAt.After(at) && !lastSeen(a).Before(from)
}

// RankRecent ranks the root causes of an incident at time at from its
// anomalies fired within cfg.Recent before at, the way the incident ranking
// does (blame weights, callee explanation), with chronically noisy nodes
// discounted. It is the view of "what broke now" of a long, merged incident.
// An empty incidentID ranks every anomaly fired in the window: the suspects
// of the moment across incidents.
func (e *Engine) RankRecent(incidentID string, at time.Time, cfg RecentRankConfig) ([]RootCause, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rankRecent(incidentID, at, cfg)
}

// rankRecent is RankRecent under e.mu.
func (e *Engine) rankRecent(incidentID string, at time.Time, cfg RecentRankConfig) ([]RootCause, error) {
	from := at.Add(-cfg.Recent)
	var members []string
	if incidentID == "" {
		// Every anomaly fired in the window, whatever incident it joined.
		var as []*Anomaly
		for _, a := range e.byID {
			if activeIn(a, from, at) {
				as = append(as, a)
			}
		}
		slices.SortFunc(as, func(a, b *Anomaly) int {
			if c := a.Since.Compare(b.Since); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		for _, a := range as {
			members = append(members, a.ID)
		}
	} else {
		inc, ok := e.inc.byID[incidentID]
		if !ok {
			return nil, fmt.Errorf("rank incident %s: %w", incidentID, ErrNotFound)
		}
		members = inc.Anomalies
	}
	type acc struct {
		ref        NodeRef
		best, sum  float64
		top        *Anomaly
		since      time.Time
		prop, src  bool
		ids        []string
		rate       float64 // base rate of the top anomaly's signal
		discounted bool
	}
	nodes := map[string]*acc{}
	var order []string
	for _, id := range members {
		a := e.byID[id]
		if a == nil || !activeIn(a, from, at) {
			continue
		}
		ids, ws := blame(a)
		for i, nid := range ids {
			n := nodes[nid]
			if n == nil {
				n = &acc{ref: refFor(a, nid), since: a.Since}
				nodes[nid] = n
				order = append(order, nid)
			}
			w := 1.0
			if ws != nil {
				w = ws[i]
			}
			s := w * strength(a) * recency(a, at, cfg.Tau) * onset(a, from, cfg.Recent)
			rate, known := 0.0, false
			if cfg.Noise != nil {
				if r, slots := cfg.Noise.Rate(nid, signalOf(a), from); slots >= cfg.MinSlots {
					rate, known = r, true
					s *= math.Exp(-cfg.NoiseWeight * r)
				}
			}
			if n.top == nil || s > n.best {
				if n.top != nil {
					n.sum += n.best
				}
				n.best, n.top = s, a
				n.rate, n.discounted = rate, known
			} else {
				n.sum += s
			}
			if a.Since.Before(n.since) {
				n.since = a.Since
			}
			n.prop = n.prop || propagating(a.Type)
			n.src = n.src || ownDoing(a.Type)
			n.ids = append(n.ids, a.ID)
		}
	}
	added := map[string]float64{}
	if cfg.Added != nil {
		// An incident's ranking takes in the services it touches and their
		// direct neighbours (a slow service its callers' latency points at
		// may have no anomaly of its own); the pooled ranking takes all.
		var near map[string]bool
		if incidentID != "" {
			near = map[string]bool{}
			for _, ks := range e.known {
				s, d := ks.srcID, ks.dstID
				if nodes[s] != nil || nodes[d] != nil {
					near[s], near[d] = true, true
				}
			}
		}
		for _, na := range cfg.Added.AddedMs(from, at, cfg.Tau) {
			id := na.Node.ID
			if na.Ms <= 0 || near != nil && nodes[id] == nil && !near[id] {
				continue
			}
			added[id] = na.Ms
			if nodes[id] == nil {
				nodes[id] = &acc{ref: na.Node, since: from}
				order = append(order, id)
			}
		}
	}
	in := make([]NodeScore, 0, len(order))
	for _, id := range order {
		n := nodes[id]
		sc := 0.0
		if n.top != nil {
			sc = n.best + 0.25*n.sum
		}
		in = append(in, NodeScore{ID: id, Score: sc, Since: n.since, Propagating: n.prop, Source: n.src})
	}
	callees := map[string][]string{}
	for _, ks := range e.known {
		s, d := ks.srcID, ks.dstID
		if nodes[s] != nil && nodes[d] != nil {
			callees[s] = append(callees[s], d)
		}
	}
	ranked := RankRoots(in, func(id string) []string { return callees[id] })
	if len(added) > 0 {
		// Added time is the node's own, already net of waiting for its
		// callees: no callee explains it away.
		for i := range ranked {
			if ms := added[ranked[i].ID]; ms > 0 {
				ranked[i].Score += math.Log2(1 + ms/excessUnitMs)
			}
		}
		slices.SortStableFunc(ranked, func(a, b Ranked) int { return cmp.Compare(b.Score, a.Score) })
	}
	out := make([]RootCause, 0, len(ranked))
	for _, r := range ranked {
		n := nodes[r.ID]
		var ex string
		if n.top != nil {
			ex = fmt.Sprintf("%s since %s", n.top.Summary, n.since.UTC().Format("15:04:05"))
		}
		if ms := added[r.ID]; ms > 0 {
			if ex != "" {
				ex += "; "
			}
			ex += fmt.Sprintf("its own work added %s to its requests since %s", fmtMs(ms), from.UTC().Format("15:04:05"))
		}
		if r.Explained {
			ex += fmt.Sprintf("; likely a consequence of %s, which it calls", nodes[r.ExplainedBy].ref.Name)
		}
		if n.discounted && n.rate > 0 {
			ex += fmt.Sprintf("; %s anomalous in %.0f%% of earlier periods, discounted", n.top.Metric, 100*n.rate)
		}
		out = append(out, RootCause{Node: n.ref, Score: math.Round(r.Score*100) / 100, Explained: r.Explained, Explanation: ex, Anomalies: n.ids})
	}
	return out, nil
}

func fmtMs(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.1fs", ms/1000)
	}
	return fmt.Sprintf("%.0fms", ms)
}
