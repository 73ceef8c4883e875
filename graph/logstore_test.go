package graph

import (
	"maps"
	"testing"
	"time"
)

// TestLogsBeyond64KiB: a series whose log outgrows 16-bit group offsets
// reads back exactly, per window and per bucket, across the minutes in
// which logs move between arena generations.
func TestLogsBeyond64KiB(t *testing.T) {
	g := New(Config{Resolution: 10 * time.Second, Window: time.Hour, RawLatency: time.Hour})
	g.Advance(t0)
	// One observation per bucket carrying a wide sketch: a record of a few
	// kilobytes, so ten minutes hold well over 64 KiB.
	var wide Sketch
	for k := int32(-400); k < 600; k++ {
		wide.Add(sketchValue(k), uint64(1+k&3))
	}
	const buckets = 70
	var want Sketch
	for i := 0; i < buckets; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		o := obs(at, productpage, reviewsV1, wide.Count(), 0, 0)
		o.Latency = &wide
		o.RequestBytes = uint64(100 + i)
		g.Ingest([]Observation{o})
		want.Merge(&wide)
		g.Advance(at.Add(10 * time.Second))
	}
	g.Advance(t0.Add(time.Duration(buckets+2) * 10 * time.Second))
	s := g.edgeList[0].ch[chMetricsDst]
	if s.groups.large == nil || len(s.log) <= 1<<16 {
		t.Fatalf("log of %d bytes, large index %v: the test needs a log over 64 KiB", len(s.log), s.groups.large != nil)
	}
	snap, err := g.Snapshot(Query{Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := edgeBetween(t, snap, productpage.Label(ViewWorkload), reviewsV1.Label(ViewWorkload))
	gotBins, _, gotCount := binsOf(&e.Stats.Latency)
	wantBins, _, wantCount := binsOf(&want)
	if gotCount != wantCount || !maps.Equal(gotBins, wantBins) {
		t.Errorf("window latency: %d values in %d bins, want %d in %d", gotCount, len(gotBins), wantCount, len(wantBins))
	}
	if wantBytes := uint64(buckets*100 + buckets*(buckets-1)/2); e.Stats.RequestBytes != wantBytes {
		t.Errorf("request bytes %d, want %d", e.Stats.RequestBytes, wantBytes)
	}
	start, hist, err := g.History(EdgeFilter{}, time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	first := int(t0.Sub(start) / (10 * time.Second))
	for i := 0; i < buckets; i++ {
		b := &hist[first+i]
		if b.RequestBytes != uint64(100+i) || b.Latency.Count() != wide.Count() {
			t.Fatalf("bucket %d: %d bytes, %d values, want %d, %d", i, b.RequestBytes, b.Latency.Count(), 100+i, wide.Count())
		}
	}
}

func TestGroupIndexWidens(t *testing.T) {
	var x groupIndex
	offs := []int{0, 10, 65535, 65536, 1 << 20}
	for _, o := range offs {
		x.push(o)
	}
	if x.len() != len(offs) || x.large == nil {
		t.Fatalf("len %d, large %v", x.len(), x.large != nil)
	}
	for i, o := range offs {
		if x.at(i) != o {
			t.Errorf("at(%d) = %d, want %d", i, x.at(i), o)
		}
	}
	x.set(1, 5)
	x.truncate(2)
	if x.len() != 2 || x.at(1) != 5 {
		t.Errorf("after set and truncate: len %d, at(1) %d", x.len(), x.at(1))
	}
	x.truncate(0)
	x.push(7)
	if x.large != nil || x.at(0) != 7 {
		t.Errorf("emptied index stays wide or lost its offset")
	}
}

// TestWindowCacheOfSeriesWithoutWholeMinutes: a series with traffic only in
// the minutes at the window's ends gets an empty cache for the minutes in
// between, right after a series whose cache holds data was summed.
func TestWindowCacheOfSeriesWithoutWholeMinutes(t *testing.T) {
	g := newTestGraph(t)
	start := g.index(t0)
	var wantB uint64
	for b := int64(0); b < 36; b++ {
		at := g.timeOf(start + b)
		batch := []Observation{obs(at, productpage, reviewsV1, 5, 0, 10)}
		if b < 6 || b >= 30 { // minutes 0 and 5 only
			batch = append(batch, obs(at, reviewsV1, ratings, 2, 0, 3))
			if b >= 3 && b < 30 {
				wantB += 2
			}
		}
		g.Ingest(batch)
		g.Advance(at.Add(10 * time.Second))
	}
	g.Advance(g.timeOf(start + 38))
	// The window [3, 30): its start cuts minute 0, minutes 1-3 are whole.
	q := Query{Window: 27 * 10 * time.Second, At: g.timeOf(start + 30)}
	for rep := 0; rep < 2; rep++ { // building the caches, then reading them
		s, err := g.Snapshot(q)
		if err != nil {
			t.Fatal(err)
		}
		e := edgeBetween(t, s, reviewsV1.Label(ViewWorkload), ratings.Label(ViewWorkload))
		if e.Stats.Requests != wantB || e.Stats.Latency.Count() != wantB {
			t.Errorf("pass %d: %d requests, %d latency values, want %d", rep, e.Stats.Requests, e.Stats.Latency.Count(), wantB)
		}
		a := edgeBetween(t, s, productpage.Label(ViewWorkload), reviewsV1.Label(ViewWorkload))
		if a.Stats.Requests != 27*5 {
			t.Errorf("pass %d: busy edge %d requests, want %d", rep, a.Stats.Requests, 27*5)
		}
	}
}
