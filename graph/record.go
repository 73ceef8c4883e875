package graph

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// Closed-bucket records. A series' log is a sequence of groups (one per
// rollup span, ~1 minute); a group holds the raw records of its closed buckets
// in time order, and, once the group is complete, a rollup record in front of
// them with the group's summed counters and merged latency sketch: a snapshot
// reads one record per whole minute instead of one per bucket. Raw records keep
// the counters exact at bucket resolution.
//
// Record layout: a header byte, then varints.
//
//	b0 bits 0-3: slot of the bucket in its group (0..14), 15 = rollup record
//	b0 bit 4:    a compact sketch ends the record
//	b0 bit 5:    an explicit field mask follows (else: the previous raw record's)
//	b0 bit 6:    mTLS units == requests (the mTLS field is omitted)
//	b0 bit 7:    an explicit reporters/signals/L4 varint follows (else: the previous raw record's)
//
// then the fields present in the mask in order, the reporters/signals/L4
// varint, the evidence (count, then key/value pairs) and the sketch,
// preceded by its length so readers skip it in O(1). In raw records the byte
// counts are differences to the previous raw record's (see recState), and a
// mask bit says the difference, not the value, is non-zero. Raw records hold
// compact sketches, rollups packed ones (see appendPacked). A rollup record has the
// same layout with the sums of its group, is written with an explicit mask and
// flags when the group completes, and is moved in front of the group's raw
// records; once folded (see series.maintain) it is the header byte and the
// sketch only. Common masks (requests, bytes, mTLS, plaintext, connections)
// fit one byte.
const (
	rbSlot     = 0x0f
	rbRollup   = 0x0f
	rbSketch   = 1 << 4
	rbMask     = 1 << 5
	rbMTLSReqs = 1 << 6
	rbFlags    = 1 << 7

	maxGroupBuckets = 15
)

// Field indexes (and mask bits), in encoding order.
const (
	vReq = iota
	vReqBytes
	vRespBytes
	vMTLS
	vPlain
	vConnOpen
	vConnClose
	vErr0     // then one per error class
	numFields = vErr0 + int(NumErrorClasses)

	fEvidence = 1 << numFields
)

// counters is one decoded record's fields.
type counters struct {
	v      [numFields]uint64
	flags  uint64 // reporters<<3 | signals<<1 | l4
	ev     []byte // evidence entries (count first), nil when none
	sk     []byte // compact sketch, nil when none
	skFull int    // bytes of the sketch with its length prefix
	noSum  bool   // the sketch was folded without its sum (see series.maintain)
	packed bool   // a rollup's sketch: packed encoding, not compact
}

// mergeSketchInto merges the record's sketch, if any, into s.
func (c *counters) mergeSketchInto(s *Sketch) {
	if c.sk != nil {
		mergeEncoded(s, c.sk, c.packed, !c.noSum)
	}
}

// mergeEncoded merges a record's sketch, packed (rollups) or compact (raw records).
func mergeEncoded(s *Sketch, b []byte, packed, hasSum bool) {
	if packed {
		s.mergePackedSum(b, hasSum)
	} else {
		s.mergeCompactSum(b, hasSum)
	}
}

func packFlags(reporters uint16, signals Signal, l4 bool) uint64 {
	v := uint64(reporters)<<3 | uint64(signals&3)<<1
	if l4 {
		v |= 1
	}
	return v
}

// recState is the state records are coded against, kept alike by the
// encoder (per series) and by readers (per group): the previous raw record's
// field mask, reporters/signals/L4 and byte counts. Byte counts are coded as
// the difference to the previous raw record's: traffic changes little from
// one bucket to the next, and bytes are most of a record otherwise.
// A group starts from its series' reference state (series.ref), so groups
// read independently, and a group's first record costs little more than
// the others; rollup records neither use nor change it.
type recState struct {
	mask     uint16
	flags    uint32 // of packFlags
	reqBytes uint64
	respByte uint64
}

// residual codes v against its prediction pred: v itself when pred is 0,
// else the zigzag of the difference.
func residual(v, pred uint64) uint64 {
	if pred == 0 {
		return v
	}
	d := int64(v - pred)
	return uint64(d<<1) ^ uint64(d>>63)
}

