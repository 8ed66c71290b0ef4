package perf

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caudal-go/caudal/optimize"
)

// Options configure a suite run.
type Options struct {
	// Suite is seed, designed or matrix.
	Suite string
	// Variants are compared with the baseline, which is always measured.
	// Empty means "optimized". On the matrix suite the variants of
	// [MatrixVariants] are measured whatever this says. With auto asked
	// for on a suite other than seed, every targeted workload's component
	// is measured too, as auto's reference ([RunConfig.References]).
	Variants []string
	// Quick shortens sampling so the whole seed suite runs in well under a
	// minute (for CI); figures are noisier.
	Quick bool
	// TimePerScenario is the timed budget of one scenario, all variants
	// together. Zero means 2 s, or 1 s with Quick.
	TimePerScenario time.Duration
	// Progress, if set, receives the scenario, the fraction done of it and
	// a phase; never during a memory pass.
	Progress func(scenario string, done float64, phase string)
	// GitCommit is recorded in the report; empty means "ask git".
	GitCommit string
}

// negativeControlHistories are the naive variant's history sizes reported.
var negativeControlHistories = []int{0, 100, 1000}

// Run measures one suite and returns its report. The baseline is always
// measured; asking for the baseline itself measures it a second time as
// [VariantAA], the A/A control. Requested variants that do not exist yet
// are listed in NotBuilt and Config.Requested, never measured ([Check]
// fails on them). Auto on the designed suite brings the components it is
// judged against (see [Options].Variants). Errors: an unknown suite or
// variant, a workload that fails, ctx cancelled.
func Run(ctx context.Context, opts Options) (*Report, error) {
	scenarios, err := Suites(opts.Suite)
	if err != nil {
		return nil, err
	}
	lineup, err := planVariants(opts, scenarios)
	if err != nil {
		return nil, err
	}
	variants, notBuilt, requested, references := lineup.variants, lineup.notBuilt, lineup.requested, lineup.references

	cfg := sampleConfig(opts)
	rep := &Report{
		SchemaVersion: SchemaVersion,
		Suite:         opts.Suite,
		StartedAt:     time.Now().UTC().Truncate(time.Second),
		GitCommit:     opts.GitCommit,
		Machine:       machineFacts(),
		NotBuilt:      notBuilt,
		Config: RunConfig{
			Quick: opts.Quick, TimePerScenario: cfg.Duration, MinBatchNS: int64(cfg.MinBatch), Requested: requested,
			WarmupNS: int64(cfg.Warmup), MinRounds: cfg.MinRounds, MinSamples: cfg.MinSamples,
			CalibrationRuns: cfg.CalibrationRuns, MemPasses: cfg.MemPasses, MemMinIters: cfg.MemMinIterations,
			TailBudgetNS: int64(cfg.TailBudget), Groups: cfg.Groups, References: references,
		},
	}
	rep.Machine.Load.Load1Start, rep.Machine.Load.CPUPressureStart = loadNow()
	if rep.GitCommit == "" {
		rep.GitCommit = gitCommit()
	}
	for _, v := range variants {
		rep.Config.Variants = append(rep.Config.Variants, v.Name)
	}

	for _, sc := range scenarios {
		results, err := measure(ctx, sc, variants, cfg, opts.Progress)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, results...)
		rep.Comparisons = append(rep.Comparisons, compare(opts.Suite, sc, results)...)
	}
	if slices.ContainsFunc(variants, func(v Variant) bool { return v.Name == VariantNaive }) && opts.Suite == SuiteSeed {
		points, err := negativeControl(ctx, scenarios[0], cfg, opts.Progress)
		if err != nil {
			return nil, err
		}
		rep.NegativeControl = points
	}
	rep.Machine.Load.Load1End, rep.Machine.Load.CPUPressureEnd = loadNow()
	rep.Machine.Load.Warning = loadWarning(rep.Machine.Load, rep.Machine.CPUs)
	return rep, nil
}

// lineup is what a run measures: the variants, the baseline first, and
// the names a report lists.
type lineup struct {
	variants                        []Variant
	notBuilt, requested, references []string
}

