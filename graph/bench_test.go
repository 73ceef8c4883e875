package graph

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is user+system CPU time of the process: steadier than wall time
// on a shared machine, and it includes the GC.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkIngestBatch(b *testing.B) {
	w := NewWorkload(1000, 10000, 1)
	g := New(Config{})
	g.Advance(w.Start)
	batch := w.Batch(w.Start, 1000)
	g.Ingest(batch) // buckets exist from here on
	b.ReportAllocs()
	b.ResetTimer()
	c0 := processCPU()
	for i := 0; i < b.N; i++ {
		g.Ingest(batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "obs/s")
	b.ReportMetric(float64(b.N*len(batch))/(processCPU()-c0).Seconds(), "obs/cpu-s")
}

// BenchmarkSnapshot5m takes 5-minute snapshots of a 1,000-workload,
// 10,000-edge graph holding 15 minutes of traffic (10 latency values per edge
// per bucket), so windows cut minute rollups at both ends.
func BenchmarkSnapshot5m(b *testing.B) {
	w := NewWorkload(1000, 10000, 1)
	g := New(Config{})
	g.Advance(w.Start)
	w.Fill(g, 15*time.Minute, 10)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := g.Snapshot(Query{Window: 5 * time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-c0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
