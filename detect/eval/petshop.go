package eval

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/meshlens/meshlens/detect"
)

// PetShop dataset (Hardt et al. 2023, CC-BY-4.0): per traffic scenario a
// graph.csv adjacency matrix, an optional noissue/metrics.csv, and issue
// folders with metrics.csv and target.json.

// petMetrics is one metrics.csv: values per (component, metric, statistic) column.
type petMetrics struct {
	ts   []float64
	cols map[[3]string][]float64 // NaN = missing
}

func readPetMetrics(path string) (*petMetrics, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(rows) < 4 {
		return nil, fmt.Errorf("read %s: want 3 header rows and data, got %d rows", path, len(rows))
	}
	m := &petMetrics{cols: map[[3]string][]float64{}}
	hdr := rows[:3]
	var keys [][3]string
	for j := 1; j < len(hdr[0]); j++ {
		if j >= len(hdr[1]) || j >= len(hdr[2]) {
			return nil, fmt.Errorf("read %s: header column %d missing", path, j)
		}
		keys = append(keys, [3]string{hdr[0][j], hdr[1][j], hdr[2][j]})
	}
	for _, row := range rows[3:] {
		if len(row) == 0 || row[0] == "" || row[0] == "unix_timestamp" {
			continue
		}
		ts, err := strconv.ParseFloat(row[0], 64)
		if err != nil {
			return nil, fmt.Errorf("read %s: timestamp %q: %w", path, row[0], err)
		}
		m.ts = append(m.ts, ts)
		for j, k := range keys {
			v := math.NaN()
			if j+1 < len(row) && row[j+1] != "" {
				if x, err := strconv.ParseFloat(row[j+1], 64); err == nil && finiteF(x) {
					v = x
				}
			}
			m.cols[k] = append(m.cols[k], v)
		}
	}
	return m, nil
}

func finiteF(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// readPetGraph reads the adjacency matrix: calls[a] lists the callees of a.
func readPetGraph(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("read %s: empty adjacency matrix", path)
	}
	names := rows[0][1:]
	calls := map[string][]string{}
	for _, row := range rows[1:] {
		if len(row) == 0 {
			continue
		}
		for j, v := range row[1:] {
			v = strings.TrimSpace(v)
			if j >= len(names) || v == "" {
				continue
			}
			if x, err := strconv.ParseFloat(v, 64); err == nil && x != 0 {
				calls[row[0]] = append(calls[row[0]], names[j])
			}
		}
	}
	return calls, nil
}

type petTarget struct {
	Target struct {
		Node      string  `json:"node"`
		Metric    string  `json:"metric"`
		Timestamp float64 `json:"timestamp"`
	} `json:"target"`
	RootCause struct {
		Node string `json:"node"`
	} `json:"root_cause"`
}

// PetIssue is the ranking of one issue.
type PetIssue struct {
	Scenario, Issue, Metric, Target, RootCause string
	Ranking                                    []string
	Rank                                       int // 0-based rank of the true root cause; -1 absent
}

// PetShopResult holds all issues.
type PetShopResult struct{ Issues []PetIssue }

var latencyStats = []string{"Average", "p50", "p90", "p95", "p99"}

// halfStep: rows this close before the target timestamp already count as
// "during" (the metrics are 5-minute aggregates).
const halfStep = 150

