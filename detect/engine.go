package detect

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/graph"
)

// edgeForget: a learned edge not seen for this long is forgotten.
const edgeForget = 7 * 24 * time.Hour

// maxSeries is how many buckets of a metric an anomaly carries as evidence.
const maxSeries = 30

// edgeSeen is one edge of the learned edge baseline.
type edgeSeen struct {
	src, dst     graph.Node
	srcID, dstID string // src.ID(), dst.ID(): read on every incident update
	first, last  time.Time
	learned      bool
	policy       string // violated policy ("" = none), computed once
	polDeny      bool
	plaintext    bool
	polState     detState
	unexpected   detState
}

type nodeSeen struct {
	node        graph.Node // zero for a node restored from State until seen again
	first, last time.Time
}

// Engine runs the detectors. It is safe for concurrent use; Observe is
// normally called from the graph's bucket-close hook.
type Engine struct {
	cfg Config
	log *slog.Logger
	met *metrics

	mu       sync.Mutex
	res      time.Duration
	start    time.Time
	last     time.Time // end of the last bucket observed
	subjects map[string]*subject
	known    map[string]*edgeSeen
	nodes    map[string]*nodeSeen
	versions map[string]*detState
	active   map[string]*Anomaly // firing, by detector key
	byID     map[string]*Anomaly
	resolved []string // resolved anomaly IDs, oldest first (bounded)
	inc      incidents
	subs     map[int]func(Change)
	nextSub  int
	buf      []float64
	pending  []Change
	gaps     uint64
	// liveEdges had traffic in the last bucket that was not a gap (lastGood).
	liveEdges int
	lastGood  time.Time
	// recentRank tunes the suspects ranking (SetRecentRank).
	recentRank RecentRankConfig
	// structure is the engine's trace-structure detector, if any: its
	// baselines are part of the engine's State.
	structure *Structure
}

// newEdgeSeen is a learned edge from src to dst, its node IDs worked out once.
func newEdgeSeen(src, dst graph.Node) *edgeSeen {
	return &edgeSeen{src: src, dst: dst, srcID: src.ID(), dstID: dst.ID()}
}

// maxGap: a silence longer than this is no longer taken for a telemetry gap.
const maxGap = 5 * time.Minute

// New builds an engine; it starts nothing.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("detect config: %s", strings.Join(p, "; "))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:      cfg,
		log:      log,
		subjects: make(map[string]*subject),
		known:    make(map[string]*edgeSeen),
		nodes:    make(map[string]*nodeSeen),
		versions: make(map[string]*detState),
		active:   make(map[string]*Anomaly),
		byID:     make(map[string]*Anomaly),
		subs:     make(map[int]func(Change)),
	}
	e.inc.init()
	e.met = newMetrics(e)
	if reg != nil {
		if err := reg.Register(e.met); err != nil {
			return nil, fmt.Errorf("register detect metrics: %w", err)
		}
	}
	return e, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// SnapshotSource is what Attach needs from the graph.
type SnapshotSource interface {
	Snapshot(graph.Query) (*graph.Snapshot, error)
	OnBucketClose(func(graph.BucketClosed))
	Resolution() time.Duration
}

var _ SnapshotSource = (*graph.Graph)(nil)

// Attach runs a detection pass on every closed bucket of g (workload view).
func (e *Engine) Attach(g SnapshotSource) {
	res := g.Resolution()
	g.OnBucketClose(func(ev graph.BucketClosed) {
		snap, err := g.Snapshot(graph.Query{View: graph.ViewWorkload, Window: res, At: ev.End})
		if err != nil {
			e.log.Warn("detect: snapshot of closed bucket", "bucket", ev.Start, "err", err)
			return
		}
		e.Observe(snap)
	})
}

// Subscribe calls fn (outside the engine's lock, in order) for every state
// change; fn must not block. The returned func cancels the subscription.
func (e *Engine) Subscribe(fn func(Change)) (cancel func()) {
	e.mu.Lock()
	id := e.nextSub
	e.nextSub++
	e.subs[id] = fn
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
	}
}

// Observe runs one detection pass over a snapshot covering one closed bucket.
// Snapshots must come in time order; older or repeated ones are ignored.
func (e *Engine) Observe(snap *graph.Snapshot) {
	if snap == nil || !e.cfg.Enabled {
		return
	}
	began := time.Now()
	e.mu.Lock()
	e.observeLocked(snap)
	e.unlockAndNotify(func() { e.met.observePass(time.Since(began)) })
}

