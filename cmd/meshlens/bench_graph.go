package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

func init() {
	register("bench", "print performance figures against their goals: bench graph", benchCmd)
}

// benchCmd dispatches on the bench kind, the first argument.
func benchCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("bench: want a kind (graph)")
	}
	switch args[0] {
	case "graph":
		return benchGraph(ctx, args[1:])
	}
	return fmt.Errorf("bench: unknown kind %q (want graph)", args[0])
}

// cpuTime is the process' user+system CPU time: on a shared machine it is
// a steadier measure than wall time, and it includes the GC's work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func benchGraph(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench graph", flag.ContinueOnError)
	workloads := fs.Int("workloads", 1000, "workloads of the synthetic mesh")
	edges := fs.Int("edges", 10000, "edges of the synthetic mesh")
	snaps := fs.Int("snapshots", 20, "snapshots measured")
	memEdges := fs.Int("mem-edges", 10000, "edges of the memory fills (over -workloads workloads)")
	perBucket := fs.String("per-bucket", "1,3,5,10", "distinct latency values per edge per 10 s bucket in the memory fills")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the snapshots to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prev := runtime.GOMAXPROCS(1) // every goal is per core
	defer runtime.GOMAXPROCS(prev)
	fmt.Printf("graph bench: GOMAXPROCS=1, %d workloads, %d edges, load average %s\n", *workloads, *edges, loadAvg())

	// Ingest: batches of 1000 observations over existing buckets, timed in
	// CPU time so other processes on the machine do not count.
	w := graph.NewWorkload(*workloads, *edges, 1)
	{
		g := graph.New(graph.Config{})
		g.Advance(w.Start)
		batch := w.Batch(w.Start, 1000)
		g.Ingest(batch) // buckets exist from here on
		allocs := testing.AllocsPerRun(100, func() { g.Ingest(batch) })
		var n int
		c0, w0 := cpuTime(), time.Now()
		for cpuTime()-c0 < time.Second && time.Since(w0) < 5*time.Second {
			for i := 0; i < 100; i++ {
				g.Ingest(batch)
			}
			n += 100 * len(batch)
		}
		rate := float64(n) / (cpuTime() - c0).Seconds()
		fmt.Printf("ingest (batched, 1000 obs/batch):      %10.0f obs/CPU-s  %5.2fx the goal >= 2e6/s  %.0f allocs/batch  %s\n",
			rate, rate/2e6, allocs, verdict(rate >= 2e6 && allocs == 0))
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Snapshot of a 5-minute window over 15 minutes of traffic, 10 values per
	// edge per bucket: the window's ragged ends fall inside minute rollups.
	g := graph.New(graph.Config{})
	g.Advance(w.Start)
	w.Fill(g, 15*time.Minute, 10)
	q := graph.Query{Window: 5 * time.Minute}
	s, err := g.Snapshot(q)
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	runtime.GC()
	var cpus, walls []time.Duration
	for i := 0; i < *snaps && ctx.Err() == nil; i++ {
		c0, w0 := cpuTime(), time.Now()
		if _, err := g.Snapshot(q); err != nil {
			return err
		}
		cpus = append(cpus, cpuTime()-c0)
		walls = append(walls, time.Since(w0))
	}
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if len(cpus) == 0 {
		return ctx.Err()
	}
	var total time.Duration
	for _, c := range cpus {
		total += c
	}
	mean := total / time.Duration(len(cpus))
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	fmt.Printf("snapshot 5m, %d nodes/%d edges:      %10.1f ms CPU each (incl. GC, mean of %d)  wall median %.1f ms  %.2fx the goal <= 20 ms  %s\n",
		len(s.Nodes), len(s.Edges), ms(mean), len(cpus), ms(walls[len(walls)/2]), ms(mean)/20, verdict(mean <= 20*time.Millisecond))
	g = nil
	s = nil

	// Memory: one hour of 10 s buckets, heap after GC, per edge.
	for _, f := range strings.Split(*perBucket, ",") {
		var pb int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &pb); err != nil || pb < 1 {
			return fmt.Errorf("bench graph: -per-bucket %q: want positive integers", f)
		}
		bytes, closed, err := heapPerEdgeHour(*workloads, *memEdges, pb)
		if err != nil {
			return err
		}
		fmt.Printf("memory, 1 h of 10 s buckets, %2d values/bucket: %6.0f B/edge/hour  (%5.0f B/edge encoded)  %.2fx the goal <= 4096  %s\n",
			pb, bytes, closed, bytes/4096, verdict(bytes <= 4096))
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// heapPerEdgeHour fills a fresh graph with one hour of traffic and returns
// the heap it holds per edge (after GC, minus the heap before), and the
// encoded bytes of its closed buckets per edge.
func heapPerEdgeHour(workloads, edges, perBucket int) (float64, float64, error) {
	w := graph.NewWorkload(workloads, edges, 2)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := graph.New(graph.Config{})
	g.Advance(w.Start)
	w.Fill(g, time.Hour, perBucket)
	runtime.GC()
	runtime.ReadMemStats(&after)
	c := g.Counters()
	runtime.KeepAlive(g)
	if c.Edges == 0 {
		return 0, 0, fmt.Errorf("bench graph: memory fill left no edges")
	}
	held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	return held / float64(c.Edges), float64(c.Bytes) / float64(c.Edges), nil
}
