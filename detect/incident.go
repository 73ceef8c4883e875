package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

type incidents struct {
	byID  map[string]*Incident
	order []string // oldest first, bounded
	open  map[string]bool
	dirty bool
}

func (s *incidents) init() {
	s.byID = map[string]*Incident{}
	s.open = map[string]bool{}
}

// blame says which node(s) an anomaly points at, with weights.
func blame(a *Anomaly) (ids []string, w []float64) {
	s := a.Subject
	switch a.Type {
	case TypeLatency, TypeErrors:
		switch s.Kind {
		case SubjectEdge:
			return []string{s.Target.ID}, []float64{1}
		case SubjectNodeOut:
			// A node's failing outbound calls mostly point at its callees.
			return []string{s.Node.ID}, []float64{0.3}
		}
		return []string{s.Node.ID}, []float64{1}
	case TypeTraffic:
		if s.Kind == SubjectEdge {
			return []string{s.Source.ID, s.Target.ID}, []float64{0.5, 0.5}
		}
		return []string{s.Node.ID}, []float64{0.7}
	case TypeUnexpected, TypePolicy:
		return []string{s.Source.ID}, []float64{1}
	case TypeMTLS:
		// Plaintext on an edge usually means the callee's side dropped mTLS
		// (PeerAuthentication, sidecar gone); the caller may have too.
		return []string{s.Target.ID, s.Source.ID}, []float64{1, 0.5}
	case TypeBadVersion:
		return []string{s.Node.ID}, []float64{1.5}
	case TypeResource:
		// A starved or runaway service is a cause: its resource use does
		// not travel along calls the way latency does.
		return []string{s.Node.ID}, []float64{1.5}
	case TypeNodeMetric:
		return []string{s.Node.ID}, []float64{1}
	}
	return s.Nodes(), nil
}

func strength(a *Anomaly) float64 {
	sev := 1.0
	if a.Severity == SeverityCritical {
		sev = 1.3
	}
	return sev * (1 + math.Log1p(math.Max(a.Score, 0)))
}

// opens reports whether a group of anomalies is an incident: it holds a
// firing symptom. A resource anomaly alone (a CPU jump nothing suffers
// from) stays an anomaly and joins the incident a symptom opens: page on
// symptoms, rank with causes.
func opens(g []*Anomaly) bool {
	for _, a := range g {
		if a.State == StateFiring && a.Type != TypeResource {
			return true
		}
	}
	return false
}

// ownDoing: anomaly types measured net of the service's callees (its
// resource use, its own work): a cause, never a consequence of a callee.
func ownDoing(t string) bool {
	return t == TypeResource || t == TypeNodeMetric
}

func propagating(t string) bool {
	return t == TypeLatency || t == TypeErrors || t == TypeBadVersion
}

type uf []int

func (u uf) find(i int) int {
	for u[i] != i {
		u[i] = u[u[i]]
		i = u[i]
	}
	return i
}
func (u uf) union(a, b int) { u[u.find(a)] = u.find(b) }

