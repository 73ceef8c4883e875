package graph

import (
	"maps"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// refValue is one latency value of the reference model.
type refValue struct {
	ms float64
	n  uint64
}

// refBucket is what the reference model holds per bucket and edge.
type refBucket struct {
	requests, errors, reqBytes uint64
	values                     []refValue
}

// rollupFixture feeds a graph bucket by bucket, as collectors do, and keeps
// an independent per-bucket model of the same traffic.
type rollupFixture struct {
	g       *Graph
	ref     map[int64]*refBucket // bucket idx -> traffic of productpage->reviews-v1
	first   int64                // first bucket with traffic
	last    int64                // last bucket with traffic
	buckets int64
}

// newRollupFixture sends minutes of traffic from t0 with a few latency
// values per bucket, including zero latency, repeated values (counts > 7),
// sub-millisecond and multi-second values, and errors with evidence.
func newRollupFixture(tb testing.TB, minutes int, cfg Config) *rollupFixture {
	tb.Helper()
	g := New(cfg)
	g.Advance(t0)
	f := &rollupFixture{g: g, ref: map[int64]*refBucket{}, first: g.index(t0)}
	r := rand.New(rand.NewPCG(7, 8))
	res := g.Resolution()
	n := int64(time.Duration(minutes) * time.Minute / res)
	for i := int64(0); i < n; i++ {
		at := t0.Add(time.Duration(i) * res)
		idx := g.index(at)
		rb := &refBucket{}
		var batch []Observation
		for k := 0; k < 1+r.IntN(4); k++ {
			ms := 20 * math.Exp(0.8*r.NormFloat64())
			switch r.IntN(20) {
			case 0:
				ms = 0
			case 1:
				ms = 0.3
			case 2:
				ms = 4000
			}
			reqs := uint64(1 + r.IntN(12))
			var errs uint64
			if r.IntN(8) == 0 {
				errs = 1
			}
			o := obs(at.Add(time.Duration(k)*time.Second), productpage, reviewsV1, reqs, errs, ms)
			o.RequestBytes = 100 * reqs
			batch = append(batch, o)
			rb.requests += reqs
			rb.errors += errs
			rb.reqBytes += 100 * reqs
			rb.values = append(rb.values, refValue{ms, reqs})
		}
		// A second edge that the checks ignore, so series interleave.
		batch = append(batch, obs(at, reviewsV1, ratings, 2, 0, 3))
		g.Ingest(batch)
		f.ref[idx] = rb
		f.last = idx
		g.Advance(at.Add(res))
	}
	f.buckets = n
	return f
}

// expected is the reference edge over [from, to) as the graph documents it:
// counters of every bucket; latency of whole groups, of raw buckets where
// their sketches are kept, and of folded groups cut by the window only when
// the window holds the group's middle bucket.
// approx reports whether folded groups, whose latency sums are estimated from
// their bins, are part of the latency.
func (f *rollupFixture) expected(from, to int64) (req, errs, bytes uint64, lat Sketch, approx bool) {
	g := f.g
	n := g.lay.n
	foldBefore := g.watermark - g.lay.keepRaw
	for idx := from; idx < to; idx++ {
		rb := f.ref[idx]
		if rb == nil || idx <= g.watermark-g.slots { // trimmed, as before rollups
			continue
		}
		req += rb.requests
		errs += rb.errors
		bytes += rb.reqBytes
		gs := floorDiv(idx, n) * n
		whole := gs >= from && gs+n <= to
		folded := gs+n <= foldBefore && gs+n <= g.watermark-g.grace
		if whole || !folded {
			for _, v := range rb.values {
				lat.Add(v.ms, v.n)
			}
			approx = approx || folded
		}
	}
	// Folded groups cut by the window: all or nothing by their middle bucket.
	for gs := floorDiv(from, n) * n; gs < to; gs += n {
		whole := gs >= from && gs+n <= to
		folded := gs+n <= foldBefore
		if whole || !folded {
			continue
		}
		if mid := gs + n/2; mid >= from && mid < to {
			approx = true
			for idx := gs; idx < gs+n; idx++ {
				if rb := f.ref[idx]; rb != nil && idx > g.watermark-g.slots {
					for _, v := range rb.values {
						lat.Add(v.ms, v.n)
					}
				}
			}
		}
	}
	return req, errs, bytes, lat, approx
}

// binsOf is a sketch's non-empty bins, its zero count and total.
func binsOf(s *Sketch) (map[int32]uint64, uint64, uint64) {
	m := map[int32]uint64{}
	for i, c := range s.counts {
		if c != 0 {
			m[s.offset+int32(i)] = c
		}
	}
	return m, s.zero, s.count
}

func (f *rollupFixture) check(t *testing.T, name string, from, to int64) {
	t.Helper()
	g := f.g
	at := g.timeOf(to)
	s, err := g.Snapshot(Query{Window: time.Duration(to-from) * g.cfg.Resolution, At: at})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	wantReq, wantErr, wantBytes, wantLat, approx := f.expected(from, to)
	var e *EdgeSnapshot
	for i := range s.Edges {
		if s.Edges[i].Target.Workload == reviewsV1.Workload {
			e = &s.Edges[i]
		}
	}
	if e == nil {
		if wantReq != 0 {
			t.Errorf("%s: no edge, want %d requests", name, wantReq)
		}
		return
	}
	if e.Stats.Requests != wantReq || e.Stats.Errors[Err5xx] != wantErr || e.Stats.RequestBytes != wantBytes || e.Stats.Codes[503] != wantErr {
		t.Errorf("%s: requests/errors/bytes/503s %d/%d/%d/%d, want %d/%d/%d/%d", name,
			e.Stats.Requests, e.Stats.Errors[Err5xx], e.Stats.RequestBytes, e.Stats.Codes[503], wantReq, wantErr, wantBytes, wantErr)
	}
	gotBins, gotZero, gotCount := binsOf(&e.Stats.Latency)
	wantBins, wantZero, wantCount := binsOf(&wantLat)
	if gotCount != wantCount || gotZero != wantZero || !maps.Equal(gotBins, wantBins) {
		t.Errorf("%s: latency count %d zero %d (%d bins), want %d zero %d (%d bins)", name,
			gotCount, gotZero, len(gotBins), wantCount, wantZero, len(wantBins))
	}
	if wantCount > 0 {
		tol := 1e-5 // float32 sums
		if approx {
			tol = RelativeAccuracy
		}
		if d := math.Abs(e.Stats.Latency.Sum()-wantLat.Sum()) / wantLat.Sum(); d > tol {
			t.Errorf("%s: latency sum %v, want %v", name, e.Stats.Latency.Sum(), wantLat.Sum())
		}
		for _, q := range []float64{0, 0.5, 0.99, 1} {
			got, want := e.Stats.Latency.Quantile(q), wantLat.Quantile(q)
			if math.Abs(got-want) > 2*RelativeAccuracy*want+1e-9 {
				t.Errorf("%s: q%v %v, want %v", name, q, got, want)
			}
		}
	}
	// Node totals are the sums of their edges.
	for _, nd := range s.Nodes {
		if nd.Node.Workload == reviewsV1.Workload && nd.In.Latency.Count() != e.Stats.Latency.Count() {
			t.Errorf("%s: node in latency count %d, edge %d", name, nd.In.Latency.Count(), e.Stats.Latency.Count())
		}
	}
}

func TestRollupWindowsMatchReference(t *testing.T) {
	// 25 minutes of 10 s buckets: the last 6 minutes keep per-bucket
	// sketches, older minutes only their rollups.
	f := newRollupFixture(t, 25, Config{Resolution: 10 * time.Second, Window: time.Hour})
	g := f.g
	w := g.watermark
	tests := []struct {
		name     string
		from, to int64
	}{
		{"whole minutes, recent", w - w%6 - 24, w - w%6},
		{"ragged both ends, recent (5m at now)", w - 30, w},
		{"ragged, one bucket", w - 1, w},
		{"single bucket inside a group", w - 9, w - 8},
		{"whole minutes, folded", f.first + 6, f.first + 60},
		{"folded, cut before the middle", f.first + 4, f.first + 64},
		{"folded, cut after the middle", f.first + 2, f.first + 62},
		{"folded start, recent end", f.first + 5, w - 3},
		{"everything", f.first, w},
		{"before any traffic", f.first - 30, f.first},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.check(t, tc.name, tc.from, tc.to)
		})
	}
}

