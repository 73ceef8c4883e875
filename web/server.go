// Package web serves meshlens' HTTP API, the live websocket feed and the
// embedded dashboard.
package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlens/meshlens/graph"
)

// GraphSource is what the API reads the graph from.
type GraphSource interface {
	Snapshot(graph.Query) (*graph.Snapshot, error)
	History(f graph.EdgeFilter, window time.Duration, at time.Time) (time.Time, []graph.Stats, error)
	Namespaces() []string
	Resolution() time.Duration
	Window() time.Duration
}

// Options configure the server.
type Options struct {
	Addr       string
	Graph      GraphSource
	Health     Health
	UI         fs.FS // the dashboard; nil serves a short notice
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Ready reports whether the process is ready to serve (e.g. storage restored).
	Ready func() error
	// Auth wraps every route (authentication, roles, CSRF), e.g.
	// auth.Authenticator.Middleware; nil serves everything open.
	Auth func(http.Handler) http.Handler
	// CheckOrigin replaces the live websocket's origin check (default:
	// no Origin or the same host).
	CheckOrigin func(*http.Request) bool
	// TLS serves HTTPS when set (auth.TLS.ServerConfig).
	TLS *tls.Config
}

// Server is the HTTP front of meshlens.
type Server struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	srv      *http.Server
	ln       net.Listener
	live     *hub
	snapTime prometheus.Histogram

	mu      sync.Mutex
	started bool
	done    chan struct{}
}

// New builds the server; it listens only on Start.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Health == (Health{}) {
		opts.Health = DefaultHealth
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	s.snapTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "meshlens_graph_snapshot_seconds",
		Help:    "Time to take a graph snapshot for the API and the live feed.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.snapTime)
	}
	s.live = newHub(s)
	if opts.CheckOrigin != nil {
		s.live.upgrader.CheckOrigin = opts.CheckOrigin
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Ready != nil {
			if err := s.opts.Ready(); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.opts.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("GET /api/v1/graph", s.handleGraph)
	s.mux.HandleFunc("GET /api/v1/history", s.handleHistory)
	s.mux.HandleFunc("GET /api/v1/namespaces", s.handleNamespaces)
	s.mux.HandleFunc("GET /api/v1/live", s.live.serveWS)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path))
	})
	if s.opts.UI != nil {
		s.mux.Handle("/", http.FileServerFS(s.opts.UI))
	} else {
		s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "meshlens API: GET /api/v1/graph?view=workload&window=5m")
		})
	}
}

// Handle mounts another component's handler (call before Start).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is the server's root handler: the mux behind the Auth middleware.
func (s *Server) Handler() http.Handler {
	if s.opts.Auth != nil {
		return s.opts.Auth(s.mux)
	}
	return s.mux
}

// Addr is the bound address once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return s.opts.Addr
	}
	return s.ln.Addr().String()
}

// Start listens and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("web server already started")
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on http address %s: %w", s.opts.Addr, err)
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.ln = ln
	s.started = true
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.done = make(chan struct{})
	s.live.start()
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "addr", s.opts.Addr, "err", err)
		}
	}()
	s.log.Info("http listening", "addr", ln.Addr().String(), "tls", s.opts.TLS != nil, "auth", s.opts.Auth != nil)
	return nil
}

