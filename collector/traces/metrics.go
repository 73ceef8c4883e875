package traces

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the receiver's self-observability. Pairing counters are read
// from the pairer at scrape time so the hot path updates plain fields only.
type metrics struct {
	received *prometheus.CounterVec
	rejected *prometheus.CounterVec
	repaired *prometheus.CounterVec
	pairer   *Pairer

	paired, expired, evicted, dropped, badTime, skewed, calls, inFlight *prometheus.Desc
}

func newMetrics(p *Pairer) *metrics {
	return &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_spans_received_total", Help: "Spans decoded, by receiver.",
		}, []string{"receiver"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_trace_requests_rejected_total", Help: "Trace export requests refused as a whole, by receiver and reason.",
		}, []string{"receiver", "reason"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_spans_repaired_total", Help: "Spans kept after repairing a field (no service name, truncated attribute).",
		}, []string{"reason"}),
		pairer:   p,
		paired:   prometheus.NewDesc("meshlens_spans_paired_total", "Spans that left the pairing store after taking part in a call with a partner span.", nil, nil),
		expired:  prometheus.NewDesc("meshlens_spans_expired_unpaired_total", "Spans that left the pairing store without a partner: as a call with a virtual node, or without any call.", []string{"result"}, nil),
		evicted:  prometheus.NewDesc("meshlens_spans_evicted_total", "Spans pushed out of the full pairing store before their expiry (oldest first).", nil, nil),
		dropped:  prometheus.NewDesc("meshlens_spans_dropped_total", "Spans rejected: no trace or span ID, or a duplicate span ID.", nil, nil),
		badTime:  prometheus.NewDesc("meshlens_spans_bad_duration_total", "Spans whose latency was ignored: end before start or absurdly long.", nil, nil),
		skewed:   prometheus.NewDesc("meshlens_spans_clock_skew_total", "Calls recorded at the receiver's time because the span's time was absurd.", nil, nil),
		calls:    prometheus.NewDesc("meshlens_trace_calls_total", "Calls (graph observations) built from spans.", nil, nil),
		inFlight: prometheus.NewDesc("meshlens_pairing_store_spans", "Spans waiting in the pairing store.", nil, nil),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	return errors.Join(reg.Register(m.received), reg.Register(m.rejected), reg.Register(m.repaired), reg.Register(m))
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.paired, m.expired, m.evicted, m.dropped, m.badTime, m.skewed, m.calls, m.inFlight} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.pairer.Stats()
	c := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	c(m.paired, s.Paired)
	c(m.expired, s.Virtual, "virtual")
	c(m.expired, s.NoEdge, "no_edge")
	c(m.evicted, s.Evicted)
	c(m.dropped, s.Dropped)
	c(m.badTime, s.BadTime)
	c(m.skewed, s.Skewed)
	c(m.calls, s.Calls)
	ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(s.InFlight))
}
