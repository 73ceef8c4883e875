package nezha

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
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
}

// ReplayStats says what a replay sent.
type ReplayStats struct {
	Spans, Requests int
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
	url := strings.TrimRight(cfg.Endpoint, "/")
	if !strings.HasSuffix(url, "/v1/traces") {
		url += "/v1/traces"
	}
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
		td := l.traces(i, j, func(k int) time.Time { return wallOf(k) }, cfg.SamplingProbability)
		if err := send(ctx, cfg.Client, url, td); err != nil {
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

func send(ctx context.Context, c *http.Client, url string, td ptrace.Traces) error {
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
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
