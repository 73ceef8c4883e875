package traces

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Config is the traces section of the configuration. An empty address
// disables that receiver.
type Config struct {
	OTLPGRPCAddr   string `yaml:"otlpGrpcAddr"`
	OTLPHTTPAddr   string `yaml:"otlpHttpAddr"`
	JaegerGRPCAddr string `yaml:"jaegerGrpcAddr"`
	JaegerHTTPAddr string `yaml:"jaegerHttpAddr"`
	ZipkinAddr     string `yaml:"zipkinAddr"`

	// MaxRequestBytes bounds one request, compressed and decompressed
	// (413 / ResourceExhausted beyond it).
	MaxRequestBytes int `yaml:"maxRequestBytes"`
	// MaxConcurrentRequests bounds requests being decoded at once; beyond it
	// clients get a retryable 503 / Unavailable.
	MaxConcurrentRequests int `yaml:"maxConcurrentRequests"`
	// MaxAttrLen truncates kept attribute values (service and peer names).
	MaxAttrLen int `yaml:"maxAttrLen"`
	// ExpireInterval is how often the pairing store lets expired spans go.
	ExpireInterval time.Duration `yaml:"expireInterval"`

	Pairing  PairerConfig `yaml:"pairing"`
	Identity Identity     `yaml:"identity"`
}

// DefaultConfig listens on the standard ports of each protocol.
func DefaultConfig() Config {
	return Config{
		OTLPGRPCAddr:          ":4317",
		OTLPHTTPAddr:          ":4318",
		JaegerGRPCAddr:        ":14250",
		JaegerHTTPAddr:        ":14268",
		ZipkinAddr:            ":9411",
		MaxRequestBytes:       16 << 20,
		MaxConcurrentRequests: 64,
		MaxAttrLen:            256,
		ExpireInterval:        time.Second,
		Pairing:               DefaultPairerConfig(),
		Identity:              Identity{ServiceDomain: "svc.cluster.local"},
	}
}

// Validate reports every problem as "key.path: message" relative to the section.
func (c Config) Validate() []string {
	var p []string
	for _, a := range []struct{ key, addr string }{
		{"otlpGrpcAddr", c.OTLPGRPCAddr}, {"otlpHttpAddr", c.OTLPHTTPAddr},
		{"jaegerGrpcAddr", c.JaegerGRPCAddr}, {"jaegerHttpAddr", c.JaegerHTTPAddr},
		{"zipkinAddr", c.ZipkinAddr},
	} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			p = append(p, fmt.Sprintf("%s: %v", a.key, err))
		}
	}
	if c.MaxRequestBytes < 1024 {
		p = append(p, "maxRequestBytes: must be >= 1024")
	}
	if c.MaxConcurrentRequests < 1 {
		p = append(p, "maxConcurrentRequests: must be > 0")
	}
	if c.MaxAttrLen < 16 {
		p = append(p, "maxAttrLen: must be >= 16")
	}
	if c.ExpireInterval <= 0 {
		p = append(p, "expireInterval: must be > 0")
	}
	for _, s := range c.Pairing.Validate() {
		p = append(p, "pairing."+s)
	}
	return p
}

// Option adjusts a Receiver at construction.
type Option func(*Receiver)

// WithOTLPHTTPHandler serves h at path on the OTLP/HTTP port (e.g. the
// metrics collector's /v1/metrics).
func WithOTLPHTTPHandler(path string, h http.Handler) Option {
	return func(r *Receiver) { r.extraHTTP = append(r.extraHTTP, httpRoute{path, h}) }
}

// WithGRPCRegistration lets another component register services on the OTLP
// gRPC server (e.g. pmetricotlp.RegisterGRPCServer) before it starts.
func WithGRPCRegistration(fn func(*grpc.Server)) Option {
	return func(r *Receiver) { r.extraGRPC = append(r.extraGRPC, fn) }
}

// WithClock sets the clock that drives expiry (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(r *Receiver) { r.clock = now }
}

