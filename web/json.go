package web

import (
	"math"
	"strconv"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Health thresholds, as Kiali's defaults: >= 0.1% errors degraded, >= 10% failing.
type Health struct {
	Degraded float64 `json:"degraded"`
	Failing  float64 `json:"failing"`
}

// DefaultHealth is Kiali's default.
var DefaultHealth = Health{Degraded: 0.001, Failing: 0.1}

func (h Health) of(s *graph.Stats) string {
	if s.Requests == 0 {
		if s.ConnOpened+s.RequestBytes+s.ResponseBytes == 0 {
			return "idle"
		}
		return "healthy"
	}
	r := s.ErrorRatio()
	switch {
	case r >= h.Failing:
		return "failing"
	case r >= h.Degraded:
		return "degraded"
	}
	return "healthy"
}

// StatsJSON is the wire form of graph.Stats.
type StatsJSON struct {
	Requests      uint64            `json:"requests"`
	RPS           float64           `json:"rps"`
	Errors        uint64            `json:"errors"`
	ErrorRatio    float64           `json:"errorRatio"`
	ErrorsByClass map[string]uint64 `json:"errorsByClass,omitempty"`
	Codes         map[string]uint64 `json:"codes,omitempty"`
	GRPCCodes     map[string]uint64 `json:"grpcCodes,omitempty"`
	Flags         map[string]uint64 `json:"flags,omitempty"`
	P50           float64           `json:"p50"`
	P95           float64           `json:"p95"`
	P99           float64           `json:"p99"`
	Mean          float64           `json:"mean"`
	MTLSShare     float64           `json:"mtlsShare"`
	RequestBytes  uint64            `json:"requestBytes"`
	ResponseBytes uint64            `json:"responseBytes"`
	ConnOpened    uint64            `json:"connOpened"`
	L4Only        bool              `json:"l4Only,omitempty"`
	Reporters     []string          `json:"reporters,omitempty"`
}

func round(v float64, digits int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func statsJSON(s *graph.Stats, seconds float64) StatsJSON {
	out := StatsJSON{
		Requests:      s.Requests,
		Errors:        s.ErrorTotal(),
		ErrorRatio:    round(s.ErrorRatio(), 6),
		P50:           round(s.Latency.Quantile(0.5), 3),
		P95:           round(s.Latency.Quantile(0.95), 3),
		P99:           round(s.Latency.Quantile(0.99), 3),
		Mean:          round(s.Latency.Mean(), 3),
		MTLSShare:     round(s.MTLSShare(), 4),
		RequestBytes:  s.RequestBytes,
		ResponseBytes: s.ResponseBytes,
		ConnOpened:    s.ConnOpened,
		L4Only:        s.L4Only,
		Reporters:     s.ReporterNames(),
	}
	if seconds > 0 {
		out.RPS = round(float64(s.Requests)/seconds, 4)
	}
	for c := graph.ErrorClass(0); c < graph.NumErrorClasses; c++ {
		if v := s.Errors[c]; v > 0 {
			if out.ErrorsByClass == nil {
				out.ErrorsByClass = map[string]uint64{}
			}
			out.ErrorsByClass[c.String()] = v
		}
	}
	out.Codes = codesJSON(s.Codes)
	out.GRPCCodes = codesJSON(s.GRPCCodes)
	if len(s.Flags) > 0 {
		out.Flags = s.Flags
	}
	return out
}

func codesJSON(m map[uint16]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[strconv.Itoa(int(k))] = v
	}
	return out
}

// NodeData is a Cytoscape node's data.
type NodeData struct {
	ID        string    `json:"id"`
	Label     string    `json:"label"`
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Cluster   string    `json:"cluster,omitempty"`
	Workload  string    `json:"workload,omitempty"`
	App       string    `json:"app,omitempty"`
	Version   string    `json:"version,omitempty"`
	Service   string    `json:"service,omitempty"`
	Signals   []string  `json:"signals"`
	Health    string    `json:"health"`
	Inbound   StatsJSON `json:"inbound"`
	Outbound  StatsJSON `json:"outbound"`
}

// EdgeData is a Cytoscape edge's data.
type EdgeData struct {
	ID             string     `json:"id"`
	Source         string     `json:"source"`
	Target         string     `json:"target"`
	Protocol       string     `json:"protocol"`
	Signals        []string   `json:"signals"`
	Principals     []string   `json:"principals,omitempty"`
	Health         string     `json:"health"`
	Stats          StatsJSON  `json:"stats"`
	SourceReported *StatsJSON `json:"sourceReported"`
	FirstSeen      time.Time  `json:"firstSeen"`
	LastSeen       time.Time  `json:"lastSeen"`
	// Coverage says when only one signal saw the edge: "metricsOnly" hints at an
	// uninstrumented service or broken context propagation, "tracesOnly" at a
	// workload outside the mesh.
	Coverage string `json:"coverage,omitempty"`
}

type nodeEl struct {
	Data NodeData `json:"data"`
}
type edgeEl struct {
	Data EdgeData `json:"data"`
}

// Elements is the Cytoscape elements object.
type Elements struct {
	Nodes []nodeEl `json:"nodes"`
	Edges []edgeEl `json:"edges"`
}

// GraphJSON is the response of GET /api/v1/graph.
type GraphJSON struct {
	Timestamp  time.Time `json:"timestamp"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	View       string    `json:"view"`
	Namespaces []string  `json:"namespaces,omitempty"`
	Elements   Elements  `json:"elements"`
}

// EdgeID is the stable id of an edge in a view.
func EdgeID(src, dst graph.Node, p graph.Protocol) string {
	return edgeIDOf(src.ID(), dst.ID(), p)
}

func edgeIDOf(srcID, dstID string, p graph.Protocol) string {
	return srcID + ">" + dstID + ">" + p.String()
}

func signalNames(s graph.Signal) []string {
	n := s.Names()
	if n == nil {
		return []string{}
	}
	return n
}

func toGraphJSON(s *graph.Snapshot, h Health) *GraphJSON {
	sec := s.Seconds()
	out := &GraphJSON{Timestamp: s.End, Start: s.Start, End: s.End, View: s.View.String(), Namespaces: s.Namespaces}
	out.Elements.Nodes = make([]nodeEl, 0, len(s.Nodes))
	out.Elements.Edges = make([]edgeEl, 0, len(s.Edges))
	// Node IDs are built once; edges look theirs up.
	ids := make(map[graph.Node]string, len(s.Nodes))
	for i := range s.Nodes {
		n := &s.Nodes[i]
		ids[n.Node] = n.Node.ID()
		d := NodeData{
			ID: ids[n.Node], Label: n.Node.Label(s.View), Kind: n.Node.Kind.String(),
			Namespace: n.Node.Namespace, Cluster: n.Node.Cluster, Workload: n.Node.Workload,
			App: n.Node.App, Version: n.Node.Version, Service: n.Node.Service,
			Signals: signalNames(n.Signals),
			Inbound: statsJSON(&n.In, sec), Outbound: statsJSON(&n.Out, sec),
		}
		// A node's health is that of the traffic it serves, else of what it sends.
		if n.In.Requests > 0 || n.In.ConnOpened > 0 {
			d.Health = h.of(&n.In)
		} else {
			d.Health = h.of(&n.Out)
		}
		out.Elements.Nodes = append(out.Elements.Nodes, nodeEl{d})
	}
	// Coverage is only news when both signals are being collected.
	var all graph.Signal
	for i := range s.Edges {
		all |= s.Edges[i].Stats.Signals
	}
	both := all == graph.SignalMetrics|graph.SignalTraces
	for i := range s.Edges {
		e := &s.Edges[i]
		d := EdgeData{
			ID: edgeIDOf(ids[e.Source], ids[e.Target], e.Protocol), Source: ids[e.Source], Target: ids[e.Target],
			Protocol: e.Protocol.String(), Signals: signalNames(e.Stats.Signals), Principals: e.Principals,
			Health: h.of(&e.Stats), Stats: statsJSON(&e.Stats, sec), FirstSeen: e.FirstSeen, LastSeen: e.LastSeen,
		}
		if e.SourceReported != nil {
			sr := statsJSON(e.SourceReported, sec)
			d.SourceReported = &sr
		}
		switch {
		case !both:
		case e.Stats.Signals == graph.SignalMetrics:
			d.Coverage = "metricsOnly"
		case e.Stats.Signals == graph.SignalTraces:
			d.Coverage = "tracesOnly"
		}
		out.Elements.Edges = append(out.Elements.Edges, edgeEl{d})
	}
	return out
}