// RunPetShop ranks root causes for every issue under dir (a folder holding
// traffic-scenario folders, or one scenario folder). It uses the graph, the
// metrics and the target only; component names play no part.
func RunPetShop(dir string) (*PetShopResult, error) {
	var scen []string
	if _, err := os.Stat(filepath.Join(dir, "graph.csv")); err == nil {
		scen = []string{dir}
	} else {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("petshop %s: %w", dir, err)
		}
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "graph.csv")); e.IsDir() && err == nil {
				scen = append(scen, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(scen) == 0 {
		return nil, fmt.Errorf("petshop %s: no folder with graph.csv", dir)
	}
	res := &PetShopResult{}
	for _, s := range scen {
		issues, err := petScenario(s)
		if err != nil {
			return nil, err
		}
		res.Issues = append(res.Issues, issues...)
	}
	return res, nil
}

type petIssueData struct {
	name string
	tg   petTarget
	m    *petMetrics
}

func petScenario(dir string) ([]PetIssue, error) {
	calls, err := readPetGraph(filepath.Join(dir, "graph.csv"))
	if err != nil {
		return nil, err
	}
	// Issue folders: any folder below dir (train/, test/, ...) with target.json.
	var data []petIssueData
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "target.json" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var tg petTarget
		if err := json.Unmarshal(b, &tg); err != nil {
			return fmt.Errorf("decode %s: %w", p, err)
		}
		m, err := readPetMetrics(filepath.Join(filepath.Dir(p), "metrics.csv"))
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(p))
		data = append(data, petIssueData{name: rel, tg: tg, m: m})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("petshop %s: %w", dir, err)
	}
	sort.Slice(data, func(i, j int) bool { return data[i].name < data[j].name })
	// Baseline: normal operation when present, plus the rows before the
	// target time of every issue of the scenario (no labels used).
	base := map[[3]string][]float64{}
	add := func(m *petMetrics, cut float64) {
		for k, col := range m.cols {
			for i, v := range col {
				if m.ts[i] < cut {
					base[k] = append(base[k], v) // NaN kept so columns stay aligned
				}
			}
		}
	}
	if m, err := readPetMetrics(filepath.Join(dir, "noissue", "metrics.csv")); err == nil {
		add(m, math.Inf(1))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, d := range data {
		add(d.m, d.tg.Target.Timestamp-halfStep)
	}
	var out []PetIssue
	for _, d := range data {
		t := d.tg.Target
		cand := descendants(calls, t.Node)
		var scores []detect.NodeScore
		for _, n := range cand {
			var s float64
			if t.Metric == "availability" {
				s = availabilityScore(n, d.m, base, t.Timestamp)
			} else {
				s = latencyScore(n, d.m, base, t.Timestamp)
			}
			// Nodes below the bar count as normal: they explain nothing.
			if s < 3 {
				s = math.Min(s, 0)
			}
			scores = append(scores, detect.NodeScore{ID: n, Score: s, Propagating: true})
		}
		ranked := detect.RankRoots(scores, func(id string) []string { return calls[id] })
		pi := PetIssue{Scenario: filepath.Base(dir), Issue: d.name, Metric: t.Metric, Target: t.Node, RootCause: d.tg.RootCause.Node, Rank: -1}
		for i, r := range ranked {
			pi.Ranking = append(pi.Ranking, r.ID)
			if r.ID == pi.RootCause {
				pi.Rank = i
			}
		}
		out = append(out, pi)
	}
	return out, nil
}