// WithSpanTap hands every accepted batch of spans to fn as well (e.g. the
// trace-structure detector). fn must not keep the slice; it may be called
// from several goroutines at once.
func WithSpanTap(fn func([]Span)) Option {
	return func(r *Receiver) { r.taps = append(r.taps, fn) }
}

type httpRoute struct {
	path string
	h    http.Handler
}

// Receiver owns the trace listeners and the pairing store.
type Receiver struct {
	cfg    Config
	log    *slog.Logger
	taps   []func([]Span)
	pairer *Pairer
	dec    Decoder
	sem    chan struct{}
	clock  func() time.Time
	m      *metrics

	extraHTTP []httpRoute
	extraGRPC []func(*grpc.Server)
	tls       *tls.Config
	httpMW    func(string, http.Handler) http.Handler
	grpcIC    func(string) grpc.UnaryServerInterceptor

	mu        sync.Mutex
	started   bool
	stopped   bool
	addrs     map[string]net.Addr
	grpcSrvs  []*grpc.Server
	httpSrvs  []*http.Server
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	spanPool  sync.Pool
	otlpHTTP  http.Handler
	collector http.Handler
	zipkin    http.Handler
}

// Receiver names used in metrics and Addr.
const (
	RecvOTLPGRPC   = "otlp_grpc"
	RecvOTLPHTTP   = "otlp_http"
	RecvJaegerGRPC = "jaeger_grpc"
	RecvJaegerHTTP = "jaeger_http"
	RecvZipkin     = "zipkin"
)

// New builds a receiver feeding sink; it starts nothing. reg may be nil.
func New(cfg Config, sink Sink, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Receiver, error) {
	if probs := cfg.Validate(); len(probs) > 0 {
		return nil, fmt.Errorf("traces config: %v", probs)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		cfg:    cfg,
		log:    logger,
		pairer: NewPairer(cfg.Pairing, sink),
		dec:    Decoder{Identity: cfg.Identity, MaxAttrLen: cfg.MaxAttrLen},
		sem:    make(chan struct{}, cfg.MaxConcurrentRequests),
		clock:  time.Now,
		addrs:  map[string]net.Addr{},
	}
	for _, o := range opts {
		o(r)
	}
	r.m = newMetrics(r.pairer)
	if reg != nil {
		if err := r.m.register(reg); err != nil {
			return nil, fmt.Errorf("register trace metrics: %w", err)
		}
	}
	r.spanPool.New = func() any { s := make([]Span, 0, 512); return &s }
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", r.handleOTLPHTTP)
	for _, e := range r.extraHTTP {
		mux.Handle(e.path, e.h)
	}
	r.otlpHTTP = mux
	jm := http.NewServeMux()
	jm.HandleFunc("/api/traces", r.handleJaegerThrift)
	r.collector = jm
	zm := http.NewServeMux()
	zm.HandleFunc("/api/v2/spans", r.handleZipkin)
	r.zipkin = zm
	return r, nil
}

// Pairer gives access to the pairing store (stats, tests).
func (r *Receiver) Pairer() *Pairer { return r.pairer }

// OTLPHTTPHandler is the mux served on the OTLP/HTTP port (/v1/traces and extra routes).
func (r *Receiver) OTLPHTTPHandler() http.Handler { return r.otlpHTTP }

// Addr is the bound address of a receiver (RecvOTLPGRPC, ...) once started, or nil.
func (r *Receiver) Addr(name string) net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[name]
}

