package assistant

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/assistant/policy"
	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// The built-in engine: keyword intents over the same tools the LLM uses.
// It answers in a few sentences with figures, says plainly what it cannot
// answer, and always ends with a hand-off instead of looping.

type intent int

const (
	intentUnknown intent = iota
	intentPolicies
	intentPropose
	intentChanged
	intentWhy
	intentCallers
	intentCallees
	intentEncrypted
	intentTraffic
	intentMostErrors
	intentSlowest
	intentFailing
	intentSlow
	intentUnusual
	intentHistory
	intentOverview
	intentStats
)

func re(s string) *regexp.Regexp { return regexp.MustCompile(`(?i)` + s) }

var intentRules = []struct {
	in intent
	re *regexp.Regexp
}{
	{intentPolicies, re(`\b(declared|which|what|list|show)\b.*\bpolic(y|ies)\b.*\b(declared|exist|are there|have)\b|\bdeclared polic|\blist (the )?polic`)},
	{intentPropose, re(`\b(fix|propose|proposal for|suggest|remediat|mitigat|roll ?back|rollback|add (a )?timeout|set (a )?timeout|timeouts? for|retr(y|ies) (for|on|to)|add retr|circuit.?break|outlier|connection pool|lock (it )?down|block|deny|allow.?list|allow only|enforce|strict mtls|make .* strict|require mtls)`)},
	{intentChanged, re(`\b(what|anything|has anything|what has|what's|whats)\b.*\bchang|\bchanges?\b.*\bsince\b|\bdifferent (since|from)\b|\bdiff\b.*\bsince`)},
	{intentWhy, re(`\bwhy\b|\broot cause\b|\bwhat('s| is) wrong with\b|\bexplain\b|\bcause of\b`)},
	{intentCallers, re(`\bwho (calls|is calling|talks to|uses|sends|depends on|hits)\b|\bcallers?\b|\bupstream\b|\bcalled by\b|\bwhat calls\b|\bwhich services? calls?\b`)},
	{intentCallees, re(`\bwhat does \S+ (call|depend|talk|use)|\bcallees?\b|\bdownstream\b|\bdependenc|\bdepends? on what\b|\bwhat (does|do) .* call\b|\bwho does \S+ call\b|\bwhat .* calls\b`)},
	{intentEncrypted, re(`\bencrypt|\bm?tls\b|\bplain ?text\b|\bunencrypted\b|\bsecure(d)?\b`)},
	{intentTraffic, re(`\b(most|highest|biggest|heaviest|top) (traffic|requests|calls|bytes|bandwidth|load|talkers?)\b|\bbusiest\b|\btop talkers?\b|\bmakes? the most\b|\bsends? the most\b|\breceives? the most\b|\bmost (traffic|requests)\b`)},
	{intentMostErrors, re(`\b(most|highest|biggest|worst) (errors?|error rate|error ratio|failures?)\b|\berror rate is highest\b`)},
	{intentSlowest, re(`\bslowest\b|\bhighest (latency|p9[59]|p50)\b|\bworst latency\b|\bmost latency\b`)},
	{intentFailing, re(`\bfail|\bbroken\b|\berrors?\b|\bunhealthy\b|\b(is|are) down\b|\b5xx\b|\b50[0-9]\b|\boutage\b|\bnot working\b`)},
	{intentSlow, re(`\bslow|\blatency\b|\bp9[59]\b|\bp50\b|\bresponse time|\blag(gy|ging)?\b|\bsluggish\b|\btakes? long\b`)},
	{intentUnusual, re(`\bunusual|\banomal|\bweird\b|\bstrange\b|\bodd\b|\bgoing on\b|\bhappening\b|\bincidents?\b|\balerts?\b|\bstatus\b|\bhealth(y)?\b|\banything wrong\b|\bproblems?\b|\bissues?\b|\bok(ay)?\b`)},
	{intentHistory, re(`\btrend\b|\bhistory\b|\bover time\b|\bover the last\b`)},
	{intentOverview, re(`\boverview\b|\bhow many services\b|\blist (the |all )?services\b|\btopology\b|\bwhat services\b|\bwhich services (are there|exist)\b|\bservice (graph|map)\b|\bsummar`)},
}

var (
	approveRe  = re(`\bapprov|\bapply (the |this |that |it|all)|\bmerge the proposal`)
	followUpRe = re(`\b(it|its|it's|that service|this service|them|that one)\b`)
	sinceRe    = re(`(\d+(?:\.\d+)?)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b`)
	clockRe    = re(`\b(?:since|at|after)\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\b`)
	anHourRe   = re(`\b(an|one|the last|last) hour\b`)
)

func classify(text string) intent {
	for _, r := range intentRules {
		if r.re.MatchString(text) {
			return r.in
		}
	}
	return intentUnknown
}

type builtinCtx struct {
	*call
	ctx      context.Context
	question string
	svc      *graph.Node
	subject  string
	incident *IncidentData // the incident the answer is about, for the hand-off
}

// builtin answers with the built-in engine.
func (a *Assistant) builtin(ctx context.Context, q Question, turns []Turn) (Answer, string) {
	c := &call{a: a, sessionID: q.SessionID, engine: EngineBuiltin}
	b := &builtinCtx{call: c, ctx: ctx, question: q.Message}
	text := b.answer(turns)
	return Answer{Answer: text, Engine: EngineBuiltin, Links: c.links, ToolCalls: c.calls, Proposals: c.proposals}, b.subject
}

