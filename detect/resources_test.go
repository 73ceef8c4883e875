package detect

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Pods' readings land on the graph's node of their service and fire
// resource anomalies like the Nezha pod metrics do: a jump against the
// pod's baseline, saturation without one, a jump in cores when no limit is
// known; a steady pod fires nothing.
func TestPodResources(t *testing.T) {
	reviews := graph.Node{Namespace: "bookinfo", Workload: "reviews-v2", App: "reviews", Version: "v2", Kind: graph.KindWorkload}
	food := graph.Node{Workload: "ts-food-service", App: "ts-food-service", Kind: graph.KindWorkload} // from traces: no namespace
	prodWeb := graph.Node{Namespace: "prod", Workload: "web", Kind: graph.KindWorkload}
	nodes := []graph.Node{reviews, food, prodWeb}
	t0 := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		ns, pod  string
		resource string
		reading  func(i int) (used, pct float64) // period i of 25
		want     graph.Node                      // zero: nothing fires
		metric   string
		firstAt  int // the period it fires in
	}{
		{"CPU jumps against the pod's baseline", "bookinfo", "reviews-v2-5b8d9c7f6d-x7k2p", "cpu", func(i int) (float64, float64) {
			if i >= 20 {
				return 0.45, 90 * 0.5
			}
			return 0.05, 10 + float64(i%3)
		}, reviews, "cpu", 21},
		{"saturated from the first reading, namespace only in the metrics", "train-ticket", "ts-food-service-f5756978c-k8vqf", "cpu", func(int) (float64, float64) {
			return 0.49, 98
		}, food, "cpu", 1},
		{"cores without a limit", "bookinfo", "reviews-v2-5b8d9c7f6d-x7k2p", "cpu", func(i int) (float64, float64) {
			if i >= 20 {
				return 1.6, math.NaN()
			}
			return 0.2 + 0.01*float64(i%4), math.NaN()
		}, reviews, "cpu_cores", 21},
		{"same workload name in another namespace is another service", "staging", "web-5b8d9c7f6d-x7k2p", "cpu", func(int) (float64, float64) {
			return 0.49, 98
		}, graph.Node{Namespace: "staging", Workload: "web", Kind: graph.KindWorkload}, "cpu", 1},
		{"steady memory", "bookinfo", "reviews-v2-5b8d9c7f6d-x7k2p", "memory", func(i int) (float64, float64) {
			return 300 << 20, 58 + float64(i%2)
		}, graph.Node{}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := New(DefaultConfig(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			pr, err := NewPodResources(eng, DefaultResourcesConfig())
			if err != nil {
				t.Fatal(err)
			}
			firedAt := -1
			for i := 0; i < 25; i++ {
				used, pct := tc.reading(i)
				// Two scrapes a period, averaged.
				pr.Add(tc.ns, tc.pod, tc.resource, used, pct)
				pr.Add(tc.ns, tc.pod, tc.resource, used, pct)
				pr.Flush(t0.Add(time.Duration(i)*time.Minute), nodes)
				if firedAt < 0 && len(eng.Anomalies(Filter{State: StateFiring})) > 0 {
					firedAt = i
				}
			}
			fired := eng.Anomalies(Filter{})
			if tc.want.IsZero() {
				if len(fired) != 0 {
					t.Fatalf("fired %q, want nothing", fired[0].Summary)
				}
				return
			}
			if len(fired) != 1 {
				t.Fatalf("%d anomalies, want 1", len(fired))
			}
			a := fired[0]
			if a.Type != TypeResource || a.Metric != tc.metric || a.Subject.Node == nil || a.Subject.Node.ID != tc.want.ID() {
				t.Errorf("anomaly %s/%s on %+v, want resource/%s on %s", a.Type, a.Metric, a.Subject.Node, tc.metric, tc.want.ID())
			}
			if firedAt != tc.firstAt {
				t.Errorf("fired in period %d, want %d", firedAt, tc.firstAt)
			}
			if !strings.Contains(a.Summary, tc.metric) {
				t.Errorf("summary %q does not name %s", a.Summary, tc.metric)
			}
		})
	}
}

func TestResourcesConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*ResourcesConfig)
		want string
	}{
		{func(*ResourcesConfig) {}, ""},
		{func(c *ResourcesConfig) { c.Every = 0 }, "every"},
		{func(c *ResourcesConfig) { c.Saturation = 120 }, "saturation"},
		{func(c *ResourcesConfig) { c.Evidence.Z = 0 }, "evidence.z"},
	} {
		c := DefaultResourcesConfig()
		tc.mod(&c)
		got := strings.Join(c.Validate(), "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("Validate() = %q, want %q", got, tc.want)
		}
	}
}

// A pod that stops reporting (deleted, evicted) ends its anomaly after
// resolveAfter silent periods, and its state after a baseline window.
func TestPodResourcesForgetsGonePods(t *testing.T) {
	eng, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultResourcesConfig()
	pr, err := NewPodResources(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	for i := 0; i < 3; i++ {
		pr.Add("shop", "cart-7f9c8d6b5-qwxzt", "cpu", 0.5, 99)
		pr.Add("shop", "web-5b8d9c7f6d-x7k2p", "cpu", 0.1, 10)
		pr.Flush(at(i), nil)
	}
	firing := func() int { return len(eng.Anomalies(Filter{State: StateFiring})) }
	if firing() != 1 {
		t.Fatalf("%d firing, want cart's saturation", firing())
	}
	// cart is deleted; web goes on reporting.
	i := 3
	for ; firing() > 0 && i < 20; i++ {
		pr.Add("shop", "web-5b8d9c7f6d-x7k2p", "cpu", 0.1, 10)
		pr.Flush(at(i), nil)
	}
	if silent := i - 3; silent != cfg.Evidence.ResolveAfter {
		t.Errorf("cart's anomaly resolved after %d silent periods, want %d", silent, cfg.Evidence.ResolveAfter)
	}
	for ; i < 3+cfg.Evidence.Window+1; i++ {
		pr.Add("shop", "web-5b8d9c7f6d-x7k2p", "cpu", 0.1, 10)
		pr.Flush(at(i), nil)
	}
	if n := len(pr.ev.series); n != 1 {
		t.Errorf("%d series held an hour after cart went, want web's only", n)
	}
}

// Live, pods land on the nodes the engine has seen in the graph (with
// their cluster and every other label), not on a node made up from the
// pod's name.
func TestPodResourcesOnEngineNodes(t *testing.T) {
	eng, _ := play(t, "bookinfo", testConfig(), 3*time.Minute, nil)
	var want graph.Node
	for _, n := range eng.knownNodes() {
		if n.Workload == "reviews-v2" {
			want = n
		}
	}
	if want.Cluster == "" {
		t.Fatalf("engine's reviews-v2 node %+v, want one with its cluster", want)
	}
	pr, err := NewPodResources(eng, DefaultResourcesConfig())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 2; i++ {
		pr.Add("default", "reviews-v2-5b8d9c7f6d-x7k2p", "cpu", 0.49, 98)
		pr.Flush(t0.Add(time.Duration(i)*time.Minute), eng.knownNodes())
	}
	for _, a := range eng.Anomalies(Filter{State: StateFiring}) {
		if a.Type == TypeResource {
			if a.Subject.Node == nil || a.Subject.Node.ID != want.ID() {
				t.Errorf("resource anomaly on %+v, want %s", a.Subject.Node, want.ID())
			}
			return
		}
	}
	t.Error("no resource anomaly fired")
}
