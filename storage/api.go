package storage

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/web"
)

// API serves what storage adds to the HTTP API:
//
//	GET /api/v1/graph/diff?from=T1&to=T2[&window=5m&view=&namespace=&limit=20]
//	GET /api/v1/history/anomalies?state=&since=&until=&limit=
//	GET /api/v1/history/incidents?state=&since=&until=&limit=
//	GET /api/v1/history/changes?id=ID
//	GET /api/v1/audit?after=SEQ&since=&principal=&subject=&limit=
//	GET /api/v1/storage/status
//
// GET /api/v1/graph?at=&window= itself replays through Replay, passed to
// the web server as its GraphSource.
type API struct {
	store  Store
	replay *Replay
	rec    *Recorder // nil: status shows the driver only
	health web.Health
}

// NewAPI builds the handlers.
func NewAPI(store Store, replay *Replay, rec *Recorder) *API {
	return &API{store: store, replay: replay, rec: rec, health: web.DefaultHealth}
}

// Register mounts every route with mount (e.g. web.Server.Handle).
func (a *API) Register(mount func(pattern string, h http.Handler)) {
	mount("GET /api/v1/graph/diff", http.HandlerFunc(a.handleDiff))
	mount("GET /api/v1/history/anomalies", http.HandlerFunc(a.handleAnomalies))
	mount("GET /api/v1/history/incidents", http.HandlerFunc(a.handleIncidents))
	mount("GET /api/v1/history/changes", http.HandlerFunc(a.handleChanges))
	mount("GET /api/v1/audit", http.HandlerFunc(a.handleAudit))
	mount("GET /api/v1/storage/status", http.HandlerFunc(a.handleStatus))
}

// Handler is all routes on one mux (tests, or mounting under one prefix).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q: want RFC3339 or unix seconds", s)
	}
	return time.Unix(0, int64(f*1e9)), nil
}

// params reads the optional time/limit parameters shared by the list routes.
type params struct {
	since, until time.Time
	limit        int
}

func readParams(r *http.Request) (params, error) {
	var p params
	v := r.URL.Query()
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &p.since}, {"until", &p.until}} {
		if s := v.Get(f.name); s != "" {
			t, err := parseTime(s)
			if err != nil {
				return p, fmt.Errorf("%s: %w", f.name, err)
			}
			*f.dst = t
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, errors.New("limit: must be a non-negative integer")
		}
		p.limit = n
	}
	return p, nil
}

func (a *API) handleAnomalies(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := a.store.Anomalies(r.Context(), EventQuery{State: r.URL.Query().Get("state"), Since: p.since, Until: p.until, Limit: p.limit})
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"anomalies": nonNil(out)})
}

func (a *API) handleIncidents(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := a.store.Incidents(r.Context(), EventQuery{State: r.URL.Query().Get("state"), Since: p.since, Until: p.until, Limit: p.limit})
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": nonNil(out)})
}

func (a *API) handleChanges(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		writeErr(w, http.StatusBadRequest, "id: required (an anomaly or incident id)")
		return
	}
	out, err := a.store.StateChanges(r.Context(), id)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"changes": nonNil(out)})
}

func (a *API) handleAudit(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	v := r.URL.Query()
	q := AuditQuery{Since: p.since, Principal: v.Get("principal"), Subject: v.Get("subject"), Limit: p.limit}
	if s := v.Get("after"); s != "" {
		if q.AfterSeq, err = strconv.ParseInt(s, 10, 64); err != nil {
			writeErr(w, http.StatusBadRequest, "after: must be an audit sequence number")
			return
		}
	}
	out, err := a.store.Audit(r.Context(), q)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": nonNil(out)})
}

