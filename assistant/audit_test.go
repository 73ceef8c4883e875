package assistant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/assistant/llmstub"
)

// TestProposalCreatedAuditNamesRequester asks for a proposal through the
// chat endpoints as different principals and engines: the proposal.created
// entry must name the person who asked (the engine goes in the detail), so
// the audit log records the principal of every state change.
func TestProposalCreatedAuditNamesRequester(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		llm     llmstub.Script // nil: built-in engine
		user    string         // X-Meshlens-User (placeholder identity)
		ctxUser string         // principal set by authentication in front of the handler
		want    string         // audit actor
		engine  string         // in the detail
	}{
		{name: "builtin, header user", path: "/api/v1/chat", user: "alice", want: "alice", engine: "assistant:builtin"},
		{name: "builtin, stream", path: "/api/v1/chat/stream", user: "alice", want: "alice", engine: "assistant:builtin"},
		{name: "builtin, anonymous", path: "/api/v1/chat", want: "anonymous", engine: "assistant:builtin"},
		// Authentication wins over a header any client can set.
		{name: "builtin, authenticated beats header", path: "/api/v1/chat", user: "mallory", ctxUser: "erin", want: "erin", engine: "assistant:builtin"},
		{name: "llm", path: "/api/v1/chat", llm: investigator, user: "dave", want: "dave", engine: "assistant:openai"},
		{name: "llm, stream", path: "/api/v1/chat/stream", llm: investigator, ctxUser: "dave", want: "dave", engine: "assistant:openai"},
		{name: "llm down, built-in proposes", path: "/api/v1/chat", user: "frank", want: "frank", engine: "assistant:builtin",
			llm: func(*llmstub.Request) llmstub.Reply { return llmstub.Reply{Status: http.StatusInternalServerError} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mutate func(*assistant.Config)
			if tt.llm != nil {
				mutate = llmConfig(startStub(t, tt.llm).URL(), false)
			}
			f := newFixture(t, "bookinfo-ratings-latency", mutate)
			h := f.a.Handler()
			if tt.ctxUser != "" {
				inner := h
				h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					p := assistant.Principal{Name: tt.ctxUser, Roles: []string{assistant.RoleViewer}}
					inner.ServeHTTP(w, r.WithContext(assistant.WithPrincipal(r.Context(), p)))
				})
			}
			body, _ := json.Marshal(map[string]string{"message": "propose a timeout for ratings"})
			req := httptest.NewRequest(http.MethodPost, tt.path, bytes.NewReader(body))
			if tt.user != "" {
				req.Header.Set("X-Meshlens-User", tt.user)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "event: error") {
				t.Fatalf("chat: %d %.500s", rec.Code, rec.Body)
			}
			props, err := f.store.ListProposals(context.Background(), assistant.ProposalFilter{})
			if err != nil || len(props) != 1 {
				t.Fatalf("proposals %d, %v; answer %.500s", len(props), err, rec.Body)
			}
			p := props[0]
			if p.RequestedBy != tt.want || p.CreatedBy != tt.engine {
				t.Errorf("proposal requestedBy %q createdBy %q, want %q %q", p.RequestedBy, p.CreatedBy, tt.want, tt.engine)
			}
			events, err := f.store.List(context.Background(), p.ID)
			if err != nil || len(events) != 1 {
				t.Fatalf("audit %+v, %v: want one entry", events, err)
			}
			e := events[0]
			if e.Action != "proposal.created" || e.Actor != tt.want || e.Detail != p.Title+" via "+tt.engine || e.SHA256 != p.SHA256 {
				t.Errorf("audit entry %+v: want proposal.created by %q, detail %q", e, tt.want, p.Title+" via "+tt.engine)
			}
		})
	}
}

// fullStore refuses every new proposal, as a store on a full disk does.
type fullStore struct{ *assistant.MemoryStore }

func (fullStore) CreateProposal(_ context.Context, p assistant.Proposal) error {
	return fmt.Errorf("create proposal %s: database or disk is full (13)", p.ID)
}

