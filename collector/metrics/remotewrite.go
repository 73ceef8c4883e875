package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/golang/snappy"
)

// errBadRequest marks problems with what a client sent (4xx), as opposed to
// problems on our side.
var errBadRequest = errors.New("bad request")

// remote-write 1.0 (prometheus.WriteRequest) field numbers.
const (
	fieldWriteTimeseries = 1
	fieldTSLabels        = 1
	fieldTSSamples       = 2
	fieldTSHistograms    = 4
	fieldLabelName       = 1
	fieldLabelValue      = 2
	fieldSampleValue     = 1
	fieldSampleTimestamp = 2
)

var errTruncated = errors.New("truncated protobuf")

// protoField reads one field header and its payload. For length-delimited
// fields it returns the payload; for varint and fixed64 fields the value in v.
func protoField(b []byte) (field int, wire int, payload []byte, v uint64, rest []byte, err error) {
	tag, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, 0, nil, errTruncated
	}
	b = b[n:]
	field, wire = int(tag>>3), int(tag&7)
	if field == 0 {
		return 0, 0, nil, 0, nil, errors.New("protobuf field number 0")
	}
	switch wire {
	case 0:
		v, n = binary.Uvarint(b)
		if n <= 0 {
			return 0, 0, nil, 0, nil, errTruncated
		}
		return field, wire, nil, v, b[n:], nil
	case 1:
		if len(b) < 8 {
			return 0, 0, nil, 0, nil, errTruncated
		}
		return field, wire, nil, binary.LittleEndian.Uint64(b), b[8:], nil
	case 2:
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return 0, 0, nil, 0, nil, errTruncated
		}
		b = b[n:]
		return field, wire, b[:l], 0, b[l:], nil
	case 5:
		if len(b) < 4 {
			return 0, 0, nil, 0, nil, errTruncated
		}
		return field, wire, nil, uint64(binary.LittleEndian.Uint32(b)), b[4:], nil
	}
	return 0, 0, nil, 0, nil, fmt.Errorf("protobuf wire type %d", wire)
}

// rwDecoder walks a remote-write request without building it: each series'
// labels are hashed as the bytes they arrived in and only decoded into
// strings the first time the series is seen. This is what keeps ingest close
// to the cost of decoding alone.
type rwDecoder struct {
	keyBuf []byte
	labels []label
}

// ingestWriteRequest ingests a decoded (snappy-free) remote-write 1.0 body.
// Series before a malformed one are kept; the error names the series index.
func (in *ingester) ingestWriteRequestLocked(d *rwDecoder, buf []byte) (samples int, err error) {
	idx, total := 0, len(buf)
	for len(buf) > 0 {
		field, wire, payload, _, rest, err := protoField(buf)
		if err != nil {
			return samples, fmt.Errorf("timeseries %d at byte %d: %w", idx, total-len(buf), err)
		}
		buf = rest
		if field != fieldWriteTimeseries || wire != 2 {
			continue // metadata and unknown fields
		}
		n, err := in.ingestTimeSeriesLocked(d, payload)
		samples += n
		if err != nil {
			return samples, fmt.Errorf("timeseries %d: %w", idx, err)
		}
		idx++
	}
	return samples, nil
}

func (in *ingester) ingestTimeSeriesLocked(d *rwDecoder, ts []byte) (int, error) {
	// One pass: find the labels' bytes (normally one contiguous run) and the
	// samples. Labels (field 1) and samples (field 2) are length-delimited
	// with one-byte tags, which the fast path reads inline.
	start, end := -1, -1
	contiguous := true
	nativeHist := false
	var smp [4][]byte
	ns := 0
	for i := 0; i < len(ts); {
		if tag := ts[i]; tag == 0x0a || tag == 0x12 {
			l, n := binary.Uvarint(ts[i+1:])
			if n <= 0 || l > uint64(len(ts)-i-1-n) {
				return 0, errTruncated
			}
			p := i + 1 + n
			q := p + int(l)
			if tag == 0x0a {
				if start < 0 {
					start = i
				} else if end != i {
					contiguous = false
				}
				end = q
			} else {
				if ns < len(smp) {
					smp[ns] = ts[p:q]
				}
				ns++
			}
			i = q
			continue
		}
		field, _, _, _, rest, err := protoField(ts[i:])
		if err != nil {
			return 0, err
		}
		if field == fieldTSHistograms {
			nativeHist = true
		}
		i = len(ts) - len(rest)
	}
	if start < 0 {
		return 0, errors.New("series without labels")
	}
	if nativeHist {
		in.c.dropped[dropNative]++
	}
	var key []byte
	if contiguous {
		key = ts[start:end]
	} else {
		d.keyBuf = d.keyBuf[:0]
		for b := ts; len(b) > 0; {
			off := len(ts) - len(b)
			field, wire, _, _, rest, _ := protoField(b)
			if field == fieldTSLabels && wire == 2 {
				d.keyBuf = append(d.keyBuf, ts[off:len(ts)-len(rest)]...)
			}
			b = rest
		}
		key = d.keyBuf
	}
	if ns > len(smp) {
		// Many samples in one series (a backlog): collect them all.
		all := make([][]byte, 0, ns)
		for b := ts; len(b) > 0; {
			field, wire, payload, _, rest, _ := protoField(b)
			if field == fieldTSSamples && wire == 2 {
				all = append(all, payload)
			}
			b = rest
		}
		return in.ingestSamplesLocked(d, ts, key, all)
	}
	return in.ingestSamplesLocked(d, ts, key, smp[:ns])
}