// Shutdown stops accepting, closes live connections and waits; safe twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	s.live.stop()
	err := srv.Shutdown(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("http shutdown: %w", ctx.Err())
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// BucketClosed pushes deltas to live clients; register it as a graph hook.
func (s *Server) BucketClosed(ev graph.BucketClosed) { s.live.bucketClosed(ev) }

// Publish sends an event (anomaly, incident, ...) to every live client.
func (s *Server) Publish(kind string, payload any) { s.live.publish(kind, payload) }

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// parseQuery reads view, namespace, window and at.
func (s *Server) parseQuery(v url.Values) (graph.Query, error) {
	var q graph.Query
	view, err := graph.ParseView(v.Get("view"))
	if err != nil {
		return q, err
	}
	q.View = view
	if w := v.Get("window"); w != "" {
		d, err := parseWindow(w)
		if err != nil {
			return q, err
		}
		q.Window = d
	}
	if at := v.Get("at"); at != "" {
		t, err := parseTime(at)
		if err != nil {
			return q, fmt.Errorf("bad at %q: want RFC3339 or unix seconds", at)
		}
		q.At = t
	}
	if ns := v.Get("namespace"); ns != "" {
		known := s.opts.Graph.Namespaces()
		for _, n := range strings.Split(ns, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if !slices.Contains(known, n) {
				return q, fmt.Errorf("unknown namespace %q (known: %s)", n, strings.Join(known, ", "))
			}
			q.Namespaces = append(q.Namespaces, n)
		}
	}
	return q, nil
}

func parseWindow(w string) (time.Duration, error) {
	d, err := time.ParseDuration(w)
	if err != nil {
		if n, err2 := strconv.Atoi(w); err2 == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad window %q: want a positive duration like 30s, 5m, 1h", w)
	}
	return d, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(f*1e9)), nil
}

func (s *Server) snapshot(q graph.Query) (*graph.Snapshot, error) {
	start := time.Now()
	snap, err := s.opts.Graph.Snapshot(q)
	s.snapTime.Observe(time.Since(start).Seconds())
	return snap, err
}

func (s *Server) handleGraph(w http.ResponseWriter, r *http.Request) {
	q, err := s.parseQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	snap, err := s.snapshot(q)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, graph.ErrBadQuery) {
			code = http.StatusBadRequest
		}
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, toGraphJSON(snap, s.opts.Health))
}

func (s *Server) handleNamespaces(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]string{"namespaces": s.opts.Graph.Namespaces()})
}

// HistoryJSON is the response of GET /api/v1/history.
type HistoryJSON struct {
	Start      time.Time       `json:"start"`
	Resolution float64         `json:"resolution"` // seconds
	Buckets    []HistoryBucket `json:"buckets"`
}

// HistoryBucket is one bucket of a history series.
type HistoryBucket struct {
	RPS        float64 `json:"rps"`
	ErrorRatio float64 `json:"errorRatio"`
	P50        float64 `json:"p50"`
	P95        float64 `json:"p95"`
	P99        float64 `json:"p99"`
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	q, err := s.parseQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if q.Window == 0 {
		q.Window = time.Hour
		if gw := s.opts.Graph.Window(); gw < q.Window {
			q.Window = gw
		}
	}
	f := graph.EdgeFilter{View: q.View}
	v := r.URL.Query()
	for _, p := range []struct {
		name string
		dst  **graph.Node
	}{{"source", &f.Source}, {"target", &f.Target}} {
		if id := v.Get(p.name); id != "" {
			n, err := graph.ParseNodeID(id)
			if err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			*p.dst = &n
		}
	}
	if f.Source == nil && f.Target == nil {
		writeError(w, http.StatusBadRequest, "history needs source and/or target node ids")
		return
	}
	if p := v.Get("protocol"); p != "" {
		proto, err := graph.ParseProtocol(p)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Protocol = &proto
	}
	start, buckets, err := s.opts.Graph.History(f, q.Window, q.At)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, graph.ErrBadQuery) {
			code = http.StatusBadRequest
		}
		writeError(w, code, err.Error())
		return
	}
	res := s.opts.Graph.Resolution().Seconds()
	out := HistoryJSON{Start: start, Resolution: res, Buckets: make([]HistoryBucket, len(buckets))}
	for i := range buckets {
		b := &buckets[i]
		out.Buckets[i] = HistoryBucket{
			RPS: round(float64(b.Requests)/res, 4), ErrorRatio: round(b.ErrorRatio(), 6),
			P50: round(b.Latency.Quantile(0.5), 3), P95: round(b.Latency.Quantile(0.95), 3), P99: round(b.Latency.Quantile(0.99), 3),
		}
	}
	writeJSON(w, http.StatusOK, out)
}
