package detect

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// A Train-Ticket-like slice: the gateway calls travel (one span per
// request); travel's /trips/left calls basic once and seat twice per span,
// with internal SQL spans; basic calls station.
func structWindow(i int, fault string) []OpStat {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	// Request counts wobble with the window like sampled traffic does.
	n := 12 + (i*7)%5
	travel := OpStat{Node: node("travel"), Operation: "/trips/left", Spans: n,
		Children: map[string]int{"call:basic": n, "call:seat": 2 * n, "op:SELECT trip": n}, SelfMs: 4 + float64(i%3)}
	basic := OpStat{Node: node("basic"), Operation: "/basic/travels", Spans: n,
		Children: map[string]int{"call:station": n}, SelfMs: 2 + float64(i%2)}
	seat := OpStat{Node: node("seat"), Operation: "/seats/left", Spans: 2 * n, SelfMs: 3}
	gw := OpStat{Node: node("gateway"), Operation: "/*", Spans: n, Children: map[string]int{"call:travel": n}, SelfMs: 1}
	switch fault {
	case "travel returns early":
		// travel stops after basic: no seat calls, no SQL; basic and seat
		// see less traffic but behave as before.
		travel.Children = map[string]int{"call:basic": n}
		seat.Spans = 0
	case "travel throws":
		travel.Children = map[string]int{"call:basic": n, "op:BasicErrorController.error": n}
		seat.Spans = 0
	case "basic cpu":
		basic.SelfMs = 40
	}
	out := []OpStat{gw, travel, basic}
	if seat.Spans > 0 {
		out = append(out, seat)
	}
	return out
}

func TestStructure(t *testing.T) {
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		fault string
		want  string // node of the one anomaly, "" for none
		why   string // in its summary
	}{
		{"", "", ""},
		{"travel returns early", "travel", "call:seat 0.00/span vs 2.00"},
		{"travel throws", "travel", "new op:BasicErrorController.error"},
		{"basic cpu", "basic", "self time 40ms"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			eng, st := newTestStructure(t)
			var fired []Anomaly
			eng.Subscribe(func(c Change) {
				if c.Action == "fired" && c.Anomaly != nil {
					fired = append(fired, *c.Anomaly)
				}
			})
			for i := 0; i < 40; i++ {
				f := ""
				if i >= 30 && i < 33 {
					f = tc.fault
				}
				st.Observe(t0.Add(time.Duration(i)*30*time.Second), 30*time.Second, structWindow(i, f))
			}
			if tc.want == "" {
				if len(fired) != 0 {
					t.Fatalf("fired %q, want nothing", fired[0].Summary)
				}
				return
			}
			if len(fired) != 1 {
				for _, a := range fired {
					t.Log(a.Summary)
				}
				t.Fatalf("fired %d anomalies, want 1 on %s", len(fired), tc.want)
			}
			a := fired[0]
			if a.Subject.Node == nil || a.Subject.Node.Name != tc.want {
				t.Fatalf("anomaly on %v, want %s: %s", a.Subject, tc.want, a.Summary)
			}
			if !strings.Contains(a.Summary, tc.why) {
				t.Errorf("summary %q, want it to say %q", a.Summary, tc.why)
			}
			if want := t0.Add(15 * time.Minute); !a.Since.Equal(want) {
				t.Errorf("since %s, want %s", a.Since, want)
			}
			got, _ := eng.Anomaly(a.ID)
			if got.State != StateResolved {
				t.Errorf("anomaly %s, want resolved once the structure is back", got.State)
			}
		})
	}
}

// A service whose structure is hot in many windows needs a stronger change
// to fire again than a quiet one.
func TestStructureNoisyNodeThreshold(t *testing.T) {
	eng, st := newTestStructure(t)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 80; i++ {
		f := ""
		if i >= 30 && i%3 == 0 {
			f = "travel returns early"
		}
		st.Observe(t0.Add(time.Duration(i)*30*time.Second), 30*time.Second, structWindow(i, f))
	}
	n := st.nodes[graph.Node{Workload: "travel", App: "travel", Kind: graph.KindWorkload}.ID()]
	if n == nil || n.hot == 0 || n.judged < 40 {
		t.Fatalf("travel state %+v, want many judged and some hot windows", n)
	}
	fired := 0
	for _, a := range eng.Anomalies(Filter{}) {
		if a.Subject.Node != nil && a.Subject.Node.Name == "travel" {
			fired++
			if a.Baseline <= DefaultStructureConfig().Threshold && a.Since.After(t0.Add(30*time.Minute)) {
				t.Errorf("late anomaly at %s fired at the quiet threshold %.1f", a.Since, a.Baseline)
			}
		}
	}
	if fired == 0 {
		t.Fatal("travel never fired")
	}
}

