package graph

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// TestByteCountsSurviveDeltaCoding sends byte counts that rise, fall, stop,
// restart and hit the extremes, bucket by bucket, and reads every bucket back
// through History (raw records) and the window through Snapshot (rollups).
func TestByteCountsSurviveDeltaCoding(t *testing.T) {
	tests := []struct {
		name      string
		req, resp []uint64 // per bucket
		tcp       bool
	}{
		{"steady", []uint64{500, 500, 500, 500, 500, 500, 500}, []uint64{2000, 2000, 2000, 2000, 2000, 2000, 2000}, false},
		{"up and down", []uint64{100, 90_000, 3, 70_000, 1, 1 << 40, 5}, []uint64{7, 6, 5, 1 << 33, 1 << 20, 9, 0}, false},
		{"stops and restarts", []uint64{800, 0, 0, 800, 0, 1, 800}, []uint64{0, 4000, 0, 4000, 4000, 0, 1}, false},
		{"extremes", []uint64{math.MaxUint64 / 4, 1, math.MaxUint64 / 4, 0, math.MaxUint64/4 - 1, 2, 3}, []uint64{0, math.MaxUint64 / 4, 1, math.MaxUint64 / 4, 0, 0, 9}, false},
		{"tcp, no requests", []uint64{10_000, 12_000, 9_000, 0, 15_000, 15_000, 1}, []uint64{50_000, 40_000, 60_000, 0, 1, 70_000, 70_000}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGraph(t)
			res := g.Resolution()
			// 14 buckets: two whole minutes, so one group is rolled up and cached.
			n := 2 * len(tc.req)
			for i := 0; i < n; i++ {
				at := t0.Add(time.Duration(i) * res)
				o := obs(at, productpage, reviewsV1, uint64(1+i%3), 0, 12)
				if tc.tcp {
					o.Protocol, o.Requests, o.ConnOpened = ProtoTCP, 0, 1
				}
				o.RequestBytes, o.ResponseBytes = tc.req[i%len(tc.req)], tc.resp[i%len(tc.resp)]
				g.Ingest([]Observation{o})
				g.Advance(at.Add(res))
			}
			g.Advance(t0.Add(time.Duration(n+2) * res))
			_, hs, err := g.History(EdgeFilter{}, time.Duration(n+2)*res, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			var wantReq, wantResp uint64
			for i := 0; i < n; i++ {
				wr, wp := tc.req[i%len(tc.req)], tc.resp[i%len(tc.resp)]
				wantReq += wr
				wantResp += wp
				if got := hs[i]; got.RequestBytes != wr || got.ResponseBytes != wp {
					t.Errorf("bucket %d: bytes %d/%d, want %d/%d", i, got.RequestBytes, got.ResponseBytes, wr, wp)
				}
			}
			s, err := g.Snapshot(Query{Window: time.Duration(n+2) * res})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Edges) != 1 {
				t.Fatalf("%d edges, want 1", len(s.Edges))
			}
			if st := s.Edges[0].Stats; st.RequestBytes != wantReq || st.ResponseBytes != wantResp {
				t.Errorf("window bytes %d/%d, want %d/%d", st.RequestBytes, st.ResponseBytes, wantReq, wantResp)
			}
		})
	}
}

func TestPackedSketchPicksShortestCode(t *testing.T) {
	tests := []struct {
		name      string
		add       func(s *Sketch)
		riceCount bool // counts in a Rice code, else Exp-Golomb
	}{
		// Consecutive bins with counts 1-3: unary-like codes are shortest.
		{"dense small counts", func(s *Sketch) {
			for k := int32(100); k < 160; k++ {
				s.Add(sketchValue(k), uint64(1+k%3))
			}
		}, true},
		{"large counts", func(s *Sketch) { s.Add(3, 1_000_000); s.Add(3.5, 800_000); s.Add(5, 3_000_000) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Sketch
			tc.add(&s)
			enc := s.appendPacked(nil)
			// Header varint, float32 sum, zigzag first key, then the codes byte.
			_, rest := uvarint(enc)
			_, n := binary.Varint(rest[4:])
			kc := uint(rest[4+n] & 15)
			if got := kc >= riceCode0; got != tc.riceCount {
				t.Errorf("count code %d, want Rice %v", kc, tc.riceCount)
			}
			checkEncodedSketch(t, &s, enc, true)
		})
	}
}