func unresidual(r, pred uint64) uint64 {
	if pred == 0 {
		return r
	}
	return pred + uint64(int64(r>>1)^-int64(r&1))
}

// appendRecord encodes b as a record of slot into l, against st (updated).
// first says the record opens its group: mask and flags are explicit.
func appendRecord(l []byte, b *openBucket, slot int64, first bool, st *recState) []byte {
	vals := [numFields]uint64{b.requests, b.reqBytes, b.respBytes, b.mtls, b.plain, b.connOpen, b.connClose,
		b.errors[0], b.errors[1], b.errors[2], b.errors[3], b.errors[4]}
	b0 := byte(slot)
	if b.mtls != 0 && b.mtls == b.requests {
		b0 |= rbMTLSReqs
		vals[vMTLS] = 0
	}
	if slot != rbRollup {
		if first {
			st.reqBytes, st.respByte = 0, 0
		}
		vals[vReqBytes] = residual(b.reqBytes, st.reqBytes)
		vals[vRespBytes] = residual(b.respBytes, st.respByte)
		st.reqBytes, st.respByte = b.reqBytes, b.respBytes
	}
	var mask uint16
	for i, v := range vals {
		if v != 0 {
			mask |= 1 << i
		}
	}
	if len(b.evidence) > 0 {
		mask |= fEvidence
	}
	flags := packFlags(b.reporters, b.signals, b.l4only)
	if first || mask != st.mask {
		b0 |= rbMask
	}
	if first || flags != uint64(st.flags) {
		b0 |= rbFlags
	}
	if b.sk.Count() > 0 {
		b0 |= rbSketch
	}
	l = append(l, b0)
	if b0&rbMask != 0 {
		l = binary.AppendUvarint(l, uint64(mask))
	}
	for _, v := range vals {
		if v != 0 {
			l = binary.AppendUvarint(l, v)
		}
	}
	if b0&rbFlags != 0 {
		l = binary.AppendUvarint(l, flags)
	}
	if mask&fEvidence != 0 {
		l = binary.AppendUvarint(l, uint64(len(b.evidence)))
		for k, v := range b.evidence {
			l = binary.AppendUvarint(l, uint64(k))
			l = binary.AppendUvarint(l, v)
		}
	}
	if b0&rbSketch != 0 {
		pos := len(l)
		l = append(l, 0)
		if slot == rbRollup {
			l = b.sk.appendPacked(l)
		} else {
			l = b.sk.appendCompact(l)
		}
		if n := len(l) - pos - 1; n < 0x80 {
			l[pos] = byte(n)
		} else {
			sk := append([]byte(nil), l[pos+1:]...)
			l = append(binary.AppendUvarint(l[:pos], uint64(n)), sk...)
		}
	}
	st.mask, st.flags = mask, uint32(flags)
	return l
}

// recordReader walks the records of one group.
type recordReader struct {
	b []byte
	recState
}

func uvarint(b []byte) (uint64, []byte) {
	if x := b[0]; x < 0x80 {
		return uint64(x), b[1:]
	}
	v, p := uvAtSlow(b, 0)
	return v, b[p:]
}

// uvAt decodes the varint at b[p:] and returns it with the offset after
// it; the one-byte case is inlined.
func uvAt(b []byte, p int) (uint64, int) {
	if x := b[p]; x < 0x80 {
		return uint64(x), p + 1
	}
	return uvAtSlow(b, p)
}

func uvAtSlow(b []byte, p int) (uint64, int) {
	v, n := binary.Uvarint(b[p:])
	if n <= 0 {
		panic("graph: corrupt bucket record")
	}
	return v, p + n
}

