package graph

import (
	"encoding/binary"
	"math"
	"sort"
	"sync/atomic"
)

// series holds one channel of one edge: a few open buckets with full
// structures, and closed buckets as compact records in one byte log, grouped
// by rollup span (see record.go). Closed buckets arrive in strictly
// increasing order: a bucket is encoded once it is final, and data for a
// final bucket is folded into an open one, so records never go back in time.
type series struct {
	// Fields a snapshot reads come first, in one cache line.

	// win caches the sum of the whole, complete groups of the last window
	// read (see sum); snapshots under the read lock race to fill it, hence an
	// atomic pointer to an entry that is immutable once published.
	win  atomic.Pointer[winCache]
	open []*openBucket
	// groups.at(i) is the offset in log of group number base+i, which ends
	// where the next begins; a minute without data costs an index entry, a
	// minute with data no more.
	groups     groupIndex
	base       int64 // group number of groups[0]
	folded     int64 // groups numbered below this hold no raw sketches any more
	lastRolled bool  // the last group has its rollup (all groups before it do)
	gen        uint8 // logArena generation log was carved in
	refSet     bool
	nrecs      int32 // raw records held
	log        []byte
	enc        recState
	// ref is the state every group's raw records start from (see recState),
	// set from the series' first record and never changed, so that every
	// group, whenever written, reads with it.
	ref recState
}

// winCache is the sum of groups [gFrom, gTo) of a series, all complete when
// it was built: closed groups never change (maintain only drops groups older
// than any window, and folding keeps their sums), so it stays valid until the
// window's whole minutes move on.
type winCache struct {
	gFrom, gTo int64
	// rec[:recLen] is the groups' counters and evidence as one rollup-format
	// record, empty when they hold no data, and rec[recLen:binsEnd] their
	// latency bins from binLo as little-endian uint16s: compact, as reading
	// a window is bound by memory traffic, and added without decoding. Bins
	// that overflow 16 bits stay a compact sketch in the record (dense16
	// false). rec[binsEnd:] is a copy of group gFrom-1 when head is set, so
	// that the window's ragged start is read from here too, not the log.
	rec         []byte
	recLen      int
	binsEnd     int
	dense16     bool
	binLo       int32
	zero, count uint64
	sum, lo, hi float64
	// head[k-1] is where a window starting at slot k of group gFrom-1 (the
	// group its start cuts) begins reading it: the first raw record of a
	// slot >= k and the reader's state there, so the group's rollup and the
	// records before the window are not decoded. nil when that group was
	// missing or folded; only valid while it is not folded.
	head []headPos
}

type headPos struct {
	off uint32
	st  recState
}

// addTo adds the cached sum into a.
func (w *winCache) addTo(a *chAcc) {
	var c counters
	r := recordReader{b: w.rec[:w.recLen]}
	r.next(&c)
	c.addToAcc(a)
	st := &a.st
	if !w.dense16 {
		c.mergeSketchInto(&st.Latency)
		return
	}
	if w.count == 0 {
		return
	}
	sk := &st.Latency
	sk.mergeHeader(w.count, w.zero, w.sum, w.lo, w.hi)
	bins := w.rec[w.recLen:w.binsEnd]
	n := int32(len(bins) / 2)
	if n == 0 {
		return
	}
	sk.addKey(w.binLo, 0)
	sk.addKey(w.binLo+n-1, 0)
	dst := sk.counts[w.binLo-sk.offset:][:n]
	for i := range dst {
		dst[i] += uint64(binary.LittleEndian.Uint16(bins[2*i:]))
	}
}

// winArena allocates the window caches that one snapshot builds from a few
// large chunks, in the order it visits series: later snapshots read them in
// that order, as streams, rather than with a cache miss per allocation.
// Chunks are freed once every cache in them has been replaced.
type winArena struct {
	ents    []winCache
	bytes   []byte
	heads   []headPos
	scratch []byte
}

