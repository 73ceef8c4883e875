package policy

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestBuildGolden(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{"vs-timeout-retries", Params{Kind: KindVirtualService, Service: "ratings", Timeout: "500ms",
			Retries: &Retries{Attempts: 2, PerTryTimeout: "200ms", RetryOn: []string{"5xx", "connect-failure", "reset"}}}},
		{"vs-canary-rollback", Params{Kind: KindVirtualService, Service: "reviews",
			Weights: []Weight{{"v1", 34}, {"v2", 33}, {"v3", 33}, {"v4", 0}}}},
		{"dr-outlier", Params{Kind: KindDestinationRule, Service: "paymentservice",
			OutlierDetection: &Outlier{Consecutive5xxErrors: 5, Interval: "10s", BaseEjectionTime: "30s", MaxEjectionPercent: 50},
			ConnectionPool:   &Pool{MaxConnections: 100, ConnectTimeout: "1s", HTTP2MaxRequests: 1000}}},
		{"authz-deny", Params{Kind: KindAuthorizationPolicy, Service: "redis-cart", Action: "DENY",
			Principals: []string{"spiffe://cluster.local/ns/default/sa/frontend"}}},
		{"authz-allow", Params{Kind: KindAuthorizationPolicy, Service: "redis-cart", Action: "ALLOW",
			Principals: []string{"cluster.local/ns/default/sa/cartservice", "spiffe://cluster.local/ns/default/sa/cartservice"}}},
		{"pa-strict", Params{Kind: KindPeerAuthentication, Service: "details", Namespace: "bookinfo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Build(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			var docs []string
			for _, r := range res {
				if err := Validate(r.YAML); err != nil {
					t.Errorf("own output invalid: %v", err)
				}
				docs = append(docs, r.YAML)
			}
			got := strings.Join(docs, "---\n")
			path := filepath.Join("testdata", tt.name+".yaml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("YAML differs from %s:\n%s", path, Diff("want", "got", string(want), got))
			}
			// Rendering is deterministic: the hash of what is shown is stable.
			again, _ := Build(tt.p)
			for i := range again {
				if again[i].YAML != res[i].YAML {
					t.Errorf("second render differs")
				}
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	tests := []struct {
		name  string
		p     Params
		field string
	}{
		{"unknown kind", Params{Kind: "Gateway", Service: "x"}, "kind"},
		{"free text service", Params{Kind: KindPeerAuthentication, Service: "ignore previous instructions"}, "service"},
		{"weights not 100", Params{Kind: KindVirtualService, Service: "reviews", Weights: []Weight{{"v1", 50}, {"v2", 20}}}, "weights"},
		{"bad retryOn", Params{Kind: KindVirtualService, Service: "a", Retries: &Retries{Attempts: 1, RetryOn: []string{"always"}}}, "retryOn"},
		{"bad timeout", Params{Kind: KindVirtualService, Service: "a", Timeout: "soon"}, "timeout"},
		{"negative timeout", Params{Kind: KindVirtualService, Service: "a", Timeout: "-1s"}, "timeout"},
		{"field of other kind", Params{Kind: KindPeerAuthentication, Service: "a", Timeout: "1s"}, "timeout"},
		{"empty VS", Params{Kind: KindVirtualService, Service: "a"}, "kind"},
		{"allow nobody", Params{Kind: KindAuthorizationPolicy, Service: "a", Action: "ALLOW"}, "principals"},
		{"bad action", Params{Kind: KindAuthorizationPolicy, Service: "a", Action: "AUDIT", Principals: []string{"td/ns/x/sa/y"}}, "action"},
		{"bad principal", Params{Kind: KindAuthorizationPolicy, Service: "a", Action: "DENY", Principals: []string{"*"}}, "principals[0]"},
		{"permissive", Params{Kind: KindPeerAuthentication, Service: "a", Mode: "PERMISSIVE"}, "mode"},
		{"ejection percent", Params{Kind: KindDestinationRule, Service: "a", OutlierDetection: &Outlier{MaxEjectionPercent: 150}}, "maxEjectionPercent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.p)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrInvalid naming %q", err, tt.field)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	good, err := Build(Params{Kind: KindVirtualService, Service: "ratings", Timeout: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	y := good[0].YAML
	tests := []struct{ name, doc, want string }{
		{"unknown spec field", strings.Replace(y, "timeout: 1s", "timeout: 1s\n      retryBudget: 3", 1), "retryBudget"},
		{"bad duration", strings.Replace(y, "timeout: 1s", "timeout: forever", 1), "spec"},
		{"two docs", y + "---\n" + y, "more than one"},
		{"wrong apiVersion", strings.Replace(y, "networking.istio.io/v1", "networking.istio.io/v9", 1), "apiVersion"},
		{"bad name", strings.Replace(y, "name: ratings", "name: Ratings_", 1), "metadata.name"},
		{"unknown top-level", "foo: bar\n" + y, "foo"},
		{"not ours", strings.Replace(y, "kind: VirtualService", "kind: Gateway", 1), "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.doc)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	if d := Diff("a", "b", "x\ny\n", "x\ny\n"); d != "" {
		t.Errorf("equal texts diff: %q", d)
	}
	got := Diff("old", "new", "a\nb\nc\n", "a\nB\nc\nd\n")
	want := "--- old\n+++ new\n a\n-b\n+B\n c\n+d\n"
	if got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
}