func (b *builtinCtx) answer(turns []Turn) string {
	r, err := b.resolver()
	if err != nil {
		return "I cannot read the service graph right now (" + err.Error() + "). Next: check that meshlens is receiving telemetry, or open the dashboard."
	}
	msg := b.question
	if names := r.mentioned(msg); len(names) > 0 {
		b.svc = &names[0]
	} else if followUpRe.MatchString(msg) && len(turns) > 0 {
		if last := turns[len(turns)-1].Subject; last != "" {
			if n, ok := r.resolve(last); ok {
				b.svc = &n
			}
		}
	}
	if b.svc != nil {
		b.subject = svcName(*b.svc)
	}
	var out string
	in := classify(msg)
	wantsApproval := approveRe.MatchString(msg)
	if wantsApproval && in == intentPropose && !re(`\b(propose|fix|suggest)`).MatchString(msg) {
		in = intentUnknown
	}
	switch in {
	case intentPolicies:
		out = b.simple("declared_policies", map[string]any{})
	case intentPropose:
		out = b.propose()
	case intentChanged:
		out = b.changed()
	case intentWhy:
		if b.svc == nil {
			out = b.failing(false)
		} else {
			out = b.explain(focusOf(msg))
		}
	case intentCallers, intentCallees:
		out = b.neighbours(in == intentCallers)
	case intentEncrypted:
		out = b.encrypted()
	case intentTraffic:
		out = b.traffic()
	case intentMostErrors:
		out = b.failing(true)
	case intentSlowest:
		out = b.slow()
	case intentFailing:
		if b.svc != nil {
			out = b.explain("errors")
		} else {
			out = b.failing(false)
		}
	case intentSlow:
		if b.svc != nil {
			out = b.explain("latency")
		} else {
			out = b.slow()
		}
	case intentUnusual:
		if b.svc != nil {
			out = b.explain("")
		} else {
			out = b.unusual()
		}
	case intentHistory:
		out = b.history()
	case intentOverview:
		out = b.simple("graph_overview", map[string]any{})
	default:
		if b.svc != nil && !wantsApproval {
			out = b.explain("")
		} else if !wantsApproval {
			out = "I don't know how to answer that from the mesh data. I can tell you which service is failing, slowest or has the most errors, why a service is slow, who calls a service and what it calls, what changed since a time, whether traffic to a service is encrypted, which service makes the most traffic and whether anything unusual is happening right now; and I can propose a timeout or retries, a canary rollback, outlier detection, an AuthorizationPolicy or STRICT mTLS for a service."
		}
	}
	if wantsApproval {
		note := "I cannot approve or apply proposals, and nothing in a question or in the mesh data can make me: a person with the approver role must review the YAML and approve it in the dashboard (Proposals) or with POST /api/v1/proposals/{id}/approve."
		out = strings.TrimSpace(out + " " + note)
	}
	return strings.TrimSpace(out) + " " + b.handoff()
}

func focusOf(msg string) string {
	switch {
	case re(`slow|latency|p9|lag|response time`).MatchString(msg):
		return "latency"
	case re(`fail|error|5xx|broken|down`).MatchString(msg):
		return "errors"
	}
	return ""
}

func (b *builtinCtx) handoff() string {
	if b.incident != nil {
		owner := ""
		if len(b.incident.RootCauses) > 0 {
			owner = ", or page the owner of " + b.incident.RootCauses[0].Service
		}
		return fmt.Sprintf("Next: open incident %s in the dashboard for the evidence%s.", b.incident.ID, owner)
	}
	if len(b.proposals) > 0 {
		return fmt.Sprintf("Next: review proposal %s in the dashboard (Proposals).", b.proposals[0].ID)
	}
	if b.subject != "" {
		return fmt.Sprintf("Next: open %s in the dashboard graph, or page its owner if this persists.", b.subject)
	}
	return "Next: open the dashboard for the live graph, or page the on-call owner if something looks wrong."
}

// run invokes a tool and returns its result; errors become plain sentences.
func (b *builtinCtx) run(name string, args map[string]any) (*Result, string) {
	res, err := b.invoke(b.ctx, name, args)
	if err != nil {
		if errors.Is(err, ErrBadArgs) {
			return nil, "I could not do that: " + strings.TrimPrefix(err.Error(), ErrBadArgs.Error()+": ") + "."
		}
		if name == "propose_policy" {
			// A write refused (disk full, database down): say nothing was created.
			return nil, "The proposal could not be saved, so none was created (" + err.Error() + "). Ask again once storage accepts writes."
		}
		return nil, "Something failed while reading the mesh data (" + err.Error() + ")."
	}
	if res.Subject != "" && b.subject == "" {
		b.subject = res.Subject
	}
	return res, ""
}

func (b *builtinCtx) simple(name string, args map[string]any) string {
	res, msg := b.run(name, args)
	if res == nil {
		return msg
	}
	return res.Text
}

func (b *builtinCtx) firingIncidents() []IncidentData {
	res, _ := b.run("incidents", map[string]any{"state": "firing", "limit": 5})
	if res == nil {
		return nil
	}
	list, _ := res.Data.(map[string]any)["incidents"].([]IncidentData)
	return list
}

