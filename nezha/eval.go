package nezha

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// Signal modes of the evaluation.
const (
	SignalsTraces = "traces" // only what a mesh sees: per-edge rates, errors, latency
	SignalsAll    = "all"    // traces plus pod metrics as service-level evidence
)

// EvalConfig tunes one evaluation run.
type EvalConfig struct {
	Signals    string        // SignalsTraces or SignalsAll
	Resolution time.Duration // graph bucket width
	Horizon    time.Duration // a fault counts as detected when an anomaly fires this soon after it
	// FalseAlarmGrace: an incident starting within [inject-grace/5, inject+grace]
	// belongs to the fault; any other incident is a false alarm.
	FalseAlarmGrace time.Duration
	// ObserveGaps passes buckets without trace files to the engine as
	// empty ones (its own gap logic then decides); otherwise they are
	// skipped as missing telemetry.
	ObserveGaps bool
	Detect      detect.Config
	Evidence    detect.EvidenceConfig
	Pairer      traces.PairerConfig
	// Rank re-ranks the incident open at scoring time from its recent
	// anomalies, discounting nodes by their learned anomaly base rate
	// (slots of BaseSlot). A zero Recent keeps the incident's own ranking.
	Rank     detect.RecentRankConfig
	BaseSlot time.Duration
	// RankPooled ranks every anomaly fired in the recent window, across
	// incidents, instead of the one incident most of them joined.
	RankPooled bool
	// Structure adds trace-structure evidence (detect.Structure).
	Structure    bool
	StructureCfg detect.StructureConfig
}

// DefaultEvalConfig tunes the detectors to the problem's data: sparse,
// sampled traces (a few traces a second in short windows) and one pod
// metric reading a minute. Nothing here names a service or a day.
func DefaultEvalConfig(signals string) EvalConfig {
	d := detect.DefaultConfig()
	d.MinHistory = 6
	d.Thresholds.LatencyMinCount = 8
	// Trace files cover a few minutes around each fault with hours between:
	// subjects must survive the gaps, which are missing telemetry, not silence.
	d.IdleForget = 48 * time.Hour
	d.NewEdgeTTL = 48 * time.Hour
	// One pod reading a minute of a pod serving a request or so a second:
	// a departure must hold three readings in a row to count, which still
	// leaves two minutes of the five-minute horizon.
	ev := detect.DefaultEvidenceConfig()
	ev.PersistK, ev.PersistM = 3, 3
	return EvalConfig{
		Signals:         signals,
		Resolution:      30 * time.Second,
		Horizon:         5 * time.Minute,
		FalseAlarmGrace: 10 * time.Minute,
		Detect:          d,
		Evidence:        ev,
		Pairer:          traces.PairerConfig{Expiry: time.Minute},
		Rank:            detect.DefaultRecentRankConfig(nil),
		RankPooled:      true,
		BaseSlot:        10 * time.Minute,
		Structure:       true,
		StructureCfg:    detect.DefaultStructureConfig(),
	}
}

// FaultResult is how one fault was detected and ranked.
type FaultResult struct {
	Fault
	Detected  bool
	Delay     time.Duration      // first anomaly after the injection
	FirstSeen string             // summary of that anomaly
	Rank      int                // 1-based rank of the injected service; 0 = not ranked
	Top       string             // top-ranked root cause
	Causes    []detect.RootCause // the ranking scored, first few
}

// DayResult is the evaluation of one day in one signal mode.
type DayResult struct {
	Day, Signals   string
	Faults         []FaultResult
	Skipped        []Problem // faults that could not be scored
	FalseIncidents int
	FalseList      []string
	// Lone: anomalies between faults that opened no incident (a pod's CPU
	// jump with no symptom): shown, never paged.
	Lone      []string
	FreeHours float64 // observed time outside fault windows
	Spans     int
	Calls     uint64
	Elapsed   time.Duration
	Problems  []Problem
}

