package graph

import (
	"testing"
	"time"
)

func BenchmarkIngestBatch(b *testing.B) {
	w := NewWorkload(1000, 10000, 1)
	g := New(Config{})
	g.Advance(w.Start)
	batch := w.Batch(w.Start, 1000)
	g.Ingest(batch) // buckets exist from here on
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Ingest(batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "obs/s")
}

func BenchmarkSnapshot5m(b *testing.B) {
	w := NewWorkload(1000, 10000, 1)
	g := New(Config{})
	g.Advance(w.Start)
	w.Fill(g, 5*time.Minute, 10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.Snapshot(Query{Window: 5 * time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
}