func TestRollupEqualsMergeOfRawRecords(t *testing.T) {
	// Raw sketches kept for the whole window: a group's rollup must equal
	// the merge of its raw records, bin for bin.
	f := newRollupFixture(t, 12, Config{Resolution: 10 * time.Second, Window: time.Hour, RawLatency: time.Hour})
	var e *edge
	for _, x := range f.g.edgeList {
		if x.key.dst.node == reviewsV1 {
			e = x
		}
	}
	s := e.ch[chMetricsDst]
	if s.groups.len() < 10 {
		t.Fatalf("%d groups", s.groups.len())
	}
	var c counters
	for i := 0; i < s.groups.len()-1; i++ {
		var roll, raw Sketch
		var rollReq, rawReq uint64
		r := s.reader(i)
		for k := 0; ; k++ {
			b0, ok := r.next(&c)
			if !ok {
				break
			}
			if b0&rbSlot == rbRollup {
				if k != 0 {
					t.Fatalf("group %d: rollup at position %d, want first", i, k)
				}
				c.mergeSketchInto(&roll)
				rollReq += c.v[vReq]
				continue
			}
			c.mergeSketchInto(&raw)
			rawReq += c.v[vReq]
		}
		rb, rz, rc := binsOf(&roll)
		wb, wz, wc := binsOf(&raw)
		if rollReq != rawReq || rc != wc || rz != wz || !maps.Equal(rb, wb) {
			t.Errorf("group %d: rollup %d requests %d values, raw records %d/%d", i, rollReq, rc, rawReq, wc)
		}
	}
}

