package graph

import "time"

// IngestStats adds pre-aggregated statistics of the edge src->dst (one
// bucket's worth, at time t) as if they had been observed. Storage uses it to
// restore history after a restart and to replay stored history, so the
// evidence maps and latency sketch come back exactly. The stats go to the
// channel they came from: traces when only traces saw them, source-side
// metrics when only source-side reporters did, destination-side otherwise.
// Late and too-old rules apply as for Ingest once the clock has started.
func (g *Graph) IngestStats(t time.Time, src, dst Node, proto Protocol, st *Stats, principals []string) {
	if st == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	idx, ok := g.bucketIndex(t)
	if !ok {
		return
	}
	ns := t.UnixNano()
	e := g.edgeFor(g.normalize(src), g.normalize(dst), proto, ns)
	if ns < e.firstSeen {
		e.firstSeen = ns
	}
	if ns > e.lastSeen {
		e.lastSeen = ns
	}
	for _, p := range principals {
		e.addPrincipal(p)
	}
	g.openFor(e, statsChannel(st), idx).addStats(st)
}

const srcReporters = 1<<ReporterSource | 1<<ReporterProxy | 1<<ReporterClientSpan

func statsChannel(st *Stats) int {
	if st.Signals&SignalTraces != 0 && st.Signals&SignalMetrics == 0 {
		return chTraces
	}
	if st.Reporters != 0 && st.Reporters&^srcReporters == 0 {
		return chMetricsSrc
	}
	return chMetricsDst
}

func (b *openBucket) addStats(st *Stats) {
	b.requests += st.Requests
	for i, v := range st.Errors {
		b.errors[i] += v
	}
	b.reqBytes += st.RequestBytes
	b.respBytes += st.ResponseBytes
	b.connOpen += st.ConnOpened
	b.connClose += st.ConnClosed
	b.mtls += st.MTLSUnits
	b.plain += st.PlainUnits
	b.reporters |= st.Reporters
	b.signals |= st.Signals
	b.l4only = b.l4only || st.L4Only
	b.sk.Merge(&st.Latency)
	for c, n := range st.Codes {
		b.addEvidence(evCode, uint32(c), n)
	}
	for c, n := range st.GRPCCodes {
		b.addEvidence(evGRPC, uint32(c), n)
	}
	for name, n := range st.Flags {
		for i, fn := range flagNames {
			if fn == name {
				b.addEvidence(evFlag, uint32(i), n)
				break
			}
		}
	}
}

// RawEdges returns every edge with traffic in the window ending at at, with
// node identities exactly as ingested (no view projection) and the same
// channel choice as Snapshot. Storage records closed buckets with it, so a
// replay projects onto every view exactly as the live graph does.
func (g *Graph) RawEdges(at time.Time, window time.Duration) ([]EdgeSnapshot, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	from, to, err := g.rangeOf(Query{Window: window, At: at})
	if err != nil {
		return nil, err
	}
	lo := g.liveFrom(from)
	var out []EdgeSnapshot
	var wa winArena
	for _, e := range g.edgeList {
		var chs [numChannels]chAcc
		var have [numChannels]bool
		primary, secondary := -1, -1
		for i, s := range e.ch {
			if s == nil {
				continue
			}
			if have[i] = s.sum(lo, to, &chs[i], &g.lay, &wa); !have[i] {
				continue
			}
			if primary < 0 {
				primary = i
			} else if i == chMetricsSrc {
				secondary = i
			}
		}
		if primary < 0 {
			continue
		}
		es := EdgeSnapshot{Source: e.key.src.node, Target: e.key.dst.node, Protocol: e.key.proto,
			Stats: chs[primary].st, Principals: append([]string(nil), e.principals...),
			FirstSeen: time.Unix(0, e.firstSeen), LastSeen: time.Unix(0, e.lastSeen)}
		chs[primary].addEvidenceTo(&es.Stats)
		for i := range have {
			if have[i] {
				es.Stats.Signals |= chs[i].st.Signals
				es.Stats.Reporters |= chs[i].st.Reporters
			}
		}
		if secondary >= 0 {
			sr := chs[secondary].st
			chs[secondary].addEvidenceTo(&sr)
			es.SourceReported = &sr
		}
		out = append(out, es)
	}
	return out, nil
}
