package traces

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/apache/thrift/lib/go/thrift"
	jaegerthrift "github.com/jaegertracing/jaeger-idl/thrift-gen/jaeger"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var errTooLarge = errors.New("request too large")

// readBody reads a request body, gunzipping it if needed, bounded by limit
// both before and after decompression.
func readBody(w http.ResponseWriter, req *http.Request, limit int) ([]byte, error) {
	body := http.MaxBytesReader(w, req.Body, int64(limit))
	var rd io.Reader = body
	switch req.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errTooLarge
			}
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", req.Header.Get("Content-Encoding"))
	}
	var buf bytes.Buffer
	if req.ContentLength > 0 && req.ContentLength <= int64(limit) {
		buf.Grow(int(req.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(rd, int64(limit)+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if n > int64(limit) {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

func mediaType(req *http.Request) string {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// writeOTLPError answers with a google.rpc.Status in the request's encoding, as OTLP/HTTP specifies.
func writeOTLPError(w http.ResponseWriter, asJSON bool, httpCode int, code codes.Code, msg string) {
	st := status.New(code, msg).Proto()
	var b []byte
	if asJSON {
		b, _ = protojson.Marshal(st)
		w.Header().Set("Content-Type", "application/json")
	} else {
		b, _ = proto.Marshal(st)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	if httpCode == http.StatusServiceUnavailable || httpCode == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(httpCode)
	w.Write(b)
}

func (r *Receiver) handleOTLPHTTP(w http.ResponseWriter, req *http.Request) {
	mt := mediaType(req)
	asJSON := mt == "application/json"
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeOTLPError(w, asJSON, http.StatusMethodNotAllowed, codes.Unimplemented, "use POST")
		return
	}
	if !asJSON && mt != "application/x-protobuf" && mt != "application/protobuf" {
		r.m.rejected.WithLabelValues(RecvOTLPHTTP, "unsupported").Inc()
		writeOTLPError(w, false, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported Content-Type %q: want application/x-protobuf or application/json", req.Header.Get("Content-Type")))
		return
	}
	if !r.tryAcquire() {
		r.m.rejected.WithLabelValues(RecvOTLPHTTP, "overload").Inc()
		writeOTLPError(w, asJSON, http.StatusServiceUnavailable, codes.Unavailable, "trace receiver overloaded, retry later")
		return
	}
	defer r.release()
	body, err := readBody(w, req, r.cfg.MaxRequestBytes)
	if err != nil {
		r.bodyError(w, RecvOTLPHTTP, err, func(code int, c codes.Code, msg string) { writeOTLPError(w, asJSON, code, c, msg) })
		return
	}
	ereq := ptraceotlp.NewExportRequest()
	if asJSON {
		err = ereq.UnmarshalJSON(body)
	} else {
		err = ereq.UnmarshalProto(body)
	}
	if err != nil {
		r.m.rejected.WithLabelValues(RecvOTLPHTTP, "malformed").Inc()
		writeOTLPError(w, asJSON, http.StatusBadRequest, codes.InvalidArgument,
			fmt.Sprintf("decode OTLP %s traces request from %s: %v", mt, req.RemoteAddr, err))
		return
	}
	buf := r.getSpans()
	defer r.putSpans(buf)
	var st DecodeStats
	*buf = r.dec.AppendOTLP(*buf, ereq.Traces(), &st)
	rejected := r.ingest(RecvOTLPHTTP, *buf, &st)
	resp := otlpResponse(rejected)
	var out []byte
	if asJSON {
		out, err = resp.MarshalJSON()
		w.Header().Set("Content-Type", "application/json")
	} else {
		out, err = resp.MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(out)
}

// bodyError maps a readBody failure to 413 or 400.
func (r *Receiver) bodyError(w http.ResponseWriter, recv string, err error, write func(int, codes.Code, string)) {
	if errors.Is(err, errTooLarge) {
		r.m.rejected.WithLabelValues(recv, "too_large").Inc()
		write(http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			"request larger than "+strconv.Itoa(r.cfg.MaxRequestBytes)+" bytes")
		return
	}
	r.m.rejected.WithLabelValues(recv, "malformed").Inc()
	write(http.StatusBadRequest, codes.InvalidArgument, err.Error())
}

func plainError(w http.ResponseWriter) func(int, codes.Code, string) {
	return func(code int, _ codes.Code, msg string) {
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, msg, code)
	}
}

// handleJaegerThrift serves Jaeger's collector endpoint: a Thrift
// (binary protocol) Batch per POST, answered 202 as Jaeger does.
func (r *Receiver) handleJaegerThrift(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	switch mediaType(req) {
	case "application/x-thrift", "application/vnd.apache.thrift.binary":
	default:
		r.m.rejected.WithLabelValues(RecvJaegerHTTP, "unsupported").Inc()
		http.Error(w, fmt.Sprintf("unsupported Content-Type %q: want application/x-thrift", req.Header.Get("Content-Type")), http.StatusBadRequest)
		return
	}
	if !r.tryAcquire() {
		r.m.rejected.WithLabelValues(RecvJaegerHTTP, "overload").Inc()
		plainError(w)(http.StatusServiceUnavailable, codes.Unavailable, "trace receiver overloaded, retry later")
		return
	}
	defer r.release()
	body, err := readBody(w, req, r.cfg.MaxRequestBytes)
	if err != nil {
		r.bodyError(w, RecvJaegerHTTP, err, plainError(w))
		return
	}
	batch, err := decodeThriftBatch(req.Context(), body, r.cfg.MaxRequestBytes)
	if err != nil {
		r.m.rejected.WithLabelValues(RecvJaegerHTTP, "malformed").Inc()
		http.Error(w, fmt.Sprintf("decode Jaeger Thrift batch from %s: %v", req.RemoteAddr, err), http.StatusBadRequest)
		return
	}
	buf := r.getSpans()
	defer r.putSpans(buf)
	var st DecodeStats
	*buf = r.dec.AppendJaegerThrift(*buf, batch, &st)
	r.ingest(RecvJaegerHTTP, *buf, &st)
	w.WriteHeader(http.StatusAccepted)
}

func decodeThriftBatch(ctx context.Context, body []byte, limit int) (*jaegerthrift.Batch, error) {
	tr := thrift.NewTMemoryBufferLen(len(body))
	tr.Write(body)
	p := thrift.NewTBinaryProtocolConf(tr, &thrift.TConfiguration{MaxMessageSize: int32(min(limit, 1<<30))})
	b := jaegerthrift.NewBatch()
	if err := b.Read(ctx, p); err != nil {
		return nil, err
	}
	return b, nil
}

// handleZipkin serves Zipkin's v2 JSON span endpoint (202 on success).
func (r *Receiver) handleZipkin(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	if mt := mediaType(req); mt != "application/json" && mt != "" {
		r.m.rejected.WithLabelValues(RecvZipkin, "unsupported").Inc()
		http.Error(w, fmt.Sprintf("unsupported Content-Type %q: want application/json (Zipkin v2)", mt), http.StatusUnsupportedMediaType)
		return
	}
	if !r.tryAcquire() {
		r.m.rejected.WithLabelValues(RecvZipkin, "overload").Inc()
		plainError(w)(http.StatusServiceUnavailable, codes.Unavailable, "trace receiver overloaded, retry later")
		return
	}
	defer r.release()
	body, err := readBody(w, req, r.cfg.MaxRequestBytes)
	if err != nil {
		r.bodyError(w, RecvZipkin, err, plainError(w))
		return
	}
	buf := r.getSpans()
	defer r.putSpans(buf)
	var st DecodeStats
	*buf, err = r.dec.AppendZipkinJSON(*buf, body, &st)
	if err != nil {
		r.m.rejected.WithLabelValues(RecvZipkin, "malformed").Inc()
		http.Error(w, fmt.Sprintf("from %s: %v", req.RemoteAddr, err), http.StatusBadRequest)
		return
	}
	r.ingest(RecvZipkin, *buf, &st)
	w.WriteHeader(http.StatusAccepted)
}
