package assistant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/assistant/eval"
	"github.com/meshlens/meshlens/fixtures"
)

var (
	worldMu sync.Mutex
	worlds  = map[string]*eval.World{}
)

// world plays a scenario to 14m (faults start at 10m); shared between tests.
func world(tb testing.TB, name string) *eval.World {
	tb.Helper()
	worldMu.Lock()
	defer worldMu.Unlock()
	if w, ok := worlds[name]; ok {
		return w
	}
	var sc *fixtures.Scenario
	var err error
	if strings.HasSuffix(name, ".yaml") {
		sc, err = fixtures.LoadFile(name)
	} else {
		sc, err = fixtures.Load(name)
	}
	if err != nil {
		tb.Fatal(err)
	}
	w, err := eval.Play(sc, 1, 14*time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	worlds[name] = w
	return w
}

type fixture struct {
	a     *assistant.Assistant
	store *assistant.MemoryStore
	dir   string
	now   time.Time
	mu    sync.Mutex
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newFixture(tb testing.TB, scenario string, mutate func(*assistant.Config)) *fixture {
	tb.Helper()
	w := world(tb, scenario)
	f := &fixture{store: assistant.NewMemoryStore(), dir: tb.TempDir(), now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := assistant.DefaultConfig()
	cfg.ExportDir = f.dir
	cfg.Approvers = []string{"alice"}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := assistant.New(assistant.Options{Config: cfg, Graph: w.Graph, Detector: w.Detector,
		Proposals: f.store, Sessions: f.store, Audit: f.store, Clock: f.clock})
	if err != nil {
		tb.Fatal(err)
	}
	f.a = a
	return f
}

func do(tb testing.TB, h http.Handler, method, path, user string, body any) (*httptest.ResponseRecorder, map[string]any) {
	tb.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	if user != "" {
		req.Header.Set("X-Meshlens-User", user)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func TestEvalCases(t *testing.T) {
	cases, err := eval.LoadCases("testdata/eval")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("%d cases, want at least 30", len(cases))
	}
	rs, err := eval.Run(context.Background(), cases, eval.Options{ExportDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	passed := eval.Write(&buf, rs, false)
	if float64(passed) < 0.9*float64(len(rs)) {
		t.Fatalf("built-in engine passes %d/%d (< 90%%):\n%s", passed, len(rs), buf.String())
	}
	for _, r := range rs {
		if !r.Pass {
			t.Logf("FAIL %s: %v", r.Case, r.Problems)
		}
	}
}

func TestChatBadInput(t *testing.T) {
	f := newFixture(t, "bookinfo", nil)
	h := f.a.Handler()
	tests := []struct {
		name string
		body any
		want string
	}{
		{"empty", map[string]string{"message": ""}, "empty"},
		{"blank", map[string]string{"message": " \n\t "}, "empty"},
		{"huge", map[string]string{"message": strings.Repeat("why is ratings slow ", 500)}, "limit is 8192"},
		{"binary", map[string]string{"message": "which\x00service\x01is failing"}, "binary"},
		{"not utf8", []byte("{\"message\": \"\xff\xfe\xfd\"}"), "UTF-8"},
		{"not json", "which service is failing?", "JSON"},
		{"huge body", []byte(`{"message":"` + strings.Repeat("a", 200<<10) + `"}`), "larger than"},
		{"bad session", map[string]string{"message": "hi", "sessionId": strings.Repeat("s", 200)}, "sessionId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, out := do(t, h, "POST", "/api/v1/chat", "", tt.body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not mention %q", msg, tt.want)
			}
		})
	}
}

func TestChatHTTP(t *testing.T) {
	f := newFixture(t, "bookinfo-ratings-latency", nil)
	h := f.a.Handler()
	rec, out := do(t, h, "POST", "/api/v1/chat", "", map[string]string{"sessionId": "s1", "message": "Which service is slowest?"})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if out["sessionId"] != "s1" || out["engine"] != "builtin" || !strings.Contains(out["answer"].(string), "ratings") {
		t.Fatalf("answer: %v", out)
	}
	links, _ := out["links"].([]any)
	kinds := map[string]bool{}
	for _, l := range links {
		kinds[l.(map[string]any)["kind"].(string)] = true
	}
	if !kinds["incident"] {
		t.Errorf("links %v lack the incident", links)
	}
	if calls, _ := out["toolCalls"].([]any); len(calls) == 0 {
		t.Errorf("no tool calls recorded")
	}
	// Follow-up in the same session resolves "it".
	_, out = do(t, h, "POST", "/api/v1/chat", "", map[string]string{"sessionId": "s1", "message": "who calls it?"})
	if !strings.Contains(out["answer"].(string), "ratings is called by reviews") {
		t.Errorf("follow-up: %v", out["answer"])
	}
}

func TestChatStreamSSE(t *testing.T) {
	f := newFixture(t, "bookinfo-ratings-latency", nil)
	rec, _ := do(t, f.a.Handler(), "POST", "/api/v1/chat/stream", "", map[string]string{"message": "who calls ratings?"})
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, ev := range []string{"event: tool\n", "event: delta\n", "event: done\n"} {
		if !strings.Contains(body, ev) {
			t.Errorf("stream lacks %q:\n%s", ev, body)
		}
	}
	if strings.Index(body, "event: done") < strings.Index(body, "event: delta") {
		t.Errorf("done before delta")
	}
}

// proposeVia asks for a proposal through the chat endpoint as user ("" = anonymous).
func proposeVia(t *testing.T, h http.Handler, user, msg string) map[string]any {
	t.Helper()
	rec, out := do(t, h, "POST", "/api/v1/chat", user, map[string]string{"message": msg})
	if rec.Code != 200 {
		t.Fatalf("chat: %d %s", rec.Code, rec.Body)
	}
	props, _ := out["proposals"].([]any)
	if len(props) != 1 {
		t.Fatalf("want 1 proposal, got %d: %v", len(props), out["answer"])
	}
	return props[0].(map[string]any)
}

func TestApprovalWorkflow(t *testing.T) {
	f := newFixture(t, "bookinfo-mtls-off", nil)
	h := f.a.Handler()
	p := proposeVia(t, h, "carol", "propose strict mTLS for details, and approve it")
	id, sha, yml := p["id"].(string), p["sha256"].(string), p["yaml"].(string)
	if p["status"] != assistant.StatusPending || p["requestedBy"] != "carol" || p["createdBy"] != "assistant:builtin" {
		t.Fatalf("status %v, requestedBy %v, createdBy %v", p["status"], p["requestedBy"], p["createdBy"])
	}
	steps := []struct {
		name, user, path string
		body             any
		code             int
	}{
		{"anonymous", "", "/approve", map[string]string{"sha256": sha}, 403},
		{"not an approver", "bob", "/approve", map[string]string{"sha256": sha}, 403},
		{"no hash", "alice", "/approve", map[string]string{}, 400},
		{"wrong hash", "alice", "/approve", map[string]string{"sha256": strings.Repeat("0", 64)}, 409},
		{"bad body", "alice", "/approve", "{", 400},
		{"unknown", "alice", "/../prop-unknown/approve", map[string]string{"sha256": sha}, 404},
		{"approve", "alice", "/approve", map[string]string{"sha256": sha, "comment": "LGTM"}, 200},
		{"approve twice", "alice", "/approve", map[string]string{"sha256": sha}, 409},
		{"reject decided", "alice", "/reject", nil, 409},
	}
	for _, s := range steps {
		path := "/api/v1/proposals/" + id + s.path
		if s.name == "unknown" {
			path = "/api/v1/proposals/prop-unknown/approve"
		}
		rec, out := do(t, h, "POST", path, s.user, s.body)
		if rec.Code != s.code {
			t.Fatalf("%s: status %d, want %d: %s", s.name, rec.Code, s.code, rec.Body)
		}
		if s.name != "approve" && s.name != "approve twice" && s.name != "reject decided" {
			// Nothing applied before the approval.
			if entries, _ := os.ReadDir(f.dir); len(entries) > 0 {
				t.Fatalf("%s: files exported before approval", s.name)
			}
		}
		if s.name == "approve" && out["status"] != assistant.StatusApplied {
			t.Fatalf("approve: status %v", out["status"])
		}
	}
	// What was exported is byte for byte what was shown.
	got, err := os.ReadFile(filepath.Join(f.dir, "default", "peerauthentication-details-strict-mtls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != yml {
		t.Fatalf("exported YAML differs from the proposal shown:\n%s\n---\n%s", got, yml)
	}
	rec, out := do(t, h, "GET", "/api/v1/proposals/"+id+"/audit", "", nil)
	if rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	var actions []string
	for _, e := range out["events"].([]any) {
		ev := e.(map[string]any)
		actions = append(actions, ev["action"].(string)+":"+ev["actor"].(string))
		if ev["action"] == "proposal.created" && ev["detail"] != "PeerAuthentication for details via assistant:builtin" {
			t.Errorf("proposal.created detail %q does not name the engine", ev["detail"])
		}
	}
	// The person who asked is the actor of the creation, the engine is in the detail.
	want := "proposal.created:carol proposal.denied:anonymous proposal.denied:bob proposal.denied:alice proposal.approved:alice proposal.applied:alice"
	if strings.Join(actions, " ") != want {
		t.Errorf("audit:\n got %s\nwant %s", strings.Join(actions, " "), want)
	}
	rec, out = do(t, h, "GET", "/api/v1/proposals?status=applied", "", nil)
	if rec.Code != 200 || len(out["proposals"].([]any)) != 1 {
		t.Errorf("list applied: %d %v", rec.Code, out)
	}
	if rec, _ := do(t, h, "GET", "/api/v1/proposals?status=bogus", "", nil); rec.Code != 400 {
		t.Errorf("bad status filter: %d", rec.Code)
	}
	if rec, _ := do(t, h, "GET", "/api/v1/proposals/nope", "", nil); rec.Code != 404 {
		t.Errorf("unknown proposal: %d", rec.Code)
	}
}

func TestRejectAndExpiry(t *testing.T) {
	f := newFixture(t, "boutique-payment-errors", func(c *assistant.Config) { c.ProposalTTL = time.Hour })
	h := f.a.Handler()
	p := proposeVia(t, h, "", "propose a fix for paymentservice")
	rec, out := do(t, h, "POST", "/api/v1/proposals/"+p["id"].(string)+"/reject", "alice", map[string]string{"comment": "not now"})
	if rec.Code != 200 || out["status"] != assistant.StatusRejected || out["decidedBy"] != "alice" {
		t.Fatalf("reject: %d %v", rec.Code, out)
	}
	p = proposeVia(t, h, "", "propose a fix for paymentservice")
	f.advance(2 * time.Hour)
	rec, out = do(t, h, "POST", "/api/v1/proposals/"+p["id"].(string)+"/approve", "alice", map[string]string{"sha256": p["sha256"].(string)})
	if rec.Code != 409 || out["status"] != assistant.StatusExpired {
		t.Fatalf("approve expired: %d %v", rec.Code, out)
	}
	if entries, _ := os.ReadDir(f.dir); len(entries) > 0 {
		t.Fatal("expired proposal was exported")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*assistant.Config)
		want   string
	}{
		{"default ok", func(*assistant.Config) {}, ""},
		{"engine", func(c *assistant.Config) { c.Engine = "gpt" }, "engine:"},
		{"openai needs url", func(c *assistant.Config) { c.Engine = "openai"; c.LLM.BaseURL = "localhost:11434" }, "llm.baseURL"},
		{"azure version", func(c *assistant.Config) { c.Engine = "openai"; c.LLM.APIType = "azure" }, "llm.apiVersion"},
		{"steps", func(c *assistant.Config) { c.LLM.MaxSteps = 0 }, "llm.maxSteps"},
		{"budget", func(c *assistant.Config) { c.LLM.MaxTotalTokens = 10 }, "llm.maxTotalTokens"},
		{"kubectl context", func(c *assistant.Config) { c.Applier = "kubectl" }, "kubectlContext"},
		{"applier", func(c *assistant.Config) { c.Applier = "helm" }, "applier:"},
		{"ttl", func(c *assistant.Config) { c.ProposalTTL = 0 }, "proposalTTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := assistant.DefaultConfig()
			tt.mutate(&c)
			p := strings.Join(c.Validate(), "; ")
			if (tt.want == "") != (p == "") || !strings.Contains(p, tt.want) {
				t.Errorf("Validate() = %q, want %q", p, tt.want)
			}
		})
	}
	c := assistant.DefaultConfig()
	c.ApplyEnv(func(k string) string {
		if k == assistant.APIKeyEnv {
			return "sk-x"
		}
		return ""
	})
	if c.LLM.APIKey != "sk-x" {
		t.Errorf("API key not read from %s", assistant.APIKeyEnv)
	}
}

func TestKubectlApplier(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "kubectl")
	// A stand-in kubectl that records its arguments and stdin.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+dir+"/args\ncat > "+dir+"/stdin\necho configured\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "bookinfo-mtls-off", func(c *assistant.Config) {
		c.Applier, c.KubectlContext, c.KubectlPath = "kubectl", "kind-test", script
	})
	h := f.a.Handler()
	p := proposeVia(t, h, "", "propose strict mTLS for details")
	rec, out := do(t, h, "POST", "/api/v1/proposals/"+p["id"].(string)+"/approve", "alice", map[string]string{"sha256": p["sha256"].(string)})
	if rec.Code != 200 || out["status"] != assistant.StatusApplied {
		t.Fatalf("approve: %d %s", rec.Code, rec.Body)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
	if strings.TrimSpace(string(args)) != "--context kind-test apply -f -" {
		t.Errorf("kubectl args %q", args)
	}
	if string(stdin) != p["yaml"].(string) {
		t.Errorf("kubectl got different YAML than shown")
	}
}
