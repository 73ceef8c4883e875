package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Header and cookie names.
const (
	// CSRFHeader must be present (any non-empty value) on state-changing
	// requests authenticated by the session cookie, and on state-changing
	// requests to an open server from a browser. Browsers cannot send a
	// custom header cross-origin without a CORS preflight, which meshlens
	// never approves.
	CSRFHeader = "X-Meshlens-Csrf"
	// SessionCookie carries the dashboard session ID (HttpOnly, SameSite=Strict).
	SessionCookie = "meshlens_session"
)

// Options are the authenticator's collaborators.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Routes overrides DefaultRoutes.
	Routes []Rule
	// HTTPClient fetches OIDC discovery and JWKS (default: 10s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Authenticator authenticates and authorises HTTP requests.
type Authenticator struct {
	cfg      Config
	log      *slog.Logger
	routes   []Rule
	tokens   tokenSet
	oidc     *oidcVerifier
	origins  map[string]bool
	now      func() time.Time
	sessions *sessionStore

	failures *prometheus.CounterVec
	allowed  *prometheus.CounterVec
}

// New builds an authenticator; it reads token files and starts nothing
// (OIDC keys are fetched on first use).
func New(cfg Config, opts Options) (*Authenticator, error) {
	if probs := cfg.Validate(); len(probs) > 0 {
		return nil, fmt.Errorf("auth config: %s", strings.Join(probs, "; "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Routes == nil {
		opts.Routes = DefaultRoutes()
	}
	tokens, err := loadTokens(cfg)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		cfg: cfg, log: opts.Logger, routes: opts.Routes, tokens: tokens, now: opts.Now,
		origins:  map[string]bool{},
		sessions: newSessionStore(cfg.MaxSessions),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_auth_failures_total",
			Help: "Requests refused by authentication or authorisation, by reason.",
		}, []string{"reason"}),
		allowed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_auth_requests_total",
			Help: "Requests let through, by authentication method.",
		}, []string{"method"}),
	}
	if cfg.OIDC.Issuer != "" {
		a.oidc = newOIDCVerifier(cfg.OIDC, opts.HTTPClient, opts.Now)
	}
	for _, o := range cfg.AllowedOrigins {
		n, _ := parseOrigin(o)
		a.origins[n] = true
	}
	if opts.Registerer != nil {
		if err := errors.Join(opts.Registerer.Register(a.failures), opts.Registerer.Register(a.allowed)); err != nil {
			return nil, fmt.Errorf("register auth metrics: %w", err)
		}
	}
	return a, nil
}

// Enabled reports whether credentials are required (false: open mode).
func (a *Authenticator) Enabled() bool { return a.cfg.Enabled() }

// credential is what a request presented.
type credential struct {
	bearer  string
	session string
}

func credentials(r *http.Request) credential {
	var c credential
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			c.bearer = strings.TrimSpace(tok)
		}
	} else if k := r.Header.Get("X-Api-Key"); k != "" {
		c.bearer = strings.TrimSpace(k)
	}
	if ck, err := r.Cookie(SessionCookie); err == nil {
		c.session = ck.Value
	}
	return c
}

// Authenticate returns the principal of a bearer token (static or OIDC).
// The error is deliberately uninformative; reason is for metrics.
func (a *Authenticator) Authenticate(ctx context.Context, bearer string) (Principal, string, error) {
	if bearer == "" {
		return Principal{}, "no_credentials", errBadToken
	}
	if t, ok := a.tokens.lookup(bearer); ok {
		return Principal{Name: t.name, Role: t.role, Method: "token"}, "", nil
	}
	// A JWT has two dots; only then is it worth asking the issuer's keys.
	if a.oidc != nil && strings.Count(bearer, ".") == 2 {
		p, reason, err := a.oidc.verify(ctx, bearer)
		if err != nil {
			a.log.Debug("oidc token refused", "reason", reason, "err", err)
			return Principal{}, "oidc_" + reason, errBadToken
		}
		return p, "", nil
	}
	return Principal{}, "unknown_token", errBadToken
}

