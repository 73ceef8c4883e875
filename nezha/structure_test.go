package nezha

import (
	"math"
	"testing"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// The first trace of the test day: gateway -> auth (login), auth's
// UserController.getToken calls verification-code over HTTP GET and runs
// repository spans of its own.
func TestShapesAndOpStats(t *testing.T) {
	l := loadTB(t, "testdata/dataset")
	nodes := map[string]graph.Node{}
	ts := make([]detect.TraceSpan, len(l.Spans))
	idx := make([]int, len(l.Spans))
	for i := range l.Spans {
		ts[i], idx[i] = l.Spans[i].TraceSpan(nodes), i
	}
	stats := detect.OpStatsOf(ts, idx)
	find := func(svc, op string) int {
		for i := range stats {
			if stats[i].Node.Name() == svc && stats[i].Operation == op {
				return i
			}
		}
		t.Fatalf("no stats for %s %s", svc, op)
		return -1
	}
	get := stats[find("ts-auth-service", "HTTP GET -> ts-verification-code-service")]
	if get.Spans == 0 || get.Children["call:ts-verification-code-service"] != get.Spans {
		t.Errorf("auth HTTP GET: %d spans, children %v; want one verification-code call per span", get.Spans, get.Children)
	}
	// A call and nothing else: its self time is the link's network time,
	// judged for both ends.
	if get.Peer.Name() != "ts-verification-code-service" {
		t.Errorf("auth HTTP GET peer %q, want ts-verification-code-service", get.Peer.Name())
	}

	tok := stats[find("ts-auth-service", "UserController.getToken")]
	if tok.Children["op:UserRepository.findByUsername"] != 2*tok.Spans || tok.Children["op:HTTP GET"] != tok.Spans {
		t.Errorf("getToken children %v over %d spans, want 2 findByUsername and 1 HTTP GET per span", tok.Children, tok.Spans)
	}
	if !tok.Peer.IsZero() {
		t.Errorf("getToken has peer %q; it does work of its own", tok.Peer.Name())
	}
	for _, k := range []string{"call:ts-auth-service", "op:ts-auth-service"} {
		if tok.Children[k] != 0 {
			t.Errorf("getToken has child kind %s", k)
		}
	}
	// Self time: getToken spends most of its 160ms between its children.
	if tok.SelfMs < 100 || tok.SelfMs > 170 || math.IsNaN(tok.SelfMs) {
		t.Errorf("getToken self time %.1fms, want most of its ~160ms", tok.SelfMs)
	}
	for _, st := range stats {
		if st.SelfMs < 0 {
			t.Fatalf("%s %s has a negative self time", st.Node.Name(), st.Operation)
		}
	}
}