func TestTrimAcrossRollups(t *testing.T) {
	// A 3-minute window over 10 minutes of traffic: groups are trimmed
	// whole, but no bucket older than the window may show.
	f := newRollupFixture(t, 10, Config{Resolution: 10 * time.Second, Window: 3 * time.Minute})
	g := f.g
	w := g.watermark
	for _, tc := range []struct {
		name     string
		from, to int64
	}{
		{"the whole window", w - 18, w},
		{"the oldest bucket held", w - 17, w - 16},
		{"ragged", w - 13, w - 2},
	} {
		f.check(t, tc.name, tc.from, tc.to)
	}
	// Buckets past the window are gone even if their group is not.
	s, err := g.Snapshot(Query{Window: 10 * time.Second, At: g.timeOf(w - 18)})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Edges) != 0 {
		t.Errorf("bucket %d past the window still shows %d edges", w-18, len(s.Edges))
	}
	c := g.Counters()
	if c.Buckets > 2*(18+6) || c.Buckets < 2*18-4 {
		t.Errorf("%d bucket records held for a window of 18 buckets on 2 edges", c.Buckets)
	}
	// Past the window everything goes.
	g.Advance(g.timeOf(w + 40))
	if c := g.Counters(); c.Edges != 0 || c.Buckets != 0 || c.Bytes != 0 {
		t.Errorf("after the window: %+v", c)
	}
}

func TestHistoryOfFoldedBuckets(t *testing.T) {
	f := newRollupFixture(t, 20, Config{Resolution: 10 * time.Second, Window: time.Hour})
	g := f.g
	dst := ViewWorkload.Project(reviewsV1)
	start, hs, err := g.History(EdgeFilter{View: ViewWorkload, Target: &dst}, 20*time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	base := g.index(start)
	n := g.lay.n
	groupCount := map[int64]uint64{}
	groupLat := map[int64]uint64{}
	for i := range hs {
		idx := base + int64(i)
		rb := f.ref[idx]
		if rb == nil {
			continue
		}
		if hs[i].Requests != rb.requests || hs[i].Errors[Err5xx] != rb.errors {
			t.Errorf("bucket %d: %d requests %d errors, want %d/%d", i, hs[i].Requests, hs[i].Errors[Err5xx], rb.requests, rb.errors)
		}
		var want Sketch
		for _, v := range rb.values {
			want.Add(v.ms, v.n)
		}
		gs := floorDiv(idx, n)
		groupCount[gs] += want.Count()
		groupLat[gs] += hs[i].Latency.Count()
		if gs*n+n > g.watermark-g.lay.keepRaw {
			// Recent: exact per bucket (min and max to the sketch's accuracy).
			if hs[i].Latency.Count() != want.Count() || math.Abs(hs[i].Latency.Quantile(0.5)-want.Quantile(0.5)) > 2*RelativeAccuracy*want.Quantile(0.5) {
				t.Errorf("recent bucket %d: latency count %d p50 %v, want %d %v", i,
					hs[i].Latency.Count(), hs[i].Latency.Quantile(0.5), want.Count(), want.Quantile(0.5))
			}
		}
	}
	// Folded: each group's distribution is spread over its buckets whole.
	for gs, want := range groupCount {
		if got := groupLat[gs]; got+1 < want || got > want+1 {
			t.Errorf("group %d: history holds %d latency values, want %d", gs, got, want)
		}
	}
}

func TestCompactSketchRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		add  func(s *Sketch)
	}{
		{"empty bins, zeros only", func(s *Sketch) { s.Add(0, 3) }},
		{"one value", func(s *Sketch) { s.Add(12.5, 1) }},
		{"large counts", func(s *Sketch) { s.Add(3, 1_000_000); s.Add(3.5, 8) }},
		{"huge count", func(s *Sketch) { s.Add(7, 1<<62); s.Add(9, 1) }},
		{"wide gaps", func(s *Sketch) { s.Add(0.001, 1); s.Add(1, 2); s.Add(60000, 7) }},
		{"lognormal with zeros", func(s *Sketch) {
			r := rand.New(rand.NewPCG(1, 1))
			for i := 0; i < 5000; i++ {
				s.Add(30*math.Exp(r.NormFloat64()), uint64(1+r.IntN(9)))
			}
			s.Add(-1, 2)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Sketch
			tc.add(&s)
			for _, packed := range []bool{false, true} {
				var enc []byte
				if packed {
					enc = s.appendPacked(nil)
				} else {
					enc = s.appendCompact(nil)
				}
				checkEncodedSketch(t, &s, enc, packed)
			}
		})
	}
}