func TestStructureConfigValidate(t *testing.T) {
	c := DefaultStructureConfig()
	if p := c.Validate(); len(p) != 0 {
		t.Fatalf("default config: %v", p)
	}
	c.Decay, c.SelfRatio, c.Threshold = 0, 1, 0
	if p := c.Validate(); len(p) != 3 {
		t.Fatalf("problems %v, want 3", p)
	}
	if _, err := NewStructure(nil, c); err == nil {
		t.Fatal("NewStructure accepted a bad config")
	}
}

// A service that fired and then has no spans (a gap in the traces) must not
// stay firing until its next span: later, unrelated anomalies would join
// its stale incident.
func TestStructureResolvesAcrossGaps(t *testing.T) {
	eng, st := newTestStructure(t)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	for i := 0; i < 31; i++ {
		f := ""
		if i == 30 {
			f = "basic cpu"
		}
		st.Observe(t0.Add(time.Duration(i)*step), step, structWindow(i, f))
	}
	if n := len(eng.Anomalies(Filter{State: StateFiring})); n != 1 {
		t.Fatalf("%d firing anomalies after the fault window, want 1", n)
	}
	for i := 31; i < 34; i++ {
		st.Observe(t0.Add(time.Duration(i)*step), step, nil)
	}
	if n := len(eng.Anomalies(Filter{State: StateFiring})); n != 0 {
		t.Fatalf("%d anomalies still firing after empty windows, want 0", n)
	}
}

// Network delay on one service: every link it sends on slows (its responses
// to its callers, its requests to its callees). The link's network time is
// judged for both ends; the service common to all slow links adds the most
// time, not its caller (which waits) or its callee (which is fine).
func TestStructureSlowLinksBlameTheCommonEnd(t *testing.T) {
	travel := testNode("travel")
	window := func(i int, delayed graph.Node) []OpStat { return linkWindow(i, delayed, 200) }
	_, st := newTestStructure(t)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	for i := 0; i < 40; i++ {
		st.Observe(t0.Add(time.Duration(i)*step), step, window(i, graph.Node{}))
	}
	at := t0.Add(40 * step)
	scores := st.Observe(at, step, window(40, travel))
	added := map[string]float64{}
	for _, s := range scores {
		added[s.Node.Name()] = s.ExcessMs
	}
	for _, other := range []string{"gateway", "basic", "seat", "station"} {
		if added["travel"] <= added[other] {
			t.Errorf("travel added %.0fms, %s %.0fms; want travel, the end common to every slow link, first (all: %v)", added["travel"], other, added[other], added)
		}
	}
	// A leaf service delayed: its one link is half of its caller's. The
	// caller waits on that link, it did not slow it: it takes little of
	// its time.
	_, st2 := newTestStructure(t)
	for i := 0; i < 40; i++ {
		st2.Observe(t0.Add(time.Duration(i)*step), step, linkWindow(i, graph.Node{}, 0))
	}
	leaf := map[string]float64{}
	for _, s := range st2.Observe(at, step, linkWindow(40, testNode("station"), 200)) {
		leaf[s.Node.Name()] = s.ExcessMs
	}
	if leaf["station"] <= 0 || leaf["basic"] > 0.3*leaf["station"] {
		t.Errorf("station delayed: station added %.0fms, basic (its caller, one slow link of two) %.0fms; want basic under 30%% of station", leaf["station"], leaf["basic"])
	}
	// What RankRecent reads: the window, weighed by age.
	var travelMs float64
	for _, na := range st.AddedMs(at, at, 5*time.Minute) {
		if na.Node.Name == "travel" {
			travelMs = na.Ms
		}
	}
	if travelMs != added["travel"] {
		t.Errorf("AddedMs gives travel %.0fms, the window said %.0fms", travelMs, added["travel"])
	}
	if got := st.AddedMs(at.Add(time.Minute), at.Add(2*time.Minute), 0); len(got) != 0 {
		t.Errorf("AddedMs of a later period: %v, want nothing", got)
	}
}

