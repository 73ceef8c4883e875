package traces

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	jaegermodel "github.com/jaegertracing/jaeger-idl/model/v1"
	jaegerthrift "github.com/jaegertracing/jaeger-idl/thrift-gen/jaeger"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Decoder turns every supported wire format into Spans. It holds no state
// between calls and is safe for concurrent use.
type Decoder struct {
	Identity Identity
	// MaxAttrLen truncates the attribute values a span keeps (names of
	// services and peers); huge values are cut, not rejected.
	MaxAttrLen int
}

// DecodeStats counts what decoding had to repair.
type DecodeStats struct {
	NoService int // spans without a service name (recorded as unknown_service)
	Truncated int // attribute values cut to MaxAttrLen
}

func (d *Decoder) clip(s string, st *DecodeStats) string {
	if d.MaxAttrLen > 0 && len(s) > d.MaxAttrLen {
		st.Truncated++
		return strings.ToValidUTF8(s[:d.MaxAttrLen], "")
	}
	return s
}

func (d *Decoder) node(r *ResourceAttrs, st *DecodeStats) (n Span) {
	r.ServiceName = d.clip(r.ServiceName, st)
	r.ServiceNamespace = d.clip(r.ServiceNamespace, st)
	r.ServiceVersion = d.clip(r.ServiceVersion, st)
	r.K8sNamespace = d.clip(r.K8sNamespace, st)
	r.K8sDeployment = d.clip(r.K8sDeployment, st)
	r.K8sCluster = d.clip(r.K8sCluster, st)
	n.Service = d.Identity.NodeFromResource(r)
	return n
}

func (d *Decoder) clipPeer(p *Peer, st *DecodeStats) {
	for _, f := range [...]*string{&p.Service, &p.Address, &p.DBSystem, &p.DBNamespace, &p.MessagingSystem, &p.MessagingDestination, &p.HTTPHost} {
		*f = d.clip(*f, st)
	}
}

// AppendOTLP appends the spans of td to dst.
func (d *Decoder) AppendOTLP(dst []Span, td ptrace.Traces, st *DecodeStats) []Span {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		var ra ResourceAttrs
		var resSampling float64
		for k, v := range rs.Resource().Attributes().All() {
			if v.Type() == pcommon.ValueTypeStr {
				ra.set(k, v.Str())
			} else if v.Type() == pcommon.ValueTypeDouble && k == "sampling.probability" {
				resSampling = v.Double()
			}
		}
		if ra.ServiceName == "" || strings.HasPrefix(ra.ServiceName, UnknownService) {
			// OTel SDKs send "unknown_service:<process>" when none is configured.
			ra.ServiceName = ""
		}
		base := d.node(&ra, st)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			if ra.ServiceName == "" {
				st.NoService += spans.Len()
			}
			for k := 0; k < spans.Len(); k++ {
				ps := spans.At(k)
				s := Span{
					TraceID:       TraceID(ps.TraceID()),
					SpanID:        SpanID(ps.SpanID()),
					ParentID:      SpanID(ps.ParentSpanID()),
					Kind:          otlpKind(ps.Kind()),
					Name:          ps.Name(),
					Service:       base.Service,
					StartUnixNano: clampNanos(uint64(ps.StartTimestamp())),
					EndUnixNano:   clampNanos(uint64(ps.EndTimestamp())),
					SamplingRatio: resSampling,
				}
				switch ps.Status().Code() {
				case ptrace.StatusCodeError:
					s.Status = StatusError
				case ptrace.StatusCodeOk:
					s.Status = StatusOK
				}
				a := newSpanAttrs()
				for k, v := range ps.Attributes().All() {
					switch v.Type() {
					case pcommon.ValueTypeStr:
						a.str(k, v.Str())
					case pcommon.ValueTypeInt:
						a.int(k, v.Int())
					case pcommon.ValueTypeDouble:
						a.float(k, v.Double())
					}
				}
				if ts := ps.TraceState().AsRaw(); ts != "" {
					if r := samplingFromTraceState(ts); r > 0 {
						a.sampling = r
					}
				}
				d.clipPeer(&a.peer, st)
				a.fill(&s)
				dst = append(dst, s)
			}
		}
	}
	return dst
}

func clampNanos(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

func otlpKind(k ptrace.SpanKind) SpanKind {
	switch k {
	case ptrace.SpanKindInternal:
		return KindInternal
	case ptrace.SpanKindServer:
		return KindServer
	case ptrace.SpanKindClient:
		return KindClient
	case ptrace.SpanKindProducer:
		return KindProducer
	case ptrace.SpanKindConsumer:
		return KindConsumer
	}
	return KindUnspecified
}

// jaegerSampling reads Jaeger's sampler tags: a probabilistic sampler with
// parameter p kept the trace with probability p.
type jaegerSampling struct {
	typ   string
	param float64
}

func (j jaegerSampling) ratio() float64 {
	if j.typ == "probabilistic" && j.param > 0 && j.param <= 1 {
		return j.param
	}
	return 0
}

func (j *jaegerSampling) str(k, v string) {
	switch k {
	case "sampler.type":
		j.typ = v
	case "sampler.param":
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			j.param = f
		}
	}
}

