package perf

import (
	"context"
	"flag"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

// controlsLong runs the controls on every seed scenario with longer
// sampling, and adds the ~5 %-slower control.
var controlsLong = flag.Bool("perf.controls", false, "run the measurement controls long: every seed scenario, with the ~5% control")

// controlExecutor is a test-only variant with a known effect on the work
// done per execute.
type controlExecutor struct {
	inner Executor
	twice bool          // run every execute twice: 2× the work
	skip  bool          // answer every other execute from the last result: half the work
	spin  time.Duration // CPU time burnt after each execute
	calls atomic.Int64  // executes asked for
	last  caudal.StepResult
}

func (c *controlExecutor) Execute(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
	if c.skip && c.calls.Add(1)%2 == 0 {
		return c.last, nil
	}
	res, err := c.inner.Execute(ctx, step, in, opts...)
	if c.twice && err == nil {
		res, err = c.inner.Execute(ctx, step, in, opts...)
	}
	if c.spin > 0 {
		spinFor(c.spin)
	}
	c.last = res
	return res, err
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

// spinOverhead returns what one spinFor call costs beyond the time it
// is asked to burn: the calibration lookup and the store.
func spinOverhead() time.Duration {
	const n = 100_000
	start := time.Now()
	for range n {
		spinFor(time.Nanosecond)
	}
	return max(time.Since(start)/n-time.Nanosecond, 0)
}

// controlConfig is the sampling of the controls: short in CI, longer with
// -perf.controls.
func controlConfig() SampleConfig {
	if *controlsLong {
		return SampleConfig{Duration: 2 * time.Second, Warmup: 100 * time.Millisecond, MinSamples: 200}
	}
	return SampleConfig{Duration: 300 * time.Millisecond, Warmup: 30 * time.Millisecond, MinSamples: 100, MemPasses: 3, MemMinIterations: 10, TailBudget: 30 * time.Millisecond}
}

// measureControl samples the baseline beside v on seed scenario sc and
// returns the comparisons, judged as on the seed suite.
func measureControl(t *testing.T, sc Scenario, v Variant) []Comparison {
	t.Helper()
	var subjects []Subject
	for _, variant := range []Variant{Baseline(), v} {
		w, err := sc.NewWorkload(variant)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		subjects = append(subjects, Subject{Variant: variant.Name, Workload: w})
	}
	results, err := Sample(context.Background(), subjects, sc.Executes, controlConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range results {
		results[i].Scenario = sc.ID
	}
	return compare(SuiteSeed, sc, results)
}

// controlScenarios are the scenarios the controls run on: the seed
// execution scenario, or every seed scenario with -perf.controls.
func controlScenarios() []Scenario {
	all := seedScenarios()
	if *controlsLong {
		return all
	}
	return all[:1]
}

// TestControls asserts the instrument's verdicts on variants whose effect
// is known: the baseline against itself passes every gate, twice the work
// fails the time gate, half the work is significantly better.
func TestControls(t *testing.T) {
	if testing.Short() {
		t.Skip("measures")
	}
	for _, sc := range controlScenarios() {
		t.Run(sc.ID, func(t *testing.T) {
			t.Run("A/A", func(t *testing.T) {
				v, _, _ := LookupVariant(VariantAA)
				for _, c := range measureControl(t, sc, v) {
					if c.Gate != "" {
						t.Errorf("the baseline against itself fails a gate: %s", c.Gate)
					}
				}
			})
			t.Run("2x slower", func(t *testing.T) {
				// Twice the executes; on the concurrent scenario the
				// goroutines' start and join, not doubled, dilute it.
				c := measureControl(t, sc, controlVariant("twice", func(c *controlExecutor) { c.twice = true }))[0]
				if c.Status != StatusRegression || c.Gate == "" || c.ImprovementPct > -10 {
					t.Errorf("twice the work: %s %+.1f%% [%+.1f%%, %+.1f%%], gate %q; want a regression", c.Status, c.ImprovementPct, c.LowPct, c.HighPct, c.Gate)
				}
			})
			t.Run("half work", func(t *testing.T) {
				if sc.ID == ScenarioCache {
					t.Skip("the cache scenario checks each answer: a replayed one is not a hit")
				}
				c := measureControl(t, sc, controlVariant("half", func(c *controlExecutor) { c.skip = true }))[0]
				if c.Status != StatusBetter || c.ImprovementPct < 10 || c.Gate != "" {
					t.Errorf("half the work: %s %+.1f%% [%+.1f%%, %+.1f%%]; want significantly better", c.Status, c.ImprovementPct, c.LowPct, c.HighPct)
				}
			})
			if !*controlsLong {
				return
			}
			t.Run("5% slower", func(t *testing.T) {
				// Spin for 5 % of the baseline's time per execute, measured
				// first: about 5 % more work, no clock read added.
				perExec := baselinePerExecute(t, sc)
				spin := max(time.Duration(0.05*perExec)-spinOverhead(), time.Nanosecond)
				c := measureControl(t, sc, controlVariant("5pct", func(c *controlExecutor) { c.spin = spin }))[0]
				t.Logf("5%% slower (a %v spin on %.0f ns per execute): %+.1f%% [%+.1f%%, %+.1f%%] p=%.2g", spin, perExec, c.ImprovementPct, c.LowPct, c.HighPct, c.P)
				if !c.Significant || c.HighPct >= 0 {
					t.Errorf("a ~5%% regression went unseen: %s", formatInterval(&c))
				}
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
