package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
	"github.com/meshlens/meshlens/storage/storetest"
	"github.com/meshlens/meshlens/web"
)

// run plays a scenario for d through g (and eng's hooks) in virtual time.
func run(tb testing.TB, scenario string, g *graph.Graph, from time.Time, d time.Duration) {
	tb.Helper()
	sc, err := fixtures.Load(scenario)
	if err != nil {
		tb.Fatal(err)
	}
	sim := fixtures.NewSimulator(sc, 7)
	sim.SetOrigin(storetest.Origin)
	for t := from; t.Before(from.Add(d)); t = t.Add(storage.Res10s) {
		g.Ingest(sim.Step(t, t.Add(storage.Res10s)))
		g.Advance(t.Add(storage.Res10s))
	}
}

func newPipeline(tb testing.TB) (*graph.Graph, *detect.Engine) {
	tb.Helper()
	g := graph.New(graph.Config{Resolution: storage.Res10s, Window: time.Hour, RawLatency: time.Hour})
	eng, err := detect.New(detect.DefaultConfig(), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	eng.Attach(g)
	return g, eng
}

func testConfig() storage.Config {
	cfg := storage.DefaultConfig()
	cfg.FlushInterval = time.Hour // the tests flush explicitly
	cfg.StateInterval = time.Hour
	return cfg
}

// TestRestartRestoresGraphAndBaselines records a run, "restarts" into a new
// graph and engine, and checks both come back as they were.
func TestRestartRestoresGraphAndBaselines(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	cfg := testConfig()
	cfg.DataDir = dir

	g1, eng1 := newPipeline(t)
	w1, err := storage.Wire(ctx, storage.WireOptions{Config: cfg, Graph: g1, Detect: eng1, Now: func() time.Time { return storetest.Origin }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int64
	eng1.Subscribe(func(detect.Change) { changes.Add(1) })
	run(t, "bookinfo-ratings-latency", g1, storetest.Origin, 20*time.Minute)
	if err := w1.Recorder.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w1.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if changes.Load() == 0 {
		t.Fatal("the scenario fired no detector changes")
	}
	end := storetest.Origin.Add(20 * time.Minute)

	g2, eng2 := newPipeline(t)
	w2, err := storage.Wire(ctx, storage.WireOptions{Config: cfg, Graph: g2, Detect: eng2, Now: func() time.Time { return end }})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Shutdown(ctx)
	if !w2.Restored.Baseline || w2.Restored.Buckets == 0 {
		t.Fatalf("restored %+v; want baselines and buckets", w2.Restored)
	}
	// The last closed bucket is the one before the grace bucket.
	if want := end.Add(-storage.Res10s); !w2.Restored.UpTo.Equal(want) {
		t.Fatalf("restored up to %s, want %s", w2.Restored.UpTo, want)
	}
	at := w2.Restored.UpTo
	for _, view := range []graph.View{graph.ViewWorkload, graph.ViewApp, graph.ViewService} {
		q := graph.Query{View: view, Window: 15 * time.Minute, At: at}
		s1, err := g1.Snapshot(q)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := g2.Snapshot(q)
		if err != nil {
			t.Fatal(err)
		}
		compareSnapshots(t, view.String(), s1, s2)
	}
	st1, st2 := stateJSON(eng1.ExportState()), stateJSON(eng2.ExportState())
	if string(st1) != string(st2) {
		t.Fatalf("detector baselines differ after restore (%d vs %d bytes)", len(st1), len(st2))
	}
	stored, err := w2.Store.Anomalies(ctx, storage.EventQuery{})
	if err != nil || len(stored) != len(eng1.Anomalies(detect.Filter{})) {
		t.Fatalf("%d anomalies stored (err %v), engine held %d", len(stored), err, len(eng1.Anomalies(detect.Filter{})))
	}
}

// stateJSON is the engine's state with its map-ordered lists sorted.
func stateJSON(st detect.State) string {
	slices.SortFunc(st.Subjects, func(a, b detect.SubjectState) int { return strings.Compare(a.Key, b.Key) })
	slices.SortFunc(st.Edges, func(a, b detect.EdgeState) int {
		return strings.Compare(a.Source.ID()+">"+a.Target.ID(), b.Source.ID()+">"+b.Target.ID())
	})
	slices.SortFunc(st.Nodes, func(a, b detect.NodeState) int { return strings.Compare(a.ID, b.ID) })
	b, _ := json.Marshal(st)
	return string(b)
}

// compareSnapshots checks two snapshots show the same edges with the same
// statistics (the primary view; source-reported stats are not stored).
func compareSnapshots(tb testing.TB, what string, want, got *graph.Snapshot) {
	tb.Helper()
	if len(want.Edges) == 0 {
		tb.Fatalf("%s: empty reference snapshot", what)
	}
	wj, gj := web.GraphJSONOf(want, web.DefaultHealth), web.GraphJSONOf(got, web.DefaultHealth)
	if !want.Start.Equal(got.Start) || !want.End.Equal(got.End) {
		tb.Fatalf("%s: window [%s, %s), want [%s, %s)", what, got.Start, got.End, want.Start, want.End)
	}
	if len(wj.Elements.Edges) != len(gj.Elements.Edges) || len(wj.Elements.Nodes) != len(gj.Elements.Nodes) {
		tb.Fatalf("%s: %d nodes %d edges, want %d and %d", what, len(gj.Elements.Nodes), len(gj.Elements.Edges), len(wj.Elements.Nodes), len(wj.Elements.Edges))
	}
	for i := range wj.Elements.Edges {
		w, g := wj.Elements.Edges[i].Data, gj.Elements.Edges[i].Data
		w.SourceReported, g.SourceReported = nil, nil
		w.FirstSeen, g.FirstSeen, w.LastSeen, g.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		a, _ := json.Marshal(w)
		b, _ := json.Marshal(g)
		if string(a) != string(b) {
			tb.Fatalf("%s: edge %s differs:\n got %s\nwant %s", what, w.ID, b, a)
		}
	}
	for i := range wj.Elements.Nodes {
		a, _ := json.Marshal(wj.Elements.Nodes[i].Data)
		b, _ := json.Marshal(gj.Elements.Nodes[i].Data)
		if string(a) != string(b) {
			tb.Fatalf("%s: node differs:\n got %s\nwant %s", what, b, a)
		}
	}
}

// history writes a recorded scenario into a fresh store, rolled up.
func history(tb testing.TB, scenario string, d time.Duration) (storage.Store, *storetest.Data) {
	tb.Helper()
	data := storetest.Record(tb, scenario, d)
	s := openSQLite(tb)
	tb.Cleanup(func() { s.Close() })
	for _, b := range data.Buckets {
		if err := s.WriteBuckets(context.Background(), data.Res, b); err != nil {
			tb.Fatal(err)
		}
	}
	end := data.Origin.Add(d)
	if _, err := s.Rollup(context.Background(), data.Res, end, end, storage.DefaultConfig().Retention); err != nil {
		tb.Fatal(err)
	}
	return s, data
}

func TestReplayFromHistoryMatchesLiveGraph(t *testing.T) {
	s, data := history(t, "bookinfo-ratings-latency", 25*time.Minute)
	// An empty live graph: every query goes to storage.
	replay := storage.NewReplay(graph.New(graph.Config{Resolution: storage.Res10s}), s, storage.DefaultConfig().Retention)
	tests := []struct {
		name   string
		at     time.Time
		window time.Duration
		view   graph.View
	}{
		{"raw tier, unaligned", data.Origin.Add(12*time.Minute + 35*time.Second), 5 * time.Minute, graph.ViewWorkload},
		{"minute tier, aligned", data.Origin.Add(15 * time.Minute), 5 * time.Minute, graph.ViewApp},
		{"versioned app", data.Origin.Add(20 * time.Minute), 10 * time.Minute, graph.ViewVersionedApp},
		{"service view, 30s", data.Origin.Add(11*time.Minute + 10*time.Second), 30 * time.Second, graph.ViewService},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := graph.Query{View: tc.view, Window: tc.window, At: tc.at}
			want, err := data.Graph.Snapshot(q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := replay.Snapshot(q)
			if err != nil {
				t.Fatal(err)
			}
			compareSnapshots(t, tc.name, want, got)
		})
	}
}

func TestDiffFindsWhatChanged(t *testing.T) {
	tests := []struct {
		scenario       string
		before, after  time.Duration
		wantAddedEdge  string // substring of an added edge's id
		wantTopP95Dest string // substring of the top p95 change's target
	}{
		{"bookinfo-ratings-latency", 9 * time.Minute, 16 * time.Minute, "", "ratings"},
		{"boutique-unexpected-edge", 9 * time.Minute, 16 * time.Minute, "redis-cart", ""},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			s, data := history(t, tc.scenario, 20*time.Minute)
			replay := storage.NewReplay(graph.New(graph.Config{Resolution: storage.Res10s}), s, storage.DefaultConfig().Retention)
			srv := httptest.NewServer(storage.NewAPI(s, replay, nil).Handler())
			defer srv.Close()
			u := srv.URL + "/api/v1/graph/diff?window=3m&from=" + data.Origin.Add(tc.before).Format(time.RFC3339) + "&to=" + data.Origin.Add(tc.after).Format(time.RFC3339)
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var d storage.DiffJSON
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				t.Fatal(err)
			}
			if tc.wantAddedEdge != "" {
				found := false
				for _, e := range d.Edges.Added {
					found = found || strings.Contains(e.Target, tc.wantAddedEdge)
				}
				if !found {
					t.Fatalf("no added edge to %s in %+v", tc.wantAddedEdge, d.Edges.Added)
				}
			} else if len(d.Edges.Added)+len(d.Edges.Removed) != 0 {
				t.Fatalf("edges added/removed in a latency fault: %+v %+v", d.Edges.Added, d.Edges.Removed)
			}
			if tc.wantTopP95Dest != "" {
				if len(d.Changes.P95) == 0 || !strings.Contains(d.Changes.P95[0].Target, tc.wantTopP95Dest) {
					t.Fatalf("top p95 change %+v, want target %s", d.Changes.P95, tc.wantTopP95Dest)
				}
				if c := d.Changes.P95[0]; c.After <= c.Before {
					t.Fatalf("p95 did not rise: %+v", c)
				}
			}
		})
	}
}