// A slow leg is its sender's: a delayed basic stretches the request leg of
// its call to station, a leaf whose only link that is; station sent
// nothing slow and takes none of it (by shares alone both ends of that link
// had every link slow). A CPU-starved station queues basic's requests (the
// same leg) while its own work slows: then it is the busy end that takes it.
func TestStructureSlowLegBlamesItsSender(t *testing.T) {
	basic, station := testNode("basic"), testNode("station")
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	withStation := func(i int, ops []OpStat, selfMs, queueMs float64) []OpStat {
		for j := range ops {
			if ops[j].Node == basic && ops[j].Peer == station {
				ops[j].ReqMs += queueMs
				ops[j].SelfMs += queueMs
			}
		}
		return append(ops, OpStat{Node: station, Operation: "/stations", Spans: ops[0].Spans, SelfMs: selfMs + float64(i%2)/2})
	}
	var why map[string][]string
	run := func(last []OpStat) map[string]float64 {
		_, st := newTestStructure(t)
		for i := 0; i < 40; i++ {
			st.Observe(t0.Add(time.Duration(i)*step), step, withStation(i, linkWindow(i, graph.Node{}, 0), 2, 0))
		}
		added := map[string]float64{}
		why = map[string][]string{}
		for _, s := range st.Observe(t0.Add(40*step), step, last) {
			added[s.Node.Name()] = s.ExcessMs
			why[s.Node.Name()] = s.Reasons
		}
		return added
	}
	delay := run(withStation(40, linkWindow(40, basic, 200), 2, 0))
	// The explanation says which way the calls slowed.
	if r := strings.Join(why["basic"], "; "); !strings.Contains(r, "basic -> station: network time") || !strings.Contains(r, "in the requests") || !strings.Contains(r, "in the replies") {
		t.Errorf("basic's reasons %q, want its slow requests to station and its slow replies to travel", r)
	}
	if delay["basic"] <= 0 || delay["station"] > 0.1*delay["basic"] || delay["travel"] > 0.3*delay["basic"] {
		t.Errorf("basic's egress delayed: basic added %.0fms, station %.0fms, travel %.0fms; want station under 10%% and travel under 30%% of basic",
			delay["basic"], delay["station"], delay["travel"])
	}
	cpu := run(withStation(40, linkWindow(40, graph.Node{}, 0), 40, 30))
	if cpu["station"] <= 0 || cpu["basic"] > 0.3*cpu["station"] {
		t.Errorf("station starved: station added %.0fms, basic %.0fms; want basic under 30%% of station", cpu["station"], cpu["basic"])
	}
}

// A login service called once a window, and calling once: a delayed
// egress stretches the response it sends and the request it makes. Legs
// name it the sender of both slow legs, so each link's whole score is its;
// with the legs unknown either end may have slowed each link, and it takes
// half.
func TestStructureSentLegsScoreWhole(t *testing.T) {
	gw, auth, code := testNode("gateway"), testNode("auth"), testNode("verify")
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	window := func(i int, delayMs float64, legs bool) []OpStat {
		link := func(from, to graph.Node, req, resp float64) OpStat {
			o := OpStat{Node: from, Operation: "HTTP POST -> " + to.Name(), Spans: 1, Children: map[string]int{"call:" + to.Name(): 1},
				SelfMs: req + resp, Peer: to}
			if legs {
				o.ReqMs, o.RespMs = req, resp
			}
			return o
		}
		j := float64(i%3) / 4
		return []OpStat{
			{Node: auth, Operation: "/login", Spans: 1, SelfMs: 4 + j},
			link(gw, auth, 1.5+j, 1+delayMs),
			link(auth, code, 1.5+delayMs, 1+j),
		}
	}
	score := func(legs bool) float64 {
		_, st := newTestStructure(t)
		for i := 0; i < 40; i++ {
			st.Observe(t0.Add(time.Duration(i)*step), step, window(i, 0, legs))
		}
		for _, sc := range st.Observe(t0.Add(40*step), step, window(40, 200, legs)) {
			if sc.Node == auth {
				return sc.Score
			}
		}
		return 0
	}
	thr := DefaultStructureConfig().Threshold
	known, unknown := score(true), score(false)
	if known < thr || unknown > known/2+0.01 {
		t.Errorf("auth scores %.1f with legs, %.1f without; want at least the threshold %.0f with, and half of it without", known, unknown, thr)
	}
}

