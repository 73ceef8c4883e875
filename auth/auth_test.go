package auth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// echo answers 200 with the principal it sees.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		io.WriteString(w, "-")
		return
	}
	io.WriteString(w, p.String())
})

func tokenConfig(tb testing.TB) Config {
	tb.Helper()
	c := DefaultConfig()
	c.Tokens = []Token{
		{Name: "alice", Role: RoleApprover, SHA256: HashToken("alice-secret")},
		{Name: "root", Role: RoleAdmin, SHA256: HashToken("root-secret")},
	}
	c.TokenFiles = []string{filepath.Join("testdata", "tokens.txt")}
	return c
}

func newAuth(tb testing.TB, c Config) (*Authenticator, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(c, Options{Registerer: reg})
	if err != nil {
		tb.Fatal(err)
	}
	return a, reg
}

func TestRoutesAndRoles(t *testing.T) {
	a, reg := newAuth(t, tokenConfig(t))
	h := a.Middleware(echo)
	tests := []struct {
		name, method, path, token string
		header                    map[string]string
		want                      int
		body                      string
	}{
		{"health is public", "GET", "/healthz", "", nil, 200, "-"},
		{"dashboard shell is public", "GET", "/", "", nil, 200, "-"},
		{"graph needs a token", "GET", "/api/v1/graph", "", nil, 401, ""},
		{"unknown token", "GET", "/api/v1/graph", "nope", nil, 401, ""},
		{"viewer reads graph", "GET", "/api/v1/graph", "mlk_ci_bot_token", nil, 200, "ci-bot (viewer, token)"},
		{"metrics need viewer", "GET", "/metrics", "", nil, 401, ""},
		{"viewer cannot chat", "POST", "/api/v1/chat/s1/messages", "mlk_ci_bot_token", nil, 403, ""},
		{"operator chats", "POST", "/api/v1/chat/s1/messages", "mlk_oncall_token", nil, 200, "oncall (operator, token)"},
		{"operator silences", "POST", "/api/v1/anomalies/a1/silence", "mlk_oncall_token", nil, 200, "oncall"},
		{"operator cannot approve", "POST", "/api/v1/proposals/p1/approve", "mlk_oncall_token", nil, 403, ""},
		{"approver approves", "POST", "/api/v1/proposals/p1/approve", "alice-secret", nil, 200, "alice (approver, token)"},
		{"approver rejects", "POST", "/api/v1/proposals/p1/reject", "alice-secret", nil, 200, "alice"},
		{"approver is not admin", "POST", "/api/v1/admin/tokens", "alice-secret", nil, 403, ""},
		{"admin endpoint", "GET", "/api/v1/admin/audit", "root-secret", nil, 200, "root (admin, token)"},
		{"unlisted write needs admin", "DELETE", "/api/v1/graph", "alice-secret", nil, 403, ""},
		{"dot-dot cannot dodge the table", "POST", "/api/v1/chat/../proposals/p1/approve", "mlk_oncall_token", nil, 403, ""},
		{"remote-write needs operator", "POST", "/api/v1/write", "mlk_ci_bot_token", nil, 403, ""},
		{"X-Api-Key header", "GET", "/api/v1/graph", "", map[string]string{"X-Api-Key": "mlk_ci_bot_token"}, 200, "ci-bot"},
		{"foreign origin write refused", "POST", "/api/v1/chat/s1/messages", "mlk_oncall_token", map[string]string{"Origin": "https://evil.example"}, 403, ""},
		{"same origin write allowed", "POST", "/api/v1/chat/s1/messages", "mlk_oncall_token", map[string]string{"Origin": "http://meshlens.local"}, 200, "oncall"},
		{"null origin refused", "POST", "/api/v1/chat/s1/messages", "mlk_oncall_token", map[string]string{"Origin": "null"}, 403, ""},
		{"whoami", "GET", "/api/v1/whoami", "alice-secret", nil, 200, `"role":"approver"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://meshlens.local"+tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s = %d, want %d (%s)", tt.method, tt.path, rec.Code, tt.want, rec.Body)
			}
			if tt.body != "" && !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("body %q lacks %q", rec.Body, tt.body)
			}
			if tt.token != "" && strings.Contains(rec.Body.String(), tt.token) {
				t.Errorf("response echoes the token: %s", rec.Body)
			}
		})
	}
	var m dto.Metric
	if err := a.failures.WithLabelValues("role").Write(&m); err != nil || m.GetCounter().GetValue() < 5 {
		n := m.GetCounter().GetValue()
		t.Errorf("role refusals counted %v, want >= 5", n)
	}
	assertNoSecrets(t, reg, "alice-secret", "root-secret", "mlk_ci_bot_token", "mlk_oncall_token")
}

// assertNoSecrets checks that no metric carries a secret.
func assertNoSecrets(tb testing.TB, g prometheus.Gatherer, secrets ...string) {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		s := mf.String()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				tb.Errorf("metric %s contains a secret", mf.GetName())
			}
		}
	}
}

func TestSessionCookieAndCSRF(t *testing.T) {
	a, _ := newAuth(t, tokenConfig(t))
	h := a.Middleware(echo)
	do := func(method, path string, hdr map[string]string, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://meshlens.local"+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// Login without the CSRF header is refused (login CSRF).
	if rec := do("POST", "/api/v1/login", nil, `{"token":"alice-secret"}`); rec.Code != 403 {
		t.Fatalf("login without %s = %d", CSRFHeader, rec.Code)
	}
	if rec := do("POST", "/api/v1/login", map[string]string{CSRFHeader: "1"}, `{"token":"wrong"}`); rec.Code != 401 {
		t.Fatalf("login with a bad token = %d", rec.Code)
	}
	rec := do("POST", "/api/v1/login", map[string]string{CSRFHeader: "1"}, `{"token":"alice-secret"}`)
	if rec.Code != 200 {
		t.Fatalf("login = %d %s", rec.Code, rec.Body)
	}
	ck := rec.Result().Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || strings.Contains(ck[0].Value, "alice-secret") {
		t.Fatalf("cookie %+v", ck)
	}
	cookie := SessionCookie + "=" + ck[0].Value
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		want               int
	}{
		{"read with cookie", "GET", "/api/v1/graph", map[string]string{"Cookie": cookie}, 200},
		{"write with cookie, no header", "POST", "/api/v1/proposals/p/approve", map[string]string{"Cookie": cookie}, 403},
		{"write with cookie and header", "POST", "/api/v1/proposals/p/approve", map[string]string{"Cookie": cookie, CSRFHeader: "1"}, 200},
		{"write from a foreign page", "POST", "/api/v1/proposals/p/approve", map[string]string{"Cookie": cookie, CSRFHeader: "1", "Origin": "https://evil.example"}, 403},
		{"websocket from a foreign page", "GET", "/api/v1/live", map[string]string{"Cookie": cookie, "Upgrade": "websocket", "Origin": "https://evil.example"}, 403},
		{"websocket same origin", "GET", "/api/v1/live", map[string]string{"Cookie": cookie, "Upgrade": "websocket", "Origin": "http://meshlens.local"}, 200},
		{"forged cookie", "GET", "/api/v1/graph", map[string]string{"Cookie": SessionCookie + "=forged"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if rec := do(tt.method, tt.path, tt.hdr, ""); rec.Code != tt.want {
				t.Errorf("= %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
		})
	}
	if rec := do("POST", "/api/v1/logout", map[string]string{"Cookie": cookie, CSRFHeader: "1"}, ""); rec.Code != 204 {
		t.Fatalf("logout = %d", rec.Code)
	}
	if rec := do("GET", "/api/v1/graph", map[string]string{"Cookie": cookie}, ""); rec.Code != 401 {
		t.Errorf("session survived logout: %d", rec.Code)
	}
}

func TestOpenMode(t *testing.T) {
	a, _ := newAuth(t, DefaultConfig())
	h := a.Middleware(echo)
	tests := []struct {
		name, method, url string
		hdr               map[string]string
		want              int
		body              string
	}{
		{"loopback read", "GET", "http://127.0.0.1:8080/api/v1/graph", nil, 200, "anonymous (admin, none)"},
		{"localhost write from curl", "POST", "http://localhost:8080/api/v1/proposals/p/approve", nil, 200, "anonymous"},
		{"DNS-rebound host", "GET", "http://attacker.example:8080/api/v1/graph", nil, 403, ""},
		{"browser write without header", "POST", "http://127.0.0.1:8080/api/v1/proposals/p/approve", map[string]string{"Sec-Fetch-Site": "same-origin"}, 403, ""},
		{"browser write with header", "POST", "http://127.0.0.1:8080/api/v1/proposals/p/approve", map[string]string{"Sec-Fetch-Site": "same-origin", CSRFHeader: "1"}, 200, ""},
		{"cross-site form post", "POST", "http://127.0.0.1:8080/api/v1/proposals/p/approve", map[string]string{"Origin": "https://evil.example", CSRFHeader: "1"}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.url, nil)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("= %d %q, want %d %q", rec.Code, rec.Body, tt.want, tt.body)
			}
		})
	}
}

func TestCheckListen(t *testing.T) {
	open := DefaultConfig()
	insecure := open
	insecure.AllowInsecure = true
	tests := []struct {
		name string
		c    Config
		addr string
		ok   bool
	}{
		{"open on loopback", open, "127.0.0.1:8080", true},
		{"open on localhost", open, "localhost:8080", true},
		{"open on ::1", open, "[::1]:8080", true},
		{"open on all interfaces", open, ":8080", false},
		{"open on a LAN address", open, "10.0.0.5:8080", false},
		{"explicitly insecure", insecure, "0.0.0.0:8080", true},
		{"with auth", tokenConfig(t), ":8080", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.CheckListen(tt.addr)
			if (err == nil) != tt.ok {
				t.Errorf("CheckListen(%q) = %v", tt.addr, err)
			}
		})
	}
}

func TestConfigProblemsHideSecrets(t *testing.T) {
	dir := t.TempDir()
	// Someone pasted the raw token where the hash goes.
	bad := filepath.Join(dir, "tokens.txt")
	if err := os.WriteFile(bad, []byte("bob admin mlk_super_secret_value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.TokenFiles = []string{bad}
	_, err := New(c, Options{})
	if err == nil || strings.Contains(err.Error(), "mlk_super_secret_value") || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("error %v: want a line number and no secret", err)
	}
	c = DefaultConfig()
	c.Tokens = []Token{{Name: "x", Role: RoleViewer, SHA256: "mlk_pasted_token"}}
	probs := strings.Join(c.Validate(), "\n")
	if !strings.Contains(probs, "tokens[0].sha256") || strings.Contains(probs, "mlk_pasted_token") {
		t.Errorf("problems %q", probs)
	}
	c.Tokens = append(c.Tokens, Token{Name: "y", Role: RoleViewer, SHA256: HashToken("t")}, Token{Name: "z", Role: RoleAdmin, SHA256: HashToken("t")})
	if probs := strings.Join(c.Validate(), "\n"); !strings.Contains(probs, "same token as tokens[1]") {
		t.Errorf("duplicate not reported: %q", probs)
	}
}

func TestApplyEnvAndNewToken(t *testing.T) {
	c := DefaultConfig()
	c.ApplyEnv(func(k string) string {
		if k == EnvTokenFiles {
			return " a.txt, ,b.txt"
		}
		return ""
	})
	if strings.Join(c.TokenFiles, "|") != "a.txt|b.txt" {
		t.Errorf("token files %v", c.TokenFiles)
	}
	tok, hash, err := NewToken()
	if err != nil || !strings.HasPrefix(tok, tokenPrefix) || hash != HashToken(tok) || len(tok) < 40 {
		t.Fatalf("NewToken = %q %q %v", tok, hash, err)
	}
	c = DefaultConfig()
	c.Tokens = []Token{{Name: "n", Role: RoleOperator, SHA256: hash}}
	a, _ := newAuth(t, c)
	p, _, err := a.Authenticate(context.Background(), tok)
	if err != nil || p.Name != "n" || p.Role != RoleOperator {
		t.Errorf("Authenticate = %v %v", p, err)
	}
	if got := strings.Join(p.Roles(), ","); got != "viewer,operator" {
		t.Errorf("Roles() = %s", got)
	}
}

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/api/**", "/api/v1/graph", true},
		{"/api/**", "/api", true},
		{"/api/**", "/apix", false},
		{"/api/v1/proposals/*/approve", "/api/v1/proposals/p1/approve", true},
		{"/api/v1/proposals/*/approve", "/api/v1/proposals/p1/x/approve", false},
		{"/api/v1/chat/**", "/api/v1/chat", true},
		{"/**", "/anything/at/all", true},
	}
	for _, tt := range tests {
		if got := matchPath(tt.pattern, tt.path); got != tt.want {
			t.Errorf("matchPath(%q, %q) = %v", tt.pattern, tt.path, got)
		}
	}
}