// updateIncidents regroups recent anomalies into incidents and re-ranks causes.
func (e *Engine) updateIncidents(end time.Time) {
	if !e.inc.dirty && len(e.inc.open) == 0 {
		return
	}
	e.inc.dirty = false
	// Members: firing anomalies and those resolved within the gap.
	var mem []*Anomaly
	for _, a := range e.active {
		mem = append(mem, a)
	}
	for i := len(e.resolved) - 1; i >= 0; i-- {
		a := e.byID[e.resolved[i]]
		if a == nil || a.ResolvedAt == nil || end.Sub(*a.ResolvedAt) > e.cfg.IncidentGap {
			break
		}
		mem = append(mem, a)
	}
	slices.SortFunc(mem, func(a, b *Anomaly) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	u := make(uf, len(mem))
	for i := range u {
		u[i] = i
	}
	byNode := map[string]int{}
	for i, a := range mem {
		for _, n := range a.Subject.Nodes() {
			if j, ok := byNode[n]; ok {
				u.union(i, j)
			} else {
				byNode[n] = i
			}
		}
	}
	for _, ks := range e.known {
		i, ok1 := byNode[ks.srcID]
		j, ok2 := byNode[ks.dstID]
		if ok1 && ok2 {
			u.union(i, j)
		}
	}
	groups := map[int][]*Anomaly{}
	var roots []int
	for i, a := range mem {
		r := u.find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], a)
	}
	touched := map[string]bool{}
	for _, r := range roots {
		g := groups[r]
		firing := false
		var inc *Incident
		for _, a := range g {
			firing = firing || a.State == StateFiring
			if old := e.inc.byID[a.IncidentID]; old != nil && old.MergedInto == "" && (inc == nil || old.Start.Before(inc.Start)) {
				inc = old
			}
		}
		if inc == nil && !(firing && opens(g)) {
			continue
		}
		if inc == nil {
			inc = &Incident{ID: stableID("inc", g[0].key, g[0].Since), Start: g[0].Since, State: StateFiring}
			e.inc.byID[inc.ID] = inc
			e.inc.order = append(e.inc.order, inc.ID)
		}
		// Other open incidents now in this group merge into the oldest one.
		for _, a := range g {
			if old := e.inc.byID[a.IncidentID]; old != nil && old != inc && old.MergedInto == "" {
				old.MergedInto = inc.ID
				e.closeIncident(old, end)
			}
		}
		before := inc.clone()
		for _, a := range g {
			a.IncidentID = inc.ID
			if !slices.Contains(inc.Anomalies, a.ID) && len(inc.Anomalies) < 500 {
				inc.Anomalies = append(inc.Anomalies, a.ID)
			}
			if a.Since.Before(inc.Start) {
				inc.Start = a.Since
			}
		}
		e.rank(inc, g)
		if e.recentRank.Recent > 0 {
			e.rerank(inc, end)
		}
		touched[inc.ID] = true
		action := "updated"
		if firing {
			if inc.State != StateFiring || inc.ResolvedAt != nil {
				inc.State, inc.ResolvedAt = StateFiring, nil
			}
			if len(before.RootCauses) == 0 {
				action = "fired"
			}
		} else if inc.State == StateFiring {
			e.closeIncident(inc, end)
			continue
		}
		e.inc.open[inc.ID] = firing
		if !firing {
			delete(e.inc.open, inc.ID)
		}
		if action == "fired" || changedIncident(before, inc) {
			inc.UpdatedAt = end
			e.pending = append(e.pending, Change{Action: action, Incident: inc.clone()})
		}
	}
	for id := range e.inc.open {
		if !touched[id] {
			e.closeIncident(e.inc.byID[id], end)
		}
	}
	if over := len(e.inc.order) - e.cfg.MaxHistory; over > 0 {
		keep := e.inc.order[:0]
		for i, id := range e.inc.order {
			if i < over && !e.inc.open[id] {
				delete(e.inc.byID, id)
				continue
			}
			keep = append(keep, id)
		}
		e.inc.order = keep
	}
}

func changedIncident(a, b *Incident) bool {
	if len(a.Anomalies) != len(b.Anomalies) || a.Severity != b.Severity || a.State != b.State {
		return true
	}
	if len(a.RootCauses) > 0 && len(b.RootCauses) > 0 && a.RootCauses[0].Node.ID != b.RootCauses[0].Node.ID {
		return true
	}
	return false
}

func (e *Engine) closeIncident(inc *Incident, end time.Time) {
	delete(e.inc.open, inc.ID)
	if inc.State == StateResolved {
		return
	}
	t := end
	inc.State, inc.ResolvedAt, inc.UpdatedAt = StateResolved, &t, end
	e.pending = append(e.pending, Change{Action: "resolved", Incident: inc.clone()})
}

