package nezha

import (
	"fmt"
	"strconv"
	"strings"
)

// SuiteRow sums one synthetic fault kind over several seeds. A fault is
// "later" when the fault before it was on the same service: the detector
// then learned its baseline through an earlier injection, which is how the
// dataset schedules faults and where learning mistakes show.
type SuiteRow struct {
	Spec              string
	Seeds             int
	All, First, Later Totals
}

// RunSuite evaluates every synthetic spec under every seed on each loaded
// day with cfg, and sums the results per spec. specs are "KIND:SIZE" as
// ParseSynthetic reads them.
func RunSuite(days []*Loaded, specs []string, seeds []uint64, perFault bool, cfg EvalConfig) ([]SuiteRow, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("synthetic suite: no seeds")
	}
	var out []SuiteRow
	for _, s := range specs {
		row := SuiteRow{Spec: s, Seeds: len(seeds)}
		for _, seed := range seeds {
			sp, err := ParseSynthetic(s, seed)
			if err != nil {
				return nil, err
			}
			sp.PerFault = perFault
			for _, l := range days {
				r, err := EvalDay(Synthesize(l, sp), cfg)
				if err != nil {
					return nil, fmt.Errorf("synthetic %s seed %d: %w", s, seed, err)
				}
				prev := ""
				for i := range r.Faults {
					f := &r.Faults[i]
					row.All.Add(f)
					if f.Service == prev {
						row.Later.Add(f)
					} else {
						row.First.Add(f)
					}
					prev = f.Service
				}
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// WriteSuite prints RunSuite's rows and one "synthetic KIND top1=X top3=Y"
// line per spec.
func WriteSuite(w interface{ Write([]byte) (int, error) }, signals string, rows []SuiteRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "synthetic faults on the real traces (signals=%s), summed over seeds\n", signals)
	fmt.Fprintf(&b, "%-24s %5s %6s %11s %11s %8s %16s %16s\n", "fault", "seeds", "faults", "top1", "top3", "detect", "first top1/top3", "later top1/top3")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-24s %5d %6d %11.3f %11.3f %8.3f %8.3f / %.3f %8.3f / %.3f\n", r.Spec, r.Seeds, r.All.N,
			r.All.Top1Frac(), r.All.Top3Frac(), r.All.DetectFrac(),
			r.First.Top1Frac(), r.First.Top3Frac(), r.Later.Top1Frac(), r.Later.Top3Frac())
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "synthetic %s top1=%.3f top3=%.3f detect=%.3f (%d faults over %d seeds)\n", r.Spec, r.All.Top1Frac(), r.All.Top3Frac(), r.All.DetectFrac(), r.All.N, r.Seeds)
	}
	_, _ = w.Write([]byte(b.String()))
}

// ParseSeeds reads "5" (seeds 1 to 5), "3-7" or "1,4,9".
func ParseSeeds(s string) ([]uint64, error) {
	bad := func() ([]uint64, error) {
		return nil, fmt.Errorf("seeds %q: want N (1..N), A-B or a comma list", s)
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := strconv.ParseUint(lo, 10, 64)
		z, err2 := strconv.ParseUint(hi, 10, 64)
		if err1 != nil || err2 != nil || a > z || z-a >= 1000 {
			return bad()
		}
		var out []uint64
		for v := a; v <= z; v++ {
			out = append(out, v)
		}
		return out, nil
	}
	if strings.Contains(s, ",") {
		var out []uint64
		for _, p := range strings.Split(s, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(p), 10, 64)
			if err != nil {
				return bad()
			}
			out = append(out, v)
		}
		return out, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > 1000 {
		return bad()
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out, nil
}
