package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// The load generator's remote-write part (see loadgen.go).

// rwSeries is one series of a payload. Its value at a step is
// n*num/den, where n = step*inc is the cumulative request count of the
// (edge, reporter, code) it belongs to; counted marks the series whose
// increase the graph shows as requests (destination-reported request
// counters).
type rwSeries struct {
	labels   []prompb.Label
	inc      uint64
	num, den uint64
	counted  bool
}

func (s *rwSeries) value(step uint64) float64 { return float64(step * s.inc * s.num / s.den) }

// rwShape builds the series of edges [from, to) of a synthetic mesh in
// namespace ns. "simple" is one request counter per edge (client -> svc-i,
// destination reporter); "istio" is what Istio sidecars export per edge:
// 2 reporters x 2 response codes x (request counter, 20 duration buckets,
// duration sum and count, request and response byte sums) = 100 series, the
// shape bench-metrics measures.
func rwShape(shape, ns, instance string, from, to int) ([]rwSeries, error) {
	var out []rwSeries
	for i := from; i < to; i++ {
		switch shape {
		case "simple":
			svc := "svc-" + strconv.Itoa(i)
			out = append(out, rwSeries{labels: []prompb.Label{
				{Name: "__name__", Value: "istio_requests_total"},
				{Name: "destination_workload", Value: svc}, {Name: "destination_workload_namespace", Value: ns},
				{Name: "destination_app", Value: svc}, {Name: "destination_service", Value: svc + "." + ns + ".svc.cluster.local"},
				{Name: "instance", Value: instance}, {Name: "job", Value: "loadgen-" + ns},
				{Name: "reporter", Value: "destination"}, {Name: "response_code", Value: "200"},
				{Name: "source_app", Value: "client"}, {Name: "source_workload", Value: "client"}, {Name: "source_workload_namespace", Value: ns},
			}, inc: uint64(1 + i%5), num: 1, den: 1, counted: true})
		case "istio":
			src, dst := "client-"+strconv.Itoa(i/10), "svc-"+strconv.Itoa(i)
			for _, rep := range []string{"source", "destination"} {
				for _, code := range []string{"200", "503"} {
					inc := uint64(20 + i%7)
					if code == "503" {
						inc = uint64(i % 3) // some edges fail a little, most not at all
					}
					base := istioLabels(src, dst, ns, instance, "loadgen-"+ns, rep, code)
					with := func(name string, num, den uint64, counted bool, extra ...prompb.Label) {
						ls := append([]prompb.Label{{Name: "__name__", Value: name}}, base...)
						out = append(out, rwSeries{labels: append(ls, extra...), inc: inc, num: num, den: den, counted: counted})
					}
					with("istio_requests_total", 1, 1, rep == "destination")
					for j, le := range istioBuckets {
						with("istio_request_duration_milliseconds_bucket", uint64(min(j+1, 8)), 8, false, prompb.Label{Name: "le", Value: le})
					}
					with("istio_request_duration_milliseconds_sum", 12, 1, false)
					with("istio_request_duration_milliseconds_count", 1, 1, false)
					with("istio_request_bytes_sum", 600, 1, false)
					with("istio_response_bytes_sum", 5000, 1, false)
				}
			}
		default:
			return nil, fmt.Errorf("remote-write shape %q: want simple or istio", shape)
		}
	}
	return out, nil
}

// rwPayload is one pre-encoded remote-write request: a snappy block in
// which each series' sample (value and timestamp) sits in a literal at a
// known offset, so a send only rewrites 14 bytes per series instead of
// marshalling and compressing again. Every series is in exactly one payload
// and gets a strictly increasing timestamp, so nothing is a resend.
type rwPayload struct {
	series []rwSeries
	body   []byte
	at     []int // offset in body of each series' 8 value bytes; the 6 timestamp bytes follow a 0x10 tag
	step   uint64
	lastTs int64
	// first and last acknowledged step: the graph must show the increase between them.
	firstAck, lastAck uint64
}

// rwTemplateTs is a timestamp placeholder with a 6-byte varint, the length
// every millisecond timestamp between 2004 and 2109 has.
const (
	rwMinTs = int64(1) << 35
	rwMaxTs = int64(1) << 42
)

func newRWPayload(series []rwSeries) (*rwPayload, error) {
	wr := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(series))}
	for i := range series {
		// Non-zero placeholders: a zero value or timestamp would not be encoded.
		wr.Timeseries[i] = prompb.TimeSeries{Labels: series[i].labels, Samples: []prompb.Sample{{Value: 1, Timestamp: rwMinTs}}}
	}
	raw, err := wr.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal remote-write template of %d series: %w", len(series), err)
	}
	rawAt, err := sampleOffsets(raw)
	if err != nil {
		return nil, err
	}
	if len(rawAt) != len(series) {
		return nil, fmt.Errorf("remote-write template: %d samples for %d series", len(rawAt), len(series))
	}
	pinned := make([]bool, len(raw))
	for _, o := range rawAt {
		for k := o; k < o+15; k++ {
			pinned[k] = true
		}
	}
	body, lit := snappyPinned(raw, pinned)
	p := &rwPayload{series: series, body: body, at: make([]int, len(rawAt))}
	for i, o := range rawAt {
		p.at[i] = lit[o]
	}
	return p, nil
}