// The pods' clocks disagree by 40 ms: travel's call to basic seems to
// spend 41 ms before basic starts and to end before basic does. Then
// basic's egress slows by 30 ms. Against the legs as they are, the request
// leg still looks like the long one and the time would be travel's; against
// each leg's own baseline only the response leg grew, so it is basic's.
func TestStructureLegsAgainstTheirBaselines(t *testing.T) {
	gw, travel, basic := testNode("gateway"), testNode("travel"), testNode("basic")
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	window := func(i int, delayMs float64) []OpStat {
		j := float64(i%3) / 4
		return []OpStat{
			{Node: travel, Operation: "/trips", Spans: 10, SelfMs: 4 + j},
			{Node: gw, Operation: "GET -> travel", Spans: 10, Children: map[string]int{"call:travel": 10}, SelfMs: 3 + j, ReqMs: 1.5 + j, RespMs: 1.5, Peer: travel},
			{Node: travel, Operation: "POST -> basic", Spans: 10, Children: map[string]int{"call:basic": 10}, SelfMs: 3 + j + delayMs,
				ReqMs: 41.5 + j, RespMs: -38.5 + delayMs, Peer: basic},
		}
	}
	_, st := newTestStructure(t)
	for i := 0; i < 40; i++ {
		st.Observe(t0.Add(time.Duration(i)*step), step, window(i, 0))
	}
	added := map[string]float64{}
	for _, sc := range st.Observe(t0.Add(40*step), step, window(40, 30)) {
		added[sc.Node.Name()] = sc.ExcessMs
	}
	if added["basic"] <= 0 || added["travel"] > 0.2*added["basic"] {
		t.Errorf("basic's egress delayed under clock skew: basic added %.0fms, travel %.0fms; want basic, travel under 20%%", added["basic"], added["travel"])
	}
}

func testNode(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }

// linkWindow is one window of a small mesh (gateway -> travel, seat;
// travel -> basic, seat; basic -> station) whose links to and from delayed
// take delayMs more: delayed's egress is slow, so the request legs of the
// calls it makes and the response legs of those it answers.
func linkWindow(i int, delayed graph.Node, delayMs float64) []OpStat {
	gw, travel, basic, seat, station := testNode("gateway"), testNode("travel"), testNode("basic"), testNode("seat"), testNode("station")
	n := 10 + (i*7)%4
	link := func(from, to graph.Node, ms float64) OpStat {
		req, resp := 0.6*ms, 0.4*ms
		switch delayed {
		case from:
			req += delayMs
		case to:
			resp += delayMs
		}
		return OpStat{Node: from, Operation: "HTTP GET -> " + to.Name(), Spans: n, Children: map[string]int{"call:" + to.Name(): n},
			SelfMs: req + resp, ReqMs: req, RespMs: resp, Peer: to}
	}
	return []OpStat{
		{Node: travel, Operation: "/trips/left", Spans: n, SelfMs: 4 + float64(i%3)},
		{Node: basic, Operation: "/basic/travels", Spans: n, SelfMs: 2 + float64(i%2)},
		link(gw, travel, 3+float64(i%2)), link(gw, seat, 3), link(travel, basic, 2.5), link(travel, seat, 2+float64(i%3)/2), link(basic, station, 1.5),
	}
}

