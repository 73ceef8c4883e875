// Package llmstub is a local OpenAI-compatible chat completions server for
// tests: it speaks the real wire format (JSON and server-sent-event
// streaming, tool_calls split across chunks, usage) and answers from a script.
// No model weights exist on the machines this project tests on.
package llmstub

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Message is one chat message as the client sent it.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
}

// ToolCall is a function call in the wire format.
type ToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Tool is a tool the client offered.
type Tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// Request is one chat completions request.
type Request struct {
	Model         string    `json:"model"`
	Messages      []Message `json:"messages"`
	Tools         []Tool    `json:"tools"`
	Stream        bool      `json:"stream"`
	MaxTokens     int       `json:"max_tokens"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Header http.Header `json:"-"`
}

// Step is how many assistant turns the conversation already has (0 = first call).
func (r *Request) Step() int {
	n := 0
	for _, m := range r.Messages {
		if m.Role == "assistant" && len(m.ToolCalls) > 0 {
			n++
		}
	}
	return n
}

// Last returns the last message with role.
func (r *Request) Last(role string) (Message, bool) {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == role {
			return r.Messages[i], true
		}
	}
	return Message{}, false
}

// Call is a tool call the scripted model makes.
type Call struct {
	Name, Arguments string
}

// Reply is what the scripted model answers.
type Reply struct {
	Content   string
	ToolCalls []Call
	Status    int           // non-zero: answer this HTTP status with an OpenAI error body
	Garbage   string        // non-empty: answer these bytes as the body
	Delay     time.Duration // wait before answering (or until the client gives up)
	Usage     int           // total tokens to report; default a rough count
}

// Script decides the reply to each request.
type Script func(*Request) Reply

// Server is the stub endpoint.
type Server struct {
	Key    string // when set, requests must carry "Authorization: Bearer Key"
	script Script
	srv    *http.Server
	ln     net.Listener

	mu       sync.Mutex
	requests []Request
	done     chan struct{}
}

// New returns a stub answering with script; call Start.
func New(script Script) *Server { return &Server{script: script} }

// Start listens on 127.0.0.1 at an ephemeral port.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("llmstub listen: %w", err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.handle)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return nil
}

// URL is the base URL to configure clients with (ends in /v1).
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + "/v1" }

// Close stops the server and waits for it.
func (s *Server) Close() {
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	<-s.done
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "code": nil}})
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if s.Key != "" && r.Header.Get("Authorization") != "Bearer "+s.Key {
		apiError(w, http.StatusUnauthorized, "Incorrect API key provided.")
		return
	}
	var req Request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	req.Header = r.Header.Clone()
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	rep := s.script(&req)
	if rep.Delay > 0 {
		select {
		case <-time.After(rep.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case rep.Status != 0:
		apiError(w, rep.Status, "stub error")
		return
	case rep.Garbage != "":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(rep.Garbage))
		return
	}
	usage := rep.Usage
	if usage == 0 {
		n := 0
		for _, m := range req.Messages {
			n += len(m.Content)/4 + 4
		}
		usage = n + len(rep.Content)/4
	}
	calls := make([]ToolCall, len(rep.ToolCalls))
	for i, c := range rep.ToolCalls {
		calls[i].ID = fmt.Sprintf("call_%d_%d", req.Step(), i)
		calls[i].Type = "function"
		calls[i].Function.Name = c.Name
		calls[i].Function.Arguments = c.Arguments
	}
	finish := "stop"
	if len(calls) > 0 {
		finish = "tool_calls"
	}
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": rep.Content}
		if len(calls) > 0 {
			msg["tool_calls"] = calls
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-stub", "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
			"usage":   map[string]int{"prompt_tokens": usage - len(rep.Content)/4, "completion_tokens": len(rep.Content) / 4, "total_tokens": usage},
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	chunk := func(delta map[string]any, finish any) {
		b, _ := json.Marshal(map[string]any{"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": time.Now().Unix(),
			"model": req.Model, "choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
		if fl != nil {
			fl.Flush()
		}
	}
	chunk(map[string]any{"role": "assistant", "content": ""}, nil)
	for _, piece := range split(rep.Content, 7) {
		chunk(map[string]any{"content": piece}, nil)
	}
	for i, c := range calls {
		idx := i
		head := ToolCall{Index: &idx, ID: c.ID, Type: "function"}
		head.Function.Name = c.Function.Name
		chunk(map[string]any{"tool_calls": []ToolCall{head}}, nil)
		// Arguments arrive in pieces, as real servers send them.
		for _, piece := range split(c.Function.Arguments, 9) {
			part := ToolCall{Index: &idx}
			part.Function.Arguments = piece
			chunk(map[string]any{"tool_calls": []ToolCall{part}}, nil)
		}
	}
	chunk(map[string]any{}, finish)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		b, _ := json.Marshal(map[string]any{"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": time.Now().Unix(),
			"model": req.Model, "choices": []any{}, "usage": map[string]int{"prompt_tokens": usage, "completion_tokens": 0, "total_tokens": usage}})
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// Contains reports whether any message of any request contains s.
func (s *Server) Contains(sub string) bool {
	for _, r := range s.Requests() {
		for _, m := range r.Messages {
			if strings.Contains(m.Content, sub) {
				return true
			}
			for _, tc := range m.ToolCalls {
				if strings.Contains(tc.Function.Arguments, sub) {
					return true
				}
			}
		}
	}
	return false
}
