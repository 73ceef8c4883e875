package metrics

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type targetState struct {
	t Target

	mu       sync.Mutex
	last     time.Time
	dur      time.Duration
	lastErr  string
	health   string
	samples  int
	scrapes  uint64
	failures uint64
}

func (t *targetState) status() TargetStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.health
	if h == "" {
		h = "unknown"
	}
	return TargetStatus{Name: t.t.Name, URL: t.t.URL, Health: h, LastScrape: t.last, DurationSeconds: t.dur.Seconds(),
		LastError: t.lastErr, Samples: t.samples, Scrapes: t.scrapes, Failures: t.failures}
}

func (c *Collector) scrapeLoop(ctx context.Context, t *targetState) {
	tick := time.NewTicker(t.t.Interval)
	defer tick.Stop()
	for {
		c.scrapeTarget(ctx, t)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// acceptHeader asks for the text format first: it is what expfmt's text
// parser reads; OpenMetrics is understood when a target insists on it.
const acceptHeader = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"

func (c *Collector) scrapeTarget(ctx context.Context, t *targetState) {
	start := time.Now()
	n, err := c.scrape(ctx, t.t, start)
	dur := time.Since(start)
	t.mu.Lock()
	t.last, t.dur, t.samples = start, dur, n
	t.scrapes++
	if err != nil {
		t.failures++
		t.health, t.lastErr = "down", err.Error()
	} else {
		t.health, t.lastErr = "up", ""
	}
	t.mu.Unlock()
	c.scrapeDuration.WithLabelValues(t.t.Name).Set(dur.Seconds())
	if err != nil {
		c.scrapeUp.WithLabelValues(t.t.Name).Set(0)
		c.scrapes.WithLabelValues(t.t.Name, "error").Inc()
		if ctx.Err() == nil {
			c.log.Warn("scrape failed", "target", t.t.Name, "url", t.t.URL, "err", err)
		}
		return
	}
	c.scrapeUp.WithLabelValues(t.t.Name).Set(1)
	c.scrapes.WithLabelValues(t.t.Name, "ok").Inc()
}

// scrape fetches one target within its timeout and ingests what parsed.
func (c *Collector) scrape(ctx context.Context, t Target, now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", t.Name, err)
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(t.Timeout.Seconds(), 'f', -1, 64))
	req.Header.Set("User-Agent", "meshlens")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", t.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: HTTP %s", t.Name, resp.Status)
	}
	var body io.Reader = resp.Body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return 0, fmt.Errorf("scrape %s: gzip: %w", t.Name, err)
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(io.LimitReader(body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return 0, fmt.Errorf("scrape %s: read body: %w", t.Name, err)
	}
	if int64(len(data)) > c.cfg.MaxBodyBytes {
		return 0, fmt.Errorf("scrape %s: %w: more than %d bytes", t.Name, errTooLarge, c.cfg.MaxBodyBytes)
	}
	n, err := c.IngestExposition(data, resp.Header.Get("Content-Type"), "scrape:"+t.Name, t.Labels, now)
	if err != nil {
		return n, fmt.Errorf("scrape %s: %w", t.Name, err)
	}
	return n, nil
}

// IngestExposition parses one exposition body in the format its Content-Type
// names (Prometheus text, OpenMetrics text, or delimited protobuf) and ingests
// it as one batch from source at time now (for samples without a timestamp).
// Labels are added to every series that lacks them. What parsed before an
// error is kept.
func (c *Collector) IngestExposition(data []byte, contentType, source string, labels map[string]string, now time.Time) (int, error) {
	extra := make([]label, 0, len(labels))
	for k, v := range labels {
		extra = append(extra, label{k, v})
	}
	fams, perr := parseExposition(data, contentType)
	n := c.ingestFamilies(fams, source, extra, now.UnixMilli())
	if perr != nil {
		return n, fmt.Errorf("parse exposition: %w", perr)
	}
	return n, nil
}