// next decodes the next record into c and returns its header byte; ok is
// false at the end of the group. The start offset of the record within the
// reader's remaining bytes is the caller's to track when it needs it.
func (r *recordReader) next(c *counters) (b0 byte, ok bool) {
	if len(r.b) == 0 {
		return 0, false
	}
	b0 = r.b[0]
	b := r.b[1:]
	c.ev, c.sk = nil, nil
	// Rollup records neither use nor change the state: without an explicit
	// mask (folded) they hold no counters.
	rollup := b0&rbSlot == rbRollup
	mask, flags := r.mask, uint64(r.flags)
	if rollup {
		mask, flags = 0, 0
	}
	if b0&rbMask != 0 {
		var m uint64
		m, b = uvarint(b)
		mask = uint16(m)
	}
	c.v = [numFields]uint64{}
	p := 0
	for m := mask &^ fEvidence; m != 0; m &= m - 1 {
		v := uint64(b[p])
		if v < 0x80 {
			p++
		} else {
			v, p = uvAtSlow(b, p)
		}
		c.v[bits.TrailingZeros16(m)] = v
	}
	b = b[p:]
	if !rollup {
		c.v[vReqBytes] = unresidual(c.v[vReqBytes], r.reqBytes)
		c.v[vRespBytes] = unresidual(c.v[vRespBytes], r.respByte)
		r.reqBytes, r.respByte = c.v[vReqBytes], c.v[vRespBytes]
	}
	if b0&rbMTLSReqs != 0 {
		c.v[vMTLS] = c.v[vReq]
	}
	if b0&rbFlags != 0 {
		flags, b = uvarint(b)
	}
	c.flags = flags
	if !rollup {
		r.mask, r.flags = mask, uint32(flags)
	}
	if mask&fEvidence != 0 {
		start := b
		var cnt uint64
		cnt, b = uvarint(b)
		for i := uint64(0); i < cnt; i++ {
			_, b = uvarint(b)
			_, b = uvarint(b)
		}
		c.ev = start[:len(start)-len(b)]
	}
	if b0&rbSketch != 0 {
		n, rest := uvarint(b)
		c.sk = rest[:n]
		c.skFull = len(b) - len(rest) + int(n)
		b = rest[n:]
		// Only folded rollups have no explicit mask, and no sum.
		c.packed = b0&rbSlot == rbRollup
		c.noSum = c.packed && b0&rbMask == 0
	}
	r.b = b
	return b0, true
}

// addTo adds the record's counters and evidence (not its sketch) into st.
func (c *counters) addTo(st *Stats) {
	c.addCounters(st)
	c.forEvidence(st.addEvidence)
}

// addToAcc adds the record's counters and evidence (not its sketch) into a.
func (c *counters) addToAcc(a *chAcc) {
	c.addCounters(&a.st)
	c.forEvidence(a.addEvidence)
}

// forEvidence calls fn on each evidence entry of the record.
func (c *counters) forEvidence(fn func(k uint32, n uint64)) {
	if c.ev == nil {
		return
	}
	cnt, b := uvarint(c.ev)
	for i := uint64(0); i < cnt; i++ {
		var k, n uint64
		k, b = uvarint(b)
		n, b = uvarint(b)
		fn(uint32(k), n)
	}
}

// addCounters adds the record's counters (not its evidence nor sketch) into st.
func (c *counters) addCounters(st *Stats) {
	v := &c.v
	st.Requests += v[vReq]
	st.RequestBytes += v[vReqBytes]
	st.ResponseBytes += v[vRespBytes]
	st.MTLSUnits += v[vMTLS]
	st.PlainUnits += v[vPlain]
	st.ConnOpened += v[vConnOpen]
	st.ConnClosed += v[vConnClose]
	for i := range st.Errors {
		st.Errors[i] += v[vErr0+i]
	}
	st.Reporters |= uint16(c.flags >> 3)
	st.Signals |= Signal(c.flags>>1) & 3
	if c.flags&1 != 0 {
		st.L4Only = true
	}
}

