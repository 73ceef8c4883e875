//go:build linux

package storage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshlens/meshlens/storage"
)

// TestDiskFull runs the real binary, `meshlens serve --demo`, with its SQLite
// data directory on a disk that fills up while a client asks the chat for a
// proposal every 200 ms, then frees the disk, without a restart:
//
//   - tmpfs: a 16 MiB tmpfs in a private user+mount namespace (unshare -rm,
//     no root needed where user namespaces are allowed), filled with dd:
//     writes fail with ENOSPC, as on a real full disk.
//   - rlimit: the data dir on the normal disk and the server's RLIMIT_FSIZE
//     lowered to 0 with prlimit(2), then restored: every file write fails
//     with EFBIG (the Go runtime ignores SIGXFSZ). Works everywhere on Linux,
//     so the scenario runs even where namespaces are refused.
//
// It checks that writes fail with a clear error, /readyz reports it, the API
// keeps answering, history is held in memory, every acknowledged proposal is
// stored and every refused one reported and not stored, and that the server
// recovers by itself once space is back: ready again, history without a gap.
func TestDiskFull(t *testing.T) {
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		t.Skip("disk-full test runs the binary: MESHLENS_INTEGRATION=1 (make test)")
	}
	bin := buildBinary(t)
	cfg, err := filepath.Abs("testdata/diskfull.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		start   func(tb testing.TB, bin, cfg string) (*server, diskFuller)
		wantErr string // in /readyz and in the chat's refusal
	}{
		{"tmpfs", startOnTmpfs, "database or disk is full"},
		{"rlimit", startWithFileSizeLimit, "disk I/O error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, disk := tc.start(t, bin, cfg)
			runDiskFull(t, srv, disk, tc.wantErr)
		})
	}
}

// diskFuller is a running server whose data directory can fill up.
type diskFuller interface {
	fill(tb testing.TB)
	free(tb testing.TB)
	// stop sends SIGTERM to the server, checks it exits cleanly and
	// returns a directory holding its database files.
	stop(tb testing.TB) string
}

// serveArgs runs the demo on loopback with every receiver off.
func serveArgs(cfg, dataDir, addr string) []string {
	return []string{"serve", "--config", cfg, "--demo=bookinfo-ratings-latency", "--data-dir", dataDir, "--http-addr", addr,
		"--otlp-grpc-addr=", "--otlp-http-addr=", "--jaeger-grpc-addr=", "--jaeger-http-addr=", "--zipkin-addr="}
}

// tmpfsScript runs in a private user+mount namespace, so the mount is gone
// with the process whatever happens. It mounts the tmpfs, starts the server
// (its output on stderr) and obeys fill/free/stop lines on stdin, answering
// on stdout; on stop or EOF it stops the server and copies the database out.
const tmpfsScript = `
mnt=$1 out=$2; shift 2
mount -t tmpfs -o size=16m meshlens-diskfull "$mnt" || { echo "nomount"; exit 0; }
"$@" >&2 &
srv=$!
echo started
while read -r cmd; do
	case $cmd in
	fill) dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null; echo "filled: $(df -k "$mnt" | tail -1)" ;;
	free) rm -f "$mnt/filler"; echo "freed: $(df -k "$mnt" | tail -1)" ;;
	stop) break ;;
	esac
done
kill -TERM $srv 2>/dev/null
wait $srv
rc=$?
cp "$mnt"/data/meshlens.db* "$out"/
echo "stopped $rc"
`

type tmpfsDisk struct {
	srv   *server
	stdin io.WriteCloser
	lines chan string
	out   string
}

