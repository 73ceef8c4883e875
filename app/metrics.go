package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// graphCollector exposes the graph's own counters at scrape time.
type graphCollector struct {
	g                                         *graph.Graph
	obs, late, tooOld, nodes, edges, by, over *prometheus.Desc
}

func newGraphCollector(g *graph.Graph) *graphCollector {
	return &graphCollector{
		g:      g,
		obs:    prometheus.NewDesc("meshlens_graph_observations_total", "Observations ingested into the graph.", nil, nil),
		late:   prometheus.NewDesc("meshlens_graph_observations_late_total", "Observations that arrived after their bucket was final (folded into the oldest open bucket).", nil, nil),
		tooOld: prometheus.NewDesc("meshlens_graph_observations_too_old_total", "Observations older than the in-memory window, dropped.", nil, nil),
		nodes:  prometheus.NewDesc("meshlens_graph_nodes", "Nodes in the live graph.", nil, nil),
		edges:  prometheus.NewDesc("meshlens_graph_edges", "Edges in the live graph.", nil, nil),
		by:     prometheus.NewDesc("meshlens_graph_bucket_bytes", "Bytes held by closed buckets.", nil, nil),
		over:   prometheus.NewDesc("meshlens_graph_overflow_total", "Observations folded into the overflow node because a node or edge cap was reached.", nil, nil),
	}
}

func (c *graphCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.obs, c.late, c.tooOld, c.nodes, c.edges, c.by, c.over} {
		ch <- d
	}
}

func (c *graphCollector) Collect(ch chan<- prometheus.Metric) {
	k := c.g.Counters()
	ch <- prometheus.MustNewConstMetric(c.obs, prometheus.CounterValue, float64(k.Observations))
	ch <- prometheus.MustNewConstMetric(c.late, prometheus.CounterValue, float64(k.Late))
	ch <- prometheus.MustNewConstMetric(c.tooOld, prometheus.CounterValue, float64(k.TooOld))
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(k.Nodes))
	ch <- prometheus.MustNewConstMetric(c.edges, prometheus.GaugeValue, float64(k.Edges))
	ch <- prometheus.MustNewConstMetric(c.by, prometheus.GaugeValue, float64(k.Bytes))
	ch <- prometheus.MustNewConstMetric(c.over, prometheus.CounterValue, float64(k.Overflowed))
}

// spanWindowsCollector exposes what the trace-structure detector left out.
type spanWindowsCollector struct {
	w                *detect.SpanWindows
	dropped, skipped *prometheus.Desc
}

func newSpanWindowsCollector(w *detect.SpanWindows) *spanWindowsCollector {
	return &spanWindowsCollector{
		w:       w,
		dropped: prometheus.NewDesc("meshlens_structure_spans_dropped_total", "Spans the trace-structure detector could not hold (bound reached, or their window already judged). The graph still counts them.", nil, nil),
		skipped: prometheus.NewDesc("meshlens_structure_spans_sampled_out_total", "Spans of traces the trace-structure detector left out by trace sampling under heavy traffic. The graph still counts them.", nil, nil),
	}
}

func (c *spanWindowsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.dropped
	ch <- c.skipped
}

func (c *spanWindowsCollector) Collect(ch chan<- prometheus.Metric) {
	d, s := c.w.Dropped()
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(d))
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(s))
}

// resourcesDropped exports the readings pods' resource evidence
// refused at its bounds.
func resourcesDropped(r *detect.PodResources) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshlens_resources_readings_dropped_total",
		Help: "Pod CPU/memory readings refused because too many pods or series were held."}, func() float64 { return float64(r.Dropped()) })
}