func (b *builtinCtx) firingAnomalies(svc, typ string) []AnomalyData {
	args := map[string]any{"limit": 50}
	if svc != "" {
		args["service"] = svc
	}
	if typ != "" {
		args["type"] = typ
	}
	res, _ := b.run("anomalies", args)
	if res == nil {
		return nil
	}
	list, _ := res.Data.(map[string]any)["anomalies"].([]AnomalyData)
	return list
}

func (b *builtinCtx) overview() *OverviewData {
	res, _ := b.run("graph_overview", map[string]any{})
	if res == nil {
		return nil
	}
	d := res.Data.(OverviewData)
	return &d
}

func (b *builtinCtx) stats(svc string) *ServiceData {
	res, _ := b.run("service_stats", map[string]any{"service": svc})
	if res == nil {
		return nil
	}
	d := res.Data.(ServiceData)
	return &d
}

// anomalyText is one anomaly in words with its figures.
func anomalyText(a AnomalyData) string {
	switch a.Type {
	case detect.TypeLatency, detect.TypeBadVersion:
		if a.Unit == "ms" {
			return fmt.Sprintf("%s %s is %s against a baseline of %s", a.Subject, a.Metric, ms(a.Observed), ms(a.Baseline))
		}
	case detect.TypeErrors, detect.TypeMTLS:
		if a.Unit == "ratio" {
			s := fmt.Sprintf("%s %s is %s against a baseline of %s", a.Subject, a.Metric, pct(a.Observed), pct(a.Baseline))
			if len(a.Flags) > 0 {
				s += " (response flags " + strings.Join(a.Flags, ", ") + ")"
			}
			return s
		}
	case detect.TypeUnexpected, detect.TypePolicy:
		return fmt.Sprintf("%s is a new, unexpected edge", a.Subject)
	}
	return a.Summary
}

func (b *builtinCtx) rootOf(inc IncidentData) (RootCauseData, bool) {
	if len(inc.RootCauses) == 0 {
		return RootCauseData{}, false
	}
	return inc.RootCauses[0], true
}

// failing names the failing service: the top incident's root cause, else
// the highest error ratio.
func (b *builtinCtx) failing(byErrors bool) string {
	incs := b.firingIncidents()
	ov := b.overview()
	var sb strings.Builder
	if len(incs) > 0 && !byErrors {
		inc := incs[0]
		b.incident = &inc
		if rc, ok := b.rootOf(inc); ok {
			b.subject = rc.Service
			fmt.Fprintf(&sb, "%s is the most likely failing service (incident %s, %s). ", rc.Service, inc.ID, inc.Severity)
			if a := ownAnomaly(inc.Anomalies, rc.Service, ""); a != nil {
				fmt.Fprintf(&sb, "%s. ", capitalize(anomalyText(*a)))
			}
			var others []string
			for _, r := range inc.RootCauses[1:] {
				if r.Explained && r.Service != rc.Service && !slices.Contains(others, r.Service) {
					others = append(others, r.Service)
				}
			}
			if len(others) > 0 {
				fmt.Fprintf(&sb, "%s are affected because they call it. ", strings.Join(others, ", "))
			}
			if d := b.stats(rc.Service); d != nil && d.Inbound.Requests > 0 {
				fmt.Fprintf(&sb, "Over the last %s it served %.1f req/s with %s errors and p95 %s.", d.Window, d.Inbound.RPS, pct(d.Inbound.ErrorRatio), ms(d.Inbound.P95))
			}
			if len(incs) > 1 {
				fmt.Fprintf(&sb, " %d other incidents are firing.", len(incs)-1)
			}
			return sb.String()
		}
	}
	if ov == nil || ov.Services == 0 {
		return "I see no services in the graph yet, so I cannot tell which one is failing."
	}
	figs := slices.Clone(ov.Busiest)
	figs = figs[:0]
	figs = append(figs, ov.Unhealthy...)
	if len(figs) == 0 {
		top := ""
		if len(incs) > 0 {
			b.incident = &incs[0]
			top = fmt.Sprintf(" Incident %s is firing: %s.", incs[0].ID, incs[0].Title)
		}
		return fmt.Sprintf("No service is failing: every service's error ratio is below 1%% over the last %s.%s", ov.Window, top)
	}
	f := figs[0]
	b.subject = f.Name
	fmt.Fprintf(&sb, "%s has the highest error ratio: %s of %d requests over the last %s", f.Name, pct(f.Inbound.ErrorRatio), f.Inbound.Requests, ov.Window)
	if len(f.Inbound.Flags) > 0 {
		var fl []string
		for k := range f.Inbound.Flags {
			fl = append(fl, k)
		}
		slices.Sort(fl)
		fmt.Fprintf(&sb, " (response flags %s)", strings.Join(fl, ", "))
	}
	sb.WriteString(".")
	if len(figs) > 1 {
		fmt.Fprintf(&sb, " Next highest: %s.", joinFigs(figs[1:min(len(figs), 4)], func(f ServiceFigures) string { return fmt.Sprintf("%s %s", f.Name, pct(f.Inbound.ErrorRatio)) }))
	}
	if len(incs) > 0 {
		inc := incs[0]
		b.incident = &inc
		if rc, ok := b.rootOf(inc); ok {
			fmt.Fprintf(&sb, " Incident %s ranks %s as the most likely root cause.", inc.ID, rc.Service)
		}
	} else {
		sb.WriteString(" No incident is firing, so this may be its usual level.")
	}
	return sb.String()
}

