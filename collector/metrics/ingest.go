package metrics

import (
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/meshlens/meshlens/graph"
)

// Sink receives the observations built from metrics; *graph.Graph satisfies it.
// The batch and the Latency sketches it points to are reused once Ingest
// returns: a sink that keeps them must copy them (the graph merges them).
type Sink interface {
	Ingest([]graph.Observation)
}

var _ Sink = (*graph.Graph)(nil)

type label struct{ Name, Value string }

func labelValue(ls []label, name string) string {
	for i := range ls {
		if ls[i].Name == name {
			return ls[i].Value
		}
	}
	return ""
}

func hasLabel(ls []label, name string) bool {
	for i := range ls {
		if ls[i].Name == name {
			return true
		}
	}
	return false
}

// role is what one series contributes to its group's observation.
type role uint8

const (
	roleIgnore     role = iota // known or unknown series that adds nothing
	roleRequests               // requests counter; errors by the group's class
	roleErrors                 // failed-requests counter of the series' class
	roleBucket                 // cumulative histogram bucket at le (ms)
	roleReqBytes               // bytes from caller to callee
	roleRespBytes              // bytes from callee to caller
	roleConnOpened             // connections opened
	roleConnClosed             // connections closed
	roleResource               // a pod's CPU or memory (resources.go)
)

// series is the state of one cumulative series: its last value and where its
// deltas go.
type series struct {
	hash   uint64
	key    string
	next   *series // hash collision chain
	role   role
	class  int8 // error class for roleErrors
	le     float64
	g      *group
	last   float64
	lastTs int64 // ms
	seen   int64 // wall clock, unix seconds, for the TTL
	primed bool
	// countFirst: the series appeared after its source was already known, so
	// its first value happened since then and counts in full.
	countFirst bool
	// Resource series: what they hold, for which pod and container.
	res       resKind
	pod       *podRes
	container string
}

// pair names a caller/callee pair regardless of protocol: used so that L4
// telemetry of traffic that also has L7 telemetry is not drawn a second time.
type pair struct{ srcNS, src, dstNS, dst string }

// group gathers the series that describe one edge with one outcome (Istio: all
// labels but le), and holds the observation template built from its labels.
type group struct {
	key      string
	tmpl     graph.Observation
	errClass int8 // -1: the group's requests are not failures
	l4       bool // L4-only telemetry, suppressed when the pair has L7
	l7       bool
	pair     pair
	refs     int

	batch uint64
	accs  []acc // pending per timestamp in the current batch

	bounds  []float64 // ascending bucket bounds, +Inf last when present
	hdelta  []float64 // cumulative-count deltas per bound, since the last emit
	hseen   []bool
	hnseen  int
	hts     int64
	hfirst  int64 // wall clock of the first pending bucket delta
	pending bool
}

type acc struct {
	ts                         int64
	req, reqB, respB, op, clos float64
	errs                       [graph.NumErrorClasses]float64
}

// counters of the ingester, read by Status and exported as metrics.
type ingestCounters struct {
	samples, seriesSeen, observations, suppressedL4, truncated, resources uint64
	dropped                                                               map[string]uint64
}

// ingester turns cumulative samples into observations. All methods ending in
// Locked run under mu; one batch (a scrape, a pushed request) runs under one
// hold of mu so that its deltas are consistent.
type ingester struct {
	mu       sync.Mutex
	seed     maphash.Seed
	maxLabel int
	maxSer   int
	ttl      time.Duration
	now      func() time.Time

	byHash  map[uint64]*series
	nseries int
	groups  map[string]*group
	sources map[string]int64 // first sample timestamp (ms) per source
	l7pairs map[pair]struct{}

	batchID uint64
	touched []*group
	// sketches are reused from batch to batch (see Sink); counts is scratch.
	sketches []*graph.Sketch
	nsketch  int
	counts   []uint64
	out      []graph.Observation
	lastGC   time.Time
	wall     int64

	// Pods' resources, read only when resources is set (a sink wants them).
	resources   bool
	pods        map[podKey]*podRes
	podsTouched []*podRes
	resOut      []PodResource

	c ingestCounters
}

func newIngester(cfg Config) *ingester {
	return &ingester{
		seed:     maphash.MakeSeed(),
		maxLabel: cfg.MaxLabelLength,
		maxSer:   cfg.MaxSeries,
		ttl:      cfg.SeriesTTL,
		now:      time.Now,
		byHash:   make(map[uint64]*series),
		groups:   make(map[string]*group),
		sources:  make(map[string]int64),
		l7pairs:  make(map[pair]struct{}),
		pods:     make(map[podKey]*podRes),
		c:        ingestCounters{dropped: map[string]uint64{}},
	}
}

// Drop reasons.
const (
	dropUnknown = "unknown_metric"
	dropLimit   = "series_limit"
	dropNaN     = "nan_or_stale"
	dropOld     = "out_of_order"
	dropNative  = "native_histogram"
)