// Fault injections come in runs on one service, with traces only around
// each (as in the Nezha dataset): the first delay must not become the
// baseline, the usual noise or a raised threshold that hides the second.
// The caller's link to the delayed service is its caller's operation, and
// the caller is not hot, so it is the slow link itself that must not be
// learned.
func TestStructureRepeatedFaultOnOneService(t *testing.T) {
	travel := testNode("travel")
	eng, st := newTestStructure(t)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	// 5 normal windows, travel delayed for 8, 2 normal, delayed for 6:
	// most of what the first run saw was the fault.
	var at []time.Time
	i := 0
	for _, part := range []struct {
		n       int
		delayed bool
	}{{5, false}, {8, true}, {2, false}, {6, true}} {
		from := t0.Add(time.Duration(i) * step)
		for range part.n {
			d := graph.Node{}
			if part.delayed {
				d = travel
			}
			st.Observe(t0.Add(time.Duration(i)*step), step, linkWindow(i, d, 50))
			i++
		}
		if part.delayed {
			at = append(at, from)
		}
	}
	fired := map[time.Time]Anomaly{}
	for _, a := range eng.Anomalies(Filter{}) {
		if a.Subject.Node != nil && a.Subject.Node.Name == "travel" {
			fired[a.Since] = a
		}
	}
	for _, since := range at {
		if _, ok := fired[since]; !ok {
			t.Fatalf("travel's delay from %s did not fire (fired: %v)", since.Format("15:04:05"), fired)
		}
	}
	again := fired[at[1]]
	if thr := DefaultStructureConfig().Threshold; again.Baseline != thr {
		t.Errorf("the second delay fired at threshold %.1f, want the quiet %.1f: one earlier fault is not noise", again.Baseline, thr)
	}
	if !strings.Contains(again.Summary, "gateway -> travel") {
		t.Errorf("the second delay's summary %q does not name the caller's link gateway -> travel", again.Summary)
	}
	addedIn := func(from time.Time) float64 {
		for _, na := range st.AddedMs(from, from.Add(5*step), 0) {
			if na.Node.Name == "travel" {
				return na.Ms
			}
		}
		return 0
	}
	first, second := addedIn(at[0]), addedIn(at[1])
	if first <= 0 || second < 0.8*first {
		t.Errorf("travel added %.0fms in its first delay and %.0fms in its second; want the second as plain as the first", first, second)
	}
}

func newTestStructure(t *testing.T) (*Engine, *Structure) {
	t.Helper()
	eng, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStructure(eng, DefaultStructureConfig())
	if err != nil {
		t.Fatal(err)
	}
	return eng, st
}

// An operation that is slow in most windows is how that service runs, not
// a fault: it stops firing and its slow windows add no time. One slow in
// every third window stays a sure shift each time, but what its service
// adds then is its usual noise, not added time. A real slowdown elsewhere
// keeps its full added time.
func TestStructureLearnsChronicSlowness(t *testing.T) {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	order, seat, basic := node("order"), node("seat"), node("basic")
	window := func(i int, basicMs float64) []OpStat {
		orderMs, seatMs := 0.6, 0.6
		if i%5 < 3 {
			orderMs = 3 // a database slow in three windows of five
		}
		if i%3 == 0 {
			seatMs = 3 // one slow in every third window
		}
		return []OpStat{
			{Node: order, Operation: "SELECT ts.orders", Spans: 10, SelfMs: orderMs},
			{Node: seat, Operation: "SELECT ts.seats", Spans: 10, SelfMs: seatMs},
			{Node: basic, Operation: "/basic/travels", Spans: 10, SelfMs: basicMs},
		}
	}
	eng, st := newTestStructure(t)
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	step := 30 * time.Second
	orderFiring := 0
	for i := 0; i < 90; i++ {
		st.Observe(t0.Add(time.Duration(i)*step), step, window(i, 2+float64(i%2)))
		if i < 60 {
			continue
		}
		for _, a := range eng.Anomalies(Filter{State: StateFiring}) {
			if a.Subject.Node.Name == "order" {
				orderFiring++
			}
		}
	}
	if orderFiring > 0 {
		t.Errorf("order fired in %d of the last 30 windows though it is slow in most windows, want 0", orderFiring)
	}
	at := t0.Add(90 * step) // i = 90: a slow window of order and of seat
	raw := map[string]float64{}
	for _, sc := range st.Observe(at, step, window(90, 60)) {
		raw[sc.Node.Name()] = sc.ExcessMs
	}
	if raw["order"] > 0 {
		t.Errorf("order's usual self time counts as %.0fms of excess, want none", raw["order"])
	}
	added := map[string]float64{}
	for _, na := range st.AddedMs(at, at, 0) {
		added[na.Node.Name] = na.Ms
	}
	if raw["seat"] <= 0 || added["seat"] > 0 {
		t.Errorf("seat's slow window: %.0fms excess, %.0fms added; want some excess (a sure shift) but none added (its usual noise)", raw["seat"], added["seat"])
	}
	if added["basic"] < 500 {
		t.Errorf("basic slowed from ~2.5ms to 60ms on 10 spans: %.0fms added, want >= 500", added["basic"])
	}
}

