package metrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/meshlens/meshlens/graph"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

const istioEdge = `reporter="destination",source_workload="productpage-v1",source_workload_namespace="bookinfo",source_canonical_service="productpage",source_canonical_revision="v1",destination_workload="reviews-v2",destination_workload_namespace="bookinfo",destination_canonical_service="reviews",destination_canonical_revision="v2",destination_service="reviews.bookinfo.svc.cluster.local",request_protocol="http",response_flags="-",connection_security_policy="mutual_tls"`

func istioLabels(extra ...string) []prompb.Label {
	ls := []prompb.Label{{Name: "__name__", Value: "istio_requests_total"}}
	for _, kv := range strings.Split(istioEdge, ",") {
		k, v, _ := strings.Cut(kv, "=")
		ls = append(ls, prompb.Label{Name: k, Value: strings.Trim(v, `"`)})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		ls = append(ls, prompb.Label{Name: extra[i], Value: extra[i+1]})
	}
	return ls
}

func writeRequest(tb testing.TB, series ...prompb.TimeSeries) []byte {
	tb.Helper()
	raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func ts(ls []prompb.Label, v float64, ms int64) prompb.TimeSeries {
	return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: ms}}}
}

func sumRequests(obs []graph.Observation) (req uint64, errs graph.ErrorCounts) {
	for _, o := range obs {
		req += o.Requests
		for i, e := range o.Errors {
			errs[i] += e
		}
	}
	return req, errs
}

func TestCounterDeltas(t *testing.T) {
	ok := istioLabels("response_code", "200", "job", "istio", "instance", "10.0.0.1:15090")
	fail := istioLabels("response_code", "503", "job", "istio", "instance", "10.0.0.1:15090")
	other := istioLabels("response_code", "200", "job", "istio", "instance", "10.0.0.2:15090")
	cases := []struct {
		name    string
		pushes  [][]prompb.TimeSeries
		wantReq []uint64 // requests per push
		want5xx uint64   // over all pushes
	}{
		{"first sample is the baseline", [][]prompb.TimeSeries{{ts(ok, 1000, 1000)}, {ts(ok, 1100, 2000)}}, []uint64{0, 100}, 0},
		{"counter reset counts from zero", [][]prompb.TimeSeries{{ts(ok, 1000, 1000)}, {ts(ok, 1100, 2000)}, {ts(ok, 30, 3000)}}, []uint64{0, 100, 30}, 0},
		{"new series of a known source counts in full", [][]prompb.TimeSeries{{ts(ok, 1000, 1000)}, {ts(ok, 1100, 2000), ts(fail, 7, 2000)}}, []uint64{0, 107}, 7},
		{"new source is a baseline", [][]prompb.TimeSeries{{ts(ok, 1000, 1000)}, {ts(ok, 1100, 2000), ts(other, 500, 2000)}}, []uint64{0, 100}, 0},
		{"resent sample is not counted twice", [][]prompb.TimeSeries{{ts(ok, 1000, 1000)}, {ts(ok, 1100, 2000)}, {ts(ok, 1100, 2000)}}, []uint64{0, 100, 0}, 0},
		{"several samples per series", [][]prompb.TimeSeries{{{Labels: ok, Samples: []prompb.Sample{{Value: 10, Timestamp: 1000}, {Value: 25, Timestamp: 2000}, {Value: 45, Timestamp: 3000}}}}}, []uint64{35}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c := newTestCollector(t, DefaultConfig(), rec)
			var all []graph.Observation
			for i, p := range tc.pushes {
				if _, err := c.IngestRemoteWrite(writeRequest(t, p...)); err != nil {
					t.Fatal(err)
				}
				obs := rec.take()
				all = append(all, obs...)
				if req, _ := sumRequests(obs); req != tc.wantReq[i] {
					t.Errorf("push %d: %d requests, want %d", i, req, tc.wantReq[i])
				}
			}
			if _, errs := sumRequests(all); errs[graph.Err5xx] != tc.want5xx {
				t.Errorf("5xx = %d, want %d", errs[graph.Err5xx], tc.want5xx)
			}
			for _, o := range all {
				if o.Reporter != graph.ReporterDestination || o.Src.Workload != "productpage-v1" || o.Dst.Workload != "reviews-v2" || o.Security != graph.SecurityMTLS {
					t.Errorf("bad mapping: %s", obsLine(o))
				}
			}
		})
	}
}

