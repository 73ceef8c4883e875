// Package eval measures the detectors: fault scenarios of the fixtures
// simulator played in virtual time, and root-cause ranking on the PetShop dataset.
package eval

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
)

// Resolution of the evaluation graph's buckets.
const Resolution = 10 * time.Second

// faultGrace: anomalies this long after a fault ends still belong to it
// (baselines and persistence need a few buckets to settle).
const faultGrace = 2 * time.Minute

// FaultResult is how one injected fault was detected.
type FaultResult struct {
	Name, Kind, Target string
	Detected           bool
	TimeToDetect       time.Duration
	Buckets            float64 // time to detect in buckets
	RootCause          string  // top-ranked root cause of the fault's incident
	RootCauseTop1      bool
	RootCauseTop3      bool
}

// ScenarioResult is the evaluation of one scenario run.
type ScenarioResult struct {
	Scenario      string
	Seed          int64
	Duration      time.Duration
	Edges         int
	Faults        []FaultResult
	Anomalies     int
	TruePositives int
	FalseAlarms   int
	FaultFreeHrs  float64
	// Derived figures.
	Precision, Recall, F1 float64
	FalseAlarmsPerHour100 float64 // per hour per 100 edges on fault-free parts
	MedianBuckets         float64
	FalseAlarmList        []string
	ByType                map[string]int // fired anomalies by type
}

// ScenarioConfig is the detector configuration for a scenario: defaults,
// with the edge-learning period ending at the first fault and the scenario's
// declared call policies.
func ScenarioConfig(sc *fixtures.Scenario) detect.Config {
	cfg := detect.DefaultConfig()
	cfg.Policies = policiesOf(sc)
	first := time.Duration(0)
	for _, f := range sc.Faults {
		if first == 0 || f.Start.D() < first {
			first = f.Start.D()
		}
	}
	if first > 0 && first < cfg.LearningPeriod {
		cfg.LearningPeriod = first
	}
	return cfg
}

