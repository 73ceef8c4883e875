package detect

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/stat"
)

// madScale turns a MAD into a standard deviation for normal data.
const madScale = 1.4826

// medianMAD returns the median and the scaled MAD of the finite values in xs,
// using buf as scratch. n is how many finite values there were.
func medianMAD(xs []float32, skip func(i int) bool, buf []float64) (med, mad float64, n int, _ []float64) {
	buf = buf[:0]
	for i, x := range xs {
		v := float64(x)
		if math.IsNaN(v) || math.IsInf(v, 0) || (skip != nil && skip(i)) {
			continue
		}
		buf = append(buf, v)
	}
	n = len(buf)
	if n == 0 {
		return 0, 0, 0, buf
	}
	slices.Sort(buf)
	med = stat.Quantile(0.5, stat.Empirical, buf, nil)
	for i, v := range buf {
		buf[i] = math.Abs(v - med)
	}
	slices.Sort(buf)
	mad = stat.Quantile(0.5, stat.Empirical, buf, nil) * madScale
	return med, mad, n, buf
}

// binomTail is P(X >= k) for X ~ Binomial(n, p).
func binomTail(k, n uint64, p float64) float64 {
	if k == 0 {
		return 1
	}
	if k > n {
		return 0
	}
	if p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1
	}
	v := mathext.RegIncBeta(float64(k), float64(n-k+1), p)
	if math.IsNaN(v) {
		return 1
	}
	return v
}

// poissonUpper is P(X >= k) for X ~ Poisson(lambda).
func poissonUpper(k uint64, lambda float64) float64 {
	if k == 0 {
		return 1
	}
	if lambda <= 0 {
		return 0
	}
	v := mathext.GammaIncReg(float64(k), lambda)
	if math.IsNaN(v) {
		return 1
	}
	return v
}

// poissonLower is P(X <= k) for X ~ Poisson(lambda).
func poissonLower(k uint64, lambda float64) float64 {
	if lambda <= 0 {
		return 1
	}
	v := mathext.GammaIncRegComp(float64(k)+1, lambda)
	if math.IsNaN(v) {
		return 1
	}
	return v
}

// pScore turns a p-value into a score (-log10 p), capped at 100.
func pScore(p float64) float64 {
	if p <= 1e-100 {
		return 100
	}
	if p >= 1 {
		return 0
	}
	return -math.Log10(p)
}

func capScore(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return math.Min(v, 100)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// BinomialScore is -log10 P(X >= k) for X ~ Binomial(n, p), capped at 100.
func BinomialScore(k, n uint64, p float64) float64 { return pScore(binomTail(k, n, p)) }
