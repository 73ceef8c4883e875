package storage

import (
	"testing"

	"github.com/meshlens/meshlens/graph"
)

func TestCodecRoundTripAndTruncation(t *testing.T) {
	var st graph.Stats
	st.Requests, st.RequestBytes, st.MTLSUnits, st.PlainUnits = 1200, 640_000, 1100, 100
	st.Errors[graph.Err5xx], st.Errors[graph.ErrConnectFailure] = 7, 2
	st.Codes = map[uint16]uint64{503: 5, 500: 2}
	st.GRPCCodes = map[uint16]uint64{14: 2}
	st.Flags = map[string]uint64{"UF": 2, "URX": 2}
	st.Reporters, st.Signals = 1<<graph.ReporterDestination, graph.SignalMetrics
	for _, v := range []float64{3.2, 4.8, 12, 95, 310} {
		st.Latency.Add(v, 240)
	}
	tests := []struct {
		name string
		st   graph.Stats
	}{
		{"full", st},
		{"empty", graph.Stats{}},
		{"tcp only", graph.Stats{ConnOpened: 3, ConnClosed: 2, RequestBytes: 900, L4Only: true, Reporters: 1 << graph.ReporterZtunnel, Signals: graph.SignalMetrics}},
	}
	for _, tc := range tests {
		b := appendStats(nil, &tc.st)
		var got graph.Stats
		if err := mergeStats(b, &got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if again := appendStats(nil, &got); string(again) != string(b) {
			t.Fatalf("%s: re-encoding differs", tc.name)
		}
		if got.Requests != tc.st.Requests || got.Errors != tc.st.Errors || got.Latency.Count() != tc.st.Latency.Count() ||
			got.Latency.Quantile(0.95) != tc.st.Latency.Quantile(0.95) || len(got.Flags) != len(tc.st.Flags) || got.L4Only != tc.st.L4Only {
			t.Fatalf("%s: decoded %+v, want %+v", tc.name, got, tc.st)
		}
		// A torn or corrupt row is an error, never a panic.
		for n := 0; n < len(b)-1; n++ {
			var x graph.Stats
			_ = mergeStats(b[:n], &x)
		}
	}
	if err := mergeStats([]byte{9, 1}, new(graph.Stats)); err == nil {
		t.Fatal("unknown codec version accepted")
	}
}
