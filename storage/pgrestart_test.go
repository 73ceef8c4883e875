package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
	"github.com/meshlens/meshlens/storage/storetest"
)

// pgCluster is a throwaway PostgreSQL cluster of this test alone: the test
// stops and starts its server, which the package's shared one cannot take.
type pgCluster struct {
	dir, port, dsn string
}

func pgBin(name string) string {
	bin := os.Getenv("PGBIN")
	if bin == "" {
		bin = "/usr/lib/postgresql/15/bin"
	}
	return filepath.Join(bin, name)
}

// asPostgres runs a server command as the postgres user when we are root
// (postgres refuses to run as root), like scripts/postgres-start.sh.
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func startPGCluster(tb testing.TB) *pgCluster {
	tb.Helper()
	parent, err := os.MkdirTemp("", "meshlens-pgrestart-")
	if err != nil {
		tb.Fatal(err)
	}
	// The postgres user runs the server and must traverse the parent.
	if err := os.Chmod(parent, 0o711); err != nil {
		tb.Fatal(err)
	}
	c := &pgCluster{dir: filepath.Join(parent, "cluster")}
	tb.Cleanup(func() {
		_ = exec.Command("bash", "../scripts/postgres-stop.sh", c.dir).Run()
		_ = os.RemoveAll(parent)
	})
	out, err := exec.Command("bash", "../scripts/postgres-start.sh", c.dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = &startErr{err, string(ee.Stderr)}
		}
		tb.Fatalf("start PostgreSQL (scripts/postgres-start.sh; install with scripts/install-postgres.sh): %v", err)
	}
	c.dsn = strings.TrimSpace(string(out))
	u, err := url.Parse(c.dsn)
	if err != nil {
		tb.Fatalf("DSN %q: %v", c.dsn, err)
	}
	c.port = u.Port()
	return c
}