// Operation names with IDs in them (GET /users/1234) must not grow the
// baselines without bound.
func TestStructureBoundsOperations(t *testing.T) {
	_, st := newTestStructure(t)
	n := graph.Node{Workload: "users", App: "users", Kind: graph.KindWorkload}
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	for w := 0; w < 3; w++ {
		ops := make([]OpStat, 0, 10000)
		for i := 0; i < 10000; i++ {
			ops = append(ops, OpStat{Node: n, Operation: fmt.Sprintf("GET /users/%d", w*10000+i), Spans: 1, SelfMs: 1,
				Children: map[string]int{fmt.Sprintf("op:SELECT user %d", i%100): 1}})
		}
		st.Observe(t0.Add(time.Duration(w)*30*time.Second), 30*time.Second, ops)
	}
	if len(st.ops) > maxOps {
		t.Errorf("%d operation baselines, want at most %d", len(st.ops), maxOps)
	}
	one := []OpStat{{Node: n, Operation: "GET /users", Spans: 1, Children: map[string]int{}}}
	for i := 0; i < 200; i++ {
		one[0].Children[fmt.Sprintf("op:SELECT %d", i)] = 1
	}
	_, st = newTestStructure(t)
	st.Observe(t0, 30*time.Second, one)
	if b := st.ops[opKey(n, "GET /users")]; b == nil || len(b.children) > maxChildKinds {
		t.Errorf("child kinds of one operation: %v, want at most %d", b, maxChildKinds)
	}
}

// Links with no baseline yet (the first windows after a start, a new link)
// are judged against the window's other links: the end whose links all take
// many times the usual network time fires in the very first window. A
// cluster slow everywhere, a lone slow link among normal ones for each end,
// or too few links to compare fires nothing.
func TestStructureJudgesNewLinksAcrossTheWindow(t *testing.T) {
	node := func(n string) graph.Node { return graph.Node{Workload: n, App: n, Kind: graph.KindWorkload} }
	names := []string{"gateway", "travel", "basic", "seat", "station", "route", "price", "train", "config", "order"}
	// A mesh of links (a -> b) with 2-5 ms network time.
	pairs := [][2]int{{0, 1}, {1, 2}, {1, 3}, {2, 4}, {2, 5}, {2, 6}, {2, 7}, {3, 8}, {3, 9}, {0, 9}, {5, 4}, {7, 4}}
	for _, tc := range []struct {
		name  string
		links int // how many of pairs the window has
		slow  func(a, b string) float64
		want  string // the node that fires, "" for none
	}{
		{"basic delayed", len(pairs), func(a, b string) float64 {
			if a == "basic" || b == "basic" {
				return 60
			}
			return 0
		}, "basic"},
		{"all slow alike", len(pairs), func(a, b string) float64 { return 60 }, ""},
		{"one slow link, both ends busy elsewhere", len(pairs), func(a, b string) float64 {
			if a == "basic" && b == "station" {
				return 60
			}
			return 0
		}, ""},
		{"too few links to compare", 6, func(a, b string) float64 {
			if a == "basic" || b == "basic" {
				return 60
			}
			return 0
		}, ""},
		{"nothing slow", len(pairs), func(a, b string) float64 { return 0 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, st := newTestStructure(t)
			var fired []Anomaly
			eng.Subscribe(func(c Change) {
				if c.Action == "fired" && c.Anomaly != nil {
					fired = append(fired, *c.Anomaly)
				}
			})
			var ops []OpStat
			for i, p := range pairs[:tc.links] {
				a, b := node(names[p[0]]), node(names[p[1]])
				ms := 2 + float64(i%4) + tc.slow(a.Name(), b.Name())
				ops = append(ops, OpStat{Node: a, Operation: "HTTP GET -> " + b.Name(), Spans: 6, Children: map[string]int{"call:" + b.Name(): 6}, SelfMs: ms, Peer: b})
			}
			t0 := time.Date(2023, 1, 29, 8, 43, 0, 0, time.UTC)
			scores := st.Observe(t0, time.Minute, ops)
			if tc.want == "" {
				for _, a := range fired {
					t.Errorf("fired %q, want nothing", a.Summary)
				}
				return
			}
			if len(fired) != 1 || fired[0].Subject.Node == nil || fired[0].Subject.Node.Name != tc.want {
				for _, a := range fired {
					t.Log(a.Summary)
				}
				t.Fatalf("fired %d anomalies, want one on %s", len(fired), tc.want)
			}
			if !strings.Contains(fired[0].Summary, "on the window's links") {
				t.Errorf("summary %q does not say what it was compared with", fired[0].Summary)
			}
			added := map[string]float64{}
			for _, s := range scores {
				added[s.Node.Name()] = s.ExcessMs
			}
			for n, ms := range added {
				if n != tc.want && ms >= added[tc.want] {
					t.Errorf("%s added %.0fms, %s %.0fms: want the delayed end first", n, ms, tc.want, added[tc.want])
				}
			}
		})
	}
}

