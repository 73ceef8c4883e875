package detect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// ResourcesConfig tunes the pods' CPU and memory evidence of live serve.
type ResourcesConfig struct {
	Enabled bool `yaml:"enabled"`
	// Every: each pod's readings are averaged into one per period.
	Every time.Duration `yaml:"every"` // default 1m
	// Saturation is the share of a limit (percent) that counts as starved
	// whatever the pod's baseline; 0 turns the rule off.
	Saturation float64        `yaml:"saturation"` // default 90
	Evidence   EvidenceConfig `yaml:"evidence"`
}

// DefaultResourcesConfig is the default tuning of pods' resource evidence.
func DefaultResourcesConfig() ResourcesConfig {
	return ResourcesConfig{Enabled: true, Every: time.Minute, Saturation: 90, Evidence: DefaultEvidenceConfig()}
}

// Validate lists the problems of c.
func (c ResourcesConfig) Validate() []string {
	var p []string
	if c.Every < time.Second {
		p = append(p, "every: must be >= 1s")
	}
	if c.Saturation < 0 || c.Saturation > 100 {
		p = append(p, "saturation: must be in [0, 100]")
	}
	for _, s := range c.Evidence.Validate() {
		p = append(p, "evidence."+s)
	}
	return p
}

// PodResources turns pods' CPU and memory readings into node evidence: one
// reading per pod, resource and period, on the service the pod runs,
// judged by NodeEvidence. A CPU-starved pod then ranks as a cause in the
// incidents its slow calls open, as pod metrics do in the Nezha evaluation.
type PodResources struct {
	cfg ResourcesConfig
	ev  *NodeEvidence

	mu      sync.Mutex
	pending map[podResKey]*podResAcc
	dropped uint64    // readings of pods refused at maxPendingPods
	next    time.Time // end of the current period; zero before the first
}

type podResKey struct{ ns, pod, resource string }

type podResAcc struct {
	used, pct   float64
	nUsed, nPct int
}

// NewPodResources builds the resource evidence of e; it starts nothing.
func NewPodResources(e *Engine, cfg ResourcesConfig) (*PodResources, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("detect resources config: %s", strings.Join(p, "; "))
	}
	ev, err := NewNodeEvidence(e, cfg.Evidence)
	if err != nil {
		return nil, err
	}
	return &PodResources{cfg: cfg, ev: ev, pending: map[podResKey]*podResAcc{}}, nil
}

// Add records one reading of a pod's resource ("cpu" or "memory"): its use
// (cores, bytes) and share of its limit in percent, either NaN when unknown.
func (p *PodResources) Add(namespace, pod, resource string, used, limitPct float64) {
	if pod == "" || resource != "cpu" && resource != "memory" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := podResKey{namespace, pod, resource}
	a := p.pending[k]
	if a == nil {
		if len(p.pending) >= maxPendingPods {
			p.dropped++
			return
		}
		a = &podResAcc{}
		p.pending[k] = a
	}
	if finite(used) && used >= 0 {
		a.used += used
		a.nUsed++
	}
	if finite(limitPct) && limitPct >= 0 {
		a.pct += limitPct
		a.nPct++
	}
}

// maxPendingPods bounds the pods × resources held between periods.
const maxPendingPods = 100000

// Dropped is how many readings were refused at the bounds (pods held
// between periods, series judged).
func (p *PodResources) Dropped() uint64 {
	p.mu.Lock()
	d := p.dropped
	p.mu.Unlock()
	return d + p.ev.Dropped()
}

// Attach judges the readings on g's bucket clock: at the end of each period
// the pods' averages go to the detector, on the nodes the engine has seen.
func (p *PodResources) Attach(g SnapshotSource) {
	g.OnBucketClose(func(ev graph.BucketClosed) {
		if p.next.IsZero() {
			p.next = ev.End.Truncate(p.cfg.Every).Add(p.cfg.Every)
		}
		if ev.End.Before(p.next) {
			return
		}
		start := p.next.Add(-p.cfg.Every)
		p.next = ev.End.Truncate(p.cfg.Every).Add(p.cfg.Every)
		p.Flush(start, p.ev.e.knownNodes())
	})
}

