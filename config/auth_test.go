package config

import (
	"strings"
	"testing"
)

func TestAuthSection(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // substrings of Validate's problems; none: valid
	}{
		{name: "open on loopback", yaml: "http: {addr: \"127.0.0.1:8080\"}\n"},
		{name: "open on all interfaces refused", yaml: "http: {addr: \":8080\"}\n",
			want: []string{"http.addr:", "auth.allowInsecure"}},
		{name: "explicitly insecure", yaml: "http: {addr: \":8080\"}\nauth: {allowInsecure: true}\n"},
		{name: "token file from the environment", yaml: "http: {addr: \":8080\"}\n",
			env: map[string]string{"MESHLENS_AUTH_TOKEN_FILES": "/run/secrets/meshlens-tokens"}},
		{name: "static token", yaml: "http: {addr: \"0.0.0.0:8080\"}\nauth:\n  tokens:\n    - {name: ci, role: viewer, sha256: \"sha256:" + strings.Repeat("ab", 32) + "\"}\n"},
		{name: "bad role, raw token, bad TLS", yaml: "http: {addr: \"127.0.0.1:8080\", tls: {certFile: a.pem}}\nauth:\n  tokens:\n    - {name: ci, role: viewer, sha256: \"hunter2\"}\n  oidc: {issuer: \"http://sso.example.com\"}\n",
			want: []string{"auth.tokens[0].sha256", "auth.oidc.issuer", "auth.oidc.audience", "http.tls.certFile, keyFile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			if err := Decode(strings.NewReader(tt.yaml), &c); err != nil {
				t.Fatal(err)
			}
			ApplyEnv(&c, func(k string) string { return tt.env[k] })
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%s", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("a problem repeats the pasted secret")
			}
		})
	}
	if err := Decode(strings.NewReader("auth:\n  tokens:\n    - {name: x, role: root}\n"), new(Config)); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Errorf("bad role: %v", err)
	}
}