// planVariants decides what a run of opts over scenarios measures: the
// matrix's variants or the requested ones (default optimized), the
// baseline asked for as the A/A control, and — when auto is asked for on
// a suite other than seed — every targeted workload's component as its
// reference. Errors: an unknown variant.
func planVariants(opts Options, scenarios []Scenario) (lineup, error) {
	names := opts.Variants
	if opts.Suite == SuiteMatrix {
		names = MatrixVariants()
	} else if len(names) == 0 {
		names = []string{"optimized"}
	}
	variants := []Variant{Baseline()}
	var notBuilt, requested, references []string
	add := func(name string) error {
		v, built, err := LookupVariant(name)
		if err != nil {
			return err
		}
		switch {
		case !built:
			if !slices.Contains(notBuilt, name) {
				notBuilt = append(notBuilt, name)
			}
		case !slices.ContainsFunc(variants, func(x Variant) bool { return x.Name == name }):
			variants = append(variants, v)
		}
		return nil
	}
	for _, name := range names {
		if name == VariantBaseline {
			name = VariantAA
		}
		if !slices.Contains(requested, name) {
			requested = append(requested, name)
		}
		if err := add(name); err != nil {
			return lineup{}, err
		}
	}
	// The automatic optimization is judged against the hand-picked
	// component of every targeted workload, measured in the same run.
	if opts.Suite != SuiteSeed && slices.ContainsFunc(names, isAuto) {
		for _, c := range referenceComponents(scenarios) {
			if slices.ContainsFunc(variants, func(x Variant) bool { return x.Name == c }) {
				continue
			}
			if err := add(c); err != nil {
				return lineup{}, err
			}
			references = append(references, c)
		}
	}
	// Every component that does not exist yet is listed too.
	for _, c := range componentNames {
		if _, built, _ := LookupVariant(c); !built && !slices.Contains(notBuilt, c) {
			notBuilt = append(notBuilt, c)
		}
	}
	if opts.Suite == SuiteMatrix {
		requested = nil // the matrix measures what exists: nothing was asked for by name
	}

	return lineup{variants, notBuilt, requested, references}, nil
}

func sampleConfig(opts Options) SampleConfig {
	cfg := SampleConfig{Duration: opts.TimePerScenario, Warmup: 100 * time.Millisecond, MinBatch: 10 * time.Microsecond, MinRounds: 20, MinSamples: 200}
	if opts.Quick {
		cfg.Warmup = 30 * time.Millisecond
		cfg.MinSamples = 100
		cfg.MemPasses = 3
		cfg.MemMinIterations = 10
		if cfg.Duration == 0 {
			cfg.Duration = time.Second
		}
	}
	if cfg.Duration == 0 {
		cfg.Duration = 2 * time.Second
	}
	return cfg.withDefaults()
}

// measure samples every variant on one scenario, interleaved, each on a
// fresh executor.
func measure(ctx context.Context, sc Scenario, variants []Variant, cfg SampleConfig, progress func(string, float64, string)) ([]Result, error) {
	subjects := make([]Subject, 0, len(variants))
	defer func() {
		for _, s := range subjects {
			s.Workload.Close()
		}
	}()
	for _, v := range variants {
		w, err := sc.NewWorkload(v)
		if err != nil {
			return nil, err
		}
		subjects = append(subjects, Subject{Variant: v.Name, Workload: w, Rebuild: func() (*Workload, error) { return sc.NewWorkload(v) }})
	}
	var p Progress
	if progress != nil {
		p = func(done float64, phase string) { progress(sc.ID, done, phase) }
	}
	results, err := Sample(ctx, subjects, sc.Executes, cfg, p)
	if err != nil {
		return nil, fmt.Errorf("scenario %s/%s: %w", sc.Suite, sc.ID, err)
	}
	for i := range results {
		results[i].Scenario = sc.ID
	}
	return results, nil
}

