package auth

import (
	"net/http"
	"strings"
)

// Rule gives the minimum role for requests matching Method and Pattern.
// Pattern is a path whose "*" segments match any one segment and whose
// trailing "/**" matches anything below (including nothing). Method "" or
// "*" matches any method; "READ" matches GET, HEAD and OPTIONS; "WRITE"
// matches every other method.
type Rule struct {
	Method  string
	Pattern string
	Role    Role
}

// DefaultRoutes is meshlens' route table; the first match wins. Anything
// not listed needs viewer to read and admin to write, so a new endpoint is
// locked down until it is listed here.
func DefaultRoutes() []Rule {
	return []Rule{
		{"READ", "/healthz", RolePublic},
		{"READ", "/readyz", RolePublic},
		{"POST", "/api/v1/login", RolePublic},
		{"POST", "/api/v1/logout", RolePublic},
		{"READ", "/metrics", RoleViewer},
		{"*", "/api/v1/admin/**", RoleAdmin},
		{"POST", "/api/v1/proposals/*/approve", RoleApprover},
		{"POST", "/api/v1/proposals/*/reject", RoleApprover},
		{"POST", "/api/v1/proposals/*/apply", RoleApprover},
		{"WRITE", "/api/v1/chat/**", RoleOperator},
		{"WRITE", "/api/v1/anomalies/**", RoleOperator}, // silence, acknowledge
		{"WRITE", "/api/v1/incidents/**", RoleOperator},
		{"WRITE", "/api/v1/silences/**", RoleOperator},
		// Remote-write shares the API port: ingest is a write that needs at
		// least an operator's token (Prometheus: remote_write.authorization).
		{"POST", "/api/v1/write", RoleOperator},
		{"READ", "/api/**", RoleViewer},
		// The dashboard's shell is public (it shows the login form); its
		// data comes from the API.
		{"READ", "/", RolePublic},
		{"READ", "/index.html", RolePublic},
		{"READ", "/favicon.ico", RolePublic},
		{"READ", "/assets/**", RolePublic},
	}
}

func isRead(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (r Rule) matches(method, path string) bool {
	switch r.Method {
	case "", "*":
	case "READ":
		if !isRead(method) {
			return false
		}
	case "WRITE":
		if isRead(method) {
			return false
		}
	default:
		if r.Method != method {
			return false
		}
	}
	return matchPath(r.Pattern, path)
}

func matchPath(pattern, path string) bool {
	if rest, ok := strings.CutSuffix(pattern, "/**"); ok {
		if path == rest || rest == "" {
			return true
		}
		if !strings.HasPrefix(path, rest+"/") && !wildPrefix(rest, path) {
			return false
		}
		return true
	}
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// wildPrefix matches a prefix pattern with "*" segments against path's leading segments.
func wildPrefix(prefix, path string) bool {
	if !strings.Contains(prefix, "*") {
		return false
	}
	ps, xs := strings.Split(prefix, "/"), strings.Split(path, "/")
	if len(xs) < len(ps) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// required is the minimum role for a request.
func required(rules []Rule, method, path string) Role {
	for _, r := range rules {
		if r.matches(method, path) {
			return r.Role
		}
	}
	if isRead(method) {
		return RoleViewer
	}
	return RoleAdmin
}
