package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Workload generates a synthetic mesh of the given size for benchmarks: a
// fixed set of edges with lognormal latencies and a few errors.
type Workload struct {
	Start time.Time
	Edges []Observation // one template per edge
	rng   *rand.Rand
}

// NewWorkload builds templates for edges edges among workloads workloads.
func NewWorkload(workloads, edges int, seed uint64) *Workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nodes := make([]Node, workloads)
	for i := range nodes {
		ns := fmt.Sprintf("ns-%d", i%20)
		app := fmt.Sprintf("svc-%d", i)
		nodes[i] = Node{Cluster: "Kubernetes", Namespace: ns, Workload: app + "-v1", App: app, Version: "v1",
			Service: app + "." + ns + ".svc.cluster.local", Kind: KindWorkload}
	}
	w := &Workload{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rng}
	seen := map[[2]int]bool{}
	for len(w.Edges) < edges {
		a, b := rng.IntN(workloads), rng.IntN(workloads)
		if a == b || seen[[2]int{a, b}] {
			continue
		}
		seen[[2]int{a, b}] = true
		w.Edges = append(w.Edges, Observation{Src: nodes[a], Dst: nodes[b], Protocol: Protocol(rng.IntN(2)),
			LatencyMs: 5 + 100*rng.Float64(), Reporter: ReporterDestination, Signal: SignalMetrics, Security: SecurityMTLS,
			RequestBytes: 500, ResponseBytes: 2000})
	}
	return w
}

// Batch returns n observations at t, cycling over the edges.
func (w *Workload) Batch(t time.Time, n int) []Observation {
	out := make([]Observation, n)
	for i := range out {
		o := w.Edges[(i*7919)%len(w.Edges)]
		o.Time = t
		o.Requests = 1 + uint64(w.rng.IntN(5))
		o.LatencyMs *= math.Exp(0.5 * w.rng.NormFloat64())
		if w.rng.IntN(100) == 0 {
			o.Errors[Err5xx] = 1
			o.ResponseCode = 503
		}
		out[i] = o
	}
	return out
}

// Fill feeds d of traffic into g: every bucket, perBucket observations per
// edge (each standing for a few requests at one latency), advancing g's clock.
func (w *Workload) Fill(g *Graph, d time.Duration, perBucket int) {
	res := g.Resolution()
	batch := make([]Observation, 0, len(w.Edges))
	for t := w.Start; t.Before(w.Start.Add(d)); t = t.Add(res) {
		for k := 0; k < perBucket; k++ {
			batch = batch[:0]
			at := t.Add(time.Duration(k) * res / time.Duration(perBucket))
			for _, tpl := range w.Edges {
				o := tpl
				o.Time = at
				o.Requests = 1 + uint64(w.rng.IntN(3))
				o.LatencyMs *= math.Exp(0.4 * w.rng.NormFloat64())
				if w.rng.IntN(200) == 0 {
					o.Errors[Err5xx] = 1
					o.ResponseCode = 503
				}
				batch = append(batch, o)
			}
			g.Ingest(batch)
		}
		g.Advance(t.Add(res))
	}
	g.Advance(w.Start.Add(d + 2*res))
}