// unlockAndNotify releases e.mu, which the caller holds, then (after
// before, if any) hands the pending changes to the subscribers, outside
// the lock.
func (e *Engine) unlockAndNotify(before func()) {
	changes := e.pending
	e.pending = nil
	subs := make([]func(Change), 0, len(e.subs))
	for i := 0; i < e.nextSub; i++ {
		if fn, ok := e.subs[i]; ok {
			subs = append(subs, fn)
		}
	}
	e.mu.Unlock()
	if before != nil {
		before()
	}
	for _, c := range changes {
		for _, fn := range subs {
			fn(c)
		}
	}
}

func edgeKeyOf(src, dst graph.Node, p graph.Protocol) string {
	return "e|" + src.ID() + ">" + dst.ID() + "|" + p.String()
}

func (e *Engine) subject(key, kind string, src, dst graph.Node, proto graph.Protocol) *subject {
	if s, ok := e.subjects[key]; ok {
		return s
	}
	if len(e.subjects) >= e.cfg.MaxSubjects {
		e.met.dropped.Inc()
		return nil
	}
	s := newSubject(key, kind, e.cfg.BaselineBuckets)
	s.src, s.dst, s.proto = src, dst, proto
	// Thresholds follow the destination of an edge, or the node itself.
	thr, on := e.cfg.thresholdsFor(dst)
	s.thr, s.off = thr, !on
	e.subjects[key] = s
	return s
}

func hasTraffic(st *graph.Stats) bool {
	return st.Requests+st.ConnOpened+st.Latency.Count() > 0
}

func (e *Engine) observeLocked(snap *graph.Snapshot) {
	t, end := snap.Start, snap.End
	if !e.last.IsZero() && !end.After(e.last) {
		return
	}
	if snap.Resolution > 0 {
		e.res = snap.Resolution
	} else if e.res == 0 {
		e.res = end.Sub(t)
	}
	if e.start.IsZero() {
		e.start = t
	}
	// A bucket where (almost) every edge that carried traffic vanished is a
	// telemetry gap, not a mesh-wide outage: skip it rather than alert on everything.
	present := 0
	for i := range snap.Edges {
		if hasTraffic(&snap.Edges[i].Stats) {
			present++
		}
	}
	if e.liveEdges > 0 && t.Sub(e.lastGood) <= maxGap &&
		(present == 0 || (e.liveEdges >= 20 && float64(present) < 0.2*float64(e.liveEdges))) {
		e.gaps++
		e.met.gaps.Inc()
		e.last = end
		return
	}
	e.liveEdges, e.lastGood = present, t
	e.last = end
	e.met.buckets.Inc()

	for i := range snap.Edges {
		es := &snap.Edges[i]
		e.seeEdge(es, t)
		s := e.subject(edgeKeyOf(es.Source, es.Target, es.Protocol), SubjectEdge, es.Source, es.Target, es.Protocol)
		if s == nil {
			continue
		}
		sm := sampleOf(t, &es.Stats, s.thr.LatencyMinCount)
		if es.SourceReported != nil && es.SourceReported.Latency.Count() > 0 {
			// The caller's view includes the network path; keep both as evidence.
			sm.srcP95 = es.SourceReported.Latency.Quantile(0.95)
			sm.dstP95 = es.Stats.Latency.Quantile(0.95)
			if sm.srcP95 > sm.dstP95 && es.SourceReported.Latency.Count() >= s.thr.LatencyMinCount {
				src := sampleOf(t, es.SourceReported, s.thr.LatencyMinCount)
				sm.lat = src.lat
			}
		}
		if sr := es.SourceReported; sr != nil {
			// Connection failures and resets never reach the callee's proxy:
			// only the caller's view counts them.
			sm.n = max(sm.n, sr.Requests)
			for c, cls := range errClassOfCh {
				sm.errs[c] = max(sm.errs[c], sr.Errors[cls])
			}
			if sm.st == nil || len(sm.st.Flags) == 0 {
				sm.st = sr
			}
		}
		e.process(s, &sm)
	}
	for i := range snap.Nodes {
		ns := &snap.Nodes[i]
		e.seeNode(ns.Node, t)
		if hasTraffic(&ns.In) {
			if s := e.subject("i|"+ns.Node.ID(), SubjectNodeIn, graph.Node{}, ns.Node, 0); s != nil {
				sm := sampleOf(t, &ns.In, s.thr.LatencyMinCount)
				e.process(s, &sm)
			}
		}
		if hasTraffic(&ns.Out) {
			if s := e.subject("o|"+ns.Node.ID(), SubjectNodeOut, graph.Node{}, ns.Node, 0); s != nil {
				sm := sampleOf(t, &ns.Out, s.thr.LatencyMinCount)
				e.process(s, &sm)
			}
		}
	}
	// Subjects without traffic this bucket: a zero bucket (traffic drops), or
	// forgotten after IdleForget so memory stays bounded.
	for k, s := range e.subjects {
		if s.newest.Equal(t) {
			continue
		}
		if t.Sub(s.lastActive) > e.cfg.IdleForget && s.filled > 0 {
			for ch := range s.det {
				if a := s.det[ch].firing; a != nil {
					e.resolve(a, end)
				}
			}
			delete(e.subjects, k)
			continue
		}
		sm := sampleOf(t, nil, 1)
		e.process(s, &sm)
	}
	e.checkEdges(t, end)
	e.checkVersions(snap, t, end)
	e.forget(t)
	e.updateIncidents(end)
}

