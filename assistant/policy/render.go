package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
	networkingv1 "istio.io/api/networking/v1"
	securityv1 "istio.io/api/security/v1"
)

// ManagedByLabel marks resources meshlens generated.
const ManagedByLabel = "app.kubernetes.io/managed-by"

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }

func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i < len(kv); i += 2 {
		n.Content = append(n.Content, scalar(kv[i].(string)))
		switch v := kv[i+1].(type) {
		case string:
			n.Content = append(n.Content, scalar(v))
		case *yaml.Node:
			n.Content = append(n.Content, v)
		}
	}
	return n
}

// blockStyle clears the flow style yaml gives JSON input, so the output is
// the block YAML people review.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// render writes one resource: apiVersion, kind, metadata, then the spec as
// the istio.io/api type marshals it (camelCase field names, durations as "2s").
func render(apiVersion, kind, name, ns, service string, spec proto.Message) (string, error) {
	js, err := protojson.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("marshal spec: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return "", fmt.Errorf("convert spec: %w", err)
	}
	specNode := doc.Content[0]
	blockStyle(specNode)
	root := mapping(
		"apiVersion", apiVersion,
		"kind", kind,
		"metadata", mapping(
			"name", name,
			"namespace", ns,
			"labels", mapping(ManagedByLabel, "meshlens", "meshlens.io/service", service),
		),
		"spec", specNode,
	)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return "", fmt.Errorf("encode yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("encode yaml: %w", err)
	}
	return buf.String(), nil
}

type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec map[string]any `yaml:"spec"`
}

var subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// Validate checks one rendered resource: a single YAML document with
// apiVersion/kind/metadata, a spec the istio.io/api type accepts (unknown
// fields are errors) and the semantic rules Istio's webhook enforces for the
// fields meshlens writes.
func Validate(doc string) error {
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var m manifest
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%w: decode resource: %v", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	id := m.Kind + " " + m.Metadata.Namespace + "/" + m.Metadata.Name
	if len(m.Metadata.Name) > 253 || !subdomain.MatchString(m.Metadata.Name) {
		return fmt.Errorf("%w: %s: metadata.name %q is not a DNS subdomain", ErrInvalid, id, m.Metadata.Name)
	}
	if len(m.Metadata.Namespace) > 63 || !dns1123Label.MatchString(m.Metadata.Namespace) {
		return fmt.Errorf("%w: %s: metadata.namespace %q is not a DNS label", ErrInvalid, id, m.Metadata.Namespace)
	}
	for k, v := range m.Metadata.Labels {
		if !labelValue.MatchString(v) || len(v) > 63 {
			return fmt.Errorf("%w: %s: label %s=%q is not a valid label value", ErrInvalid, id, k, v)
		}
	}
	js, err := json.Marshal(m.Spec)
	if err != nil {
		return fmt.Errorf("%w: %s: spec: %v", ErrInvalid, id, err)
	}
	var msg proto.Message
	var wantAPI string
	switch m.Kind {
	case KindVirtualService:
		msg, wantAPI = &networkingv1.VirtualService{}, "networking.istio.io/v1"
	case KindDestinationRule:
		msg, wantAPI = &networkingv1.DestinationRule{}, "networking.istio.io/v1"
	case KindAuthorizationPolicy:
		msg, wantAPI = &securityv1.AuthorizationPolicy{}, "security.istio.io/v1"
	case KindPeerAuthentication:
		msg, wantAPI = &securityv1.PeerAuthentication{}, "security.istio.io/v1"
	default:
		return fmt.Errorf("%w: kind %q is not one meshlens proposes", ErrInvalid, m.Kind)
	}
	if m.APIVersion != wantAPI {
		return fmt.Errorf("%w: %s: apiVersion %q, want %q", ErrInvalid, id, m.APIVersion, wantAPI)
	}
	if err := protojson.Unmarshal(js, msg); err != nil {
		return fmt.Errorf("%w: %s: spec: %v", ErrInvalid, id, err)
	}
	var problems []string
	switch s := msg.(type) {
	case *networkingv1.VirtualService:
		problems = checkVS(s)
	case *networkingv1.DestinationRule:
		problems = checkDR(s)
	case *securityv1.AuthorizationPolicy:
		if s.GetSelector() == nil || len(s.GetSelector().GetMatchLabels()) == 0 {
			problems = append(problems, "selector: must name the workloads (a namespace-wide policy is never proposed)")
		}
		if len(s.GetRules()) == 0 {
			problems = append(problems, "rules: at least one rule is required")
		}
		for i, r := range s.GetRules() {
			for j, f := range r.GetFrom() {
				for k, p := range f.GetSource().GetPrincipals() {
					if !principalRe.MatchString(p) {
						problems = append(problems, fmt.Sprintf("rules[%d].from[%d].source.principals[%d]: %q is not a principal", i, j, k, p))
					}
				}
			}
		}
	case *securityv1.PeerAuthentication:
		if s.GetSelector() == nil || len(s.GetSelector().GetMatchLabels()) == 0 {
			problems = append(problems, "selector: must name the workloads")
		}
		if s.GetMtls().GetMode() != securityv1.PeerAuthentication_MutualTLS_STRICT {
			problems = append(problems, "mtls.mode: must be STRICT")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, id, strings.Join(problems, "; "))
	}
	return nil
}

