package nezha

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/meshlens/meshlens/collector/traces"
)

// trip builds one trace like Train Ticket's "trips left" query: gateway ->
// travel (controller span) -> basic and seat twice. cut makes travel throw
// before calling anything, with an error-handler span of its own.
func trip(n int, at time.Time, cut bool) []Span {
	var tid traces.TraceID
	binary.BigEndian.PutUint64(tid[8:], uint64(n+1))
	id := func(k int) (s traces.SpanID) {
		binary.BigEndian.PutUint64(s[:], uint64(n*100+k+1))
		return s
	}
	t := at.UnixNano()
	sp := func(k, parent int, svc, op string, off, dur time.Duration) Span {
		s := Span{TraceID: tid, SpanID: id(k), Pod: svc + "-5dc8d4f9fd-46997", Service: svc, Operation: op, Start: t + int64(off), End: t + int64(off+dur)}
		if parent >= 0 {
			s.ParentID = id(parent)
		}
		return s
	}
	out := []Span{
		sp(0, -1, "ts-gateway-service", "/*", 0, 90*time.Millisecond),
		sp(1, 0, "ts-gateway-service", "HTTP POST", time.Millisecond, 88*time.Millisecond),
		sp(2, 1, "ts-travel-service", "/api/v1/travelservice/trips/left", 2*time.Millisecond, 85*time.Millisecond),
		sp(3, 2, "ts-travel-service", "TravelController.queryInfo", 3*time.Millisecond, 80*time.Millisecond),
	}
	if cut {
		return append(out, sp(4, 2, "ts-travel-service", "BasicErrorController.error", 84*time.Millisecond, time.Millisecond))
	}
	return append(out,
		sp(4, 3, "ts-travel-service", "HTTP POST", 4*time.Millisecond, 20*time.Millisecond),
		sp(5, 4, "ts-basic-service", "/api/v1/basicservice/basic/travels", 5*time.Millisecond, 18*time.Millisecond),
		sp(6, 3, "ts-travel-service", "HTTP POST", 30*time.Millisecond, 20*time.Millisecond),
		sp(7, 6, "ts-seat-service", "/api/v1/seatservice/seats/left_tickets", 31*time.Millisecond, 18*time.Millisecond),
		sp(8, 3, "ts-travel-service", "HTTP POST", 55*time.Millisecond, 20*time.Millisecond),
		sp(9, 8, "ts-seat-service", "/api/v1/seatservice/seats/left_tickets", 56*time.Millisecond, 18*time.Millisecond),
	)
}

func TestRequestsCountCallsPerEntrySpan(t *testing.T) {
	at := time.Date(2023, 1, 29, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		cut       bool
		wantReqs  int
		wantCalls map[string]int // service -> calls of its request
	}{
		{"normal trip", false, 5, map[string]int{"ts-gateway-service": 1, "ts-travel-service": 3, "ts-basic-service": 0, "ts-seat-service": 0}},
		{"travel throws", true, 2, map[string]int{"ts-gateway-service": 1, "ts-travel-service": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := requests(trip(0, at, tc.cut))
			if len(reqs) != tc.wantReqs {
				t.Fatalf("%d requests, want %d: %+v", len(reqs), tc.wantReqs, reqs)
			}
			for _, r := range reqs {
				if want, ok := tc.wantCalls[r.service]; !ok || r.calls != want {
					t.Errorf("%s %s: %d calls, want %d", r.service, r.op, r.calls, want)
				}
			}
		})
	}
}

func TestTraceSignalSeesRequestsCutShort(t *testing.T) {
	inject := time.Date(2023, 1, 29, 10, 0, 0, 0, time.UTC)
	var spans []Span
	// An hour of normal trips, one a minute, then five minutes in which
	// every other trip is cut short at travel.
	n := 0
	for m := -60; m < 5; m++ {
		spans = append(spans, trip(n, inject.Add(time.Duration(m)*time.Minute+time.Second), m >= 0 && m%2 == 0)...)
		n++
	}
	l := &Loaded{Spans: spans, Faults: []Fault{{Time: inject, Service: "ts-travel-service", Type: "exception"}}}
	rows := TraceSignal(l)
	if len(rows) != 1 || rows[0].Type != "exception" || rows[0].Faults != 1 {
		t.Fatalf("rows %+v, want one exception row of one fault", rows)
	}
	r := rows[0]
	if r.CutBefore != 0 || r.OwnCutBefore != 0 {
		t.Errorf("cut short before the injection: %.2f/min (%.2f at travel), want 0", r.CutBefore, r.OwnCutBefore)
	}
	// Three of the five minutes after hold a cut trip: 0.6/min, all at travel.
	if r.CutAfter != 0.6 || r.OwnCutAfter != 0.6 {
		t.Errorf("cut short after: %.2f/min (%.2f at travel), want 0.6 and 0.6", r.CutAfter, r.OwnCutAfter)
	}
	if r.ReqBefore != 5 {
		t.Errorf("requests before: %.2f/min, want 5", r.ReqBefore)
	}
}