func (in *ingester) beginLocked() {
	in.batchID++
	in.touched = in.touched[:0]
	in.out = in.out[:0]
	in.nsketch = 0
	in.wall = in.now().Unix()
}

func (in *ingester) hash(key []byte) uint64 { return maphash.Bytes(in.seed, key) }

func (in *ingester) lookupLocked(h uint64, key []byte) *series {
	for s := in.byHash[h]; s != nil; s = s.next {
		if s.key == string(key) {
			return s
		}
	}
	return nil
}

// createLocked maps a new series; ls includes __name__. It returns nil when the
// series limit is reached.
func (in *ingester) createLocked(h uint64, key []byte, ls []label, source string, ts int64) *series {
	if in.nseries >= in.maxSer {
		in.c.dropped[dropLimit]++
		return nil
	}
	s := &series{hash: h, key: string(key), seen: in.wall}
	first, known := in.sources[source]
	if !known {
		in.sources[source] = ts
	} else {
		s.countFirst = ts > first
	}
	name := labelValue(ls, "__name__")
	m := mapSeries(name, ls)
	var rk resKind
	if m.role == roleIgnore && !m.known {
		rk, m.known = mapResource(name, ls)
	}
	switch {
	case rk != resNone && in.resources:
		s.role, s.res, s.container = roleResource, rk, labelValue(ls, "container")
		s.pod = in.podOf(podLabels(ls))
		in.c.seriesSeen++
	case m.role == roleIgnore:
		if !m.known {
			in.c.dropped[dropUnknown]++
		}
	default:
		s.role, s.class, s.le = m.role, m.class, m.le
		gk := m.groupKey(ls)
		g := in.groups[gk]
		if g == nil {
			g = m.newGroup(in, ls)
			g.key = gk
			in.groups[gk] = g
			if g.l7 {
				in.l7pairs[g.pair] = struct{}{}
			}
		}
		g.refs++
		s.g = g
		if s.role == roleBucket {
			g.addBound(s.le)
		}
		in.c.seriesSeen++
	}
	s.next = in.byHash[h]
	in.byHash[h] = s
	in.nseries++
	return s
}

func (g *group) addBound(le float64) {
	i, found := slices.BinarySearch(g.bounds, le)
	if found {
		return
	}
	g.bounds = slices.Insert(g.bounds, i, le)
	g.hdelta = slices.Insert(g.hdelta, i, 0)
	g.hseen = slices.Insert(g.hseen, i, false)
}

func (in *ingester) touch(g *group) {
	if g.batch != in.batchID {
		g.batch = in.batchID
		in.touched = append(in.touched, g)
	}
}

func (g *group) accAt(ts int64) *acc {
	for i := range g.accs {
		if g.accs[i].ts == ts {
			return &g.accs[i]
		}
	}
	g.accs = append(g.accs, acc{ts: ts})
	return &g.accs[len(g.accs)-1]
}

// observeLocked applies one sample of a cumulative series (or, with isDelta,
// an increment) at ts (ms).
func (in *ingester) observeLocked(s *series, v float64, ts int64, isDelta bool) {
	in.c.samples++
	s.seen = in.wall
	if s.role == roleIgnore {
		return
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		in.c.dropped[dropNaN]++
		return
	}
	if s.role == roleResource {
		in.observeResourceLocked(s, v, ts, isDelta)
		return
	}
	var d float64
	switch {
	case isDelta:
		if v > 0 {
			d = v
		}
		s.primed = true
		s.lastTs = max(s.lastTs, ts)
	case !s.primed:
		s.primed, s.last, s.lastTs = true, v, ts
		if s.countFirst && v > 0 {
			d = v
		}
	case ts <= s.lastTs:
		// A resend or an older sample: its increase is already counted.
		in.c.dropped[dropOld]++
		return
	default:
		if v >= s.last {
			d = v - s.last
		} else {
			d = v // counter reset: it restarted from zero
		}
		s.last, s.lastTs = v, ts
	}
	g := s.g
	in.touch(g)
	if s.role == roleBucket {
		i, _ := slices.BinarySearch(g.bounds, s.le)
		g.hdelta[i] += d
		if !g.hseen[i] {
			g.hseen[i] = true
			g.hnseen++
		}
		if !g.pending {
			g.pending, g.hfirst = true, in.wall
		}
		g.hts = max(g.hts, ts)
		return
	}
	if d == 0 {
		return
	}
	a := g.accAt(ts)
	switch s.role {
	case roleRequests:
		a.req += d
		if g.errClass >= 0 {
			a.errs[g.errClass] += d
		}
	case roleErrors:
		a.errs[s.class] += d
	case roleReqBytes:
		a.reqB += d
	case roleRespBytes:
		a.respB += d
	case roleConnOpened:
		a.op += d
	case roleConnClosed:
		a.clos += d
	}
}

// histogramWait is how long a histogram whose buckets arrive split over
// several pushes (remote-write shards series) waits for the rest.
const histogramWait = 60 // seconds