func startOnTmpfs(tb testing.TB, bin, cfg string) (*server, diskFuller) {
	tb.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		tb.Skip("tmpfs disk: no unshare(1) (util-linux); the rlimit case covers the scenario")
	}
	mnt, out := tb.TempDir(), tb.TempDir()
	addr := freeAddr(tb)
	args := append([]string{"--user", "--map-root-user", "--mount", "sh", "-c", tmpfsScript, "sh", mnt, out, bin},
		serveArgs(cfg, filepath.Join(mnt, "data"), addr)...)
	srv := &server{base: "http://" + addr, log: &lockedBuf{}, done: make(chan error, 1)}
	srv.cmd = exec.Command("unshare", args...)
	srv.cmd.Stderr = srv.log
	srv.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := srv.cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := srv.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	d := &tmpfsDisk{srv: srv, stdin: stdin, lines: make(chan string, 16), out: out}
	if err := srv.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
	}()
	go func() { srv.done <- srv.cmd.Wait() }()
	tb.Cleanup(func() {
		select {
		case err := <-srv.done: // exited and reaped: its group id may be reused
			srv.done <- err
		default:
			// The script and the server share the script's process group.
			_ = syscall.Kill(-srv.cmd.Process.Pid, syscall.SIGKILL)
			<-srv.done
			srv.done <- nil
		}
	})
	switch line := d.next(tb, 30*time.Second); line {
	case "started":
	case "nomount", "":
		tb.Skipf("tmpfs disk: cannot mount a tmpfs in a user+mount namespace here (%s); the rlimit case covers the scenario\n%s",
			strings.TrimSpace(line), srv.log)
	default:
		tb.Fatalf("tmpfs script: %q\n%s", line, srv.log)
	}
	return srv, d
}

// next is the script's next answer; "" when it ended.
func (d *tmpfsDisk) next(tb testing.TB, limit time.Duration) string {
	tb.Helper()
	select {
	case line := <-d.lines:
		return line
	case <-time.After(limit):
		tb.Fatalf("tmpfs script silent for %s\n%s", limit, d.srv.log)
		return ""
	}
}

func (d *tmpfsDisk) say(tb testing.TB, cmd, want string) string {
	tb.Helper()
	if _, err := fmt.Fprintln(d.stdin, cmd); err != nil {
		tb.Fatalf("tmpfs script %s: %v", cmd, err)
	}
	line := d.next(tb, 30*time.Second)
	if !strings.HasPrefix(line, want) {
		tb.Fatalf("tmpfs script %s: %q, want %s\n%s", cmd, line, want, d.srv.log)
	}
	return line
}

func (d *tmpfsDisk) fill(tb testing.TB) { tb.Log(d.say(tb, "fill", "filled")) }
func (d *tmpfsDisk) free(tb testing.TB) { tb.Log(d.say(tb, "free", "freed")) }

func (d *tmpfsDisk) stop(tb testing.TB) string {
	tb.Helper()
	if line := d.say(tb, "stop", "stopped"); line != "stopped 0" {
		tb.Errorf("server exit after SIGTERM: %q\n%s", line, d.srv.log)
	}
	err := <-d.srv.done
	d.srv.done <- err
	if err != nil {
		tb.Errorf("tmpfs script: %v\n%s", err, d.srv.log)
	}
	return d.out
}

type rlimitDisk struct {
	srv  *server
	dir  string
	orig unix.Rlimit
}

func startWithFileSizeLimit(tb testing.TB, bin, cfg string) (*server, diskFuller) {
	tb.Helper()
	dir := tb.TempDir()
	addr := freeAddr(tb)
	srv := &server{base: "http://" + addr, log: &lockedBuf{}, done: make(chan error, 1)}
	srv.cmd = exec.Command(bin, serveArgs(cfg, dir, addr)...)
	srv.cmd.Stdout, srv.cmd.Stderr = srv.log, srv.log
	if err := srv.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { srv.done <- srv.cmd.Wait() }()
	tb.Cleanup(func() {
		_ = srv.cmd.Process.Kill()
		<-srv.done
		srv.done <- nil
	})
	d := &rlimitDisk{srv: srv, dir: dir}
	if err := unix.Prlimit(srv.cmd.Process.Pid, unix.RLIMIT_FSIZE, nil, &d.orig); err != nil {
		tb.Fatalf("read RLIMIT_FSIZE of the server: %v", err)
	}
	return srv, d
}