func parseExposition(data []byte, contentType string) ([]*dto.MetricFamily, error) {
	mt, params, _ := mime.ParseMediaType(contentType)
	if mt == "application/vnd.google.protobuf" && params["proto"] == "io.prometheus.client.MetricFamily" {
		dec := expfmt.NewDecoder(bytes.NewReader(data), expfmt.NewFormat(expfmt.TypeProtoDelim))
		var out []*dto.MetricFamily
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); err != nil {
				if errors.Is(err, io.EOF) {
					return out, nil
				}
				return out, err
			}
			out = append(out, mf)
		}
	}
	if mt == "application/openmetrics-text" {
		data = openMetricsToText(data)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(data))
	out := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		out = append(out, mf)
	}
	return out, err
}

// openMetricsToText rewrites what the text parser does not read in
// OpenMetrics: exemplars, timestamps in seconds, and # EOF / # UNIT lines.
func openMetricsToText(data []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(data))
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), len(data)+1)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("# EOF")) || bytes.HasPrefix(line, []byte("# UNIT ")) {
			continue
		}
		if len(line) > 0 && line[0] != '#' {
			if i := bytes.Index(line, []byte(" # {")); i >= 0 {
				line = line[:i]
			}
			// name{labels} value [timestamp-in-seconds]: drop the timestamp.
			end := bytes.LastIndexByte(line, '}')
			fields := bytes.Fields(line[end+1:])
			if len(fields) == 2 {
				line = line[:len(line)-len(fields[1])]
				line = bytes.TrimRight(line, " ")
			}
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// ingestFamilies flattens parsed families into samples, the way remote-write
// carries them (name_bucket{le} per bucket), and ingests them as one batch.
func (c *Collector) ingestFamilies(fams []*dto.MetricFamily, source string, extra []label, nowMs int64) int {
	in := c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	in.beginLocked()
	if _, ok := in.sources[source]; !ok {
		// A scrape that worked makes its target known even when it had no
		// series yet: series that show up later began after it and count in full.
		in.sources[source] = nowMs
	}
	var kb []byte
	n := 0
	add := func(name string, m *dto.Metric, le string, v float64) {
		ls := make([]label, 0, len(m.GetLabel())+len(extra)+2)
		ls = append(ls, label{"__name__", name})
		for _, lp := range m.GetLabel() {
			ls = append(ls, label{lp.GetName(), lp.GetValue()})
		}
		for _, e := range extra {
			if !hasLabel(ls, e.Name) {
				ls = append(ls, e)
			}
		}
		if le != "" {
			ls = append(ls, label{"le", le})
		}
		ts := nowMs
		if m.TimestampMs != nil {
			ts = m.GetTimestampMs()
		}
		kb = in.addLabelsLocked(kb, ls, v, ts, source, false)
		n++
	}
	for _, mf := range fams {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m, "", m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m, "", m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, m, "", m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					ub := b.GetUpperBound()
					inf = inf || math.IsInf(ub, 1)
					add(name+"_bucket", m, formatLE(ub), float64(b.GetCumulativeCount()))
				}
				if !inf {
					add(name+"_bucket", m, "+Inf", float64(h.GetSampleCount()))
				}
				add(name+"_sum", m, "", h.GetSampleSum())
				add(name+"_count", m, "", float64(h.GetSampleCount()))
			default:
				// Summaries carry no edge data we use.
			}
		}
	}
	obs := in.endLocked()
	c.deliverLocked(obs)
	return n
}

func formatLE(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// addLabelsLocked ingests one sample given as labels (name in __name__). It
// sorts ls and reuses kb for the key, returning it.
func (in *ingester) addLabelsLocked(kb []byte, ls []label, v float64, ts int64, source string, isDelta bool) []byte {
	slices.SortFunc(ls, func(a, b label) int { return strings.Compare(a.Name, b.Name) })
	kb = append(kb[:0], 'L') // a different key space from remote-write's raw label bytes
	for _, l := range ls {
		kb = append(kb, l.Name...)
		kb = append(kb, 0xfe)
		kb = append(kb, l.Value...)
		kb = append(kb, 0xff)
	}
	h := in.hash(kb)
	s := in.lookupLocked(h, kb)
	if s == nil {
		if s = in.createLocked(h, kb, ls, source, ts); s == nil {
			return kb
		}
	}
	in.observeLocked(s, v, ts, isDelta)
	return kb
}

// StatusHandler serves the collector's Status as JSON (GET /api/v1/collector/status).
func (c *Collector) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "status takes GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c.Status())
	})
}