// SpansPerSecond is the replay speed of the run.
func (r *DayResult) SpansPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Spans) / r.Elapsed.Seconds()
}

// metricSpec says how a pod metric column becomes evidence.
type metricSpec struct {
	col       string
	name      string
	typ       string
	unit      string
	scale     float64
	log       bool
	direction int
	floor     float64
	// resource, when set, makes the column a pod's use of that resource
	// as a share of its limit, judged as live serve judges it.
	resource string
}

// specs: the pod's own server latency and success rate travel to callers
// like the mesh's latency and errors; CPU and memory are the pod's own
// resources. Left out: client latency (it describes callees), workload (the
// traces already give the mesh's request rates, and the same traffic must
// not count twice) and p99 (a pod serving about a request a second has ~60
// requests in a minute's reading, so its p99 is the slowest single request,
// a GC pause, and spikes on its own).
var specs = []metricSpec{
	{col: "CpuUsageRate(%)", resource: "cpu"},
	{col: "MemoryUsageRate(%)", resource: "memory"},
	{col: "PodServerLatencyP90(s)", name: "server_p90", typ: detect.TypeLatency, unit: "ms", scale: 1000, log: true, direction: 1, floor: 50},
	{col: "PodSuccessRate(%)", name: "success_rate", typ: detect.TypeErrors, unit: "%", scale: 1, direction: -1, floor: 5},
}

// saturation is the share of a limit (percent) that is starved whatever
// the pod's baseline, as in live serve by default.
var saturation = detect.DefaultResourcesConfig().Saturation