// endLocked turns the batch's deltas into observations. The result is reused
// by the next batch: the caller hands it to the sink before releasing mu.
func (in *ingester) endLocked() []graph.Observation {
	for _, g := range in.touched {
		var sk *graph.Sketch
		if g.pending && (g.hnseen == len(g.bounds) || in.wall-g.hfirst > histogramWait) {
			sk = in.takeSketch(g)
		}
		suppress := g.l4 && in.hasL7(g.pair)
		for i := range g.accs {
			a := &g.accs[i]
			o := g.tmpl
			o.Time = time.UnixMilli(a.ts)
			o.Requests = round(a.req)
			for c := range a.errs {
				o.Errors[c] = round(a.errs[c])
			}
			o.RequestBytes, o.ResponseBytes = round(a.reqB), round(a.respB)
			o.ConnOpened, o.ConnClosed = round(a.op), round(a.clos)
			o.Latency = &emptySketch
			if sk != nil && a.ts == g.hts {
				o.Latency, sk = sk, nil
			}
			in.emit(&o, suppress)
		}
		g.accs = g.accs[:0]
		if sk != nil {
			o := g.tmpl
			o.Time = time.UnixMilli(g.hts)
			o.Latency = sk
			in.emit(&o, suppress)
		}
	}
	in.touched = in.touched[:0]
	in.endResourcesLocked()
	in.maybeGCLocked()
	return in.out
}

// emptySketch stands for "no latency in this observation": without it the graph
// would read Requests with LatencyMs 0 as requests that took 0 ms. Never written.
var emptySketch graph.Sketch

func (in *ingester) emit(o *graph.Observation, suppress bool) {
	if o.Requests == 0 && o.Errors.Total() == 0 && o.RequestBytes == 0 && o.ResponseBytes == 0 &&
		o.ConnOpened == 0 && o.ConnClosed == 0 && o.Latency.Count() == 0 {
		return
	}
	if suppress {
		in.c.suppressedL4++
		return
	}
	if o.Errors.Total() == 0 {
		// Evidence is only kept on failures.
		o.ResponseCode, o.GRPCStatus, o.ResponseFlags = 0, 0, 0
	}
	in.out = append(in.out, *o)
	in.c.observations++
}

func (in *ingester) hasL7(p pair) bool {
	_, ok := in.l7pairs[p]
	return ok
}

func round(f float64) uint64 {
	if f <= 0 {
		return 0
	}
	return uint64(f + 0.5)
}

// takeSketch turns the pending cumulative-bucket deltas of g into a
// distribution, or nil when no request fell in this interval.
func (in *ingester) takeSketch(g *group) *graph.Sketch {
	n := len(g.bounds)
	counts := slices.Grow(in.counts[:0], n+1)[:n]
	clear(counts)
	in.counts = counts
	prev, total := 0.0, uint64(0)
	for i, d := range g.hdelta {
		if d > prev {
			counts[i] = round(d - prev)
			total += counts[i]
			prev = d
		}
	}
	bounds := g.bounds
	if n > 0 && math.IsInf(bounds[n-1], 1) {
		bounds = bounds[:n-1] // AddHistogram takes the +Inf bucket as counts[len(bounds)]
	} else {
		counts = append(counts, 0)
	}
	clear(g.hdelta)
	clear(g.hseen)
	g.hnseen, g.pending = 0, false
	if total == 0 {
		return nil
	}
	if in.nsketch == len(in.sketches) {
		in.sketches = append(in.sketches, &graph.Sketch{})
	}
	sk := in.sketches[in.nsketch]
	in.nsketch++
	sk.Reset()
	sk.AddHistogram(bounds, counts)
	return sk
}

// maybeGCLocked forgets series past the TTL, at most every quarter TTL.
func (in *ingester) maybeGCLocked() {
	now := in.now()
	if now.Sub(in.lastGC) < in.ttl/4 {
		return
	}
	in.lastGC = now
	cut := now.Add(-in.ttl).Unix()
	for h, head := range in.byHash {
		var keep *series
		for s := head; s != nil; {
			next := s.next
			if s.seen != 0 && s.seen < cut {
				in.nseries--
				if s.pod != nil {
					in.forgetPodLocked(s)
				}
				if s.g != nil {
					s.g.refs--
					if s.g.refs == 0 {
						delete(in.groups, s.g.key)
					}
				}
			} else {
				s.next = keep
				keep = s
			}
			s = next
		}
		if keep == nil {
			delete(in.byHash, h)
		} else {
			in.byHash[h] = keep
		}
	}
}

// capLabel cuts a label value to the configured length.
func (in *ingester) capLabel(v string) string {
	if len(v) <= in.maxLabel {
		return v
	}
	in.c.truncated++
	v = v[:in.maxLabel]
	// Do not leave half a UTF-8 sequence.
	for len(v) > 0 && !utf8.ValidString(v) {
		v = v[:len(v)-1]
	}
	return strings.Clone(v)
}
