// Package nezha reads the Nezha RCA dataset layout (a folder per day with a
// fault list, metric/ and trace/), turns its span rows into the traces
// collector's Span type, replays a day over OTLP, and evaluates meshlens'
// detection and root-cause ranking against the labelled faults.
package nezha

import (
	"bufio"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// NodeOf is the graph node of a service, built the way the OTLP receiver
// builds it from a span's resource (service.name only), so replayed and
// evaluated data meet the same nodes.
func NodeOf(service string) graph.Node {
	return traces.Identity{}.NodeFromResource(&traces.ResourceAttrs{ServiceName: service})
}

// Problem is one piece of bad input that was reported and skipped.
type Problem struct {
	Item string // file (and row) it concerns
	Err  string
}

func (p Problem) String() string { return p.Item + ": " + p.Err }

// Fault is one labelled injection.
type Fault struct {
	Time    time.Time
	Pod     string
	Service string
	Type    string
}

// faultTimeLayout is the layout of inject_time; it is read as UTC, which
// lines up with the metric and trace timestamps (inject_timestamp does not).
const faultTimeLayout = "2006-01-02 15:04:05"

// ReadFaults reads a day's fault list (faults grouped by hour). Entries with
// an unreadable time or no pod are reported and skipped.
func ReadFaults(path string) ([]Fault, []Problem, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read fault list %s: %w", path, err)
	}
	var raw map[string][]map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, nil, fmt.Errorf("decode fault list %s: %w", path, err)
	}
	var out []Fault
	var probs []Problem
	for hour, list := range raw {
		for i, f := range list {
			item := fmt.Sprintf("%s[%s][%d]", filepath.Base(path), hour, i)
			str := func(k string) string {
				switch v := f[k].(type) {
				case string:
					return v
				case float64:
					return strconv.FormatFloat(v, 'f', -1, 64)
				}
				return ""
			}
			pod := str("inject_pod")
			if pod == "" {
				probs = append(probs, Problem{item, "no inject_pod"})
				continue
			}
			t, err := time.ParseInLocation(faultTimeLayout, str("inject_time"), time.UTC)
			if err != nil {
				probs = append(probs, Problem{item, fmt.Sprintf("inject_time %q: %v", str("inject_time"), err)})
				continue
			}
			out = append(out, Fault{Time: t, Pod: pod, Service: graph.WorkloadOfPod(pod), Type: str("inject_type")})
		}
	}
	slices.SortFunc(out, func(a, b Fault) int { return a.Time.Compare(b.Time) })
	return out, probs, nil
}

// TraceStats counts what reading trace files did.
type TraceStats struct {
	Files, Rows, Spans, BadRows, Duplicates int
}

// ReadTraceFile appends the spans of one trace CSV (TraceID, SpanID,
// ParentID, PodName, OperationName, StartTimeUnixNano, EndTimeUnixNano,
// Duration) to dst. Broken rows are reported (up to a few per file) and
// skipped; a truncated last line is a broken row.
func ReadTraceFile(path string, dst []Span, st *TraceStats) ([]Span, []Problem, error) {
	f, err := os.Open(path)
	if err != nil {
		return dst, nil, fmt.Errorf("open trace file %s: %w", path, err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<16))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return dst, nil, fmt.Errorf("trace file %s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	need := []string{"TraceID", "SpanID", "ParentID", "PodName", "StartTimeUnixNano", "EndTimeUnixNano"}
	idx := make([]int, len(need))
	for i, n := range need {
		j, ok := col[n]
		if !ok {
			return dst, nil, fmt.Errorf("trace file %s: no %s column", path, n)
		}
		idx[i] = j
	}
	opCol, hasOp := col["OperationName"]
	st.Files++
	var probs []Problem
	bad := 0
	report := func(line int, msg string) {
		bad++
		st.BadRows++
		if bad <= 3 {
			probs = append(probs, Problem{fmt.Sprintf("%s:%d", filepath.Base(path), line), msg})
		}
	}
	pods := map[string]string{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				report(line, err.Error())
				continue
			}
			return dst, probs, fmt.Errorf("trace file %s: %w", path, err)
		}
		st.Rows++
		if len(rec) < len(head) {
			report(line, fmt.Sprintf("%d fields, want %d", len(rec), len(head)))
			continue
		}
		var s Span
		if !decodeHex(rec[idx[0]], s.TraceID[:]) || s.TraceID.IsZero() {
			report(line, fmt.Sprintf("bad trace id %q", rec[idx[0]]))
			continue
		}
		if !decodeHex(rec[idx[1]], s.SpanID[:]) || s.SpanID.IsZero() {
			report(line, fmt.Sprintf("bad span id %q", rec[idx[1]]))
			continue
		}
		if p := rec[idx[2]]; p != "root" && p != "" {
			if !decodeHex(p, s.ParentID[:]) {
				report(line, fmt.Sprintf("bad parent id %q", p))
				continue
			}
		}
		start, err1 := strconv.ParseInt(rec[idx[4]], 10, 64)
		end, err2 := strconv.ParseInt(rec[idx[5]], 10, 64)
		if err1 != nil || err2 != nil || start <= 0 || end < start {
			report(line, fmt.Sprintf("bad times %q..%q", rec[idx[4]], rec[idx[5]]))
			continue
		}
		pod := rec[idx[3]]
		if pod == "" {
			report(line, "no pod name")
			continue
		}
		svc, ok := pods[pod]
		if !ok {
			pod = strings.Clone(pod)
			svc = graph.WorkloadOfPod(pod)
			pods[pod] = svc
		}
		s.Pod, s.Service = pod, svc
		if hasOp && opCol < len(rec) {
			s.Operation = strings.Clone(rec[opCol])
		}
		s.Start, s.End = start, end
		dst = append(dst, s)
		st.Spans++
	}
	if bad > 3 {
		probs = append(probs, Problem{filepath.Base(path), fmt.Sprintf("%d broken rows in all", bad)})
	}
	return dst, probs, nil
}

