package assistant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrBadQuestion wraps every reason a question is refused (HTTP 400).
var ErrBadQuestion = errors.New("bad question")

// Options are the assistant's dependencies.
type Options struct {
	Config   Config
	Graph    GraphSource // required
	Detector Detector    // optional: without it there are no anomalies or incidents
	// Stores default to one in-memory store until storage implements them.
	Proposals ProposalStore
	Sessions  SessionStore
	Audit     AuditLog
	// Applier defaults to the one Config names.
	Applier    Applier
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Clock stamps proposals and decides expiry; default time.Now.
	Clock func() time.Time
	// HTTPClient is used for the LLM endpoint; default a client without a global timeout.
	HTTPClient *http.Client
}

// Assistant answers questions and manages proposals.
type Assistant struct {
	cfg       Config
	g         GraphSource
	d         Detector
	proposals ProposalStore
	sessions  SessionStore
	auditLog  AuditLog
	applier   Applier
	log       *slog.Logger
	now       func() time.Time
	llm       *llmEngine
	met       *metrics
}

// New builds the assistant; it starts nothing.
func New(o Options) (*Assistant, error) {
	if p := o.Config.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("assistant config: %s", strings.Join(p, "; "))
	}
	if o.Graph == nil {
		return nil, errors.New("assistant: a graph source is required")
	}
	a := &Assistant{cfg: o.Config, g: o.Graph, d: o.Detector, proposals: o.Proposals, sessions: o.Sessions,
		auditLog: o.Audit, applier: o.Applier, log: o.Logger, now: o.Clock}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.proposals == nil || a.sessions == nil || a.auditLog == nil {
		m := NewMemoryStore()
		if a.proposals == nil {
			a.proposals = m
		}
		if a.sessions == nil {
			a.sessions = m
		}
		if a.auditLog == nil {
			a.auditLog = m
		}
	}
	if a.applier == nil {
		switch o.Config.Applier {
		case ApplierKubectl:
			a.applier = &KubectlApplier{Path: o.Config.KubectlPath, Context: o.Config.KubectlContext}
		default:
			a.applier = &ExportApplier{Dir: o.Config.ExportDir}
		}
	}
	if o.Config.Engine == EngineOpenAI {
		a.llm = newLLMEngine(a, o.Config.LLM, o.HTTPClient)
	}
	a.met = newMetrics()
	if o.Registerer != nil {
		if err := a.met.register(o.Registerer); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Start does nothing: the assistant runs on requests. It exists for the app's lifecycle.
func (a *Assistant) Start(context.Context) error { return nil }

// Shutdown does nothing and is safe to call twice.
func (a *Assistant) Shutdown(context.Context) error { return nil }

// Question is one chat message.
type Question struct {
	SessionID string `json:"sessionId"`
	Message   string `json:"message"`
}

// Answer is the reply to a question.
type Answer struct {
	SessionID string     `json:"sessionId"`
	Answer    string     `json:"answer"`
	Engine    string     `json:"engine"`             // builtin or openai
	Fallback  string     `json:"fallback,omitempty"` // why the built-in engine answered instead of the LLM
	Links     []Link     `json:"links"`
	ToolCalls []ToolCall `json:"toolCalls"`
	Proposals []Proposal `json:"proposals"`
}

// Event is one streamed piece of an answer.
type Event struct {
	Type     string    `json:"type"` // tool, delta, done
	Text     string    `json:"text,omitempty"`
	ToolCall *ToolCall `json:"toolCall,omitempty"`
	Answer   *Answer   `json:"answer,omitempty"`
}

// CheckQuestion refuses empty, oversized and binary messages.
func (a *Assistant) CheckQuestion(msg string) error {
	switch {
	case len(msg) > a.cfg.MaxQuestionBytes:
		return fmt.Errorf("%w: message is %d bytes; the limit is %d", ErrBadQuestion, len(msg), a.cfg.MaxQuestionBytes)
	case strings.TrimSpace(msg) == "":
		return fmt.Errorf("%w: message is empty", ErrBadQuestion)
	case !utf8.ValidString(msg):
		return fmt.Errorf("%w: message is not UTF-8 text", ErrBadQuestion)
	}
	for _, r := range msg {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return fmt.Errorf("%w: message contains binary data (control character %U)", ErrBadQuestion, r)
		}
	}
	return nil
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "s-" + hex.EncodeToString(b[:])
}

