package nezha

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// ReplayConfig tunes a replay over OTLP/HTTP.
type ReplayConfig struct {
	Endpoint string  // OTLP/HTTP base URL (http://host:4318) or the full /v1/traces URL
	Speed    float64 // dataset seconds per wall second; default 60
	// MaxGap shortens dataset gaps (minutes without trace files) to this
	// much dataset time, so a day's fault windows follow each other.
	MaxGap time.Duration
	// SamplingProbability is sent as sampling.probability on every span so
	// the receiver counts each kept span for 1/p calls (the dataset keeps
	// one trace in four). 0 sends nothing.
	SamplingProbability float64
	Batch               time.Duration // wall time gathered into one request; default 250ms
	Client              *http.Client
	// Metrics also sends the pods' CPU and memory rows to /v1/metrics, as
	// the OpenTelemetry kubeletstats receiver would (share of the limit).
	Metrics bool
}

// ReplayStats says what a replay sent.
type ReplayStats struct {
	Spans, Requests int
	MetricRows      int // pod metric rows sent
	Elapsed         time.Duration
}

// Replay sends the spans of a loaded day to a running meshlens over real
// OTLP/HTTP, in timestamp order, shifted to now and sped up by cfg.Speed.
// Span durations are kept as they were, so latencies stay real.
func Replay(ctx context.Context, l *Loaded, cfg ReplayConfig, log *slog.Logger) (ReplayStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Speed <= 0 {
		cfg.Speed = 60
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 250 * time.Millisecond
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	base := strings.TrimSuffix(strings.TrimRight(cfg.Endpoint, "/"), "/v1/traces")
	url, murl := base+"/v1/traces", base+"/v1/metrics"
	var st ReplayStats
	if len(l.Spans) == 0 {
		return st, fmt.Errorf("replay %s: no spans", l.Day.Name)
	}
	// Dataset time -> replay offset (dataset ns since the first span, with gaps shortened).
	offsets := make([]int64, len(l.Spans))
	var off int64
	prev := l.Spans[0].Start
	for i := range l.Spans {
		d := l.Spans[i].Start - prev
		if cfg.MaxGap > 0 && d > int64(cfg.MaxGap) {
			d = int64(cfg.MaxGap)
		}
		off += d
		prev = l.Spans[i].Start
		offsets[i] = off
	}
	began := time.Now()
	wallOf := func(i int) time.Time {
		return began.Add(time.Duration(float64(offsets[i]) / cfg.Speed))
	}
	// Metric rows on the same timeline: after the span they follow, at
	// most MaxGap later; rows before the first span or deeper in a
	// shortened gap are not sent.
	var rows []int
	var rowOff []int64
	if cfg.Metrics {
		for r := range l.Metrics {
			t := l.Metrics[r].Time.UnixNano()
			i, _ := slices.BinarySearchFunc(l.Spans, t, func(s Span, t int64) int { return cmpInt(s.Start, t+1) })
			if i == 0 {
				continue
			}
			d := t - l.Spans[i-1].Start
			if cfg.MaxGap > 0 && d > int64(cfg.MaxGap) {
				continue
			}
			rows, rowOff = append(rows, r), append(rowOff, offsets[i-1]+d)
		}
	}
	nextRow := 0
	sendRows := func(until time.Time) error {
		j := nextRow
		for j < len(rows) && began.Add(time.Duration(float64(rowOff[j])/cfg.Speed)).Before(until) {
			j++
		}
		if j == nextRow {
			return nil
		}
		md := l.podMetrics(rows[nextRow:j], time.Now())
		if err := send(ctx, cfg.Client, murl, pmetricotlp.NewExportRequestFromMetrics(md)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A receiver that takes traces only: the spans go on alone.
			log.Warn("replay: pod metrics refused; sending spans only", "day", l.Day.Name, "url", murl, "err", err)
			rows = nil
			return nil
		}
		st.MetricRows += j - nextRow
		nextRow = j
		return nil
	}
	for i := 0; i < len(l.Spans); {
		due := wallOf(i)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				st.Elapsed = time.Since(began)
				return st, ctx.Err()
			case <-time.After(wait):
			}
		}
		j := i
		limit := due.Add(cfg.Batch)
		for j < len(l.Spans) && wallOf(j).Before(limit) && j-i < 5000 {
			j++
		}
		if err := sendRows(limit); err != nil {
			st.Elapsed = time.Since(began)
			return st, err
		}
		td := l.traces(i, j, func(k int) time.Time { return wallOf(k) }, cfg.SamplingProbability)
		if err := send(ctx, cfg.Client, url, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
			st.Elapsed = time.Since(began)
			return st, fmt.Errorf("replay %s: send spans %d..%d to %s: %w", l.Day.Name, i, j, url, err)
		}
		st.Spans += j - i
		st.Requests++
		if st.Requests%100 == 0 {
			log.Info("replay progress", "day", l.Day.Name, "spans", st.Spans, "of", len(l.Spans),
				"dataset_time", time.Unix(0, l.Spans[j-1].Start).UTC().Format(time.TimeOnly))
		}
		i = j
	}
	st.Elapsed = time.Since(began)
	return st, nil
}

