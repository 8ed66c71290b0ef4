package perf

import (
	"math"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/perf/benchmath"
)

// The HDR histogram the percentiles come from: 1 ns to 1 hour, 3
// significant digits (values up to 2048 ns are exact, larger ones within
// 0.1 %).
const (
	histLowestNS  = 1
	histHighestNS = int64(time.Hour)
	histSigFigs   = 3
)

// SignificanceAlpha is the level below which [Significance] calls a
// difference significant: benchstat's default.
const SignificanceAlpha = 0.05

// ComputeStats returns the timing statistics of raw samples (nanoseconds per
// iteration) for a scenario doing executes executes per iteration.
//
// The median, p95, p99 and p99.9 come from an HDR histogram
// (github.com/HdrHistogram/hdrhistogram-go) of the samples with 3
// significant digits over 1 ns .. 1 hour (samples outside are clamped into
// it). HDR's percentile q is the highest value equivalent to the sample of
// rank round(q·n) in ascending order (rank at least 1): the median of
// 1..100 is therefore 50, the lower middle, not 50.5. Samples above 2048 ns
// share histogram buckets, whose highest value can exceed the largest
// sample; percentiles are clamped to the sample's max so that p99.9 <= max.
//
// The mean, the sample standard deviation (n−1), min and max are exact,
// from the raw samples. CI95 is the 95 % confidence interval of the mean,
// mean ± t·sd/√n with t the two-sided 97.5 % quantile of Student's t for
// n−1 degrees of freedom. OpsPerSec is 1e9/mean and ExecutesPerSec is
// OpsPerSec·executes. The allocation fields are left zero: the memory pass
// of [Sample] fills them.
//
// No samples give the zero Stats; one sample gives a standard deviation of
// 0 and a confidence interval collapsed onto the mean.
func ComputeStats(raw []int64, executes int) Stats {
	n := len(raw)
	if n == 0 {
		return Stats{}
	}
	hist := hdrhistogram.New(histLowestNS, histHighestNS, histSigFigs)
	lo, hi := raw[0], raw[0]
	var sum float64
	for _, v := range raw {
		lo, hi = min(lo, v), max(hi, v)
		sum += float64(v)
		// Clamped into the histogram's range, so recording cannot fail.
		_ = hist.RecordValue(min(max(v, 0), histHighestNS))
	}
	mean := sum / float64(n)
	var sq float64
	for _, v := range raw {
		d := float64(v) - mean
		sq += d * d
	}
	var sd float64
	if n > 1 {
		sd = math.Sqrt(sq / float64(n-1))
	}
	half := 0.0
	if n > 1 {
		half = studentT975(n-1) * sd / math.Sqrt(float64(n))
	}
	pct := func(p float64) float64 {
		// ValueAtQuantile takes a percentile, 0..100, despite its name.
		return float64(min(hist.ValueAtQuantile(p), hi))
	}
	s := Stats{
		MeanNS:     mean,
		MedianNS:   pct(50),
		P95NS:      pct(95),
		P99NS:      pct(99),
		P999NS:     pct(99.9),
		StddevNS:   sd,
		MinNS:      float64(lo),
		MaxNS:      float64(hi),
		CI95LowNS:  mean - half,
		CI95HighNS: mean + half,
	}
	if mean > 0 {
		s.OpsPerSec = 1e9 / mean
		s.ExecutesPerSec = s.OpsPerSec * float64(executes)
	}
	return s
}

// tTable975 holds the two-sided 95 % critical values of Student's t,
// t(0.975; df), for df = 1..30 (index df−1).
var tTable975 = [...]float64{
	12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
	2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
	2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
}

// studentT975 returns t(0.975; df): from the table up to 30 degrees of
// freedom, above from the Cornish–Fisher expansion of t around the normal
// quantile z = 1.959964, which is within 1e-4 of the exact value there
// (2.04227 against 2.04227 at df = 30, 1.98422 at df = 99).
func studentT975(df int) float64 {
	if df < 1 {
		return math.NaN()
	}
	if df <= len(tTable975) {
		return tTable975[df-1]
	}
	const z = 1.959963984540054
	z3, z5, z7 := z*z*z, z*z*z*z*z, z*z*z*z*z*z*z
	g1 := (z3 + z) / 4
	g2 := (5*z5 + 16*z3 + 3*z) / 96
	g3 := (3*z7 + 19*z5 + 17*z3 - 15*z) / 384
	v := float64(df)
	return z + g1/v + g2/(v*v) + g3/(v*v*v)
}

// Significance compares two sets of interleaved batch means (nanoseconds per
// iteration) the way benchstat does: golang.org/x/perf/benchmath with
// AssumeNothing (a Mann–Whitney U test) at alpha [SignificanceAlpha]. It
// returns the p-value and whether the difference is significant, which, as
// in benchstat, is p <= alpha. With fewer than 2 values on either side the
// difference is not significant and p is 1. The inputs are not modified.
func Significance(base, variant []float64) (p float64, significant bool) {
	if len(base) < 2 || len(variant) < 2 {
		return 1, false
	}
	th := benchmath.DefaultThresholds
	th.CompareAlpha = SignificanceAlpha
	// NewSample sorts its values in place: hand it copies.
	s1 := benchmath.NewSample(slices.Clone(base), &th)
	s2 := benchmath.NewSample(slices.Clone(variant), &th)
	c := benchmath.AssumeNothing.Compare(s1, s2)
	if math.IsNaN(c.P) {
		return 1, false
	}
	return c.P, c.P <= c.Alpha
}

// Improvement returns the improvement of variant over base in percent,
// positive when the variant is better (lower): (base − variant)/base·100.
// A base of 0 has no relative scale: the improvement is then 0 when the
// variant is 0 too, and −100·variant otherwise (as if the base were one
// unit), so any cost where the base has none reads as a regression.
func Improvement(base, variant float64) float64 {
	if base == 0 {
		if variant == 0 {
			return 0
		}
		return -100 * variant
	}
	return (base - variant) / base * 100
}
