// Package storetest is the contract test suite every storage.Store
// implementation passes, and the realistic inputs it uses.
package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
)

// Data is a recorded run of a fixtures scenario: every closed bucket of the
// graph (workload view) and every detector change, in order.
type Data struct {
	Origin  time.Time
	Res     time.Duration
	Buckets [][]storage.EdgeBucket // one slice per closed bucket
	Changes []detect.Change
	Graph   *graph.Graph
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*Data{}
)

// Origin is when recorded scenarios start.
var Origin = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Record plays scenario for d of virtual time through a graph and a detect
// engine and returns what storage would be given. Results are cached per
// scenario and duration; callers must not modify them.
func Record(tb testing.TB, scenario string, d time.Duration) *Data {
	tb.Helper()
	key := scenario + "/" + d.String()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c := cache[key]; c != nil {
		return c
	}
	sc, err := fixtures.Load(scenario)
	if err != nil {
		tb.Fatalf("load scenario %s: %v", scenario, err)
	}
	sim := fixtures.NewSimulator(sc, 7)
	sim.SetOrigin(Origin)
	g := graph.New(graph.Config{Resolution: storage.Res10s, Window: 2 * time.Hour, RawLatency: 2 * time.Hour})
	eng, err := detect.New(detect.DefaultConfig(), nil, nil)
	if err != nil {
		tb.Fatalf("detect engine: %v", err)
	}
	data := &Data{Origin: Origin, Res: storage.Res10s, Graph: g}
	g.OnBucketClose(func(ev graph.BucketClosed) {
		edges, err := g.RawEdges(ev.End, storage.Res10s)
		if err != nil {
			tb.Errorf("raw edges of %s: %v", ev.Start, err)
			return
		}
		if b := storage.BucketsOf(ev.Start, edges); len(b) > 0 {
			data.Buckets = append(data.Buckets, b)
		}
	})
	eng.Attach(g)
	eng.Subscribe(func(c detect.Change) { data.Changes = append(data.Changes, c) })
	for t := Origin; t.Before(Origin.Add(d)); t = t.Add(storage.Res10s) {
		g.Ingest(sim.Step(t, t.Add(storage.Res10s)))
		g.Advance(t.Add(storage.Res10s))
	}
	g.Advance(Origin.Add(d + 2*storage.Res10s))
	cache[key] = data
	return data
}
