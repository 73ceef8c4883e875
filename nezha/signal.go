package nezha

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// request is one service's handling of one request in a trace: an entry
// span (a root, or a span whose parent is in another service) and the
// calls to other services made anywhere below it inside the same service.
type request struct {
	start   int64
	service string
	op      string
	calls   int
}

// requests lists the requests of spans (sorted by start time, as Load
// returns them), sorted by start.
func requests(spans []Span) []request {
	parent := parents(spans)
	// entry[i]: the request span i belongs to (itself when it is an entry).
	entry := make([]int, len(spans))
	var resolve func(i int) int
	resolve = func(i int) int {
		if entry[i] != 0 {
			return entry[i] - 1
		}
		p := parent[i]
		e := i
		if p >= 0 && spans[p].Service == spans[i].Service {
			e = resolve(p)
		}
		entry[i] = e + 1
		return e
	}
	calls := make([]int, len(spans))
	for i := range spans {
		resolve(i)
		if p := parent[i]; p >= 0 && spans[p].Service != spans[i].Service {
			calls[resolve(p)]++
		}
	}
	var out []request
	for i := range spans {
		if entry[i]-1 == i && (parent[i] >= 0 || spans[i].ParentID.IsZero()) {
			out = append(out, request{start: spans[i].Start, service: spans[i].Service, op: spans[i].Operation, calls: calls[i]})
		}
	}
	slices.SortStableFunc(out, func(a, b request) int { return cmp.Compare(a.start, b.start) })
	return out
}

// SignalRow is how much the traces changed around the faults of one type:
// requests cut short (calls to other services below half their operation's
// usual number) per minute before and after the injection, across all
// services and at the injected service.
type SignalRow struct {
	Type                      string
	Faults                    int
	CutBefore, CutAfter       float64 // per minute, all services
	OwnCutBefore, OwnCutAfter float64 // per minute, the injected service
	ReqBefore, ReqAfter       float64 // sampled requests per minute, all services
}

// TraceSignal measures, for each fault type, whether requests are cut
// short more often in the five minutes after an injection than in the ten
// before it: the evidence a trace-only view has to find code-level faults.
// Each operation's usual number of calls is its median over the hour
// before the fault.
func TraceSignal(l *Loaded) []SignalRow {
	reqs := requests(l.Spans)
	at := func(t time.Time) int {
		return sort.Search(len(reqs), func(i int) bool { return reqs[i].start >= t.UnixNano() })
	}
	rows := map[string]*SignalRow{}
	var types []string
	for _, f := range l.Faults {
		usual := map[[2]string][]int{}
		for _, r := range reqs[at(f.Time.Add(-time.Hour)):at(f.Time)] {
			k := [2]string{r.service, r.op}
			usual[k] = append(usual[k], r.calls)
		}
		med := make(map[[2]string]float64, len(usual))
		for k, v := range usual {
			if len(v) >= 5 {
				slices.Sort(v)
				med[k] = float64(v[len(v)/2])
			}
		}
		count := func(from, to time.Time) (cut, own, n float64) {
			for _, r := range reqs[at(from):at(to)] {
				n++
				if m := med[[2]string{r.service, r.op}]; m >= 1 && float64(r.calls) < m/2 {
					cut++
					if r.service == f.Service {
						own++
					}
				}
			}
			return
		}
		row := rows[f.Type]
		if row == nil {
			row = &SignalRow{Type: f.Type}
			rows[f.Type] = row
			types = append(types, f.Type)
		}
		row.Faults++
		c, o, n := count(f.Time.Add(-10*time.Minute), f.Time)
		row.CutBefore += c / 10
		row.OwnCutBefore += o / 10
		row.ReqBefore += n / 10
		c, o, n = count(f.Time, f.Time.Add(5*time.Minute))
		row.CutAfter += c / 5
		row.OwnCutAfter += o / 5
		row.ReqAfter += n / 5
	}
	slices.Sort(types)
	out := make([]SignalRow, 0, len(types))
	for _, t := range types {
		r := *rows[t]
		k := float64(r.Faults)
		r.CutBefore, r.CutAfter, r.OwnCutBefore, r.OwnCutAfter = r.CutBefore/k, r.CutAfter/k, r.OwnCutBefore/k, r.OwnCutAfter/k
		r.ReqBefore, r.ReqAfter = r.ReqBefore/k, r.ReqAfter/k
		out = append(out, r)
	}
	return out
}

// WriteSignal prints the TraceSignal table of a day.
func WriteSignal(w interface{ Write([]byte) (int, error) }, day string, rows []SignalRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "trace signal, day %s: requests cut short per minute (fewer than half their operation's usual calls), 10 min before vs 5 min after each injection, mean over faults\n", day)
	fmt.Fprintf(&b, "%-16s %6s %18s %18s %18s\n", "type", "faults", "requests/min", "cut short/min", "at injected svc")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-16s %6d %8.1f -> %6.1f %8.2f -> %6.2f %8.2f -> %6.2f\n", r.Type, r.Faults, r.ReqBefore, r.ReqAfter, r.CutBefore, r.CutAfter, r.OwnCutBefore, r.OwnCutAfter)
	}
	_, _ = w.Write([]byte(b.String()))
}

// parents is the index of each span's parent in spans (same trace, parent
// ID), -1 for roots and spans whose parent is not in the data.
func parents(spans []Span) []int {
	type key struct {
		t [16]byte
		s [8]byte
	}
	idx := make(map[key]int, len(spans))
	for i := range spans {
		idx[key{spans[i].TraceID, spans[i].SpanID}] = i
	}
	out := make([]int, len(spans))
	for i := range spans {
		out[i] = -1
		if !spans[i].ParentID.IsZero() {
			if p, ok := idx[key{spans[i].TraceID, spans[i].ParentID}]; ok {
				out[i] = p
			}
		}
	}
	return out
}
