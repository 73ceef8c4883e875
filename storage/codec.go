package storage

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"

	"github.com/meshlens/meshlens/graph"
)

// Edge-bucket encoding (all varints): presence mask, the present counters in
// mask order, evidence maps, then the latency sketch. Zero fields cost nothing,
// which keeps quiet edges small on disk.
const (
	mL4 = 1 << (14 + iota)
	mCodes
	mGRPC
	mFlags
	mSketch
)

const codecVersion = 1

var errCodec = errors.New("corrupt edge bucket encoding")

func appendStats(b []byte, st *graph.Stats) []byte {
	vals := [14]uint64{st.Requests, st.Errors[0], st.Errors[1], st.Errors[2], st.Errors[3], st.Errors[4],
		st.RequestBytes, st.ResponseBytes, st.ConnOpened, st.ConnClosed, st.MTLSUnits, st.PlainUnits,
		uint64(st.Reporters), uint64(st.Signals)}
	var mask uint64
	for i, v := range vals {
		if v != 0 {
			mask |= 1 << i
		}
	}
	if st.L4Only {
		mask |= mL4
	}
	if len(st.Codes) > 0 {
		mask |= mCodes
	}
	if len(st.GRPCCodes) > 0 {
		mask |= mGRPC
	}
	if len(st.Flags) > 0 {
		mask |= mFlags
	}
	if st.Latency.Count() > 0 {
		mask |= mSketch
	}
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, mask)
	for _, v := range vals {
		if v != 0 {
			b = binary.AppendUvarint(b, v)
		}
	}
	b = appendCodes(b, mask&mCodes != 0, st.Codes)
	b = appendCodes(b, mask&mGRPC != 0, st.GRPCCodes)
	if mask&mFlags != 0 {
		flags := make(map[uint16]uint64, len(st.Flags))
		for name, n := range st.Flags {
			if f := graph.ParseFlags(name); f != 0 {
				flags[uint16(bits.TrailingZeros32(uint32(f)))] += n
			}
		}
		b = appendCodes(b, true, flags)
	}
	if mask&mSketch != 0 {
		b = st.Latency.AppendBinary(b)
	}
	return b
}

func appendCodes(b []byte, present bool, m map[uint16]uint64) []byte {
	if !present {
		return b
	}
	keys := make([]uint16, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic bytes for identical stats
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(k))
		b = binary.AppendUvarint(b, m[k])
	}
	return b
}

// mergeStats decodes b and adds it into st.
func mergeStats(b []byte, st *graph.Stats) error {
	if len(b) == 0 || b[0] != codecVersion {
		return errCodec
	}
	b = b[1:]
	mask, n := binary.Uvarint(b)
	if n <= 0 {
		return errCodec
	}
	b = b[n:]
	var vals [14]uint64
	for i := range vals {
		if mask&(1<<i) != 0 {
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return errCodec
			}
			b = b[n:]
			vals[i] = v
		}
	}
	st.Requests += vals[0]
	for i := range st.Errors {
		st.Errors[i] += vals[1+i]
	}
	st.RequestBytes += vals[6]
	st.ResponseBytes += vals[7]
	st.ConnOpened += vals[8]
	st.ConnClosed += vals[9]
	st.MTLSUnits += vals[10]
	st.PlainUnits += vals[11]
	st.Reporters |= uint16(vals[12])
	st.Signals |= graph.Signal(vals[13])
	st.L4Only = st.L4Only || mask&mL4 != 0
	var err error
	if mask&mCodes != 0 {
		if b, err = readCodes(b, func(k uint16, v uint64) {
			if st.Codes == nil {
				st.Codes = map[uint16]uint64{}
			}
			st.Codes[k] += v
		}); err != nil {
			return err
		}
	}
	if mask&mGRPC != 0 {
		if b, err = readCodes(b, func(k uint16, v uint64) {
			if st.GRPCCodes == nil {
				st.GRPCCodes = map[uint16]uint64{}
			}
			st.GRPCCodes[k] += v
		}); err != nil {
			return err
		}
	}
	if mask&mFlags != 0 {
		if b, err = readCodes(b, func(k uint16, v uint64) {
			if k >= 32 {
				return
			}
			if st.Flags == nil {
				st.Flags = map[string]uint64{}
			}
			st.Flags[graph.Flags(1<<k).String()] += v
		}); err != nil {
			return err
		}
	}
	if mask&mSketch != 0 {
		if _, err := st.Latency.MergeBinary(b); err != nil {
			return err
		}
	}
	return nil
}

func readCodes(b []byte, fn func(uint16, uint64)) ([]byte, error) {
	cnt, n := binary.Uvarint(b)
	if n <= 0 || cnt > uint64(len(b)) {
		return nil, errCodec
	}
	b = b[n:]
	for i := uint64(0); i < cnt; i++ {
		k, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errCodec
		}
		b = b[n:]
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errCodec
		}
		b = b[n:]
		fn(uint16(k), v)
	}
	return b, nil
}