// slow names where latency comes from: a latency incident's root cause,
// else the highest p95.
func (b *builtinCtx) slow() string {
	var sb strings.Builder
	incs := b.firingIncidents()
	for _, inc := range incs {
		rc, ok := b.rootOf(inc)
		if !ok {
			continue
		}
		var lat *AnomalyData
		for i, a := range inc.Anomalies {
			if (a.Type == detect.TypeLatency || a.Type == detect.TypeBadVersion) && slices.Contains(a.Services, rc.Service) {
				lat = &inc.Anomalies[i]
				break
			}
		}
		if lat == nil {
			continue
		}
		b.incident = &inc
		b.subject = rc.Service
		fmt.Fprintf(&sb, "%s is where the slowdown starts (incident %s): %s. ", rc.Service, inc.ID, anomalyText(*lat))
		var others []string
		for _, r := range inc.RootCauses[1:] {
			if r.Explained && r.Service != rc.Service && !slices.Contains(others, r.Service) {
				others = append(others, r.Service)
			}
		}
		if len(others) > 0 {
			fmt.Fprintf(&sb, "%s are slower because they wait on it.", strings.Join(others, ", "))
		}
		if end := b.highestP95(); end != nil && end.Name != rc.Service {
			fmt.Fprintf(&sb, " The highest end-to-end p95 is %s at %s, which includes that wait.", end.Name, ms(end.Inbound.P95))
		}
		return sb.String()
	}
	end := b.highestP95()
	if end == nil {
		return "I see no request latency in the graph yet, so I cannot tell which service is slowest."
	}
	b.subject = end.Name
	fmt.Fprintf(&sb, "%s is the slowest service: p95 %s and p99 %s over its inbound calls. No latency anomaly is firing, so this is its usual level.", end.Name, ms(end.Inbound.P95), ms(end.Inbound.P99))
	return sb.String()
}

func (b *builtinCtx) highestP95() *ServiceFigures {
	s, err := b.snap(graph.ViewApp, min(defaultWindow, b.a.g.Window()), time.Time{})
	if err != nil {
		return nil
	}
	tot := totals(s)
	var best *ServiceFigures
	for i := range s.Nodes {
		n := s.Nodes[i].Node
		t := tot[n]
		if t == nil || t[0].Requests < 20 {
			continue
		}
		sum := summarize(&t[0], s.Seconds())
		if best == nil || sum.P95 > best.Inbound.P95 {
			best = &ServiceFigures{Name: svcName(n), Namespace: n.Namespace, Kind: n.Kind.String(), Inbound: sum}
		}
	}
	return best
}

// explain describes one service with its figures, its anomalies and the
// incident it is part of.
func (b *builtinCtx) explain(focus string) string {
	svc := svcName(*b.svc)
	b.subject = svc
	d := b.stats(svc)
	if d == nil {
		return "I could not read the statistics of " + svc + "."
	}
	var sb strings.Builder
	anoms := b.firingAnomalies(svc, "")
	var incs []IncidentData
	for _, inc := range b.firingIncidents() {
		for _, a := range inc.Anomalies {
			if slices.Contains(a.Services, svc) {
				incs = append(incs, inc)
				break
			}
		}
		if len(incs) == 0 {
			for _, r := range inc.RootCauses {
				if r.Service == svc {
					incs = append(incs, inc)
					break
				}
			}
		}
	}
	in := d.Inbound
	if in.Requests == 0 && in.ConnOpened == 0 {
		fmt.Fprintf(&sb, "%s received no traffic over the last %s. ", svc, d.Window)
	} else {
		fmt.Fprintf(&sb, "%s over the last %s: %.1f req/s in, %s errors, p50 %s, p95 %s, p99 %s. ", svc, d.Window, in.RPS, pct(in.ErrorRatio), ms(in.P50), ms(in.P95), ms(in.P99))
	}
	if len(incs) > 0 {
		inc := incs[0]
		b.incident = &inc
		rc, _ := b.rootOf(inc)
		if rc.Service == svc {
			fmt.Fprintf(&sb, "It is the most likely root cause of incident %s", inc.ID)
			own := ownAnomaly(inc.Anomalies, svc, focus)
			if own != nil {
				fmt.Fprintf(&sb, ": %s", anomalyText(*own))
			}
			sb.WriteString(". ")
		} else if rc.Service != "" {
			fmt.Fprintf(&sb, "It is affected by incident %s, whose most likely root cause is %s, which it depends on", inc.ID, rc.Service)
			if own := ownAnomaly(inc.Anomalies, rc.Service, focus); own != nil {
				fmt.Fprintf(&sb, ": %s", anomalyText(*own))
			}
			sb.WriteString(". ")
			if focus == "latency" {
				fmt.Fprintf(&sb, "%s is slow because it waits on %s. ", svc, rc.Service)
			} else if focus == "errors" {
				fmt.Fprintf(&sb, "%s's failures come from %s. ", svc, rc.Service)
			}
		}
	} else if len(anoms) > 0 {
		fmt.Fprintf(&sb, "Firing for it: %s. ", joinFigs(anoms[:min(len(anoms), 3)], anomalyText))
	} else {
		switch focus {
		case "latency":
			fmt.Fprintf(&sb, "No latency anomaly is firing for %s: its p95 is within its baseline. ", svc)
		case "errors":
			fmt.Fprintf(&sb, "%s is not failing: no error anomaly is firing for it. ", svc)
		default:
			sb.WriteString("No anomaly is firing for it. ")
		}
	}
	if v := outlierVersion(d.Versions); v != nil {
		fmt.Fprintf(&sb, "Version %s stands out: p95 %s and %s errors, against the other versions' %s. ", v.Version, ms(v.Inbound.P95), pct(v.Inbound.ErrorRatio), othersText(d.Versions, v.Version))
	}
	return strings.TrimSpace(sb.String())
}

