package assistant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/assistant/policy"
)

// Proposal states.
const (
	StatusPending     = "pending"
	StatusApproved    = "approved" // approved, being applied
	StatusApplied     = "applied"
	StatusApplyFailed = "apply_failed"
	StatusRejected    = "rejected"
	StatusExpired     = "expired"
)

// Errors of the proposal workflow; the HTTP layer maps them to 404 / 409 / 403.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrForbidden    = errors.New("forbidden")
	ErrHashMismatch = errors.New("sha256 does not match the proposal shown")
)

// Proposal is a set of Istio resources the assistant suggests. YAML is what
// is shown and, byte for byte, what is applied; SHA256 is its hex digest.
type Proposal struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	CreatedBy string    `json:"createdBy"` // engine: assistant:builtin, assistant:openai
	// RequestedBy is the principal whose chat question led to the proposal
	// ("anonymous" when none is known); the audit's proposal.created actor.
	RequestedBy string            `json:"requestedBy,omitempty"`
	SessionID   string            `json:"sessionId,omitempty"`
	Title       string            `json:"title"`
	Rationale   string            `json:"rationale"`
	Evidence    []string          `json:"evidence,omitempty"`
	Params      policy.Params     `json:"params"`
	Resources   []policy.Resource `json:"resources"`
	YAML        string            `json:"yaml"`
	SHA256      string            `json:"sha256"`
	Diff        string            `json:"diff,omitempty"` // against the current resources, when known
	DecidedBy   string            `json:"decidedBy,omitempty"`
	DecidedAt   *time.Time        `json:"decidedAt,omitempty"`
	Comment     string            `json:"comment,omitempty"`
	Applied     *ApplyResult      `json:"applied,omitempty"`
}