// RunScenario plays sc with seed in virtual time through a graph and a
// detector engine, and scores the anomalies against the injected faults.
func RunScenario(sc *fixtures.Scenario, seed int64, cfg detect.Config) (*ScenarioResult, error) {
	dur := sc.Duration.D()
	if dur <= 0 {
		dur = 30 * time.Minute
	}
	origin := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	sim := fixtures.NewSimulator(sc, seed)
	sim.SetOrigin(origin)
	g := graph.New(graph.Config{Resolution: Resolution, Window: 10 * time.Minute})
	eng, err := detect.New(cfg, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	eng.Attach(g)
	var fired []detect.Anomaly
	eng.Subscribe(func(c detect.Change) {
		if c.Anomaly != nil && c.Action == "fired" {
			fired = append(fired, *c.Anomaly)
		}
	})
	edges := map[string]bool{}
	callers := map[string]map[string]bool{} // dst app -> src apps
	callees := map[string]map[string]bool{}
	addEdge := func(src, dst string) {
		if callers[dst] == nil {
			callers[dst] = map[string]bool{}
		}
		if callees[src] == nil {
			callees[src] = map[string]bool{}
		}
		callers[dst][src], callees[src][dst] = true, true
	}
	for t := origin; t.Before(origin.Add(dur)); t = t.Add(Resolution) {
		obs := sim.Step(t, t.Add(Resolution))
		for i := range obs {
			edges[obs[i].Src.ID()+">"+obs[i].Dst.ID()] = true
			addEdge(appOf(obs[i].Src), appOf(obs[i].Dst))
		}
		g.Ingest(obs)
		g.Advance(t.Add(Resolution))
	}
	g.Advance(origin.Add(dur + 2*Resolution))

	res := &ScenarioResult{Scenario: sc.Name, Seed: seed, Duration: dur, Edges: len(edges), Anomalies: len(fired), ByType: map[string]int{}}
	for i := range fired {
		res.ByType[fired[i].Type]++
	}
	faults := sim.Faults()
	matched := make([]bool, len(fired))
	var ttds []float64
	for _, f := range faults {
		end := f.End
		if end.IsZero() || end.After(origin.Add(dur)) {
			end = origin.Add(dur)
		}
		targets := map[string]bool{f.TargetService: true}
		for _, n := range f.TargetNodes {
			targets[n.Name()] = true
		}
		radius := map[string]bool{f.TargetService: true}
		walk(callers, f.TargetService, radius)
		if f.Kind == fixtures.FaultTrafficDrop || f.Kind == fixtures.FaultTrafficSurge {
			walk(callees, f.TargetService, radius)
		}
		if f.Kind == fixtures.FaultUnexpectedEdge {
			if i := strings.Index(f.Target, "->"); i > 0 {
				radius[f.Target[i+2:]] = true
				targets[f.Target[i+2:]] = true
			}
		}
		fr := FaultResult{Name: f.Name, Kind: f.Kind, Target: f.Target}
		var first *detect.Anomaly
		for i := range fired {
			a := &fired[i]
			if a.FiredAt.Before(f.Start) || a.FiredAt.After(end.Add(faultGrace)) {
				continue
			}
			touches, inRadius := false, false
			for _, r := range []*detect.NodeRef{a.Subject.Source, a.Subject.Target, a.Subject.Node} {
				if r == nil {
					continue
				}
				touches = touches || targets[r.Name] || targets[refApp(r)]
				inRadius = inRadius || radius[refApp(r)]
			}
			if inRadius || touches {
				matched[i] = true
			}
			if touches && (first == nil || a.FiredAt.Before(first.FiredAt)) {
				first = a
			}
		}
		if first != nil {
			fr.Detected = true
			fr.TimeToDetect = first.FiredAt.Sub(f.Start)
			fr.Buckets = float64(fr.TimeToDetect) / float64(Resolution)
			ttds = append(ttds, fr.Buckets)
			// The incident of the fault's anomalies, as it stood at the end.
			if a, ok := eng.Anomaly(first.ID); ok && a.IncidentID != "" {
				if in, ok := followIncident(eng, a.IncidentID); ok && len(in.RootCauses) > 0 {
					fr.RootCause = in.RootCauses[0].Node.Name
					for k, rc := range in.RootCauses {
						hit := targets[rc.Node.Name] || targets[refApp(&rc.Node)]
						if k == 0 && hit {
							fr.RootCauseTop1 = true
						}
						if k < 3 && hit {
							fr.RootCauseTop3 = true
						}
					}
				}
			}
		}
		res.Faults = append(res.Faults, fr)
	}
	// Fault-free time: the run less the fault windows (plus grace).
	free := dur
	var windows [][2]time.Time
	for _, f := range faults {
		end := f.End
		if end.IsZero() || end.After(origin.Add(dur)) {
			end = origin.Add(dur)
		}
		windows = append(windows, [2]time.Time{f.Start, minTime(end.Add(faultGrace), origin.Add(dur))})
	}
	free -= unionLen(windows)
	res.FaultFreeHrs = free.Hours()
	for i, m := range matched {
		if m {
			res.TruePositives++
		} else {
			res.FalseAlarms++
			res.FalseAlarmList = append(res.FalseAlarmList, fired[i].FiredAt.Sub(origin).String()+" "+fired[i].Summary)
		}
	}
	if res.Anomalies > 0 {
		res.Precision = float64(res.TruePositives) / float64(res.Anomalies)
	} else {
		res.Precision = 1
	}
	det := 0
	for _, f := range res.Faults {
		if f.Detected {
			det++
		}
	}
	res.Recall = 1
	if len(res.Faults) > 0 {
		res.Recall = float64(det) / float64(len(res.Faults))
	}
	if res.Precision+res.Recall > 0 {
		res.F1 = 2 * res.Precision * res.Recall / (res.Precision + res.Recall)
	}
	if res.FaultFreeHrs > 0 && res.Edges > 0 {
		res.FalseAlarmsPerHour100 = float64(res.FalseAlarms) / res.FaultFreeHrs / (float64(res.Edges) / 100)
	}
	res.MedianBuckets = median(ttds)
	return res, nil
}

// policiesOf turns the scenario's declared policies into detect policies
// (services are apps in the workload view).
func policiesOf(sc *fixtures.Scenario) []detect.Policy {
	sel := func(e string) detect.Selector {
		if k, ok := strings.CutPrefix(e, "kind:"); ok {
			return detect.Selector{Kind: k}
		}
		return detect.Selector{App: e}
	}
	var out []detect.Policy
	for _, p := range sc.Policies {
		dp := detect.Policy{Name: p.Name, Source: detect.Selector{App: p.Source}}
		for _, a := range p.Allow {
			dp.Allow = append(dp.Allow, sel(a))
		}
		for _, d := range p.Deny {
			dp.Deny = append(dp.Deny, sel(d))
		}
		out = append(out, dp)
	}
	return out
}

func followIncident(eng *detect.Engine, id string) (detect.Incident, bool) {
	for range 10 {
		in, ok := eng.Incident(id)
		if !ok || in.MergedInto == "" {
			return in, ok
		}
		id = in.MergedInto
	}
	return detect.Incident{}, false
}

func walk(adj map[string]map[string]bool, from string, seen map[string]bool) {
	for n := range adj[from] {
		if !seen[n] {
			seen[n] = true
			walk(adj, n, seen)
		}
	}
}

func appOf(n graph.Node) string {
	if n.App != "" {
		return n.App
	}
	return n.Name()
}

func refApp(r *detect.NodeRef) string {
	if r.App != "" {
		return r.App
	}
	return r.Name
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func unionLen(w [][2]time.Time) time.Duration {
	sort.Slice(w, func(i, j int) bool { return w[i][0].Before(w[j][0]) })
	var total time.Duration
	var cur [2]time.Time
	for i, x := range w {
		if i == 0 || x[0].After(cur[1]) {
			if i > 0 {
				total += cur[1].Sub(cur[0])
			}
			cur = x
			continue
		}
		if x[1].After(cur[1]) {
			cur[1] = x[1]
		}
	}
	if len(w) > 0 {
		total += cur[1].Sub(cur[0])
	}
	return total
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Summary aggregates several scenario runs.
type Summary struct {
	Faults, Detected, Anomalies, TP, FP int
	FaultFreeHrs, EdgeHours100          float64
	TTD                                 []float64
	Top1, Top3                          int
}

// Add folds one result into the summary.
func (s *Summary) Add(r *ScenarioResult) {
	s.Faults += len(r.Faults)
	for _, f := range r.Faults {
		if f.Detected {
			s.Detected++
			s.TTD = append(s.TTD, f.Buckets)
		}
		if f.RootCauseTop1 {
			s.Top1++
		}
		if f.RootCauseTop3 {
			s.Top3++
		}
	}
	s.Anomalies += r.Anomalies
	s.TP += r.TruePositives
	s.FP += r.FalseAlarms
	s.FaultFreeHrs += r.FaultFreeHrs
	s.EdgeHours100 += r.FaultFreeHrs * float64(r.Edges) / 100
}

// WriteScenario prints one result as a table.
func WriteScenario(w io.Writer, r *ScenarioResult) {
	fmt.Fprintf(w, "scenario %s seed %d: %s, %d edges, %d anomalies (%d false alarms)\n", r.Scenario, r.Seed, r.Duration, r.Edges, r.Anomalies, r.FalseAlarms)
	fmt.Fprintf(w, "  %-28s %-16s %-22s %-8s %-14s %s\n", "fault", "kind", "target", "detected", "time-to-detect", "top root cause")
	for _, f := range r.Faults {
		ttd := "-"
		if f.Detected {
			ttd = fmt.Sprintf("%s (%.0f b)", f.TimeToDetect, f.Buckets)
		}
		rc := f.RootCause
		if rc == "" {
			rc = "-"
		}
		mark := "miss"
		if f.RootCauseTop1 {
			mark = "ok"
		} else if f.RootCauseTop3 {
			mark = "top3"
		}
		fmt.Fprintf(w, "  %-28s %-16s %-22s %-8v %-14s %s (%s)\n", f.Name, f.Kind, f.Target, f.Detected, ttd, rc, mark)
	}
	for _, fa := range r.FalseAlarmList {
		fmt.Fprintf(w, "  false alarm: %s\n", fa)
	}
	fmt.Fprintf(w, "  precision=%.3f recall=%.3f f1=%.3f false_alarms_per_hour_per_100_edges=%.3f median_ttd_buckets=%.1f\n",
		r.Precision, r.Recall, r.F1, r.FalseAlarmsPerHour100, r.MedianBuckets)
}

// WriteSummary prints the overall figures.
func WriteSummary(w io.Writer, s *Summary) {
	prec, rec := 1.0, 1.0
	if s.Anomalies > 0 {
		prec = float64(s.TP) / float64(s.Anomalies)
	}
	if s.Faults > 0 {
		rec = float64(s.Detected) / float64(s.Faults)
	}
	f1 := 0.0
	if prec+rec > 0 {
		f1 = 2 * prec * rec / (prec + rec)
	}
	fa := 0.0
	if s.EdgeHours100 > 0 {
		fa = float64(s.FP) / s.EdgeHours100
	}
	top1, top3 := 0.0, 0.0
	if s.Faults > 0 {
		top1, top3 = float64(s.Top1)/float64(s.Faults), float64(s.Top3)/float64(s.Faults)
	}
	fmt.Fprintf(w, "overall faults=%d detected=%d precision=%.3f recall=%.3f f1=%.3f false_alarms_per_hour_per_100_edges=%.3f median_ttd_buckets=%.1f rca_top1=%.3f rca_top3=%.3f\n",
		s.Faults, s.Detected, prec, rec, f1, fa, median(s.TTD), top1, top3)
}