// typeRank orders anomaly types by how much they say about a failure.
var typeRank = map[string]int{detect.TypeErrors: 0, detect.TypeBadVersion: 1, detect.TypeLatency: 2, detect.TypeMTLS: 3,
	detect.TypePolicy: 4, detect.TypeUnexpected: 5, detect.TypeResource: 6, detect.TypeTraffic: 7}

func ownAnomaly(list []AnomalyData, svc, focus string) *AnomalyData {
	list = slices.Clone(list)
	slices.SortStableFunc(list, func(a, b AnomalyData) int { return typeRank[a.Type] - typeRank[b.Type] })
	var fallback *AnomalyData
	for i, a := range list {
		if !slices.Contains(a.Services, svc) {
			continue
		}
		// An edge into svc or svc's own node: its own anomaly, not a caller's.
		own := strings.HasPrefix(a.Subject, svc+" ") || strings.HasSuffix(a.Subject, "-> "+svc) || a.Subject == svc
		if !own {
			continue
		}
		switch {
		case focus == "latency" && (a.Type == detect.TypeLatency || a.Type == detect.TypeBadVersion),
			focus == "errors" && a.Type == detect.TypeErrors, focus == "":
			return &list[i]
		}
		if fallback == nil {
			fallback = &list[i]
		}
	}
	return fallback
}

// outlierVersion is a version twice as slow or with 5 points more errors than the rest.
func outlierVersion(vs []VersionFigures) *VersionFigures {
	if len(vs) < 2 {
		return nil
	}
	var worst *VersionFigures
	for i := range vs {
		v := &vs[i]
		var p95, er float64
		n := 0
		for _, o := range vs {
			if o.Version != v.Version {
				p95 += o.Inbound.P95
				er += o.Inbound.ErrorRatio
				n++
			}
		}
		p95 /= float64(n)
		er /= float64(n)
		if (p95 > 0 && v.Inbound.P95 >= 2*p95) || v.Inbound.ErrorRatio-er >= 0.05 {
			if worst == nil || v.Inbound.ErrorRatio+v.Inbound.P95/1000 > worst.Inbound.ErrorRatio+worst.Inbound.P95/1000 {
				worst = v
			}
		}
	}
	return worst
}

func othersText(vs []VersionFigures, skip string) string {
	var parts []string
	for _, v := range vs {
		if v.Version != skip {
			parts = append(parts, fmt.Sprintf("%s p95 %s, %s errors", v.Version, ms(v.Inbound.P95), pct(v.Inbound.ErrorRatio)))
		}
	}
	return strings.Join(parts, "; ")
}

