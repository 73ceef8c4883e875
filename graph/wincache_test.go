package graph

import (
	"fmt"
	"maps"
	"math"
	"sync"
	"testing"
	"time"
)

// Repeated windows with the same whole minutes and different ragged ends
// reuse a series' cached minutes; each must still match the reference.
func TestWindowCacheReusedAcrossRaggedEnds(t *testing.T) {
	f := newRollupFixture(t, 25, Config{Resolution: 10 * time.Second, Window: time.Hour})
	w := f.g.watermark
	for _, to := range []int64{w, w - 2, w - 7} {
		for from := to - 40; from <= to-24; from++ {
			for rep := 0; rep < 2; rep++ {
				f.check(t, "recent", from, to)
			}
		}
	}
	// Over folded minutes too.
	for from := f.first + 1; from <= f.first+14; from++ {
		f.check(t, "folded", from, f.first+63)
	}
}

// A graph snapshotted after every step (its cache built early and reused as
// minutes close) and one snapshotted only at the end must agree exactly.
func TestWindowCacheFollowsClosingMinutes(t *testing.T) {
	w := NewWorkload(40, 200, 3)
	a, b := New(Config{}), New(Config{})
	a.Advance(w.Start)
	b.Advance(w.Start)
	res := a.Resolution()
	for i := 0; i < 100; i++ {
		at := w.Start.Add(time.Duration(i) * res)
		batch := w.Batch(at, 150)
		if i%7 == 3 { // late data for the previous bucket
			for j := range batch[:20] {
				batch[j].Time = at.Add(-res)
			}
		}
		a.Ingest(batch)
		b.Ingest(batch)
		a.Advance(at.Add(res))
		b.Advance(at.Add(res))
		for _, win := range []time.Duration{5 * time.Minute, 2 * time.Minute} {
			if _, err := a.Snapshot(Query{Window: win}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, win := range []time.Duration{5 * time.Minute, 2 * time.Minute, 90 * time.Second} {
		sa, err := a.Snapshot(Query{Window: win})
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.Snapshot(Query{Window: win})
		if err != nil {
			t.Fatal(err)
		}
		if len(sa.Edges) != len(sb.Edges) || len(sa.Edges) == 0 {
			t.Fatalf("%s: %d edges vs %d", win, len(sa.Edges), len(sb.Edges))
		}
		for i := range sa.Edges {
			ea, eb := &sa.Edges[i].Stats, &sb.Edges[i].Stats
			if ea.Requests != eb.Requests || ea.Errors != eb.Errors || ea.RequestBytes != eb.RequestBytes ||
				ea.MTLSUnits != eb.MTLSUnits || !maps.Equal(ea.Codes, eb.Codes) {
				t.Fatalf("%s: edge %d counters differ: %+v vs %+v", win, i, ea, eb)
			}
			ba, za, ca := binsOf(&ea.Latency)
			bb, zb, cb := binsOf(&eb.Latency)
			if ca != cb || za != zb || !maps.Equal(ba, bb) {
				t.Fatalf("%s: edge %d latency %d values, want %d", win, i, ca, cb)
			}
			if d := math.Abs(ea.Latency.Sum() - eb.Latency.Sum()); d > 1e-5*eb.Latency.Sum() {
				t.Fatalf("%s: edge %d latency sum %v, want %v", win, i, ea.Latency.Sum(), eb.Latency.Sum())
			}
		}
	}
}

// Bins past 16 bits keep the cached minutes as a compact sketch; small ones
// are added densely. Both must give the exact counts.
func TestWindowCacheLargeBins(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    uint64 // requests per bucket, all at 12 ms
	}{
		{"dense 16-bit bins", 1000},
		{"bins past 16 bits", 40_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGraph(t)
			res := g.Resolution()
			for i := 0; i < 60; i++ {
				at := t0.Add(time.Duration(i) * res)
				g.Ingest([]Observation{obs(at, productpage, reviewsV1, tc.n, 1, 12)})
				g.Advance(at.Add(res))
			}
			g.Advance(t0.Add(61 * res))
			for rep := 0; rep < 2; rep++ { // build, then hit
				s, err := g.Snapshot(Query{Window: 5 * time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				e := edgeBetween(t, s, productpage.Label(ViewWorkload), reviewsV1.Label(ViewWorkload))
				// The window [31, 61) holds buckets 31..59.
				want := 29 * tc.n
				if e.Stats.Requests != want || e.Stats.Latency.Count() != want || e.Stats.Errors[Err5xx] != 29 || e.Stats.Codes[503] != 29 {
					t.Fatalf("requests %d latency count %d errors %d 503s %d, want %d/%d/29/29",
						e.Stats.Requests, e.Stats.Latency.Count(), e.Stats.Errors[Err5xx], e.Stats.Codes[503], want, want)
				}
				bins, zero, count := binsOf(&e.Stats.Latency)
				var inBins uint64
				for _, c := range bins {
					inBins += c
				}
				if inBins+zero != count {
					t.Fatalf("bins hold %d values and zero %d, count %d", inBins, zero, count)
				}
				if got := e.Stats.Latency.Quantile(0.5); math.Abs(got-12) > 12*RelativeAccuracy {
					t.Fatalf("median %v, want 12 within %v", got, RelativeAccuracy)
				}
				if d := math.Abs(e.Stats.Latency.Sum() - 12*float64(want)); d > 1e-5*12*float64(want) {
					t.Fatalf("latency sum %v, want %v", e.Stats.Latency.Sum(), 12*float64(want))
				}
			}
		})
	}
}

// Snapshots run concurrently under the read lock and race to replace the
// series' cached minutes (two windows alternate); every result must match
// the one taken alone. Run with -race.
func TestWindowCacheConcurrentReaders(t *testing.T) {
	g := newTestGraph(t)
	res := g.Resolution()
	for i := 0; i < 60; i++ {
		at := t0.Add(time.Duration(i) * res)
		g.Ingest([]Observation{obs(at, productpage, reviewsV1, 5+uint64(i%4), uint64(i%3), 10+float64(i%9))})
		g.Advance(at.Add(res))
	}
	wins := []time.Duration{5 * time.Minute, 3 * time.Minute}
	want := map[time.Duration]Stats{}
	for _, win := range wins {
		s, err := g.Snapshot(Query{Window: win})
		if err != nil {
			t.Fatal(err)
		}
		want[win] = edgeBetween(t, s, productpage.Label(ViewWorkload), reviewsV1.Label(ViewWorkload)).Stats
	}
	now := g.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	wg.Add(1)
	go func() { // a writer on another edge, into the open bucket
		defer wg.Done()
		for i := 0; i < 500; i++ {
			g.Ingest([]Observation{obs(now, reviewsV1, ratings, 1, 0, 2)})
		}
	}()
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				win := wins[(i+r)%2]
				s, err := g.Snapshot(Query{Window: win})
				if err != nil {
					errs <- err.Error()
					return
				}
				var got *Stats
				for j := range s.Edges {
					if s.Edges[j].Target.Workload == reviewsV1.Workload {
						got = &s.Edges[j].Stats
					}
				}
				w := want[win]
				if got == nil || got.Requests != w.Requests || got.Errors != w.Errors || got.Latency.Count() != w.Latency.Count() ||
					got.Latency.Quantile(0.9) != w.Latency.Quantile(0.9) {
					errs <- fmt.Sprintf("%s: got %+v, want %+v", win, got, w)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// A series whose first buckets are still open when a window is read must not
// cache its whole minutes as empty: they fill as those buckets close.
func TestWindowCacheWaitsForOpenBuckets(t *testing.T) {
	g := newTestGraph(t)
	res := g.Resolution()
	// productpage->reviews for 60 buckets; reviews->ratings only in bucket 59,
	// the last of its minute, still open (grace) at the first snapshot.
	for i := 0; i < 60; i++ {
		at := t0.Add(time.Duration(i) * res)
		batch := []Observation{obs(at, productpage, reviewsV1, 3, 0, 10)}
		if i == 59 {
			batch = append(batch, obs(at, reviewsV1, ratings, 7, 0, 4))
		}
		g.Ingest(batch)
		g.Advance(at.Add(res))
	}
	at := t0.Add(60 * res)
	q := Query{Window: 5 * time.Minute, At: at}
	for step := 0; step < 2; step++ {
		s, err := g.Snapshot(q)
		if err != nil {
			t.Fatal(err)
		}
		if e := edgeBetween(t, s, reviewsV1.Label(ViewWorkload), ratings.Label(ViewWorkload)); e.Stats.Requests != 7 || e.Stats.Latency.Count() != 7 {
			t.Fatalf("step %d: requests %d latency count %d, want 7", step, e.Stats.Requests, e.Stats.Latency.Count())
		}
		g.Advance(at.Add(3 * res)) // bucket 59 closes; its minute rolls up
	}
}

// A window whose start cuts a minute reads that minute from the cached
// position of its first bucket; once the minute is folded (its records
// rewritten), the same window reusing the cache must read it afresh and
// agree exactly with a graph that never cached it.
func TestWindowCacheHeadAfterFold(t *testing.T) {
	a, b := newTestGraph(t), newTestGraph(t)
	res := a.Resolution()
	feed := func(from, to int) {
		for i := from; i < to; i++ {
			at := t0.Add(time.Duration(i) * res)
			batch := []Observation{obs(at, productpage, reviewsV1, 3+uint64(i%5), uint64(i%4/3), 5+float64(i%11)*7)}
			a.Ingest(batch)
			b.Ingest(batch)
			a.Advance(at.Add(res))
			b.Advance(at.Add(res))
		}
	}
	// t0 starts a minute: the window [34, 64) starts at slot 4 of minute
	// [30, 36), past its middle bucket, so once folded its latency is out.
	q := Query{Window: 30 * res, At: t0.Add(64 * res)}
	feed(0, 66)
	if _, err := a.Snapshot(q); err != nil {
		t.Fatal(err)
	}
	s := a.edgeList[0].ch[chMetricsDst]
	if w := s.win.Load(); w == nil || w.head == nil {
		t.Fatal("no cached head positions")
	}
	head := floorDiv(a.index(t0), a.lay.n) + 5
	if s.folded > head {
		t.Fatalf("minute folded too early")
	}
	feed(66, 110)
	if s.folded <= head {
		t.Fatalf("minute not folded: folded %d, head %d", s.folded, head)
	}
	sa, err := a.Snapshot(q)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Snapshot(q)
	if err != nil {
		t.Fatal(err)
	}
	ea := edgeBetween(t, sa, productpage.Label(ViewWorkload), reviewsV1.Label(ViewWorkload)).Stats
	eb := edgeBetween(t, sb, productpage.Label(ViewWorkload), reviewsV1.Label(ViewWorkload)).Stats
	if ea.Requests != eb.Requests || ea.Errors != eb.Errors || !maps.Equal(ea.Codes, eb.Codes) || !maps.Equal(ea.Flags, eb.Flags) {
		t.Fatalf("counters %+v, want %+v", ea, eb)
	}
	ba, za, ca := binsOf(&ea.Latency)
	bb, zb, cb := binsOf(&eb.Latency)
	// Sums of folded minutes are estimated, of minutes cached before the
	// fold exact: they agree within the sketch's accuracy only.
	if ca != cb || za != zb || !maps.Equal(ba, bb) || math.Abs(ea.Latency.Sum()-eb.Latency.Sum()) > RelativeAccuracy*eb.Latency.Sum() {
		t.Fatalf("latency %d values sum %v, want %d sum %v", ca, ea.Latency.Sum(), cb, eb.Latency.Sum())
	}
}