// sampleOffsets walks a marshalled WriteRequest and returns, per series, the
// offset of the 8 value bytes of its only sample (encoded 0x09 value 0x10
// timestamp, as the placeholders guarantee).
func sampleOffsets(raw []byte) ([]int, error) {
	var at []int
	for b := raw; len(b) > 0; {
		tag, n := binary.Uvarint(b)
		l, m := binary.Uvarint(b[n:])
		if n <= 0 || m <= 0 || tag != 1<<3|2 || l > uint64(len(b)-n-m) {
			return nil, fmt.Errorf("remote-write template at byte %d: not a timeseries", len(raw)-len(b))
		}
		ts := b[n+m : n+m+int(l)]
		base := len(raw) - len(b) + n + m
		for off := 0; off < len(ts); {
			t, k := binary.Uvarint(ts[off:])
			pl, j := binary.Uvarint(ts[off+k:])
			if k <= 0 || j <= 0 {
				return nil, fmt.Errorf("remote-write template: series %d truncated", len(at))
			}
			p := off + k + j
			if t == 2<<3|2 {
				if pl != 16 || ts[p] != 0x09 || ts[p+9] != 0x10 {
					return nil, fmt.Errorf("remote-write template: series %d sample not in the placeholder layout", len(at))
				}
				at = append(at, base+p+1)
			}
			off = p + int(pl)
		}
		b = b[n+m+int(l):]
	}
	return at, nil
}