// Remote-write shards series by hash, so a histogram's buckets can arrive in
// different requests: the distribution is emitted once all buckets are in.
func TestHistogramSplitAcrossPushes(t *testing.T) {
	bucket := func(le string) []prompb.Label {
		ls := istioLabels("response_code", "200", "le", le, "job", "istio", "instance", "a")
		ls[0].Value = "istio_request_duration_milliseconds_bucket"
		return ls
	}
	les := []string{"1", "10", "100", "+Inf"}
	at := func(ms int64, cum ...float64) []prompb.TimeSeries {
		var out []prompb.TimeSeries
		for i, le := range les {
			out = append(out, ts(bucket(le), cum[i], ms))
		}
		return out
	}
	rec := &recorder{}
	c := newTestCollector(t, DefaultConfig(), rec)
	push := func(s []prompb.TimeSeries) {
		t.Helper()
		if _, err := c.IngestRemoteWrite(writeRequest(t, s...)); err != nil {
			t.Fatal(err)
		}
	}
	push(at(1000, 0, 0, 0, 0))
	second := at(2000, 10, 60, 100, 100) // 10 in (0,1], 50 in (1,10], 40 in (10,100]
	push(second[:2])
	if obs := rec.take(); len(obs) != 0 {
		t.Fatalf("half a histogram emitted: %s", obsLine(obs[0]))
	}
	push(second[2:])
	obs := rec.take()
	if len(obs) != 1 || obs[0].Latency == nil || obs[0].Latency.Count() != 100 {
		t.Fatalf("want one observation with 100 latencies, got %d: %v", len(obs), obs)
	}
	if obs[0].Requests != 0 {
		t.Errorf("latency-only observation carries %d requests", obs[0].Requests)
	}
	if p50 := obs[0].Latency.Quantile(0.5); p50 < 1 || p50 > 10 {
		t.Errorf("p50 = %g, want in (1,10]", p50)
	}
}

func TestRemoteWriteBadInput(t *testing.T) {
	good := writeRequest(t, ts(istioLabels("response_code", "200"), 1, 1000))
	raw, _ := snappy.Decode(nil, good)
	// A valid series followed by a truncated one: the first is kept.
	truncated := snappy.Encode(nil, append(append([]byte{}, raw...), 0x0a, 0x40, 0x0a))
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 4096
	big := snappy.Encode(nil, make([]byte, 8192))
	cases := []struct {
		name, ct, enc string
		body          []byte
		status        int
		reason        string
	}{
		{"good", "application/x-protobuf", "snappy", good, http.StatusNoContent, ""},
		{"not snappy", "application/x-protobuf", "snappy", []byte("this is not snappy at all"), http.StatusBadRequest, "snappy"},
		{"protobuf garbage", "application/x-protobuf", "snappy", snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), http.StatusBadRequest, "decode write request"},
		{"truncated series", "application/x-protobuf", "snappy", truncated, http.StatusBadRequest, "timeseries 1"},
		{"decoded body over the limit", "application/x-protobuf", "snappy", big, http.StatusBadRequest, "exceeds 4096"},
		{"body over the limit", "application/x-protobuf", "snappy", bytes.Repeat([]byte{1}, 5000), http.StatusRequestEntityTooLarge, "body too large"},
		{"remote-write 2.0", "application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", good, http.StatusUnsupportedMediaType, "2.0"},
		{"wrong content type", "text/plain", "snappy", good, http.StatusUnsupportedMediaType, "content type"},
	}
	rec := &recorder{}
	c := newTestCollector(t, cfg, rec)
	srv := httptest.NewServer(c.RemoteWriteHandler())
	defer srv.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ct)
			req.Header.Set("Content-Encoding", tc.enc)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var msg bytes.Buffer
			_, _ = msg.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(msg.String(), tc.reason) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, msg.String(), tc.status, tc.reason)
			}
		})
	}
	// The good series of the truncated request was kept and the server still serves.
	if st := c.Status(); st.Samples < 2 {
		t.Errorf("samples = %d, want the good ones kept", st.Samples)
	}
}

