package app

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/assistant/llmstub"
	"github.com/meshlens/meshlens/auth"
)

// proposingLLM is a scripted model that proposes a timeout for ratings, then answers.
func proposingLLM(req *llmstub.Request) llmstub.Reply {
	if req.Step() == 0 {
		return llmstub.Reply{ToolCalls: []llmstub.Call{{Name: "propose_policy",
			Arguments: `{"kind":"VirtualService","service":"ratings","timeout":"500ms","rationale":"ratings p95 rose to about 200ms"}`}}}
	}
	return llmstub.Reply{Content: "I proposed a 500ms timeout for ratings; an approver must review it."}
}

// TestChatProposalAuditedAsPrincipal runs the whole app (authentication, web
// server, assistant, SQLite store) and asks the chat for a proposal with a
// bearer token: the audit's proposal.created entry names the token's
// principal, whichever engine wrote the proposal, and the approval that
// follows names the approver.
func TestChatProposalAuditedAsPrincipal(t *testing.T) {
	const askerToken, approverToken = "alice-operator-token", "bob-approver-token"
	tests := []struct {
		name   string
		tokens bool           // false: open demo mode
		llm    llmstub.Script // nil: built-in engine
		token  string
		spoof  string // X-Meshlens-User header a client could set
		want   string
		engine string
	}{
		{name: "token, builtin", tokens: true, token: askerToken, spoof: "mallory", want: "alice", engine: "assistant:builtin"},
		{name: "token, llm", tokens: true, llm: proposingLLM, token: askerToken, want: "alice", engine: "assistant:openai"},
		{name: "open mode", want: "anonymous", engine: "assistant:builtin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Demo.Scenario = "bookinfo-ratings-latency"
			cfg.Assistant.ExportDir = t.TempDir()
			if tc.tokens {
				cfg.Auth.Tokens = []auth.Token{
					{Name: "alice", Role: auth.RoleOperator, SHA256: auth.HashToken(askerToken)},
					{Name: "bob", Role: auth.RoleApprover, SHA256: auth.HashToken(approverToken)},
				}
			}
			if tc.llm != nil {
				stub := llmstub.New(tc.llm)
				if err := stub.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stub.Close)
				cfg.Assistant.Engine = assistant.EngineOpenAI
				cfg.Assistant.LLM.BaseURL = stub.URL()
				cfg.Assistant.LLM.APIKey = "sk-stub"
				cfg.Assistant.LLM.Stream = false
			}
			a := startApp(t, cfg, slog.New(slog.DiscardHandler))
			base := "http://" + a.Web.Addr()
			call := func(method, path, token, body string, out any) {
				t.Helper()
				req, err := http.NewRequest(method, base+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Meshlens-Csrf", "1")
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				if tc.spoof != "" {
					req.Header.Set("X-Meshlens-User", tc.spoof)
				}
				resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
				}
				if err := json.Unmarshal(raw, out); err != nil {
					t.Fatalf("%s %s: %v: %s", method, path, err, raw)
				}
			}

			var ans assistant.Answer
			call("POST", "/api/v1/chat", tc.token, `{"message":"propose a timeout for ratings"}`, &ans)
			if ans.Engine != strings.TrimPrefix(tc.engine, "assistant:") || len(ans.Proposals) != 1 {
				t.Fatalf("engine %s (fallback %q), %d proposals: %.300s", ans.Engine, ans.Fallback, len(ans.Proposals), ans.Answer)
			}
			p := ans.Proposals[0]
			if p.RequestedBy != tc.want || p.CreatedBy != tc.engine {
				t.Errorf("proposal requestedBy %q createdBy %q, want %q %q", p.RequestedBy, p.CreatedBy, tc.want, tc.engine)
			}
			approver := approverToken
			if !tc.tokens {
				approver = "" // open mode: anonymous is admin
			}
			var decided assistant.Proposal
			call("POST", "/api/v1/proposals/"+p.ID+"/approve", approver, `{"sha256":"`+p.SHA256+`"}`, &decided)

			var audit struct{ Events []assistant.AuditEvent }
			call("GET", "/api/v1/proposals/"+p.ID+"/audit", tc.token, "", &audit)
			var got []string
			for _, e := range audit.Events {
				got = append(got, e.Action+":"+e.Actor)
				if e.Action == "proposal.created" && e.Detail != p.Title+" via "+tc.engine {
					t.Errorf("proposal.created detail %q, want %q", e.Detail, p.Title+" via "+tc.engine)
				}
			}
			decider := map[bool]string{true: "bob", false: "anonymous"}[tc.tokens]
			want := "proposal.created:" + tc.want + " proposal.approved:" + decider + " proposal.applied:" + decider
			if strings.Join(got, " ") != want {
				t.Errorf("audit:\n got %s\nwant %s", strings.Join(got, " "), want)
			}
		})
	}
}
