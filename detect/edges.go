package detect

import (
	"fmt"
	"math"
	"time"

	"github.com/meshlens/meshlens/graph"
)

func (e *Engine) policyFor(src, dst graph.Node) (name string, deny bool) {
	for i, p := range e.cfg.Policies {
		if !p.Source.matches(src) {
			continue
		}
		pname := p.Name
		if pname == "" {
			pname = fmt.Sprintf("policies[%d]", i)
		}
		for _, d := range p.Deny {
			if d.matches(dst) {
				return pname, true
			}
		}
		if len(p.Allow) > 0 {
			ok := false
			for _, a := range p.Allow {
				if a.matches(dst) {
					ok = true
					break
				}
			}
			if !ok {
				return pname, false
			}
		}
	}
	return "", false
}

// seeEdge records an edge in the learned edge baseline.
func (e *Engine) seeEdge(es *graph.EdgeSnapshot, t time.Time) {
	k := es.Source.ID() + ">" + es.Target.ID()
	ks := e.known[k]
	if ks == nil {
		ks = newEdgeSeen(es.Source, es.Target)
		ks.first, ks.learned = t, t.Before(e.start.Add(e.cfg.LearningPeriod))
		ks.policy, ks.polDeny = e.policyFor(es.Source, es.Target)
		e.known[k] = ks
	}
	if hasTraffic(&es.Stats) || es.Stats.RequestBytes+es.Stats.ResponseBytes > 0 {
		ks.last = t
		ks.plaintext = es.Stats.PlainUnits > 0 && es.Stats.MTLSUnits == 0
	}
}

func riskyTarget(n graph.Node) bool {
	return n.Kind == graph.KindDatabase || n.Kind == graph.KindExternal
}

// checkEdges runs the unexpected-edge and policy detectors on every known edge.
func (e *Engine) checkEdges(t, end time.Time) {
	for k, ks := range e.known {
		active := ks.last.Equal(t)
		if ks.policy != "" {
			v := verdict{hot: active}
			e.stepK(1, "p|"+k, &ks.polState, &v, t, end, func() *Anomaly { return e.edgeAnomaly(ks, TypePolicy) }, func(*Anomaly) {})
		}
		if !ks.learned {
			if t.Sub(ks.first) >= e.cfg.NewEdgeTTL {
				// Long enough: the edge becomes part of the baseline.
				ks.learned = true
				if a := ks.unexpected.firing; a != nil {
					e.resolve(a, end)
					ks.unexpected = detState{}
				}
				continue
			}
			v := verdict{hot: active}
			e.stepK(1, "u|"+k, &ks.unexpected, &v, t, end, func() *Anomaly { return e.edgeAnomaly(ks, TypeUnexpected) }, func(*Anomaly) {})
			if ks.unexpected.firing == nil && ks.unexpected.hot != 0 {
				// Fired once and resolved: do not alert again on the same edge.
				ks.learned = true
			}
		}
	}
}

func (e *Engine) edgeAnomaly(ks *edgeSeen, typ string) *Anomaly {
	src, dst := RefOf(ks.src), RefOf(ks.dst)
	a := &Anomaly{Type: typ, Metric: "edge", Direction: "new", Subject: Subject{Kind: SubjectEdge, Source: &src, Target: &dst},
		Observed: 1, Baseline: 0, Unit: "edge", Score: 10, Severity: SeverityWarning}
	risky := ks.plaintext || riskyTarget(ks.dst)
	if typ == TypePolicy {
		if ks.polDeny || risky {
			a.Severity = SeverityCritical
		}
		verb := "is not in the allowed callees of"
		if ks.polDeny {
			verb = "is denied by"
		}
		a.Summary = fmt.Sprintf("%s calls %s, which %s policy %q", src.Name, dst.Name, verb, ks.policy)
		a.Score = 50
	} else {
		if risky {
			a.Severity = SeverityCritical
		}
		a.Summary = fmt.Sprintf("new edge %s -> %s, not in the learned baseline", src.Name, dst.Name)
	}
	if ks.plaintext {
		a.Evidence.Notes = append(a.Evidence.Notes, "the traffic is plaintext (no mTLS)")
	}
	if riskyTarget(ks.dst) {
		a.Evidence.Notes = append(a.Evidence.Notes, "the edge reaches a "+ks.dst.Kind.String())
	}
	a.Evidence.Notes = append(a.Evidence.Notes, "first seen "+ks.first.UTC().Format(time.RFC3339))
	return a
}

// stepK is step with its own firing count (1 = fire at once).
func (e *Engine) stepK(k int, key string, d *detState, v *verdict, t, end time.Time, build func() *Anomaly, update func(*Anomaly)) {
	saved := e.cfg.PersistK
	e.cfg.PersistK = k
	e.step(key, d, v, t, end, build, update)
	e.cfg.PersistK = saved
}

