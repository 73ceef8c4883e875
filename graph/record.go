package graph

import (
	"encoding/binary"
	"math"
)

// Closed-bucket records. A series' log is a sequence of groups (one per
// rollup span, ~1 minute); a group holds the raw records of its closed buckets
// in time order, then, once the group is complete, one rollup record with the
// merged latency sketch of the whole group. Counters are only ever kept in the
// raw records, so they stay exact at bucket resolution; the rollup exists so a
// snapshot merges one sketch per minute instead of one per bucket.
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
// varint, the evidence (count, then key/value pairs) and the sketch.
const (
	rbSlot     = 0x0f
	rbRollup   = 0x0f
	rbSketch   = 1 << 4
	rbMask     = 1 << 5
	rbMTLSReqs = 1 << 6
	rbFlags    = 1 << 7

	maxGroupBuckets = 15
)

// Field mask bits, in encoding order.
const (
	fReq = 1 << iota
	fErr0
	fErr1
	fErr2
	fErr3
	fErr4
	fReqBytes
	fRespBytes
	fConnOpen
	fConnClose
	fMTLS
	fPlain
	fEvidence
	numFields = 12 // counters before fEvidence
)

// counters is one decoded record's fields.
type counters struct {
	v     [numFields]uint64 // req, err0..4, reqBytes, respBytes, connOpen, connClose, mtls, plain
	flags uint64            // reporters<<3 | signals<<1 | l4
	ev    []byte            // evidence entries (count first), nil when none
	sk    []byte            // compact sketch, nil when none
}

func packFlags(reporters uint16, signals Signal, l4 bool) uint64 {
	v := uint64(reporters)<<3 | uint64(signals&3)<<1
	if l4 {
		v |= 1
	}
	return v
}

// appendRecord encodes b as a raw record of slot into l. prevMask/prevFlags
// are the previous raw record's in the group (first: explicit), updated.
func appendRecord(l []byte, b *openBucket, slot int64, first bool, prevMask *uint16, prevFlags *uint64) []byte {
	vals := [numFields]uint64{b.requests, b.errors[0], b.errors[1], b.errors[2], b.errors[3], b.errors[4],
		b.reqBytes, b.respBytes, b.connOpen, b.connClose, b.mtls, b.plain}
	b0 := byte(slot)
	if b.mtls != 0 && b.mtls == b.requests {
		b0 |= rbMTLSReqs
		vals[10] = 0
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
	if first || mask != *prevMask {
		b0 |= rbMask
	}
	if first || flags != *prevFlags {
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
		l = b.sk.appendCompact(l)
	}
	*prevMask, *prevFlags = mask, flags
	return l
}

// recordReader walks the records of one group.
type recordReader struct {
	b     []byte
	mask  uint16
	flags uint64
}

func uvarint(b []byte) (uint64, []byte) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), b[1:]
	}
	v, n := binary.Uvarint(b)
	if n <= 0 {
		// The log is written only by this package; a failure is a bug.
		panic("graph: corrupt bucket record")
	}
	return v, b[n:]
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
	if b0&rbSlot == rbRollup {
		c.v = [numFields]uint64{}
		c.flags = 0
	} else {
		if b0&rbMask != 0 {
			var m uint64
			m, b = uvarint(b)
			r.mask = uint16(m)
		}
		for i := range c.v {
			if r.mask&(1<<i) != 0 {
				c.v[i], b = uvarint(b)
			} else {
				c.v[i] = 0
			}
		}
		if b0&rbMTLSReqs != 0 {
			c.v[10] = c.v[0]
		}
		if b0&rbFlags != 0 {
			r.flags, b = uvarint(b)
		}
		c.flags = r.flags
		if r.mask&fEvidence != 0 {
			start := b
			var cnt uint64
			cnt, b = uvarint(b)
			for i := uint64(0); i < cnt; i++ {
				_, b = uvarint(b)
				_, b = uvarint(b)
			}
			c.ev = start[:len(start)-len(b)]
		}
	}
	if b0&rbSketch != 0 {
		n := skipCompact(b)
		c.sk = b[:n]
		b = b[n:]
	}
	r.b = b
	return b0, true
}

// addTo adds the record's counters and evidence (not its sketch) into st.
func (c *counters) addTo(st *Stats) {
	v := &c.v
	st.Requests += v[0]
	st.Errors[0] += v[1]
	st.Errors[1] += v[2]
	st.Errors[2] += v[3]
	st.Errors[3] += v[4]
	st.Errors[4] += v[5]
	st.RequestBytes += v[6]
	st.ResponseBytes += v[7]
	st.ConnOpened += v[8]
	st.ConnClosed += v[9]
	st.MTLSUnits += v[10]
	st.PlainUnits += v[11]
	st.Reporters |= uint16(c.flags >> 3)
	st.Signals |= Signal(c.flags>>1) & 3
	if c.flags&1 != 0 {
		st.L4Only = true
	}
	if c.ev != nil {
		cnt, b := uvarint(c.ev)
		for i := uint64(0); i < cnt; i++ {
			var k, n uint64
			k, b = uvarint(b)
			n, b = uvarint(b)
			st.addEvidence(uint32(k), n)
		}
	}
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

// skipCompact is the length of the compact sketch at the start of b.
func skipCompact(b []byte) int {
	n := len(b)
	h, b := uvarint(b)
	if h&1 != 0 {
		_, b = uvarint(b)
	}
	b = b[4:]
	nb := h >> 1
	if nb > 0 {
		_, k := binary.Varint(b)
		b = b[k:]
	}
	for i := uint64(0); i < nb; i++ {
		// The count bits are in the varint's first byte whatever its length.
		c := b[0] & 7
		for b[0]&0x80 != 0 {
			b = b[1:]
		}
		b = b[1:]
		if c == 0 {
			_, b = uvarint(b)
		}
	}
	return n - len(b)
}

// mergeCompact merges a compact sketch (exactly one, as skipCompact delimits) into s.
func (s *Sketch) mergeCompact(b []byte) {
	h, b := uvarint(b)
	var zero uint64
	if h&1 != 0 {
		zero, b = uvarint(b)
	}
	sum := float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	b = b[4:]
	nb := h >> 1
	count := zero
	mn, mx := 0.0, 0.0
	if nb > 0 {
		// Bin representatives cost an Exp each: skip them when s's own lowest
		// (highest) bin already holds a smaller (larger) value.
		var lo, hi int32
		okLo, okHi := false, false
		if s.count > 0 && len(s.counts) > 0 {
			lo, hi = s.offset, s.offset+int32(len(s.counts))-1
			okLo, okHi = s.counts[0] != 0, s.counts[len(s.counts)-1] != 0
		}
		k64, n := binary.Varint(b)
		b = b[n:]
		k := int32(k64)
		first := k
		for i := uint64(0); i < nb; i++ {
			var v uint64
			v, b = uvarint(b)
			c := v & 7
			if c == 0 {
				c, b = uvarint(b)
			}
			if i > 0 {
				k += int32(v>>3) + 1
			}
			s.addKey(k, c)
			count += c
		}
		switch {
		case zero > 0:
		case okLo && first > lo:
			mn = s.min
		default:
			mn = sketchValue(first)
		}
		if okHi && k < hi {
			mx = s.max
		} else {
			mx = sketchValue(k)
		}
	}
	s.mergeHeader(count, zero, sum, mn, mx)
}
