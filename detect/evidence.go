package detect

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Node evidence anomaly types. Latency and success metrics a service
// reports about itself become latency and error anomalies on the node.
const (
	// TypeResource: the service's use of a limited resource (CPU, memory)
	// left its baseline; it weighs more as a cause than latency does.
	TypeResource = "resource"
	// TypeNodeMetric: any other metric of the service's own (throughput,
	// trace structure) left its baseline.
	TypeNodeMetric = "node_metric"
)

// NodeSample is one reading of a service-level metric that comes from
// outside the mesh's edges (pod metrics: CPU, memory, the pod's own latency
// percentiles, success rate, workload).
type NodeSample struct {
	Node graph.Node // identity in the engine's view (workload view)
	// Instance tells apart several series of one node and metric (pods of
	// one service); it is part of the series key only.
	Instance string
	Metric   string // e.g. "cpu", "server_p90", "success_rate"
	Value    float64
	Unit     string // ms, ratio, ...
	// Type of the anomaly it raises: TypeLatency, TypeErrors, TypeResource
	// or TypeNodeMetric.
	Type string
	// Log compares in log space (latencies, rates spanning magnitudes).
	Log bool
	// Direction: +1 only rises count, -1 only drops, 0 both.
	Direction int
	// Floor is the smallest absolute change that can count (in the metric's
	// unit), so a flat series does not alert on noise. Log series use it as
	// the offset of log(v + Floor) and need at least a 1.5x change instead.
	Floor float64
	// Limit, when > 0, is a value that is saturation whatever the
	// baseline (a CPU or memory use rate of the pod's limit, in percent):
	// readings at or above it count as hot before a baseline exists.
	Limit float64
}

// EvidenceConfig tunes the node-metric detector.
type EvidenceConfig struct {
	Window       int     `yaml:"window"`       // readings in the robust baseline; default 60
	MinHistory   int     `yaml:"minHistory"`   // readings before judging; default 15
	Z            float64 `yaml:"z"`            // robust z to call a reading hot; default 6
	PersistK     int     `yaml:"persistK"`     // hot readings of the last PersistM to fire; default 2
	PersistM     int     `yaml:"persistM"`     // default 3
	ResolveAfter int     `yaml:"resolveAfter"` // cold readings in a row to resolve; default 3
}

// DefaultEvidenceConfig is the node-metric detector's default tuning.
func DefaultEvidenceConfig() EvidenceConfig {
	return EvidenceConfig{Window: 60, MinHistory: 15, Z: 6, PersistK: 2, PersistM: 3, ResolveAfter: 3}
}

// Validate lists the problems of c.
func (c EvidenceConfig) Validate() []string {
	var p []string
	if c.Window < 3 {
		p = append(p, "window: must be >= 3")
	}
	if c.MinHistory < 2 || c.MinHistory > c.Window {
		p = append(p, "minHistory: must be in [2, window]")
	}
	if c.Z <= 0 {
		p = append(p, "z: must be > 0")
	}
	if c.PersistM < 1 || c.PersistM > 16 {
		p = append(p, "persistM: must be in [1, 16]")
	}
	if c.PersistK < 1 || c.PersistK > c.PersistM {
		p = append(p, "persistK: must be in [1, persistM]")
	}
	if c.ResolveAfter < 1 {
		p = append(p, "resolveAfter: must be >= 1")
	}
	return p
}

// NodeEvidence feeds service-level metrics to an engine: each (node, metric)
// series has a robust baseline of its recent normal readings; persistent
// departures become anomalies on the node that join the engine's incidents
// and root-cause ranking like any other.
type NodeEvidence struct {
	e       *Engine
	cfg     EvidenceConfig
	series  map[string]*evSeries
	buf     []float64
	dropped uint64 // readings of new series refused at maxEvidenceSeries
}

// maxEvidenceSeries bounds the series held: pod names churn, and pushed
// metrics can carry any.
const maxEvidenceSeries = 100000

type evSeries struct {
	ring   []float64 // normal readings (transformed), oldest overwritten
	pos, n int
	det    detState
	last   time.Time
}

// NewNodeEvidence builds the node-metric detector of e.
func NewNodeEvidence(e *Engine, cfg EvidenceConfig) (*NodeEvidence, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("detect evidence config: %v", p)
	}
	return &NodeEvidence{e: e, cfg: cfg, series: map[string]*evSeries{}}, nil
}

func (s *NodeSample) transform(v float64) float64 {
	if s.Log {
		// The floor as offset keeps readings near zero (a few requests a
		// minute) from looking like huge relative changes.
		return math.Log(math.Max(v, 0) + math.Max(s.Floor, 1e-6))
	}
	return v
}

// Observe judges one reading per sample, taken over [t, t+step), and updates
// the engine's anomalies and incidents. Readings must come in time order per
// series; NaN values are ignored.
func (ne *NodeEvidence) Observe(t time.Time, step time.Duration, samples []NodeSample) {
	e := ne.e
	e.mu.Lock()
	end := t.Add(step)
	for i := range samples {
		ne.observe(&samples[i], t, end)
	}
	e.updateIncidents(end)
	e.unlockAndNotify(nil)
}