// EvalDay replays a loaded day in virtual time into a fresh graph, detector
// engine and (in SignalsAll mode) node-metric evidence, and scores every fault.
func EvalDay(l *Loaded, cfg EvalConfig) (*DayResult, error) {
	began := time.Now()
	res := &DayResult{Day: l.Day.Name, Signals: cfg.Signals, Problems: l.Problems}
	all := cfg.Signals == SignalsAll
	if !all && cfg.Signals != SignalsTraces {
		return nil, fmt.Errorf("eval %s: signals %q: want traces or all", l.Day.Name, cfg.Signals)
	}
	g := graph.New(graph.Config{Resolution: cfg.Resolution, Window: time.Hour})
	eng, err := detect.New(cfg.Detect, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", l.Day.Name, err)
	}
	var ev *detect.NodeEvidence
	if all {
		if ev, err = detect.NewNodeEvidence(eng, cfg.Evidence); err != nil {
			return nil, fmt.Errorf("eval %s: %w", l.Day.Name, err)
		}
	}
	pairer := traces.NewPairer(cfg.Pairer, g)
	rankCfg := cfg.Rank
	if rankCfg.Recent > 0 && cfg.BaseSlot > 0 {
		br, err := detect.NewBaseRates(cfg.BaseSlot, 1000)
		if err != nil {
			return nil, fmt.Errorf("eval %s: %w", l.Day.Name, err)
		}
		br.Attach(eng)
		rankCfg.Noise = br
	}
	var fired []detect.Anomaly
	eng.Subscribe(func(c detect.Change) {
		if c.Action == "fired" && c.Anomaly != nil {
			fired = append(fired, *c.Anomaly)
		}
	})

	// Which faults can be scored: the injected pod must appear somewhere.
	seenPod := map[string]bool{}
	for i := range l.Spans {
		seenPod[l.Spans[i].Pod] = true
	}
	for i := range l.Metrics {
		seenPod[l.Metrics[i].Pod] = true
	}
	var faults []Fault
	for _, f := range l.Faults {
		if !seenPod[f.Pod] {
			res.Skipped = append(res.Skipped, Problem{f.Pod + " at " + f.Time.Format("15:04:05"), "injected pod never appears in traces or metrics"})
			continue
		}
		faults = append(faults, f)
	}
	results := make([]FaultResult, len(faults))
	captured := make([]bool, len(faults))
	scoreAt := scoreTimes(faults, cfg.Horizon, cfg.Resolution)

	colIdx := map[string]int{}
	for i, c := range MetricColumns {
		colIdx[c] = i
	}
	nodes := map[string]graph.Node{}
	var samples []detect.NodeSample
	mi := 0
	var freeObserved time.Duration
	inFault := func(t time.Time) bool {
		for _, f := range faults {
			if !t.Before(f.Time.Add(-cfg.FalseAlarmGrace/5)) && t.Before(f.Time.Add(cfg.FalseAlarmGrace)) {
				return true
			}
		}
		return false
	}
	g.OnBucketClose(func(b graph.BucketClosed) {
		observed := l.Covered(b.Start, b.End)
		if observed || cfg.ObserveGaps {
			if snap, err := g.Snapshot(graph.Query{View: graph.ViewWorkload, Window: cfg.Resolution, At: b.End}); err == nil {
				eng.Observe(snap)
			}
		}
		if all {
			samples = samples[:0]
			for mi < len(l.Metrics) && l.Metrics[mi].Time.Before(b.End) {
				row := &l.Metrics[mi]
				mi++
				if row.Time.Before(b.Start) {
					continue
				}
				n := nodeIn(nodes, row.Service)
				for _, sp := range specs {
					v := row.Values[colIdx[sp.col]]
					if math.IsNaN(v) {
						continue
					}
					if sp.resource != "" {
						samples = append(samples, detect.LimitShareSample(n, row.Pod, sp.resource, v, saturation))
						continue
					}
					samples = append(samples, detect.NodeSample{Node: n, Instance: row.Pod, Metric: sp.name, Value: v * sp.scale, Unit: sp.unit,
						Type: sp.typ, Log: sp.log, Direction: sp.direction, Floor: sp.floor})
				}
			}
			if len(samples) > 0 {
				observed = true
				ev.Observe(b.Start, b.End.Sub(b.Start), samples)
			}
		}
		if observed && !inFault(b.Start) {
			freeObserved += b.End.Sub(b.Start)
		}
		for i, f := range faults {
			if !captured[i] && !b.End.Before(scoreAt[i]) {
				captured[i] = true
				results[i] = score(eng, fired, f, cfg.Horizon, b.End, rankCfg, cfg.RankPooled)
			}
		}
	})

	var start, end time.Time
	if len(l.Spans) > 0 {
		start = time.Unix(0, l.Spans[0].Start)
		end = time.Unix(0, l.Spans[len(l.Spans)-1].End)
	}
	if n := len(l.Metrics); n > 0 {
		if start.IsZero() || l.Metrics[0].Time.Before(start) {
			start = l.Metrics[0].Time
		}
		if l.Metrics[n-1].Time.After(end) {
			end = l.Metrics[n-1].Time
		}
	}
	if len(faults) > 0 {
		if last := faults[len(faults)-1].Time.Add(cfg.Horizon); last.After(end) {
			end = last
		}
	}
	if start.IsZero() {
		return nil, fmt.Errorf("eval %s: no spans and no metrics", l.Day.Name)
	}
	start = start.Truncate(cfg.Resolution)
	end = end.Add(3 * cfg.Resolution)
	var structure *detect.Structure
	var ts []detect.TraceSpan
	if cfg.Structure {
		if structure, err = detect.NewStructure(eng, cfg.StructureCfg); err != nil {
			return nil, fmt.Errorf("eval %s: %w", l.Day.Name, err)
		}
		ts = make([]detect.TraceSpan, len(l.Spans))
		for i := range l.Spans {
			ts[i] = l.Spans[i].TraceSpan(nodes)
		}
		rankCfg.Added = structure
	}
	if rankCfg.Recent > 0 {
		eng.SetRecentRank(rankCfg) // incidents ranked as serve ranks them
	}
	batch := make([]traces.Span, 0, 4096)
	si := 0
	for t := start; t.Before(end); t = t.Add(cfg.Resolution) {
		tEnd := t.Add(cfg.Resolution).UnixNano()
		batch = batch[:0]
		s0 := si
		for si < len(l.Spans) && l.Spans[si].Start < tEnd {
			batch = append(batch, l.Spans[si].ToSpan(nodes))
			si++
		}
		pairer.Add(batch)
		pairer.Expire(time.Unix(0, tEnd))
		g.Advance(time.Unix(0, tEnd))
		if structure != nil {
			structure.Observe(t, cfg.Resolution, windowOps(ts, s0, si))
		}
	}
	pairer.Flush()
	g.Advance(end.Add(3 * cfg.Resolution))

	res.Spans = len(l.Spans)
	res.Calls = pairer.Stats().Calls
	res.Faults = results
	res.FreeHours = freeObserved.Hours()
	for _, in := range eng.Incidents(detect.IncidentFilter{}) {
		if in.MergedInto != "" || inFault(in.Start) {
			continue
		}
		res.FalseIncidents++
		if len(res.FalseList) < 20 {
			res.FalseList = append(res.FalseList, in.Start.UTC().Format("15:04:05")+" "+in.Title)
		}
	}
	for _, a := range fired {
		if cur, ok := eng.Anomaly(a.ID); ok && cur.IncidentID == "" && !inFault(a.Since) {
			res.Lone = append(res.Lone, a.Since.UTC().Format("15:04:05")+" "+a.Summary)
		}
	}
	res.Elapsed = time.Since(began)
	return res, nil
}

