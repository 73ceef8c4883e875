package storage_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
)

var (
	benchOnce  sync.Once
	benchStore storage.Store
	benchW     *graph.Workload
)

// benchHistory is 10 minutes of 10,000 edges among 1,000 workloads, rolled up.
func benchHistory(b *testing.B) (storage.Store, *graph.Workload) {
	benchOnce.Do(func() {
		ctx := context.Background()
		s, err := storage.OpenSQLite(ctx, b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		w := graph.NewWorkload(1000, 10000, 1)
		rng := rand.New(rand.NewPCG(1, 2))
		for k := 0; k < 60; k++ {
			t := w.Start.Add(time.Duration(k) * storage.Res10s)
			bk := make([]storage.EdgeBucket, len(w.Edges))
			for i, tpl := range w.Edges {
				st := graph.Stats{Requests: uint64(20 + rng.IntN(200)), MTLSUnits: 1, Reporters: 1 << graph.ReporterDestination, Signals: graph.SignalMetrics}
				for j := 0; j < 12; j++ {
					st.Latency.Add(tpl.LatencyMs*math.Exp(0.5*rng.NormFloat64()), 10)
				}
				bk[i] = storage.EdgeBucket{Start: t, Source: tpl.Src, Target: tpl.Dst, Protocol: tpl.Protocol, Stats: st}
			}
			if err := s.WriteBuckets(ctx, storage.Res10s, bk); err != nil {
				b.Fatal(err)
			}
		}
		end := w.Start.Add(10 * time.Minute)
		if _, err := s.Rollup(ctx, storage.Res10s, end, end, storage.DefaultConfig().Retention); err != nil {
			b.Fatal(err)
		}
		benchStore, benchW = s, w
	})
	return benchStore, benchW
}

func BenchmarkReplay5m(b *testing.B) {
	s, w := benchHistory(b)
	replay := storage.NewReplay(graph.New(graph.Config{Resolution: storage.Res10s}), s, storage.DefaultConfig().Retention)
	for _, tc := range []struct {
		name string
		at   time.Time
	}{{"minuteTier", w.Start.Add(8 * time.Minute)}, {"rawTier", w.Start.Add(8*time.Minute + 35*time.Second)}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := replay.Snapshot(graph.Query{Window: 5 * time.Minute, At: tc.at}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSumBuckets5mMinuteTier(b *testing.B) {
	s, w := benchHistory(b)
	from := w.Start.Add(3 * time.Minute)
	for b.Loop() {
		if _, err := s.SumBuckets(context.Background(), storage.Res1m, from, from.Add(5*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}
