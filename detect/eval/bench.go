package eval

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// BenchGoal is the floor for one detection pass over 10,000 edges.
const BenchGoal = 50 * time.Millisecond

// SyntheticSnapshots builds n buckets of a mesh with the given edge count
// (callers fan out to 5 callees each), with Poisson-ish noise.
func SyntheticSnapshots(edges, n int, seed uint64) []*graph.Snapshot {
	r := rand.New(rand.NewPCG(seed, 1))
	nodes := edges/5 + 1
	node := func(i int) graph.Node {
		return graph.Node{Namespace: fmt.Sprintf("ns%d", i%20), Workload: fmt.Sprintf("svc%d-v1", i), App: fmt.Sprintf("svc%d", i), Version: "v1"}
	}
	out := make([]*graph.Snapshot, n)
	for b := range out {
		t := time.Unix(1_700_000_000, 0).Add(time.Duration(b) * Resolution)
		s := &graph.Snapshot{Start: t, End: t.Add(Resolution), Resolution: Resolution}
		for e := 0; e < edges; e++ {
			src, dst := e/5, (e/5+1+e%5)%nodes
			req := uint64(50 + r.IntN(20))
			st := graph.Stats{Requests: req, MTLSUnits: req}
			st.Errors[graph.Err5xx] = uint64(r.IntN(2))
			for k := 0; k < 8; k++ {
				st.Latency.Add(20*(1+r.Float64()), req/8)
			}
			s.Edges = append(s.Edges, graph.EdgeSnapshot{Source: node(src), Target: node(dst), Stats: st})
		}
		idx := map[graph.Node]int{}
		for i := range s.Edges {
			e := &s.Edges[i]
			for _, side := range []struct {
				n  graph.Node
				in bool
			}{{e.Source, false}, {e.Target, true}} {
				j, ok := idx[side.n]
				if !ok {
					j = len(s.Nodes)
					idx[side.n] = j
					s.Nodes = append(s.Nodes, graph.NodeSnapshot{Node: side.n})
				}
				if side.in {
					s.Nodes[j].In.Add(&e.Stats)
				} else {
					s.Nodes[j].Out.Add(&e.Stats)
				}
			}
		}
		out[b] = s
	}
	return out
}

// Bench measures one detection pass over `edges` edges after the baselines
// are warm, and the memory the engine holds per edge.
func Bench(w io.Writer, edges int) error {
	const warm, measured, distinct = 60, 20, 8
	snaps := SyntheticSnapshots(edges, distinct, 1)
	cfg := detect.DefaultConfig()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	eng, err := detect.New(cfg, nil, nil)
	if err != nil {
		return err
	}
	at := func(i int) *graph.Snapshot {
		s := *snaps[i%distinct]
		s.Start = snaps[0].Start.Add(time.Duration(i) * Resolution)
		s.End = s.Start.Add(Resolution)
		return &s
	}
	for i := 0; i < warm; i++ {
		eng.Observe(at(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	var d []time.Duration
	for i := warm; i < warm+measured; i++ {
		s := at(i)
		t0 := time.Now()
		eng.Observe(s)
		d = append(d, time.Since(t0))
	}
	slices.Sort(d)
	med := d[len(d)/2]
	perEdge := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(edges)
	fmt.Fprintf(w, "detect pass over %d edges (+%d node directions): median %s, max %s over %d passes (GOMAXPROCS=%d)\n",
		edges, 2*len(snaps[0].Nodes), med.Round(time.Microsecond), d[len(d)-1].Round(time.Microsecond), measured, runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "goal <= %s: ratio %.2f of the floor (< 1 is within)\n", BenchGoal, float64(med)/float64(BenchGoal))
	fmt.Fprintf(w, "baseline memory: %.0f bytes per edge (edge + node baselines, learned edges; retained heap / edges)\n", perEdge)
	return nil
}