func TestLabelValuesCapped(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxLabelLength = 16
	rec := &recorder{}
	c := newTestCollector(t, cfg, rec)
	long := istioLabels("response_code", "200", "job", "j", "instance", "i")
	for i := range long {
		if long[i].Name == "destination_workload" {
			long[i].Value = strings.Repeat("é", 40)
		}
	}
	for i, v := range []float64{1, 5} {
		if _, err := c.IngestRemoteWrite(writeRequest(t, ts(long, v, int64(i+1)*1000))); err != nil {
			t.Fatal(err)
		}
	}
	obs := rec.take()
	if len(obs) != 1 {
		t.Fatalf("got %d observations", len(obs))
	}
	if w := obs[0].Dst.Workload; len(w) > 16 || w != strings.Repeat("é", 8) {
		t.Errorf("workload %q not capped at 16 bytes on a rune boundary", w)
	}
	if c.Status().TruncatedLabels == 0 {
		t.Error("truncation not counted")
	}
}

func TestScrape(t *testing.T) {
	body := readTestdata(t, "envoy_front_1.prom")
	hang := make(chan struct{})
	defer close(hang)
	mux := http.NewServeMux()
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Error("scraper does not ask for gzip")
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(body)
		_ = zw.Close()
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/malformed", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 5\nthis is { not prometheus\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Targets = []Target{
		{Name: "gz", URL: srv.URL + "/gzip", Interval: time.Hour, Timeout: 5 * time.Second, Labels: map[string]string{"service": "front"}},
		{Name: "hang", URL: srv.URL + "/hang", Interval: time.Hour, Timeout: 100 * time.Millisecond},
		{Name: "bad", URL: srv.URL + "/malformed", Interval: time.Hour, Timeout: 5 * time.Second},
	}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, &recorder{}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range c.targets {
		c.scrapeTarget(context.Background(), ts)
	}
	st := c.Status()
	byName := map[string]TargetStatus{}
	for _, ts := range st.Targets {
		byName[ts.Name] = ts
	}
	if s := byName["gz"]; s.Health != "up" || s.Samples == 0 {
		t.Errorf("gzip target: %+v", s)
	}
	if s := byName["hang"]; s.Health != "down" || !strings.Contains(s.LastError, "deadline") {
		t.Errorf("hanging target not cut at its timeout: %+v", s)
	}
	if s := byName["bad"]; s.Health != "down" || s.Samples == 0 || !strings.Contains(s.LastError, "parse") {
		t.Errorf("malformed target: %+v", s)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
		if mf.GetName() == "meshlens_metrics_scrape_up" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "gz" && m.GetGauge().GetValue() != 1 {
					t.Errorf("scrape_up{gz} = %g", m.GetGauge().GetValue())
				}
			}
		}
	}
	if got["meshlens_metrics_scrape_duration_seconds"] != 3 || got["meshlens_metrics_series_dropped_total"] == 0 {
		t.Errorf("self metrics: %v", got)
	}
	// The status handler serves the same as JSON.
	rr := httptest.NewRecorder()
	c.StatusHandler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/api/v1/collector/status", nil))
	var stj Status
	if err := json.Unmarshal(rr.Body.Bytes(), &stj); err != nil || len(stj.Targets) != 3 {
		t.Errorf("status JSON: %v %s", err, rr.Body.String())
	}
	// Start and Shutdown are idempotent and stop the loops.
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
	}
}