// addToBucket adds the record (sketch included) into b, to build rollups.
func (c *counters) addToBucket(b *openBucket) {
	v := &c.v
	b.requests += v[vReq]
	b.reqBytes += v[vReqBytes]
	b.respBytes += v[vRespBytes]
	b.mtls += v[vMTLS]
	b.plain += v[vPlain]
	b.connOpen += v[vConnOpen]
	b.connClose += v[vConnClose]
	for i := range b.errors {
		b.errors[i] += v[vErr0+i]
	}
	b.reporters |= uint16(c.flags >> 3)
	b.signals |= Signal(c.flags>>1) & 3
	b.l4only = b.l4only || c.flags&1 != 0
	if c.ev != nil {
		cnt, e := uvarint(c.ev)
		for i := uint64(0); i < cnt; i++ {
			var k, n uint64
			k, e = uvarint(e)
			n, e = uvarint(e)
			if b.evidence == nil {
				b.evidence = make(map[uint32]uint64, 4)
			}
			b.evidence[uint32(k)] += n
		}
	}
	c.mergeSketchInto(&b.sk)
}

// Compact sketch encoding, used inside the graph's logs only (the public
// AppendBinary format is unchanged):
//
//	varint nbins<<1 | hasZero; [varint zero]; float32 sum; [zigzag first key;
//	one varint per bin: gap<<3 | count (count 1..7), or gap<<3 followed by a
//	varint count]
//
// where gap is the number of empty keys since the previous bin. Count is the
// sum of the bins; min and max are those of the lowest and highest bin (0 with
// zero values), so closed buckets keep them within RelativeAccuracy, not
// exactly, and the sum to float32 precision.
func (s *Sketch) appendCompact(b []byte) []byte {
	nb := 0
	for _, c := range s.counts {
		if c != 0 {
			nb++
		}
	}
	h := uint64(nb) << 1
	if s.zero != 0 {
		h |= 1
	}
	b = binary.AppendUvarint(b, h)
	if s.zero != 0 {
		b = binary.AppendUvarint(b, s.zero)
	}
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(s.sum)))
	prev := int32(0)
	started := false
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		k := s.offset + int32(i)
		var gap uint64
		if !started {
			b = binary.AppendVarint(b, int64(k))
			started = true
		} else {
			gap = uint64(k - prev - 1)
		}
		prev = k
		if c <= 7 {
			b = binary.AppendUvarint(b, gap<<3|c)
		} else {
			b = binary.AppendUvarint(b, gap<<3)
			b = binary.AppendUvarint(b, c)
		}
	}
	return b
}

// mergeCompact merges the compact sketch b (exactly one) into s.
func (s *Sketch) mergeCompact(b []byte) { s.mergeCompactSum(b, true) }

// compactSumAt is the offset of a compact sketch's float32 sum.
func compactSumAt(b []byte) int {
	h, rest := uvarint(b)
	if h&1 != 0 {
		_, rest = uvarint(rest)
	}
	return len(b) - len(rest)
}

// sketchHeader reads the header the compact and packed encodings share: the
// bin count, the zero count and (unless folded) the float32 sum.
func sketchHeader(b []byte, hasSum bool) (nb, zero uint64, sum float64, rest []byte) {
	h, b := uvarint(b)
	if h&1 != 0 {
		zero, b = uvarint(b)
	}
	if hasSum {
		sum = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		b = b[4:]
	}
	return h >> 1, zero, sum, b
}

// binBounds is s's lowest and highest bin before a merge, and whether they
// hold counts.
type binBounds struct {
	lo, hi     int32
	okLo, okHi bool
}

func (s *Sketch) bounds() binBounds {
	if s.count == 0 || len(s.counts) == 0 {
		return binBounds{}
	}
	return binBounds{lo: s.offset, hi: s.offset + int32(len(s.counts)) - 1, okLo: s.counts[0] != 0, okHi: s.counts[len(s.counts)-1] != 0}
}

// mergedRange is the min and max an encoded sketch with bins first..last
// contributes. Bin representatives cost an Exp each: they are skipped when
// s's own lowest (highest) bin, before the merge, already holds a smaller
// (larger) value.
func (s *Sketch) mergedRange(bd binBounds, zero uint64, first, last int32) (mn, mx float64) {
	switch {
	case zero > 0:
	case bd.okLo && first > bd.lo:
		mn = s.min
	default:
		mn = sketchValue(first)
	}
	if bd.okHi && last < bd.hi {
		mx = s.max
	} else {
		mx = sketchValue(last)
	}
	return mn, mx
}