func (ne *NodeEvidence) observe(sm *NodeSample, t, end time.Time) {
	if !finite(sm.Value) {
		return
	}
	key := "m|" + sm.Node.ID() + "|" + sm.Instance + "|" + sm.Metric
	s := ne.series[key]
	if s == nil {
		if len(ne.series) >= maxEvidenceSeries {
			ne.dropped++
			return
		}
		s = &evSeries{ring: make([]float64, ne.cfg.Window)}
		ne.series[key] = s
	}
	if !t.After(s.last) && !s.last.IsZero() {
		return
	}
	s.last = t
	x := sm.transform(sm.Value)
	hot, warm, saturated := false, false, false
	var med, spread, z float64
	if s.n >= ne.cfg.MinHistory {
		ne.buf = append(ne.buf[:0], s.ring[:s.n]...)
		slices.Sort(ne.buf)
		med = quantileSorted(ne.buf, 0.5)
		for i := range ne.buf {
			ne.buf[i] = math.Abs(ne.buf[i] - med)
		}
		slices.Sort(ne.buf)
		// The spread: MAD, but no less than what the series' own range says
		// (a series at one value most of the time has MAD 0) and a floor.
		spread = 1.4826 * quantileSorted(ne.buf, 0.5)
		spread = math.Max(spread, 0.25*quantileSorted(ne.buf, 0.9))
		floor := sm.Floor
		if sm.Log {
			floor = math.Log(minLogRatio) // at least a 1.5x change
		}
		spread = math.Max(spread, floor/ne.cfg.Z)
		spread = math.Max(spread, 1e-9)
		z = (x - med) / spread
		if sm.Direction > 0 && z < 0 || sm.Direction < 0 && z > 0 {
			z = 0
		}
		hot = math.Abs(z) >= ne.cfg.Z && math.Abs(x-med) >= floor
		warm = math.Abs(z) >= ne.cfg.Z/2
	} else if sm.Limit > 0 && sm.Value >= sm.Limit {
		// No baseline yet, but a resource at its limit is starved now.
		hot, saturated = true, true
		z = ne.cfg.Z
	}
	if !(hot || warm) || s.det.firingFor >= ne.e.cfg.AdaptAfter {
		s.ring[s.pos] = x
		s.pos = (s.pos + 1) % len(s.ring)
		if s.n < len(s.ring) {
			s.n++
		}
	}
	d := &s.det
	cnt := d.push(hot, ne.cfg.PersistM)
	inv := func(v float64) float64 {
		if sm.Log {
			return math.Max(math.Exp(v)-math.Max(sm.Floor, 1e-6), 0)
		}
		return v
	}
	fill := func(a *Anomaly) {
		a.Observed, a.Baseline = sm.Value, inv(med)
		a.Score = math.Max(a.Score, capScore(math.Abs(z)))
		a.Evidence.BaselineLow, a.Evidence.BaselineHigh = inv(med-3*spread), inv(med+3*spread)
		a.Summary = fmt.Sprintf("%s: %s %s vs %s baseline (service metric)", a.Subject.String(), sm.Metric, fmtValue(a.Observed, sm.Unit), fmtValue(a.Baseline, sm.Unit))
		if saturated {
			a.Baseline = sm.Limit
			a.Evidence.BaselineLow, a.Evidence.BaselineHigh = 0, sm.Limit
			a.Summary = fmt.Sprintf("%s: %s %s, at its limit (%s; no baseline yet) (service metric)", a.Subject.String(), sm.Metric, fmtValue(a.Observed, sm.Unit), fmtValue(sm.Limit, sm.Unit))
		}
		a.Severity = SeverityWarning
		if math.Abs(z) >= 3*ne.cfg.Z {
			a.Severity = SeverityCritical
		}
	}
	e := ne.e
	if d.firing == nil {
		if cnt < ne.cfg.PersistK {
			return
		}
		ref := RefOf(sm.Node)
		dir := "up"
		if z < 0 {
			dir = "down"
		}
		a := &Anomaly{Type: sm.Type, Metric: sm.Metric, Direction: dir, Subject: Subject{Kind: SubjectNode, Node: &ref}, Unit: sm.Unit,
			Evidence: Evidence{Notes: []string{"reported by the service itself, not by the mesh"}}}
		fill(a)
		a.key = key
		step := end.Sub(t)
		a.Since = t.Add(-time.Duration(d.oldestHot(ne.cfg.PersistM)) * step)
		a.FiredAt, a.UpdatedAt, a.State = end, end, StateFiring
		a.ID = stableID("an", key, a.Since)
		d.firing, d.coldRun, d.firingFor = a, 0, 0
		e.fire(a)
		return
	}
	d.firingFor++
	if hot || warm {
		d.coldRun = 0
		fill(d.firing)
		d.firing.UpdatedAt = end
		return
	}
	d.coldRun++
	if d.coldRun >= ne.cfg.ResolveAfter {
		e.resolve(d.firing, end)
		d.firing, d.coldRun, d.firingFor, d.hot = nil, 0, 0, 0
	}
}

// Forget ends series whose last reading is older than before: a firing
// anomaly resolves at end (its pod is gone, or stopped reporting), and the
// series' state is dropped once its last reading is older than drop too.
func (ne *NodeEvidence) Forget(before, drop, end time.Time) {
	e := ne.e
	e.mu.Lock()
	resolved := false
	for k, s := range ne.series {
		if !s.last.Before(before) {
			continue
		}
		if d := &s.det; d.firing != nil {
			e.resolve(d.firing, end)
			d.firing, d.coldRun, d.firingFor, d.hot = nil, 0, 0, 0
			resolved = true
		}
		if s.last.Before(drop) {
			delete(ne.series, k)
		}
	}
	if resolved {
		e.updateIncidents(end)
	}
	e.unlockAndNotify(nil)
}

// Dropped is how many readings of new series were refused at the bound.
func (ne *NodeEvidence) Dropped() uint64 {
	ne.e.mu.Lock()
	defer ne.e.mu.Unlock()
	return ne.dropped
}

// minLogRatio is the smallest relative change a log-scale series can alert on.
const minLogRatio = 1.5

func quantileSorted(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	i := int(math.Round(q * float64(len(s)-1)))
	return s[i]
}
