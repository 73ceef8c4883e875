package storage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage"
)

// The durability test runs the real binary:
//
//	meshlens serve --demo=bookinfo-ratings-latency --data-dir D --http-addr 127.0.0.1:P
//	meshlens bench-storage load --data-dir D   (audit entries and proposals, acks on stdout)
//
// kills both with SIGKILL mid-write, checks the database is sound, restarts
// the server and checks every acknowledged anomaly, audit entry and proposal
// and the history up to the last flush are there, then stops it with SIGTERM
// and checks the graceful shutdown flushed the newest buckets.
//
// It needs the app to wire storage (storage.Wire) with the routes of
// storage.API mounted; until then it skips, saying so.

type server struct {
	cmd  *exec.Cmd
	base string
	log  *lockedBuf
	done chan error
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildBinary builds meshlens, or returns MESHLENS_BIN when set (a binary
// built already, e.g. by make).
func buildBinary(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv("MESHLENS_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(tb.TempDir(), "meshlens")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/meshlens")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build meshlens: %v\n%s", err, out)
	}
	return bin
}

func startServer(tb testing.TB, bin, dir string) *server {
	tb.Helper()
	addr := freeAddr(tb)
	s := &server{base: "http://" + addr, log: &lockedBuf{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve", "--demo=bookinfo-ratings-latency", "--data-dir", dir, "--http-addr", addr)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	tb.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		s.done <- nil
	})
	return s
}

// waitReady polls /readyz; it returns how long the server took.
func (s *server) waitReady(tb testing.TB, limit time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		select {
		case err := <-s.done:
			s.done <- err
			tb.Fatalf("server exited: %v\n%s", err, s.log)
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("server not ready within %s\n%s", limit, s.log)
	return 0
}

func (s *server) get(tb testing.TB, path string, v any) int {
	tb.Helper()
	resp, err := http.Get(s.base + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			tb.Fatalf("GET %s: %v", path, err)
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

type graphJSON struct {
	Elements struct {
		Edges []struct {
			Data struct {
				ID    string `json:"id"`
				Stats struct {
					Requests uint64 `json:"requests"`
				} `json:"stats"`
			} `json:"data"`
		} `json:"edges"`
	} `json:"elements"`
}

// requestsAt is the total requests of the 5 minutes before at, per edge.
func (s *server) requestsAt(tb testing.TB, at time.Time) map[string]uint64 {
	tb.Helper()
	var g graphJSON
	if code := s.get(tb, "/api/v1/graph?window=5m&at="+at.UTC().Format(time.RFC3339), &g); code != http.StatusOK {
		tb.Fatalf("graph at %s: status %d", at, code)
	}
	out := map[string]uint64{}
	for _, e := range g.Elements.Edges {
		out[e.Data.ID] = e.Data.Stats.Requests
	}
	return out
}

type anomalyList struct {
	Anomalies []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"anomalies"`
}

func TestDurabilityUnderSIGKILL(t *testing.T) {
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		t.Skip("durability test runs the binary: MESHLENS_INTEGRATION=1 (make test)")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	srv := startServer(t, bin, dir)
	srv.waitReady(t, 60*time.Second)
	if code := srv.get(t, "/api/v1/storage/status", nil); code == http.StatusNotFound {
		t.Skip("the app does not wire storage yet (no /api/v1/storage/status): see storage.Wire")
	}

	// A second writer process: audit entries and proposals, acknowledged on stdout.
	load := exec.Command(bin, "bench-storage", "load", "--data-dir", dir)
	stdout, err := load.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	loadErr := &lockedBuf{}
	load.Stderr = loadErr
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = load.Process.Kill(); _ = load.Wait() })
	var ackMu sync.Mutex
	var audits []int64
	var proposals []string
	acksDone := make(chan struct{})
	go func() {
		defer close(acksDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				continue
			}
			ackMu.Lock()
			switch f[1] {
			case "audit":
				n, _ := strconv.ParseInt(f[2], 10, 64)
				audits = append(audits, n)
			case "proposal":
				proposals = append(proposals, f[2])
			}
			ackMu.Unlock()
		}
	}()

	// Wait until the server has stored anomalies and history (bounded).
	var acked anomalyList
	var status storage.Status
	deadline := time.Now().Add(4 * time.Minute)
	for {
		srv.get(t, "/api/v1/history/anomalies", &acked)
		srv.get(t, "/api/v1/storage/status", &status)
		if len(acked.Anomalies) > 0 && !status.LastBucket.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stored anomalies after 4m (status %+v)\n%s", status, srv.log)
		}
		time.Sleep(time.Second)
	}
	// Let a few more flushes happen, then kill both mid-write.
	time.Sleep(12 * time.Second)
	srv.get(t, "/api/v1/history/anomalies", &acked)
	srv.get(t, "/api/v1/storage/status", &status)
	before := srv.requestsAt(t, status.LastBucket)
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := load.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	srv.done <- nil
	_ = load.Wait()
	<-acksDone
	ackMu.Lock()
	nAudit, nProp := len(audits), len(proposals)
	ackMu.Unlock()
	if nAudit == 0 || nProp == 0 {
		t.Fatalf("the load writer acknowledged %d audit entries and %d proposals\n%s", nAudit, nProp, loadErr)
	}
	t.Logf("killed with %d stored anomalies, history to %s, %d audit entries and %d proposals acknowledged",
		len(acked.Anomalies), status.LastBucket.Format(time.RFC3339), nAudit, nProp)

	ctx := context.Background()
	if res, err := storage.IntegrityCheck(ctx, filepath.Join(dir, storage.DBFile)); err != nil || res != "ok" {
		t.Fatalf("database after SIGKILL: %q, %v", res, err)
	}

	srv2 := startServer(t, bin, dir)
	took := srv2.waitReady(t, 30*time.Second)
	t.Logf("restarted and ready in %s", took.Round(time.Millisecond))
	// The live graph came back from storage: the same traffic, not reset
	// and not doubled by a fresh demo backfill.
	restored := srv2.requestsAt(t, status.LastBucket)
	if len(before) == 0 {
		t.Fatal("no traffic in the graph before the kill")
	}
	for id, n := range before {
		if restored[id] != n {
			t.Errorf("edge %s: %d requests in the 5m before %s after the restart, %d before the kill", id, restored[id], status.LastBucket, n)
		}
	}

	var after anomalyList
	srv2.get(t, "/api/v1/history/anomalies?limit=100000", &after)
	have := map[string]bool{}
	for _, a := range after.Anomalies {
		have[a.ID] = true
	}
	for _, a := range acked.Anomalies {
		if !have[a.ID] {
			t.Errorf("anomaly %s acknowledged before the kill is missing", a.ID)
		}
	}

	st, err := storage.OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seqs := map[int64]bool{}
	for q := (storage.AuditQuery{Principal: "load", Limit: 10000}); ; {
		page, err := st.Audit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			seqs[e.Seq] = true
		}
		if len(page) < q.Limit {
			break
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
	for _, s := range audits {
		if !seqs[s] {
			t.Errorf("audit entry %d acknowledged before the kill is missing", s)
		}
	}
	for _, id := range proposals {
		if _, err := st.Proposal(ctx, id); err != nil {
			t.Errorf("proposal acknowledged before the kill: %v", err)
		}
	}
	last, err := st.LastBucket(ctx, storage.Res10s)
	if err != nil {
		t.Fatal(err)
	}
	if end := last.Add(storage.Res10s); end.Before(status.LastBucket) {
		t.Errorf("history ends at %s, but %s was written before the kill", end, status.LastBucket)
	}

	// Graceful stop: SIGTERM flushes the buckets closed since the last flush.
	time.Sleep(25 * time.Second)
	stopAt := time.Now()
	if err := srv2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-srv2.done; err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, srv2.log)
	}
	srv2.done <- nil
	last, err = st.LastBucket(ctx, storage.Res10s)
	if err != nil {
		t.Fatal(err)
	}
	// The newest bucket final at the stop (one bucket of grace) must be stored.
	if lag := stopAt.Sub(last.Add(storage.Res10s)); lag > 3*storage.Res10s {
		t.Errorf("after SIGTERM history ends %s before the stop; want the last closed bucket flushed", lag.Round(time.Second))
	}
	if res, err := storage.IntegrityCheck(ctx, filepath.Join(dir, storage.DBFile)); err != nil || res != "ok" {
		t.Fatalf("database after SIGTERM: %q, %v", res, err)
	}
}
