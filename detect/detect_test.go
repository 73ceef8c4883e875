package detect

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
)

var origin = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const res = 10 * time.Second

// play runs a fixtures scenario for dur through a graph into a new engine.
func play(tb testing.TB, name string, cfg Config, dur time.Duration, mutate func([]graph.Observation, time.Time) []graph.Observation) (*Engine, []Change) {
	tb.Helper()
	sc, err := fixtures.Load(name)
	if err != nil {
		tb.Fatal(err)
	}
	sim := fixtures.NewSimulator(sc, 7)
	sim.SetOrigin(origin)
	g := graph.New(graph.Config{Resolution: res, Window: 10 * time.Minute})
	e, err := New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	e.Attach(g)
	var changes []Change
	e.Subscribe(func(c Change) { changes = append(changes, c) })
	for t := origin; t.Before(origin.Add(dur)); t = t.Add(res) {
		obs := sim.Step(t, t.Add(res))
		if mutate != nil {
			obs = mutate(obs, t)
		}
		g.Ingest(obs)
		g.Advance(t.Add(res))
	}
	return e, changes
}

func testConfig() Config {
	c := DefaultConfig()
	c.LearningPeriod = 5 * time.Minute
	return c
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		scenario string
		typ      string
		root     string // app expected as top root cause
	}{
		{"bookinfo-ratings-latency", TypeLatency, "ratings"},
		{"boutique-payment-errors", TypeErrors, "paymentservice"},
		{"boutique-cart-connect-failures", TypeErrors, "cartservice"},
		{"boutique-traffic-drop", TypeTraffic, "frontend"},
		{"boutique-unexpected-edge", TypeUnexpected, "frontend"},
		{"bookinfo-mtls-off", TypeMTLS, "details"},
		{"bookinfo-bad-canary", TypeBadVersion, "reviews"},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			e, changes := play(t, tt.scenario, testConfig(), 14*time.Minute, nil)
			found := false
			for _, c := range changes {
				if c.Anomaly != nil && c.Anomaly.Type == tt.typ && c.Action == "fired" {
					found = true
					if c.Anomaly.FiredAt.Before(origin.Add(10 * time.Minute)) {
						t.Errorf("anomaly before the fault: %s", c.Anomaly.Summary)
					}
				}
			}
			if !found {
				t.Fatalf("no %s anomaly; changes: %d", tt.typ, len(changes))
			}
			incs := e.Incidents(IncidentFilter{State: StateFiring})
			if len(incs) == 0 {
				t.Fatal("no firing incident")
			}
			top := incs[0].RootCauses[0].Node
			if top.App != tt.root && top.Name != tt.root {
				t.Errorf("top root cause %s, want %s (%s)", top.Name, tt.root, incs[0].RootCauses[0].Explanation)
			}
		})
	}
}

func TestFaultFreeIsQuiet(t *testing.T) {
	for _, name := range []string{"bookinfo", "online-boutique"} {
		_, changes := play(t, name, testConfig(), 40*time.Minute, nil)
		for _, c := range changes {
			if c.Anomaly != nil {
				t.Errorf("%s: false alarm %s", name, c.Anomaly.Summary)
			}
		}
	}
}

// Bad input: gaps, NaN latencies and a counter-reset-like burst never storm.
func TestBadInputNoStorm(t *testing.T) {
	mutate := func(obs []graph.Observation, t time.Time) []graph.Observation {
		off := t.Sub(origin)
		switch {
		case off >= 6*time.Minute && off < 7*time.Minute:
			return nil // collector gap
		case off >= 8*time.Minute && off < 9*time.Minute:
			for i := range obs {
				obs[i].LatencyMs = math.NaN()
				obs[i].Latency = nil
			}
		}
		return obs
	}
	_, changes := play(t, "bookinfo", testConfig(), 20*time.Minute, mutate)
	n := 0
	for _, c := range changes {
		if c.Anomaly != nil && c.Action == "fired" {
			n++
			t.Logf("fired: %s", c.Anomaly.Summary)
		}
	}
	if n > 2 {
		t.Errorf("%d anomalies from gaps and NaN input", n)
	}
}

