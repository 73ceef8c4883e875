package detect

import (
	"cmp"
	"slices"
	"time"
)

// NodeScore is one node's own anomaly evidence, the input of root-cause ranking.
type NodeScore struct {
	ID          string
	Score       float64   // strength of the node's own anomalies (> 0 = anomalous)
	Since       time.Time // earliest of its anomalies
	Propagating bool      // its anomalies are of kinds that travel from callee to caller (latency, errors)
	// Source: it has anomalies of its own doing (resource use, its own
	// work's time): they slow its callers, so they explain the callers'
	// latency, while no callee explains them.
	Source bool
}

// Ranked is one node of a ranking.
type Ranked struct {
	ID          string
	Score       float64 // own score minus what anomalous callees explain
	Own         float64
	Explained   bool
	ExplainedBy string // the anomalous callee that explains it best
}

// RankRoots ranks root-cause candidates. Errors and latency propagate from
// callee to caller, so a node whose anomaly is matched by an anomalous callee
// is (partly) explained by it: its score is reduced by the strongest such
// callee's score. Ties go to the earlier anomaly, then the ID; names play no part.
func RankRoots(nodes []NodeScore, callees func(id string) []string) []Ranked {
	byID := make(map[string]*NodeScore, len(nodes))
	for i := range nodes {
		byID[nodes[i].ID] = &nodes[i]
	}
	out := make([]Ranked, 0, len(nodes))
	for _, n := range nodes {
		r := Ranked{ID: n.ID, Score: n.Score, Own: n.Score}
		if n.Propagating {
			best := 0.0
			for _, c := range callees(n.ID) {
				cs := byID[c]
				if cs == nil || c == n.ID || cs.Score <= 0 || !cs.Propagating && !cs.Source {
					continue
				}
				if cs.Score > best || (cs.Score == best && c < r.ExplainedBy) {
					best, r.ExplainedBy = cs.Score, c
				}
			}
			if best > 0 {
				r.Explained = true
				r.Score = n.Score - best
			}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Ranked) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := byID[a.ID].Since.Compare(byID[b.ID].Since); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}
