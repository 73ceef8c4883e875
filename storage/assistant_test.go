package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/storage"
)

type assistantStores interface {
	assistant.ProposalStore
	assistant.SessionStore
	assistant.AuditLog
}

// TestAssistantStoresMatchMemoryStore runs one proposal workflow against the
// assistant's in-memory store and the storage adapter and compares every answer.
func TestAssistantStoresMatchMemoryStore(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	decided := t0.Add(2 * time.Minute)
	p1 := assistant.Proposal{ID: "p1", Status: assistant.StatusPending, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), CreatedBy: "assistant:builtin", RequestedBy: "carol",
		Title: "Add a 2s timeout to ratings", YAML: "apiVersion: networking.istio.io/v1\nkind: VirtualService\n", SHA256: "ab12"}
	p2 := p1
	p2.ID, p2.CreatedAt, p2.Title = "p2", t0.Add(time.Minute), "Outlier detection on reviews"
	approved := p1
	approved.Status, approved.DecidedBy, approved.DecidedAt = assistant.StatusApproved, "alice", &decided

	type step struct {
		name string
		do   func(context.Context, assistantStores) (any, error)
	}
	steps := []step{
		{"create p1", func(ctx context.Context, s assistantStores) (any, error) { return nil, s.CreateProposal(ctx, p1) }},
		{"create p2", func(ctx context.Context, s assistantStores) (any, error) { return nil, s.CreateProposal(ctx, p2) }},
		{"create p1 again", func(ctx context.Context, s assistantStores) (any, error) { return nil, s.CreateProposal(ctx, p1) }},
		{"get p1", func(ctx context.Context, s assistantStores) (any, error) { return s.GetProposal(ctx, "p1") }},
		{"get missing", func(ctx context.Context, s assistantStores) (any, error) { return s.GetProposal(ctx, "nope") }},
		{"list", func(ctx context.Context, s assistantStores) (any, error) {
			return s.ListProposals(ctx, assistant.ProposalFilter{})
		}},
		{"approve", func(ctx context.Context, s assistantStores) (any, error) {
			return nil, s.UpdateProposal(ctx, approved, assistant.StatusPending)
		}},
		{"approve again", func(ctx context.Context, s assistantStores) (any, error) {
			return nil, s.UpdateProposal(ctx, approved, assistant.StatusPending)
		}},
		{"list pending", func(ctx context.Context, s assistantStores) (any, error) {
			return s.ListProposals(ctx, assistant.ProposalFilter{Status: assistant.StatusPending})
		}},
		{"list limit", func(ctx context.Context, s assistantStores) (any, error) {
			return s.ListProposals(ctx, assistant.ProposalFilter{Limit: 1})
		}},
		{"get approved", func(ctx context.Context, s assistantStores) (any, error) { return s.GetProposal(ctx, "p1") }},
		{"audit", func(ctx context.Context, s assistantStores) (any, error) {
			for _, e := range []assistant.AuditEvent{
				{Time: t0, Actor: "carol", Action: "proposal.created", ProposalID: "p1", SHA256: "ab12", Detail: "Add a 2s timeout to ratings via assistant:builtin"},
				{Time: t0, Actor: "anonymous", Action: "proposal.created", ProposalID: "p2", SHA256: "ab12", Detail: "Outlier detection on reviews via assistant:openai"},
				{Time: decided, Actor: "alice", Action: "proposal.approved", ProposalID: "p1", SHA256: "ab12", Detail: "ok"},
			} {
				if err := s.Append(ctx, e); err != nil {
					return nil, err
				}
			}
			return s.List(ctx, "p1")
		}},
		{"audit all", func(ctx context.Context, s assistantStores) (any, error) { return s.List(ctx, "") }},
		{"turns", func(ctx context.Context, s assistantStores) (any, error) {
			for i, q := range []string{"why is ratings slow?", "since when?", "what about reviews?"} {
				if err := s.AppendTurn(ctx, "sess-1", assistant.Turn{Time: t0.Add(time.Duration(i) * time.Second), Question: q, Answer: "…", Subject: "ratings"}, 2); err != nil {
					return nil, err
				}
			}
			return s.Turns(ctx, "sess-1")
		}},
		{"no turns", func(ctx context.Context, s assistantStores) (any, error) { return s.Turns(ctx, "none") }},
	}
	mem := assistant.NewMemoryStore()
	sql := storage.ForAssistant(openSQLite(t))
	ctx := t.Context()
	for _, st := range steps {
		wantV, wantErr := st.do(ctx, mem)
		gotV, gotErr := st.do(ctx, sql)
		for _, target := range []error{assistant.ErrNotFound, assistant.ErrConflict} {
			if errors.Is(wantErr, target) != errors.Is(gotErr, target) {
				t.Fatalf("%s: error %v, memory store %v", st.name, gotErr, wantErr)
			}
		}
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%s: error %v, memory store %v", st.name, gotErr, wantErr)
		}
		w, _ := json.Marshal(wantV)
		g, _ := json.Marshal(gotV)
		if string(w) != string(g) {
			t.Fatalf("%s:\n got %s\nwant %s", st.name, g, w)
		}
	}
}