// Middleware authenticates each request, enforces the route table, checks
// browser origins and CSRF, and serves /api/v1/login, /api/v1/logout and
// /api/v1/whoami itself. Handlers find the principal with PrincipalFrom.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		need := required(a.routes, r.Method, p)
		write := !isRead(r.Method)

		// Origin: a browser request from a foreign page is refused outright
		// when it could change state or read the live feed.
		if (write || isUpgrade(r)) && !a.sameOriginOK(r) {
			a.refuse(w, http.StatusForbidden, "origin", "cross-origin request refused")
			return
		}
		if !a.Enabled() {
			// Open mode (loopback demo): refuse Host names other than
			// loopback ones, which defeats DNS rebinding from a web page.
			if !a.cfg.AllowInsecure && !isLoopbackHost(hostOnly(r.Host)) {
				a.refuse(w, http.StatusForbidden, "host", "open (unauthenticated) server answers loopback host names only")
				return
			}
			if write && browserRequest(r) && r.Header.Get(CSRFHeader) == "" {
				a.refuse(w, http.StatusForbidden, "csrf", "missing "+CSRFHeader+" header")
				return
			}
			a.allowed.WithLabelValues("none").Inc()
			r = r.WithContext(WithPrincipal(r.Context(), Principal{Name: "anonymous", Role: RoleAdmin, Method: "none"}))
			a.serve(w, r, p, next)
			return
		}

		cred := credentials(r)
		var prin Principal
		var reason string
		var err error
		switch {
		case cred.bearer != "":
			prin, reason, err = a.Authenticate(r.Context(), cred.bearer)
		case cred.session != "":
			var ok bool
			if prin, ok = a.sessions.get(cred.session, a.now()); !ok {
				reason, err = "session", errBadToken
			} else if write && r.Header.Get(CSRFHeader) == "" {
				// Cookies ride along on cross-site requests; the header cannot.
				a.refuse(w, http.StatusForbidden, "csrf", "missing "+CSRFHeader+" header")
				return
			}
		default:
			reason, err = "no_credentials", errBadToken
		}
		if err != nil {
			if need == RolePublic {
				a.serve(w, r, p, next)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshlens"`)
			a.refuse(w, http.StatusUnauthorized, reason, "authentication required")
			return
		}
		if !prin.Role.Allows(need) {
			a.refuse(w, http.StatusForbidden, "role", fmt.Sprintf("%s needs role %s; %s has %s", r.Method+" "+p, need, prin.Name, prin.Role))
			return
		}
		a.allowed.WithLabelValues(prin.Method).Inc()
		a.serve(w, r.WithContext(WithPrincipal(r.Context(), prin)), p, next)
	})
}

func (a *Authenticator) serve(w http.ResponseWriter, r *http.Request, p string, next http.Handler) {
	switch {
	case p == "/api/v1/login" && r.Method == http.MethodPost:
		a.login(w, r)
	case p == "/api/v1/logout" && r.Method == http.MethodPost:
		a.logout(w, r)
	case p == "/api/v1/whoami" && r.Method == http.MethodGet:
		prin, _ := PrincipalFrom(r.Context())
		writeJSON(w, http.StatusOK, map[string]any{"name": prin.Name, "role": prin.Role, "method": prin.Method, "roles": prin.Roles(), "authEnabled": a.Enabled()})
	default:
		next.ServeHTTP(w, r)
	}
}

