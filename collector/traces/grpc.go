package traces

import (
	"context"
	"fmt"
	"time"

	"github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// rawMsg carries a request or response as encoded bytes, so the handler
// decodes it itself and can answer InvalidArgument (gRPC's own decode
// failure is always Internal).
type rawMsg struct{ b []byte }

// rawCodec passes rawMsg through and delegates everything else (services
// other components register on the same server) to the registered proto codec.
type rawCodec struct{ delegate encoding.CodecV2 }

func newRawCodec() rawCodec { return rawCodec{delegate: encoding.GetCodecV2("proto")} }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawMsg); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return c.delegate.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawMsg); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.delegate.Unmarshal(data, v)
}

func (rawCodec) Name() string { return "proto" }

type rawHandler interface {
	handleRaw(ctx context.Context, method string, in *rawMsg) (*rawMsg, error)
}

func rawMethod(service, method string) grpc.MethodDesc {
	full := "/" + service + "/" + method
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(rawMsg)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(rawHandler).handleRaw(ctx, full, req.(*rawMsg))
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, h)
		},
	}
}

const (
	otlpTraceService = "opentelemetry.proto.collector.trace.v1.TraceService"
	jaegerCollector  = "jaeger.api_v2.CollectorService"
)

func registerOTLPTraces(s *grpc.Server, r *Receiver) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: otlpTraceService,
		HandlerType: (*rawHandler)(nil),
		Methods:     []grpc.MethodDesc{rawMethod(otlpTraceService, "Export")},
		Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
	}, r)
}

func registerJaeger(s *grpc.Server, r *Receiver) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: jaegerCollector,
		HandlerType: (*rawHandler)(nil),
		Methods:     []grpc.MethodDesc{rawMethod(jaegerCollector, "PostSpans")},
		Metadata:    "collector.proto",
	}, r)
}

// overloaded is OTLP's retryable refusal: Unavailable with a retry delay.
func overloaded() error {
	st := status.New(codes.Unavailable, "trace receiver overloaded, retry later")
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}); err == nil {
		st = d
	}
	return st.Err()
}

func (r *Receiver) handleRaw(ctx context.Context, method string, in *rawMsg) (*rawMsg, error) {
	recv := RecvOTLPGRPC
	if method == "/"+jaegerCollector+"/PostSpans" {
		recv = RecvJaegerGRPC
	}
	if !r.tryAcquire() {
		r.m.rejected.WithLabelValues(recv, "overload").Inc()
		return nil, overloaded()
	}
	defer r.release()
	buf := r.getSpans()
	defer r.putSpans(buf)
	var st DecodeStats
	if recv == RecvJaegerGRPC {
		var req api_v2.PostSpansRequest
		if err := req.Unmarshal(in.b); err != nil {
			r.m.rejected.WithLabelValues(recv, "malformed").Inc()
			return nil, status.Errorf(codes.InvalidArgument, "decode Jaeger PostSpansRequest (%d bytes): %v", len(in.b), err)
		}
		*buf = r.dec.AppendJaeger(*buf, &req.Batch, &st)
		r.ingest(recv, *buf, &st)
		out, err := (&api_v2.PostSpansResponse{}).Marshal()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode PostSpansResponse: %v", err)
		}
		return &rawMsg{b: out}, nil
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(in.b); err != nil {
		r.m.rejected.WithLabelValues(recv, "malformed").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "decode OTLP ExportTraceServiceRequest (%d bytes): %v", len(in.b), err)
	}
	*buf = r.dec.AppendOTLP(*buf, req.Traces(), &st)
	rejected := r.ingest(recv, *buf, &st)
	out, err := otlpResponse(rejected).MarshalProto()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode OTLP response: %v", err)
	}
	return &rawMsg{b: out}, nil
}

// otlpResponse reports rejected spans as OTLP partial success.
func otlpResponse(rejected int) ptraceotlp.ExportResponse {
	resp := ptraceotlp.NewExportResponse()
	if rejected > 0 {
		ps := resp.PartialSuccess()
		ps.SetRejectedSpans(int64(rejected))
		ps.SetErrorMessage(fmt.Sprintf("%d spans without a trace or span ID were rejected", rejected))
	}
	return resp
}
