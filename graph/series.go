package graph

import (
	"encoding/binary"
	"sort"
)

// series holds one channel of one edge: a few open buckets with full
// structures, and closed buckets as compact varint records in one byte log.
type series struct {
	open []*openBucket
	log  []byte
	recs []rec // index into log, ascending idx except for rare late records
}

type rec struct {
	idx int64
	off uint32
}

type openBucket struct {
	idx       int64
	requests  uint64
	errors    ErrorCounts
	reqBytes  uint64
	respBytes uint64
	connOpen  uint64
	connClose uint64
	mtls      uint64
	plain     uint64
	reporters uint16
	signals   Signal
	l4only    bool
	sk        Sketch
	evidence  map[uint32]uint64 // kind<<16 | code
}

const (
	evCode  = 1
	evGRPC  = 2
	evFlag  = 3
	evShift = 16
)

func (s *series) openBucket(idx int64) *openBucket {
	for i := len(s.open) - 1; i >= 0; i-- {
		if s.open[i].idx == idx {
			return s.open[i]
		}
	}
	return nil
}

// free list of open buckets shared by all series: keeps the hot path
// allocation-free once buckets are recycled.
var bucketPool = make(chan *openBucket, 4096)

func (s *series) newOpen(idx int64) *openBucket {
	var b *openBucket
	select {
	case b = <-bucketPool:
	default:
		b = &openBucket{}
	}
	b.idx = idx
	s.open = append(s.open, b)
	return b
}

func (b *openBucket) add(o *Observation) {
	b.requests += o.Requests
	for i, v := range o.Errors {
		b.errors[i] += v
	}
	b.reqBytes += o.RequestBytes
	b.respBytes += o.ResponseBytes
	b.connOpen += o.ConnOpened
	b.connClose += o.ConnClosed
	units := o.Requests
	if units == 0 {
		units = o.ConnOpened
	}
	if units == 0 && o.RequestBytes+o.ResponseBytes > 0 {
		units = 1
	}
	switch o.Security {
	case SecurityMTLS:
		b.mtls += units
	case SecurityPlaintext:
		b.plain += units
	}
	b.reporters |= 1 << o.Reporter
	b.signals |= o.Signal
	b.l4only = b.l4only || o.L4Only
	if o.Latency != nil {
		b.sk.Merge(o.Latency)
	} else if o.Requests > 0 && (o.LatencyMs > 0 || o.Protocol != ProtoTCP) {
		b.sk.Add(o.LatencyMs, o.Requests)
	}
	if errs := o.Errors.Total(); errs > 0 {
		if o.ResponseCode != 0 {
			b.addEvidence(evCode, uint32(o.ResponseCode), errs)
		}
		if o.GRPCStatus != 0 {
			b.addEvidence(evGRPC, uint32(o.GRPCStatus), errs)
		}
		for f := o.ResponseFlags; f != 0; f &= f - 1 {
			bit := uint32(0)
			for x := f & -f; x > 1; x >>= 1 {
				bit++
			}
			b.addEvidence(evFlag, bit, errs)
		}
	}
}

func (b *openBucket) addEvidence(kind, code uint32, n uint64) {
	if b.evidence == nil {
		b.evidence = make(map[uint32]uint64, 4)
	}
	b.evidence[kind<<evShift|code&0xffff] += n
}

func (b *openBucket) reset() {
	sk := b.sk
	sk.Reset()
	ev := b.evidence
	clear(ev)
	*b = openBucket{sk: sk, evidence: ev}
}

// accumulate adds the bucket into st.
func (b *openBucket) accumulate(st *Stats) {
	st.Requests += b.requests
	for i, v := range b.errors {
		st.Errors[i] += v
	}
	st.RequestBytes += b.reqBytes
	st.ResponseBytes += b.respBytes
	st.ConnOpened += b.connOpen
	st.ConnClosed += b.connClose
	st.MTLSUnits += b.mtls
	st.PlainUnits += b.plain
	st.Reporters |= b.reporters
	st.Signals |= b.signals
	st.L4Only = st.L4Only || b.l4only
	st.Latency.Merge(&b.sk)
	for k, v := range b.evidence {
		st.addEvidence(k, v)
	}
}

func (st *Stats) addEvidence(k uint32, v uint64) {
	code := uint16(k & 0xffff)
	switch k >> evShift {
	case evCode:
		if st.Codes == nil {
			st.Codes = map[uint16]uint64{}
		}
		st.Codes[code] += v
	case evGRPC:
		if st.GRPCCodes == nil {
			st.GRPCCodes = map[uint16]uint64{}
		}
		st.GRPCCodes[code] += v
	case evFlag:
		if st.Flags == nil {
			st.Flags = map[string]uint64{}
		}
		if int(code) < len(flagNames) {
			st.Flags[flagNames[code]] += v
		}
	}
}

// Record layout (all varints): idx, presence mask, then the present fields in
// mask order, then the sketch when present.
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
	fReporters
	fSignals
	fL4
	fEvidence
	fSketch
)

