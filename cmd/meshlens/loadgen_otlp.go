package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The load generator's OTLP/gRPC traces part (see loadgen.go).

// otlpCallsPerTrace is what the graph shows for one trace of otlpTemplate:
// frontend->customer, customer->mysql, frontend->driver, 3 x driver->redis,
// 3 x frontend->route, and the entry into frontend from an unknown caller
// (the internal span makes no edge). loadgen_test checks it against the
// real decoder, pairer and graph.
const otlpCallsPerTrace = 10

// Markers in the template: the trace IDs and span times hold them so their
// offsets can be found in the encoded request and rewritten per send.
const (
	otlpTraceMark uint64 = 0xfe4d4c534f414b00 // "\xfeMLSOAK\x00"
	otlpTimeMark  uint64 = 0x5a5a5a0000000000
)

// otlpTemplate builds one ExportTraceServiceRequest of n HotROD-like traces
// (14 spans each, as bench-traces), in namespace ns, with marker trace IDs
// and times; off[k] is the real offset from the trace start of time marker k.
func otlpTemplate(ns string, n int) (body []byte, off []uint64, spans int, err error) {
	services := []string{"frontend", "customer", "driver", "route"}
	td := ptrace.NewTraces()
	ss := map[string]ptrace.SpanSlice{}
	for _, name := range services {
		rs := td.ResourceSpans().AppendEmpty()
		a := rs.Resource().Attributes()
		a.PutStr("service.name", name)
		a.PutStr("service.version", "v1")
		a.PutStr("k8s.namespace.name", ns)
		a.PutStr("k8s.deployment.name", name+"-v1")
		a.PutStr("k8s.pod.name", name+"-v1-7d9f8b6c5-abcde")
		a.PutStr("telemetry.sdk.language", "go")
		ss[name] = rs.ScopeSpans().AppendEmpty().Spans()
	}
	for t := range n {
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[:8], otlpTraceMark)
		binary.BigEndian.PutUint64(tid[8:], uint64(t))
		var next uint64
		add := func(svc string, parent pcommon.SpanID, kind ptrace.SpanKind, name string, at, dur uint64, attrs func(pcommon.Map)) pcommon.SpanID {
			next++
			sid := putSpan(ss[svc], tid, next|uint64(t)<<16, parent, kind, name, otlpTimeMark+uint64(len(off)), otlpTimeMark+uint64(len(off)+1), attrs)
			off = append(off, at, at+dur)
			spans++
			return sid
		}
		hotrodTrace(add)
	}
	body, err = ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("marshal OTLP template of %d traces: %w", n, err)
	}
	return body, off, spans, nil
}

// otlpPayload is a pre-encoded OTLP request whose trace IDs and span times
// are rewritten in place before each send.
type otlpPayload struct {
	body   []byte
	tidAt  [][]int // per template trace: offsets of its 16-byte trace IDs
	timeAt []int   // per time marker: offset of its 8 bytes
	off    []uint64
	spans  int
}

func newOTLPPayload(ns string, traces int) (*otlpPayload, error) {
	body, off, spans, err := otlpTemplate(ns, traces)
	if err != nil {
		return nil, err
	}
	p := &otlpPayload{body: body, tidAt: make([][]int, traces), timeAt: make([]int, len(off)), off: off, spans: spans}
	for i := range p.timeAt {
		p.timeAt[i] = -1
	}
	// The markers cannot occur elsewhere: the rest is text, small integers
	// and span IDs below 2^48.
	for i := 0; i+8 <= len(body); i++ {
		v := binary.LittleEndian.Uint64(body[i:])
		if v-otlpTimeMark < uint64(len(off)) {
			if p.timeAt[v-otlpTimeMark] >= 0 {
				return nil, fmt.Errorf("OTLP template: time marker %d found twice", v-otlpTimeMark)
			}
			p.timeAt[v-otlpTimeMark] = i
		}
		if i+16 <= len(body) && binary.BigEndian.Uint64(body[i:]) == otlpTraceMark {
			t := binary.BigEndian.Uint64(body[i+8:])
			if t >= uint64(traces) {
				return nil, fmt.Errorf("OTLP template: trace marker %d out of range", t)
			}
			p.tidAt[t] = append(p.tidAt[t], i)
		}
	}
	for k, at := range p.timeAt {
		if at < 0 {
			return nil, fmt.Errorf("OTLP template: time marker %d not found", k)
		}
	}
	for t, at := range p.tidAt {
		if len(at) != spans/traces {
			return nil, fmt.Errorf("OTLP template: trace %d ID found %d times, want %d", t, len(at), spans/traces)
		}
	}
	return p, nil
}

// patch gives every trace a new ID (prefix, then seq, seq+1, ...) and moves
// its spans to start at base (Unix ns).
func (p *otlpPayload) patch(prefix, seq, base uint64) {
	for t, ats := range p.tidAt {
		for _, at := range ats {
			binary.BigEndian.PutUint64(p.body[at:], prefix)
			binary.BigEndian.PutUint64(p.body[at+8:], seq+uint64(t))
		}
	}
	for k, at := range p.timeAt {
		binary.LittleEndian.PutUint64(p.body[at:], base+p.off[k])
	}
}