// login exchanges a token (JSON {"token": ...} or the Authorization header)
// for a session cookie, so the dashboard and its websocket need not hold it.
func (a *Authenticator) login(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(CSRFHeader) == "" {
		a.refuse(w, http.StatusForbidden, "csrf", "missing "+CSRFHeader+" header")
		return
	}
	if !a.Enabled() {
		writeJSON(w, http.StatusOK, map[string]any{"name": "anonymous", "role": RoleAdmin, "authEnabled": false})
		return
	}
	tok := credentials(r).bearer
	if tok == "" {
		var body struct {
			Token string `json:"token"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, maxJWTBytes+1024)).Decode(&body); err != nil {
			a.refuse(w, http.StatusBadRequest, "malformed", `want JSON {"token": "..."}`)
			return
		}
		tok = body.Token
	}
	prin, reason, err := a.Authenticate(r.Context(), tok)
	if err != nil {
		a.refuse(w, http.StatusUnauthorized, reason, "authentication failed")
		return
	}
	ttl := a.cfg.SessionTTL
	if prin.Method == "oidc" {
		if exp, ok := jwtExpiry(tok); ok && exp.Sub(a.now()) < ttl {
			ttl = exp.Sub(a.now())
		}
	}
	id, err := a.sessions.create(Principal{Name: prin.Name, Role: prin.Role, Method: "session"}, a.now().Add(ttl))
	if err != nil {
		a.refuse(w, http.StatusInternalServerError, "session", "cannot create a session")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(ttl.Seconds())})
	a.log.Info("login", "principal", prin.Name, "role", prin.Role.String(), "method", prin.Method, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"name": prin.Name, "role": prin.Role, "authEnabled": true})
}

func (a *Authenticator) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(SessionCookie); err == nil {
		a.sessions.delete(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, MaxAge: -1, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

func (a *Authenticator) refuse(w http.ResponseWriter, code int, reason, msg string) {
	a.failures.WithLabelValues(reason).Inc()
	writeJSON(w, code, map[string]string{"error": msg})
}

// CheckOrigin is the websocket upgrader's origin check: no Origin (not a
// browser), the server's own origin, or a configured one.
func (a *Authenticator) CheckOrigin(r *http.Request) bool { return a.sameOriginOK(r) }

func (a *Authenticator) sameOriginOK(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" && r.Header.Get("Origin") == "" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	n, err := parseOrigin(o)
	if err != nil {
		return false // "null" (sandboxed frames, file:) and junk
	}
	if a.origins[n] {
		return true
	}
	_, host, _ := strings.Cut(n, "://")
	return strings.EqualFold(host, r.Host)
}

func browserRequest(r *http.Request) bool {
	return r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Cookie") != ""
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	var c map[string]any
	if decodeSegment(parts[1], &c) != nil {
		return time.Time{}, false
	}
	t, ok, err := numClaim(c, "exp")
	return t, ok && err == nil
}

// sessionStore holds dashboard sessions by the SHA-256 of their ID, bounded.
type sessionStore struct {
	mu    sync.Mutex
	max   int
	byID  map[[32]byte]session
	order [][32]byte // creation order, for eviction
}

type session struct {
	p   Principal
	exp time.Time
}

func newSessionStore(max int) *sessionStore {
	return &sessionStore{max: max, byID: map[[32]byte]session{}}
}

func (s *sessionStore) create(p Principal, exp time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.order) > 2*s.max { // logouts leave stale IDs behind
		live := s.order[:0]
		for _, k := range s.order {
			if _, ok := s.byID[k]; ok {
				live = append(live, k)
			}
		}
		s.order = live
	}
	for len(s.byID) >= s.max && len(s.order) > 0 {
		delete(s.byID, s.order[0])
		s.order = s.order[1:]
	}
	s.byID[h] = session{p, exp}
	s.order = append(s.order, h)
	return id, nil
}

func (s *sessionStore) get(id string, now time.Time) (Principal, bool) {
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[h]
	if !ok || now.After(ss.exp) {
		return Principal{}, false
	}
	return ss.p, true
}

func (s *sessionStore) delete(id string) {
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, h)
}

// EnvTokenFiles is the environment variable adding token files.
const EnvTokenFiles = "MESHLENS_AUTH_TOKEN_FILES"

// ApplyEnv adds token files named in MESHLENS_AUTH_TOKEN_FILES (comma-separated).
func (c *Config) ApplyEnv(getenv func(string) string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, f := range strings.Split(getenv(EnvTokenFiles), ",") {
		if f = strings.TrimSpace(f); f != "" {
			c.TokenFiles = append(c.TokenFiles, f)
		}
	}
}
