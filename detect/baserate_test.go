package detect

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

func nodeAnomaly(name string, fired time.Time, score float64) *Anomaly {
	ref := RefOf(graph.Node{Workload: name, App: name, Kind: graph.KindWorkload})
	return &Anomaly{Type: TypeNodeMetric, Metric: "cpu", Subject: Subject{Kind: SubjectNode, Node: &ref},
		Since: fired, FiredAt: fired, UpdatedAt: fired, State: StateFiring, Score: score, Severity: SeverityWarning, Summary: name + " hot"}
}

func TestBaseRates(t *testing.T) {
	br, err := NewBaseRates(10*time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Minute)
		if i < 8 {
			br.Record(nodeAnomaly("order", at, 10))
		}
		if i == 3 {
			br.Record(nodeAnomaly("route", at.Add(time.Minute), 10))
		}
		if i >= 8 {
			br.Record(nodeAnomaly("price", at, 10))
		}
	}
	id := func(n string) string { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload}.ID() }
	for _, tc := range []struct {
		node   string
		before time.Time
		rate   float64
		slots  int
	}{
		{"order", t0.Add(100 * time.Minute), 0.8, 10},
		{"route", t0.Add(100 * time.Minute), 0.1, 10},
		{"route", t0.Add(30 * time.Minute), 0, 3}, // its slot is not before
		{"unknown", t0.Add(100 * time.Minute), 0, 10},
		{"order", t0, 0, 0},
	} {
		r, n := br.Rate(id(tc.node), tc.before)
		if math.Abs(r-tc.rate) > 1e-9 || n != tc.slots {
			t.Errorf("Rate(%s, %s) = %.2f over %d slots, want %.2f over %d", tc.node, tc.before.Format("15:04"), r, n, tc.rate, tc.slots)
		}
	}
	if _, err := NewBaseRates(0, 1); err == nil {
		t.Error("NewBaseRates accepted a zero slot")
	}
}

// One long incident: a noisy service (order) has been firing since long
// before; route fires now, linked to order by an edge anomaly. The
// incident's own ranking keeps the stale, stronger order first; RankRecent
// ranks route first, and the base rate discount does too.
func TestRankRecent(t *testing.T) {
	eng, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	br, err := NewBaseRates(10*time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	br.Attach(eng)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	fire := func(a *Anomaly) {
		eng.mu.Lock()
		a.key = a.Type + "|" + a.Subject.String() + "|" + a.FiredAt.String()
		a.ID = stableID("an", a.key, a.Since)
		eng.fire(a)
		eng.updateIncidents(a.FiredAt)
		changes := eng.pending
		eng.pending = nil
		subs := eng.subs
		eng.mu.Unlock()
		for _, c := range changes {
			for _, fn := range subs {
				fn(c)
			}
		}
	}
	// order is hot in most earlier periods (separate, resolved episodes
	// are not needed: the base rate counts firing slots).
	for i := 0; i < 9; i++ {
		fire(nodeAnomaly("order", t0.Add(time.Duration(i)*10*time.Minute), 80))
	}
	now := t0.Add(100 * time.Minute)
	fire(nodeAnomaly("route", now, 8))
	o := RefOf(graph.Node{Workload: "order", App: "order", Kind: graph.KindWorkload})
	r := RefOf(graph.Node{Workload: "route", App: "route", Kind: graph.KindWorkload})
	fire(&Anomaly{Type: TypeTraffic, Metric: "requests", Subject: Subject{Kind: SubjectEdge, Source: &o, Target: &r},
		Since: now, FiredAt: now, UpdatedAt: now, State: StateFiring, Score: 3, Severity: SeverityWarning, Summary: "order -> route traffic"})
	incs := eng.Incidents(IncidentFilter{State: StateFiring})
	if len(incs) != 1 {
		t.Fatalf("%d firing incidents, want 1", len(incs))
	}
	in := incs[0]
	if in.RootCauses[0].Node.Name != "order" {
		t.Fatalf("incident ranking led by %s, want the stale order (the case RankRecent is for)", in.RootCauses[0].Node.Name)
	}
	for _, tc := range []struct {
		name  string
		cfg   RecentRankConfig
		first string
	}{
		{"whole history, no discount", RecentRankConfig{Recent: 24 * time.Hour}, "order"},
		{"recent only", RecentRankConfig{Recent: 10 * time.Minute}, "route"},
		{"last 45 minutes, no discount", RecentRankConfig{Recent: 45 * time.Minute}, "order"},
		{"last 45 minutes, noisy order discounted", RecentRankConfig{Recent: 45 * time.Minute, Noise: br, NoiseWeight: 5, MinSlots: 5}, "route"},
		{"too few slots learned to discount", RecentRankConfig{Recent: 45 * time.Minute, Noise: br, NoiseWeight: 5, MinSlots: 50}, "order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := eng.RankRecent(in.ID, now.Add(time.Minute), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || got[0].Node.Name != tc.first {
				t.Fatalf("ranking %+v, want %s first", got, tc.first)
			}
		})
	}
	if _, err := eng.RankRecent("inc-nope", now, DefaultRecentRankConfig(nil)); err == nil {
		t.Error("RankRecent of an unknown incident did not fail")
	}
}

// Recency and added time: evidence last seen long ago weighs less than
// what is hot now, and a node's added time (from trace timing) ranks it even
// when an anomalous callee would explain its latency away.
func TestRankRecentTauAndAdded(t *testing.T) {
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	at := t0.Add(10 * time.Minute)
	ref := func(n string) NodeRef { return RefOf(graph.Node{Workload: n, App: n, Kind: graph.KindWorkload}) }
	for _, tc := range []struct {
		name  string
		cfg   RecentRankConfig
		added []NodeAdded
		first string
	}{
		{"no recency: the stronger, older anomaly", RecentRankConfig{Recent: 10 * time.Minute}, nil, "order"},
		{"recency: what is hot now", RecentRankConfig{Recent: 10 * time.Minute, Tau: 2 * time.Minute}, nil, "route"},
		{"added time outranks both", RecentRankConfig{Recent: 10 * time.Minute}, []NodeAdded{{Node: ref("station"), Ms: 1e6}}, "station"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := New(DefaultConfig(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			old := nodeAnomaly("order", t0.Add(time.Minute), 60)
			gone := t0.Add(2 * time.Minute)
			old.ResolvedAt, old.State = &gone, StateResolved
			now := nodeAnomaly("route", at.Add(-30*time.Second), 20)
			eng.mu.Lock()
			for _, a := range []*Anomaly{old, now} {
				a.key = a.Subject.String()
				a.ID = stableID("an", a.key, a.Since)
				eng.byID[a.ID] = a
			}
			eng.mu.Unlock()
			cfg := tc.cfg
			if tc.added != nil {
				cfg.Added = fixedAdded(tc.added)
			}
			got, err := eng.RankRecent("", at, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || got[0].Node.Name != tc.first {
				t.Fatalf("ranking %+v, want %s first", got, tc.first)
			}
			if tc.added != nil && !strings.Contains(got[0].Explanation, "its own work added") {
				t.Errorf("explanation %q does not say what the node added", got[0].Explanation)
			}
		})
	}
}

type fixedAdded []NodeAdded

func (f fixedAdded) AddedMs(from, to time.Time, tau time.Duration) []NodeAdded { return f }