func TestAPIBadRequests(t *testing.T) {
	s := openSQLite(t)
	defer s.Close()
	replay := storage.NewReplay(graph.New(graph.Config{}), s, storage.DefaultConfig().Retention)
	srv := httptest.NewServer(storage.NewAPI(s, replay, nil).Handler())
	defer srv.Close()
	tests := []struct {
		path string
		code int
	}{
		{"/api/v1/graph/diff?to=2026-03-02T09:00:00Z", 400},
		{"/api/v1/graph/diff?from=yesterday&to=2026-03-02T09:00:00Z", 400},
		{"/api/v1/graph/diff?from=2026-03-02T09:00:00Z&to=2026-03-02T09:10:00Z&window=-1m", 400},
		{"/api/v1/graph/diff?from=2026-03-02T09:00:00Z&to=2026-03-02T09:10:00Z&view=galaxy", 400},
		{"/api/v1/graph/diff?from=2026-03-02T09:00:00Z&to=2026-03-02T09:10:00Z", 200},
		{"/api/v1/history/anomalies?limit=-3", 400},
		{"/api/v1/history/anomalies?since=noon", 400},
		{"/api/v1/history/anomalies?state=firing", 200},
		{"/api/v1/history/incidents", 200},
		{"/api/v1/history/changes", 400},
		{"/api/v1/history/changes?id=anom-1", 200},
		{"/api/v1/audit?after=x", 400},
		{"/api/v1/audit?principal=alice", 200},
		{"/api/v1/storage/status", 200},
	}
	for _, tc := range tests {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, resp.StatusCode, tc.code)
		}
	}
}