func (b *builtinCtx) unusual() string {
	incs := b.firingIncidents()
	anoms := b.firingAnomalies("", "")
	if len(incs) == 0 && len(anoms) == 0 {
		ov := b.overview()
		if ov == nil {
			return "Nothing unusual: no anomalies are firing."
		}
		return fmt.Sprintf("Nothing unusual right now: no anomalies are firing across %d services and %d edges over the last %s.", ov.Services, ov.Edges, ov.Window)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Yes: %s firing in %s. ", plural(len(anoms), "anomaly is", "anomalies are"), plural(len(incs), "incident", "incidents"))
	for i, inc := range incs[:min(len(incs), 3)] {
		if i == 0 {
			b.incident = &incs[0]
		}
		if rc, ok := b.rootOf(inc); ok {
			fmt.Fprintf(&sb, "Incident %s (%s): most likely root cause %s", inc.ID, inc.Severity, rc.Service)
			if a := ownAnomaly(inc.Anomalies, rc.Service, ""); a != nil {
				fmt.Fprintf(&sb, ", %s", anomalyText(*a))
			}
			sb.WriteString(". ")
		}
	}
	if len(incs) == 0 {
		fmt.Fprintf(&sb, "%s.", joinFigs(anoms[:min(len(anoms), 3)], anomalyText))
	}
	return sb.String()
}

func (b *builtinCtx) neighbours(callers bool) string {
	if b.svc == nil {
		return "Which service do you mean? Name one from the graph, e.g. \"who calls " + b.someService() + "\"."
	}
	dir := "callees"
	if callers {
		dir = "callers"
	}
	return b.simple("neighbours", map[string]any{"service": svcName(*b.svc), "direction": dir})
}

func (b *builtinCtx) someService() string {
	if r, err := b.resolver(); err == nil && len(r.nodes) > 0 {
		return svcName(r.nodes[len(r.nodes)/2])
	}
	return "ratings"
}

func (b *builtinCtx) encrypted() string {
	args := map[string]any{}
	if b.svc != nil {
		args["service"] = svcName(*b.svc)
	}
	res, msg := b.run("plaintext_edges", args)
	if res == nil {
		return msg
	}
	plain, _ := res.Data.(map[string]any)["plaintext"].([]EdgeFigures)
	if b.svc != nil {
		svc := svcName(*b.svc)
		if len(plain) == 0 {
			if n, _ := res.Data.(map[string]any)["mtlsEdges"].(int); n > 0 {
				return fmt.Sprintf("Yes: all traffic to %s is encrypted with mTLS (%s, last %s).", svc, plural(n, "caller", "callers"), res.Data.(map[string]any)["window"])
			}
			return fmt.Sprintf("I cannot tell: no caller of %s reports its transport security.", svc)
		}
		return fmt.Sprintf("No: %s I can propose a STRICT PeerAuthentication for %s; ask \"propose strict mTLS for %s\".", res.Text, svc, svc)
	}
	if len(plain) > 0 {
		return res.Text + " I can propose STRICT mTLS for a service; ask \"propose strict mTLS for " + plain[0].Target + "\"."
	}
	return res.Text
}

func (b *builtinCtx) traffic() string {
	by := "requests"
	if re(`\bbytes\b|\bbandwidth\b|\bdata\b|\bvolume\b`).MatchString(b.question) {
		by = "bytes"
	}
	res, msg := b.run("top_talkers", map[string]any{"by": by, "limit": 5})
	if res == nil {
		return msg
	}
	s, err := b.snap(graph.ViewApp, min(defaultWindow, b.a.g.Window()), time.Time{})
	if err != nil {
		return res.Text
	}
	tot := totals(s)
	var sender, receiver string
	var out, in float64
	for n, t := range tot {
		v0, v1 := float64(t[0].Requests), float64(t[1].Requests)
		if by == "bytes" {
			v0, v1 = float64(t[0].RequestBytes+t[0].ResponseBytes), float64(t[1].RequestBytes+t[1].ResponseBytes)
		}
		name := svcName(n)
		if v1 > out || (v1 == out && name < sender) {
			sender, out = name, v1
		}
		if v0 > in || (v0 == in && name < receiver) {
			receiver, in = name, v0
		}
	}
	unit, scale := "req/s", 1.0
	if by == "bytes" {
		unit, scale = "KB/s", 1024
	}
	sec := s.Seconds()
	b.subject = sender
	if re(`\breceiv|\bgets? the most\b`).MatchString(b.question) {
		b.subject = receiver
		return fmt.Sprintf("%s receives the most traffic: %.1f %s. %s", receiver, in/sec/scale, unit, res.Text)
	}
	return fmt.Sprintf("%s makes the most traffic: %.1f %s outbound; %s receives the most (%.1f %s). %s", sender, out/sec/scale, unit, receiver, in/sec/scale, unit, res.Text)
}

// sinceOf reads "since 10 minutes ago", "in the last hour", "since 12:05".
func (b *builtinCtx) sinceOf() string {
	if m := clockRe.FindStringSubmatch(b.question); m != nil {
		now := b.a.g.Now().UTC()
		h, _ := strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		sec := 0
		if m[3] != "" {
			sec, _ = strconv.Atoi(m[3])
		}
		t := time.Date(now.Year(), now.Month(), now.Day(), h, mi, sec, 0, time.UTC)
		if t.After(now) {
			t = t.Add(-24 * time.Hour)
		}
		return t.Format(time.RFC3339)
	}
	if m := sinceRe.FindStringSubmatch(b.question); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		unit := time.Minute
		switch strings.ToLower(m[2])[0] {
		case 's':
			unit = time.Second
		case 'h':
			unit = time.Hour
		}
		return time.Duration(v * float64(unit)).String()
	}
	if anHourRe.MatchString(b.question) {
		return "1h"
	}
	return "10m"
}

func (b *builtinCtx) changed() string {
	args := map[string]any{"since": b.sinceOf()}
	if b.svc != nil {
		args["service"] = svcName(*b.svc)
	}
	res, msg := b.run("what_changed", args)
	if res == nil {
		return msg
	}
	return res.Text
}

func (b *builtinCtx) history() string {
	if b.svc == nil {
		return "Which service's history do you want? Name one, e.g. \"p95 trend of " + b.someService() + "\"."
	}
	metric := "rps"
	switch {
	case re(`p99`).MatchString(b.question):
		metric = "p99"
	case re(`p50|median`).MatchString(b.question):
		metric = "p50"
	case re(`latency|p95|slow`).MatchString(b.question):
		metric = "p95"
	case re(`error|fail`).MatchString(b.question):
		metric = "errorRatio"
	}
	return b.simple("history", map[string]any{"service": svcName(*b.svc), "metric": metric})
}

