package nezha

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Synthetic faults on real traces. The shared day's code-level faults
// (return, exception) barely move its traces, so they say little about how
// the ranking handles the faults that do: network delay and CPU contention,
// the other fault types of the same study. Synthesize moves every labelled
// fault onto a seeded pod and rewrites the spans of the fault's window the
// way that fault would have timed them, keeping the real topology, request
// mix and noise.

// SyntheticSpec is one synthetic fault kind and its size.
type SyntheticSpec struct {
	Kind   string        // SyntheticDelay or SyntheticCPU
	Delay  time.Duration // network delay added to every packet the pod sends
	Factor float64       // CPU contention: the pod's own work takes this many times longer
	Window time.Duration // how long each fault lasts; default 3m
	Seed   uint64
	// PerFault picks a new pod for every fault. By default a run of
	// faults on one labelled pod stays on one synthetic pod while it is
	// busy, as the dataset injects each pod several times in a row (its
	// baseline then holds the earlier injections).
	PerFault bool
}

// Synthetic fault kinds.
const (
	SyntheticDelay = "network_delay"
	SyntheticCPU   = "cpu_contention"
)

// ParseSynthetic reads "network_delay:200ms" or "cpu_contention:4".
func ParseSynthetic(s string, seed uint64) (SyntheticSpec, error) {
	kind, size, ok := strings.Cut(s, ":")
	sp := SyntheticSpec{Kind: kind, Window: 3 * time.Minute, Seed: seed}
	if !ok {
		return sp, fmt.Errorf("synthetic fault %q: want KIND:SIZE, e.g. network_delay:200ms or cpu_contention:4", s)
	}
	switch kind {
	case SyntheticDelay:
		d, err := time.ParseDuration(size)
		if err != nil || d <= 0 {
			return sp, fmt.Errorf("synthetic fault %q: delay %q: want a positive duration", s, size)
		}
		sp.Delay = d
	case SyntheticCPU:
		f, err := strconv.ParseFloat(size, 64)
		if err != nil || f <= 1 {
			return sp, fmt.Errorf("synthetic fault %q: factor %q: want a number > 1", s, size)
		}
		sp.Factor = f
	default:
		return sp, fmt.Errorf("synthetic fault %q: kind %q: want %s or %s", s, kind, SyntheticDelay, SyntheticCPU)
	}
	return sp, nil
}

// minSyntheticSpans is how many spans a pod needs in a fault's window to be
// picked: a pod the window barely touches cannot show any fault.
const minSyntheticSpans = 20

// Synthesize returns a copy of l whose faults are sp's kind, each on a pod
// picked (seeded) among those busy in the labelled fault's window, with the
// spans of that window rewritten. Traces are timed as if they ran one step
// after another, which is how the dataset's services call each other.
func Synthesize(l *Loaded, sp SyntheticSpec) *Loaded {
	if sp.Window <= 0 {
		sp.Window = 3 * time.Minute
	}
	out := *l
	out.Spans = slices.Clone(l.Spans)
	out.Faults = nil
	rng := rand.New(rand.NewPCG(sp.Seed, 0x6e657a6861))
	byTrace := map[[16]byte][]int{}
	for i := range out.Spans {
		byTrace[out.Spans[i].TraceID] = append(byTrace[out.Spans[i].TraceID], i)
	}
	follow := map[string]string{} // labelled pod -> its synthetic pod
	for _, f := range l.Faults {
		from, to := f.Time.UnixNano(), f.Time.Add(sp.Window).UnixNano()
		// Traces that start in the window, and the pods they touch.
		var ids [][16]byte
		busy := map[string]int{}
		for id, idx := range byTrace {
			first := out.Spans[idx[0]].Start
			for _, i := range idx {
				first = min(first, out.Spans[i].Start)
			}
			if first < from || first >= to {
				continue
			}
			ids = append(ids, id)
			for _, i := range idx {
				busy[out.Spans[i].Pod]++
			}
		}
		var pods []string
		for p, n := range busy {
			if n >= minSyntheticSpans {
				pods = append(pods, p)
			}
		}
		if len(pods) == 0 {
			continue
		}
		slices.Sort(pods)
		pod := pods[rng.IntN(len(pods))]
		if prev, ok := follow[f.Pod]; ok && !sp.PerFault && busy[prev] >= minSyntheticSpans {
			pod = prev
		}
		follow[f.Pod] = pod
		for _, id := range ids {
			rewrite(out.Spans, byTrace[id], pod, sp)
		}
		out.Faults = append(out.Faults, Fault{Time: f.Time, Pod: pod, Service: graph.WorkloadOfPod(pod), Type: "synthetic_" + sp.Kind})
	}
	slices.SortStableFunc(out.Spans, func(a, b Span) int { return cmpInt(a.Start, b.Start) })
	return &out
}

// rewrite times one trace's spans (indexes idx into spans) as if pod had
// the fault. Extra time lengthens the span it happens in and every
// ancestor; a delayed request also moves the callee's whole subtree later.
// Later siblings are not moved: self times, which is what the fault changes,
// come out right without guessing which calls ran in parallel.
func rewrite(spans []Span, idx []int, pod string, sp SyntheticSpec) {
	pos := make(map[[8]byte]int, len(idx))
	for _, i := range idx {
		pos[spans[i].SpanID] = i
	}
	parent := func(i int) int {
		if p, ok := pos[spans[i].ParentID]; ok && p != i {
			return p
		}
		return -1
	}
	children := map[int][]int{}
	child := map[int]int64{} // child time per parent, for self time
	for _, i := range idx {
		if p := parent(i); p >= 0 {
			children[p] = append(children[p], i)
			child[p] += spans[i].End - spans[i].Start
		}
	}
	lengthen := func(i int, d int64) {
		for n := 0; i >= 0 && n < len(idx); n++ { // n bounds a cyclic parent chain
			spans[i].End += d
			i = parent(i)
		}
	}
	var move func(i int, d int64, depth int)
	move = func(i int, d int64, depth int) {
		if depth > len(idx) {
			return
		}
		spans[i].Start += d
		spans[i].End += d
		for _, c := range children[i] {
			move(c, d, depth+1)
		}
	}
	type change struct {
		span  int
		add   int64
		moves bool // the span's subtree moves by add
	}
	var ch []change
	for _, i := range idx {
		s := &spans[i]
		p := parent(i)
		switch sp.Kind {
		case SyntheticDelay:
			if p < 0 || spans[p].Service == s.Service {
				continue
			}
			d := sp.Delay.Nanoseconds()
			if s.Pod == pod {
				ch = append(ch, change{span: p, add: d}) // the response reaches the caller late
			} else if spans[p].Pod == pod {
				ch = append(ch, change{span: i, add: d, moves: true}) // so does the request its callee
			}
		case SyntheticCPU:
			if s.Pod == pod {
				self := max(s.End-s.Start-child[i], 0)
				ch = append(ch, change{span: i, add: int64(float64(self) * (sp.Factor - 1))})
			}
		}
	}
	// Work out every change on the original times before moving any.
	for _, c := range ch {
		if c.moves {
			p := parent(c.span)
			move(c.span, c.add, 0)
			lengthen(p, c.add)
			continue
		}
		lengthen(c.span, c.add)
	}
}
