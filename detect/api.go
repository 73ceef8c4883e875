package detect

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (f *Filter) match(a *Anomaly) bool {
	if f.State != "" && a.State != f.State {
		return false
	}
	if f.Type != "" && a.Type != f.Type {
		return false
	}
	if !f.Since.IsZero() && a.UpdatedAt.Before(f.Since) {
		return false
	}
	if f.Namespace != "" || f.Node != "" {
		ok := false
		for _, r := range []*NodeRef{a.Subject.Source, a.Subject.Target, a.Subject.Node} {
			if r == nil {
				continue
			}
			if (f.Namespace == "" || r.Namespace == f.Namespace) && (f.Node == "" || r.ID == f.Node || r.Name == f.Node) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Anomalies returns copies of the held anomalies (firing and recently
// resolved) matching f, newest first.
func (e *Engine) Anomalies(f Filter) []Anomaly {
	e.mu.Lock()
	out := make([]Anomaly, 0, len(e.active))
	for _, a := range e.byID {
		if f.match(a) {
			out = append(out, *a.clone())
		}
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Anomaly) int {
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// Anomaly returns one anomaly by ID.
func (e *Engine) Anomaly(id string) (Anomaly, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.byID[id]
	if !ok {
		return Anomaly{}, false
	}
	return *a.clone(), true
}

// IncidentFilter selects incidents; zero fields match all.
type IncidentFilter struct {
	State string
	Limit int
}

// Incidents returns copies of the held incidents, newest first.
func (e *Engine) Incidents(f IncidentFilter) []Incident {
	e.mu.Lock()
	out := make([]Incident, 0, len(e.inc.byID))
	for _, in := range e.inc.byID {
		if f.State == "" || in.State == f.State {
			out = append(out, *in.clone())
		}
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Incident) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// Incident returns one incident by ID.
func (e *Engine) Incident(id string) (Incident, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	in, ok := e.inc.byID[id]
	if !ok {
		return Incident{}, false
	}
	return *in.clone(), true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

// HandleAnomalies serves GET /api/v1/anomalies[/{id}]?state=&type=&namespace=&node=&since=RFC3339&limit=.
func (e *Engine) HandleAnomalies(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "GET only"})
		return
	}
	if id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v1/anomalies"), "/"); id != "" {
		a, ok := e.Anomaly(id)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "anomaly " + id + " not found"})
			return
		}
		writeJSON(w, http.StatusOK, a)
		return
	}
	q := r.URL.Query()
	f := Filter{State: q.Get("state"), Type: q.Get("type"), Namespace: q.Get("namespace"), Node: q.Get("node")}
	switch f.State {
	case "", StateFiring, StateResolved:
	default:
		badRequest(w, "state: must be firing or resolved")
		return
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			badRequest(w, "since: "+err.Error())
			return
		}
		f.Since = t
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			badRequest(w, "limit: must be a non-negative integer")
			return
		}
		f.Limit = n
	}
	writeJSON(w, http.StatusOK, map[string]any{"anomalies": e.Anomalies(f)})
}

// HandleIncidents serves GET /api/v1/incidents and /api/v1/incidents/{id}.
func (e *Engine) HandleIncidents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "GET only"})
		return
	}
	if id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v1/incidents"), "/"); id != "" {
		in, ok := e.Incident(id)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "incident " + id + " not found"})
			return
		}
		anoms := make([]Anomaly, 0, len(in.Anomalies))
		for _, aid := range in.Anomalies {
			if a, ok := e.Anomaly(aid); ok {
				anoms = append(anoms, a)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"incident": in, "anomalies": anoms})
		return
	}
	q := r.URL.Query()
	f := IncidentFilter{State: q.Get("state")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			badRequest(w, "limit: must be a non-negative integer")
			return
		}
		f.Limit = n
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": e.Incidents(f)})
}

// SetRecentRank sets how HandleSuspects ranks (its Recent is the default
// window) and, with Recent > 0, makes every incident's causes its recent
// ranking too. Without it the suspects ranking has no noise discount and no
// added time, and incidents keep the ranking of all their anomalies.
func (e *Engine) SetRecentRank(cfg RecentRankConfig) {
	e.mu.Lock()
	e.recentRank = cfg
	e.mu.Unlock()
}

// HandleSuspects serves GET /api/v1/suspects?window=10m: the services
// ranked as the likely cause of what went wrong in the last window, across
// incidents (RankRecent), with the evidence for each.
func (e *Engine) HandleSuspects(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "GET only"})
		return
	}
	e.mu.Lock()
	cfg, at := e.recentRank, e.last
	e.mu.Unlock()
	if cfg.Recent <= 0 {
		cfg.Recent = 10 * time.Minute
	}
	if s := r.URL.Query().Get("window"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 24*time.Hour {
			badRequest(w, "window: want a duration in (0, 24h], e.g. 10m")
			return
		}
		cfg.Recent = d
	}
	if at.IsZero() {
		at = time.Now()
	}
	causes, err := e.RankRecent("", at, cfg)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"at": at.UTC(), "window": cfg.Recent.String(), "suspects": causes})
}

// Handler serves /api/v1/anomalies[/{id}], /api/v1/incidents[/{id}] and
// /api/v1/suspects.
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/suspects", e.HandleSuspects)
	mux.HandleFunc("/api/v1/anomalies", e.HandleAnomalies)
	mux.HandleFunc("/api/v1/anomalies/", e.HandleAnomalies)
	mux.HandleFunc("/api/v1/incidents", e.HandleIncidents)
	mux.HandleFunc("/api/v1/incidents/", e.HandleIncidents)
	return mux
}