// process runs the detectors of one subject on one bucket.
func (e *Engine) process(s *subject, sm *sample) {
	if s.off {
		s.write(sm, 0)
		return
	}
	cfg := &e.cfg
	var v [numCh]verdict
	ready := s.filled >= cfg.MinHistory
	if ready {
		if s.age >= cfg.RefreshEvery {
			e.buf = s.refresh(e.buf)
		}
		s.evaluate(sm, cfg, &v)
	}
	var excl uint8
	for ch := range v {
		// Hot buckets stay out of the baseline; merely suspicious (warm) ones
		// too while the channel is engaged (firing, or hot within the last M
		// buckets), so a fault that is only sometimes significant does not
		// teach the baseline its level. An isolated warm bucket is ordinary
		// noise: excluding those would cut the upper tail off the window,
		// shrink the MAD and turn noisy subjects into false alarms.
		d := &s.det[ch]
		engaged := d.firing != nil || d.hot&(uint16(1)<<uint(cfg.PersistM)-1) != 0
		if !(v[ch].hot || (v[ch].warm && engaged)) || d.firingFor >= cfg.AdaptAfter {
			continue
		}
		switch ch {
		case chLatency:
			excl |= exLatency
		case chTraffic:
			excl |= exTraffic
		case chMTLS:
			excl |= exMTLS
		default:
			excl |= exErrors
		}
	}
	s.write(sm, excl)
	if !ready {
		return
	}
	end := sm.t.Add(e.res)
	for ch := range v {
		d := &s.det[ch]
		if !v[ch].hot && d.firing == nil && d.hot == 0 {
			continue // the common quiet case: nothing to advance
		}
		e.step(s.key+"|"+chNames[ch], d, &v[ch], sm.t, end, func() *Anomaly { return e.buildSubjectAnomaly(s, ch, &v[ch], sm) },
			func(a *Anomaly) { e.refreshSubjectAnomaly(a, s, ch, &v[ch], sm) })
	}
	if !v[chLatency].hot && s.det[chLatency].firing == nil && s.cusum >= s.thr.CusumH {
		s.cusum = 0
	}
}

// step advances one detector state machine: fire after K of M hot buckets,
// resolve after ResolveAfter cold ones.
func (e *Engine) step(key string, d *detState, v *verdict, t, end time.Time, build func() *Anomaly, update func(*Anomaly)) {
	cfg := &e.cfg
	cnt := d.push(v.hot, cfg.PersistM)
	if d.firing == nil {
		if cnt < cfg.PersistK {
			return
		}
		a := build()
		a.key = key
		a.Since = t.Add(-time.Duration(d.oldestHot(cfg.PersistM)) * e.res)
		a.FiredAt = end
		a.UpdatedAt = end
		a.State = StateFiring
		a.ID = stableID("an", key, a.Since)
		d.firing, d.coldRun, d.firingFor = a, 0, 0
		e.fire(a)
		return
	}
	d.firingFor++
	// Hysteresis: while firing, a still-suspicious bucket is not a cold one.
	if v.hot || v.warm {
		d.coldRun = 0
		update(d.firing)
		d.firing.UpdatedAt = end
		return
	}
	d.coldRun++
	if d.coldRun >= cfg.ResolveAfter {
		e.resolve(d.firing, end)
		d.firing, d.coldRun, d.firingFor = nil, 0, 0
		d.hot = 0
	}
}