// mergeCompactSum merges a compact sketch, which holds its sum or, folded,
// not: then the sum is estimated from the bins, within RelativeAccuracy.
func (s *Sketch) mergeCompactSum(b []byte, hasSum bool) {
	nb, zero, sum, b := sketchHeader(b, hasSum)
	estimate := 0.0
	count := zero
	mn, mx := 0.0, 0.0
	if nb > 0 {
		bd := s.bounds()
		k64, n := binary.Varint(b)
		b = b[n:]
		first := int32(k64)
		s.addKey(first, 0) // keys ascend: s only grows upwards from here
		k := first - 1
		for p, i := 0, uint64(0); i < nb; i++ {
			// uvAt by hand: the call would not be inlined.
			v := uint64(b[p])
			if v < 0x80 {
				p++
			} else {
				v, p = uvAtSlow(b, p)
			}
			c := v & 7
			if c == 0 {
				c, p = uvAt(b, p)
			}
			k += int32(v>>3) + 1
			j := uint(k - s.offset)
			if j >= uint(len(s.counts)) {
				// Grow with headroom, not bin by bin.
				s.addKey(k+32, 0)
			}
			s.counts[j] += c
			count += c
			if !hasSum {
				estimate += float64(c) * sketchValue(k)
			}
		}
		mn, mx = s.mergedRange(bd, zero, first, k)
	}
	if !hasSum {
		sum = estimate
	}
	s.mergeHeader(count, zero, sum, mn, mx)
}

// Packed sketch encoding, for rollup records: a rollup merges a minute of
// buckets, so its bins are many and close together, and bit-level codes take
// about half the bytes of the compact encoding's byte per bin. Same header
// as the compact encoding (so compactSumAt and folding apply), then:
//
//	[zigzag first key; byte kGap<<4 | kCnt; bit stream, LSB first: per bin
//	the gap to the previous bin (not for the first) and count-1, each in
//	code kGap / kCnt (see codeLen), chosen per sketch as the shortest]
func (s *Sketch) appendPacked(b []byte) []byte {
	nb := 0
	for _, c := range s.counts {
		if c != 0 {
			nb++
		}
	}
	h := uint64(nb) << 1
	if s.zero != 0 {
		h |= 1
	}
	b = binary.AppendUvarint(b, h)
	if s.zero != 0 {
		b = binary.AppendUvarint(b, s.zero)
	}
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(s.sum)))
	if nb == 0 {
		return b
	}
	// Cost of every code, for gaps and counts, in one pass.
	var gapBits, cntBits [16]int
	first := true
	prev := int32(0)
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		k := s.offset + int32(i)
		for o := range uint(16) {
			if !first {
				gapBits[o] += codeLen(uint64(k-prev-1), o)
			}
			cntBits[o] += codeLen(c-1, o)
		}
		first = false
		prev = k
	}
	kg, kc := uint(0), uint(0)
	for o := range uint(16) {
		if gapBits[o] < gapBits[kg] {
			kg = o
		}
		if cntBits[o] < cntBits[kc] {
			kc = o
		}
	}
	w := bitWriter{b: b}
	first = true
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		k := s.offset + int32(i)
		if first {
			w.b = binary.AppendVarint(w.b, int64(k))
			w.b = append(w.b, byte(kg<<4|kc))
		} else {
			w.code(uint64(k-prev-1), kg)
		}
		w.code(c-1, kc)
		first = false
		prev = k
	}
	return w.flush()
}

// Codes of the packed encoding, by number: 0-11 are Exp-Golomb codes of
// that order, 12-15 Rice codes of order 0-3 (x>>k zeros, a one, x's k low
// bits), shorter for the small, geometric-like gaps and counts of a
// minute's bins. Rice codes longer than maxRiceQ zeros are never chosen.
const (
	riceCode0 = 12
	maxRiceQ  = 64
)

// codeLen is the length in bits of x's code number c.
func codeLen(x uint64, c uint) int {
	if c < riceCode0 {
		return expGolombLen(x, c)
	}
	k := c - riceCode0
	if x>>k > maxRiceQ {
		return 1 << 20 // longer than any Exp-Golomb code: never chosen
	}
	return int(x>>k) + 1 + int(k)
}