func (a *winArena) entry() *winCache {
	if len(a.ents) == 0 {
		a.ents = make([]winCache, 64)
	}
	w := &a.ents[0]
	a.ents = a.ents[1:]
	return w
}

// take returns n bytes, capped at n.
func (a *winArena) take(n int) []byte {
	if n > len(a.bytes) {
		if n > 4<<10 {
			return make([]byte, n)
		}
		a.bytes = make([]byte, 64<<10)
	}
	b := a.bytes[:n:n]
	a.bytes = a.bytes[n:]
	return b
}

func (a *winArena) headPositions(n int) []headPos {
	if n > len(a.heads) {
		if n > 64 {
			return make([]headPos, n)
		}
		a.heads = make([]headPos, 1024)
	}
	h := a.heads[:n:n]
	a.heads = a.heads[n:]
	return h
}

// minCachedGroups is the fewest whole groups worth caching: with one, the
// cache would merely copy the rollup record.
const minCachedGroups = 2

// layout is how a graph cuts series into groups, shared by its series.
type layout struct {
	n       int64 // buckets per group
	keepRaw int64 // buckets for which raw (per-bucket) sketches are kept
	// Rollup building and log storage, under the graph's write lock only.
	acc   openBucket
	buf   []byte
	arena logArena
}

// logArena carves series logs out of large shared chunks, sized to what
// each log holds plus about a minute of growth. Logs are most of the
// graph's memory, and one allocation per log would round each up to its
// size class (up to a fifth more) and keep the largest size it ever had.
// Each time the window drops a minute every series rewrites its log anyway
// (see maintain); the first rewrite of a generation moves the log to the
// new generation's chunks, so the old chunks, with the room that logs
// outgrew, are freed whole.
type logArena struct {
	free  []byte // rest of the current chunk
	gen   uint8  // current generation; series.gen says where a log lives
	chunk int    // size of the next chunk
	epoch int64  // group number of the window's start when gen was bumped
}

const (
	minLogChunk = 16 << 10
	maxLogChunk = 1 << 20
)

// carve returns an empty slice of capacity n, exactly.
func (a *logArena) carve(n int) []byte {
	if n > len(a.free) {
		if n > maxLogChunk/4 {
			return make([]byte, 0, n)
		}
		a.chunk = min(max(a.chunk*2, minLogChunk), maxLogChunk)
		a.free = make([]byte, max(a.chunk, n))
	}
	b := a.free[:0:n]
	a.free = a.free[n:]
	return b
}

// reserve returns room for at least n bytes (all of the chunk's rest when
// it fits) without handing it out: commit says how much was used.
func (a *logArena) reserve(n int) []byte {
	if n > len(a.free) {
		if n > maxLogChunk/4 {
			return make([]byte, n)
		}
		a.chunk = min(max(a.chunk*2, minLogChunk), maxLogChunk)
		a.free = make([]byte, max(a.chunk, n))
	}
	return a.free
}

// commit hands out the first n bytes (at most all) of what reserve
// returned, as a slice of length used.
func (a *logArena) commit(b []byte, used, n int) []byte {
	n = min(n, len(b))
	if len(a.free) > 0 && len(b) > 0 && &b[0] == &a.free[0] {
		a.free = a.free[n:]
	}
	return b[:used:n]
}

// bump starts a new generation; chunks are handed out smallest first again
// so that small graphs stay small.
func (a *logArena) bump() {
	a.gen++
	a.free = nil
	a.chunk = 0
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
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
	b.accumulateCounters(st)
	for k, v := range b.evidence {
		st.addEvidence(k, v)
	}
}

// accumulateAcc adds the bucket into a.
func (b *openBucket) accumulateAcc(a *chAcc) {
	b.accumulateCounters(&a.st)
	for k, v := range b.evidence {
		a.addEvidence(k, v)
	}
}