func (j *jaegerSampling) float(k string, v float64) {
	if k == "sampler.param" {
		j.param = v
	}
}

// AppendJaeger appends the spans of a Jaeger api_v2 batch (gRPC PostSpans).
func (d *Decoder) AppendJaeger(dst []Span, b *jaegermodel.Batch, st *DecodeStats) []Span {
	type proc struct {
		span Span
		samp jaegerSampling
	}
	cache := map[*jaegermodel.Process]proc{}
	procOf := func(p *jaegermodel.Process) proc {
		if p == nil {
			p = b.Process
		}
		if c, ok := cache[p]; ok {
			return c
		}
		var ra ResourceAttrs
		var js jaegerSampling
		if p != nil {
			ra.ServiceName = p.ServiceName
			for i := range p.Tags {
				kv := &p.Tags[i]
				switch kv.VType {
				case jaegermodel.ValueType_STRING:
					ra.set(kv.Key, kv.VStr)
					js.str(kv.Key, kv.VStr)
				case jaegermodel.ValueType_FLOAT64:
					js.float(kv.Key, kv.VFloat64)
				}
			}
		}
		c := proc{span: d.node(&ra, st), samp: js}
		cache[p] = c
		return c
	}
	for _, js := range b.Spans {
		if js == nil {
			continue
		}
		pr := procOf(js.Process)
		if pr.span.Service.App == UnknownService {
			st.NoService++
		}
		s := Span{
			TraceID:       jaegerTraceID(js.TraceID.High, js.TraceID.Low),
			SpanID:        jaegerSpanID(uint64(js.SpanID)),
			ParentID:      jaegerSpanID(uint64(js.ParentSpanID())),
			Name:          js.OperationName,
			Service:       pr.span.Service,
			StartUnixNano: js.StartTime.UnixNano(),
			SamplingRatio: pr.samp.ratio(),
		}
		s.EndUnixNano = s.StartUnixNano + int64(js.Duration)
		a := newSpanAttrs()
		for i := range js.Tags {
			kv := &js.Tags[i]
			switch kv.VType {
			case jaegermodel.ValueType_STRING:
				a.str(kv.Key, kv.VStr)
			case jaegermodel.ValueType_INT64:
				a.int(kv.Key, kv.VInt64)
			case jaegermodel.ValueType_FLOAT64:
				a.float(kv.Key, kv.VFloat64)
			case jaegermodel.ValueType_BOOL:
				if kv.Key == "error" && kv.VBool {
					a.err = true
				}
			}
		}
		d.clipPeer(&a.peer, st)
		a.fill(&s)
		dst = append(dst, s)
	}
	return dst
}

// AppendJaegerThrift appends the spans of a Jaeger Thrift batch (HTTP /api/traces).
func (d *Decoder) AppendJaegerThrift(dst []Span, b *jaegerthrift.Batch, st *DecodeStats) []Span {
	var ra ResourceAttrs
	var samp jaegerSampling
	if b.Process != nil {
		ra.ServiceName = b.Process.ServiceName
		for _, t := range b.Process.Tags {
			if t == nil {
				continue
			}
			if t.VStr != nil {
				ra.set(t.Key, *t.VStr)
				samp.str(t.Key, *t.VStr)
			}
			if t.VDouble != nil {
				samp.float(t.Key, *t.VDouble)
			}
		}
	}
	base := d.node(&ra, st)
	for _, ts := range b.Spans {
		if ts == nil {
			continue
		}
		if ra.ServiceName == "" {
			st.NoService++
		}
		s := Span{
			TraceID:       jaegerTraceID(uint64(ts.TraceIdHigh), uint64(ts.TraceIdLow)),
			SpanID:        jaegerSpanID(uint64(ts.SpanId)),
			ParentID:      jaegerSpanID(uint64(ts.ParentSpanId)),
			Name:          ts.OperationName,
			Service:       base.Service,
			StartUnixNano: microsToNanos(ts.StartTime),
			SamplingRatio: samp.ratio(),
		}
		s.EndUnixNano = s.StartUnixNano + microsToNanos(ts.Duration)
		if ts.ParentSpanId == 0 {
			for _, r := range ts.References {
				if r != nil && r.TraceIdLow == ts.TraceIdLow && r.TraceIdHigh == ts.TraceIdHigh {
					s.ParentID = jaegerSpanID(uint64(r.SpanId))
					break
				}
			}
		}
		a := newSpanAttrs()
		for _, t := range ts.Tags {
			if t == nil {
				continue
			}
			switch {
			case t.VStr != nil:
				a.str(t.Key, *t.VStr)
			case t.VLong != nil:
				a.int(t.Key, *t.VLong)
			case t.VDouble != nil:
				a.float(t.Key, *t.VDouble)
			case t.VBool != nil:
				if t.Key == "error" && *t.VBool {
					a.err = true
				}
			}
		}
		d.clipPeer(&a.peer, st)
		a.fill(&s)
		dst = append(dst, s)
	}
	return dst
}