// compare makes the comparisons of every variant with the baseline, each
// with its verdict ([judge]): the automatic optimization's last, once the
// component it is judged against has its figures.
func compare(suite string, sc Scenario, results []Result) []Comparison {
	base := results[0]
	var out []Comparison
	for _, r := range results[1:] {
		for _, metric := range []string{MetricMeanNS, MetricAllocsPerOp, MetricBytesPerOp} {
			c := Comparison{Scenario: sc.ID, Baseline: base.Variant, Variant: r.Variant, Metric: metric, P: 1}
			switch metric {
			case MetricMeanNS:
				baseMeans, means := base.BatchMeans, r.BatchMeans
				if sc.Stalls {
					baseMeans, means = withoutStalls(&c, base, r)
				}
				p := ComparePaired(baseMeans, means)
				c.ImprovementPct, c.LowPct, c.HighPct = p.Improvement()
				c.Confidence, c.P, c.Pairs, c.Significant = p.Confidence, p.P, p.Pairs, p.Significant()
				c.MeanImprovementPct = Improvement(base.Stats.MeanNS, r.Stats.MeanNS)
			case MetricAllocsPerOp:
				allocCompare(&c, base.Stats.AllocsPerOp, r.Stats.AllocsPerOp, base.AllocsPasses, r.AllocsPasses)
			case MetricBytesPerOp:
				allocCompare(&c, base.Stats.BytesPerOp, r.Stats.BytesPerOp, base.BytesPasses, r.BytesPasses)
			}
			out = append(out, c)
		}
	}
	baseNS := median(sortedCopy(base.BatchMeans))
	for i := range out {
		if !isAuto(out[i].Variant) {
			judge(suite, sc.ScenarioInfo, sc.Executes, baseNS, &out[i], nil)
		}
	}
	for i := range out {
		if isAuto(out[i].Variant) {
			judge(suite, sc.ScenarioInfo, sc.Executes, baseNS, &out[i], referenceOf(out, sc.Component, out[i].Metric))
		}
	}
	return out
}

// stallFactor is how many times its subject's median an iteration lasts to
// count as stalled.
const stallFactor = 1.5

// withoutStalls returns the group means of base and r without their
// stalled iterations, and records the stall counts in c — or, when r
// stalled significantly more often than base, r's means as they are, its
// stalls kept as its cost.
func withoutStalls(c *Comparison, base, r Result) (baseMeans, means []float64) {
	bm, bs := stallFreeMeans(base)
	vm, vs := stallFreeMeans(r)
	c.Stalls = &[2]int{bs, vs}
	if stallsExcess(bs, len(base.Raw), vs, len(r.Raw)) < 0.05 {
		c.StallsKept = true
		return bm, r.BatchMeans
	}
	return bm, vm
}

// stallFreeMeans returns r's group means (as [Result].BatchMeans groups its
// samples, Raw) without the samples over stallFactor × their median, and
// how many it left out. A group left empty keeps its mean.
func stallFreeMeans(r Result) ([]float64, int) {
	bounds := groupBounds(len(r.Raw), r.RoundsPerGroup)
	if len(bounds) == 0 || len(bounds) != len(r.BatchMeans) {
		return r.BatchMeans, 0
	}
	raw := make([]float64, len(r.Raw))
	for i, v := range r.Raw {
		raw[i] = float64(v)
	}
	limit := stallFactor * median(sortedCopy(raw))
	means := slices.Clone(r.BatchMeans)
	stalls := 0
	for j, b := range bounds {
		var sum float64
		n := 0
		for _, v := range raw[b[0]:b[1]] {
			if v > limit {
				stalls++
				continue
			}
			sum += v
			n++
		}
		if n > 0 {
			means[j] = sum / float64(n)
		}
	}
	return means, stalls
}

// stallsExcess is the one-sided p-value of a variant's stalls exceeding
// the baseline's: given the stalls of both, each is the variant's with
// the chance its share of the samples gives, under the hypothesis that
// both stall alike (binomial upper tail).
func stallsExcess(baseStalls, baseSamples, stalls, samples int) float64 {
	total := baseStalls + stalls
	if total == 0 || samples == 0 || baseSamples == 0 || stalls*baseSamples <= baseStalls*samples {
		return 1
	}
	q := float64(samples) / float64(samples+baseSamples)
	p := 0.0
	for k := stalls; k <= total; k++ {
		p += math.Exp(logChoose(total, k) + float64(k)*math.Log(q) + float64(total-k)*math.Log1p(-q))
	}
	return min(p, 1)
}

// logChoose returns log(n choose k).
func logChoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// isAuto reports whether variant name is the automatic optimization.
func isAuto(name string) bool { return name == VariantAuto || name == "automatic-optimization" }

