package graph

import (
	"runtime"
	"testing"
	"time"
)

func TestZZMemBreakdown(t *testing.T) {
	w := NewWorkload(1000, 10000, 2)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := New(Config{})
	g.Advance(w.Start)
	w.Fill(g, time.Hour, 1)
	runtime.GC()
	runtime.ReadMemStats(&after)
	var logLen, logCap, grpCap, nser, nrec, skb int
	var c counters
	for _, e := range g.edgeList {
		for _, s := range e.ch {
			if s == nil {
				continue
			}
			nser++
			logLen += len(s.log)
			logCap += cap(s.log)
			grpCap += cap(s.groups) * 8
			for i := range s.groups {
				r := recordReader{b: s.groupBytes(i)}
				for {
					b0, ok := r.next(&c)
					if !ok {
						break
					}
					if b0&rbSlot != rbRollup {
						nrec++
					}
					skb += len(c.sk)
				}
			}
		}
	}
	n := float64(len(g.edgeList))
	t.Logf("heap/edge %.0f  log len %.0f cap %.0f groups %.0f series %.2f recs %.0f sketchbytes %.0f", float64(after.HeapAlloc-before.HeapAlloc)/n,
		float64(logLen)/n, float64(logCap)/n, float64(grpCap)/n, float64(nser)/n, float64(nrec)/n, float64(skb)/n)
	runtime.KeepAlive(g)
}
