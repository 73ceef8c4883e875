// Package auth authenticates requests to meshlens' HTTP API, websocket and
// dashboard, and authorises them by role: static bearer tokens (API keys)
// held as SHA-256 hashes, and OIDC bearer tokens (JWT, RS256/ES256) checked
// against the issuer's JWKS. It also builds the TLS configuration of the
// listeners.
package auth

import (
	"context"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Role is a rung on the ladder viewer < operator < approver < admin; a
// principal may do everything its role and the roles below it allow.
type Role int8

// Roles, lowest first. RolePublic marks routes that need no principal.
const (
	RolePublic Role = iota
	RoleViewer
	RoleOperator
	RoleApprover
	RoleAdmin
)

var roleNames = [...]string{"public", "viewer", "operator", "approver", "admin"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", r)
	}
	return roleNames[r]
}

// ParseRole reads viewer, operator, approver or admin.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames[1:] {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Role(i + 1), nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: want viewer, operator, approver or admin", s)
}

// Allows reports whether a principal holding r may use a route needing need.
func (r Role) Allows(need Role) bool { return r >= need }

func (r Role) MarshalYAML() (any, error) { return r.String(), nil }

func (r *Role) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: role must be a string", n.Line)
	}
	if strings.TrimSpace(s) == "" {
		*r = RolePublic // unset
		return nil
	}
	v, err := ParseRole(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Principal is who made a request. It never holds the credential.
type Principal struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Method is how it authenticated: token, oidc, session or none (open mode).
	Method string `json:"method"`
}

// String is the name recorded in the audit log, e.g. "alice (approver, oidc)".
func (p Principal) String() string { return fmt.Sprintf("%s (%s, %s)", p.Name, p.Role, p.Method) }

// Roles lists the role names the principal holds, its own and those below
// it: for components that check membership ("approver" in Roles()).
func (p Principal) Roles() []string {
	var out []string
	for r := RoleViewer; r <= p.Role && r <= RoleAdmin; r++ {
		out = append(out, r.String())
	}
	return out
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated principal of a request's context.
// Handlers that change state record p.Name (or p.String()) in the audit log.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Name != ""
}
