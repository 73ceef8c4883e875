package assistant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshlens/meshlens/assistant/policy"
)

// Applier hands an approved proposal's YAML, byte for byte, to its destination.
type Applier interface {
	Name() string
	Apply(ctx context.Context, p Proposal) (ApplyResult, error)
}

// CurrentSource knows the current text of a resource, for diffs.
type CurrentSource interface {
	Current(r policy.Resource) (string, bool)
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// joinResources is the proposal's YAML: its resources' documents in order.
func joinResources(rs []policy.Resource) string {
	docs := make([]string, len(rs))
	for i, r := range rs {
		docs[i] = r.YAML
	}
	return strings.Join(docs, "---\n")
}

// checkIntegrity makes sure the bytes about to be applied are the ones shown.
func checkIntegrity(p Proposal) error {
	if digest(p.YAML) != p.SHA256 {
		return fmt.Errorf("proposal %s: stored YAML does not match its sha256", p.ID)
	}
	if joinResources(p.Resources) != p.YAML {
		return fmt.Errorf("proposal %s: resources do not match the YAML shown", p.ID)
	}
	return nil
}

// ExportApplier writes each resource to Dir/<namespace>/<kind>-<name>.yaml,
// ready for GitOps or `kubectl apply -R -f Dir`.
type ExportApplier struct{ Dir string }

func (e *ExportApplier) Name() string { return ApplierExport }

func (e *ExportApplier) path(r policy.Resource) string {
	return filepath.Join(e.Dir, r.Namespace, strings.ToLower(r.Kind)+"-"+r.Name+".yaml")
}

// Current reads the last exported version of a resource.
func (e *ExportApplier) Current(r policy.Resource) (string, bool) {
	b, err := os.ReadFile(e.path(r))
	if err != nil {
		return "", false
	}
	return string(b), true
}

func (e *ExportApplier) Apply(_ context.Context, p Proposal) (ApplyResult, error) {
	res := ApplyResult{Applier: ApplierExport, Target: e.Dir}
	if err := checkIntegrity(p); err != nil {
		return res, err
	}
	for _, r := range p.Resources {
		path := e.path(r)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return res, fmt.Errorf("export %s: %w", r.Key(), err)
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(r.YAML), 0o644); err != nil {
			return res, fmt.Errorf("export %s: %w", r.Key(), err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return res, fmt.Errorf("export %s: %w", r.Key(), err)
		}
		res.Files = append(res.Files, path)
	}
	return res, nil
}

// KubectlApplier runs `kubectl --context C apply -f -` with the YAML on stdin.
type KubectlApplier struct {
	Path    string // default "kubectl"
	Context string
}

func (k *KubectlApplier) Name() string { return ApplierKubectl }

func (k *KubectlApplier) Apply(ctx context.Context, p Proposal) (ApplyResult, error) {
	res := ApplyResult{Applier: ApplierKubectl, Target: k.Context}
	if err := checkIntegrity(p); err != nil {
		return res, err
	}
	bin := k.Path
	if bin == "" {
		bin = "kubectl"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--context", k.Context, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(p.YAML)
	out, err := cmd.CombinedOutput()
	res.Output = cleanText(string(out), 4000)
	if err != nil {
		return res, fmt.Errorf("kubectl apply of proposal %s in context %s: %w", p.ID, k.Context, err)
	}
	return res, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "prop-" + hex.EncodeToString(b[:])
}

// requester names who asked for a change: the authenticated principal whose
// question made an engine propose, or "anonymous" when nobody is known (open
// mode, or the assistant's API without authentication in front).
func requester(ctx context.Context) string {
	if p, ok := PrincipalFrom(ctx); ok {
		return p.Name
	}
	return "anonymous"
}

// propose builds, validates and stores a pending proposal. by is the engine
// that wrote it (assistant:builtin, assistant:openai); the audit names the
// person whose question led to it, as it does for every state change.
func (a *Assistant) propose(ctx context.Context, params policy.Params, rationale string, evidence []string, session, by string) (Proposal, error) {
	res, err := policy.Build(params)
	if err != nil {
		return Proposal{}, err
	}
	now := a.now()
	p := Proposal{
		ID: newID(), Status: StatusPending, CreatedAt: now, ExpiresAt: now.Add(a.cfg.ProposalTTL),
		CreatedBy: by, RequestedBy: requester(ctx), SessionID: session, Params: params, Resources: res, Rationale: rationale,
		Title: fmt.Sprintf("%s for %s", params.Kind, params.Service),
	}
	for _, e := range evidence[:min(len(evidence), 10)] {
		p.Evidence = append(p.Evidence, cleanText(e, 300))
	}
	p.YAML = joinResources(res)
	p.SHA256 = digest(p.YAML)
	if cs, ok := a.applier.(CurrentSource); ok {
		var diffs []string
		for _, r := range res {
			if cur, ok := cs.Current(r); ok {
				if d := policy.Diff("current/"+r.Key(), "proposed/"+r.Key(), cur, r.YAML); d != "" {
					diffs = append(diffs, d)
				}
			}
		}
		p.Diff = strings.Join(diffs, "")
	}
	ev := AuditEvent{Actor: p.RequestedBy, Action: "proposal.created", ProposalID: p.ID, SHA256: p.SHA256, Detail: p.Title + " via " + by}
	if err := a.create(ctx, p, ev); err != nil {
		return Proposal{}, fmt.Errorf("store proposal %s: %w", p.ID, err)
	}
	a.met.proposals.WithLabelValues("created").Inc()
	return p, nil
}

// audited is the proposal store when it also keeps the audit log in one
// transaction with proposal changes.
func (a *Assistant) audited() (AuditedProposals, bool) {
	s, ok := a.proposals.(AuditedProposals)
	if !ok {
		return nil, false
	}
	l, ok := a.auditLog.(AuditedProposals)
	return s, ok && s == l
}

// create stores p with its audit entry: in one transaction when the store
// can, else the proposal first and then the entry.
func (a *Assistant) create(ctx context.Context, p Proposal, e AuditEvent) error {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	if s, ok := a.audited(); ok {
		return s.CreateProposalAudited(ctx, p, e)
	}
	if err := a.proposals.CreateProposal(ctx, p); err != nil {
		return err
	}
	a.audit(ctx, e)
	return nil
}

// update changes p from the state from, with its audit entry, as create.
func (a *Assistant) update(ctx context.Context, p Proposal, from string, e AuditEvent) error {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	if s, ok := a.audited(); ok {
		return s.UpdateProposalAudited(ctx, p, from, e)
	}
	if err := a.proposals.UpdateProposal(ctx, p, from); err != nil {
		return err
	}
	a.audit(ctx, e)
	return nil
}

func (a *Assistant) audit(ctx context.Context, e AuditEvent) {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	if err := a.auditLog.Append(ctx, e); err != nil {
		a.log.Error("assistant: audit log append failed", "action", e.Action, "proposal", e.ProposalID, "err", err)
	}
}

// expire marks a pending proposal past its deadline as expired.
func (a *Assistant) expire(ctx context.Context, p Proposal) Proposal {
	if p.Status != StatusPending || a.now().Before(p.ExpiresAt) {
		return p
	}
	q := p
	q.Status = StatusExpired
	if err := a.update(ctx, q, StatusPending, AuditEvent{Actor: "meshlens", Action: "proposal.expired", ProposalID: p.ID, SHA256: p.SHA256}); err == nil {
		return q
	}
	if cur, err := a.proposals.GetProposal(ctx, p.ID); err == nil {
		return cur
	}
	return q
}

// Proposal returns one proposal.
func (a *Assistant) Proposal(ctx context.Context, id string) (Proposal, error) {
	p, err := a.proposals.GetProposal(ctx, id)
	if err != nil {
		return Proposal{}, err
	}
	return a.expire(ctx, p), nil
}

// Proposals lists proposals, newest first.
func (a *Assistant) Proposals(ctx context.Context, f ProposalFilter) ([]Proposal, error) {
	list, err := a.proposals.ListProposals(ctx, ProposalFilter{Limit: 0})
	if err != nil {
		return nil, err
	}
	out := list[:0]
	for _, p := range list {
		p = a.expire(ctx, p)
		if f.Status == "" || p.Status == f.Status {
			out = append(out, p)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Decision is an approver's verdict on a proposal.
type Decision struct {
	// SHA256 of the YAML the approver saw; required to approve, so what is
	// applied is exactly what was shown.
	SHA256  string `json:"sha256"`
	Comment string `json:"comment"`
}

// Approve applies a pending proposal on behalf of the approver in ctx. Only
// a principal with the approver role may; the assistant's engines have no
// path here. Errors: ErrForbidden, ErrNotFound, ErrConflict (decided or
// expired), ErrHashMismatch.
func (a *Assistant) Approve(ctx context.Context, id string, d Decision) (Proposal, error) {
	return a.decide(ctx, id, d, true)
}

// Reject closes a pending proposal; same rules as Approve, no hash needed.
func (a *Assistant) Reject(ctx context.Context, id string, d Decision) (Proposal, error) {
	return a.decide(ctx, id, d, false)
}

func (a *Assistant) decide(ctx context.Context, id string, d Decision, approve bool) (Proposal, error) {
	verb := map[bool]string{true: "approve", false: "reject"}[approve]
	who, ok := PrincipalFrom(ctx)
	if !ok || !who.Has(RoleApprover) {
		name := requester(ctx)
		a.audit(ctx, AuditEvent{Actor: name, Action: "proposal.denied", ProposalID: id, Detail: verb + ": not an approver"})
		return Proposal{}, fmt.Errorf("%s proposal %s: %s does not have the approver role: %w", verb, id, name, ErrForbidden)
	}
	p, err := a.Proposal(ctx, id)
	if err != nil {
		return Proposal{}, fmt.Errorf("%s proposal %s: %w", verb, id, err)
	}
	if p.Status != StatusPending {
		return p, fmt.Errorf("%s proposal %s: it is %s: %w", verb, id, p.Status, ErrConflict)
	}
	if approve && !strings.EqualFold(strings.TrimSpace(d.SHA256), p.SHA256) {
		a.audit(ctx, AuditEvent{Actor: who.Name, Action: "proposal.denied", ProposalID: id, SHA256: p.SHA256, Detail: "approve: sha256 mismatch"})
		return p, fmt.Errorf("approve proposal %s: %w", id, ErrHashMismatch)
	}
	now := a.now()
	q := p
	q.DecidedBy, q.DecidedAt, q.Comment = who.Name, &now, cleanText(d.Comment, 1000)
	q.Status = StatusRejected
	if approve {
		q.Status = StatusApproved
	}
	if err := a.update(ctx, q, StatusPending, AuditEvent{Actor: who.Name, Action: "proposal." + q.Status, ProposalID: id, SHA256: q.SHA256, Detail: q.Comment}); err != nil {
		return p, fmt.Errorf("%s proposal %s: %w", verb, id, err)
	}
	a.met.proposals.WithLabelValues(q.Status).Inc()
	if !approve {
		return q, nil
	}
	res, aerr := a.applier.Apply(ctx, q)
	res.At = a.now()
	r := q
	r.Applied = &res
	r.Status = StatusApplied
	if aerr != nil {
		r.Status = StatusApplyFailed
		r.Applied.Error = aerr.Error()
	}
	detail := res.Applier + " -> " + res.Target
	if aerr != nil {
		detail += ": " + aerr.Error()
	}
	if err := a.update(ctx, r, StatusApproved, AuditEvent{Actor: who.Name, Action: "proposal." + r.Status, ProposalID: id, SHA256: r.SHA256, Detail: detail}); err != nil {
		return q, fmt.Errorf("record apply of proposal %s: %w", id, errors.Join(err, aerr))
	}
	a.met.proposals.WithLabelValues(r.Status).Inc()
	return r, nil
}