func TestConstantSeriesMADZero(t *testing.T) {
	e, err := New(testConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := graph.Node{Namespace: "ns", Workload: "a-v1", App: "a", Version: "v1"}
	dst := graph.Node{Namespace: "ns", Workload: "b-v1", App: "b", Version: "v1"}
	var fired int
	e.Subscribe(func(c Change) {
		if c.Anomaly != nil && c.Action == "fired" {
			fired++
		}
	})
	for i := 0; i < 120; i++ {
		st := graph.Stats{Requests: 100}
		st.Latency.Add(50, 100) // identical every bucket: MAD = 0
		if i == 100 {
			st.Latency.Reset()
			st.Latency.Add(52, 100) // tiny wobble must not fire
		}
		ts := origin.Add(time.Duration(i) * res)
		e.Observe(&graph.Snapshot{Start: ts, End: ts.Add(res), Resolution: res,
			Edges: []graph.EdgeSnapshot{{Source: src, Target: dst, Stats: st}}})
	}
	if fired != 0 {
		t.Errorf("%d anomalies on a constant series", fired)
	}
}

func TestRankRoots(t *testing.T) {
	// gateway -> front -> mid -> leaf; the leaf is slow and everything above degrades.
	calls := map[string][]string{"gw": {"front"}, "front": {"mid", "other"}, "mid": {"leaf"}}
	tests := []struct {
		name  string
		nodes []NodeScore
		want  string
	}{
		{"leaf fault", []NodeScore{{ID: "gw", Score: 5, Propagating: true}, {ID: "front", Score: 6, Propagating: true}, {ID: "mid", Score: 6, Propagating: true}, {ID: "leaf", Score: 7, Propagating: true}}, "leaf"},
		{"mid fault", []NodeScore{{ID: "front", Score: 4, Propagating: true}, {ID: "mid", Score: 8, Propagating: true}, {ID: "leaf", Score: 0, Propagating: true}}, "mid"},
		{"surge caller not explained", []NodeScore{{ID: "front", Score: 9, Propagating: false}, {ID: "mid", Score: 3, Propagating: true}}, "front"},
		// mid's own work slowed (no latency anomaly of its own): it
		// explains front's latency, and the stronger front is no root.
		{"own work explains callers", []NodeScore{{ID: "front", Score: 9, Propagating: true}, {ID: "mid", Score: 6, Source: true}}, "mid"},
		// ...but nothing explains own work away: a noisy callee's latency
		// does not discount mid's starved CPU.
		{"own work not explained", []NodeScore{{ID: "mid", Score: 6, Source: true}, {ID: "leaf", Score: 5, Propagating: true}}, "mid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := RankRoots(tt.nodes, func(id string) []string { return calls[id] })
			if r[0].ID != tt.want {
				t.Errorf("top %s, want %s (%+v)", r[0].ID, tt.want, r)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	if p := DefaultConfig().Validate(); len(p) != 0 {
		t.Fatalf("defaults invalid: %v", p)
	}
	c := DefaultConfig()
	c.PersistK = 5
	c.Thresholds.ErrorP = 2
	c.Policies = []Policy{{Source: Selector{App: "front"}}, {Source: Selector{Kind: "bogus"}, Deny: []Selector{{App: "["}}}}
	c.Alerts.Webhooks = []Webhook{{Name: "x", URL: "ftp://x", Format: "teams"}}
	p := strings.Join(c.Validate(), "\n")
	for _, want := range []string{"persistK: must be <= persistM", "thresholds.errorP", "policies[0]: needs allow or deny",
		"policies[1].source.kind", "policies[1].deny[0].app: bad pattern", "alerts.webhooks[0].url", "alerts.webhooks[0].format"} {
		if !strings.Contains(p, want) {
			t.Errorf("missing problem %q in:\n%s", want, p)
		}
	}
}

func TestPolicyViolation(t *testing.T) {
	cfg := testConfig()
	cfg.Policies = []Policy{{Name: "frontend-deps", Source: Selector{App: "frontend"}, Deny: []Selector{{App: "redis-cart"}}}}
	e, _ := play(t, "boutique-unexpected-edge", cfg, 12*time.Minute, nil)
	as := e.Anomalies(Filter{Type: TypePolicy})
	if len(as) != 1 || as[0].Severity != SeverityCritical || !strings.Contains(as[0].Summary, "denied") {
		t.Fatalf("want one critical policy violation, got %+v", as)
	}
}

func TestOverrideDisables(t *testing.T) {
	cfg := testConfig()
	cfg.Overrides = []Override{{Match: Selector{App: "ratings"}, Disabled: true}}
	e, _ := play(t, "bookinfo-ratings-latency", cfg, 14*time.Minute, nil)
	for _, a := range e.Anomalies(Filter{}) {
		for _, r := range []*NodeRef{a.Subject.Target, a.Subject.Node} {
			if r != nil && r.App == "ratings" {
				t.Errorf("anomaly on disabled ratings: %s", a.Summary)
			}
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	e, _ := play(t, "bookinfo", testConfig(), 8*time.Minute, nil)
	st := e.ExportState()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	e2, _ := New(testConfig(), nil, nil)
	if err := e2.ImportState(back); err != nil {
		t.Fatal(err)
	}
	st2 := e2.ExportState()
	if len(st2.Subjects) != len(st.Subjects) || len(st2.Edges) != len(st.Edges) || len(st.Subjects) == 0 {
		t.Fatalf("subjects %d/%d edges %d/%d", len(st2.Subjects), len(st.Subjects), len(st2.Edges), len(st.Edges))
	}
	b2, _ := json.Marshal(st2)
	if len(b2) != len(b) {
		t.Errorf("round trip changed the state: %d vs %d bytes", len(b2), len(b))
	}
	bad := back
	bad.Subjects = append([]SubjectState(nil), back.Subjects...)
	bad.Subjects[0].Plain = nil
	if err := e2.ImportState(bad); err == nil {
		t.Error("import of a broken ring succeeded")
	}
}

func TestHTTPAndMetrics(t *testing.T) {
	e, _ := play(t, "bookinfo-ratings-latency", testConfig(), 14*time.Minute, nil)
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	get := func(path string, code int) map[string]json.RawMessage {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
		var m map[string]json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	var as []Anomaly
	_ = json.Unmarshal(get("/api/v1/anomalies?state=firing", 200)["anomalies"], &as)
	if len(as) == 0 {
		t.Fatal("no firing anomalies over HTTP")
	}
	var incs []Incident
	_ = json.Unmarshal(get("/api/v1/incidents", 200)["incidents"], &incs)
	if len(incs) == 0 {
		t.Fatal("no incidents over HTTP")
	}
	get("/api/v1/incidents/"+incs[0].ID, 200)
	get("/api/v1/incidents/nope", 404)
	get("/api/v1/anomalies?state=bogus", 400)

	reg := prometheus.NewRegistry()
	if err := reg.Register(newMetrics(e)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for _, mf := range mfs {
		if mf.GetName() == "meshlens_anomaly_firing" && len(mf.GetMetric()) == len(as) {
			ok = true
		}
	}
	if !ok {
		t.Error("meshlens_anomaly_firing does not list the firing anomalies")
	}
}
