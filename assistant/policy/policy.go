// Package policy builds Istio resources (VirtualService, DestinationRule,
// AuthorizationPolicy, PeerAuthentication) from structured parameters, never
// from free text, renders them as YAML with the istio.io/api types and
// validates what it renders.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"
	securityv1 "istio.io/api/security/v1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// Resource kinds propose_policy can build.
const (
	KindVirtualService      = "VirtualService"
	KindDestinationRule     = "DestinationRule"
	KindAuthorizationPolicy = "AuthorizationPolicy"
	KindPeerAuthentication  = "PeerAuthentication"
)

// Kinds lists the kinds in a stable order.
var Kinds = []string{KindVirtualService, KindDestinationRule, KindAuthorizationPolicy, KindPeerAuthentication}

// ErrInvalid wraps every problem with parameters or a rendered resource.
var ErrInvalid = errors.New("invalid policy")

// Retries configures VirtualService retries.
type Retries struct {
	Attempts      int      `json:"attempts"`
	PerTryTimeout string   `json:"perTryTimeout,omitempty"` // e.g. "2s"
	RetryOn       []string `json:"retryOn,omitempty"`       // e.g. ["5xx","connect-failure"]
}

// Weight sends a share of a service's traffic to one version (subset).
type Weight struct {
	Version string `json:"version"`
	Weight  int    `json:"weight"` // percent; weights sum to 100
}

// Outlier configures DestinationRule outlier detection.
type Outlier struct {
	Consecutive5xxErrors     int    `json:"consecutive5xxErrors,omitempty"`
	ConsecutiveGatewayErrors int    `json:"consecutiveGatewayErrors,omitempty"`
	Interval                 string `json:"interval,omitempty"`
	BaseEjectionTime         string `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent       int    `json:"maxEjectionPercent,omitempty"`
}

// Pool configures DestinationRule connection pools.
type Pool struct {
	MaxConnections          int    `json:"maxConnections,omitempty"`
	ConnectTimeout          string `json:"connectTimeout,omitempty"`
	HTTP1MaxPendingRequests int    `json:"http1MaxPendingRequests,omitempty"`
	HTTP2MaxRequests        int    `json:"http2MaxRequests,omitempty"`
	MaxRetries              int    `json:"maxRetries,omitempty"`
}

// Params are the structured inputs of propose_policy. Only the fields of the
// chosen Kind are used; anything else is an error, so nothing is silently dropped.
type Params struct {
	Kind      string `json:"kind"`
	Service   string `json:"service"`             // target app / canonical service, e.g. "ratings"
	Namespace string `json:"namespace,omitempty"` // default "default"
	Host      string `json:"host,omitempty"`      // default service.namespace.svc.cluster.local

	// VirtualService.
	Timeout string   `json:"timeout,omitempty"`
	Retries *Retries `json:"retries,omitempty"`
	Weights []Weight `json:"weights,omitempty"`

	// DestinationRule.
	OutlierDetection *Outlier `json:"outlierDetection,omitempty"`
	ConnectionPool   *Pool    `json:"connectionPool,omitempty"`

	// AuthorizationPolicy: DENY the listed callers, or ALLOW only them.
	Action     string   `json:"action,omitempty"`
	Principals []string `json:"principals,omitempty"` // SPIFFE IDs or Istio principals (td/ns/x/sa/y)

	// PeerAuthentication.
	Mode string `json:"mode,omitempty"` // STRICT (default)
}

// Resource is one rendered Istio resource.
type Resource struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	YAML       string `json:"yaml"`
}

// Key identifies the resource in a cluster.
func (r Resource) Key() string { return r.Kind + "/" + r.Namespace + "/" + r.Name }

var (
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelValue   = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	principalRe  = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+$`)
)

// retryOnTokens are the retry conditions Envoy and Istio accept.
var retryOnTokens = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
	"http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// Build turns parameters into resources. Every resource is validated after
