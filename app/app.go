// Package app is the one wiring place: it builds meshlens' components in
// order (storage → graph → detect → collector → assistant → web), starts
// them, and stops them in reverse.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/collector/metrics"
	"github.com/meshlens/meshlens/collector/ratelimit"
	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/config"
	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/detect/alert"
	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
	"github.com/meshlens/meshlens/web"
	"github.com/meshlens/meshlens/web/ui"
)

// component is anything with a lifecycle.
type component interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

type named struct {
	name string
	c    component
}

// App holds the running components.
type App struct {
	cfg       config.Config
	log       *slog.Logger
	reg       *prometheus.Registry
	Graph     *graph.Graph
	Web       *web.Server
	Detect    *detect.Engine
	Metrics   *metrics.Collector
	Traces    *traces.Receiver
	Assistant *assistant.Assistant
	Storage   *storage.Wired
	alerts    *alert.Notifier
	spans     *detect.SpanWindows  // live spans awaiting the structure detector; nil when off
	resources *detect.PodResources // pods' CPU and memory readings; nil when off
	demo      *demo
	started   []named
}

// New builds every component; nothing runs until Start.
func New(cfg config.Config, log *slog.Logger) (_ *App, retErr error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	a.Graph = graph.New(graph.Config{Resolution: cfg.Graph.Resolution.D(), Window: cfg.Graph.Window.D(),
		DefaultCluster: cfg.Graph.DefaultCluster, MaxNodes: cfg.Graph.MaxNodes, MaxEdges: cfg.Graph.MaxEdges, MaxLabelLen: cfg.Graph.MaxLabelLen})
	a.reg.MustRegister(newGraphCollector(a.Graph))

	if cfg.Detect.Enabled {
		eng, err := detect.New(cfg.Detect, log.With("component", "detect"), a.reg)
		if err != nil {
			return nil, err
		}
		a.Detect = eng
		eng.Attach(a.Graph)
		if a.alerts, err = alert.New(cfg.Detect.Alerts, log.With("component", "alerts"), a.reg); err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		eng.Subscribe(a.alerts.Handle)
		// Suspects rank what broke in the last minutes, each service's
		// chronically noisy signals discounted (10-minute slots).
		br, err := detect.NewBaseRates(10*time.Minute, 1000)
		if err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
		br.Attach(eng)
		rank := detect.DefaultRecentRankConfig(br)
		if cfg.Detect.Structure.Enabled {
			st, err := detect.NewStructure(eng, cfg.Detect.Structure)
			if err != nil {
				return nil, err
			}
			a.spans = detect.NewSpanWindows(cfg.Detect.Structure.MaxSpans, cfg.Detect.Structure.Window)
			a.reg.MustRegister(newSpanWindowsCollector(a.spans))
			st.Attach(a.Graph, a.spans)
			rank.Added = st
		}
		eng.SetRecentRank(rank)
		if cfg.Detect.Resources.Enabled {
			if a.resources, err = detect.NewPodResources(eng, cfg.Detect.Resources); err != nil {
				return nil, err
			}
			a.resources.Attach(a.Graph)
			a.reg.MustRegister(resourcesDropped(a.resources))
		}
	}

	// Storage restores the graph's recent window and the detector's baselines
	// before anything ingests, then records both.
	var err error
	if a.Storage, err = storage.Wire(context.Background(), storage.WireOptions{Config: cfg.Storage, DataDir: cfg.DataDir,
		Graph: a.Graph, Detect: a.Detect, Logger: log.With("component", "storage"), Registerer: a.reg}); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer func() {
		if retErr != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = a.Storage.Shutdown(sctx)
		}
	}()

	lim, err := ratelimit.New(cfg.Receivers.Limits, a.reg, nil)
	if err != nil {
		return nil, err
	}
	recvTLS, err := cfg.Receivers.TLS.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("receivers.tls: %w", err)
	}
	var mopts []metrics.Option
	if a.resources != nil {
		mopts = append(mopts, metrics.WithResourceSink(podResourceSink{a.resources}))
	}
	if a.Metrics, err = metrics.New(cfg.Metrics, a.Graph, log.With("component", "metrics"), a.reg, mopts...); err != nil {
		return nil, fmt.Errorf("metrics collector: %w", err)
	}
	// OTLP metrics arrive on the same OTLP ports as traces.
	if a.Traces, err = traces.New(cfg.Traces, a.Graph, log.With("component", "traces"), a.reg,
		traces.WithOTLPHTTPHandler("/v1/metrics", a.Metrics.OTLPHTTPHandler()),
		traces.WithGRPCRegistration(a.Metrics.RegisterGRPC),
		traces.WithTLS(recvTLS), traces.WithHTTPMiddleware(lim.HTTP), traces.WithGRPCInterceptor(lim.UnaryInterceptor),
		traces.WithSpanTap(a.tapSpans)); err != nil {
		return nil, fmt.Errorf("traces receiver: %w", err)
	}

	if cfg.Demo.Scenario != "" {
		sc, err := fixtures.Load(cfg.Demo.Scenario)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		a.demo = newDemo(sc, cfg.Demo.Seed, a.Graph, log)
	}

	authn, err := auth.New(cfg.Auth, auth.Options{Logger: log.With("component", "auth"), Registerer: a.reg})
	if err != nil {
		return nil, err
	}
	httpTLS, err := cfg.HTTP.TLS.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("http.tls: %w", err)
	}
	a.Web = web.New(web.Options{
		Addr:        cfg.HTTP.Addr,
		Graph:       a.Storage.Replay,
		Ready:       a.Storage.Ready,
		UI:          ui.FS(),
		Logger:      log,
		Registerer:  a.reg,
		Gatherer:    a.reg,
		Auth:        authn.Middleware,
		CheckOrigin: authn.CheckOrigin,
		TLS:         httpTLS,
	})
	aopts := assistant.Options{Config: cfg.Assistant, Graph: a.Graph,
		Proposals: a.Storage.Assistant, Sessions: a.Storage.Assistant, Audit: a.Storage.Assistant,
		Logger: log.With("component", "assistant"), Registerer: a.reg}
	if a.Detect != nil { // a nil *Engine in the interface would look present
		aopts.Detector = a.Detect
	}
	if a.Assistant, err = assistant.New(aopts); err != nil {
		return nil, fmt.Errorf("assistant: %w", err)
	}
	// The assistant checks roles itself; it sees the authenticated principal.
	assistantAPI := withAssistantPrincipal(a.Assistant.Handler())
	for _, p := range []string{"/api/v1/chat", "/api/v1/chat/", "/api/v1/proposals", "/api/v1/proposals/"} {
		a.Web.Handle(p, assistantAPI)
	}
	a.Storage.Mount(a.Web.Handle)
	a.Graph.OnBucketClose(a.Web.BucketClosed)
	a.Web.Handle("POST /api/v1/write", lim.HTTP("remote_write", a.Metrics.RemoteWriteHandler()))
	a.Web.Handle("GET /api/v1/collector/status", a.Metrics.StatusHandler())
	if a.Detect != nil {
		a.Web.Handle("/api/v1/anomalies", a.Detect.Handler())
		a.Web.Handle("/api/v1/anomalies/", a.Detect.Handler())
		a.Web.Handle("/api/v1/incidents", a.Detect.Handler())
		a.Web.Handle("/api/v1/incidents/", a.Detect.Handler())
		a.Web.Handle("/api/v1/suspects", a.Detect.Handler())
		a.Detect.Subscribe(func(c detect.Change) {
			kind := "anomaly"
			if c.Incident != nil {
				kind = "incident"
			}
			a.Web.Publish(kind, c)
		})
	}
	return a, nil
}