// fill lowers the soft limit to 0: no byte can be written to any file. Only
// the soft limit changes, so no privilege is needed to raise it again.
func (d *rlimitDisk) fill(tb testing.TB) {
	tb.Helper()
	if err := unix.Prlimit(d.srv.cmd.Process.Pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 0, Max: d.orig.Max}, nil); err != nil {
		tb.Fatalf("lower RLIMIT_FSIZE of the server: %v", err)
	}
	tb.Log("RLIMIT_FSIZE of the server: 0")
}

func (d *rlimitDisk) free(tb testing.TB) {
	tb.Helper()
	if err := unix.Prlimit(d.srv.cmd.Process.Pid, unix.RLIMIT_FSIZE, &d.orig, nil); err != nil {
		tb.Fatalf("restore RLIMIT_FSIZE of the server: %v", err)
	}
	tb.Logf("RLIMIT_FSIZE of the server: %d again", d.orig.Cur)
}

func (d *rlimitDisk) stop(tb testing.TB) string {
	tb.Helper()
	if err := d.srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	if err := <-d.srv.done; err != nil {
		tb.Errorf("server exit after SIGTERM: %v\n%s", err, d.srv.log)
	}
	d.srv.done <- nil
	return d.dir
}

// contains searches the whole log (String shows only its tail).
func (l *lockedBuf) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

// Phases of the disk, for the chat client's tally: a request counts in the
// phase it started in, so one started just before the fill took effect can
// be acknowledged "full".
const (
	phaseBefore = iota
	phaseFull
	phaseAfter
)

var phaseNames = [...]string{"before", "full", "after"}

// chatLoad asks the chat for a proposal every 200 ms and keeps what the
// server answered: acknowledged proposals (an id given) and refusals (an
// answer saying the proposal could not be stored, no id).
type chatLoad struct {
	base  string
	phase atomic.Int32

	mu      sync.Mutex
	acked   map[string]int // id -> phase
	refused [3]int
	ackedN  [3]int
	refusal string // the first refusal's text
	other   []string

	stop, done chan struct{}
}

