package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// GraphSource is what the recorder reads closed buckets from.
type GraphSource interface {
	RawEdges(at time.Time, window time.Duration) ([]graph.EdgeSnapshot, error)
	OnBucketClose(func(graph.BucketClosed))
	Resolution() time.Duration
}

// StateSource exports detector baselines (detect.Engine).
type StateSource interface {
	ExportState() detect.State
}

// detectStateKey is the blob holding the detector's baselines.
const detectStateKey = "detect:state"

// BucketsOf turns the raw edges of the bucket starting at start into edge
// buckets. Source-reported statistics kept beside destination-reported ones
// are not stored: the replay shows the primary view of each edge.
func BucketsOf(start time.Time, edges []graph.EdgeSnapshot) []EdgeBucket {
	out := make([]EdgeBucket, 0, len(edges))
	for i := range edges {
		e := &edges[i]
		out = append(out, EdgeBucket{Start: start, Source: e.Source, Target: e.Target, Protocol: e.Protocol,
			Stats: e.Stats, Principals: e.Principals})
	}
	return out
}

type pendingChange struct {
	at time.Time
	c  detect.Change
}

// Recorder writes what the graph and the detector produce to the store, off
// their hot paths: hooks only queue, one goroutine writes. Detector changes
// are written at once; edge history in batches at most FlushInterval old.
type Recorder struct {
	store Store
	cfg   Config
	log   *slog.Logger
	g     GraphSource
	eng   StateSource
	met   *recMetrics

	mu        sync.Mutex
	closed    []graph.BucketClosed
	changes   []pendingChange
	rows      []EdgeBucket
	rowsSince time.Time // when the oldest unwritten row was queued
	skipUpTo  time.Time // buckets ending at or before this are already stored
	lastErr   error
	lastWrite time.Time
	lastEnd   time.Time // end of the newest raw bucket written
	topo      []TopologyEdge
	topoAt    time.Time
	wake      chan struct{}
	flushReq  chan chan error

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

type recMetrics struct {
	rows     *prometheus.CounterVec
	errors   prometheus.Counter
	dropped  prometheus.Counter
	duration prometheus.Histogram
	pending  prometheus.GaugeFunc
}

// NewRecorder builds a recorder; Attach hooks it up, Start runs it.
func NewRecorder(store Store, cfg Config, g GraphSource, eng StateSource, log *slog.Logger, reg prometheus.Registerer) (*Recorder, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("storage config: %v", p)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{store: store, cfg: cfg, log: log, g: g, eng: eng,
		wake: make(chan struct{}, 1), flushReq: make(chan chan error)}
	r.met = &recMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_storage_rows_written_total",
			Help: "Rows written to storage, by kind (edge_bucket, change)."}, []string{"kind"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_storage_write_errors_total",
			Help: "Failed storage writes (kept in memory and retried)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_storage_dropped_rows_total",
			Help: "Edge-history rows dropped because storage refused writes for too long."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshlens_storage_write_seconds",
			Help: "Time of one storage write transaction.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	r.met.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshlens_storage_pending_rows",
		Help: "Edge-history rows queued for writing."}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		return float64(len(r.rows))
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{r.met.rows, r.met.errors, r.met.dropped, r.met.duration, r.met.pending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register storage metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Attach registers the recorder's hooks on the graph and the engine (nil: none).
func (r *Recorder) Attach(g GraphSource, eng interface {
	Subscribe(func(detect.Change)) func()
}) {
	if g != nil {
		g.OnBucketClose(r.BucketClosed)
	}
	if eng != nil {
		eng.Subscribe(r.Change)
	}
}

// SkipUpTo tells the recorder buckets ending at or before t are stored
// already (restored ones the graph closes again on start).
func (r *Recorder) SkipUpTo(t time.Time) {
	r.mu.Lock()
	r.skipUpTo = t
	r.lastEnd = t
	r.mu.Unlock()
}

// BucketClosed is the graph hook: it only queues.
func (r *Recorder) BucketClosed(ev graph.BucketClosed) {
	r.mu.Lock()
	if !ev.End.After(r.skipUpTo) {
		r.mu.Unlock()
		return
	}
	r.closed = append(r.closed, ev)
	r.mu.Unlock()
	r.signal()
}

// Change is the detector subscription: it only queues.
func (r *Recorder) Change(c detect.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, pendingChange{at: time.Now(), c: c})
	r.mu.Unlock()
	r.signal()
}

func (r *Recorder) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start runs the writer until Shutdown.
func (r *Recorder) Start(ctx context.Context) error {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.cancel != nil {
		return errors.New("storage recorder already started")
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.run(ctx)
	return nil
}

// Shutdown stops the writer after a last flush of everything queued
// (history, changes, detector baselines); safe twice and without Start.
func (r *Recorder) Shutdown(ctx context.Context) error {
	r.runMu.Lock()
	if r.cancel != nil {
		r.cancel()
	}
	done := r.done
	r.runMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("storage recorder shutdown: %w", ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastErr != nil {
		return fmt.Errorf("storage recorder: final flush: %w", r.lastErr)
	}
	return nil
}

// Flush writes everything queued before the call and reports the outcome.
func (r *Recorder) Flush(ctx context.Context) error {
	ack := make(chan error, 1)
	r.runMu.Lock()
	done := r.done
	r.runMu.Unlock()
	if done == nil {
		return errors.New("storage recorder not started")
	}
	select {
	case r.flushReq <- ack:
	case <-done:
		return errors.New("storage recorder stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ack:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready fails while the last write attempt failed (disk full, read-only).
func (r *Recorder) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastErr != nil {
		return fmt.Errorf("storage: writes failing: %w", r.lastErr)
	}
	return nil
}

// Status is what GET /api/v1/storage/status shows.
type Status struct {
	Driver      string    `json:"driver"`
	LastWrite   time.Time `json:"lastWrite"`
	LastBucket  time.Time `json:"lastBucketEnd"` // end of the newest raw bucket written
	PendingRows int       `json:"pendingRows"`
	Pending     int       `json:"pendingChanges"`
	LastError   string    `json:"lastError,omitempty"`
}

// Status reports the recorder's progress.
func (r *Recorder) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Driver: r.store.Driver(), LastWrite: r.lastWrite, LastBucket: r.lastEnd, PendingRows: len(r.rows), Pending: len(r.changes)}
	if r.lastErr != nil {
		st.LastError = r.lastErr.Error()
	}
	return st
}

func (r *Recorder) run(ctx context.Context) {
	defer close(r.done)
	flush := time.NewTicker(r.cfg.FlushInterval)
	defer flush.Stop()
	state := time.NewTicker(r.cfg.StateInterval)
	defer state.Stop()
	rollup := time.NewTicker(time.Minute)
	defer rollup.Stop()
	for {
		select {
		case <-ctx.Done():
			// Final flush with a fresh context: the run context is cancelled.
			fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r.step(fctx, true)
			r.saveState(fctx)
			cancel()
			return
		case <-r.wake:
			r.step(ctx, false)
		case <-flush.C:
			r.step(ctx, false)
		case <-state.C:
			r.saveState(ctx)
		case <-rollup.C:
			r.rollup(ctx)
		case ack := <-r.flushReq:
			r.step(ctx, true)
			r.mu.Lock()
			err := r.lastErr
			r.mu.Unlock()
			ack <- err
		}
	}
}

// step writes queued changes at once, turns closed buckets into rows, and
// writes rows when a batch is full, the oldest is FlushInterval old, or force.
func (r *Recorder) step(ctx context.Context, force bool) {
	r.mu.Lock()
	changes := r.changes
	r.changes = nil
	closed := r.closed
	r.closed = nil
	r.mu.Unlock()

	if len(changes) > 0 {
		r.writeChanges(ctx, changes)
	}
	res := r.g.Resolution()
	for _, ev := range closed {
		edges, err := r.g.RawEdges(ev.End, res)
		if err != nil {
			r.log.Warn("storage: read closed bucket", "bucket", ev.Start, "err", err)
			continue
		}
		rows := BucketsOf(ev.Start, edges)
		r.maybeTopology(ctx, ev.End, edges)
		r.mu.Lock()
		if len(r.rows) == 0 {
			r.rowsSince = time.Now()
		}
		r.rows = append(r.rows, rows...)
		if over := len(r.rows) - r.cfg.MaxPending; over > 0 {
			r.rows = slices.Delete(r.rows, 0, over)
			r.met.dropped.Add(float64(over))
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	n := len(r.rows)
	due := n > 0 && (force || n >= r.cfg.BatchSize || time.Since(r.rowsSince) >= r.cfg.FlushInterval)
	r.mu.Unlock()
	if due {
		r.writeRows(ctx)
	}
}

func (r *Recorder) writeChanges(ctx context.Context, changes []pendingChange) {
	// Group by arrival second so one transaction carries a burst.
	batch := make([]detect.Change, len(changes))
	for i, c := range changes {
		batch[i] = c.c
	}
	start := time.Now()
	err := r.store.RecordChanges(ctx, changes[len(changes)-1].at, batch)
	r.met.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		r.failed(err)
		r.mu.Lock()
		r.changes = append(changes, r.changes...) // keep order; retried on the next step
		r.mu.Unlock()
		return
	}
	r.met.rows.WithLabelValues("change").Add(float64(len(batch)))
	r.succeeded()
}

func (r *Recorder) writeRows(ctx context.Context) {
	r.mu.Lock()
	rows := r.rows
	r.mu.Unlock()
	res := r.g.Resolution()
	written := 0
	for written < len(rows) {
		end := min(written+r.cfg.BatchSize, len(rows))
		// Keep one bucket's rows in one transaction when it fits.
		start := time.Now()
		err := r.store.WriteBuckets(ctx, res, rows[written:end])
		r.met.duration.Observe(time.Since(start).Seconds())
		if err != nil {
			r.failed(err)
			break
		}
		r.met.rows.WithLabelValues("edge_bucket").Add(float64(end - written))
		written = end
	}
	r.mu.Lock()
	if written > 0 {
		if e := rows[written-1].Start.Add(res); e.After(r.lastEnd) {
			r.lastEnd = e
		}
		r.rows = slices.Delete(r.rows, 0, written)
		r.rowsSince = time.Now()
	}
	r.mu.Unlock()
	if written == len(rows) {
		r.succeeded()
	}
}

func (r *Recorder) failed(err error) {
	r.met.errors.Inc()
	r.mu.Lock()
	first := r.lastErr == nil
	r.lastErr = err
	r.mu.Unlock()
	if first {
		r.log.Error("storage: write failed; keeping data in memory and retrying", "err", err)
	}
}

func (r *Recorder) succeeded() {
	r.mu.Lock()
	recovered := r.lastErr != nil
	r.lastErr = nil
	r.lastWrite = time.Now()
	r.mu.Unlock()
	if recovered {
		r.log.Info("storage: writes succeed again")
	}
}

// maybeTopology stores the edge set when it changed, at most once a minute.
func (r *Recorder) maybeTopology(ctx context.Context, end time.Time, raw []graph.EdgeSnapshot) {
	edges := make([]TopologyEdge, 0, len(raw))
	seen := map[string]bool{}
	var nodes []string
	for i := range raw {
		e := &raw[i]
		s, d := e.Source.ID(), e.Target.ID()
		edges = append(edges, TopologyEdge{Source: s, Target: d, Protocol: e.Protocol.String()})
		for _, n := range [2]string{s, d} {
			if !seen[n] {
				seen[n] = true
				nodes = append(nodes, n)
			}
		}
	}
	slices.SortFunc(edges, func(a, b TopologyEdge) int {
		return strings.Compare(a.Source+"\x00"+a.Target+"\x00"+a.Protocol, b.Source+"\x00"+b.Target+"\x00"+b.Protocol)
	})
	slices.Sort(nodes)
	if slices.Equal(edges, r.topo) || (!r.topoAt.IsZero() && end.Sub(r.topoAt) < time.Minute) {
		return
	}
	if err := r.store.PutTopology(ctx, Topology{At: end, Nodes: nodes, Edges: edges}); err != nil {
		r.failed(err)
		return
	}
	r.topo, r.topoAt = edges, end
}

func (r *Recorder) saveState(ctx context.Context) {
	if r.eng == nil {
		return
	}
	data, err := json.Marshal(r.eng.ExportState())
	if err != nil {
		r.log.Error("storage: encode detector state", "err", err)
		return
	}
	if err := r.store.PutBlob(ctx, detectStateKey, data); err != nil {
		r.failed(err)
		return
	}
	r.succeeded()
}

func (r *Recorder) rollup(ctx context.Context) {
	r.mu.Lock()
	upTo := r.lastEnd
	r.mu.Unlock()
	if upTo.IsZero() {
		return
	}
	// Retention runs on data time, so a replayed or restored past is not
	// wiped by the wall clock.
	res, err := r.store.Rollup(ctx, r.g.Resolution(), upTo, upTo, r.cfg.Retention)
	if err != nil {
		r.failed(err)
		return
	}
	if res.Written+res.Deleted > 0 {
		r.log.Debug("storage rollup", "written", res.Written, "deleted", res.Deleted)
	}
}
