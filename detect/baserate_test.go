package detect

import (
	"math"
	"slices"
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
		r, n := br.Rate(id(tc.node), TypeNodeMetric+"/cpu", tc.before)
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
	eng, br := newRankTest(t)
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
	// With a recent ranking set (as serve sets it), the incident itself is
	// ranked that way at its next update, and its title follows.
	eng.SetRecentRank(RecentRankConfig{Recent: 10 * time.Minute})
	fire(nodeAnomaly("route", now.Add(time.Minute), 5))
	in, _ = eng.Incident(in.ID)
	if len(in.RootCauses) == 0 || in.RootCauses[0].Node.Name != "route" || !strings.HasPrefix(in.Title, "route: ") {
		t.Errorf("incident after SetRecentRank: %q led by %+v, want route", in.Title, in.RootCauses)
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
		{"firing for hours: the old normal", RecentRankConfig{Recent: 10 * time.Minute, Tau: 2 * time.Minute}, nil, "route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := New(DefaultConfig(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			old := nodeAnomaly("order", t0.Add(time.Minute), 60)
			gone := t0.Add(2 * time.Minute)
			old.ResolvedAt, old.State = &gone, StateResolved
			if strings.HasPrefix(tc.name, "firing for hours") {
				// Still firing and updated now, but since three hours.
				old = nodeAnomaly("order", t0.Add(-3*time.Hour), 60)
				old.UpdatedAt = at
			}
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

// Base rates are per node and signal: order's trace timing wobbles in
// every period, so a new wobble says little, but its first CPU jump is
// full evidence, and a resource anomaly blames more than trace timing.
func TestRankRecentDiscountsBySignal(t *testing.T) {
	eng, br := newRankTest(t)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	at := t0.Add(100 * time.Minute)
	kind := func(a *Anomaly, typ, metric string) *Anomaly {
		a.Type, a.Metric = typ, metric
		return a
	}
	var as []*Anomaly
	for i := 0; i < 9; i++ {
		a := kind(nodeAnomaly("order", t0.Add(time.Duration(i)*10*time.Minute), 30), TypeNodeMetric, "trace_structure")
		resolved := a.FiredAt.Add(time.Minute)
		a.ResolvedAt, a.State = &resolved, StateResolved
		as = append(as, a)
		br.Record(a)
	}
	// route's timing was calm until now, like order's CPU.
	br.Record(kind(nodeAnomaly("route", t0, 30), TypeResource, "cpu"))
	for _, tc := range []struct {
		name  string
		now   []*Anomaly
		first string
	}{
		{"noisy signal discounted", []*Anomaly{
			kind(nodeAnomaly("order", at.Add(-time.Minute), 30), TypeNodeMetric, "trace_structure"),
			kind(nodeAnomaly("route", at.Add(-time.Minute), 20), TypeNodeMetric, "trace_structure")}, "route"},
		{"a calm signal of a noisy node counts in full", []*Anomaly{
			kind(nodeAnomaly("order", at.Add(-time.Minute), 15), TypeResource, "cpu"),
			kind(nodeAnomaly("route", at.Add(-time.Minute), 20), TypeNodeMetric, "trace_structure")}, "order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng.mu.Lock()
			eng.byID = map[string]*Anomaly{}
			for _, a := range append(slices.Clone(as), tc.now...) {
				a.key = a.Type + "|" + a.Subject.String() + "|" + a.FiredAt.String()
				a.ID = stableID("an", a.key, a.Since)
				eng.byID[a.ID] = a
			}
			eng.mu.Unlock()
			got, err := eng.RankRecent("", at, RecentRankConfig{Recent: 10 * time.Minute, Noise: br, NoiseWeight: 2.5, MinSlots: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || got[0].Node.Name != tc.first {
				t.Fatalf("ranking %+v, want %s first", got, tc.first)
			}
		})
	}
	if r, _ := br.Rate(RefOf(graph.Node{Workload: "order", App: "order", Kind: graph.KindWorkload}).ID, TypeResource+"/cpu", at); r != 0 {
		t.Errorf("order's CPU base rate %.2f, want 0: only its trace structure was noisy", r)
	}
}

// newRankTest is an engine and base rates of 10-minute slots.
func newRankTest(t *testing.T) (*Engine, *BaseRates) {
	t.Helper()
	eng, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	br, err := NewBaseRates(10*time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	return eng, br
}

// An incident's recent ranking takes added time from the services it
// touches and their direct neighbours only: a slow callee of the incident's
// service counts, a slow service elsewhere in the mesh does not.
func TestRankRecentIncidentAddedNeighbours(t *testing.T) {
	eng, _ := newRankTest(t)
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	a := nodeAnomaly("route", t0, 5)
	eng.mu.Lock()
	eng.known["route>station"] = newEdgeSeen(node("route"), node("station"))
	eng.known["cart>redis"] = newEdgeSeen(node("cart"), node("redis"))
	a.key = a.Subject.String()
	a.ID = stableID("an", a.key, a.Since)
	eng.fire(a)
	eng.updateIncidents(t0)
	eng.mu.Unlock()
	incs := eng.Incidents(IncidentFilter{})
	if len(incs) != 1 {
		t.Fatalf("%d incidents, want 1", len(incs))
	}
	added := fixedAdded{{Node: RefOf(node("station")), Ms: 500}, {Node: RefOf(node("cart")), Ms: 5000}}
	got, err := eng.RankRecent(incs[0].ID, t0.Add(time.Minute), RecentRankConfig{Recent: 10 * time.Minute, Added: added})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, rc := range got {
		names[rc.Node.Name] = true
	}
	if !names["station"] || names["cart"] || len(got) == 0 || got[0].Node.Name != "station" {
		t.Errorf("incident ranking %+v: want station (route's callee, 500ms added) first and cart (elsewhere) out", got)
	}
	pooled, _ := eng.RankRecent("", t0.Add(time.Minute), RecentRankConfig{Recent: 10 * time.Minute, Added: added})
	if len(pooled) == 0 || pooled[0].Node.Name != "cart" {
		t.Errorf("pooled ranking %+v: want cart, which added the most, first", pooled)
	}
}