// checkEncodedSketch decodes enc, the compact or packed encoding of s, alone,
// without its sum, and into a non-empty sketch.
func checkEncodedSketch(t *testing.T, s *Sketch, enc []byte, packed bool) {
	t.Helper()
	var d Sketch
	mergeEncoded(&d, enc, packed, true)
	sb, sz, sc := binsOf(s)
	db, dz, dc := binsOf(&d)
	if sc != dc || sz != dz || !maps.Equal(sb, db) {
		t.Fatalf("packed %v: decoded %d values (%d zero, %d bins), want %d (%d, %d)", packed, dc, dz, len(db), sc, sz, len(sb))
	}
	if math.Abs(d.Sum()-s.Sum()) > 1e-6*math.Abs(s.Sum()) {
		t.Errorf("packed %v: sum %v, want %v", packed, d.Sum(), s.Sum())
	}
	for _, q := range []float64{0, 0.5, 0.9, 1} {
		if got, want := d.Quantile(q), s.Quantile(q); math.Abs(got-want) > 2*RelativeAccuracy*want {
			t.Errorf("packed %v: q%v %v, want %v", packed, q, got, want)
		}
	}
	// Folded: without its sum, estimated from the bins.
	at := compactSumAt(enc)
	var e Sketch
	mergeEncoded(&e, append(enc[:at:at], enc[at+4:]...), packed, false)
	if e.Count() != s.Count() || math.Abs(e.Sum()-s.Sum()) > RelativeAccuracy*math.Abs(s.Sum()) {
		t.Errorf("packed %v: without sum: %d values sum %v, want %d %v", packed, e.Count(), e.Sum(), s.Count(), s.Sum())
	}
	// Merging into a non-empty sketch adds up.
	mergeEncoded(&d, enc, packed, true)
	if d.Count() != 2*s.Count() {
		t.Errorf("packed %v: merged twice: %d values, want %d", packed, d.Count(), 2*s.Count())
	}
}

func TestWindowsPastWhatIsHeld(t *testing.T) {
	f := newRollupFixture(t, 4, Config{Resolution: 10 * time.Second, Window: 2 * time.Minute})
	g := f.g
	g.Advance(g.timeOf(g.watermark + 30))
	// The edge lives on with new traffic; the old windows must still be empty.
	now := g.timeOf(g.watermark)
	g.Ingest([]Observation{obs(now, productpage, reviewsV1, 1, 0, 5)})
	g.Advance(now.Add(time.Minute))
	src := ViewWorkload.Project(productpage)
	for _, at := range []time.Time{t0, t0.Add(3 * time.Minute), t0.Add(6 * time.Minute)} {
		_, hs, err := g.History(EdgeFilter{View: ViewWorkload, Source: &src}, 2*time.Minute, at)
		if err != nil {
			t.Fatal(err)
		}
		for i := range hs {
			if hs[i].Requests != 0 {
				t.Errorf("at %v: bucket %d has %d requests past the window", at, i, hs[i].Requests)
			}
		}
		s, err := g.Snapshot(Query{Window: 2 * time.Minute, At: at})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Edges) != 0 {
			t.Errorf("at %v: %d edges past the window", at, len(s.Edges))
		}
	}
}
