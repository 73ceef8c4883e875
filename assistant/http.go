package assistant

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Mounter is what Mount registers routes on (*web.Server, *http.ServeMux).
type Mounter interface {
	Handle(pattern string, h http.Handler)
}

// Mount registers the assistant's API on m:
//
//	POST /api/v1/chat                    {sessionId, message} -> Answer
//	POST /api/v1/chat/stream             same, as server-sent events: tool, delta, done, error
//	GET  /api/v1/proposals[?status=&limit=]
//	GET  /api/v1/proposals/{id}
//	GET  /api/v1/proposals/{id}/audit
//	POST /api/v1/proposals/{id}/approve  {sha256, comment} (approver role)
//	POST /api/v1/proposals/{id}/reject   {comment}         (approver role)
func (a *Assistant) Mount(m Mounter) {
	h := a.Handler()
	for _, p := range []string{"/api/v1/chat", "/api/v1/chat/", "/api/v1/proposals", "/api/v1/proposals/"} {
		m.Handle(p, h)
	}
}

// Handler serves the assistant's API behind the placeholder header identity.
func (a *Assistant) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/chat", a.handleChat)
	mux.HandleFunc("POST /api/v1/chat/stream", a.handleChatStream)
	mux.HandleFunc("GET /api/v1/proposals", a.handleList)
	mux.HandleFunc("GET /api/v1/proposals/{id}", a.handleGet)
	mux.HandleFunc("GET /api/v1/proposals/{id}/audit", a.handleAudit)
	mux.HandleFunc("POST /api/v1/proposals/{id}/approve", a.handleDecide(true))
	mux.HandleFunc("POST /api/v1/proposals/{id}/reject", a.handleDecide(false))
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no assistant route %s %s", r.Method, r.URL.Path))
	})
	return HeaderIdentity(a.cfg.IdentityHeader, a.cfg.Approvers, mux)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (a *Assistant) readQuestion(w http.ResponseWriter, r *http.Request) (Question, bool) {
	// Room for JSON escaping of a question at the limit; beyond that it is refused.
	r.Body = http.MaxBytesReader(w, r.Body, int64(8*a.cfg.MaxQuestionBytes+1024))
	var q Question
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("request body larger than %d bytes; the question limit is %d bytes", mbe.Limit, a.cfg.MaxQuestionBytes))
			return q, false
		}
		writeErr(w, http.StatusBadRequest, "read body: "+err.Error())
		return q, false
	}
	// encoding/json would silently turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(body) {
		writeErr(w, http.StatusBadRequest, "body is not UTF-8 text")
		return q, false
	}
	if err := json.Unmarshal(body, &q); err != nil {
		writeErr(w, http.StatusBadRequest, "body must be JSON {\"sessionId\": \"...\", \"message\": \"...\"}: "+err.Error())
		return q, false
	}
	if err := a.CheckQuestion(q.Message); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return q, false
	}
	return q, true
}

func (a *Assistant) handleChat(w http.ResponseWriter, r *http.Request) {
	q, ok := a.readQuestion(w, r)
	if !ok {
		return
	}
	ans, err := a.Ask(r.Context(), q, nil)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrBadQuestion) {
			code = http.StatusBadRequest
		}
		writeErr(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (a *Assistant) handleChatStream(w http.ResponseWriter, r *http.Request) {
	q, ok := a.readQuestion(w, r)
	if !ok {
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(kind string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", kind, b)
		if fl != nil {
			fl.Flush()
		}
	}
	_, err := a.Ask(r.Context(), q, func(ev Event) {
		switch ev.Type {
		case "done":
			send("done", ev.Answer)
		case "tool":
			send("tool", ev.ToolCall)
		default:
			send(ev.Type, map[string]string{"text": ev.Text})
		}
	})
	if err != nil {
		send("error", map[string]string{"error": err.Error()})
	}
}

func (a *Assistant) handleList(w http.ResponseWriter, r *http.Request) {
	f := ProposalFilter{Status: r.URL.Query().Get("status")}
	switch f.Status {
	case "", StatusPending, StatusApproved, StatusApplied, StatusApplyFailed, StatusRejected, StatusExpired:
	default:
		writeErr(w, http.StatusBadRequest, "status: must be pending, approved, applied, apply_failed, rejected or expired")
		return
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, "limit: must be a non-negative integer")
			return
		}
		f.Limit = n
	}
	list, err := a.Proposals(r.Context(), f)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []Proposal{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"proposals": list})
}

func (a *Assistant) handleGet(w http.ResponseWriter, r *http.Request) {
	p, err := a.Proposal(r.Context(), r.PathValue("id"))
	if err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *Assistant) handleAudit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.proposals.GetProposal(r.Context(), id); err != nil {
		writeErr(w, statusOf(err), err.Error())
		return
	}
	ev, err := a.auditLog.List(r.Context(), id)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	if ev == nil {
		ev = []AuditEvent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": ev})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict), errors.Is(err, ErrHashMismatch):
		return http.StatusConflict
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func (a *Assistant) handleDecide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var d Decision
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil && !errors.Is(err, io.EOF) {
			writeErr(w, http.StatusBadRequest, "body must be JSON {\"sha256\": \"<sha256 of the YAML shown>\", \"comment\": \"...\"}")
			return
		}
		var p Proposal
		var err error
		if approve {
			if strings.TrimSpace(d.SHA256) == "" {
				writeErr(w, http.StatusBadRequest, "sha256: required: the sha256 of the proposal YAML you reviewed")
				return
			}
			p, err = a.Approve(r.Context(), r.PathValue("id"), d)
		} else {
			p, err = a.Reject(r.Context(), r.PathValue("id"), d)
		}
		if err != nil {
			writeJSON(w, statusOf(err), map[string]any{"error": err.Error(), "status": p.Status})
			return
		}
		if p.Status == StatusApplyFailed {
			writeJSON(w, http.StatusBadGateway, p)
			return
		}
		writeJSON(w, http.StatusOK, p)
	}
}
