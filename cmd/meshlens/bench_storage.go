package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
)

func init() {
	register("bench-storage", "measure edge-history writes, bytes per edge per day and replay time (bench-storage load: durability load generator)", benchStorage)
}

func benchStorage(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "load" {
		return storageLoad(ctx, args[1:])
	}
	fs := flag.NewFlagSet("bench-storage", flag.ContinueOnError)
	edges := fs.Int("edges", 10000, "edges written per bucket")
	workloads := fs.Int("workloads", 1000, "workloads the edges connect")
	buckets := fs.Int("buckets", 60, "10 s buckets written (throughput and replay data)")
	dir := fs.String("dir", "", "data directory (default: a temp dir, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d := *dir
	if d == "" {
		tmp, err := os.MkdirTemp("", "meshlens-bench-storage-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		d = tmp
	}
	st, err := storage.OpenSQLite(ctx, d, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	w := graph.NewWorkload(*workloads, *edges, 1)
	gen := newBucketGen(w, 1)
	origin := w.Start

	// 1. Write throughput: the recorder's batches (one bucket of all edges per transaction pass).
	batch := storage.DefaultConfig().BatchSize
	var rows int
	var writeTime time.Duration
	for b := 0; b < *buckets; b++ {
		bk := gen.bucket(origin.Add(time.Duration(b) * storage.Res10s))
		start := time.Now()
		for lo := 0; lo < len(bk); lo += batch {
			if err := st.WriteBuckets(ctx, storage.Res10s, bk[lo:min(lo+batch, len(bk))]); err != nil {
				return err
			}
		}
		writeTime += time.Since(start)
		rows += len(bk)
	}
	rate := float64(rows) / writeTime.Seconds()
	need := float64(*edges) / storage.Res10s.Seconds()
	fmt.Printf("storage write (sqlite, WAL, synchronous=FULL): %d edges x %d buckets = %d rows in %.2fs: %.0f rows/s (%.1fx the %.0f rows/s that %d edges at 10s need)\n",
		*edges, *buckets, rows, writeTime.Seconds(), rate, rate/need, need, *edges)

	end := origin.Add(time.Duration(*buckets) * storage.Res10s)
	rstart := time.Now()
	if _, err := st.Rollup(ctx, storage.Res10s, end, end, storage.DefaultConfig().Retention); err != nil {
		return err
	}
	fmt.Printf("storage rollup: %d raw rows folded into minutes in %.2fs\n", rows, time.Since(rstart).Seconds())

	// 2. Replay of a past 5-minute window over the whole mesh.
	live := graph.New(graph.Config{Resolution: storage.Res10s})
	replay := storage.NewReplay(live, st, storage.DefaultConfig().Retention)
	for _, tc := range []struct {
		name string
		at   time.Time
	}{
		{"minute-aligned (1 min tier)", origin.Add(8 * time.Minute)},
		{"unaligned (minutes + 10 s ragged ends)", origin.Add(8*time.Minute + 35*time.Second)},
	} {
		var best time.Duration
		var nEdges int
		for i := 0; i < 3; i++ {
			start := time.Now()
			snap, err := replay.Snapshot(graph.Query{View: graph.ViewWorkload, Window: 5 * time.Minute, At: tc.at})
			if err != nil {
				return err
			}
			el := time.Since(start)
			if i == 0 || el < best {
				best = el
			}
			nEdges = len(snap.Edges)
		}
		fmt.Printf("storage replay %s: 5m window, %d workloads, %d edges: %.1f ms (goal <= 200 ms: %.2fx of the budget)\n",
			tc.name, *workloads, nEdges, float64(best.Microseconds())/1000, float64(best.Microseconds())/200000)
	}

	// 3. Bytes per edge per day per tier, from a separate database of one
	// hour of 1,000 edges folded into minutes and hours.
	return bytesPerDay(ctx, graph.NewWorkload(200, 1000, 2))
}

// bucketGen makes realistic per-edge buckets: Poisson-like request counts,
// lognormal latencies in a sketch, rare 5xx with codes, mTLS.
type bucketGen struct {
	w   *graph.Workload
	rng *rand.Rand
}

func newBucketGen(w *graph.Workload, seed uint64) *bucketGen {
	return &bucketGen{w: w, rng: rand.New(rand.NewPCG(seed, seed+1))}
}

func (g *bucketGen) bucket(t time.Time) []storage.EdgeBucket {
	out := make([]storage.EdgeBucket, len(g.w.Edges))
	for i, tpl := range g.w.Edges {
		req := uint64(20 + g.rng.IntN(200))
		st := graph.Stats{Requests: req, RequestBytes: req * tpl.RequestBytes, ResponseBytes: req * tpl.ResponseBytes,
			MTLSUnits: req, Reporters: 1 << graph.ReporterDestination, Signals: graph.SignalMetrics}
		// A handful of distinct latencies per bucket, as histogram-derived sketches have.
		for k := 0; k < 12; k++ {
			st.Latency.Add(tpl.LatencyMs*math.Exp(0.5*g.rng.NormFloat64()), req/12+1)
		}
		if g.rng.IntN(20) == 0 {
			st.Errors[graph.Err5xx] = 1 + uint64(g.rng.IntN(3))
			st.Codes = map[uint16]uint64{503: st.Errors[graph.Err5xx]}
			st.Flags = map[string]uint64{"UF": st.Errors[graph.Err5xx]}
		}
		out[i] = storage.EdgeBucket{Start: t, Source: tpl.Src, Target: tpl.Dst, Protocol: tpl.Protocol, Stats: st,
			Principals: []string{"spiffe://cluster.local/ns/" + tpl.Src.Namespace + "/sa/" + tpl.Src.App}}
	}
	return out
}

func bytesPerDay(ctx context.Context, w *graph.Workload) error {
	tmp, err := os.MkdirTemp("", "meshlens-bench-bytes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	st, err := storage.OpenSQLite(ctx, tmp, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	gen := newBucketGen(w, 3)
	const hours = 2
	n := hours * 360
	for b := 0; b < n; b++ {
		if err := st.WriteBuckets(ctx, storage.Res10s, gen.bucket(w.Start.Add(time.Duration(b)*storage.Res10s))); err != nil {
			return err
		}
	}
	end := w.Start.Add(hours * time.Hour)
	// Keep every tier (long retention) to measure each.
	keep := storage.Retention{Raw: 1000 * time.Hour, Minute: 1000 * time.Hour, Hour: 1000 * time.Hour}
	if _, err := st.Rollup(ctx, storage.Res10s, end, end, keep); err != nil {
		return err
	}
	path := filepath.Join(tmp, storage.DBFile)
	size := func() (int64, error) {
		db, err := storage.OpenSQLiteRaw(ctx, path)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		return storage.CompactSize(ctx, db)
	}
	edges := float64(len(w.Edges))
	all, err := size()
	if err != nil {
		return err
	}
	var perTier [3]float64
	tiers := []time.Duration{storage.Res10s, storage.Res1m, storage.Res1h}
	prev := all
	for i, res := range tiers {
		if err := storage.DropTier(ctx, path, res); err != nil {
			return err
		}
		s, err := size()
		if err != nil {
			return err
		}
		perDay := float64(24*time.Hour/res) / float64(hours*time.Hour/res)
		perTier[i] = float64(prev-s) / edges * perDay
		prev = s
	}
	ret := storage.DefaultConfig().Retention
	steady := perTier[0]*ret.Raw.Hours()/24 + perTier[1]*ret.Minute.Hours()/24 + perTier[2]*ret.Hour.Hours()/24
	fmt.Printf("storage bytes per edge per day: 10s tier %.0f B, 1m tier %.0f B, 1h tier %.0f B (after downsampling a day costs %.0f B per edge)\n",
		perTier[0], perTier[1], perTier[2], perTier[2])
	fmt.Printf("storage steady-state footprint per edge with default retention (%s raw, %s minutes, %s hours): %.0f KiB (%.1f MiB for 10,000 edges)\n",
		ret.Raw, ret.Minute, ret.Hour, steady/1024, steady*10000/1024/1024)
	return nil
}

// storageLoad appends audit entries and proposals to the SQLite store in
// dir until killed, printing "ack audit SEQ" / "ack proposal ID" after each
// commit: the durability test kills it with SIGKILL and checks every
// acknowledged write is there after a restart.
func storageLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-storage load", flag.ContinueOnError)
	dir := fs.String("data-dir", "./data", "data directory")
	n := fs.Int("n", 0, "stop after n writes (0: until killed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := storage.OpenSQLite(ctx, *dir, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	pid := os.Getpid()
	for i := 0; *n == 0 || i < *n; i++ {
		if ctx.Err() != nil {
			return nil
		}
		if i%5 == 0 {
			id := fmt.Sprintf("prop-%d-%d", pid, i)
			payload, _ := json.Marshal(map[string]any{"kind": "DestinationRule", "name": "ratings", "n": i})
			if err := st.CreateProposal(ctx, storage.Record{ID: id, Created: time.Now(), State: "pending", Principal: "load", Payload: payload}); err != nil {
				return err
			}
			fmt.Printf("ack proposal %s\n", id)
			continue
		}
		seq, err := st.AppendAudit(ctx, storage.AuditEntry{At: time.Now(), Principal: "load", Action: "chat", Subject: fmt.Sprintf("session-%d", pid),
			Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
		if err != nil {
			return err
		}
		fmt.Printf("ack audit %d\n", seq)
	}
	return nil
}
