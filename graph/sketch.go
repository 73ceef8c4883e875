package graph

import (
	"encoding/binary"
	"errors"
	"math"
)

// Sketch is a mergeable latency distribution with bounded relative error
// (DDSketch-style logarithmic bins): every quantile it returns is within
// RelativeAccuracy of a value actually inserted at that rank. Values are
// milliseconds. The zero value is an empty sketch ready to use.
type Sketch struct {
	offset int32    // key of counts[0]
	counts []uint64 // dense bins from offset
	zero   uint64   // values below minIndexable
	count  uint64
	sum    float64
	min    float64
	max    float64
}

// RelativeAccuracy is the bound on a quantile's relative error.
const RelativeAccuracy = 0.01

const minIndexable = 1e-4 // ms; smaller values count as zero

var (
	sketchGamma    = (1 + RelativeAccuracy) / (1 - RelativeAccuracy)
	sketchLogGamma = math.Log(sketchGamma)
	invLogGamma    = 1 / sketchLogGamma
)

func sketchKey(v float64) int32 { return int32(math.Ceil(math.Log(v) * invLogGamma)) }

// sketchValue is the representative of bin k: within RelativeAccuracy of every value in the bin.
func sketchValue(k int32) float64 {
	if j := uint(k - valueTableLo); j < uint(len(valueTable)) {
		return valueTable[j]
	}
	return computeSketchValue(k)
}

func computeSketchValue(k int32) float64 {
	return 2 * math.Exp(float64(k)*sketchLogGamma) / (1 + sketchGamma)
}

// valueTable caches the representatives of the keys of 0.1 µs to ~17 min,
// which decoding looks up for every merged record's min and max.
const valueTableLo = -470

var valueTable = func() []float64 {
	t := make([]float64, 1500)
	for i := range t {
		t[i] = computeSketchValue(int32(i) + valueTableLo)
	}
	return t
}()

// Add inserts n occurrences of value v (ms). Negative and NaN values count as zero.
func (s *Sketch) Add(v float64, n uint64) {
	if n == 0 {
		return
	}
	if !(v > 0) || math.IsInf(v, 0) {
		if math.IsInf(v, 1) {
			v = math.MaxFloat32
		} else {
			v = 0
		}
	}
	if s.count == 0 || v < s.min {
		s.min = v
	}
	if s.count == 0 || v > s.max {
		s.max = v
	}
	s.count += n
	s.sum += v * float64(n)
	if v < minIndexable {
		s.zero += n
		return
	}
	s.addKey(sketchKey(v), n)
}

func (s *Sketch) addKey(k int32, n uint64) {
	if len(s.counts) == 0 {
		s.offset = k
		if cap(s.counts) > 0 {
			s.counts = s.counts[:1]
			s.counts[0] = 0
		} else {
			s.counts = make([]uint64, 1, 64)
		}
	}
	switch {
	case k < s.offset:
		grow := int(s.offset - k)
		old := len(s.counts)
		s.counts = growSlice(s.counts, old+grow)
		copy(s.counts[grow:], s.counts[:old])
		clear(s.counts[:grow])
		s.offset = k
	case int(k-s.offset) >= len(s.counts):
		s.counts = growSlice(s.counts, int(k-s.offset)+1)
	}
	s.counts[k-s.offset] += n
}

func growSlice(b []uint64, n int) []uint64 {
	if n <= cap(b) {
		old := len(b)
		b = b[:n]
		clear(b[old:])
		return b
	}
	nb := make([]uint64, n, n+n/2+8)
	copy(nb, b)
	return nb
}

// Merge adds every value of o into s.
func (s *Sketch) Merge(o *Sketch) {
	if o == nil || o.count == 0 {
		return
	}
	s.mergeHeader(o.count, o.zero, o.sum, o.min, o.max)
	lo, hi := 0, len(o.counts)
	for lo < hi && o.counts[lo] == 0 {
		lo++
	}
	for hi > lo && o.counts[hi-1] == 0 {
		hi--
	}
	if lo == hi {
		return
	}
	// Grow once to o's range, then add bins densely.
	klo, khi := o.offset+int32(lo), o.offset+int32(hi-1)
	s.addKey(klo, 0)
	s.addKey(khi, 0)
	dst := s.counts[klo-s.offset : khi-s.offset+1]
	for i, c := range o.counts[lo:hi] {
		dst[i] += c
	}
}

// mergeScaled adds o scaled by num/den: bins are rounded on the cumulative
// counts, so the scaled distribution's ranks stay within one value of o's.
func (s *Sketch) mergeScaled(o *Sketch, num, den uint64) {
	if o.count == 0 || num == 0 || den == 0 {
		return
	}
	f := float64(num) / float64(den)
	var cum, prev uint64
	step := func(c uint64) uint64 {
		cum += c
		out := uint64(float64(cum)*f + 0.5)
		d := out - prev
		prev = out
		return d
	}
	zero := step(o.zero)
	for i, c := range o.counts {
		if c == 0 {
			continue
		}
		if d := step(c); d > 0 {
			s.addKey(o.offset+int32(i), d)
		}
	}
	if prev == 0 {
		return
	}
	s.mergeHeader(prev, zero, o.sum*f, o.min, o.max)
}