// childSlack is how long after a window's end its spans' children may
// start and still count for them.
const childSlack = time.Minute

// windowOps is the op stats of spans [i, j) (sorted by start), their
// children looked up among the spans that start before childSlack after
// the last of them.
func windowOps(spans []detect.TraceSpan, i, j int) []detect.OpStat {
	if i >= j {
		return nil
	}
	lim := spans[j-1].Start + childSlack.Nanoseconds()
	hi := j
	for hi < len(spans) && spans[hi].Start < lim {
		hi++
	}
	idx := make([]int, j-i)
	for k := range idx {
		idx[k] = i + k
	}
	return detect.OpStatsOf(spans[:hi], idx)
}

// scoreTimes is when each fault (in time order) is scored: at the horizon,
// or one bucket before the next fault is injected, so that its ranking is
// not the next fault's.
func scoreTimes(faults []Fault, horizon, bucket time.Duration) []time.Time {
	at := make([]time.Time, len(faults))
	for i, f := range faults {
		at[i] = f.Time.Add(horizon)
		if i+1 < len(faults) {
			if next := faults[i+1].Time.Add(-bucket); next.Before(at[i]) && next.After(f.Time) {
				at[i] = next
			}
		}
	}
	return at
}

// score looks at the anomalies fired within the horizon after f and ranks
// the injected service in the incident most of them belong to: its own
// ranking, or (rc.Recent > 0) RankRecent at time at of that incident or,
// pooled, of every anomaly fired in the recent window.
func score(eng *detect.Engine, fired []detect.Anomaly, f Fault, horizon time.Duration, at time.Time, rc detect.RecentRankConfig, pooled bool) FaultResult {
	fr := FaultResult{Fault: f}
	until := f.Time.Add(horizon)
	count := map[string]int{}
	firstAt := map[string]time.Time{}
	for i := range fired {
		a := &fired[i]
		if a.FiredAt.Before(f.Time) || a.FiredAt.After(until) {
			continue
		}
		if !fr.Detected {
			fr.Detected, fr.Delay, fr.FirstSeen = true, a.FiredAt.Sub(f.Time), a.Summary
		}
		cur, ok := eng.Anomaly(a.ID)
		if !ok || cur.IncidentID == "" {
			continue
		}
		in, ok := follow(eng, cur.IncidentID)
		if !ok {
			continue
		}
		count[in.ID]++
		if _, ok := firstAt[in.ID]; !ok {
			firstAt[in.ID] = a.FiredAt
		}
	}
	best := ""
	for id, n := range count {
		if best == "" || n > count[best] || n == count[best] && firstAt[id].Before(firstAt[best]) {
			best = id
		}
	}
	if best == "" {
		return fr
	}
	in, _ := eng.Incident(best)
	causes := in.RootCauses
	if rc.Recent > 0 {
		id := best
		if pooled {
			id = ""
		}
		if rr, err := eng.RankRecent(id, at, rc); err == nil && len(rr) > 0 {
			causes = rr
		}
	}
	fr.Causes = causes[:min(len(causes), keptCauses)]
	for i, rc := range causes {
		if i == 0 {
			fr.Top = rc.Node.Name
		}
		if rc.Node.App == f.Service || rc.Node.Name == f.Service {
			fr.Rank = i + 1
			break
		}
	}
	return fr
}