func (w *bitWriter) code(x uint64, c uint) {
	if c < riceCode0 {
		w.expGolomb(x, c)
		return
	}
	k := c - riceCode0
	w.write(0, uint(x>>k))
	w.write(1, 1)
	w.write(x, k)
}

func (r *bitReader) code(c uint) uint64 {
	if c < riceCode0 {
		return r.expGolomb(c)
	}
	k := c - riceCode0
	q := uint64(0)
	for r.read(1) == 0 {
		if q++; q > maxRiceQ {
			panic("graph: corrupt packed sketch")
		}
	}
	return q<<k | r.read(k)
}

// expGolombLen is the length in bits of x's Exp-Golomb code of order k.
func expGolombLen(x uint64, k uint) int {
	n := bits.Len64(x>>k+1) - 1
	return 2*n + 1 + int(k)
}

type bitWriter struct {
	b    []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) write(v uint64, n uint) {
	for n > 0 {
		m := min(n, 32)
		w.acc |= (v & (1<<m - 1)) << w.nacc
		w.nacc += m
		v >>= m
		n -= m
		for w.nacc >= 8 {
			w.b = append(w.b, byte(w.acc))
			w.acc >>= 8
			w.nacc -= 8
		}
	}
}

// expGolomb writes x of order k: n zeros and a one, the n bits of
// (x>>k)+1 below its top bit, then x's k low bits.
func (w *bitWriter) expGolomb(x uint64, k uint) {
	v := x>>k + 1
	n := uint(bits.Len64(v) - 1)
	w.write(0, n)
	w.write(1, 1)
	w.write(v, n) // the top bit is cut by write's mask
	w.write(x, k)
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.b = append(w.b, byte(w.acc))
	}
	return w.b
}

type bitReader struct {
	b    []byte
	acc  uint64
	nacc uint
}

// read returns the next n <= 56 bits.
func (r *bitReader) read(n uint) uint64 {
	for r.nacc < n {
		var x byte
		if len(r.b) > 0 {
			x, r.b = r.b[0], r.b[1:]
		}
		r.acc |= uint64(x) << r.nacc
		r.nacc += 8
	}
	v := r.acc & (1<<n - 1)
	r.acc >>= n
	r.nacc -= n
	return v
}

func (r *bitReader) readLong(n uint) uint64 {
	if n <= 56 {
		return r.read(n)
	}
	lo := r.read(32)
	return lo | r.read(n-32)<<32
}

func (r *bitReader) expGolomb(k uint) uint64 {
	n := uint(0)
	for r.read(1) == 0 {
		if n++; n > 64 {
			panic("graph: corrupt packed sketch")
		}
	}
	v := uint64(1)<<n | r.readLong(n)
	return (v-1)<<k | r.readLong(k)
}

// mergePackedSum merges a packed sketch, with its sum or, folded, without
// (then estimated from the bins), exactly as mergeCompactSum does the compact one.
func (s *Sketch) mergePackedSum(b []byte, hasSum bool) {
	nb, zero, sum, b := sketchHeader(b, hasSum)
	estimate := 0.0
	count := zero
	mn, mx := 0.0, 0.0
	if nb > 0 {
		bd := s.bounds()
		k64, n := binary.Varint(b)
		kg, kc := uint(b[n]>>4), uint(b[n]&15)
		r := bitReader{b: b[n+1:]}
		first := int32(k64)
		s.addKey(first, 0)
		k := first
		for i := uint64(0); i < nb; i++ {
			if i > 0 {
				k += int32(r.code(kg)) + 1
			}
			c := r.code(kc) + 1
			j := uint(k - s.offset)
			if j >= uint(len(s.counts)) {
				s.addKey(k+32, 0)
			}
			s.counts[j] += c
			count += c
			if !hasSum {
				estimate += float64(c) * sketchValue(k)
			}
		}
		mn, mx = s.mergedRange(bd, zero, first, k)
	}
	if !hasSum {
		sum = estimate
	}
	s.mergeHeader(count, zero, sum, mn, mx)
}
