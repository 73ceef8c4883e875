package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// Restored says what Restore brought back.
type Restored struct {
	Buckets  int       // edge buckets ingested into the graph
	UpTo     time.Time // end of the newest restored bucket (zero: none)
	Baseline bool      // detector baselines imported
}

// StateImporter takes detector baselines (detect.Engine).
type StateImporter interface {
	ImportState(detect.State) error
}

// Restore loads the detector's baselines and the live graph's recent window
// from the store, so a restart neither resets learning nor sees every edge
// as new. Call it before the graph's clock starts and before anything else
// ingests; eng may be nil.
func Restore(ctx context.Context, s Store, g *graph.Graph, eng StateImporter, now time.Time) (Restored, error) {
	var out Restored
	if eng != nil {
		data, ok, err := s.Blob(ctx, detectStateKey)
		if err != nil {
			return out, fmt.Errorf("restore detector baselines: %w", err)
		}
		if ok {
			var st detect.State
			if err := json.Unmarshal(data, &st); err != nil {
				return out, fmt.Errorf("restore detector baselines: decode: %w", err)
			}
			if err := eng.ImportState(st); err != nil {
				return out, fmt.Errorf("restore detector baselines: %w", err)
			}
			out.Baseline = true
		}
	}
	res := g.Resolution()
	last, err := s.LastBucket(ctx, res)
	if err != nil {
		return out, fmt.Errorf("restore graph: %w", err)
	}
	if last.IsZero() {
		return out, nil
	}
	end := last.Add(res)
	from := end.Add(-g.Window())
	if lo := now.Add(-g.Window()); from.Before(lo) {
		from = lo
	}
	if !from.Before(end) {
		return out, nil // everything stored is older than the window
	}
	buckets, err := s.ReadBuckets(ctx, res, from, end)
	if err != nil {
		return out, fmt.Errorf("restore graph: %w", err)
	}
	for i := range buckets {
		b := &buckets[i]
		g.IngestStats(b.Start, b.Source, b.Target, b.Protocol, &b.Stats, b.Principals)
	}
	out.Buckets = len(buckets)
	out.UpTo = end
	return out, nil
}