func follow(eng *detect.Engine, id string) (detect.Incident, bool) {
	for range 10 {
		in, ok := eng.Incident(id)
		if !ok || in.MergedInto == "" {
			return in, ok
		}
		id = in.MergedInto
	}
	return detect.Incident{}, false
}

// keptCauses is how much of each fault's ranking a result keeps for
// WriteOptions.Explain.
const keptCauses = 10

// Totals sums fault results.
type Totals struct {
	N, Detected, Top1, Top3 int
	delays                  []time.Duration
}

// Add counts one fault.
func (t *Totals) Add(f *FaultResult) {
	t.N++
	if f.Detected {
		t.Detected++
		t.delays = append(t.delays, f.Delay)
	}
	if f.Rank == 1 {
		t.Top1++
	}
	if f.Rank >= 1 && f.Rank <= 3 {
		t.Top3++
	}
}

func (t *Totals) frac(n int) float64 {
	if t.N == 0 {
		return 0
	}
	return float64(n) / float64(t.N)
}

// MedianDelay is the median time to the first anomaly of detected faults.
func (t *Totals) MedianDelay() time.Duration {
	if len(t.delays) == 0 {
		return 0
	}
	d := slices.Clone(t.delays)
	slices.Sort(d)
	return d[len(d)/2]
}

// Top1, Top3 and Detect are the fractions over scored faults.
func (t *Totals) Top1Frac() float64   { return t.frac(t.Top1) }
func (t *Totals) Top3Frac() float64   { return t.frac(t.Top3) }
func (t *Totals) DetectFrac() float64 { return t.frac(t.Detected) }

func (t *Totals) row(name string) string {
	return fmt.Sprintf("%-22s %6d %8.2f %8.2f %8.2f %10s", name, t.N, t.Top1Frac(), t.Top3Frac(), t.DetectFrac(), t.MedianDelay().Round(time.Second))
}

const tableHead = "%-22s %6s %8s %8s %8s %10s\n"

// WriteOptions tunes Write.
type WriteOptions struct {
	// Explain, when > 0, prints under each fault the first Explain root
	// causes of the ranking scored, with their scores and explanations.
	Explain int
}