// Ask answers one question. sink, when not nil, receives tool calls and the
// answer text as they come (the LLM engine streams; the built-in engine
// sends its answer in one piece).
func (a *Assistant) Ask(ctx context.Context, q Question, sink func(Event)) (Answer, error) {
	if err := a.CheckQuestion(q.Message); err != nil {
		return Answer{}, err
	}
	if q.SessionID == "" {
		q.SessionID = newSessionID()
	} else if len(q.SessionID) > 128 || strings.ContainsFunc(q.SessionID, unicode.IsControl) {
		return Answer{}, fmt.Errorf("%w: sessionId must be at most 128 printable characters", ErrBadQuestion)
	}
	if sink == nil {
		sink = func(Event) {}
	}
	turns, err := a.sessions.Turns(ctx, q.SessionID)
	if err != nil {
		a.log.Warn("assistant: read session", "session", q.SessionID, "err", err)
	}
	var ans Answer
	var subject string
	if a.llm != nil {
		c := &call{a: a, sessionID: q.SessionID, engine: EngineOpenAI}
		text, lerr := a.llm.answer(ctx, c, q.Message, turns, sink)
		if lerr == nil {
			ans = Answer{Answer: text, Engine: EngineOpenAI, Links: c.links, ToolCalls: c.calls, Proposals: c.proposals}
		} else {
			if ctx.Err() != nil {
				return Answer{}, ctx.Err()
			}
			// The endpoint's error can quote the key it was sent (some
			// OpenAI-compatible proxies echo it): scrub before it is shown or logged.
			reason := a.scrub(lerr.Error())
			a.log.Warn("assistant: LLM engine failed; answering with the built-in engine", "err", reason)
			a.met.fallbacks.Inc()
			ans, subject = a.builtin(ctx, q, turns)
			ans.Fallback = reason
			ans.Answer = "The language model could not answer (" + shortReason(reason) + "), so the built-in engine answered instead. " + ans.Answer
			// Proposals the model made before failing stay pending and are listed.
			ans.Proposals = append(c.proposals, ans.Proposals...)
			sink(Event{Type: "delta", Text: ans.Answer})
		}
	} else {
		ans, subject = a.builtin(ctx, q, turns)
		for i := range ans.ToolCalls {
			sink(Event{Type: "tool", ToolCall: &ans.ToolCalls[i]})
		}
		sink(Event{Type: "delta", Text: ans.Answer})
	}
	ans.SessionID = q.SessionID
	ans.Answer = a.scrub(ans.Answer)
	if ans.Links == nil {
		ans.Links = []Link{}
	}
	if ans.ToolCalls == nil {
		ans.ToolCalls = []ToolCall{}
	}
	if ans.Proposals == nil {
		ans.Proposals = []Proposal{}
	}
	if err := a.sessions.AppendTurn(ctx, q.SessionID, Turn{Time: a.now(), Question: q.Message, Answer: ans.Answer, Subject: subject}, a.cfg.SessionTurns); err != nil {
		a.log.Warn("assistant: write session", "session", q.SessionID, "err", err)
	}
	a.met.questions.WithLabelValues(ans.Engine).Inc()
	sink(Event{Type: "done", Answer: &ans})
	return ans, nil
}

func shortReason(s string) string {
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// scrub removes the API key from anything shown, whatever produced it.
func (a *Assistant) scrub(s string) string {
	if k := a.cfg.LLM.APIKey; len(k) >= 4 {
		s = strings.ReplaceAll(s, k, "[redacted]")
	}
	return s
}

type metrics struct {
	questions *prometheus.CounterVec
	fallbacks prometheus.Counter
	proposals *prometheus.CounterVec
	tokens    *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		questions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_assistant_questions_total", Help: "Questions answered, by engine."}, []string{"engine"}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_assistant_llm_fallbacks_total", Help: "Questions the built-in engine answered because the LLM failed."}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_assistant_proposals_total", Help: "Proposal state changes, by state."}, []string{"state"}),
		tokens:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_assistant_llm_tokens_total", Help: "LLM tokens used, by kind (prompt, completion)."}, []string{"kind"}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.questions, m.fallbacks, m.proposals, m.tokens} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register assistant metrics: %w", err)
		}
	}
	return nil
}