func decodeHex(s string, dst []byte) bool {
	if len(s) != 2*len(dst) {
		// Some exporters drop leading zeros: left-pad short IDs.
		if len(s) == 0 || len(s) > 2*len(dst) {
			return false
		}
		s = strings.Repeat("0", 2*len(dst)-len(s)) + s
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// Span is one dataset span row, with the pod and operation the traces
// collector's Span does not carry.
type Span struct {
	TraceID    traces.TraceID
	SpanID     traces.SpanID
	ParentID   traces.SpanID
	Pod        string
	Service    string
	Operation  string
	Start, End int64 // unix ns
}

// ToSpan is the collector's span for this row: no kind, no status (the
// dataset has neither), the service as the OTLP receiver would name it.
func (s *Span) ToSpan(nodes map[string]graph.Node) traces.Span {
	n := nodeIn(nodes, s.Service)
	return traces.Span{TraceID: s.TraceID, SpanID: s.SpanID, ParentID: s.ParentID, Service: n, Name: s.Operation,
		StartUnixNano: s.Start, EndUnixNano: s.End, GRPCStatus: -1, Protocol: graph.ProtoHTTP}
}

// TraceSpan is the row as the trace-structure detector reads it.
func (s *Span) TraceSpan(nodes map[string]graph.Node) detect.TraceSpan {
	return detect.TraceSpan{Trace: s.TraceID, ID: s.SpanID, Parent: s.ParentID, Node: nodeIn(nodes, s.Service),
		Operation: s.Operation, Start: s.Start, End: s.End}
}

// nodeIn is service's node, made once and kept in nodes.
func nodeIn(nodes map[string]graph.Node, service string) graph.Node {
	n, ok := nodes[service]
	if !ok {
		n = NodeOf(service)
		nodes[service] = n
	}
	return n
}

// MetricRow is one pod metric reading (one a minute).
type MetricRow struct {
	Time    time.Time
	Pod     string
	Service string
	Values  []float64 // by MetricColumns index; NaN when missing
}

// MetricColumns are the pod metric columns read, in Values order.
var MetricColumns = []string{
	"CpuUsageRate(%)", "MemoryUsageRate(%)",
	"PodClientLatencyP90(s)", "PodServerLatencyP90(s)", "PodClientLatencyP95(s)", "PodServerLatencyP95(s)",
	"PodClientLatencyP99(s)", "PodServerLatencyP99(s)", "PodWorkload(Ops)", "PodSuccessRate(%)",
}

// ReadMetricFile reads one pod's metric CSV. Rows with a broken timestamp
// are reported and skipped; unreadable values are NaN.
func ReadMetricFile(path string) ([]MetricRow, []Problem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open metric file %s: %w", path, err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("metric file %s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	tsCol, ok1 := col["TimeStamp"]
	podCol, ok2 := col["PodName"]
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("metric file %s: want TimeStamp and PodName columns", path)
	}
	vcol := make([]int, len(MetricColumns))
	for i, c := range MetricColumns {
		j, ok := col[c]
		if !ok {
			j = -1
		}
		vcol[i] = j
	}
	var out []MetricRow
	var probs []Problem
	bad := 0
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad++
				continue
			}
			return out, probs, fmt.Errorf("metric file %s: %w", path, err)
		}
		if tsCol >= len(rec) || podCol >= len(rec) {
			bad++
			continue
		}
		ts, err := strconv.ParseFloat(rec[tsCol], 64)
		if err != nil || ts < 1 || rec[podCol] == "" {
			bad++
			if bad <= 3 {
				probs = append(probs, Problem{fmt.Sprintf("%s:%d", filepath.Base(path), line), fmt.Sprintf("bad timestamp %q or pod", rec[tsCol])})
			}
			continue
		}
		row := MetricRow{Time: time.Unix(int64(ts), 0).UTC(), Pod: rec[podCol], Values: make([]float64, len(MetricColumns))}
		row.Service = graph.WorkloadOfPod(row.Pod)
		for i, j := range vcol {
			row.Values[i] = math.NaN()
			if j >= 0 && j < len(rec) {
				if v, err := strconv.ParseFloat(rec[j], 64); err == nil {
					row.Values[i] = v
				}
			}
		}
		out = append(out, row)
	}
	if bad > 3 {
		probs = append(probs, Problem{filepath.Base(path), fmt.Sprintf("%d broken rows in all", bad)})
	}
	return out, probs, nil
}