func checkVS(s *networkingv1.VirtualService) []string {
	var p []string
	if len(s.GetHosts()) == 0 {
		p = append(p, "hosts: at least one host is required")
	}
	if len(s.GetHttp()) == 0 {
		p = append(p, "http: at least one route is required")
	}
	for i, r := range s.GetHttp() {
		if len(r.GetRoute()) == 0 {
			p = append(p, fmt.Sprintf("http[%d].route: at least one destination is required", i))
		}
		sum := int32(0)
		for j, d := range r.GetRoute() {
			if d.GetDestination().GetHost() == "" {
				p = append(p, fmt.Sprintf("http[%d].route[%d].destination.host: required", i, j))
			}
			if d.GetWeight() < 0 || d.GetWeight() > 100 {
				p = append(p, fmt.Sprintf("http[%d].route[%d].weight: must be between 0 and 100", i, j))
			}
			sum += d.GetWeight()
		}
		if len(r.GetRoute()) > 1 && sum != 100 {
			p = append(p, fmt.Sprintf("http[%d].route: weights sum to %d, want 100", i, sum))
		}
		if t := r.GetTimeout(); t != nil && t.AsDuration() <= 0 {
			p = append(p, fmt.Sprintf("http[%d].timeout: must be positive", i))
		}
		if rt := r.GetRetries(); rt != nil {
			if rt.GetAttempts() < 0 {
				p = append(p, fmt.Sprintf("http[%d].retries.attempts: must not be negative", i))
			}
			if t := rt.GetPerTryTimeout(); t != nil && t.AsDuration().Milliseconds() < 1 {
				p = append(p, fmt.Sprintf("http[%d].retries.perTryTimeout: must be at least 1ms", i))
			}
			for _, tok := range strings.Split(rt.GetRetryOn(), ",") {
				if tok != "" && !slices.Contains(retryOnTokens, tok) && !regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString(tok) {
					p = append(p, fmt.Sprintf("http[%d].retries.retryOn: %q is not a retry condition", i, tok))
				}
			}
		}
	}
	return p
}

func checkDR(s *networkingv1.DestinationRule) []string {
	var p []string
	if s.GetHost() == "" {
		p = append(p, "host: required")
	}
	if od := s.GetTrafficPolicy().GetOutlierDetection(); od != nil {
		if v := od.GetMaxEjectionPercent(); v < 0 || v > 100 {
			p = append(p, "trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100")
		}
		if t := od.GetInterval(); t != nil && t.AsDuration().Milliseconds() < 1 {
			p = append(p, "trafficPolicy.outlierDetection.interval: must be at least 1ms")
		}
		if t := od.GetBaseEjectionTime(); t != nil && t.AsDuration().Milliseconds() < 1 {
			p = append(p, "trafficPolicy.outlierDetection.baseEjectionTime: must be at least 1ms")
		}
	}
	if cp := s.GetTrafficPolicy().GetConnectionPool(); cp != nil {
		if cp.GetTcp().GetMaxConnections() < 0 || cp.GetHttp().GetHttp1MaxPendingRequests() < 0 || cp.GetHttp().GetHttp2MaxRequests() < 0 {
			p = append(p, "trafficPolicy.connectionPool: limits must not be negative")
		}
	}
	seen := map[string]bool{}
	for i, sub := range s.GetSubsets() {
		if !dns1123Label.MatchString(sub.GetName()) || seen[sub.GetName()] {
			p = append(p, fmt.Sprintf("subsets[%d].name: %q must be a distinct DNS label", i, sub.GetName()))
		}
		seen[sub.GetName()] = true
		if len(sub.GetLabels()) == 0 {
			p = append(p, fmt.Sprintf("subsets[%d].labels: required", i))
		}
	}
	return p
}