// snappyPinned compresses raw into one snappy block in which every pinned
// byte is emitted as a literal and is never the source of a copy, so the
// pinned bytes can be rewritten in the compressed block. lit maps a raw
// offset to its offset in the block (valid for pinned bytes). The matcher is
// a plain greedy one with a 64k window: enough for label sets that repeat.
func snappyPinned(raw []byte, pinned []bool) (block []byte, lit []int) {
	block = binary.AppendUvarint(nil, uint64(len(raw)))
	lit = make([]int, len(raw))
	free := func(at, n int) bool {
		for k := at; k < at+n; k++ {
			if pinned[k] {
				return false
			}
		}
		return true
	}
	emitLiteral := func(from, to int) {
		if from == to {
			return
		}
		n := to - from - 1
		switch {
		case n < 60:
			block = append(block, byte(n<<2))
		case n < 1<<8:
			block = append(block, 60<<2, byte(n))
		case n < 1<<16:
			block = append(block, 61<<2, byte(n), byte(n>>8))
		case n < 1<<24:
			block = append(block, 62<<2, byte(n), byte(n>>8), byte(n>>16))
		default:
			block = append(block, 63<<2, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
		}
		for k := from; k < to; k++ {
			lit[k] = len(block) + k - from
		}
		block = append(block, raw[from:to]...)
	}
	var table [1 << 14]int32 // last position + 1 of a 4-byte hash
	hash := func(u uint32) uint32 { return (u * 0x1e35a7bd) >> 18 }
	start := 0
	for i := 0; i+4 <= len(raw); {
		if !free(i, 4) {
			i++
			continue
		}
		u := binary.LittleEndian.Uint32(raw[i:])
		h := hash(u)
		cand := int(table[h]) - 1
		table[h] = int32(i + 1)
		if cand < 0 || i-cand > 65535 || binary.LittleEndian.Uint32(raw[cand:]) != u || !free(cand, 4) {
			i++
			continue
		}
		n := 4
		for i+n < len(raw) && raw[cand+n] == raw[i+n] && !pinned[i+n] && !pinned[cand+n] {
			n++
		}
		emitLiteral(start, i)
		for off, left := i-cand, n; left > 0; {
			c := min(left, 64)
			block = append(block, byte((c-1)<<2|2), byte(off), byte(off>>8))
			left -= c
		}
		i += n
		start = i
	}
	emitLiteral(start, len(raw))
	return block, lit
}

// patch writes the samples of step at ts into the block.
func (p *rwPayload) patch(step uint64, ts int64) {
	for i := range p.series {
		o := p.at[i]
		binary.LittleEndian.PutUint64(p.body[o:], math.Float64bits(p.series[i].value(step)))
		binary.PutUvarint(p.body[o+9:o+15], uint64(ts))
	}
}

// expected is the requests the graph must show for what was acknowledged.
func (p *rwPayload) expected() uint64 {
	if p.lastAck == 0 {
		return 0
	}
	var n uint64
	for i := range p.series {
		if s := &p.series[i]; s.counted {
			n += (p.lastAck - p.firstAck) * s.inc
		}
	}
	return n
}

// loadgenRemoteWrite pushes Istio metrics for a synthetic mesh in its own
// namespace and reports how many requests the acknowledged samples account
// for (per series: last acknowledged value - first acknowledged value),
// which is what the graph must show for that namespace.
func loadgenRemoteWrite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen remote-write", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/api/v1/write", "remote-write endpoint")
	rate := fs.Float64("rate", 20, "write requests per second, all workers together (0: as fast as answered)")
	edges := fs.Int("edges", 50, "edges of the synthetic mesh")
	perReq := fs.Int("edges-per-request", 0, "edges per write request (0: all in one request)")
	shape := fs.String("shape", "simple", "series per edge: simple (1 request counter) or istio (100 series: 2 reporters x 2 codes x counter, 20 buckets, 4 sums)")
	workers := fs.Int("workers", 1, "concurrent senders; each owns a share of the requests")
	ns := fs.String("namespace", "loadgen", "namespace of the synthetic workloads")
	dur := fs.Duration("duration", time.Minute, "how long to send")
	token := fs.String("token-file", "", "file with a bearer token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *edges < 1 || *workers < 1 || *perReq < 0 || *rate < 0 {
		return fmt.Errorf("loadgen remote-write: edges and workers must be > 0, edges-per-request and rate >= 0")
	}
	bearer, err := readToken(*token)
	if err != nil {
		return err
	}
	if *perReq == 0 {
		*perReq = *edges
	}
	// One instance per request: all of a source's series then arrive in its
	// first request, so the server primes them all (counts from there).
	var payloads []*rwPayload
	for from := 0; from < *edges; from += *perReq {
		instance := "loadgen"
		if *perReq < *edges {
			instance = "loadgen-" + strconv.Itoa(from / *perReq)
		}
		series, err := rwShape(*shape, *ns, instance, from, min(from+*perReq, *edges))
		if err != nil {
			return err
		}
		p, err := newRWPayload(series)
		if err != nil {
			return err
		}
		payloads = append(payloads, p)
	}
	*workers = min(*workers, len(payloads))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = *workers
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var st struct {
		sync.Mutex
		sent, ok, retried, failed int
		samplesSent, samplesAcked uint64
		bytesSent                 uint64
		lat                       []float64
		lastErr                   string
	}
	send := func(p *rwPayload) {
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(p.body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			req.Header.Set("Content-Encoding", "snappy")
			req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			ms := float64(time.Since(t0).Microseconds()) / 1000
			st.Lock()
			st.bytesSent += uint64(len(p.body))
			if code/100 == 2 {
				st.ok++
				st.samplesAcked += uint64(len(p.series))
				st.lat = append(st.lat, ms)
				st.Unlock()
				if p.firstAck == 0 {
					p.firstAck = p.step
				}
				p.lastAck = p.step
				return
			}
			if err != nil {
				st.lastErr = fmt.Sprintf("write %d series to %s: %v", len(p.series), *url, err)
			} else {
				st.lastErr = fmt.Sprintf("write %d series to %s: HTTP %d", len(p.series), *url, code)
			}
			// Retry what Prometheus retries: 429, 5xx and connection errors.
			if (code == 429 || code/100 == 5 || err != nil) && attempt < 5 && ctx.Err() == nil {
				st.retried++
				st.Unlock()
				time.Sleep(200 * time.Millisecond)
				continue
			}
			st.failed++ // dropped by us: not acknowledged, not counted
			st.Unlock()
			return
		}
	}
	start := time.Now()
	end := start.Add(*dur)
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Go(func() {
			var mine []*rwPayload
			for i := w; i < len(payloads); i += *workers {
				mine = append(mine, payloads[i])
			}
			pc := newPacer(*rate / float64(*workers))
			for k := 0; time.Now().Before(end) && ctx.Err() == nil; k++ {
				pc.wait(ctx)
				p := mine[k%len(mine)]
				p.step++
				ts := max(time.Now().UnixMilli(), p.lastTs+1)
				if ts < rwMinTs || ts >= rwMaxTs {
					panic("timestamp outside the 6-byte varint range")
				}
				p.lastTs = ts
				p.patch(p.step, ts)
				st.Lock()
				st.sent++
				st.samplesSent += uint64(len(p.series))
				st.Unlock()
				send(p)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	var want uint64
	for _, p := range payloads {
		want += p.expected()
	}
	p50, p99, mx := quantiles(st.lat)
	nseries := 0
	for _, p := range payloads {
		nseries += len(p.series)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"namespace": *ns, "shape": *shape,
		"series": nseries, "seriesPerRequest": len(payloads[0].series),
		"requestsSent": st.sent, "acked": st.ok, "retried": st.retried, "failed": st.failed, "lastError": st.lastErr,
		"samplesSent": st.samplesSent, "samplesAcked": st.samplesAcked, "seconds": math.Round(secs*10) / 10,
		"samplesPerSec": math.Round(float64(st.samplesAcked) / secs), "bytesSent": st.bytesSent,
		"p50ms": p50, "p99ms": p99, "maxms": mx, "cpuSeconds": cpuSeconds(), "expectedGraphRequests": want})
}
