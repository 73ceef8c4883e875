package web

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/auth/tlstest"
	"github.com/meshlens/meshlens/graph"
)

// TestAuthOverTLS runs the real server (TLS listener, auth middleware) and
// checks the API, /metrics, the live websocket and a mounted write route.
func TestAuthOverTLS(t *testing.T) {
	certs := tlstest.New(t)
	ac := auth.DefaultConfig()
	ac.Tokens = []auth.Token{
		{Name: "viewer-bot", Role: auth.RoleViewer, SHA256: auth.HashToken("view-secret")},
		{Name: "prometheus", Role: auth.RoleOperator, SHA256: auth.HashToken("write-secret")},
	}
	reg := prometheus.NewRegistry()
	authn, err := auth.New(ac, auth.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := auth.TLS{CertFile: certs.CertFile, KeyFile: certs.KeyFile}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(graph.Config{})
	s := New(Options{Addr: "127.0.0.1:0", Graph: g, Registerer: reg, Gatherer: reg,
		Auth: authn.Middleware, CheckOrigin: authn.CheckOrigin, TLS: tlsCfg})
	var wrote string
	s.Handle("POST /api/v1/write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.PrincipalFrom(r.Context())
		wrote = p.Name
		w.WriteHeader(http.StatusNoContent)
	}))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	base := "https://" + s.Addr()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(false)}, Timeout: 10 * time.Second}

	tests := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/api/v1/graph?view=app", "", 401},
		{"GET", "/api/v1/graph?view=app", "wrong", 401},
		{"GET", "/api/v1/graph?view=app", "view-secret", 200},
		{"GET", "/metrics", "view-secret", 200},
		{"POST", "/api/v1/write", "view-secret", 403},
		{"POST", "/api/v1/write", "write-secret", 204},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(""))
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s (token %q) = %d, want %d: %s", tt.method, tt.path, tt.token, resp.StatusCode, tt.want, body)
		}
		if tt.path == "/metrics" && (strings.Contains(string(body), "view-secret") || strings.Contains(string(body), "write-secret")) {
			t.Error("/metrics shows a secret")
		}
	}
	if wrote != "prometheus" {
		t.Errorf("write handler saw principal %q", wrote)
	}

	// Plain HTTP to the TLS port gets nothing useful.
	if resp, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the TLS port")
		}
		resp.Body.Close()
	}

	dialer := websocket.Dialer{TLSClientConfig: certs.ClientConfig(false), HandshakeTimeout: 5 * time.Second}
	wsURL := "wss://" + s.Addr() + "/api/v1/live?view=app"
	hdr := func(origin string) http.Header {
		h := http.Header{"Authorization": {"Bearer view-secret"}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		return h
	}
	if _, resp, err := dialer.Dial(wsURL, hdr("https://evil.example")); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("websocket from a foreign origin: %v %v", resp, err)
	}
	if _, resp, err := dialer.Dial(wsURL, http.Header{}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("websocket without credentials: %v %v", resp, err)
	}
	conn, _, err := dialer.Dial(wsURL, hdr("https://"+s.Addr()))
	if err != nil {
		t.Fatalf("websocket same origin: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := conn.ReadMessage(); err != nil || !strings.Contains(string(msg), `"snapshot"`) {
		t.Errorf("first live message %q, %v", msg, err)
	}
	conn.Close()
}