func (s *Sketch) mergeHeader(count, zero uint64, sum, mn, mx float64) {
	if s.count == 0 || mn < s.min {
		s.min = mn
	}
	if s.count == 0 || mx > s.max {
		s.max = mx
	}
	s.count += count
	s.zero += zero
	s.sum += sum
}

// Reset empties the sketch, keeping its memory.
func (s *Sketch) Reset() {
	s.counts = s.counts[:0]
	s.offset, s.zero, s.count, s.sum, s.min, s.max = 0, 0, 0, 0, 0, 0
}

// Count is the number of values inserted.
func (s *Sketch) Count() uint64 { return s.count }

// Sum of the values inserted.
func (s *Sketch) Sum() float64 { return s.sum }

// Mean of the values, 0 when empty.
func (s *Sketch) Mean() float64 {
	if s.count == 0 {
		return 0
	}
	return s.sum / float64(s.count)
}

// Min and Max are exact.
func (s *Sketch) Min() float64 { return s.min }
func (s *Sketch) Max() float64 { return s.max }

// Quantile returns the value at quantile q in [0,1]; 0 when empty.
func (s *Sketch) Quantile(q float64) float64 {
	if s.count == 0 {
		return 0
	}
	if q <= 0 {
		return s.min
	}
	if q >= 1 {
		return s.max
	}
	rank := uint64(q * float64(s.count-1))
	if rank < s.zero {
		return s.min
	}
	seen := s.zero
	for i, c := range s.counts {
		seen += c
		if seen > rank {
			v := sketchValue(s.offset + int32(i))
			return math.Min(math.Max(v, s.min), s.max)
		}
	}
	return s.max
}

// Clone returns an independent copy.
func (s *Sketch) Clone() *Sketch {
	c := *s
	c.counts = append([]uint64(nil), s.counts...)
	return &c
}

// AppendBinary appends a compact encoding of s to b: varints of bin deltas and
// counts, used for closed buckets and storage.
func (s *Sketch) AppendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, s.count)
	if s.count == 0 {
		return b
	}
	b = binary.AppendUvarint(b, s.zero)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.sum))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.min))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.max))
	nz := 0
	for _, c := range s.counts {
		if c != 0 {
			nz++
		}
	}
	b = binary.AppendUvarint(b, uint64(nz))
	prev := int32(0)
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		k := s.offset + int32(i)
		b = binary.AppendVarint(b, int64(k-prev))
		b = binary.AppendUvarint(b, c)
		prev = k
	}
	return b
}

var errSketchEncoding = errors.New("corrupt sketch encoding")

// MergeBinary merges an encoding made by AppendBinary into s and returns the
// rest of b.
func (s *Sketch) MergeBinary(b []byte) ([]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errSketchEncoding
	}
	b = b[n:]
	if count == 0 {
		return b, nil
	}
	zero, n := binary.Uvarint(b)
	if n <= 0 || len(b[n:]) < 24 {
		return nil, errSketchEncoding
	}
	b = b[n:]
	sum := math.Float64frombits(binary.LittleEndian.Uint64(b))
	mn := math.Float64frombits(binary.LittleEndian.Uint64(b[8:]))
	mx := math.Float64frombits(binary.LittleEndian.Uint64(b[16:]))
	b = b[24:]
	nz, n := binary.Uvarint(b)
	if n <= 0 || nz > uint64(len(b)) {
		return nil, errSketchEncoding
	}
	b = b[n:]
	s.mergeHeader(count, zero, sum, mn, mx)
	k := int32(0)
	for i := uint64(0); i < nz; i++ {
		d, n := binary.Varint(b)
		if n <= 0 {
			return nil, errSketchEncoding
		}
		b = b[n:]
		c, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errSketchEncoding
		}
		b = b[n:]
		k += int32(d)
		if k < -200000 || k > 200000 {
			return nil, errSketchEncoding
		}
		s.addKey(k, c)
	}
	return b, nil
}

// AddHistogram spreads cumulative-free histogram bucket counts into the sketch:
// counts[i] values fell in (bounds[i-1], bounds[i]] (bounds[-1] = 0; a final
// count beyond the last bound is at +Inf). Values are placed at the geometric
// middle of their bucket, which is as good as any histogram allows.
func (s *Sketch) AddHistogram(bounds []float64, counts []uint64) {
	lo := 0.0
	for i, c := range counts {
		if c == 0 {
			if i < len(bounds) {
				lo = bounds[i]
			}
			continue
		}
		var v float64
		switch {
		case i >= len(bounds): // +Inf bucket
			v = lo
			if v == 0 {
				v = 1
			}
		case lo <= 0:
			v = bounds[i] / 2
		default:
			v = math.Sqrt(lo * bounds[i])
		}
		s.Add(v, c)
		if i < len(bounds) {
			lo = bounds[i]
		}
	}
}