func (e *Engine) fire(a *Anomaly) {
	e.active[a.key] = a
	e.byID[a.ID] = a
	e.met.fired.WithLabelValues(a.Type).Inc()
	e.pending = append(e.pending, Change{Action: "fired", Anomaly: a.clone()})
	e.inc.dirty = true
}

func (e *Engine) resolve(a *Anomaly, end time.Time) {
	if a.State == StateResolved {
		return
	}
	t := end
	a.State = StateResolved
	a.ResolvedAt = &t
	a.UpdatedAt = end
	delete(e.active, a.key)
	e.resolved = append(e.resolved, a.ID)
	if over := len(e.resolved) - e.cfg.MaxHistory; over > 0 {
		for _, id := range e.resolved[:over] {
			delete(e.byID, id)
		}
		e.resolved = append(e.resolved[:0], e.resolved[over:]...)
	}
	e.pending = append(e.pending, Change{Action: "resolved", Anomaly: a.clone()})
	e.inc.dirty = true
}

func (s *subject) subjectRef() Subject {
	switch s.kind {
	case SubjectEdge:
		src, dst := RefOf(s.src), RefOf(s.dst)
		return Subject{Kind: SubjectEdge, Source: &src, Target: &dst, Protocol: s.proto.String()}
	default:
		n := RefOf(s.dst)
		return Subject{Kind: s.kind, Node: &n}
	}
}

// series returns the recent buckets of a channel's metric, oldest first.
func (s *subject) series(ch int, metric string, res time.Duration) []Point {
	n := min(s.filled, maxSeries)
	out := make([]Point, 0, n)
	for j := n - 1; j >= 0; j-- {
		i := s.slotBack(j)
		var v float64
		switch ch {
		case chLatency:
			q := slices.Index(quantileNames[:], metric)
			if q < 0 {
				q = 1
			}
			l := float64(s.lat[q][i])
			if !finite(l) {
				continue
			}
			v = math.Exp(l)
		case chTraffic:
			v = float64(s.req[i])
		case chMTLS:
			if s.units[i] == 0 {
				continue
			}
			v = float64(s.plain[i]) / float64(s.units[i])
		default:
			if s.req[i] == 0 {
				continue
			}
			v = float64(s.errs[ch-chErr5xx][i]) / float64(s.req[i])
		}
		out = append(out, Point{T: s.newest.Add(-time.Duration(j) * res), V: v})
	}
	return out
}

var chNames = [numCh]string{"latency", "5xx", "grpc", "noResponse", "connect", "traffic", "mtls"}

var typeOfCh = [numCh]string{TypeLatency, TypeErrors, TypeErrors, TypeErrors, TypeErrors, TypeTraffic, TypeMTLS}

func (e *Engine) buildSubjectAnomaly(s *subject, ch int, v *verdict, sm *sample) *Anomaly {
	a := &Anomaly{Type: typeOfCh[ch], Metric: v.metric, Direction: v.direction, Subject: s.subjectRef(), Unit: v.unit}
	e.refreshSubjectAnomaly(a, s, ch, v, sm)
	return a
}