// rawCodec sends pre-encoded bytes as they are. Named "proto" so the
// content-subtype stays application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// loadgenOTLP exports HotROD-like traces over OTLP/gRPC from pre-encoded
// requests and reports spans acknowledged and the calls the graph must show
// for its namespace.
func loadgenOTLP(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen otlp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:4317", "OTLP/gRPC endpoint")
	rate := fs.Float64("rate", 1000, "spans per second, all workers together (0: as fast as answered)")
	perReq := fs.Int("traces-per-request", 50, "traces per export request (14 spans each)")
	workers := fs.Int("workers", 1, "concurrent senders, each on its own connection")
	ns := fs.String("namespace", "loadgen-otlp", "namespace (k8s.namespace.name) of the traced services")
	dur := fs.Duration("duration", time.Minute, "how long to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *perReq < 1 || *workers < 1 || *rate < 0 {
		return fmt.Errorf("loadgen otlp: traces-per-request and workers must be > 0, rate >= 0")
	}
	prefix := rand.Uint64() | 1 // odd: a trace ID is never all zeros
	var seq atomic.Uint64
	var st struct {
		sync.Mutex
		sent, ok, retried, failed int
		spansAcked, rejected      uint64
		tracesAcked               uint64
		lat                       []float64
		lastErr                   string
	}
	start := time.Now()
	end := start.Add(*dur)
	var wg sync.WaitGroup
	errs := make(chan error, *workers)
	for range *workers {
		p, err := newOTLPPayload(*ns, *perReq)
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("loadgen otlp: dial %s: %w", *addr, err)
		}
		defer conn.Close()
		wg.Go(func() {
			pc := newPacer(*rate / float64(*workers) / float64(p.spans))
			var resp []byte
			for time.Now().Before(end) && ctx.Err() == nil {
				pc.wait(ctx)
				p.patch(prefix, seq.Add(uint64(*perReq))-uint64(*perReq), uint64(time.Now().Add(-time.Second).UnixNano()))
				st.Lock()
				st.sent++
				st.Unlock()
				for attempt := 0; ; attempt++ {
					t0 := time.Now()
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := conn.Invoke(cctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &p.body, &resp, grpc.ForceCodec(rawCodec{}))
					cancel()
					ms := float64(time.Since(t0).Microseconds()) / 1000
					if err == nil {
						r := ptraceotlp.NewExportResponse()
						if uerr := r.UnmarshalProto(resp); uerr != nil {
							errs <- fmt.Errorf("loadgen otlp: decode response from %s: %w", *addr, uerr)
							return
						}
						rej := uint64(r.PartialSuccess().RejectedSpans())
						st.Lock()
						st.ok++
						st.lat = append(st.lat, ms)
						st.rejected += rej
						st.spansAcked += uint64(p.spans) - rej
						st.tracesAcked += uint64(*perReq)
						st.Unlock()
						break
					}
					c := status.Code(err)
					st.Lock()
					st.lastErr = fmt.Sprintf("export %d spans to %s: %v", p.spans, *addr, err)
					// Retry what the OTLP exporters retry.
					if (c == codes.ResourceExhausted || c == codes.Unavailable || c == codes.DeadlineExceeded) && attempt < 5 && ctx.Err() == nil {
						st.retried++
						st.Unlock()
						time.Sleep(200 * time.Millisecond)
						continue
					}
					st.failed++
					st.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	p50, p99, mx := quantiles(st.lat)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"namespace": *ns, "requestsSent": st.sent, "acked": st.ok,
		"retried": st.retried, "failed": st.failed, "lastError": st.lastErr, "spansAcked": st.spansAcked,
		"spansRejected": st.rejected, "seconds": math.Round(secs*10) / 10, "spansPerSec": math.Round(float64(st.spansAcked) / secs),
		"p50ms": p50, "p99ms": p99, "maxms": mx, "cpuSeconds": cpuSeconds(), "expectedGraphRequests": st.tracesAcked * otlpCallsPerTrace})
}

// putSpan appends one span of trace tid to ss, with span ID id, and
// returns that ID.
func putSpan(ss ptrace.SpanSlice, tid [16]byte, id uint64, parent pcommon.SpanID, kind ptrace.SpanKind, name string, start, end uint64, attrs func(pcommon.Map)) pcommon.SpanID {
	var sid [8]byte
	binary.BigEndian.PutUint64(sid[:], id)
	s := ss.AppendEmpty()
	s.SetTraceID(tid)
	s.SetSpanID(sid)
	s.SetParentSpanID(parent)
	s.SetKind(kind)
	s.SetName(name)
	s.SetStartTimestamp(pcommon.Timestamp(start))
	s.SetEndTimestamp(pcommon.Timestamp(end))
	if attrs != nil {
		attrs(s.Attributes())
	}
	return sid
}