// Flush judges the readings gathered since the last flush as one period
// starting at t, each pod on the node of nodes it belongs to.
func (p *PodResources) Flush(t time.Time, nodes []graph.Node) {
	p.mu.Lock()
	pending := p.pending
	p.pending = make(map[podResKey]*podResAcc, len(pending))
	p.mu.Unlock()
	// Pods that stopped reporting (deleted, evicted, scaled down): their
	// anomalies resolve after resolveAfter silent periods, their state
	// goes after a baseline window of them.
	ec := p.cfg.Evidence
	defer p.ev.Forget(t.Add(-time.Duration(ec.ResolveAfter-1)*p.cfg.Every), t.Add(-time.Duration(ec.Window-1)*p.cfg.Every), t.Add(p.cfg.Every))
	if len(pending) == 0 {
		return
	}
	find := nodeFinder(nodes)
	samples := make([]NodeSample, 0, len(pending))
	for k, a := range pending {
		n := find(k.ns, graph.WorkloadOfPod(k.pod))
		s := NodeSample{Node: n, Instance: k.ns + "/" + k.pod, Type: TypeResource, Direction: 1}
		switch {
		case a.nPct > 0:
			s = LimitShareSample(n, s.Instance, k.resource, a.pct/float64(a.nPct), p.cfg.Saturation)
		case a.nUsed > 0 && k.resource == "cpu":
			s.Metric, s.Unit, s.Value, s.Floor, s.Log = "cpu_cores", "cores", a.used/float64(a.nUsed), 0.05, true
		case a.nUsed > 0:
			s.Metric, s.Unit, s.Value, s.Floor, s.Log = "memory_mib", "MiB", a.used/float64(a.nUsed)/(1<<20), 64, true
		default:
			continue
		}
		samples = append(samples, s)
	}
	// In a stable order, so what fires first does not depend on map order.
	slices.SortFunc(samples, func(a, b NodeSample) int {
		return cmp.Or(strings.Compare(a.Instance, b.Instance), strings.Compare(a.Metric, b.Metric))
	})
	p.ev.Observe(t, p.cfg.Every, samples)
}

// LimitShareSample is a pod's use of resource ("cpu" or "memory") as a
// percentage of its limit: comparable across pods and sizes, and at
// saturation (percent, 0 for none) starved whatever its baseline. CPU is
// compared in log space (it spans magnitudes), memory as is.
func LimitShareSample(node graph.Node, instance, resource string, pct, saturation float64) NodeSample {
	return NodeSample{Node: node, Instance: instance, Metric: resource, Value: pct, Unit: "%", Type: TypeResource,
		Log: resource == "cpu", Direction: 1, Floor: 5, Limit: saturation}
}

// nodeFinder finds a pod's node among the graph's: the node of its
// namespace named for the pod's workload (or canonical service), else the
// only such node without a namespace (services known from traces that
// carry none), else a workload node of its own.
func nodeFinder(nodes []graph.Node) func(ns, workload string) graph.Node {
	byName := map[string][]graph.Node{}
	for _, n := range nodes {
		byName[n.Workload] = append(byName[n.Workload], n)
		if n.App != "" && n.App != n.Workload {
			byName[n.App] = append(byName[n.App], n)
		}
	}
	return func(ns, workload string) graph.Node {
		cands := byName[workload]
		for _, n := range cands {
			if n.Namespace == ns {
				return n
			}
		}
		if len(cands) == 1 && cands[0].Namespace == "" {
			return cands[0]
		}
		return graph.Node{Namespace: ns, Workload: workload, Kind: graph.KindWorkload}
	}
}
