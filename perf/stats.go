package perf

import (
	"math"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The HDR histogram the percentiles come from: 1 ns to 1 hour, 3
// significant digits (values up to 2048 ns are exact, larger ones within
// 0.1 %).
const (
	histLowestNS  = 1
	histHighestNS = int64(time.Hour)
	histSigFigs   = 3
)

// SignificanceAlpha is the level at or below which a paired comparison's
// p-value is significant ([Paired.Significant]): benchstat's default.
const SignificanceAlpha = 0.05

// ComputeStats returns the timing statistics of raw samples (nanoseconds per
// iteration) for a scenario doing executes executes per iteration.
//
// The median, p95, p99 (from 100 samples on, else nil) and p99.9 (from
// 1,000 on) come from an HDR histogram
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
		P99NS:      pctAtLeast(pct, 99, n, minSamplesP99),
		P999NS:     pctAtLeast(pct, 99.9, n, minSamplesP999),
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

// The fewest samples a tail percentile is given from: below, it would be
// the maximum or close to it, not a percentile.
const (
	minSamplesP99  = 100
	minSamplesP999 = 1000
)

// pctAtLeast returns percentile q of pct when there are at least min of
// the n samples, and nil otherwise.
func pctAtLeast(pct func(float64) float64, q float64, n, min int) *float64 {
	if n < min {
		return nil
	}
	v := pct(q)
	return &v
}

// histSigFigsStored is the precision of the histogram a report stores:
// 2 significant digits (buckets within 1 %) keep a result's histogram to
// a few hundred buckets; the percentiles are computed at 3.
const histSigFigsStored = 2

// histogram returns the non-empty buckets of an HDR histogram of raw
// (nanoseconds), 2 significant digits.
func histogram(raw []int64) []Bucket {
	if len(raw) == 0 {
		return nil
	}
	hist := hdrhistogram.New(histLowestNS, histHighestNS, histSigFigsStored)
	for _, v := range raw {
		_ = hist.RecordValue(min(max(v, 0), histHighestNS))
	}
	var out []Bucket
	for _, b := range hist.Distribution() {
		if b.Count > 0 {
			out = append(out, Bucket{UpperNS: b.To, Count: b.Count})
		}
	}
	return out
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

// Paired is a paired comparison of a variant with the baseline: pair j is
// the two subjects' mean time per iteration over the same stretch of
// interleaved rounds (group j of [Result.BatchMeans]), so drift of the
// machine hits both halves of a pair alike.
type Paired struct {
	// Pairs is the number of pairs compared.
	Pairs int `json:"pairs"`
	// MedianRatio is the median of the pairs' variant/baseline ratios:
	// below 1 the variant is faster.
	MedianRatio float64 `json:"median_ratio"`
	// RatioLow and RatioHigh bound MedianRatio's confidence interval: the
	// distribution-free interval between two order statistics of the
	// ratios, whose coverage is Confidence.
	RatioLow  float64 `json:"ratio_low"`
	RatioHigh float64 `json:"ratio_high"`
	// Confidence is the interval's exact coverage under the binomial law
	// of the order statistics: the least above 95 % the pair count allows,
	// or less with fewer than 6 pairs, where no interval reaches 95 %.
	Confidence float64 `json:"confidence"`
	// MeanRatio is the ratio of the variant's mean to the baseline's over
	// all pairs: a secondary figure, sensitive to outliers.
	MeanRatio float64 `json:"mean_ratio"`
	// P is the two-sided p-value of a Wilcoxon signed-rank test on the
	// logarithms of the ratios (exact below 26 pairs without ties, the
	// normal approximation with tie and continuity corrections above).
	P float64 `json:"p"`
}

// Improvement returns the headline change in percent, positive when the
// variant is faster: (1 − MedianRatio)·100, with its interval.
func (p Paired) Improvement() (pct, low, high float64) {
	return (1 - p.MedianRatio) * 100, (1 - p.RatioHigh) * 100, (1 - p.RatioLow) * 100
}

// Significant reports whether P is at most [SignificanceAlpha].
func (p Paired) Significant() bool { return p.Pairs > 0 && p.P <= SignificanceAlpha }

// ComparePaired compares paired per-group means: base[j] and variant[j]
// cover the same rounds. Pairs with a non-positive or non-finite value are
// left out. With no pair left it returns a zero Paired with P 1.
func ComparePaired(base, variant []float64) Paired {
	n := min(len(base), len(variant))
	ratios := make([]float64, 0, n)
	var sumB, sumV float64
	for j := range n {
		b, v := base[j], variant[j]
		if !(b > 0) || !(v > 0) || math.IsInf(b, 0) || math.IsInf(v, 0) {
			continue
		}
		ratios = append(ratios, v/b)
		sumB, sumV = sumB+b, sumV+v
	}
	if len(ratios) == 0 {
		return Paired{P: 1}
	}
	logs := make([]float64, len(ratios))
	for i, r := range ratios {
		logs[i] = math.Log(r)
	}
	slices.Sort(ratios)
	k, coverage := medianCIRank(len(ratios))
	return Paired{
		Pairs:       len(ratios),
		MedianRatio: median(ratios),
		RatioLow:    ratios[k-1],
		RatioHigh:   ratios[len(ratios)-k],
		Confidence:  coverage,
		MeanRatio:   sumV / sumB,
		P:           signedRankP(logs),
	}
}

// median returns the median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// medianCIRank returns the rank k (from 1) such that the k-th smallest and
// k-th largest of n values bound a confidence interval of their median
// with coverage 1 − 2·P(B ≤ k−1), B ~ Binomial(n, ½): the largest k whose
// coverage is at least 95 %, or 1 when none is.
func medianCIRank(n int) (k int, coverage float64) {
	tail := math.Pow(0.5, float64(n)) // P(B ≤ k−1), for k = 1
	k, coverage = 1, 1-2*tail
	for j := 1; j < (n+1)/2; j++ {
		tail += binomialHalf(n, j)
		c := 1 - 2*tail
		if c < 0.95 {
			break
		}
		k, coverage = j+1, c
	}
	return k, coverage
}

// binomialHalf returns P(B = j) for B ~ Binomial(n, ½).
func binomialHalf(n, j int) float64 {
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x + 1)); return v }
	return math.Exp(lg(n) - lg(j) - lg(n-j) - float64(n)*math.Ln2)
}