// TestProposeWhenStoreRefuses: a proposal the store refuses is reported as
// not created, with the store's reason, and leaves no audit entry behind.
func TestProposeWhenStoreRefuses(t *testing.T) {
	w := world(t, "bookinfo-ratings-latency")
	mem := assistant.NewMemoryStore()
	cfg := assistant.DefaultConfig()
	cfg.ExportDir = t.TempDir()
	a, err := assistant.New(assistant.Options{Config: cfg, Graph: w.Graph, Detector: w.Detector,
		Proposals: fullStore{mem}, Sessions: mem, Audit: mem})
	if err != nil {
		t.Fatal(err)
	}
	rec, out := do(t, a.Handler(), "POST", "/api/v1/chat", "alice", map[string]string{"message": "propose a timeout for ratings"})
	if rec.Code != http.StatusOK {
		t.Fatalf("chat: %d %s", rec.Code, rec.Body)
	}
	answer, _ := out["answer"].(string)
	if props, _ := out["proposals"].([]any); len(props) != 0 {
		t.Errorf("%d proposals returned for a refused write", len(props))
	}
	for _, want := range []string{"could not be saved, so none was created", "database or disk is full"} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer %q does not say %q", answer, want)
		}
	}
	if events, _ := mem.List(context.Background(), ""); len(events) != 0 {
		t.Errorf("audit entries for a proposal never created: %+v", events)
	}
}

// txStore keeps proposals and the audit log together (as storage does) and
// counts which path the assistant wrote through; fail refuses the
// transactional writes the way a full disk would.
type txStore struct {
	*assistant.MemoryStore
	fail             bool
	atomic, separate int
}

func (s *txStore) CreateProposal(ctx context.Context, p assistant.Proposal) error {
	s.separate++
	return s.MemoryStore.CreateProposal(ctx, p)
}

func (s *txStore) CreateProposalAudited(ctx context.Context, p assistant.Proposal, e assistant.AuditEvent) error {
	s.atomic++
	if s.fail {
		return fmt.Errorf("create proposal %s: commit: database or disk is full (13)", p.ID)
	}
	return s.MemoryStore.CreateProposalAudited(ctx, p, e)
}

// TestProposalAndAuditWrittenTogether: when one store keeps both, a
// proposal and its audit entry go in one write, and a refused write leaves
// neither.
func TestProposalAndAuditWrittenTogether(t *testing.T) {
	w := world(t, "bookinfo-ratings-latency")
	for _, tc := range []struct {
		name        string
		fail        bool
		wantCreated int
	}{
		{"stored", false, 1},
		{"refused", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &txStore{MemoryStore: assistant.NewMemoryStore(), fail: tc.fail}
			cfg := assistant.DefaultConfig()
			cfg.ExportDir = t.TempDir()
			a, err := assistant.New(assistant.Options{Config: cfg, Graph: w.Graph, Detector: w.Detector, Proposals: st, Sessions: st, Audit: st})
			if err != nil {
				t.Fatal(err)
			}
			rec, _ := do(t, a.Handler(), "POST", "/api/v1/chat", "carol", map[string]string{"message": "propose a timeout for ratings"})
			if rec.Code != http.StatusOK {
				t.Fatalf("chat: %d %s", rec.Code, rec.Body)
			}
			if st.atomic != 1 || st.separate != 0 {
				t.Fatalf("writes: %d transactional, %d separate; want 1 and 0", st.atomic, st.separate)
			}
			ps, _ := st.ListProposals(context.Background(), assistant.ProposalFilter{})
			events, _ := st.List(context.Background(), "")
			if len(ps) != tc.wantCreated || len(events) != tc.wantCreated {
				t.Fatalf("%d proposals and %d audit entries, want %d of each", len(ps), len(events), tc.wantCreated)
			}
			if tc.wantCreated == 1 && (events[0].Actor != "carol" || events[0].ProposalID != ps[0].ID) {
				t.Errorf("audit entry %+v, want carol creating %s", events[0], ps[0].ID)
			}
		})
	}
}