// Write prints the per-fault, per-type and per-day tables of one signal
// mode and its final line "overall top1=X top3=Y detect=Z".
func Write(w interface{ Write([]byte) (int, error) }, days []*DayResult, opt WriteOptions) Totals {
	var b strings.Builder
	var overall Totals
	byType := map[string]*Totals{}
	var types []string
	signals := ""
	fa, free := 0, 0.0
	spans := 0
	var elapsed time.Duration
	for _, d := range days {
		signals = d.Signals
		fmt.Fprintf(&b, "== day %s, signals=%s: %d faults scored, %d skipped, %d input problems\n", d.Day, d.Signals, len(d.Faults), len(d.Skipped), len(d.Problems))
		for _, p := range d.Skipped {
			fmt.Fprintf(&b, "   skipped: %s\n", p)
		}
		for i, p := range d.Problems {
			if i >= 10 {
				fmt.Fprintf(&b, "   ... %d more input problems\n", len(d.Problems)-i)
				break
			}
			fmt.Fprintf(&b, "   input: %s\n", p)
		}
		fmt.Fprintf(&b, "   %-8s %-34s %-15s %-9s %5s  %-30s %s\n", "inject", "service", "type", "detected", "rank", "top cause", "first anomaly")
		for i := range d.Faults {
			f := &d.Faults[i]
			det, rank := "-", "-"
			if f.Detected {
				det = f.Delay.Round(time.Second).String()
			}
			if f.Rank > 0 {
				rank = fmt.Sprint(f.Rank)
			}
			fmt.Fprintf(&b, "   %-8s %-34s %-15s %-9s %5s  %-30s %s\n", f.Time.UTC().Format("15:04:05"), f.Service, f.Type, det, rank, f.Top, trunc(f.FirstSeen, 80))
			for j, c := range f.Causes[:min(len(f.Causes), opt.Explain)] {
				fmt.Fprintf(&b, "        %2d. %-30s %7.2f  %s\n", j+1, c.Node.Name, c.Score, trunc(c.Explanation, 160))
			}
			overall.Add(f)
			t := byType[f.Type]
			if t == nil {
				t = &Totals{}
				byType[f.Type] = t
				types = append(types, f.Type)
			}
			t.Add(f)
		}
		fa += d.FalseIncidents
		free += d.FreeHours
		spans += d.Spans
		elapsed += d.Elapsed
		for _, s := range d.FalseList {
			fmt.Fprintf(&b, "   false incident: %s\n", trunc(s, 120))
		}
		for _, s := range d.Lone {
			fmt.Fprintf(&b, "   anomaly without incident between faults: %s\n", trunc(s, 120))
		}
	}
	fmt.Fprintf(&b, "\nper fault type (signals=%s)\n", signals)
	fmt.Fprintf(&b, tableHead, "type", "faults", "top1", "top3", "detect", "median")
	slices.Sort(types)
	for _, ty := range types {
		b.WriteString(byType[ty].row(ty) + "\n")
	}
	fmt.Fprintf(&b, "\nper day (signals=%s)\n", signals)
	fmt.Fprintf(&b, tableHead+"", "day", "faults", "top1", "top3", "detect", "median")
	for _, d := range days {
		var t Totals
		for i := range d.Faults {
			t.Add(&d.Faults[i])
		}
		fmt.Fprintf(&b, "%s  %s; %d anomalies without incident\n", t.row(d.Day), falseRate(d.FalseIncidents, d.FreeHours), len(d.Lone))
	}
	sps := 0.0
	if elapsed > 0 {
		sps = float64(spans) / elapsed.Seconds()
	}
	fmt.Fprintf(&b, "replayed %d spans in %s (%.0f spans/s); %s\n", spans, elapsed.Round(time.Millisecond), sps, falseRate(fa, free))
	fmt.Fprintf(&b, "overall top1=%.3f top3=%.3f detect=%.3f (signals=%s, %d faults scored)\n", overall.Top1Frac(), overall.Top3Frac(), overall.DetectFrac(), signals, overall.N)
	_, _ = w.Write([]byte(b.String()))
	return overall
}

// falseRate says how many false incidents came in how many hours between
// faults; with no data between faults (traces only exist in fault windows)
// there is nothing to measure, and it says so.
func falseRate(n int, h float64) string {
	if h <= 0 {
		return fmt.Sprintf("false incidents %d, no data between faults to rate them", n)
	}
	return fmt.Sprintf("false incidents %d in %.2f h between faults (%.2f/h)", n, h, float64(n)/h)
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