func (s *series) encode(b *openBucket) {
	off := uint32(len(s.log))
	var mask uint64
	vals := [...]uint64{b.requests, b.errors[0], b.errors[1], b.errors[2], b.errors[3], b.errors[4],
		b.reqBytes, b.respBytes, b.connOpen, b.connClose, b.mtls, b.plain, uint64(b.reporters), uint64(b.signals)}
	for i, v := range vals {
		if v != 0 {
			mask |= 1 << i
		}
	}
	if b.l4only {
		mask |= fL4
	}
	if len(b.evidence) > 0 {
		mask |= fEvidence
	}
	if b.sk.Count() > 0 {
		mask |= fSketch
	}
	l := binary.AppendUvarint(s.log, uint64(mask))
	for _, v := range vals {
		if v != 0 {
			l = binary.AppendUvarint(l, v)
		}
	}
	if mask&fEvidence != 0 {
		l = binary.AppendUvarint(l, uint64(len(b.evidence)))
		for k, v := range b.evidence {
			l = binary.AppendUvarint(l, uint64(k))
			l = binary.AppendUvarint(l, v)
		}
	}
	if mask&fSketch != 0 {
		l = b.sk.AppendBinary(l)
	}
	s.log = l
	s.recs = append(s.recs, rec{idx: b.idx, off: off})
}

// decodeInto adds the record at off into st.
func (s *series) decodeInto(off uint32, st *Stats) {
	b := s.log[off:]
	mask, n := binary.Uvarint(b)
	b = b[n:]
	var vals [14]uint64
	for i := range vals {
		if mask&(1<<i) != 0 {
			v, n := binary.Uvarint(b)
			b = b[n:]
			vals[i] = v
		}
	}
	st.Requests += vals[0]
	for i := 0; i < int(NumErrorClasses); i++ {
		st.Errors[i] += vals[1+i]
	}
	st.RequestBytes += vals[6]
	st.ResponseBytes += vals[7]
	st.ConnOpened += vals[8]
	st.ConnClosed += vals[9]
	st.MTLSUnits += vals[10]
	st.PlainUnits += vals[11]
	st.Reporters |= uint16(vals[12])
	st.Signals |= Signal(vals[13])
	if mask&fL4 != 0 {
		st.L4Only = true
	}
	if mask&fEvidence != 0 {
		cnt, n := binary.Uvarint(b)
		b = b[n:]
		for i := uint64(0); i < cnt; i++ {
			k, n := binary.Uvarint(b)
			b = b[n:]
			v, n := binary.Uvarint(b)
			b = b[n:]
			st.addEvidence(uint32(k), v)
		}
	}
	if mask&fSketch != 0 {
		// The log is written only by encode; a failure here is a bug.
		if _, err := st.Latency.MergeBinary(b); err != nil {
			panic("graph: " + err.Error())
		}
	}
}

// closeBefore encodes open buckets with idx < final into the log.
func (s *series) closeBefore(final int64) {
	if len(s.open) > 1 {
		sort.Slice(s.open, func(i, j int) bool { return s.open[i].idx < s.open[j].idx })
	}
	keep := s.open[:0]
	for _, b := range s.open {
		if b.idx >= final {
			keep = append(keep, b)
			continue
		}
		s.encode(b)
		b.reset()
		select {
		case bucketPool <- b:
		default:
		}
	}
	clear(s.open[len(keep):])
	s.open = keep
}

// trim drops closed records with idx <= oldest.
func (s *series) trim(oldest int64) {
	n := 0
	for n < len(s.recs) && s.recs[n].idx <= oldest {
		n++
	}
	if n == 0 {
		return
	}
	if n == len(s.recs) {
		s.recs = s.recs[:0]
		s.log = s.log[:0]
		if cap(s.log) > 4096 {
			s.log = nil
			s.recs = nil
		}
		return
	}
	cut := s.recs[n].off
	// Copy down rather than reslice so the dropped prefix is freed.
	copy(s.log, s.log[cut:])
	s.log = s.log[:len(s.log)-int(cut)]
	copy(s.recs, s.recs[n:])
	s.recs = s.recs[:len(s.recs)-n]
	for i := range s.recs {
		s.recs[i].off -= cut
	}
	if cap(s.log) > 2*len(s.log)+1024 {
		s.log = append([]byte(nil), s.log...)
	}
}

func (s *series) empty() bool { return len(s.open) == 0 && len(s.recs) == 0 }

// sum adds every bucket with from <= idx < to into st and reports whether any was found.
func (s *series) sum(from, to int64, st *Stats) bool {
	found := false
	// Records are appended in time order; search the first in range.
	lo, hi := 0, len(s.recs)
	for lo < hi {
		m := (lo + hi) / 2
		if s.recs[m].idx < from {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < len(s.recs) && s.recs[i].idx < to; i++ {
		s.decodeInto(s.recs[i].off, st)
		found = true
	}
	for _, b := range s.open {
		if b.idx >= from && b.idx < to {
			b.accumulate(st)
			found = true
		}
	}
	return found
}

// bucketSeries fills out[i] with bucket from+i, for per-bucket history.
func (s *series) bucketSeries(from int64, out []Stats) {
	to := from + int64(len(out))
	for _, r := range s.recs {
		if r.idx >= from && r.idx < to {
			s.decodeInto(r.off, &out[r.idx-from])
		}
	}
	for _, b := range s.open {
		if b.idx >= from && b.idx < to {
			b.accumulate(&out[b.idx-from])
		}
	}
}