// ApplyResult says where an approved proposal went.
type ApplyResult struct {
	Applier string    `json:"applier"`
	Target  string    `json:"target"` // directory or kube context
	Files   []string  `json:"files,omitempty"`
	Output  string    `json:"output,omitempty"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// ProposalFilter selects proposals; zero fields match all.
type ProposalFilter struct {
	Status string
	Limit  int
}

// ProposalStore keeps proposals. UpdateProposal is a compare-and-set on the
// status: it fails with ErrConflict unless the stored status is from, so two
// approvers can never both decide one proposal.
type ProposalStore interface {
	CreateProposal(ctx context.Context, p Proposal) error
	GetProposal(ctx context.Context, id string) (Proposal, error) // ErrNotFound
	ListProposals(ctx context.Context, f ProposalFilter) ([]Proposal, error)
	UpdateProposal(ctx context.Context, p Proposal, from string) error // ErrNotFound, ErrConflict
}

// AuditedProposals is implemented by proposal stores that keep the audit
// log too and write a change and its audit entry in one transaction, so
// neither is kept without the other (a full disk between two writes would
// otherwise leave a proposal nobody is recorded as having asked for).
type AuditedProposals interface {
	CreateProposalAudited(ctx context.Context, p Proposal, e AuditEvent) error
	UpdateProposalAudited(ctx context.Context, p Proposal, from string, e AuditEvent) error
}

// Turn is one exchange of a chat session.
type Turn struct {
	Time     time.Time `json:"time"`
	Question string    `json:"question"`
	Answer   string    `json:"answer"`
	Subject  string    `json:"subject,omitempty"` // service the turn was about, for follow-ups
}

// SessionStore keeps chat sessions for follow-up questions.
type SessionStore interface {
	AppendTurn(ctx context.Context, sessionID string, t Turn, keep int) error
	Turns(ctx context.Context, sessionID string) ([]Turn, error)
}

// AuditEvent records who did what, when.
type AuditEvent struct {
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"` // proposal.created, proposal.approved, proposal.rejected, proposal.applied, proposal.apply_failed, proposal.expired, proposal.denied
	ProposalID string    `json:"proposalId,omitempty"`
	SHA256     string    `json:"sha256,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// AuditLog is append-only.
type AuditLog interface {
	Append(ctx context.Context, e AuditEvent) error
	List(ctx context.Context, proposalID string) ([]AuditEvent, error) // "" = all
}

// MemoryStore implements ProposalStore, SessionStore and AuditLog in memory.
type MemoryStore struct {
	mu          sync.Mutex
	proposals   map[string]Proposal
	sessions    map[string][]Turn
	sessOrder   []string
	maxSessions int
	audit       []AuditEvent
}

var (
	_ ProposalStore = (*MemoryStore)(nil)
	_ SessionStore  = (*MemoryStore)(nil)
	_ AuditLog      = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty store holding at most 1000 sessions.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{proposals: map[string]Proposal{}, sessions: map[string][]Turn{}, maxSessions: 1000}
}

func clone(p Proposal) Proposal {
	p.Evidence = slices.Clone(p.Evidence)
	p.Resources = slices.Clone(p.Resources)
	if p.DecidedAt != nil {
		t := *p.DecidedAt
		p.DecidedAt = &t
	}
	if p.Applied != nil {
		a := *p.Applied
		a.Files = slices.Clone(a.Files)
		p.Applied = &a
	}
	return p
}

func (m *MemoryStore) CreateProposal(_ context.Context, p Proposal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.createLocked(p)
}

func (m *MemoryStore) createLocked(p Proposal) error {
	if _, ok := m.proposals[p.ID]; ok {
		return fmt.Errorf("create proposal %s: %w: exists", p.ID, ErrConflict)
	}
	m.proposals[p.ID] = clone(p)
	return nil
}

// CreateProposalAudited stores p and appends e under one lock.
func (m *MemoryStore) CreateProposalAudited(_ context.Context, p Proposal, e AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.createLocked(p); err != nil {
		return err
	}
	m.audit = append(m.audit, e)
	return nil
}

// UpdateProposalAudited changes p and appends e under one lock.
func (m *MemoryStore) UpdateProposalAudited(_ context.Context, p Proposal, from string, e AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.updateLocked(p, from); err != nil {
		return err
	}
	m.audit = append(m.audit, e)
	return nil
}

func (m *MemoryStore) GetProposal(_ context.Context, id string) (Proposal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.proposals[id]
	if !ok {
		return Proposal{}, fmt.Errorf("proposal %s: %w", id, ErrNotFound)
	}
	return clone(p), nil
}

func (m *MemoryStore) ListProposals(_ context.Context, f ProposalFilter) ([]Proposal, error) {
	m.mu.Lock()
	out := make([]Proposal, 0, len(m.proposals))
	for _, p := range m.proposals {
		if f.Status == "" || p.Status == f.Status {
			out = append(out, clone(p))
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Proposal) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (m *MemoryStore) UpdateProposal(_ context.Context, p Proposal, from string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updateLocked(p, from)
}

func (m *MemoryStore) updateLocked(p Proposal, from string) error {
	cur, ok := m.proposals[p.ID]
	if !ok {
		return fmt.Errorf("proposal %s: %w", p.ID, ErrNotFound)
	}
	if cur.Status != from {
		return fmt.Errorf("proposal %s is %s, not %s: %w", p.ID, cur.Status, from, ErrConflict)
	}
	m.proposals[p.ID] = clone(p)
	return nil
}

func (m *MemoryStore) AppendTurn(_ context.Context, id string, t Turn, keep int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	turns, ok := m.sessions[id]
	if !ok {
		m.sessOrder = append(m.sessOrder, id)
		if len(m.sessOrder) > m.maxSessions {
			delete(m.sessions, m.sessOrder[0])
			m.sessOrder = m.sessOrder[1:]
		}
	}
	turns = append(turns, t)
	if keep > 0 && len(turns) > keep {
		turns = slices.Clone(turns[len(turns)-keep:])
	}
	m.sessions[id] = turns
	return nil
}

func (m *MemoryStore) Turns(_ context.Context, id string) ([]Turn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.sessions[id]), nil
}

func (m *MemoryStore) Append(_ context.Context, e AuditEvent) error {
	m.mu.Lock()
	m.audit = append(m.audit, e)
	m.mu.Unlock()
	return nil
}

func (m *MemoryStore) List(_ context.Context, proposalID string) ([]AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []AuditEvent
	for _, e := range m.audit {
		if proposalID == "" || e.ProposalID == proposalID {
			out = append(out, e)
		}
	}
	return out, nil
}
