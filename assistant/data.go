package assistant

import (
	"math"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// GraphSource is what the assistant reads the graph from (*graph.Graph).
type GraphSource interface {
	Snapshot(graph.Query) (*graph.Snapshot, error)
	History(f graph.EdgeFilter, window time.Duration, at time.Time) (time.Time, []graph.Stats, error)
	Namespaces() []string
	Resolution() time.Duration
	Window() time.Duration
	Now() time.Time
}

// Detector is what the assistant reads anomalies and incidents from (*detect.Engine).
type Detector interface {
	Anomalies(detect.Filter) []detect.Anomaly
	Incidents(detect.IncidentFilter) []detect.Incident
	Config() detect.Config
}

var (
	_ GraphSource = (*graph.Graph)(nil)
	_ Detector    = (*detect.Engine)(nil)
)

// Link points at an element the dashboard can open.
type Link struct {
	Kind  string `json:"kind"` // node, edge, incident, anomaly, proposal
	ID    string `json:"id"`
	Label string `json:"label,omitempty"`
	View  string `json:"view,omitempty"` // graph view of node and edge IDs
}

// edgeID matches web.EdgeID (kept in sync by a test) so links open the edge.
func edgeID(src, dst graph.Node, p graph.Protocol) string {
	return src.ID() + ">" + dst.ID() + ">" + p.String()
}

// Summary is the plain figures of one set of statistics.
type Summary struct {
	Requests      uint64            `json:"requests"`
	RPS           float64           `json:"rps"`
	Errors        uint64            `json:"errors"`
	ErrorRatio    float64           `json:"errorRatio"`
	P50           float64           `json:"p50Ms"`
	P95           float64           `json:"p95Ms"`
	P99           float64           `json:"p99Ms"`
	MTLSShare     float64           `json:"mtlsShare"` // -1 unknown
	Bytes         uint64            `json:"bytes"`
	ConnOpened    uint64            `json:"connOpened,omitempty"`
	ErrorsByClass map[string]uint64 `json:"errorsByClass,omitempty"`
	Flags         map[string]uint64 `json:"responseFlags,omitempty"`
}

func round(v float64, d int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow(10, float64(d))
	return math.Round(v*p) / p
}

func summarize(s *graph.Stats, seconds float64) Summary {
	out := Summary{
		Requests: s.Requests, Errors: s.ErrorTotal(), ErrorRatio: round(s.ErrorRatio(), 4),
		MTLSShare: round(s.MTLSShare(), 3), Bytes: s.RequestBytes + s.ResponseBytes, ConnOpened: s.ConnOpened,
	}
	if seconds > 0 {
		out.RPS = round(float64(s.Requests)/seconds, 2)
	}
	if s.Latency.Count() > 0 {
		out.P50, out.P95, out.P99 = round(s.Latency.Quantile(0.5), 1), round(s.Latency.Quantile(0.95), 1), round(s.Latency.Quantile(0.99), 1)
	}
	for c := graph.ErrorClass(0); c < graph.NumErrorClasses; c++ {
		if v := s.Errors[c]; v > 0 {
			if out.ErrorsByClass == nil {
				out.ErrorsByClass = map[string]uint64{}
			}
			out.ErrorsByClass[c.String()] = v
		}
	}
	if len(s.Flags) > 0 {
		out.Flags = map[string]uint64{}
		for k, v := range s.Flags {
			out.Flags[k] = v
		}
	}
	return out
}

// cleanName bounds and sanitises an identifier from the mesh before it is
// shown or sent anywhere: it is data, so control characters and length that
// could smuggle formatting or instructions are cut.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '`' {
			return -1
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// svcName is the name a person uses for a node in the app view.
func svcName(n graph.Node) string { return cleanName(n.Label(graph.ViewApp)) }

// normalize folds a name or question fragment for matching.
func normalize(s string) string {
	s = strings.ToLower(s)
	s = strings.TrimSuffix(s, ".svc.cluster.local")
	var b strings.Builder
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// resolver maps what people type to the services of the graph.
type resolver struct {
	nodes []graph.Node // app view
	norm  []string
}

func newResolver(snap *graph.Snapshot) *resolver {
	r := &resolver{}
	for _, n := range snap.Nodes {
		if n.Node.Kind == graph.KindUnknown {
			continue
		}
		r.nodes = append(r.nodes, n.Node)
		r.norm = append(r.norm, normalize(n.Node.Label(graph.ViewApp)))
	}
	return r
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// resolve finds the one service a name means: exact, then without a version
// or namespace suffix, then a unique prefix, then a close spelling.
func (r *resolver) resolve(name string) (graph.Node, bool) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return graph.Node{}, false
	}
	cands := []string{normalize(name)}
	if i := strings.IndexByte(name, '.'); i > 0 {
		cands = append(cands, normalize(name[:i])) // host or name.namespace
	}
	if i := strings.LastIndex(name, "-v"); i > 0 {
		cands = append(cands, normalize(name[:i])) // workload reviews-v2
	}
	for _, c := range cands {
		if i := slices.Index(r.norm, c); i >= 0 {
			return r.nodes[i], true
		}
	}
	c := cands[0]
	if len(c) >= 3 {
		hit := -1
		for i, n := range r.norm {
			if strings.HasPrefix(n, c) {
				if hit >= 0 {
					hit = -2
					break
				}
				hit = i
			}
		}
		if hit >= 0 {
			return r.nodes[hit], true
		}
	}
	if len(c) >= 5 {
		best, bestD := -1, 3
		for i, n := range r.norm {
			if d := levenshtein(c, n); d < bestD {
				best, bestD = i, d
			} else if d == bestD {
				best = -1
			}
		}
		if best >= 0 && bestD <= 2 {
			return r.nodes[best], true
		}
	}
	return graph.Node{}, false
}

// mentioned finds services named in free text, longest names first so
// "redis-cart" is not read as "cart". Misspelt words are tried too.
func (r *resolver) mentioned(text string) []graph.Node {
	lower := strings.ToLower(text)
	compact := normalize(lower)
	type cand struct {
		i   int
		pos int
	}
	order := make([]int, len(r.nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return len(r.norm[b]) - len(r.norm[a]) })
	var found []cand
	for _, i := range order {
		n := r.norm[i]
		if len(n) < 3 {
			continue
		}
		if p := strings.Index(compact, n); p >= 0 {
			found = append(found, cand{i, p})
			compact = compact[:p] + strings.Repeat("#", len(n)) + compact[p+len(n):]
		}
	}
	if len(found) == 0 {
		words := strings.FieldsFunc(lower, func(r rune) bool { return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-') })
		for wi, w := range words {
			if len(w) < 4 || stopWord[w] {
				continue
			}
			n, ok := r.resolve(w)
			// A bare prefix must cover a good part of the name: "payment" is
			// paymentservice, "ignore" is not a 50-letter service name.
			if ok && !strings.Contains(normalize(w), normalize(n.Label(graph.ViewApp))) &&
				levenshtein(normalize(w), normalize(n.Label(graph.ViewApp))) > 2 &&
				len(normalize(w))*5 < 2*len(normalize(n.Label(graph.ViewApp))) {
				ok = false
			}
			if ok {
				found = append(found, cand{slices.Index(r.nodes, n), 1000 + wi})
			}
		}
	}
	slices.SortFunc(found, func(a, b cand) int { return a.pos - b.pos })
	var out []graph.Node
	for _, f := range found {
		if !slices.Contains(out, r.nodes[f.i]) {
			out = append(out, r.nodes[f.i])
		}
	}
	return out
}

// stopWord are question words that must never be read as a misspelt service.
var stopWord = map[string]bool{
	"which": true, "what": true, "service": true, "services": true, "calls": true, "call": true, "slow": true,
	"slowest": true, "failing": true, "errors": true, "error": true, "traffic": true, "changed": true, "since": true,
	"encrypted": true, "unusual": true, "right": true, "most": true, "does": true, "there": true, "anything": true,
	"about": true, "with": true, "from": true, "this": true, "that": true, "their": true, "latency": true, "policy": true,
	"propose": true, "timeout": true, "retries": true, "rollback": true, "canary": true, "minutes": true, "hours": true,
	"ago": true, "show": true, "have": true, "many": true, "much": true, "into": true, "mtls": true, "plaintext": true,
	"fix": true, "approve": true, "incident": true, "incidents": true, "happening": true, "wrong": true, "talks": true,
	"requests": true, "request": true, "callers": true, "depend": true, "depends": true, "health": true, "healthy": true,
}

// totals is each node's inbound and outbound statistics. The graph already
// counts the failures only callers saw (connect failures never reach the
// callee's proxy), in edges and in node totals alike.
func totals(s *graph.Snapshot) map[graph.Node]*[2]graph.Stats {
	out := make(map[graph.Node]*[2]graph.Stats, len(s.Nodes))
	for i := range s.Nodes {
		n := &s.Nodes[i]
		out[n.Node] = &[2]graph.Stats{n.In, n.Out}
	}
	return out
}
