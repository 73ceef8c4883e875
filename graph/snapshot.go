package graph

import (
	"time"
)

// Query selects a snapshot of the graph.
type Query struct {
	View       View
	Namespaces []string      // empty: all; an edge is kept when either end is in one of them
	Window     time.Duration // default 5m; rounded up to whole buckets
	At         time.Time     // end of the window; zero: the latest closed bucket
}

// Stats are the aggregated statistics of an edge (or a node's traffic) over a window.
type Stats struct {
	Requests      uint64            `json:"requests"`
	Errors        ErrorCounts       `json:"-"`
	RequestBytes  uint64            `json:"requestBytes"`
	ResponseBytes uint64            `json:"responseBytes"`
	ConnOpened    uint64            `json:"connOpened"`
	ConnClosed    uint64            `json:"connClosed"`
	MTLSUnits     uint64            `json:"-"` // requests (or connections) seen under mTLS
	PlainUnits    uint64            `json:"-"` // requests (or connections) seen in plaintext
	Latency       Sketch            `json:"-"`
	Flags         map[string]uint64 `json:"-"` // response flags seen on failed requests, with counts
	Codes         map[uint16]uint64 `json:"-"` // HTTP codes of failed requests
	GRPCCodes     map[uint16]uint64 `json:"-"` // gRPC status of failed requests
	Reporters     uint16            `json:"-"` // bit per Reporter
	Signals       Signal            `json:"-"`
	L4Only        bool              `json:"-"`
}

// ErrorTotal is the number of failed requests of any class.
func (s *Stats) ErrorTotal() uint64 { return s.Errors.Total() }

// ErrorRatio is failed/total requests, 0 without requests.
func (s *Stats) ErrorRatio() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors.Total()) / float64(s.Requests)
}

// MTLSShare is the share of traffic seen under mTLS, or -1 when unknown.
func (s *Stats) MTLSShare() float64 {
	t := s.MTLSUnits + s.PlainUnits
	if t == 0 {
		return -1
	}
	return float64(s.MTLSUnits) / float64(t)
}

// ReporterNames lists the reporters that saw the traffic.
func (s *Stats) ReporterNames() []string {
	var out []string
	for r := Reporter(0); r < numReporters; r++ {
		if s.Reporters&(1<<r) != 0 {
			out = append(out, r.String())
		}
	}
	return out
}

// Add merges o into s.
func (s *Stats) Add(o *Stats) {
	s.addCounters(o)
	s.Flags = mergeCounts(s.Flags, o.Flags)
	s.Codes = mergeCounts(s.Codes, o.Codes)
	s.GRPCCodes = mergeCounts(s.GRPCCodes, o.GRPCCodes)
}

// addCounters merges all but the evidence maps of o into s.
func (s *Stats) addCounters(o *Stats) {
	s.Requests += o.Requests
	for i := range s.Errors {
		s.Errors[i] += o.Errors[i]
	}
	s.RequestBytes += o.RequestBytes
	s.ResponseBytes += o.ResponseBytes
	s.ConnOpened += o.ConnOpened
	s.ConnClosed += o.ConnClosed
	s.MTLSUnits += o.MTLSUnits
	s.PlainUnits += o.PlainUnits
	s.Latency.Merge(&o.Latency)
	s.Reporters |= o.Reporters
	s.Signals |= o.Signals
	s.L4Only = s.L4Only || o.L4Only
}

func mergeCounts[K comparable](dst, src map[K]uint64) map[K]uint64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[K]uint64, len(src))
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// EdgeSnapshot is one directed edge of a snapshot, in the snapshot's view.
type EdgeSnapshot struct {
	Source, Target Node
	Protocol       Protocol
	Stats          Stats
	Principals     []string // source and destination principals seen (bounded)
	// SourceReported holds what the caller side reported when the destination
	// side also reported (Istio reporter=source next to reporter=destination):
	// kept apart so the two views of the same traffic are never added up.
	SourceReported *Stats
	FirstSeen      time.Time
	LastSeen       time.Time
}

// NodeSnapshot is one node of a snapshot with its inbound and outbound totals.
type NodeSnapshot struct {
	Node      Node
	In, Out   Stats
	Signals   Signal
	FirstSeen time.Time
}

// Snapshot is a consistent picture of the graph over one window.
type Snapshot struct {
	View       View
	Namespaces []string
	Start, End time.Time // [Start, End)
	Resolution time.Duration
	Nodes      []NodeSnapshot // sorted by Node.ID()
	Edges      []EdgeSnapshot // sorted by source ID, target ID, protocol
}

// Seconds is the length of the snapshot's window in seconds.
func (s *Snapshot) Seconds() float64 { return s.End.Sub(s.Start).Seconds() }
