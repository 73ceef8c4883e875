package storage

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshlens/meshlens/assistant"
)

// AssistantStores implements the assistant's ProposalStore, SessionStore and
// AuditLog on a Store: proposals are records whose payload is the proposal's
// JSON, sessions are chat-session records holding their turns, audit events
// are audit-log entries whose subject is the proposal ID.
type AssistantStores struct {
	s Store
}

var (
	_ assistant.ProposalStore = (*AssistantStores)(nil)
	_ assistant.SessionStore  = (*AssistantStores)(nil)
	_ assistant.AuditLog      = (*AssistantStores)(nil)
)

// ForAssistant adapts s to the assistant's store interfaces.
func ForAssistant(s Store) *AssistantStores { return &AssistantStores{s: s} }

// assistantErr maps storage errors onto the assistant's.
func assistantErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: %w", assistant.ErrNotFound, err)
	case errors.Is(err, ErrConflict), errors.Is(err, ErrExists):
		return fmt.Errorf("%w: %w", assistant.ErrConflict, err)
	}
	return err
}

func (a *AssistantStores) CreateProposal(ctx context.Context, p assistant.Proposal) error {
	return a.createProposal(ctx, p)
}

// CreateProposalAudited stores p and its audit entry in one transaction.
func (a *AssistantStores) CreateProposalAudited(ctx context.Context, p assistant.Proposal, e assistant.AuditEvent) error {
	entry, err := auditEntry(e)
	if err != nil {
		return err
	}
	return a.createProposal(ctx, p, entry)
}

func (a *AssistantStores) createProposal(ctx context.Context, p assistant.Proposal, audit ...AuditEntry) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode proposal %s: %w", p.ID, err)
	}
	return assistantErr(a.s.CreateProposal(ctx, Record{ID: p.ID, Created: p.CreatedAt, Updated: p.CreatedAt,
		State: p.Status, Principal: cmp.Or(p.RequestedBy, p.CreatedBy), Payload: data}, audit...))
}

func auditEntry(e assistant.AuditEvent) (AuditEntry, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("encode audit event %s: %w", e.Action, err)
	}
	return AuditEntry{At: e.Time, Principal: e.Actor, Action: e.Action, Subject: e.ProposalID, Payload: data}, nil
}

func decodeProposal(r Record) (assistant.Proposal, error) {
	var p assistant.Proposal
	if err := json.Unmarshal(r.Payload, &p); err != nil {
		return p, fmt.Errorf("decode proposal %s: %w", r.ID, err)
	}
	p.Status = r.State // the record's state is the authority (compare-and-set)
	return p, nil
}

func (a *AssistantStores) GetProposal(ctx context.Context, id string) (assistant.Proposal, error) {
	r, err := a.s.Proposal(ctx, id)
	if err != nil {
		return assistant.Proposal{}, assistantErr(err)
	}
	return decodeProposal(r)
}

func (a *AssistantStores) ListProposals(ctx context.Context, f assistant.ProposalFilter) ([]assistant.Proposal, error) {
	rs, err := a.s.Proposals(ctx, RecordQuery{State: f.Status, Limit: 100_000})
	if err != nil {
		return nil, err
	}
	out := make([]assistant.Proposal, 0, len(rs))
	for _, r := range rs {
		p, err := decodeProposal(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y assistant.Proposal) int {
		if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (a *AssistantStores) UpdateProposal(ctx context.Context, p assistant.Proposal, from string) error {
	return a.updateProposal(ctx, p, from, nil)
}

// UpdateProposalAudited changes p and appends its audit entry in one transaction.
func (a *AssistantStores) UpdateProposalAudited(ctx context.Context, p assistant.Proposal, from string, e assistant.AuditEvent) error {
	entry, err := auditEntry(e)
	if err != nil {
		return err
	}
	return a.updateProposal(ctx, p, from, &entry)
}

func (a *AssistantStores) updateProposal(ctx context.Context, p assistant.Proposal, from string, audit *AuditEntry) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode proposal %s: %w", p.ID, err)
	}
	at := time.Now()
	if p.DecidedAt != nil {
		at = *p.DecidedAt
	}
	_, err = a.s.TransitionProposal(ctx, Transition{ID: p.ID, From: from, To: p.Status, At: at, Payload: data, Audit: audit})
	return assistantErr(err)
}

type turns struct {
	Turns []assistant.Turn `json:"turns"`
}

func (a *AssistantStores) AppendTurn(ctx context.Context, id string, t assistant.Turn, keep int) error {
	r, err := a.s.ChatSession(ctx, id)
	var ts turns
	switch {
	case errors.Is(err, ErrNotFound):
		r = Record{ID: id, Created: t.Time, State: "open"}
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(r.Payload, &ts); err != nil {
			return fmt.Errorf("decode chat session %s: %w", id, err)
		}
	}
	ts.Turns = append(ts.Turns, t)
	if keep > 0 && len(ts.Turns) > keep {
		ts.Turns = ts.Turns[len(ts.Turns)-keep:]
	}
	if r.Payload, err = json.Marshal(ts); err != nil {
		return fmt.Errorf("encode chat session %s: %w", id, err)
	}
	r.Updated = t.Time
	return a.s.PutChatSession(ctx, r)
}

func (a *AssistantStores) Turns(ctx context.Context, id string) ([]assistant.Turn, error) {
	r, err := a.s.ChatSession(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ts turns
	if err := json.Unmarshal(r.Payload, &ts); err != nil {
		return nil, fmt.Errorf("decode chat session %s: %w", id, err)
	}
	return ts.Turns, nil
}

func (a *AssistantStores) Append(ctx context.Context, e assistant.AuditEvent) error {
	entry, err := auditEntry(e)
	if err != nil {
		return err
	}
	_, err = a.s.AppendAudit(ctx, entry)
	return err
}

func (a *AssistantStores) List(ctx context.Context, proposalID string) ([]assistant.AuditEvent, error) {
	var out []assistant.AuditEvent
	q := AuditQuery{Subject: proposalID, Limit: 100_000}
	for {
		es, err := a.s.Audit(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			var ev assistant.AuditEvent
			if err := json.Unmarshal(e.Payload, &ev); err != nil {
				return nil, fmt.Errorf("decode audit entry %d: %w", e.Seq, err)
			}
			out = append(out, ev)
		}
		if len(es) < q.Limit {
			return out, nil
		}
		q.AfterSeq = es[len(es)-1].Seq
	}
}