func (in *ingester) ingestSamplesLocked(d *rwDecoder, ts, key []byte, samples [][]byte) (int, error) {
	h := in.hash(key)
	s := in.lookupLocked(h, key)
	n := 0
	for _, payload := range samples {
		v, t, err := decodeSample(payload)
		if err != nil {
			return n, err
		}
		n++
		if s == nil {
			ls, err := d.decodeLabels(ts)
			if err != nil {
				return n, err
			}
			if s = in.createLocked(h, key, ls, rwSource(ls), t); s == nil {
				return n, nil
			}
		}
		if math.Float64bits(v) == staleNaN {
			continue // staleness marker: the series ended
		}
		in.observeLocked(s, v, t, false)
	}
	return n, nil
}

// staleNaN is Prometheus' staleness marker.
const staleNaN = 0x7ff0000000000002

func decodeSample(b []byte) (v float64, ts int64, err error) {
	for len(b) > 0 {
		field, wire, _, x, rest, err := protoField(b)
		if err != nil {
			return 0, 0, fmt.Errorf("sample: %w", err)
		}
		switch {
		case field == fieldSampleValue && wire == 1:
			v = math.Float64frombits(x)
		case field == fieldSampleTimestamp && wire == 0:
			ts = int64(x)
		}
		b = rest
	}
	return v, ts, nil
}

func (d *rwDecoder) decodeLabels(ts []byte) ([]label, error) {
	ls := make([]label, 0, 24)
	for b := ts; len(b) > 0; {
		field, wire, payload, _, rest, err := protoField(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if field != fieldTSLabels || wire != 2 {
			continue
		}
		var l label
		for p := payload; len(p) > 0; {
			f, w, val, _, r, err := protoField(p)
			if err != nil {
				return nil, fmt.Errorf("label: %w", err)
			}
			p = r
			if w != 2 {
				continue
			}
			switch f {
			case fieldLabelName:
				l.Name = string(val)
			case fieldLabelValue:
				l.Value = string(val)
			}
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// rwSource names the scrape target a pushed series came from.
func rwSource(ls []label) string {
	return "rw:" + labelValue(ls, "job") + "/" + labelValue(ls, "instance")
}

// RemoteWriteHandler serves POST /api/v1/write (Prometheus remote-write 1.0:
// snappy-compressed protobuf WriteRequest).
func (c *Collector) RemoteWriteHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "remote write takes POST", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/x-protobuf") {
			c.rejected("remote_write", "content_type")
			http.Error(w, fmt.Sprintf("unsupported content type %q: want application/x-protobuf", ct), http.StatusUnsupportedMediaType)
			return
		}
		if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "io.prometheus.write.v2") {
			c.rejected("remote_write", "version")
			http.Error(w, "remote-write 2.0 is not supported; send 1.0 (prometheus.WriteRequest)", http.StatusUnsupportedMediaType)
			return
		}
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "snappy" {
			c.rejected("remote_write", "encoding")
			http.Error(w, fmt.Sprintf("unsupported content encoding %q: want snappy", enc), http.StatusUnsupportedMediaType)
			return
		}
		body, err := c.readBody(r)
		if err != nil {
			c.rejected("remote_write", "body")
			status := http.StatusBadRequest
			if errors.Is(err, errTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), status)
			return
		}
		n, err := c.IngestRemoteWrite(body)
		if err != nil {
			c.rejected("remote_write", "decode")
			c.log.Warn("remote write rejected", "remote", r.RemoteAddr, "samples_kept", n, "err", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// IngestRemoteWrite ingests one snappy-compressed remote-write 1.0 body and
// returns the samples read. On a malformed body the series read before the
// fault are kept and the error is returned.
func (c *Collector) IngestRemoteWrite(compressed []byte) (int, error) {
	dl, err := snappy.DecodedLen(compressed)
	if err != nil {
		return 0, fmt.Errorf("%w: snappy: %v", errBadRequest, err)
	}
	if int64(dl) > c.cfg.MaxBodyBytes {
		return 0, fmt.Errorf("%w: %w: decoded body of %d bytes exceeds %d", errBadRequest, errTooLarge, dl, c.cfg.MaxBodyBytes)
	}
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	buf, err := snappy.Decode((*bp)[:cap(*bp)], compressed)
	if err != nil {
		return 0, fmt.Errorf("%w: snappy: %v", errBadRequest, err)
	}
	*bp = buf[:0]
	c.rwRequests.Inc()
	in := c.in
	in.mu.Lock()
	in.beginLocked()
	n, derr := in.ingestWriteRequestLocked(&c.rwDec, buf)
	obs := in.endLocked()
	c.deliverLocked(obs)
	in.mu.Unlock()
	c.rwSamples.Add(float64(n))
	if derr != nil {
		return n, fmt.Errorf("%w: decode write request: %v", errBadRequest, derr)
	}
	return n, nil
}
