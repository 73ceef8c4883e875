package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testIssuer is a minimal OIDC issuer: discovery and JWKS over HTTP on loopback.
type testIssuer struct {
	srv      *httptest.Server
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	fetches  atomic.Int32
	jwksJSON []byte
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newTestIssuer(tb testing.TB) *testIssuer {
	tb.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ti := &testIssuer{rsaKey: rk, ecKey: ek}
	ecX, ecY := make([]byte, 32), make([]byte, 32)
	ek.X.FillBytes(ecX)
	ek.Y.FillBytes(ecY)
	ti.jwksJSON, _ = json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "ec1", "use": "sig", "crv": "P-256", "x": b64(ecX), "y": b64(ecY)},
	}})
	mux := http.NewServeMux()
	ti.srv = httptest.NewServer(mux)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		w.Write(ti.jwksJSON)
	})
	tb.Cleanup(ti.srv.Close)
	return ti
}

func (ti *testIssuer) sign(tb testing.TB, alg, kid string, claims map[string]any) string {
	tb.Helper()
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := b64(h) + "." + b64(c)
	d := sha256.Sum256([]byte(in))
	var sig []byte
	switch alg {
	case "RS256":
		s, err := rsa.SignPKCS1v15(rand.Reader, ti.rsaKey, crypto.SHA256, d[:])
		if err != nil {
			tb.Fatal(err)
		}
		sig = s
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, ti.ecKey, d[:])
		if err != nil {
			tb.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "HS256":
		// The classic confusion attack: the RSA public key used as an HMAC secret.
		m := hmac.New(sha256.New, ti.rsaKey.N.Bytes())
		m.Write([]byte(in))
		sig = m.Sum(nil)
	case "none":
	}
	return in + "." + b64(sig)
}

func TestOIDC(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	c := DefaultConfig()
	c.OIDC.Issuer = ti.srv.URL
	c.OIDC.Audience = "meshlens"
	c.OIDC.RoleMapping = map[string]Role{"sre": RoleOperator, "platform-leads": RoleApprover}
	a, err := New(c, Options{Now: func() time.Time { return now }, HTTPClient: ti.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	base := func(mod func(map[string]any)) map[string]any {
		m := map[string]any{"iss": ti.srv.URL, "aud": "meshlens", "sub": "u-1", "preferred_username": "carol",
			"groups": []string{"sre", "platform-leads"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		if mod != nil {
			mod(m)
		}
		return m
	}
	tests := []struct {
		name     string
		token    string
		wantRole Role
		reason   string
	}{
		{"RS256 ok, highest mapped role", ti.sign(t, "RS256", "rsa1", base(nil)), RoleApprover, ""},
		{"ES256 ok", ti.sign(t, "ES256", "ec1", base(func(m map[string]any) { m["groups"] = "sre" })), RoleOperator, ""},
		{"aud as list", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["aud"] = []string{"other", "meshlens"} })), RoleApprover, ""},
		{"expired", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["exp"] = now.Add(-2 * time.Minute).Unix() })), 0, "oidc_expired"},
		{"within leeway", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["exp"] = now.Add(-30 * time.Second).Unix() })), RoleApprover, ""},
		{"no exp", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { delete(m, "exp") })), 0, "oidc_expired"},
		{"not yet valid", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["nbf"] = now.Add(time.Hour).Unix() })), 0, "oidc_not_yet_valid"},
		{"wrong issuer", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["iss"] = "https://evil.example" })), 0, "oidc_issuer"},
		{"wrong audience", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["aud"] = "grafana" })), 0, "oidc_audience"},
		{"no mapped role", ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["groups"] = []string{"interns"} })), 0, "oidc_no_role"},
		{"alg none", ti.sign(t, "none", "rsa1", base(nil)), 0, "oidc_algorithm"},
		{"HS256 with the public key", ti.sign(t, "HS256", "rsa1", base(nil)), 0, "oidc_algorithm"},
		{"ES256 header on the RSA key", ti.sign(t, "ES256", "rsa1", base(nil)), 0, "oidc_algorithm"},
		{"unknown kid", ti.sign(t, "RS256", "rsa9", base(nil)), 0, "oidc_key"},
		{"tampered claims", tamper(ti.sign(t, "RS256", "rsa1", base(func(m map[string]any) { m["groups"] = "sre" }))), 0, "oidc_signature"},
		{"garbage with two dots", "a.b.c", 0, "oidc_malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, reason, err := a.Authenticate(context.Background(), tt.token)
			if tt.reason != "" {
				if err == nil || reason != tt.reason {
					t.Fatalf("accepted or wrong reason: %v %q %v, want %q", p, reason, err, tt.reason)
				}
				if strings.Contains(err.Error(), tt.token) {
					t.Error("error carries the token")
				}
				return
			}
			if err != nil || p.Role != tt.wantRole || p.Name != "carol" || p.Method != "oidc" {
				t.Fatalf("= %v %q %v, want carol %s", p, reason, err, tt.wantRole)
			}
		})
	}
	// Unknown kids must not make us refetch the JWKS on every request.
	if n := ti.fetches.Load(); n > 2 {
		t.Errorf("JWKS fetched %d times", n)
	}
}

// tamper swaps the claims for ones granting a higher role, keeping the signature.
func tamper(tok string) string {
	p := strings.Split(tok, ".")
	c, _ := json.Marshal(map[string]any{"iss": "x", "groups": "platform-leads"})
	return p[0] + "." + b64(c) + "." + p[2]
}

func TestOIDCIssuerDownKeepsKnownKeys(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	c := DefaultConfig()
	c.OIDC.Issuer, c.OIDC.Audience, c.OIDC.DefaultRole = ti.srv.URL, "meshlens", RoleViewer
	a, err := New(c, Options{Now: func() time.Time { return now }, HTTPClient: ti.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": ti.srv.URL, "aud": "meshlens", "email": "dave@example.com", "exp": now.Add(3 * time.Hour).Unix()}
	tok := ti.sign(t, "ES256", "ec1", claims)
	if p, _, err := a.Authenticate(context.Background(), tok); err != nil || p.Name != "dave@example.com" || p.Role != RoleViewer {
		t.Fatalf("first = %v %v", p, err)
	}
	ti.srv.Close()
	now = now.Add(2 * time.Hour) // past RefreshInterval: a refetch is due and fails
	if _, _, err := a.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("issuer down: %v", err)
	}
}