// rank fills the incident's root causes, nodes, severity and title.
func (e *Engine) rank(inc *Incident, g []*Anomaly) {
	type acc struct {
		ref   NodeRef
		score float64
		top   *Anomaly
		sum   float64
		since time.Time
		prop  bool
		src   bool
		ids   []string
	}
	nodes := map[string]*acc{}
	var order []string
	sev := SeverityInfo
	for _, a := range g {
		if severityRank(a.Severity) > severityRank(sev) {
			sev = a.Severity
		}
		ids, ws := blame(a)
		for i, id := range ids {
			n := nodes[id]
			if n == nil {
				n = &acc{ref: refFor(a, id), since: a.Since}
				nodes[id] = n
				order = append(order, id)
			}
			s := ws[i] * strength(a)
			if n.top == nil || s > n.score {
				if n.top != nil {
					n.sum += n.score
				}
				n.score, n.top = s, a
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
		for _, id := range a.Subject.Nodes() {
			if nodes[id] == nil {
				nodes[id] = &acc{ref: refFor(a, id), since: a.Since}
				order = append(order, id)
			}
		}
	}
	var in []NodeScore
	for _, id := range order {
		n := nodes[id]
		in = append(in, NodeScore{ID: id, Score: n.score + 0.25*n.sum, Since: n.since, Propagating: n.prop, Source: n.src})
	}
	callees := map[string][]string{}
	for _, ks := range e.known {
		s, d := ks.srcID, ks.dstID
		if nodes[s] != nil && nodes[d] != nil {
			callees[s] = append(callees[s], d)
		}
	}
	ranked := RankRoots(in, func(id string) []string { return callees[id] })
	// Who each root explains, following the explained-by chain.
	rootOf := func(id string) string {
		seen := map[string]bool{}
		for {
			var next string
			for _, r := range ranked {
				if r.ID == id {
					next = r.ExplainedBy
				}
			}
			if next == "" || seen[next] {
				return id
			}
			seen[id] = true
			id = next
		}
	}
	explains := map[string][]string{}
	for _, r := range ranked {
		if r.Explained {
			root := rootOf(r.ID)
			explains[root] = append(explains[root], nodes[r.ID].ref.Name)
		}
	}
	inc.RootCauses = inc.RootCauses[:0]
	inc.Nodes = inc.Nodes[:0]
	for _, r := range ranked {
		n := nodes[r.ID]
		inc.Nodes = append(inc.Nodes, n.ref)
		if n.top == nil || len(inc.RootCauses) >= 5 {
			continue
		}
		ex := fmt.Sprintf("%s since %s", n.top.Summary, n.since.UTC().Format("15:04:05"))
		if r.Explained {
			ex += fmt.Sprintf("; likely a consequence of %s, which it calls", nodes[r.ExplainedBy].ref.Name)
		} else if callers := explains[r.ID]; len(callers) > 0 {
			ex += fmt.Sprintf("; %s degraded because they call it", joinNames(callers))
		}
		inc.RootCauses = append(inc.RootCauses, RootCause{Node: n.ref, Score: math.Round(r.Score*100) / 100, Explained: r.Explained, Explanation: ex, Anomalies: n.ids})
	}
	inc.Severity = sev
	if len(inc.RootCauses) > 0 {
		inc.Title = inc.RootCauses[0].Node.Name + ": " + nodes[inc.RootCauses[0].Node.ID].top.Summary
	}
}

// rerank replaces the incident's causes with its recent ranking (see
// SetRecentRank): what broke in the last minutes, each service's noisy
// signals discounted and the time its own work added counted. A long
// incident that merged many episodes is then led by the current one.
func (e *Engine) rerank(inc *Incident, end time.Time) {
	rc, err := e.rankRecent(inc.ID, end, e.recentRank)
	if err != nil || len(rc) == 0 {
		return
	}
	inc.RootCauses = rc[:min(len(rc), 5)]
	lead := inc.RootCauses[0]
	var top *Anomaly
	for _, id := range lead.Anomalies {
		if a := e.byID[id]; a != nil && (top == nil || strength(a) > strength(top)) {
			top = a
		}
	}
	if top != nil {
		inc.Title = lead.Node.Name + ": " + top.Summary
	} else {
		inc.Title = lead.Node.Name + ": " + lead.Explanation
	}
}

func refFor(a *Anomaly, id string) NodeRef {
	s := a.Subject
	for _, r := range []*NodeRef{s.Source, s.Target, s.Node} {
		if r != nil && r.ID == id {
			return *r
		}
	}
	return NodeRef{ID: id, Name: id}
}

func joinNames(n []string) string {
	slices.Sort(n)
	n = slices.Compact(n)
	if len(n) > 4 {
		return strings.Join(n[:4], ", ") + fmt.Sprintf(" and %d more", len(n)-4)
	}
	if len(n) == 1 {
		return n[0]
	}
	return strings.Join(n[:len(n)-1], ", ") + " and " + n[len(n)-1]
}
