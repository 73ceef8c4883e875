package assistant

import (
	"context"
	"net/http"
	"slices"
	"strings"
)

// Roles.
const (
	RoleViewer   = "viewer"
	RoleApprover = "approver"
)

// Principal is who makes a request. The authentication issue will set it
// from real credentials; until then HeaderIdentity does (placeholder).
type Principal struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Has reports whether the principal holds role.
func (p Principal) Has(role string) bool { return slices.Contains(p.Roles, role) }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the request's principal, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Name != ""
}

// HeaderIdentity is a PLACEHOLDER identity for local use until real
// authentication exists: it trusts the user name in header and grants the
// approver role to the names in approvers. Any client can set a header, so
// this must only front a trusted, local listener. A principal already in the
// context (set by real authentication) wins.
func HeaderIdentity(header string, approvers []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := PrincipalFrom(r.Context()); !ok && header != "" {
			if name := strings.TrimSpace(r.Header.Get(header)); name != "" && len(name) <= 128 {
				p := Principal{Name: name, Roles: []string{RoleViewer}}
				if slices.Contains(approvers, name) {
					p.Roles = append(p.Roles, RoleApprover)
				}
				r = r.WithContext(WithPrincipal(r.Context(), p))
			}
		}
		next.ServeHTTP(w, r)
	})
}