func startChatLoad(base string) *chatLoad {
	c := &chatLoad{base: base, acked: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *chatLoad) run() {
	defer close(c.done)
	client := &http.Client{Timeout: 30 * time.Second}
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		phase := int(c.phase.Load())
		req, _ := http.NewRequest(http.MethodPost, c.base+"/api/v1/chat", strings.NewReader(`{"message":"propose a timeout for ratings"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Meshlens-Csrf", "1")
		resp, err := client.Do(req)
		if err != nil {
			c.note(fmt.Sprintf("%s: %v", phaseNames[phase], err))
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ans struct {
			Answer    string `json:"answer"`
			Proposals []struct {
				ID string `json:"id"`
			} `json:"proposals"`
		}
		if err := json.Unmarshal(raw, &ans); resp.StatusCode != http.StatusOK || err != nil {
			c.note(fmt.Sprintf("%s: %d %.300s", phaseNames[phase], resp.StatusCode, raw))
			continue
		}
		c.mu.Lock()
		switch {
		case len(ans.Proposals) == 1 && ans.Proposals[0].ID != "":
			c.acked[ans.Proposals[0].ID] = phase
			c.ackedN[phase]++
		case len(ans.Proposals) == 0 && strings.Contains(ans.Answer, "store proposal"):
			c.refused[phase]++
			if c.refusal == "" {
				c.refusal = ans.Answer
			}
		default:
			c.other = append(c.other, fmt.Sprintf("%s: %d proposals: %.300s", phaseNames[phase], len(ans.Proposals), ans.Answer))
		}
		c.mu.Unlock()
	}
}

func (c *chatLoad) note(s string) {
	c.mu.Lock()
	c.other = append(c.other, s)
	c.mu.Unlock()
}

// waitUntil polls cond every 100 ms until it holds and returns how long that
// took; it fails the test after limit, showing what cond saw last, or when
// the server exits.
func (srv *server) waitUntil(tb testing.TB, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		ok, seen := cond()
		if ok {
			break
		}
		if time.Since(start) > limit {
			tb.Fatalf("%s: not within %s (last seen: %s)\n%s", what, limit, seen, srv.log)
		}
		select {
		case err := <-srv.done:
			srv.done <- err
			tb.Fatalf("%s: server exited: %v\n%s", what, err, srv.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Since(start)
}

// status is a fresh decode of /api/v1/storage/status (lastError is omitted when empty).
func (s *server) status(tb testing.TB) storage.Status {
	tb.Helper()
	var st storage.Status
	if code := s.get(tb, "/api/v1/storage/status", &st); code != http.StatusOK {
		st.LastError = fmt.Sprintf("/api/v1/storage/status: %d", code)
	}
	return st
}

// readyz returns /readyz's status and body.
func (s *server) readyz(tb testing.TB) (int, string) {
	tb.Helper()
	resp, err := http.Get(s.base + "/readyz")
	if err != nil {
		tb.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func runDiskFull(t *testing.T, srv *server, disk diskFuller, wantErr string) {
	srv.waitReady(t, 60*time.Second)
	load := startChatLoad(srv.base)
	stopped := false
	stopLoad := func() {
		if !stopped {
			close(load.stop)
			<-load.done
			stopped = true
		}
	}
	t.Cleanup(stopLoad)
	count := func(f func(*chatLoad) int) func() int {
		return func() int { load.mu.Lock(); defer load.mu.Unlock(); return f(load) }
	}
	ackedIn := func(p int) func() int { return count(func(c *chatLoad) int { return c.ackedN[p] }) }
	refused := count(func(c *chatLoad) int { return c.refused[0] + c.refused[1] + c.refused[2] })
	var status storage.Status
	srv.waitUntil(t, 60*time.Second, "history written and proposals acknowledged before the disk fills", func() (bool, string) {
		status = srv.status(t)
		n := ackedIn(phaseBefore)()
		return !status.LastBucket.IsZero() && n >= 3, fmt.Sprintf("status %+v, %d acknowledged", status, n)
	})

	// Fill the disk.
	load.phase.Store(phaseFull)
	fillAt := time.Now()
	disk.fill(t)
	var ready string
	took := srv.waitUntil(t, 30*time.Second, "/readyz reports the full disk and history is held in memory", func() (bool, string) {
		code, body := srv.readyz(t)
		status = srv.status(t)
		if code == http.StatusServiceUnavailable {
			ready = body
		}
		return code == http.StatusServiceUnavailable && status.PendingRows > 0, fmt.Sprintf("/readyz %d %s, status %+v", code, body, status)
	})
	t.Logf("full: /readyz 503 after %s: %s; %d history rows held in memory", took.Round(100*time.Millisecond), ready, status.PendingRows)
	if !strings.Contains(ready, "storage: writes failing") || !strings.Contains(ready, wantErr) {
		t.Errorf("/readyz says %q; want the failing writes and %q", ready, wantErr)
	}
	srv.waitUntil(t, 30*time.Second, "the chat refuses to create proposals", func() (bool, string) {
		n := refused()
		return n >= 2, fmt.Sprintf("%d refused", n)
	})
	var g graphJSON
	if code := srv.get(t, "/api/v1/graph?window=5m", &g); code != http.StatusOK || len(g.Elements.Edges) == 0 {
		t.Errorf("while the disk is full, /api/v1/graph: %d with %d edges", code, len(g.Elements.Edges))
	}

	// Free it: the server recovers by itself.
	load.phase.Store(phaseAfter)
	freeAt := time.Now()
	disk.free(t)
	took = srv.waitUntil(t, 30*time.Second, "/readyz ready again and the held history written", func() (bool, string) {
		code, body := srv.readyz(t)
		status = srv.status(t)
		return code == http.StatusOK && status.PendingRows == 0 && status.Pending == 0 && status.LastError == "",
			fmt.Sprintf("/readyz %d %s, status %+v", code, body, status)
	})
	t.Logf("freed: /readyz 200 again after %s, nothing pending", took.Round(100*time.Millisecond))
	srv.waitUntil(t, 30*time.Second, "proposals acknowledged again", func() (bool, string) {
		n := ackedIn(phaseAfter)()
		return n >= 2, fmt.Sprintf("%d acknowledged", n)
	})
	stopLoad()
	if !srv.log.contains("storage: writes succeed again") {
		t.Errorf("the log does not say writes succeed again")
	}

	load.mu.Lock()
	acked := load.acked
	t.Logf("chat: acknowledged %v (before/full/after), refused %v; first refusal: %.300s", load.ackedN, load.refused, load.refusal)
	if !strings.Contains(load.refusal, wantErr) {
		t.Errorf("the refusal does not say why (%q): %.300s", wantErr, load.refusal)
	}
	if len(load.other) > 0 {
		t.Errorf("%d chat answers neither acknowledged nor refused: %q", len(load.other), load.other)
	}
	load.mu.Unlock()

	// Every acknowledged proposal is stored, with its audit entry; nothing
	// refused is: the stored set is exactly the acknowledged one.
	var list struct {
		Proposals []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"proposals"`
	}
	if code := srv.get(t, "/api/v1/proposals", &list); code != http.StatusOK {
		t.Fatalf("list proposals: %d", code)
	}
	stored := map[string]bool{}
	for _, p := range list.Proposals {
		stored[p.ID] = true
		if _, ok := acked[p.ID]; !ok {
			t.Errorf("proposal %s (%s) is stored but was never acknowledged", p.ID, p.Status)
		}
	}
	for id, phase := range acked {
		if !stored[id] {
			t.Errorf("proposal %s acknowledged %s the fill is missing", id, phaseNames[phase])
			continue
		}
		var audit struct {
			Events []struct{ Action string } `json:"events"`
		}
		srv.get(t, "/api/v1/proposals/"+id+"/audit", &audit)
		if len(audit.Events) == 0 || audit.Events[0].Action != "proposal.created" {
			t.Errorf("proposal %s acknowledged %s the fill: audit %+v", id, phaseNames[phase], audit.Events)
		}
	}

	// After a clean stop the database is sound and holds the 10 s history of
	// the whole outage without a gap: the buckets that closed while the disk
	// was full (a bucket closes one resolution after its end) were kept in
	// memory and written once it had space, up to the newest bucket written
	// after the recovery.
	lastEnd := status.LastBucket
	dir := disk.stop(t)
	ctx := context.Background()
	if res, err := storage.IntegrityCheck(ctx, filepath.Join(dir, storage.DBFile)); err != nil || res != "ok" {
		t.Fatalf("database after the disk-full episode: %q, %v", res, err)
	}
	st, err := storage.OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	from := fillAt.Add(-3 * storage.Res10s).Truncate(storage.Res10s)
	if !lastEnd.After(freeAt.Add(-2 * storage.Res10s)) {
		t.Errorf("after the recovery the newest bucket written ends at %s; the disk was freed at %s", lastEnd.Format(time.TimeOnly), freeAt.Format(time.TimeOnly))
	}
	rows, err := st.ReadBuckets(ctx, storage.Res10s, from, lastEnd)
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]int{}
	for _, r := range rows {
		have[r.Start.Unix()]++
	}
	n := 0
	for b := from; b.Before(lastEnd); b = b.Add(storage.Res10s) {
		n++
		if have[b.Unix()] == 0 {
			t.Errorf("no history for the bucket %s (disk full %s-%s)", b.Format(time.TimeOnly), fillAt.Format(time.TimeOnly), freeAt.Format(time.TimeOnly))
		}
	}
	t.Logf("history %s-%s: %d buckets of 10 s, %d edge rows, none missing; disk full %s-%s",
		from.Format(time.TimeOnly), lastEnd.Format(time.TimeOnly), n, len(rows), fillAt.Format(time.TimeOnly), freeAt.Format(time.TimeOnly))
	// And read straight from the database after the stop.
	for id := range acked {
		if _, err := st.Proposal(ctx, id); errors.Is(err, storage.ErrNotFound) {
			t.Errorf("acknowledged proposal %s not in the database after the stop", id)
		} else if err != nil {
			t.Errorf("read proposal %s: %v", id, err)
		}
	}
}