// checkVersions compares each newer version of an app with its siblings.
func (e *Engine) checkVersions(snap *graph.Snapshot, t, end time.Time) {
	type group struct{ idx []int }
	groups := map[string]*group{}
	for i := range snap.Nodes {
		n := snap.Nodes[i].Node
		if n.Kind != graph.KindWorkload || n.App == "" || n.Version == "" || snap.Nodes[i].In.Requests == 0 {
			continue
		}
		k := n.Cluster + "|" + n.Namespace + "|" + n.App
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
		}
		g.idx = append(g.idx, i)
	}
	seen := map[string]bool{}
	for _, g := range groups {
		if len(g.idx) < 2 {
			continue
		}
		oldest := time.Time{}
		for _, i := range g.idx {
			if ns := e.nodes[snap.Nodes[i].Node.ID()]; ns != nil && (oldest.IsZero() || ns.first.Before(oldest)) {
				oldest = ns.first
			}
		}
		for _, i := range g.idx {
			me := &snap.Nodes[i]
			id := me.Node.ID()
			ns := e.nodes[id]
			// Only versions that appeared after their siblings (and after the
			// engine started) count as new: long-lived versions may differ by design.
			if ns == nil || !ns.first.After(oldest) || !ns.first.After(e.start) {
				continue
			}
			thr, on := e.cfg.thresholdsFor(me.Node)
			if !on {
				continue
			}
			var sib graph.Stats
			for _, j := range g.idx {
				if j != i {
					sib.Add(&snap.Nodes[j].In)
				}
			}
			v := e.versionVerdict(&me.In, &sib, thr)
			d := e.versions[id]
			if d == nil {
				d = &detState{}
				e.versions[id] = d
			}
			seen[id] = true
			node := me.Node
			e.step("v|"+id, d, &v, t, end, func() *Anomaly {
				ref := RefOf(node)
				a := &Anomaly{Type: TypeBadVersion, Subject: Subject{Kind: SubjectNode, Node: &ref}}
				fillVersion(a, &v, node)
				return a
			}, func(a *Anomaly) { fillVersion(a, &v, node) })
		}
	}
	for id, d := range e.versions {
		if !seen[id] && d.firing != nil {
			v := verdict{}
			e.step("v|"+id, d, &v, t, end, nil, func(*Anomaly) {})
		}
	}
}

func fillVersion(a *Anomaly, v *verdict, n graph.Node) {
	a.Metric, a.Direction, a.Unit = v.metric, "up", v.unit
	a.Observed, a.Baseline = v.observed, v.baseline
	a.Score = math.Max(a.Score, v.score)
	a.Severity = SeverityWarning
	if v.unit == "ratio" && v.observed >= 0.2 {
		a.Severity = SeverityCritical
	}
	a.Summary = fmt.Sprintf("new version %s of %s: %s %s vs %s on its sibling versions", n.Version, n.App, v.metric, fmtValue(v.observed, v.unit), fmtValue(v.baseline, v.unit))
	a.Evidence.Notes = []string{"compared with the other versions of " + n.App + " over the same bucket"}
}

func (e *Engine) versionVerdict(me, sib *graph.Stats, thr Thresholds) verdict {
	var v verdict
	errs := func(s *graph.Stats) uint64 {
		return s.Errors[graph.Err5xx] + s.Errors[graph.ErrGRPC] + s.Errors[graph.ErrNoResponse] + s.Errors[graph.ErrConnectFailure]
	}
	if me.Requests >= thr.MinRequests && sib.Requests >= thr.MinRequests {
		k := errs(me)
		p0 := math.Max((float64(errs(sib))+0.1)/(float64(sib.Requests)+10), 1e-3)
		r := float64(k) / float64(me.Requests)
		v = verdict{metric: "error_ratio", unit: "ratio", observed: r, baseline: p0}
		if k >= thr.ErrorMinErrors && r-p0 >= thr.ErrorMinDelta {
			p := binomTail(k, me.Requests, p0)
			v.score, v.hot = pScore(p), p < thr.ErrorP
		}
		if v.hot {
			return v
		}
	}
	if me.Latency.Count() >= thr.LatencyMinCount && sib.Latency.Count() >= thr.LatencyMinCount {
		a, b := me.Latency.Quantile(0.95), sib.Latency.Quantile(0.95)
		if finite(a) && finite(b) && b > 0 && a/b >= thr.BadVersionRatio {
			return verdict{hot: true, metric: "p95", unit: "ms", observed: a, baseline: b, score: capScore(10 * math.Log2(a/b))}
		}
		if v.metric == "" {
			v = verdict{metric: "p95", unit: "ms", observed: a, baseline: b}
		}
	}
	return v
}
