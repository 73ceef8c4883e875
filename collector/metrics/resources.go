package metrics

import (
	"math"
	"strings"
	"time"
)

// PodResource is one reading of a pod's CPU or memory use, built from the
// usual Kubernetes sources: cAdvisor's container_* series with
// kube-state-metrics' limits, or the OpenTelemetry kubeletstats receiver's
// k8s.pod.* metrics (over OTLP or remote-write).
type PodResource struct {
	Namespace, Pod string
	Resource       string // ResourceCPU or ResourceMemory
	Time           time.Time
	// Used is the pod's use (CPU in cores, memory in bytes); NaN when only
	// the share of the limit was reported.
	Used float64
	// LimitPct is the use as a percentage of the pod's limit; NaN when some
	// container has no limit, or none was reported.
	LimitPct float64
}

// Resources a PodResource reading is about.
const (
	ResourceCPU    = "cpu"
	ResourceMemory = "memory"
)

// ResourceSink receives pods' resource readings. The slice is reused once
// ObserveResources returns.
type ResourceSink interface {
	ObserveResources([]PodResource)
}

// Option configures a Collector.
type Option func(*Collector)

// WithResourceSink sends pods' CPU and memory readings to rs; without it
// their series are counted as known and dropped.
func WithResourceSink(rs ResourceSink) Option {
	return func(c *Collector) { c.res = rs }
}

// resKind is what a resource series holds.
type resKind uint8

const (
	resNone     resKind = iota
	resCPUSecs          // cumulative CPU seconds of a container
	resCPUCores         // CPU in use, cores (pod or container gauge)
	resCPULimit         // a container's CPU limit, cores
	resCPUUtil          // the pod's CPU use as a ratio of its limit
	resMemBytes         // working-set memory, bytes (pod or container gauge)
	resMemLimit         // a container's memory limit, bytes
	resMemUtil          // the pod's memory use as a ratio of its limit
)

// mapResource recognises a resource series: its kind, pod and container.
// Known families whose series add nothing (cAdvisor's pod-level and pause
// container cgroups, other resources' limits) have kind resNone and known.
func mapResource(name string, ls []label) (k resKind, known bool) {
	switch name {
	case "container_cpu_usage_seconds_total", "k8s_pod_cpu_time", "k8s_pod_cpu_time_total", "k8s_pod_cpu_time_seconds_total":
		k = resCPUSecs
	case "container_memory_working_set_bytes":
		k = resMemBytes
	case "kube_pod_container_resource_limits":
		switch labelValue(ls, "resource") {
		case "cpu":
			k = resCPULimit
		case "memory":
			k = resMemLimit
		default:
			return resNone, true
		}
	case "k8s_pod_cpu_limit_utilization", "k8s_pod_cpu_limit_utilization_ratio":
		k = resCPUUtil
	case "k8s_pod_memory_limit_utilization", "k8s_pod_memory_limit_utilization_ratio":
		k = resMemUtil
	case "k8s_pod_cpu_usage", "k8s_pod_cpu_utilization", "k8s_pod_cpu_utilization_ratio":
		// kubeletstats' k8s.pod.cpu.utilization was cores in use, despite
		// its name; k8s.pod.cpu.usage replaced it.
		k = resCPUCores
	case "k8s_pod_memory_working_set", "k8s_pod_memory_working_set_bytes":
		k = resMemBytes
	default:
		return resNone, false
	}
	if podLabels(ls).pod == "" {
		return resNone, false
	}
	if c := labelValue(ls, "container"); strings.HasPrefix(name, "container_") && (c == "" || c == "POD") {
		// cAdvisor's pod cgroup (the sum of the containers, counted from
		// them; Prometheus drops its empty container label) and the pause
		// container.
		return resNone, true
	}
	return k, true
}

type podKey struct{ ns, pod string }

// podLabels reads a pod's identity: Prometheus' and kube-state-metrics'
// namespace/pod, or the OpenTelemetry resource attributes.
func podLabels(ls []label) podKey {
	k := podKey{ns: labelValue(ls, "namespace"), pod: labelValue(ls, "pod")}
	if k.ns == "" {
		k.ns = labelValue(ls, "k8s_namespace_name")
	}
	if k.pod == "" {
		k.pod = labelValue(ls, "k8s_pod_name")
	}
	return k
}

// podRes is what the ingester knows of one pod's resources.
type podRes struct {
	key  podKey
	refs int // series pointing here

	batch uint64 // last batch that touched it
	ts    int64  // newest sample of the batch, ms
	r     [2]resState
}

