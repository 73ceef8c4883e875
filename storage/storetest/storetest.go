package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
)

// Opener returns an empty store for one test; the suite closes it.
type Opener func(tb testing.TB) storage.Store

// Run runs the whole contract against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"HistoryRoundTrip", testHistoryRoundTrip},
		{"SumBuckets", testSumBuckets},
		{"RollupAndRetention", testRollup},
		{"Topology", testTopology},
		{"Blobs", testBlobs},
		{"AnomaliesAndIncidents", testEvents},
		{"ProposalLifecycle", testProposals},
		{"ProposalWithAudit", testProposalWithAudit},
		{"ConcurrentApproval", testConcurrentApproval},
		{"AuditAppendOnly", testAudit},
		{"ChatSessions", testChat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

func ctxOf(t *testing.T) context.Context { return t.Context() }

// statsEqual compares what a replay shows: counters, evidence and the sketch.
func statsEqual(tb testing.TB, what string, got, want *graph.Stats) {
	tb.Helper()
	if got.Requests != want.Requests || got.Errors != want.Errors || got.RequestBytes != want.RequestBytes ||
		got.ResponseBytes != want.ResponseBytes || got.ConnOpened != want.ConnOpened || got.ConnClosed != want.ConnClosed ||
		got.MTLSUnits != want.MTLSUnits || got.PlainUnits != want.PlainUnits || got.Reporters != want.Reporters ||
		got.Signals != want.Signals || got.L4Only != want.L4Only {
		tb.Fatalf("%s: counters differ:\n got %+v\nwant %+v", what, *got, *want)
	}
	if !mapsEqual(got.Codes, want.Codes) || !mapsEqual(got.GRPCCodes, want.GRPCCodes) || !mapsEqual(got.Flags, want.Flags) {
		tb.Fatalf("%s: evidence differs: got %v %v %v want %v %v %v", what, got.Codes, got.GRPCCodes, got.Flags, want.Codes, want.GRPCCodes, want.Flags)
	}
	if got.Latency.Count() != want.Latency.Count() {
		tb.Fatalf("%s: latency count %d, want %d", what, got.Latency.Count(), want.Latency.Count())
	}
	for _, q := range []float64{0.5, 0.95, 0.99} {
		if g, w := got.Latency.Quantile(q), want.Latency.Quantile(q); g != w {
			tb.Fatalf("%s: latency q%.2f %.3f, want %.3f", what, q, g, w)
		}
	}
}

func mapsEqual[K comparable](a, b map[K]uint64) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func edgeKey(src, dst graph.Node, p graph.Protocol) string {
	return src.ID() + ">" + dst.ID() + ">" + p.String()
}

func testHistoryRoundTrip(t *testing.T, s storage.Store) {
	data := Record(t, "bookinfo-ratings-latency", 25*time.Minute)
	ctx := ctxOf(t)
	var all []storage.EdgeBucket
	for _, b := range data.Buckets {
		if err := s.WriteBuckets(ctx, data.Res, b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if len(all) < 100 {
		t.Fatalf("scenario produced only %d edge buckets", len(all))
	}
	// Writing the same buckets again is an upsert, not a duplicate.
	if err := s.WriteBuckets(ctx, data.Res, data.Buckets[3]); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadBuckets(ctx, data.Res, data.Origin, data.Origin.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("read %d buckets, wrote %d", len(got), len(all))
	}
	want := map[string]*storage.EdgeBucket{}
	for i := range all {
		want[all[i].Start.String()+edgeKey(all[i].Source, all[i].Target, all[i].Protocol)] = &all[i]
	}
	for i := range got {
		g := &got[i]
		w := want[g.Start.String()+edgeKey(g.Source, g.Target, g.Protocol)]
		if w == nil {
			t.Fatalf("read a bucket never written: %s %s -> %s", g.Start, g.Source.ID(), g.Target.ID())
		}
		statsEqual(t, fmt.Sprintf("%s %s->%s", g.Start, g.Source.Name(), g.Target.Name()), &g.Stats, &w.Stats)
		if !reflect.DeepEqual(g.Source, w.Source) || !reflect.DeepEqual(g.Target, w.Target) {
			t.Fatalf("node identity changed: %+v -> %+v", w.Source, g.Source)
		}
	}
	last, err := s.LastBucket(ctx, data.Res)
	if err != nil {
		t.Fatal(err)
	}
	if wantLast := data.Buckets[len(data.Buckets)-1][0].Start; !last.Equal(wantLast) {
		t.Fatalf("LastBucket %s, want %s", last, wantLast)
	}
	// A range with nothing in it.
	none, err := s.ReadBuckets(ctx, data.Res, data.Origin.Add(-time.Hour), data.Origin)
	if err != nil || len(none) != 0 {
		t.Fatalf("empty range: %d buckets, err %v", len(none), err)
	}
}

func testSumBuckets(t *testing.T, s storage.Store) {
	data := Record(t, "bookinfo-ratings-latency", 25*time.Minute)
	ctx := ctxOf(t)
	for _, b := range data.Buckets {
		if err := s.WriteBuckets(ctx, data.Res, b); err != nil {
			t.Fatal(err)
		}
	}
	from, to := data.Origin.Add(12*time.Minute), data.Origin.Add(17*time.Minute)
	got, err := s.SumBuckets(ctx, data.Res, from, to)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := data.Graph.RawEdges(to, to.Sub(from))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(raw) {
		t.Fatalf("%d edges summed, graph has %d", len(got), len(raw))
	}
	byKey := map[string]*graph.EdgeSnapshot{}
	for i := range raw {
		e := &raw[i]
		byKey[edgeKey(e.Source, e.Target, e.Protocol)] = e
	}
	for i := range got {
		e := byKey[edgeKey(got[i].Source, got[i].Target, got[i].Protocol)]
		if e == nil {
			t.Fatalf("summed edge %s -> %s not in the graph", got[i].Source.ID(), got[i].Target.ID())
		}
		statsEqual(t, got[i].Source.Name()+"->"+got[i].Target.Name(), &got[i].Stats, &e.Stats)
	}
}

func testRollup(t *testing.T, s storage.Store) {
	data := Record(t, "bookinfo-ratings-latency", 25*time.Minute)
	ctx := ctxOf(t)
	for _, b := range data.Buckets {
		if err := s.WriteBuckets(ctx, data.Res, b); err != nil {
			t.Fatal(err)
		}
	}
	end := data.Origin.Add(25 * time.Minute)
	ret := storage.Retention{Raw: 10 * time.Minute, Minute: 2 * time.Hour, Hour: 24 * time.Hour}
	res, err := s.Rollup(ctx, data.Res, end, end, ret)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written == 0 || res.Deleted == 0 {
		t.Fatalf("rollup wrote %d and deleted %d rows; want both > 0", res.Written, res.Deleted)
	}
	wm, err := s.RolledUpTo(ctx, storage.Res1m)
	if err != nil || !wm.Equal(end) {
		t.Fatalf("minute watermark %s (err %v), want %s", wm, err, end)
	}
	// Minutes hold exactly what the raw buckets held.
	for _, m := range []int{3, 11, 24} {
		from := data.Origin.Add(time.Duration(m) * time.Minute)
		mins, err := s.SumBuckets(ctx, storage.Res1m, from, from.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := data.Graph.RawEdges(from.Add(time.Minute), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(mins) != len(raw) {
			t.Fatalf("minute %d: %d edges, graph %d", m, len(mins), len(raw))
		}
		byKey := map[string]*graph.EdgeSnapshot{}
		for i := range raw {
			byKey[edgeKey(raw[i].Source, raw[i].Target, raw[i].Protocol)] = &raw[i]
		}
		for i := range mins {
			e := byKey[edgeKey(mins[i].Source, mins[i].Target, mins[i].Protocol)]
			if e == nil {
				t.Fatalf("minute %d: unknown edge", m)
			}
			statsEqual(t, fmt.Sprintf("minute %d %s", m, mins[i].Target.Name()), &mins[i].Stats, &e.Stats)
		}
	}
	// Raw rows older than the raw retention are gone, newer ones stay.
	old, err := s.ReadBuckets(ctx, data.Res, data.Origin, end.Add(-ret.Raw))
	if err != nil || len(old) != 0 {
		t.Fatalf("%d raw buckets past retention (err %v)", len(old), err)
	}
	recent, err := s.ReadBuckets(ctx, data.Res, end.Add(-ret.Raw), end)
	if err != nil || len(recent) == 0 {
		t.Fatalf("recent raw buckets dropped (err %v)", err)
	}
	// A second pass has nothing left to do.
	again, err := s.Rollup(ctx, data.Res, end, end, ret)
	if err != nil || again.Written != 0 || again.Deleted != 0 {
		t.Fatalf("second rollup: %+v err %v", again, err)
	}
	// Hours: a pass an hour later folds the minutes of the first hour.
	later := data.Origin.Add(2 * time.Hour)
	if _, err := s.Rollup(ctx, data.Res, later, later, ret); err != nil {
		t.Fatal(err)
	}
	hours, err := s.SumBuckets(ctx, storage.Res1h, data.Origin, data.Origin.Add(time.Hour))
	if err != nil || len(hours) == 0 {
		t.Fatalf("no hour buckets (err %v)", err)
	}
	var req, want uint64
	for i := range hours {
		req += hours[i].Stats.Requests
	}
	for _, b := range data.Buckets {
		for i := range b {
			want += b[i].Stats.Requests
		}
	}
	if req != want {
		t.Fatalf("hour tier holds %d requests, raw held %d", req, want)
	}
}

func testTopology(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	t0 := Origin
	tops := []storage.Topology{
		{At: t0, Nodes: []string{"a", "b"}, Edges: []storage.TopologyEdge{{Source: "a", Target: "b", Protocol: "http"}}},
		{At: t0.Add(time.Minute), Nodes: []string{"a", "b", "c"}, Edges: []storage.TopologyEdge{{Source: "a", Target: "b", Protocol: "http"}, {Source: "b", Target: "c", Protocol: "grpc"}}},
	}
	for _, tp := range tops {
		if err := s.PutTopology(ctx, tp); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		at    time.Time
		found bool
		nodes int
	}{
		{t0.Add(-time.Second), false, 0},
		{t0, true, 2},
		{t0.Add(59 * time.Second), true, 2},
		{t0.Add(time.Hour), true, 3},
	} {
		got, ok, err := s.TopologyAt(ctx, tc.at)
		if err != nil || ok != tc.found || len(got.Nodes) != tc.nodes {
			t.Fatalf("TopologyAt(%s) = %d nodes, %v, %v; want %d, %v", tc.at, len(got.Nodes), ok, err, tc.nodes, tc.found)
		}
	}
}

func testBlobs(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	if _, ok, err := s.Blob(ctx, "detect:state"); ok || err != nil {
		t.Fatalf("blob before write: %v %v", ok, err)
	}
	for _, v := range [][]byte{[]byte(`{"version":1}`), []byte(`{"version":1,"subjects":[]}`)} {
		if err := s.PutBlob(ctx, "detect:state", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Blob(ctx, "detect:state")
		if err != nil || !ok || string(got) != string(v) {
			t.Fatalf("blob = %q %v %v, want %q", got, ok, err, v)
		}
	}
}

func testEvents(t *testing.T, s storage.Store) {
	data := Record(t, "bookinfo-ratings-latency", 25*time.Minute)
	if len(data.Changes) == 0 {
		t.Fatal("scenario produced no detector changes")
	}
	ctx := ctxOf(t)
	at := data.Origin
	for i, c := range data.Changes {
		if err := s.RecordChanges(ctx, at.Add(time.Duration(i)*time.Second), []detect.Change{c}); err != nil {
			t.Fatal(err)
		}
	}
	// The newest form of every anomaly and incident.
	wantA := map[string]detect.Anomaly{}
	wantI := map[string]detect.Incident{}
	perID := map[string]int{}
	for _, c := range data.Changes {
		if c.Anomaly != nil {
			wantA[c.Anomaly.ID] = *c.Anomaly
			perID[c.Anomaly.ID]++
		}
		if c.Incident != nil {
			wantI[c.Incident.ID] = *c.Incident
			perID[c.Incident.ID]++
		}
	}
	got, err := s.Anomalies(ctx, storage.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(wantA) {
		t.Fatalf("%d anomalies stored, want %d", len(got), len(wantA))
	}
	for _, a := range got {
		w := wantA[a.ID]
		if a.State != w.State || a.Type != w.Type || !a.UpdatedAt.Equal(w.UpdatedAt) || a.Subject.String() != w.Subject.String() || a.Summary != w.Summary {
			t.Fatalf("anomaly %s: got %s/%s/%s, want %s/%s/%s", a.ID, a.Type, a.State, a.UpdatedAt, w.Type, w.State, w.UpdatedAt)
		}
	}
	incs, err := s.Incidents(ctx, storage.EventQuery{})
	if err != nil || len(incs) != len(wantI) {
		t.Fatalf("%d incidents stored (err %v), want %d", len(incs), err, len(wantI))
	}
	for id, n := range perID {
		ch, err := s.StateChanges(ctx, id)
		if err != nil || len(ch) != n {
			t.Fatalf("%s: %d state changes (err %v), want %d", id, len(ch), err, n)
		}
	}
	for _, st := range []string{detect.StateFiring, detect.StateResolved} {
		n := 0
		for _, a := range wantA {
			if a.State == st {
				n++
			}
		}
		got, err := s.Anomalies(ctx, storage.EventQuery{State: st})
		if err != nil || len(got) != n {
			t.Fatalf("state %s: %d anomalies (err %v), want %d", st, len(got), err, n)
		}
	}
	if got, err := s.Anomalies(ctx, storage.EventQuery{Limit: 1}); err != nil || len(got) != 1 {
		t.Fatalf("limit 1: %d (err %v)", len(got), err)
	}
}

func testProposals(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	t0 := Origin
	p := storage.Record{ID: "prop-1", Created: t0, State: "pending", Principal: "assistant",
		Payload: json.RawMessage(`{"kind":"VirtualService","name":"ratings","timeout":"2s"}`)}
	if err := s.CreateProposal(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateProposal(ctx, p); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate create: %v, want ErrExists", err)
	}
	got, err := s.Proposal(ctx, "prop-1")
	if err != nil || got.State != "pending" || string(got.Payload) != string(p.Payload) || !got.Created.Equal(t0) {
		t.Fatalf("proposal = %+v, %v", got, err)
	}
	if _, err := s.Proposal(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing proposal: %v", err)
	}
	tests := []struct {
		name     string
		tr       storage.Transition
		wantErr  error
		wantStat string
	}{
		{"approve", storage.Transition{ID: "prop-1", From: "pending", To: "approved", At: t0.Add(time.Minute),
			Approval: &storage.Approval{ID: "appr-1", Principal: "alice", Decision: "approved"},
			Audit:    &storage.AuditEntry{Principal: "alice", Action: "approve", Subject: "prop-1"}}, nil, "approved"},
		{"approve twice", storage.Transition{ID: "prop-1", From: "pending", To: "approved"}, storage.ErrConflict, "approved"},
		{"unknown", storage.Transition{ID: "nope", From: "pending", To: "approved"}, storage.ErrNotFound, ""},
		{"apply", storage.Transition{ID: "prop-1", From: "approved", To: "applied", At: t0.Add(2 * time.Minute)}, nil, "applied"},
	}
	for _, tc := range tests {
		rec, err := s.TransitionProposal(ctx, tc.tr)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%s: err %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || rec.State != tc.wantStat {
			t.Fatalf("%s: %+v, %v", tc.name, rec, err)
		}
	}
	ap, err := s.Approvals(ctx, "prop-1")
	if err != nil || len(ap) != 1 || ap[0].Principal != "alice" || !ap[0].Created.Equal(t0.Add(time.Minute)) {
		t.Fatalf("approvals = %+v, %v", ap, err)
	}
	au, err := s.Audit(ctx, storage.AuditQuery{Subject: "prop-1"})
	if err != nil || len(au) != 1 || au[0].Action != "approve" {
		t.Fatalf("audit = %+v, %v", au, err)
	}
	list, err := s.Proposals(ctx, storage.RecordQuery{State: "applied"})
	if err != nil || len(list) != 1 {
		t.Fatalf("applied proposals = %d, %v", len(list), err)
	}
}

// testConcurrentApproval: several replicas approve at once; exactly one wins.
// testProposalWithAudit: a proposal created with its audit entry is kept
// only with it; when the entry cannot be written the proposal is not either.
func testProposalWithAudit(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	rec := func(id string) storage.Record {
		return storage.Record{ID: id, Created: Origin, State: "pending", Principal: "carol",
			Payload: json.RawMessage(`{"kind":"DestinationRule","service":"reviews"}`)}
	}
	entry := func(id, payload string) storage.AuditEntry {
		return storage.AuditEntry{Principal: "carol", Action: "proposal.created", Subject: id, Payload: json.RawMessage(payload)}
	}
	tests := []struct {
		name       string
		id         string
		audit      storage.AuditEntry
		wantErr    bool
		wantStored bool
	}{
		{"both written", "prop-a1", entry("prop-a1", `{"detail":"via assistant:builtin"}`), false, true},
		{"audit refused, proposal rolled back", "prop-a2", entry("prop-a2", `{broken`), true, false},
	}
	for _, tc := range tests {
		err := s.CreateProposal(ctx, rec(tc.id), tc.audit)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: err %v, want error %v", tc.name, err, tc.wantErr)
		}
		_, perr := s.Proposal(ctx, tc.id)
		if stored := perr == nil; stored != tc.wantStored {
			t.Fatalf("%s: proposal stored %v (%v), want %v", tc.name, stored, perr, tc.wantStored)
		}
		es, err := s.Audit(ctx, storage.AuditQuery{Subject: tc.id})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[tc.wantStored]; len(es) != want {
			t.Fatalf("%s: %d audit entries, want %d", tc.name, len(es), want)
		}
		if tc.wantStored && (es[0].Principal != "carol" || !es[0].At.Equal(Origin)) {
			t.Fatalf("%s: audit entry %+v, want carol at the proposal's creation", tc.name, es[0])
		}
	}
	// The ID of the refused proposal is still free.
	if err := s.CreateProposal(ctx, rec("prop-a2"), entry("prop-a2", `{}`)); err != nil {
		t.Fatalf("create after a refused create: %v", err)
	}
}

func testConcurrentApproval(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	if err := s.CreateProposal(ctx, storage.Record{ID: "prop-race", Created: Origin, State: "pending", Principal: "assistant"}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.TransitionProposal(ctx, storage.Transition{ID: "prop-race", From: "pending", To: "approved",
				Approval: &storage.Approval{ID: fmt.Sprintf("appr-race-%d", i), Principal: fmt.Sprintf("user%d", i), Decision: "approved"}})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, storage.ErrConflict):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	ap, err := s.Approvals(ctx, "prop-race")
	if wins != 1 || err != nil || len(ap) != 1 {
		t.Fatalf("%d winners, %d approvals (err %v); want exactly 1", wins, len(ap), err)
	}
}

func testAudit(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	var last int64
	for i := range 20 {
		seq, err := s.AppendAudit(ctx, storage.AuditEntry{At: Origin.Add(time.Duration(i) * time.Second), Principal: []string{"alice", "bob"}[i%2],
			Action: "chat", Subject: fmt.Sprintf("session-%d", i%3), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		if seq <= last {
			t.Fatalf("seq %d after %d: not increasing", seq, last)
		}
		last = seq
	}
	if _, err := s.AppendAudit(ctx, storage.AuditEntry{Action: "x", Payload: json.RawMessage(`{bad`)}); err == nil {
		t.Fatal("invalid JSON payload accepted")
	}
	tests := []struct {
		q    storage.AuditQuery
		want int
	}{
		{storage.AuditQuery{}, 20},
		{storage.AuditQuery{Principal: "alice"}, 10},
		{storage.AuditQuery{Subject: "session-0"}, 7},
		{storage.AuditQuery{Since: Origin.Add(15 * time.Second)}, 5},
		{storage.AuditQuery{Limit: 3}, 3},
	}
	for _, tc := range tests {
		got, err := s.Audit(ctx, tc.q)
		if err != nil || len(got) != tc.want {
			t.Fatalf("Audit(%+v) = %d, %v; want %d", tc.q, len(got), err, tc.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq <= got[i-1].Seq {
				t.Fatal("audit entries out of order")
			}
		}
	}
	page, _ := s.Audit(ctx, storage.AuditQuery{Limit: 5})
	next, err := s.Audit(ctx, storage.AuditQuery{AfterSeq: page[4].Seq})
	if err != nil || len(next) != 15 {
		t.Fatalf("next page: %d, %v", len(next), err)
	}
}

func testChat(t *testing.T, s storage.Store) {
	ctx := ctxOf(t)
	r := storage.Record{ID: "chat-1", Created: Origin, Updated: Origin, State: "open", Principal: "alice",
		Payload: json.RawMessage(`{"messages":[{"role":"user","content":"why is ratings slow?"}]}`)}
	if err := s.PutChatSession(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Updated = Origin.Add(time.Minute)
	r.Payload = json.RawMessage(`{"messages":[{"role":"user","content":"why is ratings slow?"},{"role":"assistant","content":"ratings p95 rose 8x"}]}`)
	if err := s.PutChatSession(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.ChatSession(ctx, "chat-1")
	if err != nil || string(got.Payload) != string(r.Payload) || !got.Updated.Equal(r.Updated) || !got.Created.Equal(Origin) {
		t.Fatalf("chat session = %+v, %v", got, err)
	}
	if _, err := s.ChatSession(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing session: %v", err)
	}
	if err := s.PutChatSession(ctx, storage.Record{ID: "chat-2", Created: Origin, Updated: Origin, Principal: "bob", State: "open"}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ChatSessions(ctx, storage.RecordQuery{Principal: "alice"})
	if err != nil || len(list) != 1 {
		t.Fatalf("alice's sessions = %d, %v", len(list), err)
	}
}
