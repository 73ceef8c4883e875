package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

// BenchmarkRemoteWriteIngest measures steady-state ingest of Istio series
// (all series known, counters moving); make bench prints the ratio to the
// decode-only floor (cmd/meshlens bench-metrics).
func BenchmarkRemoteWriteIngest(b *testing.B) {
	const edges = 50
	var base [][]prompb.Label
	for e := 0; e < edges; e++ {
		for _, code := range []string{"200", "503"} {
			ls := istioLabels("response_code", code, "job", "istio", "instance", fmt.Sprint("10.0.0.", e))
			for i := range ls {
				if ls[i].Name == "destination_workload" {
					ls[i].Value = fmt.Sprint("svc-", e)
				}
			}
			base = append(base, ls)
		}
	}
	payload := func(step int) []byte {
		var series []prompb.TimeSeries
		for _, ls := range base {
			series = append(series, ts(ls, float64(step*10), int64(step+1)*15000))
			for j, le := range []string{"1", "10", "100", "+Inf"} {
				bl := append(append([]prompb.Label{}, ls...), prompb.Label{Name: "le", Value: le})
				bl[0].Value = "istio_request_duration_milliseconds_bucket"
				series = append(series, ts(bl, float64(step*(j+1)*2), int64(step+1)*15000))
			}
		}
		return writeRequest(b, series...)
	}
	const steps = 64
	ps := make([][]byte, steps)
	for i := range ps {
		ps[i] = payload(i)
	}
	samples := edges * 2 * 5
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := newTestCollector(b, DefaultConfig(), &recorder{})
		_, _ = c.IngestRemoteWrite(ps[0])
		b.StartTimer()
		for _, p := range ps[1:] {
			if _, err := c.IngestRemoteWrite(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(samples*(steps-1)*b.N)/b.Elapsed().Seconds(), "samples/s")
}
