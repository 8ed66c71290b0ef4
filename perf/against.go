package perf

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"slices"
)

// LoadReport reads the JSON report stored at path ([ReadJSON]).
func LoadReport(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	r, err := ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// againstBudgetPct is how much slower the baseline may be than in the
// reference run before CheckAgainst fails it. Runs are not interleaved
// with each other, so the machine's drift between them is in the figure:
// the budget is wider than the paired gates' 3 %.
const againstBudgetPct = 10.0

// bootstrapResamples is the number of resamples of CheckAgainst's interval.
const bootstrapResamples = 2000

// CheckAgainst compares the baseline of run cur with the baseline of an
// earlier run ref of the same suite, scenario by scenario, to catch a
// regression of the executor itself between commits:
//
//   - time, when both runs were measured on the same kind of machine (CPU
//     model and count) and carry batch means (schema 2): the ratio of the
//     medians of the batch means, with a 95 % percentile-bootstrap
//     interval; it fails when the whole interval lies beyond 10 % slower;
//   - allocations and bytes per iteration: it fails when the median of
//     cur's memory passes is over 3 % above ref's and the difference
//     exceeds ref's own pass-to-pass range.
//
// Scenarios only one run has are skipped; a reference that shares none
// with cur fails, as a check that compared nothing.
func CheckAgainst(cur, ref *Report) []GateFailure {
	if cur.Suite != ref.Suite {
		return []GateFailure{{Variant: VariantBaseline, Reason: fmt.Sprintf("the reference run is of the %s suite, this one of %s", ref.Suite, cur.Suite)}}
	}
	sameMachine := cur.Machine.CPUModel == ref.Machine.CPUModel && cur.Machine.CPUs == ref.Machine.CPUs
	var fails []GateFailure
	compared := 0
	for _, now := range cur.Results {
		if now.Variant != VariantBaseline {
			continue
		}
		i := slices.IndexFunc(ref.Results, func(r Result) bool { return r.Variant == VariantBaseline && r.Scenario == now.Scenario })
		if i < 0 {
			continue
		}
		then := ref.Results[i]
		compared++
		if sameMachine && len(now.BatchMeans) >= 5 && len(then.BatchMeans) >= 5 {
			ratio, lo, _ := medianRatioInterval(then.BatchMeans, now.BatchMeans, now.Scenario)
			if lo > 1+againstBudgetPct/100 {
				fails = append(fails, GateFailure{now.Scenario, VariantBaseline, fmt.Sprintf(
					"slower than the reference run beyond the %.0f%% budget: %+.1f%% (interval from %+.1f%%)",
					againstBudgetPct, (ratio-1)*100, (lo-1)*100)})
			}
		}
		for _, m := range []struct {
			metric     string
			now, then  float64
			thenPasses []float64
			nowPasses  []float64
			what       string
		}{
			{MetricAllocsPerOp, now.Stats.AllocsPerOp, then.Stats.AllocsPerOp, then.AllocsPasses, now.AllocsPasses, "allocates more"},
			{MetricBytesPerOp, now.Stats.BytesPerOp, then.Stats.BytesPerOp, then.BytesPasses, now.BytesPasses, "uses more memory"},
		} {
			c := Comparison{Metric: m.metric}
			allocCompare(&c, m.then, m.now, m.thenPasses, m.nowPasses)
			if c.Significant && c.ImprovementPct < -overheadBudgetPct {
				fails = append(fails, GateFailure{now.Scenario, VariantBaseline, fmt.Sprintf(
					"%s than in the reference run: %.1f against %.1f %s", m.what, m.now, m.then, m.metric)})
			}
		}
	}
	if compared == 0 {
		fails = append(fails, GateFailure{Variant: VariantBaseline, Reason: "the reference run has a baseline result for no scenario of this run: nothing was compared"})
	}
	return fails
}

// medianRatioInterval returns median(now)/median(then) and its 95 %
// percentile-bootstrap interval; seed makes the resampling deterministic.
func medianRatioInterval(then, now []float64, seed string) (ratio, lo, hi float64) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))
	ratio = median(sortedCopy(now)) / median(sortedCopy(then))
	ratios := make([]float64, bootstrapResamples)
	a, b := make([]float64, len(then)), make([]float64, len(now))
	for k := range ratios {
		for i := range a {
			a[i] = then[rng.IntN(len(then))]
		}
		for i := range b {
			b[i] = now[rng.IntN(len(now))]
		}
		slices.Sort(a)
		slices.Sort(b)
		ratios[k] = median(b) / median(a)
	}
	slices.Sort(ratios)
	return ratio, ratios[bootstrapResamples*25/1000], ratios[bootstrapResamples*975/1000-1]
}