// rendering; an error names the parameter at fault.
func Build(p Params) ([]Resource, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	ns := p.namespace()
	host := p.host()
	var out []Resource
	add := func(apiVersion, kind, name string, spec proto.Message) error {
		y, err := render(apiVersion, kind, name, ns, p.Service, spec)
		if err != nil {
			return fmt.Errorf("render %s %s/%s: %w", kind, ns, name, err)
		}
		r := Resource{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name, YAML: y}
		if err := Validate(r.YAML); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	}
	switch p.Kind {
	case KindVirtualService:
		route := &networkingv1.HTTPRoute{}
		if len(p.Weights) == 0 {
			route.Route = []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: host}}}
		}
		for _, w := range p.Weights {
			if w.Weight == 0 {
				continue // a version taken out of rotation is simply not routed to
			}
			route.Route = append(route.Route, &networkingv1.HTTPRouteDestination{
				Destination: &networkingv1.Destination{Host: host, Subset: w.Version}, Weight: int32(w.Weight)})
		}
		if p.Timeout != "" {
			route.Timeout = dur(p.Timeout)
		}
		if r := p.Retries; r != nil {
			route.Retries = &networkingv1.HTTPRetry{Attempts: int32(r.Attempts), RetryOn: strings.Join(r.RetryOn, ",")}
			if r.PerTryTimeout != "" {
				route.Retries.PerTryTimeout = dur(r.PerTryTimeout)
			}
		}
		if len(p.Weights) > 0 {
			// Subsets must exist before a route can name them.
			dr := &networkingv1.DestinationRule{Host: host}
			for _, w := range p.Weights {
				if w.Weight == 0 {
					continue
				}
				dr.Subsets = append(dr.Subsets, &networkingv1.Subset{Name: w.Version, Labels: map[string]string{"version": w.Version}})
			}
			if err := add("networking.istio.io/v1", KindDestinationRule, p.Service, dr); err != nil {
				return nil, err
			}
		}
		vs := &networkingv1.VirtualService{Hosts: []string{host}, Http: []*networkingv1.HTTPRoute{route}}
		if err := add("networking.istio.io/v1", KindVirtualService, p.Service, vs); err != nil {
			return nil, err
		}
	case KindDestinationRule:
		tp := &networkingv1.TrafficPolicy{}
		if o := p.OutlierDetection; o != nil {
			od := &networkingv1.OutlierDetection{MaxEjectionPercent: int32(o.MaxEjectionPercent)}
			if o.Consecutive5xxErrors > 0 {
				od.Consecutive_5XxErrors = wrapperspb.UInt32(uint32(o.Consecutive5xxErrors))
			}
			if o.ConsecutiveGatewayErrors > 0 {
				od.ConsecutiveGatewayErrors = wrapperspb.UInt32(uint32(o.ConsecutiveGatewayErrors))
			}
			if o.Interval != "" {
				od.Interval = dur(o.Interval)
			}
			if o.BaseEjectionTime != "" {
				od.BaseEjectionTime = dur(o.BaseEjectionTime)
			}
			tp.OutlierDetection = od
		}
		if c := p.ConnectionPool; c != nil {
			cp := &networkingv1.ConnectionPoolSettings{}
			if c.MaxConnections > 0 || c.ConnectTimeout != "" {
				cp.Tcp = &networkingv1.ConnectionPoolSettings_TCPSettings{MaxConnections: int32(c.MaxConnections)}
				if c.ConnectTimeout != "" {
					cp.Tcp.ConnectTimeout = dur(c.ConnectTimeout)
				}
			}
			if c.HTTP1MaxPendingRequests > 0 || c.HTTP2MaxRequests > 0 || c.MaxRetries > 0 {
				cp.Http = &networkingv1.ConnectionPoolSettings_HTTPSettings{
					Http1MaxPendingRequests: int32(c.HTTP1MaxPendingRequests),
					Http2MaxRequests:        int32(c.HTTP2MaxRequests),
					MaxRetries:              int32(c.MaxRetries),
				}
			}
			tp.ConnectionPool = cp
		}
		if err := add("networking.istio.io/v1", KindDestinationRule, p.Service, &networkingv1.DestinationRule{Host: host, TrafficPolicy: tp}); err != nil {
			return nil, err
		}
	case KindAuthorizationPolicy:
		action := strings.ToUpper(p.Action)
		ap := &securityv1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": p.Service}},
			Rules:    []*securityv1.Rule{{From: []*securityv1.Rule_From{{Source: &securityv1.Source{Principals: principals(p.Principals)}}}}},
		}
		name := p.Service + "-allow-observed-callers"
		if action == "DENY" {
			ap.Action = securityv1.AuthorizationPolicy_DENY
			name = p.Service + "-deny-unexpected-callers"
		} else {
			ap.Action = securityv1.AuthorizationPolicy_ALLOW
		}
		if err := add("security.istio.io/v1", KindAuthorizationPolicy, name, ap); err != nil {
			return nil, err
		}
	case KindPeerAuthentication:
		pa := &securityv1.PeerAuthentication{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": p.Service}},
			Mtls:     &securityv1.PeerAuthentication_MutualTLS{Mode: securityv1.PeerAuthentication_MutualTLS_STRICT},
		}
		if err := add("security.istio.io/v1", KindPeerAuthentication, p.Service+"-strict-mtls", pa); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p *Params) namespace() string {
	if p.Namespace == "" {
		return "default"
	}
	return p.Namespace
}

func (p *Params) host() string {
	if p.Host != "" {
		return p.Host
	}
	return p.Service + "." + p.namespace() + ".svc.cluster.local"
}

