package traces

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/auth/tlstest"
	"github.com/meshlens/meshlens/collector/ratelimit"
)

// TestTLSAndLimits runs the OTLP receivers behind mTLS and a per-client rate
// limit: clients without a certificate are refused at the handshake, a
// client over its rate gets the protocol's retryable answer.
func TestTLSAndLimits(t *testing.T) {
	certs := tlstest.New(t)
	tlsCfg, err := auth.TLS{CertFile: certs.CertFile, KeyFile: certs.KeyFile, ClientCAFile: certs.CAFile}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	lim, err := ratelimit.New(ratelimit.Config{RequestsPerSecond: 1, Burst: 2, MaxClients: 10, MaxConcurrent: 4},
		prometheus.NewRegistry(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	r, _ := startReceiver(t, testConfig(), sink, WithTLS(tlsCfg), WithHTTPMiddleware(lim.HTTP), WithGRPCInterceptor(lim.UnaryInterceptor))
	body, err := ptraceotlp.NewExportRequestFromTraces(loadTraces(t, "otlp_bookinfo.json")).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + r.Addr(RecvOTLPHTTP).String() + "/v1/traces"
	postTLS := func(withCert bool) (int, string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(withCert)}, Timeout: 10 * time.Second}
		resp, err := c.Post(url, "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}
	if _, _, err := postTLS(false); err == nil {
		t.Error("OTLP/HTTP accepted a client without a certificate")
	}
	for i, want := range []int{200, 200, 429} { // burst of 2, then throttled
		code, ra, err := postTLS(true)
		if err != nil || code != want {
			t.Fatalf("request %d = %d %v, want %d", i, code, err, want)
		}
		if want == 429 && ra == "" {
			t.Error("429 without Retry-After")
		}
	}

	// gRPC: same client IP, so the budget is already spent.
	dial := func(cfg *tls.Config) ptraceotlp.GRPCClient {
		conn, err := grpc.NewClient(r.Addr(RecvOTLPGRPC).String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return ptraceotlp.NewGRPCClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := ptraceotlp.NewExportRequestFromTraces(loadTraces(t, "otlp_bookinfo.json"))
	if _, err := dial(certs.ClientConfig(false)).Export(ctx, req); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC without client cert: %v", err)
	}
	if _, err := dial(certs.ClientConfig(true)).Export(ctx, req); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC over budget: %v, want ResourceExhausted", err)
	}
	now = now.Add(10 * time.Second)
	if _, err := dial(certs.ClientConfig(true)).Export(ctx, req); err != nil {
		t.Errorf("gRPC after refill: %v", err)
	}
}