// The structure baselines travel in the engine's State: an engine restored
// from it judges the first window after a restart, where a fresh one has
// nothing to compare with. Imported state is held to the live bounds.
func TestStructureStateRoundTrip(t *testing.T) {
	t0 := time.Date(2023, 1, 29, 8, 0, 0, 0, time.UTC)
	eng, st := newTestStructure(t)
	for i := 0; i < 30; i++ {
		st.Observe(t0.Add(time.Duration(i)*30*time.Second), 30*time.Second, structWindow(i, ""))
	}
	b, err := json.Marshal(eng.ExportState())
	if err != nil {
		t.Fatal(err)
	}
	var state State
	if err := json.Unmarshal(b, &state); err != nil {
		t.Fatal(err)
	}
	if state.Structure == nil || len(state.Structure.Ops) != 4 || len(state.Structure.Nodes) != 4 {
		t.Fatalf("exported structure %+v, want the 4 operations and 4 services", state.Structure)
	}
	firstWindow := func(restore bool) []Anomaly {
		e2, st2 := newTestStructure(t)
		if restore {
			if err := e2.ImportState(state); err != nil {
				t.Fatal(err)
			}
		}
		var fired []Anomaly
		e2.Subscribe(func(c Change) {
			if c.Action == "fired" && c.Anomaly != nil {
				fired = append(fired, *c.Anomaly)
			}
		})
		// A restart spans a few windows; the first one after it has the fault.
		st2.Observe(t0.Add(32*30*time.Second), 30*time.Second, structWindow(32, "basic cpu"))
		return fired
	}
	if fired := firstWindow(true); len(fired) != 1 || fired[0].Subject.Node.Name != "basic" {
		t.Errorf("restored engine fired %v, want basic's slowdown at once", fired)
	}
	if fired := firstWindow(false); len(fired) != 0 {
		t.Errorf("fresh engine fired %v, want nothing without a baseline", fired)
	}

	// Bounds: child kinds and self-time history are cut, bad counts dropped.
	big := &StructureState{Ops: []StructOpState{
		{Node: graph.Node{Workload: "a", Kind: graph.KindWorkload}, Operation: "op", N: 50, Children: map[string]float64{}, SelfLog: make([]float64, 500),
			Legs: append(make([][2]float64, 499), [2]float64{math.NaN(), 1})},
		{Node: graph.Node{Workload: "b", Kind: graph.KindWorkload}, Operation: "op", N: -1},
	}}
	for i := 0; i < 200; i++ {
		big.Ops[0].Children[fmt.Sprintf("call:%d", i)] = 1
	}
	e3, _ := newTestStructure(t)
	if err := e3.ImportState(State{Version: 1, Structure: big}); err != nil {
		t.Fatal(err)
	}
	got := e3.ExportState().Structure
	if len(got.Ops) != 1 || len(got.Ops[0].Children) != maxChildKinds || len(got.Ops[0].SelfLog) != selfWindows {
		t.Errorf("imported %d ops, %d child kinds, %d self times; want 1, %d, %d", len(got.Ops), len(got.Ops[0].Children), len(got.Ops[0].SelfLog), maxChildKinds, selfWindows)
	}
	// Link legs: the last selfWindows, the one that is not finite left out.
	if n := len(got.Ops[0].Legs); n != selfWindows-1 {
		t.Errorf("imported %d leg pairs, want %d", n, selfWindows-1)
	}
}