// traces builds the OTLP payload of spans [i, j): one resource per pod,
// service.name from the pod name, start times moved to at(k).
func (l *Loaded) traces(i, j int, at func(k int) time.Time, sampling float64) ptrace.Traces {
	td := ptrace.NewTraces()
	byPod := map[string]ptrace.SpanSlice{}
	for k := i; k < j; k++ {
		s := &l.Spans[k]
		ss, ok := byPod[s.Pod]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			ra := rs.Resource().Attributes()
			ra.PutStr("service.name", s.Service)
			ra.PutStr("k8s.pod.name", s.Pod)
			sc := rs.ScopeSpans().AppendEmpty()
			sc.Scope().SetName("meshlens-nezha-replay")
			ss = sc.Spans()
			byPod[s.Pod] = ss
		}
		sp := ss.AppendEmpty()
		sp.SetTraceID(pcommon.TraceID(s.TraceID))
		sp.SetSpanID(pcommon.SpanID(s.SpanID))
		if !s.ParentID.IsZero() {
			sp.SetParentSpanID(pcommon.SpanID(s.ParentID))
		}
		sp.SetName(s.Operation)
		start := at(k)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(s.End - s.Start))))
		if sampling > 0 && sampling < 1 {
			sp.Attributes().PutDouble("sampling.probability", sampling)
		}
	}
	return td
}

// podMetrics builds the OTLP payload of metric rows: one resource per pod,
// its CPU and memory use as shares of its limits (kubeletstats' names),
// stamped at.
func (l *Loaded) podMetrics(rows []int, at time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ts := pcommon.NewTimestampFromTime(at)
	for _, r := range rows {
		row := &l.Metrics[r]
		rm := md.ResourceMetrics().AppendEmpty()
		ra := rm.Resource().Attributes()
		ra.PutStr("service.name", row.Service)
		ra.PutStr("k8s.pod.name", row.Pod)
		ms := rm.ScopeMetrics().AppendEmpty()
		ms.Scope().SetName("meshlens-nezha-replay")
		for _, g := range podGauges {
			c, name := g.col, g.name
			v := row.Values[c]
			if math.IsNaN(v) {
				continue
			}
			m := ms.Metrics().AppendEmpty()
			m.SetName(name)
			m.SetUnit("1")
			dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
			dp.SetDoubleValue(v / 100)
			dp.SetTimestamp(ts)
		}
	}
	return md
}

// podGauges are the kubeletstats gauges the replay sends, each from its
// column (a use rate, percent of the limit) of MetricRow.Values.
var podGauges = []struct {
	col  int
	name string
}{
	{slices.Index(MetricColumns, "CpuUsageRate(%)"), "k8s.pod.cpu_limit_utilization"},
	{slices.Index(MetricColumns, "MemoryUsageRate(%)"), "k8s.pod.memory_limit_utilization"},
}

// marshaler is an OTLP export request.
type marshaler interface{ MarshalProto() ([]byte, error) }

func send(ctx context.Context, c *http.Client, url string, m marshaler) error {
	body, err := m.MarshalProto()
	if err != nil {
		return fmt.Errorf("encode OTLP request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}
