package detect

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

func TestNodeEvidence(t *testing.T) {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		spec   NodeSample
		normal func(i int) float64
		fault  float64
		fires  bool
		typ    string
	}{
		{"cpu contention", NodeSample{Metric: "cpu", Type: TypeResource, Log: true, Direction: 1, Floor: 5},
			func(i int) float64 { return 1 + 0.2*math.Sin(float64(i)) }, 95, true, TypeResource},
		{"latency drop is not a fault", NodeSample{Metric: "server_p90", Type: TypeLatency, Log: true, Direction: 1, Floor: 50},
			func(i int) float64 { return 200 + 20*math.Sin(float64(i)) }, 20, false, ""},
		{"flat success rate, small wobble under the floor", NodeSample{Metric: "success_rate", Type: TypeErrors, Direction: -1, Floor: 5},
			func(int) float64 { return 100 }, 98, false, ""},
		{"success rate falls", NodeSample{Metric: "success_rate", Type: TypeErrors, Direction: -1, Floor: 5},
			func(int) float64 { return 100 }, 40, true, TypeErrors},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, ev := newTestEvidence(t)
			var fired []Anomaly
			eng.Subscribe(func(c Change) {
				if c.Action == "fired" && c.Anomaly != nil {
					fired = append(fired, *c.Anomaly)
				}
			})
			for i := 0; i < 40; i++ {
				v := tc.normal(i)
				if i >= 30 && i < 35 {
					v = tc.fault
				}
				s := tc.spec
				s.Node, s.Value = node("svc-a"), v
				other := NodeSample{Node: node("svc-b"), Metric: tc.spec.Metric, Type: tc.spec.Type, Value: tc.normal(i), Log: tc.spec.Log, Direction: tc.spec.Direction, Floor: tc.spec.Floor}
				ev.Observe(t0.Add(time.Duration(i)*time.Minute), time.Minute, []NodeSample{s, other})
			}
			if !tc.fires {
				if len(fired) != 0 {
					t.Fatalf("fired %v, want nothing", fired[0].Summary)
				}
				return
			}
			if len(fired) != 1 {
				t.Fatalf("fired %d anomalies, want 1", len(fired))
			}
			a := fired[0]
			if a.Type != tc.typ || a.Subject.Node == nil || a.Subject.Node.Name != "svc-a" {
				t.Errorf("anomaly %s on %v, want %s on svc-a", a.Type, a.Subject, tc.typ)
			}
			if want := t0.Add(30 * time.Minute); !a.Since.Equal(want) {
				t.Errorf("since %s, want %s", a.Since, want)
			}
			incs := eng.Incidents(IncidentFilter{})
			if a.Type == TypeResource {
				// A cause with no symptom: an anomaly, not an incident.
				if len(incs) != 0 {
					t.Fatalf("incidents %+v, want none from a resource anomaly alone", incs)
				}
				return
			}
			if len(incs) != 1 || len(incs[0].RootCauses) == 0 || incs[0].RootCauses[0].Node.Name != "svc-a" {
				t.Fatalf("incidents %+v, want one led by svc-a", incs)
			}
			if incs[0].State != StateResolved {
				t.Errorf("incident %s, want resolved after the readings returned to normal", incs[0].State)
			}
		})
	}
}

// A resource anomaly opens no incident of its own; when a symptom on the
// same service follows, the incident it opens holds both, and the resource
// anomaly's service leads.
func TestResourceJoinsSymptomIncident(t *testing.T) {
	eng, ev := newTestEvidence(t)
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 40; i++ {
		cpu, p90 := 1+0.2*math.Sin(float64(i)), 200+20*math.Sin(float64(i))
		if i >= 30 {
			cpu = 95
		}
		if i >= 33 {
			p90 = 2000
		}
		ev.Observe(t0.Add(time.Duration(i)*time.Minute), time.Minute, []NodeSample{
			{Node: node("svc-a"), Metric: "cpu", Type: TypeResource, Value: cpu, Log: true, Direction: 1, Floor: 5},
			{Node: node("svc-a"), Metric: "server_p90", Type: TypeLatency, Value: p90, Unit: "ms", Log: true, Direction: 1, Floor: 50},
		})
		if i == 32 {
			if incs := eng.Incidents(IncidentFilter{}); len(incs) != 0 {
				t.Fatalf("an incident before any symptom: %+v", incs)
			}
			if n := len(eng.Anomalies(Filter{State: StateFiring})); n != 1 {
				t.Fatalf("%d firing anomalies before the symptom, want the CPU one", n)
			}
		}
	}
	incs := eng.Incidents(IncidentFilter{})
	if len(incs) != 1 {
		t.Fatalf("%d incidents, want 1", len(incs))
	}
	in := incs[0]
	if len(in.Anomalies) != 2 || len(in.RootCauses) == 0 || in.RootCauses[0].Node.Name != "svc-a" {
		t.Errorf("incident with %d anomalies led by %v, want the CPU and latency anomalies, svc-a first", len(in.Anomalies), in.RootCauses)
	}
	if want := t0.Add(30 * time.Minute); !in.Start.Equal(want) {
		t.Errorf("incident starts %s, want %s (when the CPU jumped)", in.Start, want)
	}
}

// A resource at its limit is saturated before any baseline exists: a pod
// pinned at its CPU limit from the first readings fires at once; one below
// its limit, or a metric without a limit, waits for a baseline.
func TestNodeEvidenceSaturatedWithoutBaseline(t *testing.T) {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	t0 := time.Date(2023, 1, 29, 8, 41, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		value float64
		limit float64
		fires bool
	}{
		{"at its CPU limit", 99.9, 90, true},
		{"busy below its limit", 70, 90, false},
		{"no limit given", 99.9, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, ev := newTestEvidence(t)
			for i := 0; i < 3; i++ {
				ev.Observe(t0.Add(time.Duration(i)*time.Minute), time.Minute, []NodeSample{
					{Node: node("svc-a"), Metric: "cpu", Type: TypeResource, Unit: "%", Value: tc.value, Log: true, Direction: 1, Floor: 5, Limit: tc.limit},
				})
			}
			fired := eng.Anomalies(Filter{State: StateFiring})
			if !tc.fires {
				if len(fired) != 0 {
					t.Fatalf("fired %q, want nothing before a baseline", fired[0].Summary)
				}
				return
			}
			if len(fired) != 1 || fired[0].Type != TypeResource || fired[0].Baseline != tc.limit {
				t.Fatalf("firing %+v, want one resource anomaly against the limit %v", fired, tc.limit)
			}
			if !strings.Contains(fired[0].Summary, "at its limit") {
				t.Errorf("summary %q does not say the limit was reached", fired[0].Summary)
			}
		})
	}
}

func newTestEvidence(t *testing.T) (*Engine, *NodeEvidence) {
	t.Helper()
	eng, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewNodeEvidence(eng, DefaultEvidenceConfig())
	if err != nil {
		t.Fatal(err)
	}
	return eng, ev
}
