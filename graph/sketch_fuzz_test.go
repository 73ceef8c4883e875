package graph

import (
	"math"
	"testing"
)

// FuzzSketchMergeBinary: any bytes either merge or fail cleanly, and a
// successful merge leaves a sketch whose own encoding round-trips.
func FuzzSketchMergeBinary(f *testing.F) {
	var s Sketch
	for _, v := range []float64{0, 0.5, 1, 12, 90, 1500, 1e6} {
		s.Add(v, 3)
	}
	f.Add(s.AppendBinary(nil))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Sketch
		if _, err := s.MergeBinary(b); err != nil {
			return
		}
		for _, q := range []float64{0, 0.5, 0.99, 1} {
			_ = s.Quantile(q)
		}
		enc := s.AppendBinary(nil)
		var r Sketch
		rest, err := r.MergeBinary(enc)
		if err != nil || len(rest) != 0 {
			t.Fatalf("re-encoding does not decode: %v, %d bytes left", err, len(rest))
		}
		if r.Count() != s.Count() && !math.IsNaN(s.Sum()) {
			t.Fatalf("count %d after round trip, want %d", r.Count(), s.Count())
		}
	})
}
