package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector scrapes targets and accepts pushed metrics, feeding a Sink.
type Collector struct {
	cfg  Config
	sink Sink
	res  ResourceSink // nil: pods' resources are not read
	log  *slog.Logger
	in   *ingester

	rwDec rwDecoder
	bufs  sync.Pool
	hc    *http.Client

	targets []*targetState

	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	wg                  sync.WaitGroup

	// self-observability
	scrapeUp       *prometheus.GaugeVec
	scrapeDuration *prometheus.GaugeVec
	scrapes        *prometheus.CounterVec
	rwRequests     prometheus.Counter
	rwSamples      prometheus.Counter
	otlpPoints     prometheus.Counter
	rejectedTotal  *prometheus.CounterVec
	seriesActive   prometheus.GaugeFunc
	seriesSeen     prometheus.CounterFunc
	seriesDropped  *prometheus.Desc
	observations   prometheus.CounterFunc
}

// New builds a collector; it starts nothing. reg may be nil.
func New(cfg Config, sink Sink, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Collector, error) {
	if problems := cfg.Validate(); len(problems) > 0 {
		return nil, fmt.Errorf("metrics config: %v", problems)
	}
	if sink == nil {
		return nil, errors.New("metrics collector: nil sink")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	c := &Collector{
		cfg:  cfg,
		sink: sink,
		log:  logger.With("component", "collector.metrics"),
		in:   newIngester(cfg),
		hc:   &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 2}},
	}
	for _, o := range opts {
		o(c)
	}
	c.in.resources = c.res != nil
	c.bufs.New = func() any { b := make([]byte, 0, 1<<20); return &b }
	for _, t := range cfg.Targets {
		c.targets = append(c.targets, &targetState{t: t})
	}
	c.initMetrics()
	if reg != nil {
		for _, m := range []prometheus.Collector{c.scrapeUp, c.scrapeDuration, c.scrapes, c.rwRequests, c.rwSamples,
			c.otlpPoints, c.rejectedTotal, c.seriesActive, c.seriesSeen, c.observations, droppedCollector{c}} {
			if err := reg.Register(m); err != nil {
				return nil, fmt.Errorf("register metrics collector metrics: %w", err)
			}
		}
	}
	return c, nil
}

func (c *Collector) initMetrics() {
	const ns, sub = "meshlens", "metrics"
	c.scrapeUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "scrape_up",
		Help: "1 if the last scrape of the target succeeded."}, []string{"target"})
	c.scrapeDuration = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "scrape_duration_seconds",
		Help: "Duration of the last scrape of the target."}, []string{"target"})
	c.scrapes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "scrapes_total",
		Help: "Scrapes by target and result."}, []string{"target", "result"})
	c.rwRequests = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_requests_total",
		Help: "Remote-write requests decoded."})
	c.rwSamples = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_samples_total",
		Help: "Remote-write samples read."})
	c.otlpPoints = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "otlp_datapoints_total",
		Help: "OTLP metric data points read."})
	c.rejectedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejected_requests_total",
		Help: "Pushed requests answered with an error, by transport and reason."}, []string{"transport", "reason"})
	c.seriesActive = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "series_active",
		Help: "Series whose last value is held."}, func() float64 { return float64(c.Status().Series.Active) })
	c.seriesSeen = prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "series_seen_total",
		Help: "Series mapped to graph edges or pod resources since start."}, func() float64 { return float64(c.Status().Series.Seen) })
	c.observations = prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "observations_total",
		Help: "Observations sent to the graph."}, func() float64 { return float64(c.Status().Observations) })
	c.seriesDropped = prometheus.NewDesc("meshlens_metrics_series_dropped_total",
		"Series or samples not used, by reason.", []string{"reason"}, nil)
}

// droppedCollector exports the drop counters kept by the ingester.
type droppedCollector struct{ c *Collector }

func (d droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.c.seriesDropped }
func (d droppedCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range d.c.Status().Series.Dropped {
		ch <- prometheus.MustNewConstMetric(d.c.seriesDropped, prometheus.CounterValue, float64(n), reason)
	}
}

func (c *Collector) rejected(transport, reason string) {
	c.rejectedTotal.WithLabelValues(transport, reason).Inc()
}

// deliverLocked hands a batch to the sinks; runs under in.mu because obs
// and the resource readings are reused.
func (c *Collector) deliverLocked(obs []graph.Observation) {
	if len(obs) > 0 {
		c.sink.Ingest(obs)
	}
	if c.res != nil && len(c.in.resOut) > 0 {
		c.res.ObserveResources(c.in.resOut)
	}
}

var errTooLarge = errors.New("body too large")

// readBody reads a request body up to the configured limit.
func (c *Collector) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > c.cfg.MaxBodyBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", errTooLarge, r.ContentLength, c.cfg.MaxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, c.cfg.MaxBodyBytes)
	}
	return body, nil
}

// Start begins scraping the configured targets; pushed data is accepted
// whether or not Start ran.
func (c *Collector) Start(ctx context.Context) error {
	c.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(ctx)
		c.cancel = cancel
		for _, t := range c.targets {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.scrapeLoop(ctx, t)
			}()
		}
	})
	return nil
}

// Shutdown stops the scrapers and waits for them; safe to call twice.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
		}
	})
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		c.hc.CloseIdleConnections()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("metrics collector shutdown: %w", ctx.Err())
	}
}

// Status is the collector's self-report, served as JSON.
type Status struct {
	Targets      []TargetStatus `json:"targets"`
	Series       SeriesStatus   `json:"series"`
	Samples      uint64         `json:"samples"`
	Observations uint64         `json:"observations"`
	// SuppressedL4 counts L4-only observations (ztunnel, Linkerd tcp_*) not
	// drawn because the same caller/callee pair has L7 telemetry.
	SuppressedL4    uint64 `json:"suppressedL4"`
	TruncatedLabels uint64 `json:"truncatedLabels"`
	// ResourceReadings counts pods' CPU and memory readings handed on.
	ResourceReadings uint64 `json:"resourceReadings"`
}

// SeriesStatus counts series.
type SeriesStatus struct {
	Active  int               `json:"active"`
	Seen    uint64            `json:"seen"`
	Dropped map[string]uint64 `json:"dropped"`
}

// TargetStatus is the health of one scrape target.
type TargetStatus struct {
	Name            string    `json:"name"`
	URL             string    `json:"url"`
	Health          string    `json:"health"` // up, down, unknown
	LastScrape      time.Time `json:"lastScrape,omitzero"`
	DurationSeconds float64   `json:"durationSeconds"`
	LastError       string    `json:"lastError,omitempty"`
	Samples         int       `json:"samples"`
	Scrapes         uint64    `json:"scrapes"`
	Failures        uint64    `json:"failures"`
}

// Status reports the collector's health and counts.
func (c *Collector) Status() Status {
	in := c.in
	in.mu.Lock()
	st := Status{
		Series: SeriesStatus{
			Active:  in.nseries,
			Seen:    in.c.seriesSeen,
			Dropped: make(map[string]uint64, len(in.c.dropped)),
		},
		Samples:          in.c.samples,
		Observations:     in.c.observations,
		SuppressedL4:     in.c.suppressedL4,
		TruncatedLabels:  in.c.truncated,
		ResourceReadings: in.c.resources,
	}
	for k, v := range in.c.dropped {
		st.Series.Dropped[k] = v
	}
	in.mu.Unlock()
	st.Targets = make([]TargetStatus, 0, len(c.targets))
	for _, t := range c.targets {
		st.Targets = append(st.Targets, t.status())
	}
	return st
}
