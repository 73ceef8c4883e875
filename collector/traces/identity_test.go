package traces

import (
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// A service seen by Istio metrics and by traces must be one node and one
// edge, annotated with both signals; an edge only one signal saw is flagged
// by its Signals (broken propagation, uninstrumented service).
func TestIdentityMatchesMetricsNode(t *testing.T) {
	id := DefaultConfig().Identity
	res := func(app, ver, ns string) *ResourceAttrs {
		return &ResourceAttrs{ServiceName: app, ServiceVersion: ver, K8sNamespace: ns,
			K8sDeployment: app + "-" + ver, K8sCluster: "Kubernetes"}
	}
	// What an Istio metrics collector reports for the same workloads.
	istio := func(app, ver string) graph.Node {
		return graph.Node{Cluster: "Kubernetes", Namespace: "bookinfo", Workload: app + "-" + ver, App: app, Version: ver,
			Service: app + ".bookinfo.svc.cluster.local", Kind: graph.KindWorkload}
	}
	if got, want := id.NodeFromResource(res("reviews", "v2", "bookinfo")), istio("reviews", "v2"); got != want {
		t.Fatalf("node\n got %+v\nwant %+v", got, want)
	}

	g := graph.New(graph.Config{Resolution: 10 * time.Second, Window: time.Hour})
	g.Advance(t0)
	p := NewPairer(PairerConfig{}, g)
	p.Expire(t0)
	var spans []Span
	for i := 0; i < 20; i++ {
		c := sp(byte(i), 1, 0, "productpage", KindClient, int64(i)*100, 30)
		c.Service = id.NodeFromResource(res("productpage", "v1", "bookinfo"))
		s := sp(byte(i), 2, 1, "reviews", KindServer, int64(i)*100+1, 25)
		s.Service = id.NodeFromResource(res("reviews", "v2", "bookinfo"))
		spans = append(spans, c, s)
	}
	p.Add(spans)
	p.Flush()
	var metrics []graph.Observation
	for _, e := range [][2]graph.Node{{istio("productpage", "v1"), istio("reviews", "v2")}, {istio("reviews", "v2"), istio("ratings", "v1")}} {
		metrics = append(metrics, graph.Observation{Time: t0.Add(time.Second), Src: e[0], Dst: e[1], Protocol: graph.ProtoHTTP,
			Requests: 20, LatencyMs: 24, Reporter: graph.ReporterDestination, Signal: graph.SignalMetrics})
	}
	g.Ingest(metrics)
	g.Advance(t0.Add(time.Minute))

	for _, v := range []graph.View{graph.ViewWorkload, graph.ViewApp, graph.ViewVersionedApp, graph.ViewService} {
		snap, err := g.Snapshot(graph.Query{View: v, Window: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Nodes) != 3 || len(snap.Edges) != 2 {
			t.Fatalf("%s view: %d nodes %d edges, want 3 and 2: %+v", v, len(snap.Nodes), len(snap.Edges), snap.Edges)
		}
		for _, e := range snap.Edges {
			switch e.Target.App + e.Target.Workload + e.Target.Service {
			case "":
				t.Fatalf("empty target %+v", e.Target)
			}
			both := e.Stats.Signals == graph.SignalMetrics|graph.SignalTraces
			toReviews := e.Source.Label(v) != e.Target.Label(v) && (e.Target.App == "reviews" || e.Target.Workload == "reviews-v2" || e.Target.Service == "reviews.bookinfo.svc.cluster.local")
			if toReviews != both {
				t.Errorf("%s view: edge %s->%s signals %v", v, e.Source.Label(v), e.Target.Label(v), e.Stats.Signals.Names())
			}
			if e.Stats.Requests != 20 {
				t.Errorf("%s view: edge %s->%s counted %d requests, want 20 (one channel, never added up)", v, e.Source.Label(v), e.Target.Label(v), e.Stats.Requests)
			}
		}
	}
}