// Day is one day folder of the dataset.
type Day struct {
	Name        string
	Dir         string
	FaultList   string
	TraceFiles  []string
	MetricFiles []string
}

// FindDays lists the day folders under dir (dir itself when it is one):
// folders holding a *fault_list.json and a trace/ folder.
func FindDays(dir string) ([]Day, error) {
	if d, ok := dayAt(dir); ok {
		return []Day{d}, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("nezha dataset %s: %w", dir, err)
	}
	var out []Day
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if d, ok := dayAt(filepath.Join(dir, e.Name())); ok {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nezha dataset %s: no day folder (a *fault_list.json next to trace/)", dir)
	}
	return out, nil
}

func dayAt(dir string) (Day, bool) {
	fl, _ := filepath.Glob(filepath.Join(dir, "*fault_list.json"))
	if len(fl) == 0 {
		return Day{}, false
	}
	tf, _ := filepath.Glob(filepath.Join(dir, "trace", "*.csv"))
	mf, _ := filepath.Glob(filepath.Join(dir, "metric", "*_metric.csv"))
	if len(tf) == 0 && len(mf) == 0 {
		return Day{}, false
	}
	slices.Sort(tf)
	slices.Sort(mf)
	return Day{Name: filepath.Base(dir), Dir: dir, FaultList: fl[0], TraceFiles: tf, MetricFiles: mf}, true
}

// Loaded is a day read into memory.
type Loaded struct {
	Day      Day
	Faults   []Fault
	Spans    []Span      // deduplicated, by start time
	Metrics  []MetricRow // by time
	Coverage [][2]int64  // merged [first, last] span start (unix ns) of each trace file
	Trace    TraceStats
	Problems []Problem
}

// Load reads a day: fault list, every trace file and every pod metric file.
// Bad files and rows are reported in Problems and skipped.
func Load(d Day) (*Loaded, error) {
	l := &Loaded{Day: d}
	faults, probs, err := ReadFaults(d.FaultList)
	if err != nil {
		return nil, err
	}
	l.Faults, l.Problems = faults, probs
	for _, p := range d.TraceFiles {
		n0 := len(l.Spans)
		spans, probs, err := ReadTraceFile(p, l.Spans, &l.Trace)
		l.Problems = append(l.Problems, probs...)
		if err != nil {
			l.Problems = append(l.Problems, Problem{filepath.Base(p), err.Error()})
			l.Spans = l.Spans[:n0]
			continue
		}
		l.Spans = spans
		if len(spans) > n0 {
			lo, hi := spans[n0].Start, spans[n0].Start
			for _, s := range spans[n0:] {
				lo, hi = min(lo, s.Start), max(hi, s.Start)
			}
			l.Coverage = append(l.Coverage, [2]int64{lo, hi})
		}
	}
	slices.SortStableFunc(l.Spans, func(a, b Span) int {
		if a.Start != b.Start {
			return cmpInt(a.Start, b.Start)
		}
		if c := strings.Compare(string(a.TraceID[:]), string(b.TraceID[:])); c != 0 {
			return c
		}
		return strings.Compare(string(a.SpanID[:]), string(b.SpanID[:]))
	})
	// Trace files of neighbouring minutes overlap: keep each span once.
	l.Spans = slices.CompactFunc(l.Spans, func(a, b Span) bool {
		if a.TraceID == b.TraceID && a.SpanID == b.SpanID {
			l.Trace.Duplicates++
			return true
		}
		return false
	})
	l.Coverage = mergeRanges(l.Coverage)
	for _, p := range d.MetricFiles {
		rows, probs, err := ReadMetricFile(p)
		l.Problems = append(l.Problems, probs...)
		if err != nil {
			l.Problems = append(l.Problems, Problem{filepath.Base(p), err.Error()})
			continue
		}
		l.Metrics = append(l.Metrics, rows...)
	}
	slices.SortStableFunc(l.Metrics, func(a, b MetricRow) int { return a.Time.Compare(b.Time) })
	return l, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func mergeRanges(r [][2]int64) [][2]int64 {
	slices.SortFunc(r, func(a, b [2]int64) int { return cmpInt(a[0], b[0]) })
	var out [][2]int64
	for _, x := range r {
		if n := len(out); n > 0 && x[0] <= out[n-1][1]+int64(time.Minute) {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}

// Covered reports whether [from, to) overlaps the trace coverage.
func (l *Loaded) Covered(from, to time.Time) bool {
	a, b := from.UnixNano(), to.UnixNano()
	for _, c := range l.Coverage {
		if a <= c[1] && b > c[0] {
			return true
		}
	}
	return false
}
