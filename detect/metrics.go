package detect

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes the engine's own counters and every firing anomaly, so
// Prometheus alert rules can use them.
type metrics struct {
	e       *Engine
	buckets prometheus.Counter
	gaps    prometheus.Counter
	dropped prometheus.Counter
	fired   *prometheus.CounterVec
	pass    prometheus.Histogram
	firing  *prometheus.Desc
	score   *prometheus.Desc
	subj    *prometheus.Desc
}

func newMetrics(e *Engine) *metrics {
	labels := []string{"id", "type", "metric", "severity", "subject", "source", "target", "node", "namespace", "incident"}
	return &metrics{
		e:       e,
		buckets: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_detect_buckets_total", Help: "Closed buckets run through the detectors."}),
		gaps:    prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_detect_gap_buckets_total", Help: "Buckets skipped as telemetry gaps (almost all traffic vanished at once)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_detect_subjects_dropped_total", Help: "Edges/nodes not tracked because detect.maxSubjects was reached."}),
		fired:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_detect_anomalies_fired_total", Help: "Anomalies that started firing, by type."}, []string{"type"}),
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshlens_detect_pass_seconds", Help: "Duration of one detection pass.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		firing: prometheus.NewDesc("meshlens_anomaly_firing", "1 for every firing anomaly.", labels, nil),
		score:  prometheus.NewDesc("meshlens_anomaly_score", "Score of every firing anomaly.", labels, nil),
		subj:   prometheus.NewDesc("meshlens_detect_subjects", "Edges and node directions with baselines held.", nil, nil),
	}
}

func (m *metrics) observePass(d time.Duration) { m.pass.Observe(d.Seconds()) }

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.buckets.Describe(ch)
	m.gaps.Describe(ch)
	m.dropped.Describe(ch)
	m.fired.Describe(ch)
	m.pass.Describe(ch)
	ch <- m.firing
	ch <- m.score
	ch <- m.subj
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.buckets.Collect(ch)
	m.gaps.Collect(ch)
	m.dropped.Collect(ch)
	m.fired.Collect(ch)
	m.pass.Collect(ch)
	m.e.mu.Lock()
	type row struct {
		l     []string
		score float64
	}
	rows := make([]row, 0, len(m.e.active))
	for _, a := range m.e.active {
		var src, dst, node, ns string
		s := a.Subject
		if s.Source != nil {
			src, dst, ns = s.Source.Name, s.Target.Name, s.Target.Namespace
		}
		if s.Node != nil {
			node, ns = s.Node.Name, s.Node.Namespace
		}
		rows = append(rows, row{l: []string{a.ID, a.Type, a.Metric, a.Severity, s.Kind, src, dst, node, ns, a.IncidentID}, score: a.Score})
	}
	n := len(m.e.subjects)
	m.e.mu.Unlock()
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(m.firing, prometheus.GaugeValue, 1, r.l...)
		ch <- prometheus.MustNewConstMetric(m.score, prometheus.GaugeValue, r.score, r.l...)
	}
	ch <- prometheus.MustNewConstMetric(m.subj, prometheus.GaugeValue, float64(n))
}