// microsToNanos converts, saturating instead of overflowing on absurd input.
func microsToNanos(us int64) int64 {
	const lim = math.MaxInt64 / 1000
	switch {
	case us > lim:
		return math.MaxInt64
	case us < -lim:
		return math.MinInt64
	}
	return us * 1000
}

func jaegerTraceID(hi, lo uint64) TraceID {
	var t TraceID
	binary.BigEndian.PutUint64(t[:8], hi)
	binary.BigEndian.PutUint64(t[8:], lo)
	return t
}

func jaegerSpanID(v uint64) SpanID {
	var s SpanID
	binary.BigEndian.PutUint64(s[:], v)
	return s
}

// zipkinSpan is a span of Zipkin's JSON v2 API.
type zipkinSpan struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	Timestamp      int64             `json:"timestamp"` // µs
	Duration       int64             `json:"duration"`  // µs
	Shared         bool              `json:"shared"`
	LocalEndpoint  *zipkinEndpoint   `json:"localEndpoint"`
	RemoteEndpoint *zipkinEndpoint   `json:"remoteEndpoint"`
	Tags           map[string]string `json:"tags"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
}

// AppendZipkinJSON decodes a Zipkin v2 JSON array of spans. Spans with bad
// IDs make the whole request invalid (the client must fix its encoder).
func (d *Decoder) AppendZipkinJSON(dst []Span, body []byte, st *DecodeStats) ([]Span, error) {
	var zs []zipkinSpan
	if err := json.Unmarshal(body, &zs); err != nil {
		return dst, fmt.Errorf("decode Zipkin JSON v2: %w", err)
	}
	for i := range zs {
		z := &zs[i]
		var s Span
		var err error
		if err = hexID(s.TraceID[:], z.TraceID, true); err == nil {
			err = hexID(s.SpanID[:], z.ID, false)
		}
		if err == nil && z.ParentID != "" {
			err = hexID(s.ParentID[:], z.ParentID, false)
		}
		if err != nil {
			return dst, fmt.Errorf("zipkin span %d (id %.32q): %w", i, z.ID, err)
		}
		var ra ResourceAttrs
		if z.LocalEndpoint != nil {
			ra.ServiceName = z.LocalEndpoint.ServiceName
		}
		if ra.ServiceName == "" {
			st.NoService++
		}
		a := newSpanAttrs()
		for k, v := range z.Tags {
			a.str(k, v)
		}
		if z.RemoteEndpoint != nil && a.peer.Service == "" {
			a.peer.Service = z.RemoteEndpoint.ServiceName
		}
		if a.peer.Address == "" && z.RemoteEndpoint != nil {
			a.peer.Address = z.RemoteEndpoint.IPv4
		}
		s.Service = d.node(&ra, st).Service
		s.Kind = ParseSpanKind(z.Kind)
		s.Name = z.Name
		s.StartUnixNano = microsToNanos(z.Timestamp)
		s.EndUnixNano = s.StartUnixNano + microsToNanos(z.Duration)
		if _, ok := z.Tags["error"]; ok {
			a.err = true // Zipkin marks failures by the presence of the tag
		}
		d.clipPeer(&a.peer, st)
		a.fill(&s)
		if z.Shared && s.Kind == KindServer {
			// The server half of a shared span: its parent is the client half's parent.
			s.ParentID = s.SpanID
		}
		dst = append(dst, s)
	}
	return dst, nil
}

// hexID decodes a Zipkin hex ID, right-aligned (64-bit trace IDs fill the low half).
func hexID(dst []byte, s string, trace bool) error {
	if len(s) == 0 || len(s) > 2*len(dst) || (!trace && len(s) > 16) {
		return fmt.Errorf("bad ID %.40q: want 1-%d hex digits", s, 2*len(dst))
	}
	if len(s)%2 == 1 {
		s = "0" + s
	}
	off := len(dst) - len(s)/2
	if _, err := hex.Decode(dst[off:], []byte(s)); err != nil {
		return fmt.Errorf("bad ID %.40q: %w", s, err)
	}
	return nil
}
