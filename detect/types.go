package detect

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Anomaly types.
const (
	TypeLatency      = "latency"
	TypeErrors       = "errors"
	TypeTraffic      = "traffic"
	TypeUnexpected   = "unexpected_edge"
	TypePolicy       = "policy_violation"
	TypeMTLS         = "mtls_downgrade"
	TypeBadVersion   = "bad_version"
	StateFiring      = "firing"
	StateResolved    = "resolved"
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Subject kinds: where an anomaly was seen.
const (
	SubjectEdge    = "edge"
	SubjectNodeIn  = "node_in"  // a service's inbound traffic (all callers)
	SubjectNodeOut = "node_out" // a service's outbound traffic (all callees)
	SubjectNode    = "node"     // a workload compared with its siblings
)

// NodeRef is a JSON-friendly node identity (in the engine's view).
type NodeRef struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Cluster   string `json:"cluster,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Workload  string `json:"workload,omitempty"`
	App       string `json:"app,omitempty"`
	Version   string `json:"version,omitempty"`
	Service   string `json:"service,omitempty"`
}

// RefOf turns a graph node into a NodeRef.
func RefOf(n graph.Node) NodeRef {
	return NodeRef{ID: n.ID(), Name: n.Name(), Kind: n.Kind.String(), Cluster: n.Cluster, Namespace: n.Namespace,
		Workload: n.Workload, App: n.App, Version: n.Version, Service: n.Service}
}

// Subject is where an anomaly is: an edge, or a node's inbound/outbound traffic.
type Subject struct {
	Kind     string   `json:"kind"`
	Source   *NodeRef `json:"source,omitempty"` // edges
	Target   *NodeRef `json:"target,omitempty"` // edges
	Node     *NodeRef `json:"node,omitempty"`   // node subjects
	Protocol string   `json:"protocol,omitempty"`
}

// String is a short human form ("productpage -> reviews", "reviews (in)").
func (s Subject) String() string {
	switch s.Kind {
	case SubjectEdge:
		return s.Source.Name + " -> " + s.Target.Name
	case SubjectNodeIn:
		return s.Node.Name + " (inbound)"
	case SubjectNodeOut:
		return s.Node.Name + " (outbound)"
	}
	if s.Node != nil {
		return s.Node.Name
	}
	return "?"
}

// Nodes lists the node IDs the subject touches.
func (s Subject) Nodes() []string {
	if s.Kind == SubjectEdge {
		return []string{s.Source.ID, s.Target.ID}
	}
	return []string{s.Node.ID}
}

// Point is one bucket of an evidence series.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"` // NaN never appears: missing buckets are left out
}

// Evidence is what a person needs to believe an anomaly.
type Evidence struct {
	Series        []Point           `json:"series,omitempty"` // recent buckets of the metric
	BaselineLow   float64           `json:"baselineLow,omitempty"`
	BaselineHigh  float64           `json:"baselineHigh,omitempty"`
	Requests      uint64            `json:"requests,omitempty"` // in the last bucket
	Errors        uint64            `json:"errors,omitempty"`
	Flags         map[string]uint64 `json:"responseFlags,omitempty"` // Envoy response flags on failures
	Codes         map[string]uint64 `json:"codes,omitempty"`         // HTTP / gRPC codes on failures
	SourceLatency float64           `json:"sourceReportedMs,omitempty"`
	DestLatency   float64           `json:"destinationReportedMs,omitempty"`
	Notes         []string          `json:"notes,omitempty"`
}

// Anomaly is one detected deviation. Its ID is stable for its lifetime.
type Anomaly struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	Metric     string     `json:"metric"`    // p95, errors.5xx, requests, plaintext_share, ...
	Direction  string     `json:"direction"` // up, down, new
	Subject    Subject    `json:"subject"`
	State      string     `json:"state"`
	Severity   string     `json:"severity"`
	Since      time.Time  `json:"since"`   // first anomalous bucket
	FiredAt    time.Time  `json:"firedAt"` // bucket end when it fired
	UpdatedAt  time.Time  `json:"updatedAt"`
	ResolvedAt *time.Time `json:"resolvedAt,omitempty"`
	Observed   float64    `json:"observed"`
	Baseline   float64    `json:"baseline"`
	Unit       string     `json:"unit"`
	Score      float64    `json:"score"` // strength: robust z or -log10 p, capped at 100
	Summary    string     `json:"summary"`
	Evidence   Evidence   `json:"evidence"`
	IncidentID string     `json:"incidentId,omitempty"`

	key string // detector key: type|metric|subject; not exported
}

// RootCause is one ranked candidate of an incident.
type RootCause struct {
	Node        NodeRef  `json:"node"`
	Score       float64  `json:"score"`
	Explained   bool     `json:"explained"` // its anomalies are explained by an anomalous callee
	Explanation string   `json:"explanation"`
	Anomalies   []string `json:"anomalies"`
}

// Incident groups anomalies that overlap in time on connected parts of the graph.
type Incident struct {
	ID         string      `json:"id"`
	State      string      `json:"state"`
	Severity   string      `json:"severity"`
	Start      time.Time   `json:"start"`
	UpdatedAt  time.Time   `json:"updatedAt"`
	ResolvedAt *time.Time  `json:"resolvedAt,omitempty"`
	Title      string      `json:"title"`
	Anomalies  []string    `json:"anomalies"`
	Nodes      []NodeRef   `json:"nodes"`
	RootCauses []RootCause `json:"rootCauses"`
	MergedInto string      `json:"mergedInto,omitempty"`
}

// Change is sent to subscribers when an anomaly or incident changes state.
type Change struct {
	Action   string    `json:"action"` // fired, updated, resolved
	Anomaly  *Anomaly  `json:"anomaly,omitempty"`
	Incident *Incident `json:"incident,omitempty"`
}

// Filter selects anomalies; zero fields match all.
type Filter struct {
	State     string    // firing, resolved
	Type      string    // one of the Type constants
	Namespace string    // either end in this namespace
	Node      string    // node ID or name on either end
	Since     time.Time // updated at or after
	Limit     int
}

func stableID(prefix, key string, t time.Time) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	fmt.Fprintf(h, "|%d", t.UnixNano())
	return fmt.Sprintf("%s-%016x", prefix, h.Sum64())
}

func severityRank(s string) int {
	switch s {
	case SeverityCritical:
		return 2
	case SeverityWarning:
		return 1
	}
	return 0
}

// SeverityAtLeast reports whether s is at least min (empty min = warning).
func SeverityAtLeast(s, min string) bool {
	if min == "" {
		min = SeverityWarning
	}
	return severityRank(s) >= severityRank(min)
}

func (a *Anomaly) clone() *Anomaly {
	c := *a
	c.Evidence.Series = append([]Point(nil), a.Evidence.Series...)
	c.Evidence.Notes = append([]string(nil), a.Evidence.Notes...)
	if a.ResolvedAt != nil {
		t := *a.ResolvedAt
		c.ResolvedAt = &t
	}
	return &c
}

func (in *Incident) clone() *Incident {
	c := *in
	c.Anomalies = append([]string(nil), in.Anomalies...)
	c.Nodes = append([]NodeRef(nil), in.Nodes...)
	c.RootCauses = append([]RootCause(nil), in.RootCauses...)
	if in.ResolvedAt != nil {
		t := *in.ResolvedAt
		c.ResolvedAt = &t
	}
	return &c
}