func otlpRequests(v, tsSec int64) pmetric.Metrics { return otlpIstio(v, tsSec, true) }

func TestOTLP(t *testing.T) {
	mk := otlpIstio
	rec := &recorder{}
	c := newTestCollector(t, DefaultConfig(), rec)
	// gRPC path: the server type registered by RegisterGRPC.
	srv := &otlpServer{c: c}
	if _, err := srv.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(mk(100, 1, false))); err != nil {
		t.Fatal(err)
	}
	// HTTP path, protobuf.
	body, _ := pmetricotlp.NewExportRequestFromMetrics(mk(140, 2, true)).MarshalProto()
	rr := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	c.OTLPHTTPHandler().ServeHTTP(rr, req)
	if rr.Code != http.StatusOK {
		t.Fatalf("HTTP %d %s", rr.Code, rr.Body.String())
	}
	obs := rec.take()
	req2, errs := sumRequests(obs)
	if req2 != 40 || errs[graph.Err5xx] != 40 {
		t.Errorf("requests %d, 5xx %d; want 40, 40 (trimmed _total must map to the same series)", req2, errs[graph.Err5xx])
	}
	var lat uint64
	for _, o := range obs {
		lat += o.Latency.Count()
	}
	if lat != 40 {
		t.Errorf("latency count %d, want 40", lat)
	}
	// Garbage is a 400 and the handler keeps serving.
	rr = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/v1/metrics", strings.NewReader("\xff\xff\xff"))
	req.Header.Set("Content-Type", "application/x-protobuf")
	c.OTLPHTTPHandler().ServeHTTP(rr, req)
	if rr.Code != http.StatusBadRequest {
		t.Errorf("garbage: HTTP %d", rr.Code)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults", DefaultConfig(), nil},
		{"bad target", Config{Targets: []Target{{URL: "ftp://x/metrics", Interval: time.Second, Timeout: 2 * time.Second}, {Name: "a", URL: ""}}},
			[]string{`targets[0].url: scheme "ftp": want http or https`, "targets[0].timeout: 2s exceeds the interval 1s", "targets[1].url: required"}},
		{"negative sizes", Config{MaxBodyBytes: -1, MaxLabelLength: -1}, []string{"maxBodyBytes: must be > 0", "maxLabelLength: must be > 0"}},
		{"duplicate names", Config{Targets: []Target{{Name: "a", URL: "http://x/m"}, {Name: "a", URL: "http://y/m"}}}, []string{`targets[1].name: "a" already used by targets[0]`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.cfg.Validate()
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func pcommonTS(sec int64) pcommon.Timestamp { return pcommon.Timestamp(sec * 1e9) }

func otlpIstio(v int64, tsSec int64, withTotal bool) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "istio-proxy")
	rm.Resource().Attributes().PutStr("service.instance.id", "10.0.0.1:15090")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("istio_requests")
	if withTotal {
		m.SetName("istio_requests_total")
	}
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetIntValue(v)
	dp.SetTimestamp(pcommonTS(tsSec))
	for _, kv := range strings.Split(istioEdge, ",") {
		k, val, _ := strings.Cut(kv, "=")
		dp.Attributes().PutStr(k, strings.Trim(val, `"`))
	}
	dp.Attributes().PutStr("response_code", "503")
	h := rm.ScopeMetrics().At(0).Metrics().AppendEmpty()
	h.SetName("istio_request_duration_milliseconds")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := hist.DataPoints().AppendEmpty()
	dp.Attributes().CopyTo(hp.Attributes())
	hp.SetTimestamp(pcommonTS(tsSec))
	hp.ExplicitBounds().FromRaw([]float64{5, 50})
	hp.BucketCounts().FromRaw([]uint64{uint64(v) / 2, uint64(v) - uint64(v)/2, 0})
	hp.SetCount(uint64(v))
	return md
}