func (a *API) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := Status{Driver: a.store.Driver()}
	if a.rec != nil {
		st = a.rec.Status()
	}
	code := http.StatusOK
	if err := a.store.Ping(r.Context()); err != nil {
		st.LastError = err.Error()
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ---- diff ----

// DiffJSON is the response of GET /api/v1/graph/diff.
type DiffJSON struct {
	View    string      `json:"view"`
	From    WindowJSON  `json:"from"`
	To      WindowJSON  `json:"to"`
	Nodes   NodeDiff    `json:"nodes"`
	Edges   EdgeDiff    `json:"edges"`
	Changes ChangesJSON `json:"changes"`
}

// WindowJSON is one side of a diff.
type WindowJSON struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// NodeDiff lists node IDs only on one side.
type NodeDiff struct {
	Added   []web.NodeData `json:"added"`
	Removed []web.NodeData `json:"removed"`
}

// EdgeDiff lists edges only on one side.
type EdgeDiff struct {
	Added   []web.EdgeData `json:"added"`
	Removed []web.EdgeData `json:"removed"`
}

// EdgeChange is one edge present on both sides whose metric moved.
type EdgeChange struct {
	ID       string  `json:"id"`
	Source   string  `json:"source"`
	Target   string  `json:"target"`
	Protocol string  `json:"protocol"`
	Before   float64 `json:"before"`
	After    float64 `json:"after"`
	Delta    float64 `json:"delta"`
	// Ratio is after/before (0 when before is 0).
	Ratio float64 `json:"ratio"`
}

// ChangesJSON holds the biggest moves, largest first.
type ChangesJSON struct {
	Rate       []EdgeChange `json:"rate"`       // requests per second
	ErrorRatio []EdgeChange `json:"errorRatio"` // failed / total
	P95        []EdgeChange `json:"p95"`        // ms
}

func (a *API) handleDiff(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	view, err := graph.ParseView(v.Get("view"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	var t1, t2 time.Time
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"from", &t1}, {"to", &t2}} {
		s := v.Get(f.name)
		if s == "" {
			writeErr(w, http.StatusBadRequest, f.name+": required (RFC3339 or unix seconds)")
			return
		}
		if *f.dst, err = parseTime(s); err != nil {
			writeErr(w, http.StatusBadRequest, f.name+": "+err.Error())
			return
		}
	}
	window := graph.DefaultWindow
	if s := v.Get("window"); s != "" {
		if window, err = time.ParseDuration(s); err != nil || window <= 0 {
			writeErr(w, http.StatusBadRequest, "window: want a positive duration like 5m")
			return
		}
	}
	limit := 20
	if s := v.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit <= 0 {
			writeErr(w, http.StatusBadRequest, "limit: must be a positive integer")
			return
		}
	}
	var ns []string
	for _, n := range strings.Split(v.Get("namespace"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			ns = append(ns, n)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	snaps := [2]*graph.Snapshot{}
	for i, at := range []time.Time{t1, t2} {
		q := graph.Query{View: view, Namespaces: ns, Window: window, At: at}
		if a.replay.inMemory(q) {
			snaps[i], err = a.replay.live.Snapshot(q)
		} else {
			snaps[i], err = a.replay.SnapshotAt(ctx, q)
		}
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, graph.ErrBadQuery) {
				code = http.StatusBadRequest
			}
			writeErr(w, code, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, Diff(snaps[0], snaps[1], a.health, limit))
}

// Diff compares two snapshots of the same view: what appeared, what went,
// and the edges whose rate, error ratio and p95 moved most.
func Diff(before, after *graph.Snapshot, h web.Health, limit int) *DiffJSON {
	b, a := web.GraphJSONOf(before, h), web.GraphJSONOf(after, h)
	out := &DiffJSON{View: after.View.String(),
		From: WindowJSON{before.Start, before.End}, To: WindowJSON{after.Start, after.End}}
	out.Nodes.Added, out.Nodes.Removed = []web.NodeData{}, []web.NodeData{}
	out.Edges.Added, out.Edges.Removed = []web.EdgeData{}, []web.EdgeData{}
	bn := map[string]bool{}
	for _, n := range b.Elements.Nodes {
		bn[n.Data.ID] = true
	}
	an := map[string]bool{}
	for _, n := range a.Elements.Nodes {
		an[n.Data.ID] = true
		if !bn[n.Data.ID] {
			out.Nodes.Added = append(out.Nodes.Added, n.Data)
		}
	}
	for _, n := range b.Elements.Nodes {
		if !an[n.Data.ID] {
			out.Nodes.Removed = append(out.Nodes.Removed, n.Data)
		}
	}
	be := map[string]web.EdgeData{}
	for _, e := range b.Elements.Edges {
		be[e.Data.ID] = e.Data
	}
	ae := map[string]bool{}
	var rate, errs, p95 []EdgeChange
	for _, e := range a.Elements.Edges {
		d := e.Data
		ae[d.ID] = true
		old, ok := be[d.ID]
		if !ok {
			out.Edges.Added = append(out.Edges.Added, d)
			continue
		}
		mk := func(x, y float64) EdgeChange {
			c := EdgeChange{ID: d.ID, Source: d.Source, Target: d.Target, Protocol: d.Protocol, Before: x, After: y, Delta: round(y-x, 6)}
			if x != 0 {
				c.Ratio = round(y/x, 4)
			}
			return c
		}
		rate = append(rate, mk(old.Stats.RPS, d.Stats.RPS))
		if old.Stats.Requests > 0 || d.Stats.Requests > 0 {
			errs = append(errs, mk(old.Stats.ErrorRatio, d.Stats.ErrorRatio))
		}
		if old.Stats.P95 > 0 && d.Stats.P95 > 0 {
			p95 = append(p95, mk(old.Stats.P95, d.Stats.P95))
		}
	}
	for _, e := range b.Elements.Edges {
		if !ae[e.Data.ID] {
			out.Edges.Removed = append(out.Edges.Removed, e.Data)
		}
	}
	// Rates and latencies rank by relative move (a doubling matters on any
	// edge), error ratios by absolute points.
	rel := func(c EdgeChange) float64 { return math.Abs(math.Log((c.After + 1e-3) / (c.Before + 1e-3))) }
	out.Changes.Rate = top(rate, rel, limit)
	out.Changes.ErrorRatio = top(errs, func(c EdgeChange) float64 { return math.Abs(c.Delta) }, limit)
	out.Changes.P95 = top(p95, rel, limit)
	return out
}

func top(cs []EdgeChange, score func(EdgeChange) float64, limit int) []EdgeChange {
	kept := cs[:0]
	for _, c := range cs {
		if score(c) > 1e-9 {
			kept = append(kept, c)
		}
	}
	slices.SortStableFunc(kept, func(x, y EdgeChange) int {
		if c := cmp.Compare(score(y), score(x)); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	if len(kept) > limit {
		kept = kept[:limit]
	}
	return append([]EdgeChange{}, kept...)
}

func round(v float64, digits int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
