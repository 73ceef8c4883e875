package storage_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/storage"
)

// plainStore hides the SQL store's one-pass span summing, so Replay stitches
// tiers through SumBuckets alone.
type plainStore struct{ storage.Store }

// The one-pass sum over stitched tiers must give the same snapshot, first
// and last seen included, as summing each tier and merging the totals.
func TestReplayOnePassMatchesPerTierSums(t *testing.T) {
	s, data := history(t, "bookinfo-ratings-latency", 25*time.Minute)
	fast := storage.NewReplay(graph.New(graph.Config{Resolution: storage.Res10s}), s, storage.DefaultConfig().Retention)
	slow := storage.NewReplay(graph.New(graph.Config{Resolution: storage.Res10s}), plainStore{s}, storage.DefaultConfig().Retention)
	tests := []struct {
		name   string
		at     time.Time
		window time.Duration
	}{
		{"ragged both ends", data.Origin.Add(12*time.Minute + 35*time.Second), 5 * time.Minute},
		{"ragged start", data.Origin.Add(15 * time.Minute), 4*time.Minute + 20*time.Second},
		{"ragged end", data.Origin.Add(15*time.Minute + 50*time.Second), 5*time.Minute + 50*time.Second},
		{"raw only", data.Origin.Add(11*time.Minute + 10*time.Second), 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := graph.Query{View: graph.ViewWorkload, Window: tc.window, At: tc.at}
			want, err := slow.Snapshot(q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fast.Snapshot(q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Edges) == 0 {
				t.Fatal("no edges replayed")
			}
			a, _ := json.Marshal(want)
			b, _ := json.Marshal(got)
			if string(a) != string(b) {
				t.Fatalf("one-pass replay differs:\n got %s\nwant %s", b, a)
			}
		})
	}
}
