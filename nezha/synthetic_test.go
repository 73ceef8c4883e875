package nezha

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

func TestParseSynthetic(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{"network_delay:200ms", ""},
		{"cpu_contention:4", ""},
		{"network_delay", "want KIND:SIZE"},
		{"network_delay:-5ms", "positive duration"},
		{"cpu_contention:1", "number > 1"},
		{"disk_full:1", "kind \"disk_full\""},
	} {
		_, err := ParseSynthetic(tc.in, 1)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.in, err, tc.err)
		}
	}
}

// gateway -> x -> y, each call a client span in the caller and a server
// span in the callee. A network delay on x's pod delays x's response to
// the gateway and x's request to y: the two client spans' network time
// grows by the delay, y's subtree moves later unchanged, x's own work is
// untouched. CPU contention on x stretches x's own self times only (3x:
// /basic 20 -> 60ms, its client span 10 -> 30ms).
func TestSynthesizeRewritesTheFaultyPod(t *testing.T) {
	const (
		gw = "ts-gateway-service-6f6cfc45b-h5m2n"
		x  = "ts-basic-service-5dc8d4f9fd-46997"
		y  = "ts-station-service-7f4f5f6f77-5qb6j"
	)
	t0 := time.Date(2023, 1, 29, 9, 0, 0, 0, time.UTC)
	ms := func(v int) int64 { return t0.Add(time.Duration(v) * time.Millisecond).UnixNano() }
	var tid [16]byte
	tid[0] = 1
	span := func(id, parent byte, pod, op string, start, end int) Span {
		s := Span{TraceID: tid, Pod: pod, Service: graph.WorkloadOfPod(pod), Operation: op, Start: ms(start), End: ms(end)}
		s.SpanID[0] = id
		if parent != 0 {
			s.ParentID[0] = parent
		}
		return s
	}
	base := []Span{
		span(1, 0, gw, "/*", 0, 100),
		span(2, 1, gw, "HTTP GET", 10, 60),
		span(3, 2, x, "/basic", 15, 55),
		span(4, 3, x, "HTTP GET", 20, 40),
		span(5, 4, y, "/station", 25, 35),
	}
	self := func(spans []Span, id byte) int64 {
		var own, child int64
		for _, s := range spans {
			if s.SpanID[0] == id {
				own = s.End - s.Start
			}
			if s.ParentID[0] == id {
				child += s.End - s.Start
			}
		}
		return (own - child) / int64(time.Millisecond)
	}
	dur := func(spans []Span, id byte) int64 {
		for _, s := range spans {
			if s.SpanID[0] == id {
				return (s.End - s.Start) / int64(time.Millisecond)
			}
		}
		return -1
	}
	l := &Loaded{Spans: base, Faults: []Fault{{Time: t0, Pod: x, Service: graph.WorkloadOfPod(x), Type: "return"}}}
	for _, tc := range []struct {
		spec      SyntheticSpec
		selfDelta map[byte]int64 // span -> self time change, ms
	}{
		{SyntheticSpec{Kind: SyntheticDelay, Delay: 200 * time.Millisecond}, map[byte]int64{1: 0, 2: 200, 3: 0, 4: 200, 5: 0}},
		{SyntheticSpec{Kind: SyntheticCPU, Factor: 3}, map[byte]int64{1: 0, 2: 0, 3: 40, 4: 20, 5: 0}},
	} {
		t.Run(tc.spec.Kind, func(t *testing.T) {
			// Five spans: no pod is busy enough to be picked.
			out := Synthesize(l, tc.spec)
			if len(out.Faults) != 0 {
				t.Fatalf("faults %v: no pod has %d spans in the window, want none picked", out.Faults, minSyntheticSpans)
			}
			spans := append([]Span(nil), base...)
			idx := []int{0, 1, 2, 3, 4}
			rewrite(spans, idx, x, tc.spec)
			for id, want := range tc.selfDelta {
				if got := self(spans, id) - self(base, id); got != want {
					t.Errorf("span %d self time changed by %dms, want %dms", id, got, want)
				}
			}
			if d := dur(spans, 5); d != dur(base, 5) {
				t.Errorf("y's span lasts %dms, want %dms unchanged", d, dur(base, 5))
			}
			if base[4].Start != ms(25) {
				t.Fatal("rewrite changed its input's backing spans")
			}
		})
	}
}

// A run of faults on one labelled pod stays on one synthetic pod, as the
// dataset injects each pod several times in a row; PerFault picks anew
// for every fault. Eight busy pods, four faults on one labelled pod, two
// seeds: picked anew, some fault lands elsewhere.
func TestSynthesizeFollowsTheSchedule(t *testing.T) {
	t0 := time.Date(2023, 1, 29, 9, 0, 0, 0, time.UTC)
	var spans []Span
	var faults []Fault
	for f := 0; f < 4; f++ {
		at := t0.Add(time.Duration(f) * 10 * time.Minute)
		faults = append(faults, Fault{Time: at, Pod: "ts-basic-service-5dc8d4f9fd-46997", Service: "ts-basic-service", Type: "return"})
		for p := 0; p < 8; p++ {
			pod := fmt.Sprintf("svc%d-5dc8d4f9fd-4699%d", p, p)
			for i := 0; i < minSyntheticSpans; i++ {
				var s Span
				s.TraceID[0], s.TraceID[1], s.TraceID[2] = byte(f), byte(p), byte(i)
				s.SpanID[0] = 1
				s.Pod, s.Service, s.Operation = pod, graph.WorkloadOfPod(pod), "/op"
				s.Start = at.Add(time.Duration(i) * time.Second).UnixNano()
				s.End = s.Start + int64(5*time.Millisecond)
				spans = append(spans, s)
			}
		}
	}
	l := &Loaded{Spans: spans, Faults: faults}
	moved := false
	for seed := uint64(1); seed <= 2; seed++ {
		sp := SyntheticSpec{Kind: SyntheticCPU, Factor: 2, Seed: seed}
		out := Synthesize(l, sp)
		if len(out.Faults) != 4 {
			t.Fatalf("seed %d: %d faults, want 4", seed, len(out.Faults))
		}
		for _, f := range out.Faults[1:] {
			if f.Pod != out.Faults[0].Pod {
				t.Errorf("seed %d: faults on %s and %s, want the run on one pod", seed, out.Faults[0].Pod, f.Pod)
			}
		}
		sp.PerFault = true
		for _, f := range Synthesize(l, sp).Faults[1:] {
			moved = moved || f.Pod != out.Faults[0].Pod
		}
	}
	if !moved {
		t.Error("PerFault kept every fault on one pod for two seeds, want new picks")
	}
}
