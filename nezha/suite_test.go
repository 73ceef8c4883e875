package nezha

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// chainDay is a steady gateway -> travel -> basic mesh, a trace every two
// seconds, with three labelled faults: two on one pod 10 minutes apart,
// then one on another.
func chainDay(d time.Duration) *Loaded {
	pods := []string{"ts-gateway-service-6f6cfc45b-h5m2n", "ts-travel-service-64469b5b48-25zj6", "ts-basic-service-5dc8d4f9fd-46997"}
	t0 := time.Date(2023, 1, 29, 9, 0, 0, 0, time.UTC)
	l := &Loaded{Day: Day{Name: "chain"}}
	for i := 0; i < int(d/(2*time.Second)); i++ {
		at := t0.Add(time.Duration(i) * 2 * time.Second).UnixNano()
		var tid [16]byte
		tid[0], tid[1], tid[2] = byte(i>>16), byte(i>>8), byte(i)
		jit := int64(i%7) * int64(time.Millisecond)
		ms := int64(time.Millisecond)
		// server span of hop h starts 1 ms after its caller's start and
		// each hop's own work is 5 ms (+ jitter at the leaf).
		for h, pod := range pods {
			var s Span
			s.TraceID = tid
			s.SpanID[0] = byte(h + 1)
			if h > 0 {
				s.ParentID[0] = byte(h)
			}
			s.Pod, s.Service, s.Operation = pod, graph.WorkloadOfPod(pod), "/hop"
			s.Start = at + int64(h)*ms
			s.End = at + int64(2*len(pods)-h)*5*ms + jit
			l.Spans = append(l.Spans, s)
		}
	}
	l.Coverage = [][2]int64{{l.Spans[0].Start, l.Spans[len(l.Spans)-1].Start}}
	for k, off := range []time.Duration{15 * time.Minute, 25 * time.Minute, 33 * time.Minute} {
		pod := pods[1+k/2]
		l.Faults = append(l.Faults, Fault{Time: t0.Add(off), Pod: pod, Service: graph.WorkloadOfPod(pod), Type: "return"})
	}
	return l
}

func TestParseSeeds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint64
	}{
		{"3", []uint64{1, 2, 3}},
		{"4-6", []uint64{4, 5, 6}},
		{"2,9, 7", []uint64{2, 9, 7}},
		{"0", nil},
		{"6-4", nil},
		{"1,x", nil},
		{"", nil},
	} {
		got, err := ParseSeeds(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%q: %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// The suite sums exactly what one evaluation per seed gives, and splits
// each fault into first-of-run or later by the fault before it.
func TestRunSuiteSumsSeeds(t *testing.T) {
	l := chainDay(40 * time.Minute)
	cfg := DefaultEvalConfig(SignalsTraces)
	seeds := []uint64{1, 2, 3}
	rows, err := RunSuite([]*Loaded{l}, []string{"network_delay:200ms"}, seeds, false, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Seeds != 3 {
		t.Fatalf("rows = %+v", rows)
	}
	var want, first, later Totals
	for _, seed := range seeds {
		sp, _ := ParseSynthetic("network_delay:200ms", seed)
		r, err := EvalDay(Synthesize(l, sp), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Faults {
			want.Add(&r.Faults[i])
			if i > 0 && r.Faults[i-1].Service == r.Faults[i].Service {
				later.Add(&r.Faults[i])
			} else {
				first.Add(&r.Faults[i])
			}
		}
	}
	t.Logf("all %+v first %+v later %+v", want, first, later)
	got := rows[0]
	if want.N == 0 {
		t.Fatal("no synthetic fault scored: the excerpt cannot test the suite")
	}
	for _, c := range []struct {
		name      string
		got, want Totals
	}{{"all", got.All, want}, {"first", got.First, first}, {"later", got.Later, later}} {
		if c.want.N == 0 {
			t.Errorf("%s: no fault of this kind scored", c.name)
		}
		if c.got.N != c.want.N || c.got.Top1 != c.want.Top1 || c.got.Top3 != c.want.Top3 || c.got.Detected != c.want.Detected {
			t.Errorf("%s: suite %+v, per-seed runs %+v", c.name, c.got, c.want)
		}
	}
	if _, err := RunSuite([]*Loaded{l}, []string{"disk_full:1"}, seeds, false, cfg); err == nil || !strings.Contains(err.Error(), "disk_full") {
		t.Errorf("bad kind: error %v", err)
	}
}
