package graph

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func exactQuantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

func TestSketchAccuracyAgainstExactQuantiles(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) float64
		n    int
	}{
		{"lognormal median 20ms", func(r *rand.Rand) float64 { return 20 * math.Exp(0.6*r.NormFloat64()) }, 50_000},
		{"uniform 1-1000ms", func(r *rand.Rand) float64 { return 1 + 999*r.Float64() }, 20_000},
		{"bimodal cache hit/miss", func(r *rand.Rand) float64 {
			if r.IntN(10) < 8 {
				return 0.4 + 0.1*r.Float64()
			}
			return 150 + 50*r.Float64()
		}, 30_000},
		{"exponential 5ms", func(r *rand.Rand) float64 { return r.ExpFloat64() * 5 }, 10_000},
		{"heavy tail pareto", func(r *rand.Rand) float64 { return 3 / math.Pow(1-r.Float64(), 1/1.2) }, 40_000},
		{"tiny sample", func(r *rand.Rand) float64 { return 10 + r.Float64() }, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var s Sketch
			vals := make([]float64, tc.n)
			for i := range vals {
				vals[i] = tc.gen(r)
				s.Add(vals[i], 1)
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.9, 0.95, 0.99} {
				want := exactQuantile(vals, q)
				got := s.Quantile(q)
				if rel := math.Abs(got-want) / want; rel > RelativeAccuracy+1e-9 {
					t.Errorf("q%.2f = %.4f, exact %.4f: relative error %.4f > %.2f", q, got, want, rel, RelativeAccuracy)
				}
			}
			if s.Count() != uint64(tc.n) {
				t.Errorf("count %d, want %d", s.Count(), tc.n)
			}
			if s.Min() != vals[0] || s.Max() != vals[len(vals)-1] {
				t.Errorf("min/max %v/%v, want %v/%v", s.Min(), s.Max(), vals[0], vals[len(vals)-1])
			}
		})
	}
}

func TestSketchMergeEqualsSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all, a, b Sketch
	for i := 0; i < 20000; i++ {
		v := 50 * math.Exp(r.NormFloat64())
		all.Add(v, 1)
		if i%3 == 0 {
			a.Add(v, 1)
		} else {
			b.Add(v, 1)
		}
	}
	a.Merge(&b)
	for _, q := range []float64{0.1, 0.5, 0.95, 0.99} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v merged %v != single %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
}

func TestSketchBinaryRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var s Sketch
	for i := 0; i < 5000; i++ {
		s.Add(r.ExpFloat64()*30, uint64(1+r.IntN(3)))
	}
	s.Add(0, 4) // zero bucket
	enc := s.AppendBinary(nil)
	var d Sketch
	rest, err := d.MergeBinary(append(enc, 0xAA))
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0] != 0xAA {
		t.Fatalf("rest = %v", rest)
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.99, 1} {
		if d.Quantile(q) != s.Quantile(q) {
			t.Errorf("q%v decoded %v != %v", q, d.Quantile(q), s.Quantile(q))
		}
	}
	if d.Count() != s.Count() || d.Sum() != s.Sum() {
		t.Errorf("count/sum %d/%v != %d/%v", d.Count(), d.Sum(), s.Count(), s.Sum())
	}
	for _, bad := range [][]byte{{}, {5}, {5, 1, 1, 2}, append(enc[:len(enc)-3:len(enc)-3], 0xff, 0xff)} {
		var x Sketch
		if _, err := x.MergeBinary(bad); err == nil {
			t.Errorf("MergeBinary(%x) accepted corrupt input", bad)
		}
	}
}

func TestSketchOddValues(t *testing.T) {
	var s Sketch
	for _, v := range []float64{math.NaN(), -5, 0, math.Inf(1), 1e-9, 3} {
		s.Add(v, 1)
	}
	if s.Count() != 6 {
		t.Fatalf("count %d", s.Count())
	}
	if q := s.Quantile(0.5); math.IsNaN(q) || q < 0 {
		t.Errorf("median %v", q)
	}
}

func TestSketchFromHistogram(t *testing.T) {
	// Istio's default buckets; 100 requests between 10 and 25 ms, 5 slower.
	bounds := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000}
	counts := []uint64{0, 0, 0, 0, 100, 0, 0, 5, 0, 0, 0}
	var s Sketch
	s.AddHistogram(bounds, counts)
	if s.Count() != 105 {
		t.Fatalf("count %d", s.Count())
	}
	if p50 := s.Quantile(0.5); p50 < 10 || p50 > 25 {
		t.Errorf("p50 %v outside its bucket (10,25]", p50)
	}
	if p99 := s.Quantile(0.99); p99 < 100 || p99 > 250 {
		t.Errorf("p99 %v outside its bucket (100,250]", p99)
	}
}