func (e *Engine) refreshSubjectAnomaly(a *Anomaly, s *subject, ch int, v *verdict, sm *sample) {
	if v.metric != "" {
		a.Metric = v.metric
	}
	if v.direction != "" {
		a.Direction = v.direction
	}
	a.Observed, a.Baseline = v.observed, v.baseline
	a.Score = math.Max(a.Score, v.score)
	ev := Evidence{Series: s.series(ch, a.Metric, e.res), BaselineLow: v.lo, BaselineHigh: v.hi, Requests: sm.n}
	if v.note != "" {
		ev.Notes = append(ev.Notes, v.note)
	}
	if st := sm.st; st != nil {
		ev.Errors = st.ErrorTotal()
		if ch >= chErr5xx && ch <= chErrConnect && len(st.Flags) > 0 {
			ev.Flags = maps2(st.Flags)
			for _, f := range []string{"UO", "UF", "URX", "UT", "NR", "UH"} {
				if st.Flags[f] > 0 {
					ev.Notes = append(ev.Notes, flagMeaning[f])
				}
			}
		}
		if ch >= chErr5xx && ch <= chErrConnect {
			for c, n := range st.Codes {
				if ev.Codes == nil {
					ev.Codes = map[string]uint64{}
				}
				ev.Codes[fmt.Sprintf("http %d", c)] = n
			}
			for c, n := range st.GRPCCodes {
				if ev.Codes == nil {
					ev.Codes = map[string]uint64{}
				}
				ev.Codes[fmt.Sprintf("grpc %d", c)] = n
			}
		}
	}
	if ch == chLatency && sm.srcP95 > 0 {
		ev.SourceLatency, ev.DestLatency = sm.srcP95, sm.dstP95
		if sm.srcP95 >= 2*sm.dstP95 && sm.srcP95-sm.dstP95 >= 5 {
			ev.Notes = append(ev.Notes, fmt.Sprintf("caller-side p95 %s vs callee-side %s: the network path adds the latency, not the callee", fmtValue(sm.srcP95, "ms"), fmtValue(sm.dstP95, "ms")))
		}
	}
	a.Evidence = ev
	a.Severity = severityOf(a)
	a.Summary = fmt.Sprintf("%s: %s %s vs %s baseline", a.Subject.String(), a.Metric, fmtValue(a.Observed, a.Unit), fmtValue(a.Baseline, a.Unit))
	if a.Type == TypeTraffic && a.Observed == 0 {
		a.Summary = fmt.Sprintf("%s: traffic dropped to zero (expected %s)", a.Subject.String(), fmtValue(a.Baseline, a.Unit))
	}
}

var flagMeaning = map[string]string{
	"UO":  "UO: upstream overflow (circuit breaking / connection pool full)",
	"UF":  "UF: upstream connection failure",
	"URX": "URX: upstream retry limit exceeded",
	"UT":  "UT: upstream request timeout",
	"NR":  "NR: no route configured",
	"UH":  "UH: no healthy upstream",
}

func maps2(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func severityOf(a *Anomaly) string {
	switch a.Type {
	case TypeLatency:
		if a.Baseline > 0 && a.Observed/a.Baseline >= 3 {
			return SeverityCritical
		}
	case TypeErrors:
		if a.Observed >= 0.2 {
			return SeverityCritical
		}
	case TypeTraffic:
		if a.Direction == "down" && a.Observed == 0 {
			return SeverityCritical
		}
	case TypeMTLS, TypePolicy:
		return SeverityCritical
	case TypeUnexpected:
		return SeverityWarning
	}
	return SeverityWarning
}

func fmtValue(v float64, unit string) string {
	switch unit {
	case "ms":
		if v >= 1000 {
			return fmt.Sprintf("%.2gs", v/1000)
		}
		return fmt.Sprintf("%.3gms", v)
	case "ratio":
		return fmt.Sprintf("%.2g%%", v*100)
	case "requests/bucket":
		return fmt.Sprintf("%.0f req/bucket", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func (e *Engine) seeNode(n graph.Node, t time.Time) {
	id := n.ID()
	ns := e.nodes[id]
	if ns == nil {
		ns = &nodeSeen{first: t}
		e.nodes[id] = ns
	}
	ns.node, ns.last = n, t
}

// knownNodes is every node the engine has seen lately (idleForget).
func (e *Engine) knownNodes() []graph.Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]graph.Node, 0, len(e.nodes))
	for _, ns := range e.nodes {
		if !ns.node.IsZero() {
			out = append(out, ns.node)
		}
	}
	return out
}

func (e *Engine) forget(t time.Time) {
	for id, ns := range e.nodes {
		if t.Sub(ns.last) > e.cfg.IdleForget {
			delete(e.nodes, id)
			delete(e.versions, id)
		}
	}
	for k, es := range e.known {
		if t.Sub(es.last) > edgeForget {
			delete(e.known, k)
		}
	}
}

// ErrNotFound is returned for unknown anomaly or incident IDs.
var ErrNotFound = errors.New("not found")