// referenceOf returns the comparison of component on metric in cs, or nil.
func referenceOf(cs []Comparison, component, metric string) *Comparison {
	for i := range cs {
		if cs[i].Variant == component && cs[i].Metric == metric {
			return &cs[i]
		}
	}
	return nil
}

// referenceComponents returns the components of the scenarios that set one
// a target, in scenario order, each once.
func referenceComponents(scenarios []Scenario) []string {
	var out []string
	for _, sc := range scenarios {
		if sc.HasTarget() && sc.Component != "" && !slices.Contains(out, sc.Component) {
			out = append(out, sc.Component)
		}
	}
	return out
}

// allocCompare fills an allocation comparison from the medians of the
// memory passes (base, variant) and the passes themselves: significant
// only when the difference exceeds the baseline's pass-to-pass range and
// 0.5 % of the baseline.
func allocCompare(c *Comparison, base, variant float64, basePasses, variantPasses []float64) {
	c.ImprovementPct = Improvement(base, variant)
	c.LowPct, c.HighPct = c.ImprovementPct, c.ImprovementPct
	if len(variantPasses) > 0 {
		c.LowPct = Improvement(base, slices.Max(variantPasses))
		c.HighPct = Improvement(base, slices.Min(variantPasses))
	}
	spread := 0.0
	if len(basePasses) > 0 {
		spread = slices.Max(basePasses) - slices.Min(basePasses)
	}
	// Passes of identical code can agree exactly, so a range of 0 would
	// make any stray allocation significant: below 0.5 % nothing is.
	c.Significant = math.Abs(variant-base) > max(spread, allocNoiseShare*base)
}

// allocNoiseShare is the least relative allocation difference that counts.
const allocNoiseShare = 0.005

func sortedCopy(v []float64) []float64 { return slices.Sorted(slices.Values(v)) }

// overheadBudgetPct is the most a variant may cost where its workload is
// absent, or on a metric its target is not on.
const overheadBudgetPct = 3.0

// includes reports whether variant — a preset, or optimized — turns
// component on.
func includes(variant, component string) bool {
	cfg, ok := optimize.Preset(variant)
	if variant == VariantOptimized {
		cfg, ok = optimize.All(), true
	}
	return ok && variant != VariantAuto && slices.Contains(cfg.Components(), component)
}

// autoShare is the share of the hand-picked component's improvement the
// automatic optimization must reach on a workload whose target is one.
const autoShare = 0.8

// judge gives comparison c its verdict: Met, Status and Gate. It is the
// one place the suite's gates are decided; reports print its Status and
// [Check] collects its Gate.
//
//   - A component on its own workload of the designed or matrix suite, on
//     the metric of the workload's target, must meet the target: the
//     whole interval clears it (improvement at least TargetPct, or cost
//     per execute at most TargetMaxCostNS).
//   - The automatic optimization ("auto", "automatic-optimization") on
//     every such workload and metric of the designed or matrix suite:
//     where the target is an improvement, its median change must reach
//     80 % of the component's measured in the same run (ref, the
//     reference), and it must be better than the baseline — on time its
//     whole interval above 0, on allocations and bytes significantly;
//     where the target is a bound (a most it may cost), it must meet the
//     same bound. A missing reference fails.
//   - A preset, or optimized, on the target metric of a workload whose
//     component it turns on and whose target is a bound wider than the
//     budget (the capacity-limited downstream's −20 %): that bound is its
//     budget.
//   - Everywhere else — other workloads, other metrics, the seed suite's
//     shapes, every other variant — the budget applies:
//     on time, a variant fails when its whole interval lies beyond 3 %
//     slower; on allocations and bytes, when its median is over 3 % worse
//     and the difference exceeds the baseline's own pass-to-pass range.
//
// baseNS is the baseline's median group mean, for the cost per execute.
func judge(suite string, sc ScenarioInfo, executes int, baseNS float64, c *Comparison, ref *Comparison) {
	onTarget := suite != SuiteSeed && sc.HasTarget() && targetMetricOf(sc) == c.Metric
	switch {
	case onTarget && isAuto(c.Variant) && sc.TargetMaxCostNS <= 0 && sc.TargetPct > 0:
		judgeAuto(sc, c, ref)
		return
	case onTarget && (sc.Component == c.Variant || isAuto(c.Variant)):
		judgeTarget(sc, executes, baseNS, c)
		return
	}
	budget := overheadBudgetPct
	if onTarget && sc.TargetPct < -budget && includes(c.Variant, sc.Component) {
		// A preset with the workload's component may cost there what the
		// component may (the adaptive limit on a capacity-limited
		// downstream, say), no more.
		budget = -sc.TargetPct
	}
	worse := c.Significant && c.ImprovementPct < 0
	beyond := false
	switch c.Metric {
	case MetricMeanNS:
		beyond = c.HighPct < -budget
	default:
		beyond = worse && c.ImprovementPct < -budget
	}
	switch {
	case beyond:
		c.Status = StatusRegression
		what := map[string]string{
			MetricMeanNS:      "slower than the baseline",
			MetricAllocsPerOp: "allocates more than the baseline",
			MetricBytesPerOp:  "uses more memory than the baseline",
		}[c.Metric]
		c.Gate = fmt.Sprintf("%s beyond the %g%% budget: %s %s", what, budget, formatInterval(c), c.Metric)
	case worse:
		c.Status = StatusWorse
	case c.Significant && c.ImprovementPct > 0:
		c.Status = StatusBetter
	default:
		c.Status = StatusSame
	}
}

