package ratelimit

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func counter(tb testing.TB, l *Limiter, receiver, reason string) float64 {
	tb.Helper()
	var m dto.Metric
	if err := l.refused.WithLabelValues(receiver, reason).Write(&m); err != nil {
		tb.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestBuckets(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	l, err := New(Config{RequestsPerSecond: 10, Burst: 3, MaxClients: 2}, nil, c.now)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		client  string
		ok      bool
	}{
		{0, "a", true}, {0, "a", true}, {0, "a", true}, // the burst
		{0, "a", false},                     // empty
		{0, "b", true},                      // other clients are not affected
		{100 * time.Millisecond, "a", true}, // one token back after 1/rate
		{0, "a", false},
		{time.Hour, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false}, // refill caps at burst
		{0, "c", true}, // third client: "b" (least recently seen) is forgotten
	}
	for i, s := range steps {
		c.t = c.t.Add(s.advance)
		ok, wait := l.Allow(s.client)
		if ok != s.ok {
			t.Fatalf("step %d (%s): ok=%v, want %v", i, s.client, ok, s.ok)
		}
		if !ok && (wait <= 0 || wait > time.Second) {
			t.Errorf("step %d: retry after %v", i, wait)
		}
	}
	if n := l.Clients(); n != 2 {
		t.Errorf("tracked clients %d, want 2 (MaxClients)", n)
	}
}

func TestHTTP(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	l, err := New(Config{RequestsPerSecond: 1, Burst: 2, MaxClients: 10, MaxConcurrent: 1}, prometheus.NewRegistry(), c.now)
	if err != nil {
		t.Fatal(err)
	}
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	h := l.HTTP("remote_write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	do := func(path, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// One slow request holds the only slot: another client gets 503.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); do("/slow", "10.0.0.1:5000") }()
	<-entered
	if rec := do("/", "10.0.0.2:5000"); rec.Code != 503 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("busy: %d %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	close(release)
	wg.Wait()
	// 10.0.0.1 used one of its two tokens; same IP, other port, is the same client.
	if rec := do("/", "10.0.0.1:6000"); rec.Code != 204 {
		t.Errorf("second = %d", rec.Code)
	}
	rec := do("/", "10.0.0.1:7000")
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("over rate: %d %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if counter(t, l, "remote_write", "rate") != 1 || counter(t, l, "remote_write", "concurrency") != 1 {
		t.Errorf("counters rate=%v concurrency=%v", counter(t, l, "remote_write", "rate"), counter(t, l, "remote_write", "concurrency"))
	}
}

func TestGRPC(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	l, _ := New(Config{RequestsPerSecond: 1, Burst: 1, MaxClients: 10}, nil, c.now)
	ic := l.UnaryInterceptor("otlp_grpc")
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 1, 1), Port: 4000}})
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	info := &grpc.UnaryServerInfo{FullMethod: "/x/Export"}
	if _, err := ic(ctx, nil, info, ok); err != nil {
		t.Fatal(err)
	}
	_, err := ic(ctx, nil, info, ok)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("over rate: %v", err)
	}
	var ri *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			ri = r
		}
	}
	if ri == nil || ri.RetryDelay.AsDuration() <= 0 {
		t.Errorf("no RetryInfo in %v", st.Details())
	}
}

func TestValidate(t *testing.T) {
	if p := (Config{RequestsPerSecond: -1, Burst: 0, MaxClients: 0, MaxConcurrent: -1}).Validate(); len(p) != 3 {
		t.Errorf("problems %v", p)
	}
	if p := DefaultConfig().Validate(); len(p) != 0 {
		t.Errorf("defaults: %v", p)
	}
}
