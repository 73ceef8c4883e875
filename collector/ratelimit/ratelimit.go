// Package ratelimit is the receivers' admission control: a token bucket per
// client address and a bound on requests in flight, answering with each
// protocol's retryable signal (HTTP 429/503 with Retry-After, gRPC
// ResourceExhausted/Unavailable with RetryInfo) and counting every refusal.
package ratelimit

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Config is the limits of one set of receivers.
type Config struct {
	// RequestsPerSecond each client (remote IP) may send; 0 turns rate limiting off.
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	// Burst is how many requests a client may send at once after a pause.
	Burst int `yaml:"burst"`
	// MaxClients bounds the clients tracked; the least recently seen is forgotten first.
	MaxClients int `yaml:"maxClients"`
	// MaxConcurrent bounds requests being handled at once per receiver; 0: no bound.
	MaxConcurrent int `yaml:"maxConcurrent"`
}

// DefaultConfig allows 1000 requests/s per client IP with bursts of 2000
// (a Prometheus remote-write queue at its 50-shard maximum, or a collector
// tier behind one NAT address, stays well under it) and 64 concurrent
// requests per receiver.
func DefaultConfig() Config {
	return Config{RequestsPerSecond: 1000, Burst: 2000, MaxClients: 10000, MaxConcurrent: 64}
}

// Validate reports problems relative to the section.
func (c Config) Validate() []string {
	var p []string
	if c.RequestsPerSecond < 0 || math.IsNaN(c.RequestsPerSecond) || math.IsInf(c.RequestsPerSecond, 0) {
		p = append(p, "requestsPerSecond: must be >= 0 (0: off)")
	}
	if c.RequestsPerSecond > 0 && c.Burst < 1 {
		p = append(p, "burst: must be >= 1")
	}
	if c.MaxClients < 1 {
		p = append(p, "maxClients: must be > 0")
	}
	if c.MaxConcurrent < 0 {
		p = append(p, "maxConcurrent: must be >= 0 (0: no bound)")
	}
	return p
}

// Limiter holds the buckets; one Limiter serves every receiver so a client
// spraying several protocols shares one budget.
type Limiter struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	clients map[string]*list.Element // key -> *bucket element in lru
	lru     *list.List               // front: most recently seen

	semMu sync.Mutex
	sems  map[string]chan struct{}

	refused *prometheus.CounterVec
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
}

// New builds a limiter; now may be nil (time.Now). reg may be nil.
func New(cfg Config, reg prometheus.Registerer, now func() time.Time) (*Limiter, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("limits: %v", p)
	}
	if now == nil {
		now = time.Now
	}
	l := &Limiter{cfg: cfg, now: now, clients: map[string]*list.Element{}, lru: list.New(), sems: map[string]chan struct{}{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_receiver_throttled_total",
			Help: "Requests refused with a retryable answer before decoding, by receiver and reason (rate, concurrency).",
		}, []string{"receiver", "reason"})}
	if reg != nil {
		if err := reg.Register(l.refused); err != nil {
			return nil, fmt.Errorf("register limiter metrics: %w", err)
		}
	}
	return l, nil
}

// Allow takes a token from client's bucket; when empty it says how long until one is due.
func (l *Limiter) Allow(client string) (bool, time.Duration) {
	if l == nil || l.cfg.RequestsPerSecond <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, ok := l.clients[client]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		b.tokens = min(float64(l.cfg.Burst), b.tokens+now.Sub(b.last).Seconds()*l.cfg.RequestsPerSecond)
		b.last = now
	} else {
		// A new client starts full. Forgetting the least recently seen one
		// bounds memory; a forgotten client only gains a fresh burst.
		for l.lru.Len() >= l.cfg.MaxClients {
			old := l.lru.Back()
			delete(l.clients, old.Value.(*bucket).key)
			l.lru.Remove(old)
		}
		b = &bucket{key: client, tokens: float64(l.cfg.Burst), last: now}
		l.clients[client] = l.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.cfg.RequestsPerSecond * float64(time.Second))
	return false, max(wait, time.Second/10)
}

// Clients is the number of tracked clients.
func (l *Limiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

func (l *Limiter) sem(receiver string) chan struct{} {
	if l == nil || l.cfg.MaxConcurrent <= 0 {
		return nil
	}
	l.semMu.Lock()
	defer l.semMu.Unlock()
	s, ok := l.sems[receiver]
	if !ok {
		s = make(chan struct{}, l.cfg.MaxConcurrent)
		l.sems[receiver] = s
	}
	return s
}

// ClientKey is the client identity of a remote address: its IP.
func ClientKey(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return remoteAddr
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// HTTP admits requests to next: 429 when the client is over its rate, 503
// when the receiver has MaxConcurrent requests in flight; both with Retry-After.
func (l *Limiter) HTTP(receiver string, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	sem := l.sem(receiver)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.Allow(ClientKey(r.RemoteAddr)); !ok {
			l.refused.WithLabelValues(receiver, "rate").Inc()
			w.Header().Set("Retry-After", retryAfter(wait))
			http.Error(w, "rate limit exceeded for "+ClientKey(r.RemoteAddr)+", retry later", http.StatusTooManyRequests)
			return
		}
		if sem != nil {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			default:
				l.refused.WithLabelValues(receiver, "concurrency").Inc()
				w.Header().Set("Retry-After", "1")
				http.Error(w, receiver+" receiver busy, retry later", http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// retryable is a gRPC status with RetryInfo, which OTLP exporters honour.
func retryable(c codes.Code, msg string, wait time.Duration) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = d
	}
	return st.Err()
}

// UnaryInterceptor applies the same admission to gRPC: ResourceExhausted
// (rate) or Unavailable (concurrency), both with RetryInfo.
func (l *Limiter) UnaryInterceptor(receiver string) grpc.UnaryServerInterceptor {
	sem := l.sem(receiver)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		client := "unknown"
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			client = ClientKey(p.Addr.String())
		}
		if ok, wait := l.Allow(client); !ok {
			l.refused.WithLabelValues(receiver, "rate").Inc()
			return nil, retryable(codes.ResourceExhausted, "rate limit exceeded for "+client+", retry later", wait)
		}
		if sem != nil {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			default:
				l.refused.WithLabelValues(receiver, "concurrency").Inc()
				return nil, retryable(codes.Unavailable, receiver+" receiver busy, retry later", time.Second)
			}
		}
		return handler(ctx, req)
	}
}