// resState is one resource of a pod: CPU (cores) or memory (bytes).
type resState struct {
	fresh bool               // a use sample arrived in the batch
	use   map[string]float64 // by container ("" for the pod)
	lim   map[string]float64
	util  float64 // ratio of the limit, from the batch; NaN when none
}

// resField says where a kind's value goes: the resource (0 CPU, 1 memory)
// and the field.
var resField = [...]struct {
	r     int
	field uint8 // fieldUse, fieldLim or fieldUtil
}{
	resCPUSecs: {0, fieldUse}, resCPUCores: {0, fieldUse}, resCPULimit: {0, fieldLim}, resCPUUtil: {0, fieldUtil},
	resMemBytes: {1, fieldUse}, resMemLimit: {1, fieldLim}, resMemUtil: {1, fieldUtil},
}

const (
	fieldUse uint8 = iota
	fieldLim
	fieldUtil
)

var resNames = [2]string{ResourceCPU, ResourceMemory}

func (in *ingester) podOf(k podKey) *podRes {
	p := in.pods[k]
	if p == nil {
		p = &podRes{key: k}
		for i := range p.r {
			p.r[i] = resState{use: map[string]float64{}, lim: map[string]float64{}, util: math.NaN()}
		}
		in.pods[k] = p
	}
	p.refs++
	return p
}

// observeResourceLocked applies one sample of a resource series.
func (in *ingester) observeResourceLocked(s *series, v float64, ts int64, isDelta bool) {
	p := s.pod
	if s.res == resCPUSecs {
		// A rate needs two cumulative samples; OTLP delta points carry no
		// interval here, so they are not read.
		if isDelta {
			return
		}
		if !s.primed || ts <= s.lastTs {
			if !s.primed {
				s.primed, s.last, s.lastTs = true, v, ts
			} else {
				in.c.dropped[dropOld]++
			}
			return
		}
		last, dt := s.last, float64(ts-s.lastTs)/1000
		s.last, s.lastTs = v, ts
		if v < last {
			return // a counter reset: no rate this time
		}
		v = (v - last) / dt
	}
	f := resField[s.res]
	r := &p.r[f.r]
	switch f.field {
	case fieldUse:
		r.use[s.container], r.fresh = v, true
	case fieldLim:
		r.lim[s.container] = v
	case fieldUtil:
		r.util = v
	}
	if p.batch != in.batchID {
		p.batch, p.ts = in.batchID, ts
		in.podsTouched = append(in.podsTouched, p)
	}
	p.ts = max(p.ts, ts)
}

// endResourcesLocked turns the batch's pod samples into readings, one per
// pod and resource: a series with several samples in one batch (a sender
// catching up) gives its latest.
func (in *ingester) endResourcesLocked() {
	in.resOut = in.resOut[:0]
	for _, p := range in.podsTouched {
		for i := range p.r {
			if r, ok := p.r[i].reading(); ok {
				r.Namespace, r.Pod, r.Resource, r.Time = p.key.ns, p.key.pod, resNames[i], time.UnixMilli(p.ts)
				in.resOut = append(in.resOut, r)
			}
			p.r[i].fresh, p.r[i].util = false, math.NaN()
		}
	}
	in.podsTouched = in.podsTouched[:0]
	in.c.resources += uint64(len(in.resOut))
}

// reading is the batch's use of the resource, summed over the pod's
// containers, and its share of the limit: reported directly (util), or the
// use over the containers' limits when every container in use has one.
func (rs *resState) reading() (PodResource, bool) {
	r := PodResource{Used: math.NaN(), LimitPct: math.NaN()}
	if !math.IsNaN(rs.util) {
		r.LimitPct = 100 * rs.util
	}
	if !rs.fresh {
		return r, !math.IsNaN(r.LimitPct)
	}
	var sum, lim float64
	limited := true
	for c, u := range rs.use {
		if _, pod := rs.use[""]; pod && c != "" {
			continue // a pod-level reading (kubeletstats) already holds its containers'
		}
		sum += u
		l, ok := rs.lim[c]
		limited = limited && ok && l > 0
		lim += l
	}
	r.Used = sum
	if math.IsNaN(r.LimitPct) && limited && lim > 0 {
		r.LimitPct = 100 * sum / lim
	}
	return r, true
}

// forgetPodLocked drops a series' hold on its pod.
func (in *ingester) forgetPodLocked(s *series) {
	p := s.pod
	f := resField[s.res]
	switch f.field {
	case fieldUse:
		delete(p.r[f.r].use, s.container)
	case fieldLim:
		delete(p.r[f.r].lim, s.container)
	}
	if p.refs--; p.refs == 0 {
		delete(in.pods, p.key)
	}
}
