package assistant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/assistant/policy"
	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// ErrBadArgs wraps every problem with a tool call's arguments.
var ErrBadArgs = errors.New("bad tool arguments")

// Tool is one function over meshlens' data, offered to both engines.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"parameters"` // JSON schema of the arguments
	run         func(ctx context.Context, c *call, args json.RawMessage) (*Result, error)
}

// Result is what a tool returns: data for a model, a plain-text rendering for
// people, and links to the graph elements it is about.
type Result struct {
	Text     string
	Data     any
	Links    []Link
	Proposal *Proposal
	Subject  string // service the result is about, for follow-up questions
}

// ToolCall records one call made while answering.
type ToolCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Result    string          `json:"result,omitempty"` // plain-text rendering
	Error     string          `json:"error,omitempty"`
}

// call is the state of one question shared by its tool calls.
type call struct {
	a         *Assistant
	sessionID string
	engine    string
	calls     []ToolCall
	links     []Link
	proposals []Proposal
	res       *resolver
}

const (
	maxList        = 15
	defaultWindow  = 5 * time.Minute
	schemaService  = `"service":{"type":"string","description":"service (app) name as shown in the graph, e.g. ratings"}`
	schemaWindow   = `"window":{"type":"string","description":"look-back window as a Go duration, e.g. 5m (default 5m)"}`
	schemaNS       = `"namespace":{"type":"string","description":"namespace filter (optional)"}`
	schemaLimit    = `"limit":{"type":"integer","minimum":1,"maximum":50}`
	proposeSchema1 = `{"type":"object","additionalProperties":false,"required":["kind","service","rationale"],"properties":{` +
		`"kind":{"type":"string","enum":["VirtualService","DestinationRule","AuthorizationPolicy","PeerAuthentication"]},` +
		`"service":{"type":"string","description":"target service (app) name"},"namespace":{"type":"string"},` +
		`"timeout":{"type":"string","description":"VirtualService request timeout, e.g. 2s"},` +
		`"retries":{"type":"object","additionalProperties":false,"properties":{"attempts":{"type":"integer","minimum":0,"maximum":10},"perTryTimeout":{"type":"string"},"retryOn":{"type":"array","items":{"type":"string"}}}},` +
		`"weights":{"type":"array","description":"VirtualService traffic split by version (subset); sums to 100","items":{"type":"object","additionalProperties":false,"required":["version","weight"],"properties":{"version":{"type":"string"},"weight":{"type":"integer","minimum":0,"maximum":100}}}},` +
		`"outlierDetection":{"type":"object","additionalProperties":false,"properties":{"consecutive5xxErrors":{"type":"integer"},"consecutiveGatewayErrors":{"type":"integer"},"interval":{"type":"string"},"baseEjectionTime":{"type":"string"},"maxEjectionPercent":{"type":"integer"}}},` +
		`"connectionPool":{"type":"object","additionalProperties":false,"properties":{"maxConnections":{"type":"integer"},"connectTimeout":{"type":"string"},"http1MaxPendingRequests":{"type":"integer"},"http2MaxRequests":{"type":"integer"},"maxRetries":{"type":"integer"}}},` +
		`"action":{"type":"string","enum":["ALLOW","DENY"],"description":"AuthorizationPolicy: DENY the principals, or ALLOW only them"},` +
		`"principals":{"type":"array","items":{"type":"string"},"description":"caller principals observed in the graph"},` +
		`"mode":{"type":"string","enum":["STRICT"]},` +
		`"rationale":{"type":"string","description":"why, citing the figures"},"evidence":{"type":"array","items":{"type":"string"}}}}`
)

