package metrics

import (
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// resRecorder is a ResourceSink that keeps copies of what it is given.
type resRecorder struct {
	mu sync.Mutex
	rs []PodResource
}

func (r *resRecorder) ObserveResources(b []PodResource) {
	r.mu.Lock()
	r.rs = append(r.rs, b...)
	r.mu.Unlock()
}

func (r *resRecorder) take() map[string]PodResource {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]PodResource{}
	for _, x := range r.rs {
		out[x.Pod+"/"+x.Resource] = x // the newest reading of each
	}
	r.rs = nil
	return out
}

func newResourceCollector(t *testing.T) (*Collector, *resRecorder) {
	t.Helper()
	rr := &resRecorder{}
	c, err := New(DefaultConfig(), &recorder{}, slog.New(slog.DiscardHandler), nil, WithResourceSink(rr))
	if err != nil {
		t.Fatal(err)
	}
	return c, rr
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// cAdvisor's container series and kube-state-metrics' limits, scraped by
// separate jobs, become one reading per pod and resource: the containers'
// use summed (the pod cgroup and the pause container left out), as a share
// of the containers' limits when every container in use has one.
func TestResourcesCAdvisor(t *testing.T) {
	c, rr := newResourceCollector(t)
	t0 := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	const text = "text/plain; version=0.0.4"
	for i, files := range [][]string{{"k8s_ksm.prom", "k8s_cadvisor_0.prom"}, {"k8s_cadvisor_1.prom"}} {
		for _, f := range files {
			if _, err := c.IngestExposition(readTestdata(t, f), text, "scrape:"+f, nil, t0.Add(time.Duration(i)*15*time.Second)); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		if i == 0 {
			got := rr.take()
			if r, ok := got["reviews-v2-5b8d9c7f6d-x7k2p/cpu"]; ok {
				t.Errorf("CPU reading %+v from one cumulative sample, want none until a second gives a rate", r)
			}
			if r := got["reviews-v2-5b8d9c7f6d-x7k2p/memory"]; !near(r.Used, 250*1048576) {
				t.Errorf("first memory reading %+v, want the two containers' 250 MiB", r)
			}
		}
	}
	got := rr.take()
	for _, tc := range []struct {
		key      string
		used     float64
		limitPct float64 // NaN: no limit known
	}{
		// reviews 3 s + istio-proxy 0.75 s of CPU in 15 s, limits 0.5 + 2 cores.
		{"reviews-v2-5b8d9c7f6d-x7k2p/cpu", 0.25, 10},
		// 201 + 51 MiB of 512 MiB + 1 GiB.
		{"reviews-v2-5b8d9c7f6d-x7k2p/memory", 252 * 1048576, 100 * 252.0 / 1536},
		// ratings has no limit: its use, but no share of a limit.
		{"ratings-v1-7c9bd4f7b-9fzq2/cpu", 0.12, math.NaN()},
		{"ratings-v1-7c9bd4f7b-9fzq2/memory", 170 * 1048576, math.NaN()},
	} {
		r, ok := got[tc.key]
		if !ok {
			t.Errorf("%s: no reading (got %v)", tc.key, got)
			continue
		}
		if r.Namespace != "bookinfo" || !near(r.Used, tc.used) {
			t.Errorf("%s: %s used %v, want bookinfo %v", tc.key, r.Namespace, r.Used, tc.used)
		}
		if math.IsNaN(tc.limitPct) != math.IsNaN(r.LimitPct) || !math.IsNaN(tc.limitPct) && !near(r.LimitPct, tc.limitPct) {
			t.Errorf("%s: %.3f%% of the limit, want %.3f%%", tc.key, r.LimitPct, tc.limitPct)
		}
	}
	if st := c.Status(); st.Series.Dropped[dropUnknown] != 0 || st.ResourceReadings == 0 {
		t.Errorf("status %+v: want no unknown series and readings counted", st)
	}
}

// The OpenTelemetry kubeletstats receiver's utilisation gauges, over OTLP
// (dotted names, resource attributes) or remote-write (translated names and
// labels), give the share of the limit directly.
func TestResourcesKubeletstats(t *testing.T) {
	c, rr := newResourceCollector(t)
	now := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("k8s.namespace.name", "shop")
	rm.Resource().Attributes().PutStr("k8s.pod.name", "cart-7f9c8d6b5-qwxzt")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for name, v := range map[string]float64{"k8s.pod.cpu_limit_utilization": 0.93, "k8s.pod.cpu.usage": 0.465} {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetDoubleValue(v)
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
	}
	if n := c.IngestOTLP(md); n != 2 {
		t.Fatalf("read %d points, want 2", n)
	}
	got := rr.take()
	if r := got["cart-7f9c8d6b5-qwxzt/cpu"]; r.Namespace != "shop" || !near(r.LimitPct, 93) || !near(r.Used, 0.465) {
		t.Errorf("OTLP reading %+v, want shop, 93%% of the limit, 0.465 cores", r)
	}

	// kubeletstats' default: cumulative CPU seconds of the pod, no limit.
	for i, v := range []float64{120, 126} {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("k8s.namespace.name", "shop")
		rm.Resource().Attributes().PutStr("k8s.pod.name", "checkout-6d5f7c8b9-rtx2m")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("k8s.pod.cpu.time")
		sum := m.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		dp := sum.DataPoints().AppendEmpty()
		dp.SetDoubleValue(v)
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i) * 20 * time.Second)))
		c.IngestOTLP(md)
	}
	if r := rr.take()["checkout-6d5f7c8b9-rtx2m/cpu"]; !near(r.Used, 0.3) || !math.IsNaN(r.LimitPct) {
		t.Errorf("k8s.pod.cpu.time reading %+v, want 0.3 cores (6 s in 20 s) and no limit", r)
	}

	// The same pod's memory from kubeletstats (pod level) and cAdvisor (its
	// container) is counted once, not summed.
	both := []prompb.TimeSeries{
		ts([]prompb.Label{{Name: "__name__", Value: "k8s_pod_memory_working_set_bytes"}, {Name: "k8s_namespace_name", Value: "shop"}, {Name: "k8s_pod_name", Value: "cart-7f9c8d6b5-qwxzt"}}, 100<<20, now.UnixMilli()),
		ts([]prompb.Label{{Name: "__name__", Value: "container_memory_working_set_bytes"}, {Name: "namespace", Value: "shop"}, {Name: "pod", Value: "cart-7f9c8d6b5-qwxzt"}, {Name: "container", Value: "cart"}}, 100<<20, now.UnixMilli()),
	}
	if _, err := c.IngestRemoteWrite(writeRequest(t, both...)); err != nil {
		t.Fatal(err)
	}
	if r := rr.take()["cart-7f9c8d6b5-qwxzt/memory"]; !near(r.Used, 100<<20) {
		t.Errorf("memory from two sources: %+v, want 100 MiB once", r)
	}

	lbl := []prompb.Label{{Name: "__name__", Value: "k8s_pod_memory_limit_utilization_ratio"},
		{Name: "k8s_namespace_name", Value: "shop"}, {Name: "k8s_pod_name", Value: "cart-7f9c8d6b5-qwxzt"}}
	if _, err := c.IngestRemoteWrite(writeRequest(t, ts(lbl, 0.97, now.UnixMilli()))); err != nil {
		t.Fatal(err)
	}
	got = rr.take()
	if r := got["cart-7f9c8d6b5-qwxzt/memory"]; !near(r.LimitPct, 97) || !math.IsNaN(r.Used) {
		t.Errorf("remote-write reading %+v, want 97%% of the limit and no bytes", r)
	}
}

// Without a resource sink the families are known and left alone: not
// counted as unknown metrics, no state kept.
func TestResourcesWithoutSink(t *testing.T) {
	c := newTestCollector(t, DefaultConfig(), &recorder{})
	now := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
	if _, err := c.IngestExposition(readTestdata(t, "k8s_cadvisor_0.prom"), "text/plain; version=0.0.4", "scrape:cadvisor", nil, now); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.Series.Dropped[dropUnknown] != 0 || st.Series.Seen != 0 || len(c.in.pods) != 0 {
		t.Errorf("status %+v, %d pods: want the series known, unused, and no pod state", st, len(c.in.pods))
	}
}
