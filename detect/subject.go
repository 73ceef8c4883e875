package detect

import (
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Detector channels of a subject.
const (
	chLatency = iota
	chErr5xx
	chErrGRPC
	chErrNoResp
	chErrConnect
	chTraffic
	chMTLS
	numCh
)

var errClassOfCh = [...]graph.ErrorClass{graph.Err5xx, graph.ErrGRPC, graph.ErrNoResponse, graph.ErrConnectFailure}

const numErrCh = 4

// slowAlpha is the weight of a new bucket in the long-memory baseline
// (about 200 buckets of memory).
const slowAlpha = 1.0 / 200

// exclusion bits per ring slot: the slot stays out of that baseline because
// the bucket was anomalous (so a fault does not teach the baseline).
const (
	exLatency = 1 << iota
	exErrors
	exTraffic
	exMTLS
)

var quantiles = [3]float64{0.5, 0.95, 0.99}

// quantileSE is the standard error of a sample quantile of log latency, in
// units of sigma/sqrt(n): sqrt(p(1-p))/φ(z_p) for p50, p95, p99.
var quantileSE = [3]float64{1.2533, 2.1131, 3.7302}

// minSpreadCount is how many samples a bucket needs for its spread to count.
const minSpreadCount = 8

// spreadAlpha is the weight of a new bucket in the spread EWMA.
const spreadAlpha = 1.0 / 50

var quantileNames = [3]string{"p50", "p95", "p99"}

// detState is the persistence state machine of one detector channel.
type detState struct {
	hot       uint16 // bit 0 = latest bucket
	coldRun   int
	firingFor int
	firing    *Anomaly
}

// subject is the state kept for one edge or one node direction: a ring of
// recent buckets, cached robust baselines, and the detector state machines.
// Its size is fixed by the baseline window, so memory is bounded per subject.
type subject struct {
	key   string
	kind  string
	src   graph.Node // edges
	dst   graph.Node // edges; the node for node subjects
	proto graph.Protocol
	thr   Thresholds
	off   bool

	pos, filled int
	newest      time.Time // start of the newest bucket written
	lastActive  time.Time
	req         []float32
	lat         [3][]float32 // log ms; NaN when the bucket had too few samples
	errs        [numErrCh][]uint32
	plain       []uint32
	units       []uint32
	excl        []uint8

	// cached baselines, refreshed every cfg.RefreshEvery buckets
	age               int
	latMed, latMAD    [3]float64
	latN              [3]int
	reqMed, reqMAD    float64
	reqN              int
	errSum            [numErrCh]uint64
	reqSum            uint64
	plainSum, unitSum uint64
	cusum             float64
	// slow is a long-memory EWMA (log p50/p95/p99, then requests) of the
	// non-anomalous buckets: a bucket is hot only when it departs from it too,
	// so a return to normal after a fault is not mistaken for a new shift.
	slow    [4]float64
	slowSet [4]bool
	// spread is a long-memory EWMA of the within-bucket spread of log
	// latency (sigma, from the interquartile range) of non-anomalous
	// buckets: it says how noisy a quantile of n samples is bound to be.
	spread    float64
	spreadSet bool

	det [numCh]detState
}

func newSubject(key, kind string, w int) *subject {
	s := &subject{key: key, kind: kind}
	// One allocation for the float and uint rings each keeps the per-subject cost low.
	f := make([]float32, 4*w)
	s.req = f[:w:w]
	for i := range s.lat {
		s.lat[i] = f[(i+1)*w : (i+2)*w : (i+2)*w]
	}
	u := make([]uint32, (numErrCh+2)*w)
	for i := range s.errs {
		s.errs[i] = u[i*w : (i+1)*w : (i+1)*w]
	}
	s.plain = u[numErrCh*w : (numErrCh+1)*w : (numErrCh+1)*w]
	s.units = u[(numErrCh+1)*w:]
	s.excl = make([]uint8, w)
	s.age = math.MaxInt32
	return s
}

func (s *subject) slotBack(j int) int { // j buckets before the newest
	w := len(s.req)
	return ((s.pos-1-j)%w + w) % w
}

func (s *subject) refresh(buf []float64) []float64 {
	w := len(s.req)
	n := s.filled
	skip := func(bit uint8) func(i int) bool {
		return func(i int) bool {
			if n < w {
				// Slots not yet written are zero; positions >= pos are unwritten while filling.
				if i >= s.pos {
					return true
				}
			}
			return s.excl[i]&bit != 0
		}
	}
	for q := range s.lat {
		s.latMed[q], s.latMAD[q], s.latN[q], buf = medianMAD(s.lat[q], skip(exLatency), buf)
	}
	s.reqMed, s.reqMAD, s.reqN, buf = medianMAD(s.req, skip(exTraffic), buf)
	s.errSum = [numErrCh]uint64{}
	s.reqSum = 0
	s.plainSum, s.unitSum = 0, 0
	skE, skM := skip(exErrors), skip(exMTLS)
	for i := 0; i < w; i++ {
		if !skE(i) {
			for c := range s.errs {
				s.errSum[c] += uint64(s.errs[c][i])
			}
			s.reqSum += uint64(s.req[i])
		}
		if !skM(i) {
			s.plainSum += uint64(s.plain[i])
			s.unitSum += uint64(s.units[i])
		}
	}
	s.age = 0
	return buf
}

// sample is one bucket of a subject, extracted from graph stats.
type sample struct {
	t              time.Time
	n              uint64 // requests (connections for TCP without requests)
	lat            [3]float64
	count          uint64 // latency samples
	errs           [numErrCh]uint64
	plain          uint64
	units          uint64
	st             *graph.Stats // nil when the subject had no traffic in the bucket
	srcP95, dstP95 float64
	spread         float64 // sigma of log latency within the bucket (IQR/1.349); NaN with few samples
}

func sampleOf(t time.Time, st *graph.Stats, minCount uint64) sample {
	sm := sample{t: t, st: st, spread: math.NaN()}
	for i := range sm.lat {
		sm.lat[i] = math.NaN()
	}
	if st == nil {
		return sm
	}
	sm.n = st.Requests
	if sm.n == 0 {
		sm.n = st.ConnOpened
	}
	sm.count = st.Latency.Count()
	if sm.count >= minCount/4 {
		for i, q := range quantiles {
			// The median means something with few samples; p95 needs
			// minCount and p99 ten times that.
			if (i == 1 && sm.count < minCount) || (i == 2 && sm.count < 10*minCount) {
				continue
			}
			v := st.Latency.Quantile(q)
			if finite(v) && v > 0 {
				sm.lat[i] = math.Log(v)
			} else if finite(v) && v == 0 {
				sm.lat[i] = math.Log(0.001)
			}
		}
	}
	if sm.count >= minSpreadCount {
		q1, q3 := st.Latency.Quantile(0.25), st.Latency.Quantile(0.75)
		if finite(q1) && finite(q3) && q1 > 0 && q3 >= q1 {
			sm.spread = math.Log(q3/q1) / 1.349
		}
	}
	for c, cls := range errClassOfCh {
		sm.errs[c] = st.Errors[cls]
	}
	sm.plain = st.PlainUnits
	sm.units = st.PlainUnits + st.MTLSUnits
	return sm
}

// write stores the sample as the newest bucket with the given exclusion bits.
func (s *subject) write(sm *sample, excl uint8) {
	w := len(s.req)
	i := s.pos
	clamp := func(v uint64) uint32 {
		if v > math.MaxUint32 {
			return math.MaxUint32
		}
		return uint32(v)
	}
	s.req[i] = float32(sm.n)
	for q := range s.lat {
		s.lat[q][i] = float32(sm.lat[q])
	}
	for c := range s.errs {
		s.errs[c][i] = clamp(sm.errs[c])
	}
	s.plain[i] = clamp(sm.plain)
	s.units[i] = clamp(sm.units)
	s.excl[i] = excl
	s.pos = (i + 1) % w
	if s.filled < w {
		s.filled++
	}
	s.newest = sm.t
	s.age++
	upd := func(i int, v float64, skip bool) {
		if skip || !finite(v) {
			return
		}
		if !s.slowSet[i] {
			s.slow[i], s.slowSet[i] = v, true
			return
		}
		s.slow[i] += (v - s.slow[i]) * slowAlpha
	}
	for q := range sm.lat {
		upd(q, sm.lat[q], excl&exLatency != 0)
	}
	upd(3, float64(sm.n), excl&exTraffic != 0)
	if finite(sm.spread) && excl&exLatency == 0 {
		if !s.spreadSet {
			s.spread, s.spreadSet = sm.spread, true
		} else {
			s.spread += (sm.spread - s.spread) * spreadAlpha
		}
	}
	if sm.n > 0 {
		s.lastActive = sm.t
	}
}

// verdict is one detector's reading of one bucket.
type verdict struct {
	hot       bool
	warm      bool // suspicious: beyond half the bar; keeps firing anomalies open and stays out of baselines
	metric    string
	direction string
	observed  float64
	baseline  float64
	unit      string
	score     float64
	lo, hi    float64 // baseline band shown as evidence
	note      string
}

func (d *detState) push(hot bool, m int) int {
	d.hot = d.hot<<1 | b2u(hot)
	mask := uint16(1)<<uint(m) - 1
	return bits.OnesCount16(d.hot & mask)
}

func b2u(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}

// oldestHot is how many buckets back the oldest hot bucket within the last m is.
func (d *detState) oldestHot(m int) int {
	mask := uint16(1)<<uint(m) - 1
	h := d.hot & mask
	if h == 0 {
		return 0
	}
	return 15 - bits.LeadingZeros16(h)
}

// evaluate runs the statistical detectors of the subject on sm against the
// cached baselines. It does not change the ring.
func (s *subject) evaluate(sm *sample, cfg *Config, out *[numCh]verdict) {
	*out = [numCh]verdict{}
	t := &s.thr
	half := cfg.MinHistory / 2
	if half < 1 {
		half = 1
	}
	// Latency: every quantile against its own robust baseline. One noisy
	// quantile of a small bucket is not enough: at least two must shift (or
	// the only one there is); the CUSUM path catches small sustained shifts.
	if s.kind != SubjectNodeOut {
		best, avail, hotN, warmN := -1, 0, 0, 0
		bestZ := math.Inf(-1)
		var z95 float64
		// A quantile of few samples is noisy whatever the window's MAD says
		// (a MAD of a quiet hour underestimates the spread of a bucket of
		// a dozen requests): floor the spread by the quantile's standard error.
		sigmaW := sm.spread
		if s.spreadSet {
			sigmaW = s.spread
		}
		var madFloor [3]float64
		for q := range madFloor {
			madFloor[q] = 0.05
			if finite(sigmaW) && sm.count > 0 {
				madFloor[q] = math.Max(madFloor[q], quantileSE[q]*sigmaW/math.Sqrt(float64(sm.count)))
			}
		}
		for q := range sm.lat {
			x := sm.lat[q]
			if !finite(x) || s.latN[q] < half {
				continue
			}
			avail++
			mad := math.Max(s.latMAD[q], madFloor[q])
			z := (x - s.latMed[q]) / mad
			if q == 1 {
				z95 = z
			}
			slowOK := !s.slowSet[q] || x-s.slow[q] >= math.Log(t.LatencyMinRatio)
			if z >= t.LatencyZ && math.Exp(x-s.latMed[q]) >= t.LatencyMinRatio && slowOK {
				hotN++
			}
			if z >= t.LatencyZ/2 && math.Exp(x-s.latMed[q]) >= math.Sqrt(t.LatencyMinRatio) {
				warmN++
			}
			if z > bestZ {
				bestZ, best = z, q
			}
		}
		if best >= 0 {
			// Two quantiles beyond the bar, the only one there is, or one
			// beyond it with another corroborating (warm): a p95 of a few
			// dozen samples is weak evidence alone but counts as support.
			hot := hotN >= 2 || (avail == 1 && hotN == 1) || (hotN == 1 && warmN >= 2)
			zc := math.Max(math.Min(z95, 10), -10)
			s.cusum = math.Max(0, s.cusum+zc-t.CusumK)
			note := ""
			if !hot && s.cusum >= t.CusumH && finite(sm.lat[1]) && math.Exp(sm.lat[1]-s.latMed[1]) >= 1.3 {
				hot = true
				note = fmt.Sprintf("sustained shift (CUSUM %.1f >= %.1f)", s.cusum, t.CusumH)
			}
			mad := math.Max(s.latMAD[best], madFloor[best])
			out[chLatency] = verdict{hot: hot, warm: warmN >= 2 || (avail == 1 && warmN == 1), metric: quantileNames[best], direction: "up",
				observed: math.Exp(sm.lat[best]), baseline: math.Exp(s.latMed[best]), unit: "ms",
				score: capScore(bestZ), lo: math.Exp(s.latMed[best] - 3*mad), hi: math.Exp(s.latMed[best] + 3*mad), note: note}
		}
	}
	// Errors per class: binomial tail against the baseline ratio.
	if sm.n >= t.MinRequests {
		for c := 0; c < numErrCh; c++ {
			k := sm.errs[c]
			p0 := (float64(s.errSum[c]) + 0.1) / (float64(s.reqSum) + 100)
			p0 = math.Max(p0, 1e-4)
			ratio := float64(k) / float64(sm.n)
			v := verdict{metric: "errors." + errClassOfCh[c].String(), direction: "up", observed: ratio, baseline: p0, unit: "ratio", lo: 0, hi: p0}
			if k >= t.ErrorMinErrors && ratio-p0 >= t.ErrorMinDelta {
				p := binomTail(k, sm.n, p0)
				v.score = pScore(p)
				v.hot = p < t.ErrorP
				v.warm = p < math.Sqrt(t.ErrorP)
			}
			out[chErr5xx+c] = v
		}
	}
	// Traffic: two-sided Poisson test, also beyond the robust spread (real
	// traffic is overdispersed).
	if s.reqN >= half {
		lam := s.reqMed
		n := float64(sm.n)
		spread := math.Max(s.reqMAD, math.Sqrt(math.Max(lam, 1)))
		v := verdict{metric: "requests", observed: n, baseline: lam, unit: "requests/bucket", lo: math.Max(0, lam-t.TrafficZ*spread), hi: lam + t.TrafficZ*spread}
		switch {
		case lam >= t.TrafficMinRate && n <= lam*t.DropRatio && lam-n >= t.TrafficZ*spread && (!s.slowSet[3] || n <= s.slow[3]*t.DropRatio):
			p := poissonLower(sm.n, lam)
			v.direction, v.score, v.hot, v.warm = "down", pScore(p), p < t.TrafficP, p < math.Sqrt(t.TrafficP)
			if sm.n == 0 {
				v.note = "traffic dropped to zero"
			}
		case n >= math.Max(lam, 1)*t.SurgeRatio && n >= 3*t.TrafficMinRate && n-lam >= t.TrafficZ*spread && (!s.slowSet[3] || n >= s.slow[3]*t.SurgeRatio):
			p := poissonUpper(sm.n, lam)
			v.direction, v.score, v.hot, v.warm = "up", pScore(p), p < t.TrafficP, p < math.Sqrt(t.TrafficP)
		}
		out[chTraffic] = v
	}
	// mTLS downgrade: plaintext share rises against the baseline share.
	if s.kind == SubjectEdge && sm.units >= t.MinRequests && s.unitSum >= 5*t.MinRequests {
		b := float64(s.plainSum) / float64(s.unitSum)
		share := float64(sm.plain) / float64(sm.units)
		v := verdict{metric: "plaintext_share", direction: "up", observed: share, baseline: b, unit: "ratio", hi: b}
		if share-b >= t.PlaintextDelta {
			p := binomTail(sm.plain, sm.units, math.Max(b, 1e-3))
			v.score, v.hot, v.warm = pScore(p), p < t.ErrorP, p < math.Sqrt(t.ErrorP)
		}
		out[chMTLS] = v
	}
}