// accumulateCounters adds all but the evidence of the bucket into st.
func (b *openBucket) accumulateCounters(st *Stats) {
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

// encode appends b as a raw record; a bucket of a new group rolls up the
// previous group first (it is complete, records being in time order).
func (s *series) encode(b *openBucket, lay *layout) {
	gnum := floorDiv(b.idx, lay.n)
	first := false
	if s.groups.len() == 0 || s.base+int64(s.groups.len())-1 != gnum {
		if s.groups.len() == 0 {
			s.base = gnum
			s.folded = gnum
		} else if !s.lastRolled {
			s.roll(lay)
		}
		for s.base+int64(s.groups.len()) <= gnum {
			s.groups.push(len(s.log))
		}
		s.lastRolled = false
		first = true
	}
	if first {
		if !s.refSet {
			// The first record as its own prediction, error fields aside:
			// most records look like it.
			st := recState{reqBytes: b.reqBytes, respByte: b.respBytes}
			lay.buf = appendRecord(lay.buf[:0], b, 0, false, &st)
			st.mask &= 1<<vErr0 - 1
			s.ref, s.refSet = st, true
		}
		s.enc = s.ref
	}
	// Encoded aside first so the log grows by exactly what it needs.
	lay.buf = appendRecord(lay.buf[:0], b, b.idx-gnum*lay.n, false, &s.enc)
	s.growLog(len(lay.buf), lay)
	s.log = append(s.log, lay.buf...)
	s.nrecs++
}

// growLog makes room for n more bytes, moving the log to a region of the
// arena with the usual headroom.
func (s *series) growLog(n int, lay *layout) {
	if cap(s.log)-len(s.log) >= n {
		return
	}
	l := lay.arena.carve(len(s.log) + n + s.headroom())
	s.log = append(l, s.log...)
	s.gen = lay.arena.gen
}

// headroom is the room a log gets beyond what it holds: about what it
// grows by in a minute, net of the raw sketches a minute's fold strips,
// guessed as half its larger last two groups.
func (s *series) headroom() int {
	h := 0
	for i := max(s.groups.len()-2, 0); i < s.groups.len(); i++ {
		h = max(h, len(s.groupBytes(i)))
	}
	return h/2 + 16
}

// reader reads group i.
func (s *series) reader(i int) recordReader {
	return recordReader{b: s.groupBytes(i), recState: s.ref}
}

// groupBytes is the log of group i.
func (s *series) groupBytes(i int) []byte {
	end := len(s.log)
	if i+1 < s.groups.len() {
		end = s.groups.at(i + 1)
	}
	return s.log[s.groups.at(i):end]
}

// roll puts the last group's rollup in front of its raw records: the sums
// of their counters and evidence and the merge of their sketches, so a
// window holding the whole group reads one record and skips the rest.
func (s *series) roll(lay *layout) {
	s.lastRolled = true
	acc := &lay.acc
	acc.reset()
	r := s.reader(s.groups.len() - 1)
	var c counters
	for {
		_, ok := r.next(&c)
		if !ok {
			break
		}
		c.addToBucket(acc)
	}
	var st recState
	lay.buf = appendRecord(lay.buf[:0], acc, rbRollup, true, &st)
	start := s.groups.at(s.groups.len() - 1)
	n := len(lay.buf)
	s.growLog(n, lay)
	s.log = s.log[:len(s.log)+n]
	copy(s.log[start+n:], s.log[start:len(s.log)-n])
	copy(s.log[start:], lay.buf)
}

// closeBefore encodes open buckets with idx < final into the log.
func (s *series) closeBefore(final int64, lay *layout) {
	if len(s.open) > 1 {
		sort.Slice(s.open, func(i, j int) bool { return s.open[i].idx < s.open[j].idx })
	}
	keep := s.open[:0]
	for _, b := range s.open {
		if b.idx >= final {
			keep = append(keep, b)
			continue
		}
		s.encode(b, lay)
		b.reset()
		select {
		case bucketPool <- b:
		default:
		}
	}
	clear(s.open[len(keep):])
	s.open = keep
}

// maintain rolls up the last group once it is complete (all its buckets
// < final), drops groups whose buckets are all <= oldest, and strips the raw
// sketches of groups that end at or before foldBefore.
//
// Trade-off of the fold (Config.RawLatency): per-bucket latency is what
// costs memory (a sketch per bucket versus a few counters), and old windows
// are mostly read as whole minutes. The fold also drops the rollup's counters
// (snapshots of old windows sum the raw ones: exact, slower). After the fold
// a window that cuts an old group takes the group's latency whole if it
// holds the group's middle bucket, else not at all, so its quantiles are
// those of the window rounded to whole minutes (counters stay exact); History
// spreads a folded group's distribution over its buckets by their share of
// the group's requests.
func (s *series) maintain(final, oldest, foldBefore int64, lay *layout) {
	if s.groups.len() == 0 {
		return
	}
	n := lay.n
	lastNum := s.base + int64(s.groups.len()) - 1
	if !s.lastRolled && (lastNum+1)*n <= final {
		s.roll(lay)
	}
	drop := 0
	for drop < s.groups.len() && (s.base+int64(drop)+1)*n-1 <= oldest {
		drop++
	}
	foldTo := s.folded
	for foldTo <= lastNum && (foldTo+1)*n <= foldBefore && (foldTo < lastNum || s.lastRolled) {
		foldTo++
	}
	move := s.gen != lay.arena.gen
	if drop == 0 && foldTo == s.folded && !move {
		return
	}
	if drop == s.groups.len() {
		s.groups.truncate(0)
		s.log = nil // its region may be the last thing holding a chunk
		s.nrecs = 0
		return
	}
	var c counters
	for i := 0; i < drop; i++ {
		r := s.reader(i)
		for {
			b0, ok := r.next(&c)
			if !ok {
				break
			}
			if b0&rbSlot != rbRollup {
				s.nrecs--
			}
		}
	}
	// Rewrite in place, or into the current generation's chunks: groups
	// only shrink or go, so writes never pass reads, and what is kept fits
	// in the log's bytes from the first kept group on.
	dst := s.log
	if move {
		dst = lay.arena.reserve(len(s.log) - s.groups.at(drop) + s.headroom())
	}
	w := 0
	out := 0
	for i := drop; i < s.groups.len(); i++ {
		src := s.groupBytes(i)
		start := s.groups.at(i)
		gnum := s.base + int64(i)
		s.groups.set(out, w)
		out++
		if gnum < s.folded || gnum >= foldTo {
			w += copy(dst[w:], src)
			continue
		}
		r := recordReader{b: src, recState: s.ref}
		for {
			recStart := start + len(src) - len(r.b)
			b0, ok := r.next(&c)
			if !ok {
				break
			}
			recEnd := start + len(src) - len(r.b)
			if b0&rbSlot == rbRollup {
				// Keep the sketch only: the raw records hold the counters. A
				// group's reader starts with an empty mask and flags, so the
				// header byte alone says "no counters".
				if c.sk == nil {
					continue
				}
				// Nor the float32 sum, estimated from the bins once folded.
				dst[w] = rbRollup | rbSketch
				w++
				sk := recEnd - len(c.sk) // c.sk's offset in the log
				at := compactSumAt(c.sk)
				w += copy(dst[w:], binary.AppendUvarint(lay.buf[:0], uint64(len(c.sk)-4)))
				w += copy(dst[w:], s.log[sk:sk+at])
				w += copy(dst[w:], s.log[sk+at+4:recEnd])
				continue
			}
			if c.sk == nil {
				w += copy(dst[w:], s.log[recStart:recEnd])
				continue
			}
			w += copy(dst[w:], s.log[recStart:recEnd-c.skFull])
			dst[w-(recEnd-c.skFull-recStart)] &^= rbSketch
		}
	}
	s.groups.truncate(out)
	if move {
		s.log = lay.arena.commit(dst, w, w+s.headroom())
		s.gen = lay.arena.gen
	} else {
		s.log = dst[:w]
	}
	s.folded = foldTo
	s.base += int64(drop)
}

func (s *series) empty() bool { return len(s.open) == 0 && s.groups.len() == 0 }

// firstGroup is the index of the first group that may hold buckets >= from.
func (s *series) firstGroup(from int64, n int64) int {
	i := floorDiv(from, n) - s.base
	if i < 0 {
		return 0
	}
	return int(min(i, int64(s.groups.len())))
}

// useRollup says whether a window [from, to) takes group i's latency from
// its rollup rather than from the raw records.
func (s *series) useRollup(i int, start, from, to int64, lay *layout) bool {
	if i == s.groups.len()-1 && !s.lastRolled {
		return false
	}
	end := start + lay.n
	if start >= from && end <= to {
		return true
	}
	if start+lay.n > s.folded*lay.n {
		return false // raw sketches still there
	}
	mid := start + lay.n/2
	return mid >= from && mid < to
}

// sum adds every bucket with from <= idx < to into st and reports whether any
// was found. The window's whole complete groups come from the series' cache,
// so a snapshot decodes only the window's ragged ends and open buckets.
func (s *series) sum(from, to int64, a *chAcc, lay *layout, wa *winArena) bool {
	found := false
	gA := floorDiv(from+lay.n-1, lay.n) // first group starting at or after from
	gC := floorDiv(to, lay.n)           // groups below end at or before to
	// Only groups below done are complete: later ones (and, without closed
	// groups, any) may still gain buckets as open ones close.
	done := gA
	if s.groups.len() > 0 {
		done = s.base + int64(s.groups.len())
		if !s.lastRolled {
			done--
		}
	}
	gC = min(gC, done)
	var w *winCache
	if gC-gA < minCachedGroups {
		gA, gC = 0, 0
	} else {
		w = s.win.Load()
		if w == nil || w.gFrom != gA || w.gTo != gC {
			w = s.buildWin(gA, gC, lay, wa)
			s.win.Store(w)
		}
		if w.recLen > 0 {
			w.addTo(a)
			found = true
		}
	}
	if s.sumClosed(from, to, gA, gC, w, a, lay) {
		found = true
	}
	for _, b := range s.open {
		if b.idx >= from && b.idx < to {
			b.accumulateAcc(a)
			found = true
		}
	}
	return found
}

// buildWin sums the complete groups [gA, gC) into a cache entry. It runs
// under the graph's read lock, so it uses no shared scratch space but wa,
// the snapshot's own.
func (s *series) buildWin(gA, gC int64, lay *layout, wa *winArena) *winCache {
	w := wa.entry()
	*w = winCache{gFrom: gA, gTo: gC}
	var acc openBucket
	var c counters
	found := false
	for i := s.firstGroup(gA*lay.n, lay.n); i < s.groups.len(); i++ {
		gnum := s.base + int64(i)
		if gnum >= gC {
			break
		}
		r := s.reader(i)
		for {
			b0, ok := r.next(&c)
			if !ok {
				break
			}
			// A complete group's rollup comes first and holds it all, unless
			// folded: then it holds the sketch, its raw records the counters.
			c.addToBucket(&acc)
			found = true
			if b0&rbSlot == rbRollup && gnum >= s.folded {
				break
			}
		}
	}
	var headLog []byte
	w.head, headLog = s.headPositions(gA-1, lay, wa)
	var bins []byte
	wa.scratch = wa.scratch[:0]
	if found {
		bins = w.encodeSum(&acc, wa)
	}
	// One exact-size piece: record, bins, head group.
	w.rec = wa.take(len(wa.scratch) + len(bins) + len(headLog))
	w.recLen = copy(w.rec, wa.scratch)
	w.binsEnd = w.recLen + copy(w.rec[w.recLen:], bins)
	copy(w.rec[w.binsEnd:], headLog)
	return w
}

// encodeSum sets w's dense bins from acc (returned) and its record (in
// wa.scratch), when the bins fit 16 bits.
func (w *winCache) encodeSum(acc *openBucket, wa *winArena) []byte {
	sk := &acc.sk
	lo, hi := 0, len(sk.counts)
	for lo < hi && sk.counts[lo] == 0 {
		lo++
	}
	for hi > lo && sk.counts[hi-1] == 0 {
		hi--
	}
	w.dense16 = true
	for _, c := range sk.counts[lo:hi] {
		if c > 0xffff {
			w.dense16 = false
		}
	}
	var bins []byte
	if w.dense16 {
		w.binLo = sk.offset + int32(lo)
		w.zero, w.count, w.sum, w.lo, w.hi = sk.zero, sk.count, sk.sum, sk.min, sk.max
		bins = make([]byte, 0, 2*(hi-lo))
		for _, c := range sk.counts[lo:hi] {
			bins = binary.LittleEndian.AppendUint16(bins, uint16(c))
		}
		sk.Reset() // the record goes without its sketch
	}
	var st recState
	wa.scratch = appendRecord(wa.scratch[:0], acc, rbRollup, true, &st)
	return bins
}

// headPositions finds, in complete group gnum, where each slot's raw
// records begin (see winCache.head), and returns the group's bytes; nil
// when the group is not held or folded.
func (s *series) headPositions(gnum int64, lay *layout, wa *winArena) ([]headPos, []byte) {
	i := gnum - s.base
	if gnum < s.folded || i < 0 || i >= int64(s.groups.len()) || lay.n < 2 {
		return nil, nil
	}
	g := s.groupBytes(int(i))
	head := wa.headPositions(int(lay.n - 1))
	r := recordReader{b: g, recState: s.ref}
	var c counters
	k := int64(1)
	for k < lay.n {
		pos := headPos{off: uint32(len(g) - len(r.b)), st: r.recState}
		b0, ok := r.next(&c)
		if !ok {
			for ; k < lay.n; k++ {
				head[k-1] = pos
			}
			break
		}
		if b0&rbSlot == rbRollup {
			continue
		}
		for ; k <= int64(b0&rbSlot) && k < lay.n; k++ {
			head[k-1] = pos
		}
	}
	return head, g
}

// sumClosed adds the closed buckets with from <= idx < to, except those of
// groups [skipFrom, skipTo), into a and reports whether any was found. w,
// when not nil, is the series' cache for those groups.
func (s *series) sumClosed(from, to, skipFrom, skipTo int64, w *winCache, a *chAcc, lay *layout) bool {
	st := &a.st
	found := false
	var c counters
	for i := s.firstGroup(from, lay.n); i < s.groups.len(); i++ {
		gnum := s.base + int64(i)
		start := gnum * lay.n
		if start >= to {
			break
		}
		if gnum >= skipFrom && gnum < skipTo {
			continue
		}
		roll := s.useRollup(i, start, from, to, lay)
		r := s.reader(i)
		if k := from - start; w != nil && w.head != nil && gnum == w.gFrom-1 && gnum >= s.folded && !roll && k > 0 && k < lay.n {
			// The window's start cuts this group: skip to its first bucket,
			// in the cache's copy of the group.
			h := &w.head[k-1]
			r.b, r.recState = w.rec[w.binsEnd+int(h.off):], h.st
		}
		if roll && start >= from && start+lay.n <= to && s.base+int64(i) >= s.folded {
			// The whole group: its rollup (first) is all we need.
			if _, ok := r.next(&c); ok {
				c.addToAcc(a)
				found = true
				if c.sk != nil {
					c.mergeSketchInto(&st.Latency)
				}
			}
			continue
		}
		for {
			b0, ok := r.next(&c)
			if !ok {
				break
			}
			if b0&rbSlot == rbRollup {
				if roll && c.sk != nil {
					c.mergeSketchInto(&st.Latency)
				}
				continue
			}
			idx := start + int64(b0&rbSlot)
			if idx < from || idx >= to {
				continue
			}
			c.addToAcc(a)
			found = true
			if !roll {
				c.mergeSketchInto(&st.Latency)
			}
		}
	}
	return found
}

// bucketSeries fills out[i] with bucket from+i, for per-bucket history.
// Buckets of folded groups get the group's distribution scaled to their
// share of its requests.
func (s *series) bucketSeries(from int64, out []Stats, lay *layout) {
	to := from + int64(len(out))
	var c counters
	var roll *Sketch
	for i := s.firstGroup(from, lay.n); i < s.groups.len(); i++ {
		gnum := s.base + int64(i)
		start := gnum * lay.n
		if start >= to {
			break
		}
		var weights [maxGroupBuckets]uint64
		var has [maxGroupBuckets]bool
		var total, present uint64
		var rollSk []byte
		var rollNoSum, rollPacked bool
		r := s.reader(i)
		for {
			b0, ok := r.next(&c)
			if !ok {
				break
			}
			slot := int64(b0 & rbSlot)
			if slot == rbRollup {
				rollSk, rollNoSum, rollPacked = c.sk, c.noSum, c.packed
				continue
			}
			total += c.v[vReq]
			present++
			weights[slot], has[slot] = c.v[vReq], true
			idx := start + slot
			if idx < from || idx >= to {
				continue
			}
			c.addTo(&out[idx-from])
			c.mergeSketchInto(&out[idx-from].Latency)
		}
		if gnum >= s.folded || rollSk == nil || present == 0 {
			continue
		}
		if roll == nil {
			roll = &Sketch{}
		}
		roll.Reset()
		mergeEncoded(roll, rollSk, rollPacked, !rollNoSum)
		for sl, w := range weights {
			idx := start + int64(sl)
			if idx < from || idx >= to || !has[sl] {
				continue
			}
			if total == 0 {
				// No requests to weigh by (e.g. TCP): share evenly.
				out[idx-from].Latency.mergeScaled(roll, 1, present)
			} else if w > 0 {
				out[idx-from].Latency.mergeScaled(roll, w, total)
			}
		}
	}
	for _, b := range s.open {
		if b.idx >= from && b.idx < to {
			b.accumulate(&out[b.idx-from])
		}
	}
}

// groupIndex holds a series' group offsets as uint16s while its log is
// under 64 KiB, as nearly all are: an hour of minutes then takes 128 bytes
// rather than 256.
type groupIndex struct {
	small []uint16
	large *[]uint32 // used instead of small once an offset needs it
}

func (x *groupIndex) len() int {
	if x.large != nil {
		return len(*x.large)
	}
	return len(x.small)
}

func (x *groupIndex) at(i int) int {
	if x.large != nil {
		return int((*x.large)[i])
	}
	return int(x.small[i])
}

func (x *groupIndex) set(i, off int) {
	if x.large != nil {
		(*x.large)[i] = uint32(off)
	} else {
		x.small[i] = uint16(off) // offsets only shrink in place
	}
}

func (x *groupIndex) push(off int) {
	if x.large == nil && off > math.MaxUint16 {
		l := make([]uint32, len(x.small), cap(x.small)+1)
		for i, o := range x.small {
			l[i] = uint32(o)
		}
		x.small, x.large = nil, &l
	}
	if x.large != nil {
		*x.large = append(*x.large, uint32(off))
	} else {
		x.small = append(x.small, uint16(off))
	}
}

// truncate keeps the first n offsets; emptied, it goes back to uint16s.
func (x *groupIndex) truncate(n int) {
	switch {
	case n == 0:
		x.small, x.large = x.small[:0], nil
	case x.large != nil:
		*x.large = (*x.large)[:n]
	default:
		x.small = x.small[:n]
	}
}