// descendants lists the target and every component it calls, transitively
// (problems propagate from callee to caller, so the cause is below the target).
func descendants(calls map[string][]string, from string) []string {
	seen := map[string]bool{from: true}
	out := []string{from}
	for i := 0; i < len(out); i++ {
		for _, c := range calls[out[i]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// latencyScore is the largest robust z of log latency (any statistic) in the
// rows from the target time on, against the baseline's median/MAD.
func latencyScore(n string, m *petMetrics, base map[[3]string][]float64, at float64) float64 {
	best := 0.0
	for _, st := range latencyStats {
		k := [3]string{n, "latency", st}
		col, b := m.cols[k], base[k]
		var logs []float64
		for _, v := range b {
			if finiteF(v) {
				logs = append(logs, math.Log(math.Max(v, 1e-6)))
			}
		}
		if len(logs) < 3 || len(col) == 0 {
			continue
		}
		med, mad := medMAD(logs)
		mad = math.Max(mad, 0.05)
		for i, v := range col {
			if m.ts[i] < at-halfStep || !finiteF(v) {
				continue
			}
			best = math.Max(best, (math.Log(math.Max(v, 1e-6))-med)/mad)
		}
	}
	return best
}

// availabilityScore is the strongest binomial-tail score (-log10 p) of the
// failed requests in the rows from the target time on, against the baseline
// failure ratio: counts matter, so a busy component failing a little beats a
// quiet one failing a lot by chance.
func availabilityScore(n string, m *petMetrics, base map[[3]string][]float64, at float64) float64 {
	ka, kr := [3]string{n, "availability", "Average"}, [3]string{n, "requests", "Sum"}
	av, rq := m.cols[ka], m.cols[kr]
	if len(av) == 0 || len(rq) == 0 {
		return 0
	}
	var fb, nb float64
	ba, br := base[ka], base[kr]
	for i := range min(len(ba), len(br)) {
		if finiteF(ba[i]) && finiteF(br[i]) {
			fb += br[i] * (100 - ba[i]) / 100
			nb += br[i]
		}
	}
	p0 := math.Max((fb+1)/(nb+100), 1e-4)
	best := 0.0
	for i := range av {
		if m.ts[i] < at-halfStep || !finiteF(av[i]) || !finiteF(rq[i]) || rq[i] < 1 {
			continue
		}
		k := math.Round(rq[i] * (100 - av[i]) / 100)
		if k <= 0 {
			continue
		}
		best = math.Max(best, detect.BinomialScore(uint64(k), uint64(rq[i]), p0))
	}
	return best
}

func medMAD(v []float64) (float64, float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	med := quant(s)
	for i := range s {
		s[i] = math.Abs(s[i] - med)
	}
	slices.Sort(s)
	return med, quant(s) * 1.4826
}

func quant(s []float64) float64 {
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WritePetShop prints top-1/top-3 per scenario and metric, and overall.
func WritePetShop(w io.Writer, r *PetShopResult) {
	type agg struct{ n, t1, t3 int }
	groups := map[string]*agg{}
	var keys []string
	bump := func(k string, rank int) {
		a := groups[k]
		if a == nil {
			a = &agg{}
			groups[k] = a
			keys = append(keys, k)
		}
		a.n++
		if rank == 0 {
			a.t1++
		}
		if rank >= 0 && rank < 3 {
			a.t3++
		}
	}
	fmt.Fprintf(w, "%-20s %-24s %-13s %-5s %s\n", "scenario", "issue", "metric", "rank", "top-3")
	for _, is := range r.Issues {
		rank := "-"
		if is.Rank >= 0 {
			rank = strconv.Itoa(is.Rank + 1)
		}
		top := is.Ranking[:min(3, len(is.Ranking))]
		fmt.Fprintf(w, "%-20s %-24s %-13s %-5s %s\n", is.Scenario, is.Issue, is.Metric, rank, strings.Join(top, " | "))
		bump(is.Scenario+" "+is.Metric, is.Rank)
		bump("all "+is.Metric, is.Rank)
	}
	fmt.Fprintf(w, "\n%-34s %6s %6s %6s\n", "group", "issues", "top1", "top3")
	for _, k := range keys {
		a := groups[k]
		fmt.Fprintf(w, "%-34s %6d %6.3f %6.3f\n", k, a.n, float64(a.t1)/float64(a.n), float64(a.t3)/float64(a.n))
	}
	var n, t1, t3 int
	for _, is := range r.Issues {
		n++
		if is.Rank == 0 {
			t1++
		}
		if is.Rank >= 0 && is.Rank < 3 {
			t3++
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "overall top1=0.000 top3=0.000")
		return
	}
	fmt.Fprintln(w, "baseline (dataset authors' anomaly traversal): top1 0.57 latency, 0.67-0.83 availability")
	fmt.Fprintf(w, "overall top1=%.3f top3=%.3f\n", float64(t1)/float64(n), float64(t3)/float64(n))
}
