package metrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
)

// IngestOTLP ingests OTLP metrics (e.g. Istio or Linkerd series forwarded by an
// OpenTelemetry Collector's prometheus receiver) and returns the data points read.
func (c *Collector) IngestOTLP(md pmetric.Metrics) int {
	in := c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	in.beginLocked()
	var kb []byte
	n := 0
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		res := rm.Resource().Attributes()
		var resLabels []label
		res.Range(func(k string, v pcommon.Value) bool {
			resLabels = append(resLabels, label{promName(k), v.AsString()})
			return true
		})
		source := "otlp:" + labelValue(resLabels, "service_name") + "/" + labelValue(resLabels, "service_instance_id")
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				n += in.ingestOTLPMetricLocked(&kb, ms.At(k), resLabels, source)
			}
		}
	}
	obs := in.endLocked()
	c.deliverLocked(obs)
	c.otlpPoints.Add(float64(n))
	return n
}

func (in *ingester) ingestOTLPMetricLocked(kb *[]byte, m pmetric.Metric, res []label, source string) int {
	name := promName(m.Name())
	mk := func(attrs pcommon.Map, name, le string) []label {
		ls := make([]label, 0, attrs.Len()+len(res)+2)
		ls = append(ls, label{"__name__", name})
		attrs.Range(func(k string, v pcommon.Value) bool {
			ls = append(ls, label{promName(k), v.AsString()})
			return true
		})
		for _, r := range res {
			if !hasLabel(ls, r.Name) {
				ls = append(ls, r)
			}
		}
		if le != "" {
			ls = append(ls, label{"le", le})
		}
		return ls
	}
	n := 0
	number := func(dps pmetric.NumberDataPointSlice, name string, isDelta bool) {
		for i := 0; i < dps.Len(); i++ {
			dp := dps.At(i)
			n++
			if dp.Flags().NoRecordedValue() {
				continue
			}
			v := dp.DoubleValue()
			if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
				v = float64(dp.IntValue())
			}
			*kb = in.addLabelsLocked(*kb, mk(dp.Attributes(), name, ""), v, int64(dp.Timestamp())/1e6, source, isDelta)
		}
	}
	switch m.Type() {
	case pmetric.MetricTypeSum:
		s := m.Sum()
		if s.IsMonotonic() && !strings.HasSuffix(name, "_total") {
			// The collector's prometheus receiver may trim _total from counters.
			if mm := mapSeries(name+"_total", []label{{"direction", "outbound"}}); mm.known || mm.role != roleIgnore || strings.HasPrefix(name, "istio_") {
				name += "_total"
			}
		}
		number(s.DataPoints(), name, s.AggregationTemporality() == pmetric.AggregationTemporalityDelta)
	case pmetric.MetricTypeGauge:
		number(m.Gauge().DataPoints(), name, false)
	case pmetric.MetricTypeHistogram:
		h := m.Histogram()
		isDelta := h.AggregationTemporality() == pmetric.AggregationTemporalityDelta
		dps := h.DataPoints()
		for i := 0; i < dps.Len(); i++ {
			dp := dps.At(i)
			n++
			if dp.Flags().NoRecordedValue() {
				continue
			}
			ts := int64(dp.Timestamp()) / 1e6
			bounds, counts := dp.ExplicitBounds(), dp.BucketCounts()
			cum := 0.0
			for b := 0; b < counts.Len(); b++ {
				cum += float64(counts.At(b))
				le := "+Inf"
				if b < bounds.Len() {
					le = formatLE(bounds.At(b))
				}
				*kb = in.addLabelsLocked(*kb, mk(dp.Attributes(), name+"_bucket", le), cum, ts, source, isDelta)
			}
			if dp.HasSum() {
				*kb = in.addLabelsLocked(*kb, mk(dp.Attributes(), name+"_sum", ""), dp.Sum(), ts, source, isDelta)
			}
			*kb = in.addLabelsLocked(*kb, mk(dp.Attributes(), name+"_count", ""), float64(dp.Count()), ts, source, isDelta)
		}
	default:
		in.c.dropped[dropUnknown]++
	}
	return n
}

// promName maps an OTel attribute or metric name to a Prometheus name.
func promName(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9') {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	bs := []byte(s)
	for i, b := range bs {
		if !(b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9') {
			bs[i] = '_'
		}
	}
	return string(bs)
}

// OTLPHTTPHandler serves POST /v1/metrics (OTLP/HTTP, protobuf or JSON, optionally gzip).
func (c *Collector) OTLPHTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "OTLP takes POST", http.StatusMethodNotAllowed)
			return
		}
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		isJSON := mt == "application/json"
		if !isJSON && mt != "application/x-protobuf" {
			c.rejected("otlp_http", "content_type")
			http.Error(w, fmt.Sprintf("unsupported content type %q: want application/x-protobuf or application/json", mt), http.StatusUnsupportedMediaType)
			return
		}
		body, err := c.readBody(r)
		if err == nil {
			switch enc := r.Header.Get("Content-Encoding"); enc {
			case "", "identity":
			case "gzip":
				body, err = c.gunzip(body)
			default:
				c.rejected("otlp_http", "encoding")
				http.Error(w, fmt.Sprintf("unsupported content encoding %q", enc), http.StatusUnsupportedMediaType)
				return
			}
		}
		if err != nil {
			c.rejected("otlp_http", "body")
			status := http.StatusBadRequest
			if errors.Is(err, errTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), status)
			return
		}
		req := pmetricotlp.NewExportRequest()
		if isJSON {
			err = req.UnmarshalJSON(body)
		} else {
			err = req.UnmarshalProto(body)
		}
		if err != nil {
			c.rejected("otlp_http", "decode")
			http.Error(w, fmt.Sprintf("decode OTLP metrics request from %s: %v", r.RemoteAddr, err), http.StatusBadRequest)
			return
		}
		c.IngestOTLP(req.Metrics())
		resp := pmetricotlp.NewExportResponse()
		var out []byte
		if isJSON {
			out, err = resp.MarshalJSON()
		} else {
			out, err = resp.MarshalProto()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", mt)
		_, _ = w.Write(out)
	})
}

func (c *Collector) gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if int64(len(out)) > c.cfg.MaxBodyBytes {
		return nil, fmt.Errorf("%w: decompressed body exceeds %d bytes", errTooLarge, c.cfg.MaxBodyBytes)
	}
	return out, nil
}

type otlpServer struct {
	pmetricotlp.UnimplementedGRPCServer
	c *Collector
}

func (s *otlpServer) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	s.c.IngestOTLP(req.Metrics())
	return pmetricotlp.NewExportResponse(), nil
}

// RegisterGRPC registers the OTLP MetricsService on s.
func (c *Collector) RegisterGRPC(s *grpc.Server) {
	pmetricotlp.RegisterGRPCServer(s, &otlpServer{c: c})
}