// signedRankExactMax is the largest pair count the exact distribution of
// the signed-rank statistic is computed for.
const signedRankExactMax = 25

// signedRankP returns the two-sided p-value of the Wilcoxon signed-rank
// test of d against a median of 0. Zeros are dropped; tied magnitudes get
// their average rank.
func signedRankP(d []float64) float64 {
	nz := make([]float64, 0, len(d))
	for _, x := range d {
		if x != 0 {
			nz = append(nz, x)
		}
	}
	n := len(nz)
	if n == 0 {
		return 1
	}
	slices.SortFunc(nz, func(a, b float64) int {
		switch a, b := math.Abs(a), math.Abs(b); {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
	var wPlus, tieTerm float64
	ties := false
	for i := 0; i < n; {
		j := i
		for j < n && math.Abs(nz[j]) == math.Abs(nz[i]) {
			j++
		}
		rank := float64(i+j+1) / 2 // the average of ranks i+1..j
		if t := float64(j - i); t > 1 {
			ties = true
			tieTerm += t*t*t - t
		}
		for _, x := range nz[i:j] {
			if x > 0 {
				wPlus += rank
			}
		}
		i = j
	}
	if n <= signedRankExactMax && !ties {
		return signedRankExact(n, int(wPlus))
	}
	nf := float64(n)
	mean := nf * (nf + 1) / 4
	sd := math.Sqrt(nf*(nf+1)*(2*nf+1)/24 - tieTerm/48)
	if sd == 0 {
		return 1
	}
	z := math.Max(math.Abs(wPlus-mean)-0.5, 0) / sd
	return math.Min(1, math.Erfc(z/math.Sqrt2))
}

// signedRankExact returns the exact two-sided p-value of a signed-rank
// statistic w over n pairs without ties: each of the 2^n sign assignments
// is equally likely under the null hypothesis.
func signedRankExact(n, w int) float64 {
	maxW := n * (n + 1) / 2
	counts := make([]float64, maxW+1) // counts[s]: sign assignments with W+ = s
	counts[0] = 1
	for r := 1; r <= n; r++ {
		for s := maxW; s >= r; s-- {
			counts[s] += counts[s-r]
		}
	}
	total := math.Pow(2, float64(n))
	var lo, hi float64 // P(W+ ≤ w), P(W+ ≥ w)
	for s, c := range counts {
		if s <= w {
			lo += c
		}
		if s >= w {
			hi += c
		}
	}
	return math.Min(1, 2*math.Min(lo, hi)/total)
}
