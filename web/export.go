package web

import "github.com/meshlens/meshlens/graph"

// GraphJSONOf is the GET /api/v1/graph body for a snapshot, for other
// packages serving graphs of their own (storage's replay and diff).
func GraphJSONOf(s *graph.Snapshot, h Health) *GraphJSON { return toGraphJSON(s, h) }

// StatsJSONOf is the wire form of stats over a window of seconds.
func StatsJSONOf(s *graph.Stats, seconds float64) StatsJSON { return statsJSON(s, seconds) }