// principals turns SPIFFE IDs into the form AuthorizationPolicy matches.
func principals(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		out = append(out, strings.TrimPrefix(s, "spiffe://"))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func dur(s string) *durationpb.Duration {
	d, _ := time.ParseDuration(s) // checked by Params.check
	return durationpb.New(d)
}

func bad(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

func checkDur(field, s string, min, max time.Duration) error {
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return bad(field, "%q is not a duration like 2s or 500ms", s)
	}
	if d < min || d > max {
		return bad(field, "%s must be between %s and %s", d, min, max)
	}
	return nil
}

// check validates parameters before anything is rendered.
func (p *Params) check() error {
	if !slices.Contains(Kinds, p.Kind) {
		return bad("kind", "%q is not one of %s", p.Kind, strings.Join(Kinds, ", "))
	}
	if !dns1123Label.MatchString(p.Service) || len(p.Service) > 50 {
		return bad("service", "%q is not a valid service name", p.Service)
	}
	if p.Namespace != "" && (!dns1123Label.MatchString(p.Namespace) || len(p.Namespace) > 63) {
		return bad("namespace", "%q is not a valid namespace", p.Namespace)
	}
	if p.Host != "" && (len(p.Host) > 253 || !regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`).MatchString(p.Host)) {
		return bad("host", "%q is not a valid host", p.Host)
	}
	vs := p.Timeout != "" || p.Retries != nil || len(p.Weights) > 0
	dr := p.OutlierDetection != nil || p.ConnectionPool != nil
	authz := p.Action != "" || len(p.Principals) > 0
	pa := p.Mode != ""
	for _, f := range []struct {
		kind string
		set  bool
		name string
	}{{KindVirtualService, vs, "timeout/retries/weights"}, {KindDestinationRule, dr, "outlierDetection/connectionPool"},
		{KindAuthorizationPolicy, authz, "action/principals"}, {KindPeerAuthentication, pa, "mode"}} {
		if f.set && f.kind != p.Kind {
			return bad(f.name, "not a field of %s", p.Kind)
		}
	}
	switch p.Kind {
	case KindVirtualService:
		if !vs {
			return bad("kind", "a VirtualService needs a timeout, retries or weights")
		}
		if err := checkDur("timeout", p.Timeout, time.Millisecond, 10*time.Minute); err != nil {
			return err
		}
		if r := p.Retries; r != nil {
			if r.Attempts < 0 || r.Attempts > 10 {
				return bad("retries.attempts", "%d must be between 0 and 10", r.Attempts)
			}
			if err := checkDur("retries.perTryTimeout", r.PerTryTimeout, time.Millisecond, 10*time.Minute); err != nil {
				return err
			}
			for _, t := range r.RetryOn {
				if !slices.Contains(retryOnTokens, t) && !regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString(t) {
					return bad("retries.retryOn", "%q is not a retry condition (want one of %s or an HTTP status)", t, strings.Join(retryOnTokens, ", "))
				}
			}
		}
		if len(p.Weights) > 0 {
			sum := 0
			seen := map[string]bool{}
			for i, w := range p.Weights {
				if !dns1123Label.MatchString(w.Version) || seen[w.Version] {
					return bad(fmt.Sprintf("weights[%d].version", i), "%q is not a valid, distinct version", w.Version)
				}
				seen[w.Version] = true
				if w.Weight < 0 || w.Weight > 100 {
					return bad(fmt.Sprintf("weights[%d].weight", i), "%d must be between 0 and 100", w.Weight)
				}
				sum += w.Weight
			}
			if sum != 100 {
				return bad("weights", "weights sum to %d, want 100", sum)
			}
		}
	case KindDestinationRule:
		if !dr {
			return bad("kind", "a DestinationRule needs outlierDetection or connectionPool")
		}
		if o := p.OutlierDetection; o != nil {
			if o.Consecutive5xxErrors < 0 || o.ConsecutiveGatewayErrors < 0 {
				return bad("outlierDetection", "error counts must not be negative")
			}
			if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
				return bad("outlierDetection.maxEjectionPercent", "%d must be between 0 and 100", o.MaxEjectionPercent)
			}
			if err := checkDur("outlierDetection.interval", o.Interval, time.Millisecond, time.Hour); err != nil {
				return err
			}
			if err := checkDur("outlierDetection.baseEjectionTime", o.BaseEjectionTime, time.Millisecond, time.Hour); err != nil {
				return err
			}
		}
		if c := p.ConnectionPool; c != nil {
			if c.MaxConnections < 0 || c.HTTP1MaxPendingRequests < 0 || c.HTTP2MaxRequests < 0 || c.MaxRetries < 0 {
				return bad("connectionPool", "limits must not be negative")
			}
			if err := checkDur("connectionPool.connectTimeout", c.ConnectTimeout, time.Millisecond, time.Minute); err != nil {
				return err
			}
		}
	case KindAuthorizationPolicy:
		switch strings.ToUpper(p.Action) {
		case "ALLOW", "DENY":
		default:
			return bad("action", "%q must be ALLOW or DENY", p.Action)
		}
		if len(p.Principals) == 0 {
			// An ALLOW with no callers would cut the service off; a DENY with none matches nothing.
			return bad("principals", "at least one caller principal is required")
		}
		for i, s := range principals(p.Principals) {
			if !principalRe.MatchString(s) || len(s) > 253 {
				return bad(fmt.Sprintf("principals[%d]", i), "%q is not a principal like cluster.local/ns/default/sa/frontend", s)
			}
		}
	case KindPeerAuthentication:
		if m := strings.ToUpper(p.Mode); m != "" && m != "STRICT" {
			return bad("mode", "%q: only STRICT is proposed", p.Mode)
		}
	}
	return nil
}