// Start binds every configured listener and starts serving and expiring.
// A second call does nothing.
func (r *Receiver) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return nil
	}
	type lis struct {
		name string
		l    net.Listener
	}
	var ls []lis
	closeAll := func() {
		for _, x := range ls {
			x.l.Close()
		}
	}
	for _, a := range []struct{ name, addr string }{
		{RecvOTLPGRPC, r.cfg.OTLPGRPCAddr}, {RecvOTLPHTTP, r.cfg.OTLPHTTPAddr},
		{RecvJaegerGRPC, r.cfg.JaegerGRPCAddr}, {RecvJaegerHTTP, r.cfg.JaegerHTTPAddr},
		{RecvZipkin, r.cfg.ZipkinAddr},
	} {
		if a.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s on %s: %w", a.name, a.addr, err)
		}
		ls = append(ls, lis{a.name, l})
	}
	r.started = true
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	for _, x := range ls {
		r.addrs[x.name] = x.l.Addr()
		switch x.name {
		case RecvOTLPGRPC:
			s := r.newGRPCServer(x.name)
			registerOTLPTraces(s, r)
			for _, fn := range r.extraGRPC {
				fn(s)
			}
			r.serveGRPC(x.name, s, x.l)
		case RecvJaegerGRPC:
			s := r.newGRPCServer(x.name)
			registerJaeger(s, r)
			r.serveGRPC(x.name, s, x.l)
		case RecvOTLPHTTP:
			r.serveHTTP(x.name, r.wrapHTTP(x.name, r.otlpHTTP), r.wrapListener(x.l))
		case RecvJaegerHTTP:
			r.serveHTTP(x.name, r.wrapHTTP(x.name, r.collector), r.wrapListener(x.l))
		case RecvZipkin:
			r.serveHTTP(x.name, r.wrapHTTP(x.name, r.zipkin), r.wrapListener(x.l))
		}
		r.log.Info("trace receiver listening", "receiver", x.name, "addr", x.l.Addr().String(), "tls", r.tls != nil)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(r.cfg.ExpireInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.pairer.Expire(r.clock())
			}
		}
	}()
	r.pairer.Expire(r.clock())
	return nil
}

func (r *Receiver) newGRPCServer(name string) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(r.cfg.MaxRequestBytes),
		grpc.ForceServerCodecV2(newRawCodec()),
	}, r.grpcOptions(name)...)...)
}

func (r *Receiver) serveGRPC(name string, s *grpc.Server, l net.Listener) {
	r.grpcSrvs = append(r.grpcSrvs, s)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := s.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			r.log.Error("trace receiver stopped", "receiver", name, "err", err)
		}
	}()
}

func (r *Receiver) serveHTTP(name string, h http.Handler, l net.Listener) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn)}
	r.httpSrvs = append(r.httpSrvs, s)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("trace receiver stopped", "receiver", name, "err", err)
		}
	}()
}

// Shutdown stops the listeners, waits for in-flight requests, then lets
// every held span go to the sink. Safe to call twice and without Start.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if !r.started || r.stopped {
		r.mu.Unlock()
		return nil
	}
	r.stopped = true
	grpcs, https := r.grpcSrvs, r.httpSrvs
	r.mu.Unlock()

	var errs []error
	for _, s := range https {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown trace HTTP server: %w", err))
			s.Close()
		}
	}
	for _, s := range grpcs {
		done := make(chan struct{})
		go func() { s.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.Stop()
			<-done
		}
	}
	r.cancel()
	r.wg.Wait()
	r.pairer.Flush()
	return errors.Join(errs...)
}

// tryAcquire admits a request unless too many are being decoded.
func (r *Receiver) tryAcquire() bool {
	select {
	case r.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *Receiver) release() { <-r.sem }

func (r *Receiver) getSpans() *[]Span { return r.spanPool.Get().(*[]Span) }

func (r *Receiver) putSpans(s *[]Span) {
	if cap(*s) > 1<<16 {
		return // don't keep huge buffers
	}
	clear(*s)
	*s = (*s)[:0]
	r.spanPool.Put(s)
}

// ingest hands decoded spans to the pairer and counts them; it returns how
// many were rejected (no trace or span ID) for partial-success responses.
func (r *Receiver) ingest(receiver string, spans []Span, st *DecodeStats) (rejected int) {
	for i := range spans {
		if spans[i].TraceID.IsZero() || spans[i].SpanID.IsZero() {
			rejected++
		}
	}
	r.m.received.WithLabelValues(receiver).Add(float64(len(spans)))
	if st.NoService > 0 {
		r.m.repaired.WithLabelValues("no_service").Add(float64(st.NoService))
	}
	if st.Truncated > 0 {
		r.m.repaired.WithLabelValues("truncated").Add(float64(st.Truncated))
	}
	r.pairer.Add(spans)
	for _, fn := range r.taps {
		fn(spans)
	}
	return rejected
}
