package auth

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/auth/tlstest"
)

func TestTLSAndMTLS(t *testing.T) {
	f := tlstest.New(t)
	tests := []struct {
		name       string
		cfg        TLS
		clientCert bool
		ok         bool
	}{
		{"TLS, no client cert needed", TLS{CertFile: f.CertFile, KeyFile: f.KeyFile}, false, true},
		{"mTLS with client cert", TLS{CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCAFile: f.CAFile}, true, true},
		{"mTLS without client cert", TLS{CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCAFile: f.CAFile}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := tt.cfg.ServerConfig()
			if err != nil {
				t.Fatal(err)
			}
			// httptest's StartTLS would put its own certificate first.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
				ErrorLog: log.New(io.Discard, "", 0)}
			go srv.Serve(tls.NewListener(ln, sc))
			defer srv.Close()
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: f.ClientConfig(tt.clientCert)}}
			resp, err := c.Get("https://" + ln.Addr().String())
			if resp != nil {
				resp.Body.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("GET = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestTLSConfigProblems(t *testing.T) {
	tests := []struct {
		cfg  TLS
		want string
	}{
		{TLS{CertFile: "a.pem"}, "set both or neither"},
		{TLS{ClientCAFile: "ca.pem"}, "clientCAFile: needs certFile"},
		{TLS{CertFile: "a", KeyFile: "b", MinVersion: "1.0"}, `minVersion: "1.0"`},
	}
	for _, tt := range tests {
		if got := strings.Join(tt.cfg.Validate(), "; "); !strings.Contains(got, tt.want) {
			t.Errorf("Validate(%+v) = %q, want %q", tt.cfg, got, tt.want)
		}
	}
	if _, err := (TLS{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}).ServerConfig(); err == nil || !strings.Contains(err.Error(), "cert.pem") {
		t.Errorf("missing files: %v", err)
	}
	if c, err := (TLS{}).ServerConfig(); c != nil || err != nil {
		t.Errorf("TLS off = %v, %v", c, err)
	}
}