// judgeTarget judges c against scenario sc's own target.
func judgeTarget(sc ScenarioInfo, executes int, baseNS float64, c *Comparison) {
	met := false
	if sc.TargetMaxCostNS > 0 {
		t := sc.TargetMaxCostNS
		c.TargetMaxCostNS = &t
		cost := baseNS * (-c.LowPct / 100) / float64(max(executes, 1))
		c.CostNS = &cost
		met = cost <= t
	} else {
		t := sc.TargetPct
		c.TargetPct = &t
		met = MeetsTarget(*c, t)
	}
	c.Met = met
	if met {
		c.Status = StatusMet
		return
	}
	c.Status = StatusMissed
	c.Gate = fmt.Sprintf("misses its target: %s %s, target %s", formatInterval(c), c.Metric, targetText(c))
}

// MeetsTarget reports whether comparison c clears an improvement target
// of pct percent (a negative pct: the most it may cost) on its metric: the
// whole interval at or above pct, and on allocations or bytes a
// significant difference as well where pct is an improvement. It is the
// rule [judge] applies to a component on its own workload; reports use it
// to say whether another variant would have met the same target.
func MeetsTarget(c Comparison, pct float64) bool {
	return c.LowPct >= pct && (c.Metric == MetricMeanNS || c.Significant || pct <= 0)
}

// judgeAuto judges the automatic optimization's c on a workload whose
// target is an improvement, against ref, the hand-picked component's
// comparison on the same workload and metric.
func judgeAuto(sc ScenarioInfo, c *Comparison, ref *Comparison) {
	t := sc.TargetPct
	c.TargetPct = &t
	c.Reference = sc.Component
	if ref == nil {
		c.Status = StatusMissed
		c.Gate = fmt.Sprintf("no reference: %s was not measured in this run, so %.0f%% of its improvement cannot be judged", sc.Component, autoShare*100)
		return
	}
	r := ref.ImprovementPct
	c.ReferencePct = &r
	need := autoShare * r
	// Better than the baseline as a component's target is judged: on
	// time, the whole interval above 0 (a Wilcoxon test of few groups
	// cannot go below p = 0.0625 however large the win); on allocations
	// and bytes, significantly.
	better := c.ImprovementPct > 0 && (c.LowPct > 0 && c.Metric == MetricMeanNS || c.Significant && c.Metric != MetricMeanNS)
	c.Met = better && c.ImprovementPct >= need
	if c.Met {
		c.Status = StatusMet
		return
	}
	c.Status = StatusMissed
	why := "not clearly better than the baseline"
	if better {
		why = fmt.Sprintf("below %.0f%% of the reference's", autoShare*100)
	}
	c.Gate = fmt.Sprintf("%s: %s %s, needs at least %+.1f%% (%.0f%% of %s's %+.1f%%), its interval above 0", why, formatInterval(c), c.Metric, need, autoShare*100, sc.Component, r)
}

// targetMetricOf returns the metric scenario sc's target is on.
func targetMetricOf(sc ScenarioInfo) string {
	if sc.TargetMetric == "" {
		return MetricMeanNS
	}
	return sc.TargetMetric
}