// propose picks a fix from the question and the firing anomalies, builds
// the parameters from the figures and creates a pending proposal.
func (b *builtinCtx) propose() string {
	msg := b.question
	var target string
	var anoms []AnomalyData
	if b.svc != nil {
		target = svcName(*b.svc)
		anoms = b.firingAnomalies(target, "")
	} else {
		for _, inc := range b.firingIncidents() {
			if rc, ok := b.rootOf(inc); ok {
				target = rc.Service
				b.incident = &inc
				anoms = inc.Anomalies
				break
			}
		}
	}
	kind := ""
	switch {
	case re(`roll ?back|rollback|canary|shift traffic|weights?|version`).MatchString(msg):
		kind = "rollback"
	case re(`timeout|retr(y|ies)`).MatchString(msg):
		kind = "timeout"
	case re(`outlier|circuit|eject`).MatchString(msg):
		kind = "outlier"
	case re(`connection pool|connect timeout|connections`).MatchString(msg):
		kind = "pool"
	case re(`strict|mtls|encrypt|tls|plaintext`).MatchString(msg):
		kind = "strict"
	case re(`allow.?list|allow only|lock (it )?down|only (its|the) (observed )?callers`).MatchString(msg):
		kind = "allow"
	case re(`deny|block|unexpected|cut off|stop`).MatchString(msg):
		kind = "deny"
	}
	var lead *AnomalyData
	for i, a := range anoms {
		if target == "" || slices.Contains(a.Services, target) {
			lead = &anoms[i]
			break
		}
	}
	if kind == "" && lead != nil {
		switch lead.Type {
		case detect.TypeLatency:
			kind = "timeout"
		case detect.TypeErrors:
			kind = "outlier"
			if slices.Contains(lead.Flags, "UF") || slices.Contains(lead.Flags, "UH") {
				kind = "pool"
			}
		case detect.TypeBadVersion:
			kind = "rollback"
		case detect.TypeUnexpected, detect.TypePolicy:
			kind = "deny"
		case detect.TypeMTLS:
			kind = "strict"
		case detect.TypeTraffic:
			return fmt.Sprintf("No Istio policy fixes this: %s. A traffic drop usually means a broken route, client or load balancer upstream; check the ingress and the callers' deployments.", anomalyText(*lead))
		}
	}
	if kind == "deny" && lead != nil && (lead.Type == detect.TypeUnexpected || lead.Type == detect.TypePolicy) {
		// Deny at the callee of the unexpected edge.
		if parts := strings.SplitN(lead.Subject, " -> ", 2); len(parts) == 2 {
			target = parts[1]
		}
	}
	if target == "" {
		return "I have nothing to base a proposal on: no anomaly is firing and the question names no service. Name the service and the fix, e.g. \"propose a timeout for ratings\" or \"propose strict mTLS for details\"."
	}
	if kind == "" {
		return fmt.Sprintf("No anomaly is firing for %s, so I will not guess a fix. Ask for one explicitly: a timeout or retries, a canary rollback, outlier detection, a connection pool, an AuthorizationPolicy or STRICT mTLS for %s.", target, target)
	}
	b.subject = target
	d := b.stats(target)
	if d == nil {
		return "I could not read the statistics of " + target + "."
	}
	p := policy.Params{Service: target, Namespace: d.Namespace}
	var why []string
	var evidence []string
	if lead != nil {
		evidence = append(evidence, lead.Summary)
		if lead.IncidentID != "" {
			evidence = append(evidence, "incident "+lead.IncidentID)
		}
	}
	switch kind {
	case "timeout":
		base := d.Inbound.P99
		if lead != nil && lead.Type == detect.TypeLatency && lead.Unit == "ms" && lead.Baseline > 0 {
			base = lead.Baseline
		}
		if base <= 0 {
			base = 100
		}
		to := roundMs(math.Max(100, 3*base))
		per := roundMs(math.Max(50, float64(to)/2))
		p.Kind = policy.KindVirtualService
		p.Timeout = fmt.Sprintf("%dms", to)
		p.Retries = &policy.Retries{Attempts: 2, PerTryTimeout: fmt.Sprintf("%dms", per), RetryOn: []string{"5xx", "reset", "connect-failure", "gateway-error"}}
		why = append(why, fmt.Sprintf("callers of %s wait up to p99 %s today (p95 %s); a %dms timeout (3x the healthy level of %s) bounds the wait and 2 retries of %dms each ride over single slow or reset attempts", target, ms(d.Inbound.P99), ms(d.Inbound.P95), to, ms(base), per))
	case "rollback":
		bad := ""
		if lead != nil && lead.Type == detect.TypeBadVersion {
			bad = versionIn(lead.Subject, d.Versions)
		}
		if v := outlierVersion(d.Versions); bad == "" && v != nil {
			bad = v.Version
		}
		if bad == "" || len(d.Versions) < 2 {
			return fmt.Sprintf("I see no bad version of %s to roll back: %s.", target, versionsText(d.Versions))
		}
		var good []string
		for _, v := range d.Versions {
			if v.Version != bad {
				good = append(good, v.Version)
			}
		}
		slices.Sort(good)
		p.Kind = policy.KindVirtualService
		share, rest := 100/len(good), 100%len(good)
		for i, v := range good {
			w := share
			if i < rest {
				w++
			}
			p.Weights = append(p.Weights, policy.Weight{Version: v, Weight: w})
		}
		p.Weights = append(p.Weights, policy.Weight{Version: bad, Weight: 0})
		for _, v := range d.Versions {
			if v.Version == bad {
				why = append(why, fmt.Sprintf("version %s of %s serves p95 %s with %s errors against %s; routing all traffic to %s takes it out of rotation", bad, target, ms(v.Inbound.P95), pct(v.Inbound.ErrorRatio), othersText(d.Versions, bad), strings.Join(good, ", ")))
			}
		}
	case "outlier":
		p.Kind = policy.KindDestinationRule
		p.OutlierDetection = &policy.Outlier{Consecutive5xxErrors: 5, Interval: "10s", BaseEjectionTime: "30s", MaxEjectionPercent: 50}
		why = append(why, fmt.Sprintf("%s fails %s of %d requests over the last %s; ejecting endpoints after 5 consecutive 5xx for 30s (at most half of them) keeps callers on healthy ones", target, pct(d.Inbound.ErrorRatio), d.Inbound.Requests, d.Window))
	case "pool":
		p.Kind = policy.KindDestinationRule
		p.ConnectionPool = &policy.Pool{ConnectTimeout: "1s", MaxConnections: 1000}
		p.OutlierDetection = &policy.Outlier{ConsecutiveGatewayErrors: 3, Interval: "10s", BaseEjectionTime: "30s", MaxEjectionPercent: 50}
		why = append(why, fmt.Sprintf("callers of %s see %s failures (connection failures included) over the last %s; a 1s connect timeout fails fast and ejecting endpoints after 3 gateway errors moves traffic off unreachable ones", target, pct(d.Inbound.ErrorRatio), d.Window))
	case "strict":
		p.Kind = policy.KindPeerAuthentication
		p.Mode = "STRICT"
		mt := "unknown"
		if d.Inbound.MTLSShare >= 0 {
			mt = pct(d.Inbound.MTLSShare)
		}
		why = append(why, fmt.Sprintf("only %s of the traffic to %s is under mTLS; STRICT refuses plaintext connections (check first that every caller has a sidecar)", mt, target))
	case "deny", "allow":
		n, ok := b.res.resolve(target)
		if !ok {
			return "I could not find " + target + " in the graph."
		}
		callers, err := b.callerPrincipals(n)
		if err != nil || len(callers) == 0 {
			return fmt.Sprintf("I cannot build an AuthorizationPolicy for %s: none of its callers has a known mTLS principal.", target)
		}
		p.Kind = policy.KindAuthorizationPolicy
		if kind == "allow" {
			p.Action = "ALLOW"
			expected := callers
			if lead != nil && (lead.Type == detect.TypeUnexpected || lead.Type == detect.TypePolicy) {
				if src := strings.SplitN(lead.Subject, " -> ", 2)[0]; src != "" {
					expected = slices.DeleteFunc(slices.Clone(callers), func(p string) bool { return strings.HasSuffix(p, "/sa/"+src) })
				}
			}
			if len(expected) == 0 {
				return "I cannot build an allow-list for " + target + ": it has no expected callers with a known principal."
			}
			p.Principals = expected
			why = append(why, fmt.Sprintf("only the callers seen calling %s (%s) are allowed; anything else is refused", target, strings.Join(expected, ", ")))
		} else {
			p.Action = "DENY"
			var src string
			if lead != nil && (lead.Type == detect.TypeUnexpected || lead.Type == detect.TypePolicy) {
				src = strings.SplitN(lead.Subject, " -> ", 2)[0]
			}
			for _, c := range callers {
				if src != "" && strings.HasSuffix(c, "/sa/"+src) {
					p.Principals = []string{c}
				}
			}
			if len(p.Principals) == 0 {
				return fmt.Sprintf("No unexpected caller of %s is firing, so I do not know whom to deny. Its callers are %s; ask for an allow-list to keep only them.", target, strings.Join(callers, ", "))
			}
			why = append(why, fmt.Sprintf("%s started calling %s, an edge not in the learned baseline; denying its principal %s blocks that edge and nothing else", src, target, p.Principals[0]))
		}
	}
	args := map[string]any{"kind": p.Kind, "service": p.Service, "namespace": p.Namespace, "rationale": capitalize(strings.Join(why, "; ")) + ".", "evidence": evidence}
	switch {
	case p.Timeout != "" || p.Retries != nil:
		args["timeout"], args["retries"] = p.Timeout, p.Retries
	case len(p.Weights) > 0:
		args["weights"] = p.Weights
	}
	if p.OutlierDetection != nil {
		args["outlierDetection"] = p.OutlierDetection
	}
	if p.ConnectionPool != nil {
		args["connectionPool"] = p.ConnectionPool
	}
	if p.Action != "" {
		args["action"], args["principals"] = p.Action, p.Principals
	}
	if p.Mode != "" {
		args["mode"] = p.Mode
	}
	res, msg := b.run("propose_policy", args)
	if res == nil {
		return msg
	}
	pr := res.Proposal
	return fmt.Sprintf("I proposed %s for %s (proposal %s, pending). Why: %s It is not applied: an approver must review the YAML and approve it.", kindsOf(*pr), target, pr.ID, pr.Rationale)
}

func versionIn(subject string, vs []VersionFigures) string {
	for _, v := range vs {
		if strings.Contains(subject, "-"+v.Version) || strings.Contains(subject, " "+v.Version) {
			return v.Version
		}
	}
	return ""
}

func versionsText(vs []VersionFigures) string {
	if len(vs) == 0 {
		return "it has a single version"
	}
	return othersText(vs, "")
}

func roundMs(v float64) int {
	step := 10.0
	if v >= 1000 {
		step = 100
	}
	return int(math.Ceil(v/step) * step)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
