package perf

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options configure a suite run.
type Options struct {
	// Suite is seed, designed or matrix.
	Suite string
	// Variants are compared with the baseline, which is always measured.
	// Empty means "optimized". On the matrix suite every known variant is
	// measured whatever this says.
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
// measured; requested variants that do not exist yet are listed in
// NotBuilt, never measured. Errors: an unknown suite or variant, a
// workload that fails, ctx cancelled.
func Run(ctx context.Context, opts Options) (*Report, error) {
	scenarios, err := Suites(opts.Suite)
	if err != nil {
		return nil, err
	}
	names := opts.Variants
	if opts.Suite == SuiteMatrix {
		names = KnownVariants()
	} else if len(names) == 0 {
		names = []string{"optimized"}
	}
	variants := []Variant{Baseline()}
	var notBuilt []string
	for _, name := range names {
		if name == VariantBaseline {
			continue
		}
		v, built, err := LookupVariant(name)
		if err != nil {
			return nil, err
		}
		switch {
		case !built:
			notBuilt = append(notBuilt, name)
		case !slices.ContainsFunc(variants, func(x Variant) bool { return x.Name == name }):
			variants = append(variants, v)
		}
	}
	// Every component that does not exist yet is listed too.
	for _, c := range componentNames {
		if !slices.Contains(notBuilt, c) {
			notBuilt = append(notBuilt, c)
		}
	}

	cfg := sampleConfig(opts)
	rep := &Report{
		SchemaVersion: SchemaVersion,
		Suite:         opts.Suite,
		StartedAt:     time.Now().UTC().Truncate(time.Second),
		GitCommit:     opts.GitCommit,
		Machine:       machineFacts(),
		NotBuilt:      notBuilt,
		Config:        RunConfig{Quick: opts.Quick, TimePerScenario: cfg.Duration, MinBatchNS: int64(cfg.MinBatch)},
	}
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
		rep.Comparisons = append(rep.Comparisons, compare(sc, results)...)
	}
	if slices.ContainsFunc(variants, func(v Variant) bool { return v.Name == VariantNaive }) && opts.Suite == SuiteSeed {
		points, err := negativeControl(ctx, scenarios[0], cfg, opts.Progress)
		if err != nil {
			return nil, err
		}
		rep.NegativeControl = points
	}
	return rep, nil
}

func sampleConfig(opts Options) SampleConfig {
	cfg := SampleConfig{Duration: opts.TimePerScenario, Warmup: 100 * time.Millisecond, MinBatch: 10 * time.Microsecond, MinRounds: 20, MinSamples: 200}
	if opts.Quick {
		cfg.Warmup = 30 * time.Millisecond
		cfg.MinSamples = 100
		if cfg.Duration == 0 {
			cfg.Duration = time.Second
		}
	}
	if cfg.Duration == 0 {
		cfg.Duration = 2 * time.Second
	}
	return cfg
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
		subjects = append(subjects, Subject{Variant: v.Name, Workload: w})
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

// Thresholds below which an allocation difference is measurement noise: a
// quiet pass still sees the odd runtime allocation.
const (
	allocNoisePerExecute = 0.01
	bytesNoisePct        = 1.0
)

// compare makes the comparisons of every variant with the baseline.
func compare(sc Scenario, results []Result) []Comparison {
	base := results[0]
	var out []Comparison
	for _, r := range results[1:] {
		for _, metric := range []string{MetricMeanNS, MetricAllocsPerOp, MetricBytesPerOp} {
			c := Comparison{Scenario: sc.ID, Baseline: base.Variant, Variant: r.Variant, Metric: metric}
			switch metric {
			case MetricMeanNS:
				c.ImprovementPct = Improvement(base.Stats.MeanNS, r.Stats.MeanNS)
				_, c.Significant = Significance(base.BatchMeans, r.BatchMeans)
			case MetricAllocsPerOp:
				c.ImprovementPct = Improvement(base.Stats.AllocsPerOp, r.Stats.AllocsPerOp)
				diff := (r.Stats.AllocsPerOp - base.Stats.AllocsPerOp) / float64(sc.Executes)
				c.Significant = diff > allocNoisePerExecute || diff < -allocNoisePerExecute
			case MetricBytesPerOp:
				c.ImprovementPct = Improvement(base.Stats.BytesPerOp, r.Stats.BytesPerOp)
				c.Significant = c.ImprovementPct > bytesNoisePct || c.ImprovementPct < -bytesNoisePct
			}
			if metric == sc.TargetMetric && sc.TargetPct > 0 {
				t := sc.TargetPct
				c.TargetPct = &t
				c.Met = c.ImprovementPct >= t && c.Significant
			}
			out = append(out, c)
		}
	}
	return out
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

func (g GateFailure) String() string { return g.Variant + " on " + g.Scenario + ": " + g.Reason }

// overheadBudgetPct is the most a variant may cost where its workload is absent.
const overheadBudgetPct = 3.0

// Check applies the suite's gates to a report. On the designed suite, a
// built component must meet its target, with significance, on its own
// workload. On every suite, a variant must not be significantly slower than
// the baseline by over 3 % on a workload it does not target, allocate more
// per execute at all, or use over 3 % more bytes per op.
func Check(r *Report) []GateFailure {
	var fails []GateFailure
	for _, c := range r.Comparisons {
		targeted := variantTargets(c.Variant, c.Scenario)
		switch {
		case targeted && r.Suite == SuiteDesigned && c.TargetPct != nil && !c.Met:
			fails = append(fails, GateFailure{c.Scenario, c.Variant, fmt.Sprintf("misses its target: %+.1f%% %s, target +%.0f%%, significant %v", c.ImprovementPct, c.Metric, *c.TargetPct, c.Significant)})
		case targeted:
		case c.Metric == MetricMeanNS && c.Significant && c.ImprovementPct < -overheadBudgetPct:
			fails = append(fails, GateFailure{c.Scenario, c.Variant, fmt.Sprintf("significantly slower than the baseline: %+.1f%% mean latency (budget −3%%)", c.ImprovementPct)})
		case c.Metric == MetricAllocsPerOp && c.Significant && c.ImprovementPct < 0:
			fails = append(fails, GateFailure{c.Scenario, c.Variant, fmt.Sprintf("allocates more per execute than the baseline: %+.1f%% allocs/op", c.ImprovementPct)})
		case c.Metric == MetricBytesPerOp && c.Significant && c.ImprovementPct < -overheadBudgetPct:
			fails = append(fails, GateFailure{c.Scenario, c.Variant, fmt.Sprintf("uses more memory than the baseline: %+.1f%% bytes/op (budget −3%%)", c.ImprovementPct)})
		}
	}
	return fails
}

// variantTargets reports whether the variant exists to win scenario.
func variantTargets(variant, scenario string) bool {
	info, ok := Info(scenario)
	return ok && info.Component == variant
}