// formatInterval prints a comparison's change with its interval.
func formatInterval(c *Comparison) string {
	if c.Metric != MetricMeanNS {
		return fmt.Sprintf("%+.1f%% (passes %+.1f%% to %+.1f%%)", c.ImprovementPct, c.LowPct, c.HighPct)
	}
	return fmt.Sprintf("%+.1f%% [%+.1f%%, %+.1f%%] p=%.2g", c.ImprovementPct, c.LowPct, c.HighPct, c.P)
}

// targetText prints a comparison's target.
func targetText(c *Comparison) string {
	switch {
	case c.TargetMaxCostNS != nil && c.CostNS != nil:
		return fmt.Sprintf("at most %.0f ns per execute (cost %.1f ns)", *c.TargetMaxCostNS, *c.CostNS)
	case c.ReferencePct != nil:
		return fmt.Sprintf("%.0f%% of %s's %+.1f%% (%+.1f%%)", autoShare*100, c.Reference, *c.ReferencePct, autoShare**c.ReferencePct)
	case c.TargetPct != nil && *c.TargetPct < 0:
		return fmt.Sprintf("no worse than %.0f%%", *c.TargetPct)
	case c.TargetPct != nil:
		return fmt.Sprintf("+%.0f%%", *c.TargetPct)
	}
	return "none"
}

// negativeControl measures the naive variant on the execution scenario with
// its history held at each of negativeControlHistories, beside the baseline.
func negativeControl(ctx context.Context, sc Scenario, cfg SampleConfig, progress func(string, float64, string)) ([]ControlPoint, error) {
	cfg.Duration /= 2
	cfg.MinSamples /= 2
	var points []ControlPoint
	for _, h := range negativeControlHistories {
		naive := naiveVariant(h)
		results, err := measure(ctx, sc, []Variant{Baseline(), naive}, cfg, progress)
		if err != nil {
			return nil, fmt.Errorf("negative control at history %d: %w", h, err)
		}
		points = append(points, ControlPoint{
			History:         h,
			MeanNSPerExec:   results[1].Stats.MeanNS / float64(sc.Executes),
			BaselineNSPerEx: results[0].Stats.MeanNS / float64(sc.Executes),
		})
	}
	return points, nil
}

// machineFacts describes this machine.
func machineFacts() Machine {
	return Machine{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), CPUModel: cpuModel(),
	}
}

// cpuModel reads the CPU model name, or returns "unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// gitCommit returns the current commit, or "unknown".
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// GateFailure is one gate a report fails (see [Check]).
type GateFailure struct {
	Scenario string
	Variant  string
	Reason   string
}

func (g GateFailure) String() string {
	if g.Scenario == "" {
		return g.Variant + ": " + g.Reason
	}
	return g.Variant + " on " + g.Scenario + ": " + g.Reason
}

// Check applies the suite's gates to a report: every comparison's Gate
// ([judge] decides them) but those of a component measured only as auto's
// reference, and two more — a run that compared nothing (only
// the baseline was measured) fails, and so does every requested variant
// that is not built.
func Check(r *Report) []GateFailure {
	var fails []GateFailure
	for _, name := range r.Config.Requested {
		if slices.Contains(r.NotBuilt, name) {
			fails = append(fails, GateFailure{Variant: name, Reason: "not built: nothing was measured"})
		}
	}
	if len(r.Comparisons) == 0 {
		fails = append(fails, GateFailure{Variant: VariantBaseline, Reason: "compared nothing: no variant but the baseline was measured"})
	}
	for _, c := range r.Comparisons {
		if c.Gate != "" && !referenceOnly(r, c.Variant) {
			fails = append(fails, GateFailure{c.Scenario, c.Variant, c.Gate})
		}
	}
	return fails
}

// referenceOnly reports whether variant was measured only as the automatic
// optimization's reference: its figures and verdicts are in the report,
// but its own gates are its own run's (--variant <component>) and the
// matrix's to check, not this run's, which asked about auto.
func referenceOnly(r *Report, variant string) bool {
	return r.Suite != SuiteMatrix && slices.Contains(r.Config.References, variant) && !slices.Contains(r.Config.Requested, variant)
}
