package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/auth"
)

// askServer is /api/v1/chat behind the real authenticator with static
// tokens for an operator and a viewer; the answer names who asked.
func askServer(t *testing.T) (url, operator, viewer string) {
	t.Helper()
	cfg := auth.DefaultConfig()
	tokens := map[string]string{}
	for _, who := range []struct {
		name string
		role auth.Role
	}{{"otto", auth.RoleOperator}, {"vera", auth.RoleViewer}} {
		tok, hash, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[who.name] = tok
		cfg.Tokens = append(cfg.Tokens, auth.Token{Name: who.name, Role: who.role, SHA256: hash})
	}
	a, err := auth.New(cfg, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	chat := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q struct{ SessionID, Message string }
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil || r.URL.Path != "/api/v1/chat" {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		p, _ := auth.PrincipalFrom(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"sessionId": "s-1", "engine": "builtin",
			"answer": p.Name + " asked: " + q.Message})
	})
	srv := httptest.NewServer(a.Middleware(chat))
	t.Cleanup(srv.Close)
	return srv.URL, tokens["otto"], tokens["vera"]
}

func TestAskWithToken(t *testing.T) {
	url, operator, viewer := askServer(t)
	const q = "which service is failing?"
	tests := []struct {
		name    string
		args    []string
		env     string
		want    string   // on stdout
		wantErr []string // all in the error
	}{
		{"token flag", []string{"--token", operator}, "", "otto asked: " + q, nil},
		{"token from MESHLENS_TOKEN", nil, operator, "otto asked: " + q, nil},
		{"token file read with a newline", nil, operator + "\n", "otto asked: " + q, nil},
		{"flag wins over the environment", []string{"--token", operator}, viewer, "otto asked: " + q, nil},
		{"no token", nil, "", "", []string{"401", "requires authentication", "--token", "MESHLENS_TOKEN"}},
		{"unknown token", []string{"--token", "mlk_wrong"}, "", "", []string{"did not accept the token", "authentication required"}},
		{"viewer may not ask", nil, viewer, "", []string{"refused", "needs role operator; vera has viewer", "operator or above"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"--server", url + "/"}, tc.args...), q)
			o, err := parseAsk(args, func(k string) string {
				if k == tokenEnv {
					return tc.env
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			err = ask(context.Background(), http.DefaultClient, o, &stdout, &stderr)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(stdout.String()); got != tc.want {
					t.Errorf("answer %q, want %q", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; answer %q", stdout.String())
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, secret := range []string{operator, viewer, "mlk_wrong"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the token", err)
				}
			}
		})
	}
}

func TestParseAskRejects(t *testing.T) {
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"empty token flag", []string{"--token", " ", "hi"}, "--token is empty"},
		{"no question", []string{"--token", "t"}, "want a question"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAsk(tc.args, none)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