// flaky fails writes while down is set, like a full or read-only disk.
type flaky struct {
	storage.Store
	down atomic.Bool
}

var errDiskFull = errors.New("database or disk is full")

func (f *flaky) WriteBuckets(ctx context.Context, res time.Duration, b []storage.EdgeBucket) error {
	if f.down.Load() {
		return errDiskFull
	}
	return f.Store.WriteBuckets(ctx, res, b)
}

func (f *flaky) RecordChanges(ctx context.Context, at time.Time, c []detect.Change) error {
	if f.down.Load() {
		return errDiskFull
	}
	return f.Store.RecordChanges(ctx, at, c)
}

// TestRecorderKeepsDataWhileWritesFail: while the disk refuses writes the
// recorder is not ready and holds its data; once writes succeed nothing is lost.
func TestRecorderKeepsDataWhileWritesFail(t *testing.T) {
	ctx := t.Context()
	fs := &flaky{Store: openSQLite(t)}
	defer fs.Close()
	g, eng := newPipeline(t)
	rec, err := storage.NewRecorder(fs, testConfig(), g, eng, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.Attach(g, eng)
	if err := rec.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer rec.Shutdown(ctx)
	var fired []string
	eng.Subscribe(func(c detect.Change) {
		if c.Anomaly != nil && c.Action == "fired" {
			fired = append(fired, c.Anomaly.ID)
		}
	})
	fs.down.Store(true)
	run(t, "bookinfo-ratings-latency", g, storetest.Origin, 14*time.Minute)
	if err := rec.Flush(ctx); !errors.Is(err, errDiskFull) {
		t.Fatalf("flush while the disk is full: %v", err)
	}
	if err := rec.Ready(); err == nil {
		t.Fatal("ready while writes fail")
	}
	if st := rec.Status(); st.PendingRows == 0 || st.LastError == "" {
		t.Fatalf("status while failing: %+v", st)
	}
	fs.down.Store(false)
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rec.Ready(); err != nil {
		t.Fatalf("not ready after recovery: %v", err)
	}
	rows, err := fs.ReadBuckets(ctx, storage.Res10s, storetest.Origin, storetest.Origin.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for ts := storetest.Origin; ts.Before(storetest.Origin.Add(14*time.Minute - 2*storage.Res10s)); ts = ts.Add(storage.Res10s) {
		s, err := g.Snapshot(graph.Query{Window: storage.Res10s, At: ts.Add(storage.Res10s)})
		if err != nil {
			t.Fatal(err)
		}
		want += len(s.Edges)
	}
	if len(rows) < want {
		t.Fatalf("%d rows stored after recovery, want at least %d", len(rows), want)
	}
	if len(fired) == 0 {
		t.Fatal("no anomaly fired during the fault")
	}
	stored, err := fs.Anomalies(ctx, storage.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range stored {
		have[a.ID] = true
	}
	for _, id := range fired {
		if !have[id] {
			t.Fatalf("anomaly %s fired while the disk was full is lost", id)
		}
	}
}

func TestOpenReportsUnusableDataDir(t *testing.T) {
	file := t.TempDir() + "/not-a-dir"
	if err := writeFile(file); err != nil {
		t.Fatal(err)
	}
	_, err := storage.OpenSQLite(t.Context(), file+"/data", nil)
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("open under a file: %v; want an error naming the directory", err)
	}
	cfg := storage.DefaultConfig()
	cfg.Driver = storage.DriverPostgres
	cfg.DSNEnv = "MESHLENS_TEST_UNSET_DSN"
	if _, err := storage.Open(t.Context(), cfg, nil); err == nil || !strings.Contains(err.Error(), "MESHLENS_TEST_UNSET_DSN") {
		t.Fatalf("postgres without DSN: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*storage.Config)
		want []string
	}{
		{"default", func(*storage.Config) {}, nil},
		{"bad driver", func(c *storage.Config) { c.Driver = "mysql" }, []string{"driver: must be sqlite or postgres"}},
		{"retention order", func(c *storage.Config) { c.Retention.Minute = 2 * time.Hour; c.Retention.Raw = 3 * time.Hour },
			[]string{"retention.minute: must be >= retention.raw"}},
		{"zeros", func(c *storage.Config) { c.BatchSize, c.FlushInterval = 0, 0 }, []string{"batchSize: must be > 0", "flushInterval: must be > 0"}},
		{"postgres without env", func(c *storage.Config) { c.Driver, c.DSNEnv = storage.DriverPostgres, "" }, []string{"dsnEnv: must name"}},
	}
	for _, tc := range tests {
		c := storage.DefaultConfig()
		tc.mod(&c)
		got := c.Validate()
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, got, tc.want)
		}
		for i := range got {
			if !strings.HasPrefix(got[i], tc.want[i]) {
				t.Fatalf("%s: %q, want prefix %q", tc.name, got[i], tc.want[i])
			}
		}
	}
}