// stop stops the server: mode fast (a clean restart) or immediate (the
// server dies without a checkpoint and recovers from its WAL on start).
func (c *pgCluster) stop(tb testing.TB, mode string) {
	tb.Helper()
	if out, err := asPostgres(pgBin("pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-m", mode, "-w", "-t", "60", "stop").CombinedOutput(); err != nil {
		tb.Fatalf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

// start starts it again on the same port, with the options of postgres-start.sh.
func (c *pgCluster) start(tb testing.TB) {
	tb.Helper()
	cmd := asPostgres(pgBin("pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60",
		"-o", "-c listen_addresses=127.0.0.1 -p "+c.port+" -k "+c.dir+" -c fsync=on -c max_connections=50", "start")
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		tb.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// ackWriter appends audit entries and creates proposals in a loop, the way
// the assistant does, and remembers what the store acknowledged.
type ackWriter struct {
	st   storage.Store
	mu   sync.Mutex
	seqs []int64
	ids  []string
	errs int
	last error
	stop chan struct{}
	done chan struct{}
}

func (w *ackWriter) run() {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		now := time.Now().UTC()
		seq, aerr := w.st.AppendAudit(ctx, storage.AuditEntry{At: now, Principal: "pgrestart", Action: "proposal.create",
			Subject: fmt.Sprintf("p-%d", i), Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
		id := fmt.Sprintf("p-%d", i)
		perr := w.st.CreateProposal(ctx, storage.Record{ID: id, Created: now, Updated: now, State: "pending",
			Principal: "pgrestart", Payload: json.RawMessage(fmt.Sprintf(`{"kind":"VirtualService","i":%d}`, i))})
		cancel()
		w.mu.Lock()
		if aerr == nil {
			w.seqs = append(w.seqs, seq)
		} else {
			w.errs++
			w.last = aerr
		}
		if perr == nil {
			w.ids = append(w.ids, id)
		} else {
			w.errs++
			w.last = perr
		}
		w.mu.Unlock()
	}
}

func (w *ackWriter) counts() (acked, errs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seqs) + len(w.ids), w.errs
}

// waitFor polls cond every 100 ms for at most limit.
func waitFor(tb testing.TB, limit time.Duration, what string, cond func() bool) {
	tb.Helper()
	for end := time.Now().Add(limit); !cond(); {
		if time.Now().After(end) {
			tb.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPostgresRestart restarts the PostgreSQL server twice (a fast stop, then
// an immediate one: the server dies and recovers from its WAL) while the
// recorder writes history and detector changes and a writer appends audit
// entries and creates proposals. The store must reconnect by itself, the
// recorder must report the outage through Ready and recover, and everything
// acknowledged before, during or after the outages must be there.
func TestPostgresRestart(t *testing.T) {
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		t.Skip("PostgreSQL restart test needs MESHLENS_INTEGRATION=1 (make test): it stops and starts its own cluster")
	}
	cl := startPGCluster(t)
	ctx := t.Context()
	st, err := storage.OpenPostgres(ctx, cl.dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	g, eng := newPipeline(t)
	rec, err := storage.NewRecorder(st, testConfig(), g, eng, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.Attach(g, eng)
	if err := rec.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer rec.Shutdown(context.Background())
	var anomalies, incidents []string
	var inOutage int
	outage := false
	eng.Subscribe(func(c detect.Change) {
		switch {
		case c.Anomaly != nil:
			anomalies = append(anomalies, c.Anomaly.ID)
		case c.Incident != nil:
			incidents = append(incidents, c.Incident.ID)
		}
		if outage {
			inOutage++
		}
	})

	w := &ackWriter{st: st, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	stopWriter := sync.OnceFunc(func() { close(w.stop); <-w.done })
	defer stopWriter()

	// Before: 8 minutes of bookinfo, all written.
	at := storetest.Origin
	play := func(d time.Duration) {
		run(t, "bookinfo-ratings-latency", g, at, d)
		at = at.Add(d)
	}
	play(8 * time.Minute)
	if err := rec.Flush(ctx); err != nil {
		t.Fatalf("flush before the restart: %v", err)
	}
	waitFor(t, 30*time.Second, "audit and proposal writes before the restart", func() bool { n, _ := w.counts(); return n >= 20 })

	for _, mode := range []string{"fast", "immediate"} {
		_, errsBefore := w.counts()
		cl.stop(t, mode)
		outage = true
		// The fault is a ten-second bucket stream that keeps closing and the
		// ratings latency fault (from 10m) firing while the database is away.
		play(3 * time.Minute)
		if err := rec.Flush(ctx); err == nil {
			t.Fatalf("%s stop: flush succeeded with the server down", mode)
		}
		if err := rec.Ready(); err == nil {
			t.Fatalf("%s stop: Ready reports no problem with the server down", mode)
		}
		if s := rec.Status(); s.PendingRows == 0 || s.LastError == "" {
			t.Fatalf("%s stop: status while down: %+v", mode, s)
		}
		if err := st.Ping(ctx); err == nil {
			t.Fatalf("%s stop: ping succeeded with the server down", mode)
		}
		waitFor(t, 30*time.Second, "the writer to see the outage", func() bool { _, e := w.counts(); return e > errsBefore })
		downErr := rec.Ready()
		t.Logf("%s stop: Ready = %v", mode, downErr)

		cl.start(t)
		outage = false
		ackedAtStart, _ := w.counts()
		// The pool holds connections the restart broke; each fails once and
		// is replaced. Flush retries everything the recorder kept.
		var flushErr error
		waitFor(t, 60*time.Second, "recorder flush after the restart", func() bool {
			flushErr = rec.Flush(ctx)
			return flushErr == nil
		})
		if err := rec.Ready(); err != nil {
			t.Fatalf("%s restart: not ready after a successful flush: %v", mode, err)
		}
		waitFor(t, 60*time.Second, "audit and proposal writes after the restart", func() bool { n, _ := w.counts(); return n >= ackedAtStart+20 })
	}
	if inOutage == 0 {
		t.Fatal("no detector change happened while the server was down: the test proves nothing about them")
	}

	// After: more traffic and changes, written normally.
	play(3 * time.Minute)
	if err := rec.Flush(ctx); err != nil {
		t.Fatalf("flush after the restarts: %v", err)
	}
	stopWriter()

	w.mu.Lock()
	seqs, ids, errs, last := w.seqs, w.ids, w.errs, w.last
	w.mu.Unlock()
	t.Logf("writer: %d audit entries and %d proposals acknowledged, %d writes refused (last: %v); %d detector changes, %d during the outages",
		len(seqs), len(ids), errs, last, len(anomalies)+len(incidents), inOutage)

	have := map[int64]bool{}
	for q := (storage.AuditQuery{Principal: "pgrestart", Limit: 10000}); ; {
		page, err := st.Audit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			have[e.Seq] = true
		}
		if len(page) < q.Limit {
			break
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
	for _, s := range seqs {
		if !have[s] {
			t.Errorf("audit entry %d was acknowledged and is missing", s)
		}
	}
	for _, id := range ids {
		if _, err := st.Proposal(ctx, id); err != nil {
			t.Errorf("proposal acknowledged: %v", err)
		}
	}

	storedA, err := st.Anomalies(ctx, storage.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	storedI, err := st.Incidents(ctx, storage.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, a := range storedA {
		got[a.ID] = true
	}
	for _, in := range storedI {
		got[in.ID] = true
	}
	for _, id := range append(anomalies, incidents...) {
		if !got[id] {
			t.Errorf("detector change of %s is missing", id)
		}
	}

	// Every closed bucket's edges, outages included, are in the history.
	rows, err := st.ReadBuckets(ctx, storage.Res10s, storetest.Origin, at)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[time.Time]int{}
	for _, r := range rows {
		stored[r.Start]++
	}
	for ts := storetest.Origin; ts.Before(at.Add(-2 * storage.Res10s)); ts = ts.Add(storage.Res10s) {
		s, err := g.Snapshot(graph.Query{Window: storage.Res10s, At: ts.Add(storage.Res10s)})
		if err != nil {
			t.Fatal(err)
		}
		if want := len(s.Edges); stored[ts] < want {
			t.Errorf("bucket %s: %d edges stored, %d in the graph", ts.Format(time.TimeOnly), stored[ts], want)
		}
	}
}
