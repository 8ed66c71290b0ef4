package perf

import (
	"context"
	"flag"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

// controlsLong runs the controls on every scenario of a suite with longer
// sampling, and adds the sweep of small regressions.
var (
	controlsLong  = flag.Bool("perf.controls", false, "run the measurement controls long: every scenario of -perf.controls.suite, with the sweep of small regressions")
	controlsSuite = flag.String("perf.controls.suite", SuiteSeed, "the suite -perf.controls runs on: seed or designed")
)

// controlExecutor is a test-only variant with a known effect on the work
// done per execute.
type controlExecutor struct {
	inner Executor
	twice bool                              // run every execute twice: 2× the work
	skip  bool                              // answer every other execute from the last result: half the work
	spin  time.Duration                     // CPU time burnt after each execute
	calls atomic.Int64                      // executes asked for
	first atomic.Pointer[caudal.StepResult] // the first result, replayed by skip (executes may run concurrently)
}

func (c *controlExecutor) Execute(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
	if c.spin > 0 {
		spinFor(c.spin)
	}
	switch {
	case c.skip:
		if first := c.first.Load(); first != nil && c.calls.Add(1)%2 == 0 {
			return *first, nil
		}
		res, err := c.inner.Execute(ctx, step, in, opts...)
		if c.first.Load() == nil {
			kept := res
			c.first.CompareAndSwap(nil, &kept)
		}
		return res, err
	case c.twice:
		_, _ = c.inner.Execute(ctx, step, in, opts...) // the same work again, whatever its outcome
	}
	return c.inner.Execute(ctx, step, in, opts...)
}

func (c *controlExecutor) Close() error { return c.inner.Close() }

// controlVariant returns a variant that wraps the baseline's executor.
func controlVariant(name string, set func(*controlExecutor)) Variant {
	return Variant{Name: name, New: func(opts ...caudal.Option) (Executor, error) {
		ex, err := caudal.New(opts...)
		if err != nil {
			return nil, err
		}
		c := &controlExecutor{inner: ex}
		set(c)
		return c, nil
	}}
}

// controlConfig is the sampling of the controls: short in CI, longer with
// -perf.controls.
func controlConfig() SampleConfig {
	if *controlsLong {
		return SampleConfig{Duration: 2 * time.Second, Warmup: 100 * time.Millisecond, MinSamples: 200}
	}
	// Short, but with groups of many rounds: CI runs it under the race
	// detector beside other packages' tests.
	return SampleConfig{Duration: time.Second, Warmup: 30 * time.Millisecond, MinSamples: 100, MemPasses: 3, MemMinIterations: 10, TailBudget: 30 * time.Millisecond, Groups: 10}
}

// measureControl samples the baseline beside v on scenario sc and returns
// the comparisons, judged as on the seed suite (the budget everywhere).
func measureControl(t *testing.T, sc Scenario, v Variant) []Comparison {
	t.Helper()
	cs, err := tryControl(sc, Baseline(), v)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// tryControl samples base beside v on scenario sc and returns the
// comparisons, or the workload's error: a control that changes the
// answers fails the scenarios that check them.
func tryControl(sc Scenario, base, v Variant) ([]Comparison, error) {
	var subjects []Subject
	defer func() {
		for _, s := range subjects {
			s.Workload.Close()
		}
	}()
	for _, variant := range []Variant{base, v} {
		w, err := sc.NewWorkload(variant)
		if err != nil {
			return nil, err
		}
		subjects = append(subjects, Subject{Variant: variant.Name, Workload: w, Rebuild: func() (*Workload, error) { return sc.NewWorkload(variant) }})
	}
	results, err := Sample(context.Background(), subjects, sc.Executes, controlConfig(), nil)
	if err != nil {
		return nil, err
	}
	for i := range results {
		results[i].Scenario = sc.ID
	}
	return compare(SuiteSeed, sc, results), nil
}

// controlScenarios are the scenarios the controls run on: the seed
// execution scenario, or every scenario of -perf.controls.suite with
// -perf.controls.
func controlScenarios(t *testing.T) []Scenario {
	if !*controlsLong {
		return seedScenarios()[:1]
	}
	all, err := Suites(*controlsSuite)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// regressionSweep is the extra work, in percent of the baseline's time
// per execute, of the small-regression controls.
var regressionSweep = []float64{1, 2, 5, 10}

// TestControls asserts the instrument's verdicts on variants whose effect
// is known: the baseline against itself passes every gate, twice the work
// fails the time gate, half the work is significantly better.
func TestControls(t *testing.T) {
	if testing.Short() {
		t.Skip("measures")
	}
	for _, sc := range controlScenarios(t) {
		t.Run(sc.ID, func(t *testing.T) {
			var aaHalfWidth float64 // half the A/A interval's width, in percent
			t.Run("A/A", func(t *testing.T) {
				v, _, _ := LookupVariant(VariantAA)
				cs := measureControl(t, sc, v)
				for _, c := range cs {
					if c.Gate != "" {
						t.Errorf("the baseline against itself fails a gate: %s", c.Gate)
					}
				}
				aaHalfWidth = (cs[0].HighPct - cs[0].LowPct) / 2
				t.Logf("A/A: %s", formatInterval(&cs[0]))
			})
			t.Run("2x slower", func(t *testing.T) {
				// Twice the executes: not twice the time everywhere (the
				// concurrent scenario's goroutines are not doubled, a cached
				// second execute is a hit), but a regression everywhere.
				cs, err := tryControl(sc, Baseline(), controlVariant("twice", func(c *controlExecutor) { c.twice = true }))
				if err != nil {
					t.Skipf("the scenario checks its answers, which twice the executes change: %v", err)
				}
				c := cs[0]
				if c.Status != StatusRegression || c.Gate == "" {
					t.Errorf("twice the work: %s %+.1f%% [%+.1f%%, %+.1f%%], gate %q; want a regression", c.Status, c.ImprovementPct, c.LowPct, c.HighPct, c.Gate)
				}
			})
			t.Run("half work", func(t *testing.T) {
				cs, err := tryControl(sc, Baseline(), controlVariant("half", func(c *controlExecutor) { c.skip = true }))
				if err != nil {
					t.Skipf("the scenario checks its answers, which a replayed answer fails: %v", err)
				}
				c := cs[0]
				// Significantly better; in the short run (under the race
				// detector, beside other tests, in CI) at least better and
				// never gated.
				better := c.Status == StatusBetter || !*controlsLong && c.ImprovementPct > 5
				if !better || c.Gate != "" {
					t.Errorf("half the work: %s %+.1f%% [%+.1f%%, %+.1f%%]; want significantly better", c.Status, c.ImprovementPct, c.LowPct, c.HighPct)
				}
			})
			if !*controlsLong {
				return
			}
			t.Run("small regressions", func(t *testing.T) {
				// The reference and each treatment wrap the executor alike
				// and both spin: they differ only by the extra spin, a
				// share of the baseline's time per execute measured first.
				perExec := baselinePerExecute(t, sc)
				reference := controlVariant("spin0", func(c *controlExecutor) { c.spin = time.Nanosecond })
				smallest := "none"
				for _, pct := range regressionSweep {
					spin := time.Nanosecond + time.Duration(pct/100*perExec)
					cs, err := tryControl(sc, reference, controlVariant(fmt.Sprintf("slower%g", pct), func(c *controlExecutor) { c.spin = spin }))
					if err != nil {
						t.Fatal(err)
					}
					c := cs[0]
					caught := c.Significant && c.HighPct < 0
					t.Logf("%g%% more work (%v more spin on %.0f ns per execute): %s, caught %v", pct, spin-time.Nanosecond, perExec, formatInterval(&c), caught)
					if caught && smallest == "none" {
						smallest = fmt.Sprintf("%g%%", pct)
					}
					// Where the A/A interval is narrow, 5 % is above the
					// noise and must be caught.
					if pct == 5 && aaHalfWidth < 2 && !caught {
						t.Errorf("5%% more work went unseen where the A/A interval is ±%.1f%%: %s", aaHalfWidth, formatInterval(&c))
					}
				}
				t.Logf("smallest regression caught on %s: %s (A/A interval ±%.1f%%)", sc.ID, smallest, aaHalfWidth)
			})
		})
	}
}

// baselinePerExecute returns the baseline's mean time per execute on sc.
func baselinePerExecute(t *testing.T, sc Scenario) float64 {
	t.Helper()
	w, err := sc.NewWorkload(Baseline())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := Sample(context.Background(), []Subject{{Variant: VariantBaseline, Workload: w}}, sc.Executes, controlConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Stats.MeanNS / float64(sc.Executes)
}
