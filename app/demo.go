package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
)

// demoBackfill is how much simulated history the demo starts with, so the
// dashboard has rates and detectors have baselines at once.
const demoBackfill = 10 * time.Minute

// demo plays a fixtures scenario into the graph in real time.
type demo struct {
	sim    *fixtures.Simulator
	g      *graph.Graph
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newDemo(sc *fixtures.Scenario, seed int64, g *graph.Graph, log *slog.Logger) *demo {
	return &demo{sim: fixtures.NewSimulator(sc, seed), g: g, log: log}
}

// backfill plays the recent past in virtual time. It runs before the graph's
// clock starts, so each bucket keeps its own traffic instead of being folded
// into the oldest open bucket as late data.
func (d *demo) backfill(now time.Time) {
	start := now.Add(-demoBackfill)
	d.sim.SetOrigin(start)
	// Backfill in graph-bucket steps so every bucket gets its own traffic.
	res := d.g.Resolution()
	for t := start; t.Before(now); t = t.Add(res) {
		end := t.Add(res)
		if end.After(now) {
			end = now
		}
		d.g.Ingest(d.sim.Step(t, end))
	}
}

func (d *demo) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = d.sim.Run(ctx, d.g.Ingest)
	}()
	d.log.Info("demo mesh running", "scenario", d.sim.Scenario().Name, "backfill", demoBackfill)
	return nil
}

func (d *demo) Shutdown(ctx context.Context) error {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	return nil
}