func obj(props string, required ...string) json.RawMessage {
	req := ""
	if len(required) > 0 {
		req = `,"required":["` + strings.Join(required, `","`) + `"]`
	}
	return json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{` + props + `}` + req + `}`)
}

// Tools lists the tools both engines use. None of them can approve anything.
func (a *Assistant) Tools() []Tool {
	return []Tool{
		{"graph_overview", "Overview of the service graph: services, edges, the busiest and the unhealthy ones.",
			obj(schemaNS + "," + schemaWindow), toolOverview},
		{"neighbours", "Callers and callees of a service with request rate, error ratio, latency and mTLS share per edge.",
			obj(schemaService+`,"direction":{"type":"string","enum":["callers","callees","both"]},`+schemaWindow, "service"), toolNeighbours},
		{"service_stats", "Inbound and outbound statistics of a service over a window (rate, errors, p50/p95/p99, mTLS), per version.",
			obj(schemaService+`,"at":{"type":"string","description":"end of the window: RFC3339 or a duration ago like 10m (default now)"},`+schemaWindow, "service"), toolServiceStats},
		{"edge_stats", "Statistics of the calls from one service to another over a window.",
			obj(`"source":{"type":"string"},"target":{"type":"string"},`+schemaWindow, "source", "target"), toolEdgeStats},
		{"anomalies", "Anomalies detected (firing by default), optionally for one service or of one type.",
			obj(schemaService + `,"type":{"type":"string","enum":["latency","errors","traffic","unexpected_edge","policy_violation","mtls_downgrade","bad_version"]},"state":{"type":"string","enum":["firing","resolved","any"]},` + schemaLimit), toolAnomalies},
		{"incidents", "Incidents with their ranked root causes and evidence.",
			obj(`"state":{"type":"string","enum":["firing","resolved","any"]},` + schemaLimit), toolIncidents},
		{"what_changed", "What changed between a past time and now: new and vanished edges, rate, error and latency shifts.",
			obj(`"since":{"type":"string","description":"RFC3339 time or a duration ago, e.g. 10m"},`+schemaService, "since"), toolWhatChanged},
		{"top_talkers", "Edges carrying the most requests or bytes.",
			obj(`"by":{"type":"string","enum":["requests","bytes"]},` + schemaLimit + "," + schemaWindow), toolTopTalkers},
		{"plaintext_edges", "Edges with traffic not protected by mTLS, optionally into one service.",
			obj(schemaService + "," + schemaWindow), toolPlaintext},
		{"history", "Per-bucket history of one metric of a service's inbound traffic (or of one edge with target).",
			obj(schemaService+`,"target":{"type":"string","description":"callee, to get the edge service->target"},"metric":{"type":"string","enum":["rps","errorRatio","p50","p95","p99"]},`+schemaWindow, "service", "metric"), toolHistory},
		{"declared_policies", "Declared communication policies (who may call whom) meshlens checks traffic against.",
			obj(""), toolPolicies},
		{"propose_policy", "Propose an Istio resource from structured parameters. It only creates a PENDING proposal that a human approver must review; nothing is applied.",
			json.RawMessage(proposeSchema1), toolPropose},
	}
}

func (a *Assistant) tool(name string) (Tool, bool) {
	for _, t := range a.Tools() {
		if t.Name == name {
			return t, true
		}
	}
	return Tool{}, false
}

// invoke runs a tool and records the call.
func (c *call) invoke(ctx context.Context, name string, args any) (*Result, error) {
	var raw json.RawMessage
	switch v := args.(type) {
	case json.RawMessage:
		raw = v
	case string:
		raw = json.RawMessage(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s arguments: %w", name, err)
		}
		raw = b
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	tc := ToolCall{Name: name, Arguments: raw}
	t, ok := c.a.tool(name)
	var res *Result
	var err error
	if !ok {
		err = fmt.Errorf("%w: no tool %q", ErrBadArgs, name)
	} else if !json.Valid(raw) {
		err = fmt.Errorf("%w: %s: arguments are not JSON", ErrBadArgs, name)
	} else {
		res, err = t.run(ctx, c, raw)
	}
	if err != nil {
		tc.Error = err.Error()
	} else {
		tc.Result = res.Text
		c.links = appendLinks(c.links, res.Links...)
		if res.Proposal != nil {
			c.proposals = append(c.proposals, *res.Proposal)
		}
	}
	c.calls = append(c.calls, tc)
	return res, err
}

func appendLinks(dst []Link, ls ...Link) []Link {
	for _, l := range ls {
		if !slices.Contains(dst, l) && len(dst) < 40 {
			dst = append(dst, l)
		}
	}
	return dst
}

func decode(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadArgs, err)
	}
	return nil
}

func (c *call) window(s string) (time.Duration, error) {
	if s == "" {
		return min(defaultWindow, c.a.g.Window()), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: window %q: want a duration like 5m", ErrBadArgs, s)
	}
	return min(d, c.a.g.Window()), nil
}

// timeArg reads an RFC3339 time or a duration before now.
func (c *call) timeArg(field, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimSpace(s), " ago"))
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%w: %s %q: want RFC3339 or a duration ago like 10m", ErrBadArgs, field, s)
	}
	return c.a.g.Now().Add(-d), nil
}

func (c *call) snap(view graph.View, w time.Duration, at time.Time) (*graph.Snapshot, error) {
	s, err := c.a.g.Snapshot(graph.Query{View: view, Window: w, At: at})
	if err != nil {
		return nil, fmt.Errorf("graph snapshot (%s, %s): %w", view, w, err)
	}
	return s, nil
}

func (c *call) resolver() (*resolver, error) {
	if c.res == nil {
		s, err := c.snap(graph.ViewApp, c.a.g.Window(), time.Time{})
		if err != nil {
			return nil, err
		}
		c.res = newResolver(s)
	}
	return c.res, nil
}

func (c *call) service(name string) (graph.Node, error) {
	r, err := c.resolver()
	if err != nil {
		return graph.Node{}, err
	}
	n, ok := r.resolve(name)
	if !ok {
		names := make([]string, 0, len(r.nodes))
		for _, n := range r.nodes {
			names = append(names, svcName(n))
		}
		slices.Sort(names)
		if len(names) > 30 {
			names = append(names[:30], "…")
		}
		return graph.Node{}, fmt.Errorf("%w: no service %q in the graph (known: %s)", ErrBadArgs, cleanName(name), strings.Join(names, ", "))
	}
	return n, nil
}

func nodeLink(n graph.Node) Link {
	return Link{Kind: "node", ID: n.ID(), Label: svcName(n), View: graph.ViewApp.String()}
}

func edgeLink(e *graph.EdgeSnapshot) Link {
	return Link{Kind: "edge", ID: edgeID(e.Source, e.Target, e.Protocol), Label: svcName(e.Source) + " -> " + svcName(e.Target), View: graph.ViewApp.String()}
}

// ---- graph_overview

// ServiceFigures is one service's inbound figures.
type ServiceFigures struct {
	Name      string  `json:"name"`
	Namespace string  `json:"namespace,omitempty"`
	Kind      string  `json:"kind"`
	Inbound   Summary `json:"inbound"`
}

// OverviewData is graph_overview's result.
type OverviewData struct {
	Window     string           `json:"window"`
	Services   int              `json:"services"`
	Edges      int              `json:"edges"`
	Namespaces []string         `json:"namespaces"`
	Busiest    []ServiceFigures `json:"busiest"`
	Unhealthy  []ServiceFigures `json:"unhealthy"` // error ratio >= 1%
}

func toolOverview(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Namespace, Window string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	w, err := c.window(args.Window)
	if err != nil {
		return nil, err
	}
	q := graph.Query{View: graph.ViewApp, Window: w}
	if args.Namespace != "" {
		q.Namespaces = []string{args.Namespace}
	}
	s, err := c.a.g.Snapshot(q)
	if err != nil {
		return nil, fmt.Errorf("graph snapshot: %w", err)
	}
	d := OverviewData{Window: w.String(), Services: len(s.Nodes), Edges: len(s.Edges), Namespaces: c.a.g.Namespaces()}
	figs := make([]ServiceFigures, 0, len(s.Nodes))
	tot := totals(s)
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Node.Kind == graph.KindUnknown {
			continue
		}
		figs = append(figs, ServiceFigures{Name: svcName(n.Node), Namespace: n.Node.Namespace, Kind: n.Node.Kind.String(), Inbound: summarize(&tot[n.Node][0], s.Seconds())})
	}
	slices.SortFunc(figs, func(a, b ServiceFigures) int { return cmpDesc(a.Inbound.RPS, b.Inbound.RPS, a.Name, b.Name) })
	d.Busiest = figs[:min(len(figs), 5)]
	for _, f := range figs {
		if f.Inbound.ErrorRatio >= 0.01 && f.Inbound.Requests > 0 {
			d.Unhealthy = append(d.Unhealthy, f)
		}
	}
	slices.SortFunc(d.Unhealthy, func(a, b ServiceFigures) int {
		return cmpDesc(a.Inbound.ErrorRatio, b.Inbound.ErrorRatio, a.Name, b.Name)
	})
	d.Unhealthy = d.Unhealthy[:min(len(d.Unhealthy), maxList)]
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d services and %d edges over the last %s.", d.Services, d.Edges, d.Window)
	if len(d.Busiest) > 0 {
		fmt.Fprintf(&sb, " Busiest: %s.", joinFigs(d.Busiest, func(f ServiceFigures) string { return fmt.Sprintf("%s %.1f req/s", f.Name, f.Inbound.RPS) }))
	}
	if len(d.Unhealthy) > 0 {
		fmt.Fprintf(&sb, " Unhealthy: %s.", joinFigs(d.Unhealthy, func(f ServiceFigures) string { return fmt.Sprintf("%s %s errors", f.Name, pct(f.Inbound.ErrorRatio)) }))
	}
	return &Result{Text: sb.String(), Data: d}, nil
}

func joinFigs[T any](xs []T, f func(T) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return strings.Join(parts, ", ")
}

func cmpDesc(a, b float64, an, bn string) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return strings.Compare(an, bn)
}

func pct(r float64) string {
	switch {
	case r == 0:
		return "0%"
	case r < 0.001:
		return fmt.Sprintf("%.3f%%", r*100)
	case r < 0.1:
		return fmt.Sprintf("%.2f%%", r*100)
	}
	return fmt.Sprintf("%.1f%%", r*100)
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	if v >= 10 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

// ---- neighbours

// EdgeFigures is one edge's figures.
type EdgeFigures struct {
	Source   string  `json:"source"`
	Target   string  `json:"target"`
	Protocol string  `json:"protocol"`
	Stats    Summary `json:"stats"`
}

// NeighboursData is neighbours' result.
type NeighboursData struct {
	Service string        `json:"service"`
	Callers []EdgeFigures `json:"callers,omitempty"`
	Callees []EdgeFigures `json:"callees,omitempty"`
}

func edgeFigs(e *graph.EdgeSnapshot, sec float64) EdgeFigures {
	st := e.Stats
	return EdgeFigures{Source: svcName(e.Source), Target: svcName(e.Target), Protocol: e.Protocol.String(), Stats: summarize(&st, sec)}
}

func toolNeighbours(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Service, Direction, Window string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	n, err := c.service(args.Service)
	if err != nil {
		return nil, err
	}
	w, err := c.window(args.Window)
	if err != nil {
		return nil, err
	}
	if args.Direction == "" {
		args.Direction = "both"
	}
	s, err := c.snap(graph.ViewApp, w, time.Time{})
	if err != nil {
		return nil, err
	}
	d := NeighboursData{Service: svcName(n)}
	res := &Result{Subject: svcName(n), Links: []Link{nodeLink(n)}}
	for i := range s.Edges {
		e := &s.Edges[i]
		if e.Target == n && args.Direction != "callees" && len(d.Callers) < maxList {
			d.Callers = append(d.Callers, edgeFigs(e, s.Seconds()))
			res.Links = append(res.Links, edgeLink(e))
		}
		if e.Source == n && args.Direction != "callers" && len(d.Callees) < maxList {
			d.Callees = append(d.Callees, edgeFigs(e, s.Seconds()))
			res.Links = append(res.Links, edgeLink(e))
		}
	}
	var sb strings.Builder
	if args.Direction != "callees" {
		if len(d.Callers) == 0 {
			fmt.Fprintf(&sb, "Nothing called %s in the last %s. ", d.Service, w)
		} else {
			fmt.Fprintf(&sb, "%s is called by %s. ", d.Service, joinFigs(d.Callers, func(e EdgeFigures) string {
				if e.Protocol == "tcp" {
					return fmt.Sprintf("%s (tcp, %.2f conn/s, %.1f KB/s)", e.Source, float64(e.Stats.ConnOpened)/w.Seconds(), float64(e.Stats.Bytes)/w.Seconds()/1024)
				}
				return fmt.Sprintf("%s (%s, %.1f req/s, %s errors)", e.Source, e.Protocol, e.Stats.RPS, pct(e.Stats.ErrorRatio))
			}))
		}
	}
	if args.Direction != "callers" {
		if len(d.Callees) == 0 {
			fmt.Fprintf(&sb, "%s called nothing in the last %s.", d.Service, w)
		} else {
			fmt.Fprintf(&sb, "%s calls %s.", d.Service, joinFigs(d.Callees, func(e EdgeFigures) string {
				if e.Protocol == "tcp" {
					return fmt.Sprintf("%s (tcp, %.2f conn/s, %.1f KB/s)", e.Target, float64(e.Stats.ConnOpened)/w.Seconds(), float64(e.Stats.Bytes)/w.Seconds()/1024)
				}
				return fmt.Sprintf("%s (%s, %.1f req/s, p95 %s)", e.Target, e.Protocol, e.Stats.RPS, ms(e.Stats.P95))
			}))
		}
	}
	res.Text = strings.TrimSpace(sb.String())
	res.Data = d
	return res, nil
}

// ---- service_stats

// VersionFigures is one version's inbound figures.
type VersionFigures struct {
	Version string  `json:"version"`
	Inbound Summary `json:"inbound"`
}

// ServiceData is service_stats' result.
type ServiceData struct {
	Service   string           `json:"service"`
	Namespace string           `json:"namespace,omitempty"`
	Kind      string           `json:"kind"`
	Window    string           `json:"window"`
	At        time.Time        `json:"at"`
	Inbound   Summary          `json:"inbound"`
	Outbound  Summary          `json:"outbound"`
	Versions  []VersionFigures `json:"versions,omitempty"`
}

func (c *call) serviceData(n graph.Node, w time.Duration, at time.Time) (ServiceData, error) {
	d := ServiceData{Service: svcName(n), Namespace: n.Namespace, Kind: n.Kind.String(), Window: w.String()}
	s, err := c.snap(graph.ViewApp, w, at)
	if err != nil {
		return d, err
	}
	d.At = s.End
	if t := totals(s)[n]; t != nil {
		d.Inbound = summarize(&t[0], s.Seconds())
		d.Outbound = summarize(&t[1], s.Seconds())
	}
	vs, err := c.snap(graph.ViewVersionedApp, w, at)
	if err != nil {
		return d, err
	}
	vt := totals(vs)
	for i := range vs.Nodes {
		vn := vs.Nodes[i].Node
		t := vt[vn]
		if t == nil {
			continue
		}
		in := &t[0]
		if vn.App == n.App && vn.Namespace == n.Namespace && vn.Cluster == n.Cluster && vn.Version != "" && in.Requests+in.ConnOpened > 0 {
			d.Versions = append(d.Versions, VersionFigures{Version: cleanName(vn.Version), Inbound: summarize(in, vs.Seconds())})
		}
	}
	if len(d.Versions) < 2 {
		d.Versions = nil // one version says nothing the totals do not
	}
	return d, nil
}

func toolServiceStats(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Service, Window, At string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	n, err := c.service(args.Service)
	if err != nil {
		return nil, err
	}
	w, err := c.window(args.Window)
	if err != nil {
		return nil, err
	}
	var at time.Time
	if args.At != "" {
		if at, err = c.timeArg("at", args.At); err != nil {
			return nil, err
		}
	}
	d, err := c.serviceData(n, w, at)
	if err != nil {
		return nil, err
	}
	in := d.Inbound
	text := fmt.Sprintf("%s over the last %s: %.1f req/s in, %s errors, p50 %s, p95 %s, p99 %s", d.Service, d.Window, in.RPS, pct(in.ErrorRatio), ms(in.P50), ms(in.P95), ms(in.P99))
	if in.MTLSShare >= 0 {
		text += fmt.Sprintf(", %s under mTLS", pct(in.MTLSShare))
	}
	text += "."
	for _, v := range d.Versions {
		text += fmt.Sprintf(" %s: %.1f req/s, %s errors, p95 %s.", v.Version, v.Inbound.RPS, pct(v.Inbound.ErrorRatio), ms(v.Inbound.P95))
	}
	return &Result{Text: text, Data: d, Links: []Link{nodeLink(n)}, Subject: d.Service}, nil
}

// ---- edge_stats

func toolEdgeStats(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Source, Target, Window string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	src, err := c.service(args.Source)
	if err != nil {
		return nil, err
	}
	dst, err := c.service(args.Target)
	if err != nil {
		return nil, err
	}
	w, err := c.window(args.Window)
	if err != nil {
		return nil, err
	}
	s, err := c.snap(graph.ViewApp, w, time.Time{})
	if err != nil {
		return nil, err
	}
	var out []EdgeFigures
	res := &Result{Subject: svcName(dst)}
	for i := range s.Edges {
		e := &s.Edges[i]
		if e.Source == src && e.Target == dst {
			out = append(out, edgeFigs(e, s.Seconds()))
			res.Links = append(res.Links, edgeLink(e))
		}
	}
	if len(out) == 0 {
		res.Text = fmt.Sprintf("No calls from %s to %s in the last %s.", svcName(src), svcName(dst), w)
	} else {
		res.Text = joinFigs(out, func(e EdgeFigures) string {
			return fmt.Sprintf("%s -> %s (%s): %.1f req/s, %s errors, p95 %s", e.Source, e.Target, e.Protocol, e.Stats.RPS, pct(e.Stats.ErrorRatio), ms(e.Stats.P95))
		}) + "."
	}
	res.Data = map[string]any{"window": w.String(), "edges": out}
	return res, nil
}

// ---- anomalies and incidents

// AnomalyData is one anomaly as the tools show it.
type AnomalyData struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Metric     string    `json:"metric"`
	Subject    string    `json:"subject"`
	Services   []string  `json:"services"`
	Severity   string    `json:"severity"`
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
	Observed   float64   `json:"observed"`
	Baseline   float64   `json:"baseline"`
	Unit       string    `json:"unit"`
	Summary    string    `json:"summary"`
	IncidentID string    `json:"incidentId,omitempty"`
	Flags      []string  `json:"responseFlags,omitempty"`
}

func refName(r *detect.NodeRef) string {
	if r == nil {
		return ""
	}
	if r.App != "" {
		return cleanName(r.App)
	}
	return cleanName(r.Name)
}

func subjectString(s detect.Subject) string {
	switch s.Kind {
	case detect.SubjectEdge:
		return refName(s.Source) + " -> " + refName(s.Target)
	case detect.SubjectNodeIn:
		return refName(s.Node) + " (inbound)"
	case detect.SubjectNodeOut:
		return refName(s.Node) + " (outbound)"
	}
	return refName(s.Node)
}

func anomalyData(a *detect.Anomaly) AnomalyData {
	d := AnomalyData{ID: a.ID, Type: a.Type, Metric: a.Metric, Subject: subjectString(a.Subject), Severity: a.Severity,
		State: a.State, Since: a.Since, Observed: round(a.Observed, 4), Baseline: round(a.Baseline, 4), Unit: a.Unit,
		Summary: cleanName(a.Summary), IncidentID: a.IncidentID}
	for _, r := range []*detect.NodeRef{a.Subject.Source, a.Subject.Target, a.Subject.Node} {
		if n := refName(r); n != "" && !slices.Contains(d.Services, n) {
			d.Services = append(d.Services, n)
		}
	}
	for f := range a.Evidence.Flags {
		d.Flags = append(d.Flags, cleanName(f))
	}
	slices.Sort(d.Flags)
	return d
}

// targetOf is the service an anomaly is about: an edge's callee, else its node.
func targetOf(a *detect.Anomaly) string {
	if a.Subject.Kind == detect.SubjectEdge {
		return refName(a.Subject.Target)
	}
	return refName(a.Subject.Node)
}

func (c *call) anomalies(service, typ, state string) []detect.Anomaly {
	if c.a.d == nil {
		return nil
	}
	f := detect.Filter{Type: typ}
	if state != "any" {
		f.State = state
		if f.State == "" {
			f.State = detect.StateFiring
		}
	}
	all := c.a.d.Anomalies(f)
	if service == "" {
		return all
	}
	var out []detect.Anomaly
	for _, a := range all {
		for _, r := range []*detect.NodeRef{a.Subject.Source, a.Subject.Target, a.Subject.Node} {
			if r != nil && (refName(r) == service || r.Name == service) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

func toolAnomalies(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct {
		Service, Type, State string
		Limit                int
	}
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	res := &Result{}
	svc := ""
	if args.Service != "" {
		n, err := c.service(args.Service)
		if err != nil {
			return nil, err
		}
		svc = svcName(n)
		res.Subject = svc
		res.Links = append(res.Links, nodeLink(n))
	}
	if c.a.d == nil {
		res.Text = "Anomaly detection is not running, so there are no anomalies to report."
		res.Data = map[string]any{"anomalies": []AnomalyData{}, "detection": "off"}
		return res, nil
	}
	limit := clampLimit(args.Limit, 10)
	list := c.anomalies(svc, args.Type, args.State)
	out := make([]AnomalyData, 0, min(len(list), limit))
	for i := range list[:min(len(list), limit)] {
		out = append(out, anomalyData(&list[i]))
		res.Links = append(res.Links, Link{Kind: "anomaly", ID: list[i].ID, Label: subjectString(list[i].Subject)})
	}
	if len(out) == 0 {
		res.Text = "No anomalies."
		if args.State == "" || args.State == detect.StateFiring {
			res.Text = "No anomalies are firing."
		}
	} else {
		res.Text = fmt.Sprintf("%d anomalies: %s.", len(list), joinFigs(out, func(a AnomalyData) string { return a.Summary }))
	}
	res.Data = map[string]any{"anomalies": out, "total": len(list)}
	return res, nil
}

func clampLimit(n, def int) int {
	if n <= 0 {
		return def
	}
	return min(n, 50)
}

// RootCauseData is one ranked root-cause candidate.
type RootCauseData struct {
	Service     string  `json:"service"`
	Workload    string  `json:"workload,omitempty"`
	Score       float64 `json:"score"`
	Explained   bool    `json:"explained"`
	Explanation string  `json:"explanation"`
}

// IncidentData is an incident as the tools show it.
type IncidentData struct {
	ID         string          `json:"id"`
	State      string          `json:"state"`
	Severity   string          `json:"severity"`
	Title      string          `json:"title"`
	Start      time.Time       `json:"start"`
	RootCauses []RootCauseData `json:"rootCauses"`
	Anomalies  []AnomalyData   `json:"anomalies"`
}

func (c *call) incidentData(in *detect.Incident) IncidentData {
	d := IncidentData{ID: in.ID, State: in.State, Severity: in.Severity, Title: cleanName(in.Title), Start: in.Start}
	for _, rc := range in.RootCauses[:min(len(in.RootCauses), 5)] {
		d.RootCauses = append(d.RootCauses, RootCauseData{Service: refName(&rc.Node), Workload: cleanName(rc.Node.Workload),
			Score: round(rc.Score, 2), Explained: rc.Explained, Explanation: cleanName(rc.Explanation)})
	}
	if c.a.d != nil {
		byID := map[string]detect.Anomaly{}
		for _, a := range c.a.d.Anomalies(detect.Filter{}) {
			byID[a.ID] = a
		}
		for _, id := range in.Anomalies {
			if a, ok := byID[id]; ok && len(d.Anomalies) < 8 {
				d.Anomalies = append(d.Anomalies, anomalyData(&a))
			}
		}
	}
	return d
}

func (c *call) incidents(state string, limit int) []detect.Incident {
	if c.a.d == nil {
		return nil
	}
	if state == "" {
		state = detect.StateFiring
	}
	if state == "any" {
		state = ""
	}
	return c.a.d.Incidents(detect.IncidentFilter{State: state, Limit: limit})
}

func toolIncidents(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct {
		State string
		Limit int
	}
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	res := &Result{}
	if c.a.d == nil {
		res.Text = "Anomaly detection is not running, so there are no incidents."
		res.Data = map[string]any{"incidents": []IncidentData{}, "detection": "off"}
		return res, nil
	}
	list := c.incidents(args.State, clampLimit(args.Limit, 5))
	out := make([]IncidentData, 0, len(list))
	for i := range list {
		d := c.incidentData(&list[i])
		out = append(out, d)
		res.Links = append(res.Links, Link{Kind: "incident", ID: d.ID, Label: d.Title})
	}
	if len(out) == 0 {
		res.Text = "No incidents."
	} else {
		res.Text = joinFigs(out, func(d IncidentData) string {
			s := fmt.Sprintf("incident %s (%s, %s): %s", d.ID, d.State, d.Severity, d.Title)
			if len(d.RootCauses) > 0 {
				s += fmt.Sprintf("; most likely root cause %s: %s", d.RootCauses[0].Service, d.RootCauses[0].Explanation)
			}
			return s
		}) + "."
	}
	res.Data = map[string]any{"incidents": out}
	return res, nil
}

// ---- what_changed

// ChangeData is one change between two windows.
type ChangeData struct {
	Edge   string  `json:"edge"`
	What   string  `json:"what"` // new, gone, rate, errors, latency
	Before float64 `json:"before"`
	After  float64 `json:"after"`
	Unit   string  `json:"unit"`
}

func toolWhatChanged(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Since, Service string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	since, err := c.timeArg("since", args.Since)
	if err != nil {
		return nil, err
	}
	now := c.a.g.Now()
	if !since.Before(now) {
		return nil, fmt.Errorf("%w: since %s is not in the past", ErrBadArgs, since.Format(time.RFC3339))
	}
	svc := ""
	if args.Service != "" {
		n, err := c.service(args.Service)
		if err != nil {
			return nil, err
		}
		svc = svcName(n)
	}
	res := c.a.g.Resolution()
	w := min(defaultWindow, now.Sub(since))
	w = max(w, 3*res)
	held := c.a.g.Window()
	if now.Sub(since)+w > held {
		return nil, fmt.Errorf("%w: since %s is older than the %s of history held", ErrBadArgs, since.Format(time.RFC3339), held)
	}
	before, err := c.snap(graph.ViewApp, w, since)
	if err != nil {
		return nil, err
	}
	after, err := c.snap(graph.ViewApp, w, time.Time{})
	if err != nil {
		return nil, err
	}
	type key struct{ s, t graph.Node }
	bm := map[key]*graph.EdgeSnapshot{}
	for i := range before.Edges {
		bm[key{before.Edges[i].Source, before.Edges[i].Target}] = &before.Edges[i]
	}
	var changes []ChangeData
	var links []Link
	seen := map[key]bool{}
	for i := range after.Edges {
		e := &after.Edges[i]
		k := key{e.Source, e.Target}
		seen[k] = true
		if svc != "" && svcName(e.Source) != svc && svcName(e.Target) != svc {
			continue
		}
		name := svcName(e.Source) + " -> " + svcName(e.Target)
		a := summarize(&e.Stats, after.Seconds())
		b0, ok := bm[k]
		if !ok {
			changes = append(changes, ChangeData{Edge: name, What: "new", After: a.RPS + float64(a.ConnOpened)/after.Seconds(), Unit: "req/s"})
			links = append(links, edgeLink(e))
			continue
		}
		b := summarize(&b0.Stats, before.Seconds())
		n := len(changes)
		if b.Requests >= 20 && a.Requests >= 20 && a.P95 > 0 && b.P95 > 0 && (a.P95 >= 1.5*b.P95 || a.P95 <= b.P95/1.5) {
			changes = append(changes, ChangeData{Edge: name, What: "latency", Before: b.P95, After: a.P95, Unit: "ms p95"})
		}
		if a.Requests >= 20 && b.Requests >= 20 && math.Abs(a.ErrorRatio-b.ErrorRatio) >= 0.02 {
			changes = append(changes, ChangeData{Edge: name, What: "errors", Before: b.ErrorRatio, After: a.ErrorRatio, Unit: "error ratio"})
		}
		if b.RPS >= 1 && (a.RPS >= 2*b.RPS || a.RPS <= b.RPS/2) {
			changes = append(changes, ChangeData{Edge: name, What: "rate", Before: b.RPS, After: a.RPS, Unit: "req/s"})
		}
		if len(changes) > n {
			links = append(links, edgeLink(e))
		}
	}
	for k, e := range bm {
		if !seen[k] && (svc == "" || svcName(e.Source) == svc || svcName(e.Target) == svc) {
			changes = append(changes, ChangeData{Edge: svcName(e.Source) + " -> " + svcName(e.Target), What: "gone", Before: round(float64(e.Stats.Requests)/before.Seconds(), 2), Unit: "req/s"})
		}
	}
	// Most telling first: new and vanished edges, errors, latency, rates; then by size.
	rank := map[string]int{"new": 0, "gone": 1, "errors": 2, "latency": 3, "rate": 4}
	size := func(c ChangeData) float64 {
		if c.Before <= 0 || c.After <= 0 {
			return math.Abs(c.After - c.Before)
		}
		return math.Abs(math.Log(c.After / c.Before))
	}
	// Within a kind, the edge the change starts from first: traffic shifts
	// flow downstream from their entry edge, latency and errors propagate
	// upstream from the deepest callee.
	srcs, dsts := map[string]bool{}, map[string]bool{}
	for _, ch := range changes {
		s, d, _ := strings.Cut(ch.Edge, " -> ")
		srcs[ch.What+"|"+s], dsts[ch.What+"|"+d] = true, true
	}
	origin := func(ch ChangeData) bool {
		s, d, _ := strings.Cut(ch.Edge, " -> ")
		if ch.What == "rate" {
			return !dsts[ch.What+"|"+s]
		}
		return !srcs[ch.What+"|"+d]
	}
	slices.SortFunc(changes, func(x, y ChangeData) int {
		if c := rank[x.What] - rank[y.What]; c != 0 {
			return c
		}
		if ox, oy := origin(x), origin(y); ox != oy {
			if ox {
				return -1
			}
			return 1
		}
		return cmpDesc(size(x), size(y), x.Edge, y.Edge)
	})
	total := len(changes)
	changes = changes[:min(len(changes), 25)]
	r := &Result{Data: map[string]any{"since": since, "window": w.String(), "changes": changes, "total": total}, Links: links, Subject: svc}
	if len(changes) == 0 {
		r.Text = fmt.Sprintf("Nothing notable changed since %s: the same edges, with rates, errors and p95 latency within normal variation.", since.UTC().Format("15:04:05"))
		return r, nil
	}
	shown := changes[:min(len(changes), 8)]
	r.Text = fmt.Sprintf("Since %s: %s", since.UTC().Format("15:04:05"), joinFigs(shown, describeChange))
	if total > len(shown) {
		r.Text += fmt.Sprintf(", and %d more changes", total-len(shown))
	}
	r.Text += "."
	return r, nil
}

func describeChange(ch ChangeData) string {
	switch ch.What {
	case "new":
		return "new edge " + ch.Edge
	case "gone":
		return "edge " + ch.Edge + " disappeared"
	case "latency":
		return fmt.Sprintf("%s p95 %s -> %s", ch.Edge, ms(ch.Before), ms(ch.After))
	case "errors":
		return fmt.Sprintf("%s errors %s -> %s", ch.Edge, pct(ch.Before), pct(ch.After))
	}
	return fmt.Sprintf("%s traffic %.1f -> %.1f req/s", ch.Edge, ch.Before, ch.After)
}

// ---- top_talkers

func toolTopTalkers(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct {
		By, Window string
		Limit      int
	}
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	if args.By == "" {
		args.By = "requests"
	}
	if args.By != "requests" && args.By != "bytes" {
		return nil, fmt.Errorf("%w: by %q: want requests or bytes", ErrBadArgs, args.By)
	}
	w, err := c.window(args.Window)
	if err != nil {
		return nil, err
	}
	s, err := c.snap(graph.ViewApp, w, time.Time{})
	if err != nil {
		return nil, err
	}
	idx := make([]int, len(s.Edges))
	for i := range idx {
		idx[i] = i
	}
	val := func(i int) float64 {
		st := &s.Edges[i].Stats
		if args.By == "bytes" {
			return float64(st.RequestBytes + st.ResponseBytes)
		}
		return float64(st.Requests)
	}
	slices.SortFunc(idx, func(a, b int) int { return cmpDesc(val(a), val(b), s.Edges[a].Source.ID(), s.Edges[b].Source.ID()) })
	idx = idx[:min(len(idx), clampLimit(args.Limit, 5))]
	out := make([]EdgeFigures, 0, len(idx))
	r := &Result{}
	for _, i := range idx {
		out = append(out, edgeFigs(&s.Edges[i], s.Seconds()))
		r.Links = append(r.Links, edgeLink(&s.Edges[i]))
	}
	r.Data = map[string]any{"by": args.By, "window": w.String(), "edges": out}
	if len(out) == 0 {
		r.Text = "No traffic in the window."
		return r, nil
	}
	r.Text = "Top edges by " + args.By + ": " + joinFigs(out, func(e EdgeFigures) string {
		if args.By == "bytes" {
			return fmt.Sprintf("%s -> %s %.1f KB/s", e.Source, e.Target, float64(e.Stats.Bytes)/w.Seconds()/1024)
		}
		return fmt.Sprintf("%s -> %s %.1f req/s", e.Source, e.Target, e.Stats.RPS)
	}) + "."
	return r, nil
}

// ---- plaintext_edges

func toolPlaintext(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Service, Window string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	svc := ""
	r := &Result{}
	if args.Service != "" {
		n, err := c.service(args.Service)
		if err != nil {
			return nil, err
		}
		svc = svcName(n)
		r.Subject = svc
		r.Links = append(r.Links, nodeLink(n))
	}
	w, err := c.window(args.Window)
	if err != nil {
		return nil, err
	}
	s, err := c.snap(graph.ViewApp, w, time.Time{})
	if err != nil {
		return nil, err
	}
	var plain, secure, unknown []EdgeFigures
	for i := range s.Edges {
		e := &s.Edges[i]
		if svc != "" && svcName(e.Target) != svc {
			continue
		}
		f := edgeFigs(e, s.Seconds())
		switch {
		case e.Stats.PlainUnits > 0:
			plain = append(plain, f)
			r.Links = append(r.Links, edgeLink(e))
		case e.Stats.MTLSUnits > 0:
			secure = append(secure, f)
		default:
			unknown = append(unknown, f)
		}
	}
	r.Data = map[string]any{"window": w.String(), "plaintext": plain[:min(len(plain), maxList)], "mtlsEdges": len(secure), "unknownEdges": len(unknown)}
	who := "in the mesh"
	if svc != "" {
		who = "into " + svc
	}
	if len(plain) == 0 {
		r.Text = fmt.Sprintf("All %d edges %s with known security are under mTLS (last %s).", len(secure), who, w)
		if len(secure) == 0 {
			r.Text = fmt.Sprintf("No edge %s reports its transport security in the last %s.", who, w)
		}
		return r, nil
	}
	r.Text = fmt.Sprintf("%s plaintext traffic: %s.", plural(len(plain), "edge "+who+" carries", "edges "+who+" carry"), joinFigs(plain, func(e EdgeFigures) string {
		return fmt.Sprintf("%s -> %s (%s under mTLS)", e.Source, e.Target, pct(max(e.Stats.MTLSShare, 0)))
	}))
	return r, nil
}

// ---- history

func toolHistory(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{ Service, Target, Metric, Window string }
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	n, err := c.service(args.Service)
	if err != nil {
		return nil, err
	}
	if !slices.Contains([]string{"rps", "errorRatio", "p50", "p95", "p99"}, args.Metric) {
		return nil, fmt.Errorf("%w: metric %q: want rps, errorRatio, p50, p95 or p99", ErrBadArgs, args.Metric)
	}
	w := 30 * time.Minute
	if args.Window != "" {
		if w, err = c.window(args.Window); err != nil {
			return nil, err
		}
	}
	w = min(w, c.a.g.Window())
	f := graph.EdgeFilter{View: graph.ViewApp, Target: &n}
	label := "inbound " + svcName(n)
	if args.Target != "" {
		t, err := c.service(args.Target)
		if err != nil {
			return nil, err
		}
		f = graph.EdgeFilter{View: graph.ViewApp, Source: &n, Target: &t}
		label = svcName(n) + " -> " + svcName(t)
	}
	start, buckets, err := c.a.g.History(f, w, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", label, err)
	}
	// At most 60 points: merge neighbouring buckets.
	step := max(1, (len(buckets)+59)/60)
	res := c.a.g.Resolution() * time.Duration(step)
	var pts []float64
	for i := 0; i < len(buckets); i += step {
		var m graph.Stats
		for j := i; j < min(i+step, len(buckets)); j++ {
			m.Add(&buckets[j])
		}
		sm := summarize(&m, res.Seconds())
		v := map[string]float64{"rps": sm.RPS, "errorRatio": sm.ErrorRatio, "p50": sm.P50, "p95": sm.P95, "p99": sm.P99}[args.Metric]
		pts = append(pts, v)
	}
	r := &Result{Subject: svcName(n), Links: []Link{nodeLink(n)},
		Data: map[string]any{"series": label, "metric": args.Metric, "start": start, "step": res.String(), "points": pts}}
	if len(pts) == 0 {
		r.Text = "No history for " + label + "."
		return r, nil
	}
	lo, hi := slices.Min(pts), slices.Max(pts)
	r.Text = fmt.Sprintf("%s %s over the last %s (%d points of %s): min %g, max %g, latest %g.", label, args.Metric, w, len(pts), res, lo, hi, pts[len(pts)-1])
	return r, nil
}

// ---- declared_policies

func toolPolicies(_ context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args struct{}
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	r := &Result{}
	if c.a.d == nil {
		r.Text = "No policies are declared (detection is not running)."
		r.Data = map[string]any{"policies": []detect.Policy{}}
		return r, nil
	}
	pols := c.a.d.Config().Policies
	r.Data = map[string]any{"policies": pols}
	if len(pols) == 0 {
		r.Text = "No communication policies are declared; unexpected edges are judged against the learned baseline."
		return r, nil
	}
	r.Text = fmt.Sprintf("%d declared policies: %s.", len(pols), joinFigs(pols, func(p detect.Policy) string {
		return fmt.Sprintf("%s (%d allowed, %d denied callee selectors)", cleanName(p.Name), len(p.Allow), len(p.Deny))
	}))
	return r, nil
}

// ---- propose_policy

type proposeArgs struct {
	policy.Params
	Rationale string   `json:"rationale"`
	Evidence  []string `json:"evidence,omitempty"`
}

func toolPropose(ctx context.Context, c *call, raw json.RawMessage) (*Result, error) {
	var args proposeArgs
	if err := decode(raw, &args); err != nil {
		return nil, err
	}
	n, err := c.service(args.Service)
	if err != nil {
		return nil, err
	}
	args.Service = n.App
	if args.Service == "" {
		args.Service = n.Name()
	}
	if args.Namespace == "" {
		args.Namespace = n.Namespace
	}
	if strings.TrimSpace(args.Rationale) == "" {
		return nil, fmt.Errorf("%w: rationale is required", ErrBadArgs)
	}
	if len(args.Principals) > 0 {
		// Only principals seen calling the service: grounded in data, not in text.
		seen, err := c.callerPrincipals(n)
		if err != nil {
			return nil, err
		}
		for _, p := range args.Principals {
			if !slices.Contains(seen, strings.TrimPrefix(p, "spiffe://")) {
				return nil, fmt.Errorf("%w: principal %q was not seen calling %s (seen: %s)", ErrBadArgs, cleanName(p), svcName(n), strings.Join(seen, ", "))
			}
		}
	}
	if len(args.Weights) > 0 {
		d, err := c.serviceData(n, c.a.g.Window(), time.Time{})
		if err != nil {
			return nil, err
		}
		for _, w := range args.Weights {
			if !slices.ContainsFunc(d.Versions, func(v VersionFigures) bool { return v.Version == w.Version }) {
				return nil, fmt.Errorf("%w: %s has no version %q in the graph", ErrBadArgs, svcName(n), cleanName(w.Version))
			}
		}
	}
	p, err := c.a.propose(ctx, args.Params, cleanText(args.Rationale, 2000), args.Evidence, c.sessionID, "assistant:"+c.engine)
	if err != nil {
		if errors.Is(err, policy.ErrInvalid) {
			return nil, fmt.Errorf("%w: %v", ErrBadArgs, err)
		}
		return nil, err
	}
	text := fmt.Sprintf("Proposal %s (%s for %s) is pending: an approver must review and approve it; nothing has been applied.", p.ID, kindsOf(p), args.Service)
	return &Result{Text: text, Proposal: &p, Subject: args.Service, Links: []Link{{Kind: "proposal", ID: p.ID, Label: p.Title}},
		Data: map[string]any{"proposalId": p.ID, "status": p.Status, "kinds": kindsOf(p), "sha256": p.SHA256, "yaml": p.YAML}}, nil
}

func kindsOf(p Proposal) string {
	var ks []string
	for _, r := range p.Resources {
		ks = append(ks, r.Kind)
	}
	return strings.Join(ks, " + ")
}

// principalsOf finds each node's own principal: the one on every edge it is on.
func principalsOf(s *graph.Snapshot) map[graph.Node]string {
	sets := map[graph.Node][]string{}
	init := map[graph.Node]bool{}
	for i := range s.Edges {
		e := &s.Edges[i]
		for _, n := range []graph.Node{e.Source, e.Target} {
			if !init[n] {
				init[n] = true
				sets[n] = slices.Clone(e.Principals)
				continue
			}
			sets[n] = slices.DeleteFunc(sets[n], func(p string) bool { return !slices.Contains(e.Principals, p) })
		}
	}
	out := map[graph.Node]string{}
	for n, ps := range sets {
		if len(ps) == 1 {
			out[n] = strings.TrimPrefix(ps[0], "spiffe://")
		}
	}
	return out
}

// callerPrincipals lists the principals of the services seen calling n.
func (c *call) callerPrincipals(n graph.Node) ([]string, error) {
	s, err := c.snap(graph.ViewApp, c.a.g.Window(), time.Time{})
	if err != nil {
		return nil, err
	}
	own := principalsOf(s)
	var out []string
	for i := range s.Edges {
		e := &s.Edges[i]
		if e.Target != n {
			continue
		}
		if p, ok := own[e.Source]; ok && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}

// cleanText bounds free text a model wrote.
func cleanText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
