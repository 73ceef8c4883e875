package storage

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict: a state transition found the record in another state
	// (another replica or request got there first).
	ErrConflict = errors.New("state conflict")
)

// Store is everything meshlens keeps. Implementations: SQLite (default) and
// PostgreSQL; both pass storetest.Run.
type Store interface {
	HistoryStore
	EventStore
	AssistantStore
	// Driver names the implementation ("sqlite", "postgres").
	Driver() string
	// Ping checks the database answers (readiness).
	Ping(ctx context.Context) error
	Close() error
}

// EdgeBucket is the statistics of one edge (workload view) over one bucket.
type EdgeBucket struct {
	Start      time.Time
	Source     graph.Node
	Target     graph.Node
	Protocol   graph.Protocol
	Stats      graph.Stats
	Principals []string
}

// EdgeTotal is the statistics of one edge summed over a range.
type EdgeTotal struct {
	Source, Target      graph.Node
	Protocol            graph.Protocol
	Stats               graph.Stats
	Principals          []string
	FirstSeen, LastSeen time.Time // first and last bucket with data in the range
}

// Topology is the set of nodes and edges seen at one time.
type Topology struct {
	At    time.Time      `json:"at"`
	Nodes []string       `json:"nodes"` // node IDs (workload view)
	Edges []TopologyEdge `json:"edges"`
}

// TopologyEdge is one edge of a topology snapshot.
type TopologyEdge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
}

// RollupResult counts what one Rollup pass did.
type RollupResult struct {
	Written int64 // coarser rows written
	Deleted int64 // rows dropped by retention
}

// HistoryStore keeps edge history in tiers of resolution.
type HistoryStore interface {
	// WriteBuckets upserts edge buckets of resolution res.
	WriteBuckets(ctx context.Context, res time.Duration, b []EdgeBucket) error
	// ReadBuckets returns buckets of resolution res with from <= Start < to, oldest first.
	ReadBuckets(ctx context.Context, res time.Duration, from, to time.Time) ([]EdgeBucket, error)
	// SumBuckets sums buckets of resolution res with from <= Start < to per edge.
	SumBuckets(ctx context.Context, res time.Duration, from, to time.Time) ([]EdgeTotal, error)
	// LastBucket is the start of the newest bucket of resolution res (zero when none).
	LastBucket(ctx context.Context, res time.Duration) (time.Time, error)
	// Rollup folds finished raw buckets (up to upTo) into minutes and minutes
	// into hours, then drops rows past retention relative to now.
	Rollup(ctx context.Context, raw time.Duration, upTo, now time.Time, r Retention) (RollupResult, error)
	// RolledUpTo is the end of the range already folded into resolution res.
	RolledUpTo(ctx context.Context, res time.Duration) (time.Time, error)
	PutTopology(ctx context.Context, t Topology) error
	// TopologyAt is the newest snapshot taken at or before t.
	TopologyAt(ctx context.Context, t time.Time) (Topology, bool, error)
	// PutBlob and Blob keep small named state (detector baselines).
	PutBlob(ctx context.Context, key string, val []byte) error
	Blob(ctx context.Context, key string) ([]byte, bool, error)
}

// EventQuery selects anomalies or incidents; zero fields match all.
type EventQuery struct {
	State string    // firing, resolved
	Since time.Time // updated at or after
	Until time.Time // updated before (zero: no bound)
	Limit int       // 0: 1000
}

// StateChange is one recorded change of an anomaly or incident.
type StateChange struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // anomaly, incident
	ID     string    `json:"id"`
	Action string    `json:"action"` // fired, updated, resolved
	State  string    `json:"state"`
}

// EventStore keeps anomalies and incidents, current form and history of changes.
type EventStore interface {
	// RecordChanges upserts each change's anomaly or incident and appends a
	// state-change row, in one transaction.
	RecordChanges(ctx context.Context, at time.Time, changes []detect.Change) error
	Anomalies(ctx context.Context, q EventQuery) ([]detect.Anomaly, error)
	Incidents(ctx context.Context, q EventQuery) ([]detect.Incident, error)
	StateChanges(ctx context.Context, id string) ([]StateChange, error)
}

// Record is a generic stored object with a lifecycle: a proposal or a chat
// session. What it holds is the owner's JSON payload.
type Record struct {
	ID        string          `json:"id"`
	Created   time.Time       `json:"created"`
	Updated   time.Time       `json:"updated"`
	State     string          `json:"state"`
	Principal string          `json:"principal"` // who created it
	Payload   json.RawMessage `json:"payload,omitempty"`
}

// Approval is one decision on a proposal.
type Approval struct {
	ID         string          `json:"id"`
	ProposalID string          `json:"proposalId"`
	Created    time.Time       `json:"created"`
	Principal  string          `json:"principal"`
	Decision   string          `json:"decision"` // approved, rejected, ...
	Payload    json.RawMessage `json:"payload,omitempty"`
}

// AuditEntry is one line of the append-only audit log.
type AuditEntry struct {
	Seq       int64           `json:"seq"` // assigned by the store
	At        time.Time       `json:"at"`
	Principal string          `json:"principal"`
	Action    string          `json:"action"`
	Subject   string          `json:"subject"`
	Payload   json.RawMessage `json:"payload,omitempty"`
}

// Transition moves a proposal from one state to another, atomically with
// the approval and audit entry that justify it (either may be nil).
type Transition struct {
	ID       string
	From, To string
	At       time.Time
	// Payload, when set, replaces the proposal's payload in the same update.
	Payload  json.RawMessage
	Approval *Approval
	Audit    *AuditEntry
}

// RecordQuery selects proposals or chat sessions; zero fields match all.
type RecordQuery struct {
	State     string
	Principal string
	Since     time.Time // updated at or after
	Limit     int       // 0: 1000
}

// AuditQuery selects audit entries, oldest first.
type AuditQuery struct {
	AfterSeq  int64
	Since     time.Time
	Principal string
	Subject   string
	Limit     int // 0: 1000
}

// AssistantStore keeps proposals, approvals, the audit log and chat sessions.
type AssistantStore interface {
	// CreateProposal stores a new proposal and, in the same transaction,
	// the audit entries given: neither is kept without the other. ErrExists
	// when the ID is taken.
	CreateProposal(ctx context.Context, r Record, audit ...AuditEntry) error
	// TransitionProposal applies t when the proposal is in t.From, else
	// ErrConflict (ErrNotFound when absent), and returns the updated record.
	TransitionProposal(ctx context.Context, t Transition) (Record, error)
	Proposal(ctx context.Context, id string) (Record, error)
	Proposals(ctx context.Context, q RecordQuery) ([]Record, error)
	Approvals(ctx context.Context, proposalID string) ([]Approval, error)
	// AppendAudit appends e and returns its sequence number; entries are never changed.
	AppendAudit(ctx context.Context, e AuditEntry) (int64, error)
	Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// PutChatSession creates or replaces a chat session.
	PutChatSession(ctx context.Context, r Record) error
	ChatSession(ctx context.Context, id string) (Record, error)
	ChatSessions(ctx context.Context, q RecordQuery) ([]Record, error)
}

const defaultLimit = 1000

func limitOf(n int) int {
	if n <= 0 || n > 100_000 {
		return defaultLimit
	}
	return n
}
