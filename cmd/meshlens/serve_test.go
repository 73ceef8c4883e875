package main

import (
	"context"
	"strings"
	"testing"
)

func TestServeRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"invalid values", []string{"--config", "testdata/bad.yaml"}, []string{
			`http.addr: "nope" is not host:port`, "graph.window: must be > 0", `log.level: "verbose"`}},
		{"missing file", []string{"--config", "testdata/missing.yaml"}, []string{"read config", "missing.yaml"}},
		{"bad flag value", []string{"--http-addr", "localhost"}, []string{`http.addr: "localhost" is not host:port`}},
		{"stray argument", []string{"extra"}, []string{"unexpected arguments"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := runServe(context.Background(), tc.args)
			if err == nil {
				t.Fatal("serve accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
