package auth

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config is the auth section. With no tokens, token files and OIDC issuer,
// auth is off: the server runs open, which config refuses on a non-loopback
// address unless AllowInsecure is set.
type Config struct {
	// Tokens are static bearer tokens (API keys), held as SHA-256 hashes.
	Tokens []Token `yaml:"tokens"`
	// TokenFiles hold more tokens, one per line: "name role sha256:<hex>"
	// (# comments). MESHLENS_AUTH_TOKEN_FILES adds paths (comma-separated).
	TokenFiles []string `yaml:"tokenFiles"`
	// OIDC validates bearer JWTs of an SSO issuer.
	OIDC OIDC `yaml:"oidc"`
	// AllowInsecure lets the server run without auth on a non-loopback address.
	AllowInsecure bool `yaml:"allowInsecure"`
	// AllowedOrigins are extra browser origins (scheme://host[:port]) allowed
	// to call the API and open the websocket, besides the server's own.
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// SessionTTL bounds a dashboard login session (cookie).
	SessionTTL time.Duration `yaml:"sessionTTL"`
	// MaxSessions bounds the sessions held in memory (oldest go first).
	MaxSessions int `yaml:"maxSessions"`
}

// Token is one static bearer token.
type Token struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// SHA256 is the hex SHA-256 of the token ("sha256:" prefix optional);
	// `meshlens auth token` makes a token and its hash.
	SHA256 string `yaml:"sha256"`
}

// OIDC configures bearer JWT validation against an issuer.
type OIDC struct {
	Issuer   string `yaml:"issuer"`   // exact "iss"; empty: OIDC off
	Audience string `yaml:"audience"` // required in "aud"
	// JWKSURL overrides discovery (issuer/.well-known/openid-configuration).
	JWKSURL string `yaml:"jwksURL"`
	// UsernameClaim names the principal (default preferred_username, then email, then sub).
	UsernameClaim string `yaml:"usernameClaim"`
	// RolesClaim holds group/role names (string or list), mapped by RoleMapping.
	RolesClaim  string          `yaml:"rolesClaim"`
	RoleMapping map[string]Role `yaml:"roleMapping"`
	// DefaultRole is given to valid tokens with no mapped role; unset refuses them.
	DefaultRole Role `yaml:"defaultRole"`
	// Leeway tolerates clock skew on exp/nbf/iat.
	Leeway time.Duration `yaml:"leeway"`
	// RefreshInterval is how long fetched keys are trusted before a refetch.
	RefreshInterval time.Duration `yaml:"refreshInterval"`
}

// DefaultConfig is auth off, 12h sessions.
func DefaultConfig() Config {
	return Config{
		SessionTTL:  12 * time.Hour,
		MaxSessions: 10000,
		OIDC: OIDC{
			UsernameClaim:   "preferred_username",
			RolesClaim:      "groups",
			Leeway:          time.Minute,
			RefreshInterval: time.Hour,
		},
	}
}

// Enabled reports whether any credential source is configured.
func (c Config) Enabled() bool {
	return len(c.Tokens) > 0 || len(c.TokenFiles) > 0 || c.OIDC.Issuer != ""
}

// Validate reports every problem as "key.path: message" relative to the section.
func (c Config) Validate() []string {
	var p []string
	seen := map[string]int{}
	for i, t := range c.Tokens {
		k := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			p = append(p, k+".name: required")
		}
		if t.Role == RolePublic {
			p = append(p, k+".role: required (viewer, operator, approver, admin)")
		}
		if _, err := parseHash(t.SHA256); err != nil {
			p = append(p, k+".sha256: "+err.Error())
		} else if j, dup := seen[normHash(t.SHA256)]; dup {
			p = append(p, fmt.Sprintf("%s.sha256: same token as tokens[%d]", k, j))
		} else {
			seen[normHash(t.SHA256)] = i
		}
	}
	for i, f := range c.TokenFiles {
		if strings.TrimSpace(f) == "" {
			p = append(p, fmt.Sprintf("tokenFiles[%d]: empty path", i))
		}
	}
	for i, o := range c.AllowedOrigins {
		if _, err := parseOrigin(o); err != nil {
			p = append(p, fmt.Sprintf("allowedOrigins[%d]: %v", i, err))
		}
	}
	if c.SessionTTL <= 0 {
		p = append(p, "sessionTTL: must be > 0")
	}
	if c.MaxSessions < 1 {
		p = append(p, "maxSessions: must be > 0")
	}
	if o := c.OIDC; o.Issuer != "" {
		if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !isLoopbackHost(u.Hostname())) {
			p = append(p, fmt.Sprintf("oidc.issuer: %q must be an https URL (http only on loopback)", o.Issuer))
		}
		if o.Audience == "" {
			p = append(p, "oidc.audience: required with oidc.issuer")
		}
		if o.JWKSURL != "" {
			if u, err := url.Parse(o.JWKSURL); err != nil || u.Host == "" || (u.Scheme != "https" && !isLoopbackHost(u.Hostname())) {
				p = append(p, fmt.Sprintf("oidc.jwksURL: %q must be an https URL (http only on loopback)", o.JWKSURL))
			}
		}
		if o.Leeway < 0 || o.Leeway > 10*time.Minute {
			p = append(p, "oidc.leeway: must be between 0 and 10m")
		}
		if o.RefreshInterval < time.Minute {
			p = append(p, "oidc.refreshInterval: must be at least 1m")
		}
	}
	return p
}

// CheckListen is the start-up guard: an open (no auth) server may only
// listen on loopback unless AllowInsecure is set. addr is host:port.
func (c Config) CheckListen(addr string) error {
	if c.Enabled() || c.AllowInsecure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // the address check reports it
	}
	if isLoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("%q listens beyond loopback without authentication: configure auth.tokens, auth.tokenFiles or auth.oidc, listen on 127.0.0.1, or set auth.allowInsecure: true", addr)
}

// isLoopbackHost is true for localhost and loopback IPs; "" (all
// interfaces) is not loopback.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func normHash(s string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
}

func parseHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(normHash(s))
	if err != nil || len(b) != 32 {
		return h, fmt.Errorf("want 64 hex digits of a SHA-256 (the token's hash, never the token)")
	}
	copy(h[:], b)
	return h, nil
}

// parseOrigin normalises "https://Host:port" to its origin form.
func parseOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%q is not an origin like https://dash.example.com", s)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}