// podResourceSink hands the collector's pod readings to the detector.
type podResourceSink struct{ r *detect.PodResources }

func (s podResourceSink) ObserveResources(rs []metrics.PodResource) {
	for i := range rs {
		s.r.Add(rs[i].Namespace, rs[i].Pod, rs[i].Resource, rs[i].Used, rs[i].LimitPct)
	}
}

// tapSpans hands received spans to the trace-structure detector.
func (a *App) tapSpans(spans []traces.Span) {
	if a.spans == nil {
		return
	}
	// SpanWindows.Add copies what it keeps, so the conversion buffer is reused.
	buf := traceSpanBufs.Get().(*[]detect.TraceSpan)
	*buf = TraceSpans((*buf)[:0], spans)
	a.spans.Add(*buf)
	clear(*buf) // drop the strings it points to
	traceSpanBufs.Put(buf)
}

var traceSpanBufs = sync.Pool{New: func() any { return new([]detect.TraceSpan) }}

// TraceSpans appends the received spans to dst as the trace-structure
// detector reads them.
func TraceSpans(dst []detect.TraceSpan, spans []traces.Span) []detect.TraceSpan {
	for i := range spans {
		s := &spans[i]
		dst = append(dst, detect.TraceSpan{Trace: s.TraceID, ID: s.SpanID, Parent: s.ParentID, Node: s.Service,
			Operation: s.Name, Start: s.StartUnixNano, End: s.EndUnixNano})
	}
	return dst
}

// Start starts components in order; on failure it stops what had started.
func (a *App) Start(ctx context.Context) error {
	// A restored window already holds the recent past: backfilling it again would count it twice.
	if a.demo != nil && a.Storage.Restored.Buckets == 0 {
		a.demo.backfill(time.Now())
	}
	order := []named{{"storage", a.Storage}}
	if a.alerts != nil {
		order = append(order, named{"alerts", a.alerts})
	}
	order = append(order, named{"graph", a.Graph})
	order = append(order, named{"metrics", a.Metrics}, named{"traces", a.Traces})
	if a.demo != nil {
		order = append(order, named{"demo", a.demo})
	}
	order = append(order, named{"assistant", a.Assistant})
	order = append(order, named{"web", a.Web})
	for _, n := range order {
		if err := n.c.Start(ctx); err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return errors.Join(fmt.Errorf("start %s: %w", n.name, err), a.Shutdown(sctx))
		}
		a.started = append(a.started, n)
	}
	return nil
}

// Shutdown stops started components in reverse order; safe twice.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(a.started) - 1; i >= 0; i-- {
		n := a.started[i]
		if err := n.c.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", n.name, err))
		}
	}
	a.started = nil
	return errors.Join(errs...)
}

// Run starts the app, waits for ctx to end, and shuts down.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	a, err := New(cfg, log)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	log.Info("meshlens running", "http", a.Web.Addr(), "demo", cfg.Demo.Scenario)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return a.Shutdown(sctx)
}

// withAssistantPrincipal hands the principal set by authentication to the
// assistant, so approvals are checked and audited against who really asked.
func withAssistantPrincipal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := auth.PrincipalFrom(r.Context()); ok {
			r = r.WithContext(assistant.WithPrincipal(r.Context(), assistant.Principal{Name: p.Name, Roles: p.Roles()}))
		}
		next.ServeHTTP(w, r)
	})
}
