package perf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal"
)

// Scenario is one workload of a suite.
type Scenario struct {
	ScenarioInfo
	Suite    string
	Executes int // executes per iteration
	// Setup builds the workload on an executor of the variant under test.
	Setup func(ex Executor) (*Workload, error)
	// Options are the executor options the scenario needs (a sink, say).
	Options func() []caudal.Option
}

// NewWorkload builds the scenario's workload on a fresh executor of v.
func (s Scenario) NewWorkload(v Variant) (*Workload, error) {
	var opts []caudal.Option
	if s.Options != nil {
		opts = s.Options()
	}
	ex, err := v.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", v.Name, err)
	}
	w, err := s.Setup(ex)
	if err != nil {
		_ = ex.Close()
		return nil, fmt.Errorf("scenario %s/%s: %w", s.Suite, s.ID, err)
	}
	if b, ok := ex.(interface{ beforeBatch() }); ok {
		prepare := w.Prepare
		w.Prepare = func(n int) {
			b.beforeBatch()
			if prepare != nil {
				prepare(n)
			}
		}
	}
	inner := w.Close
	w.Close = func() {
		if inner != nil {
			inner()
		}
		_ = ex.Close()
	}
	return w, nil
}

func info(id string) ScenarioInfo {
	i, _ := Info(id)
	return i
}

// Suites returns the scenarios of suite: seed, designed or matrix (the
// designed workloads, on which every variant is measured).
func Suites(suite string) ([]Scenario, error) {
	switch suite {
	case SuiteSeed:
		return seedScenarios(), nil
	case SuiteDesigned:
		return designedScenarios(SuiteDesigned), nil
	case SuiteMatrix:
		return designedScenarios(SuiteMatrix), nil
	}
	return nil, fmt.Errorf("unknown suite %q (want seed, designed, matrix or all)", suite)
}

// outputs is the stub agent's output table: it cycles forever, where the
// study's stub ran out after 200 calls and turned later timings into
// failure-path timings.
var outputs = func() []string {
	o := make([]string, 200)
	for i := range o {
		o[i] = fmt.Sprintf("output_%d", i)
	}
	return o
}()

// unlimitedAgent returns a fresh agent whose outputs never run out.
func unlimitedAgent() caudal.Agent {
	var n atomic.Uint64
	return caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{Output: outputs[n.Add(1)%uint64(len(outputs))]}, nil
	})
}

func build(s caudal.Step) (caudal.Step, error) { return caudal.Build(s) }

// once runs one execute and checks it succeeded.
func once(ctx context.Context, ex Executor, step caudal.Step, in any, opts ...caudal.Option) error {
	_, err := ex.Execute(ctx, step, in, opts...)
	return err
}

// seedScenarios are the study's five scenarios in its shapes, with its
// pitfalls fixed: a fresh agent with unlimited outputs per workload, a
// fresh executor per scenario and variant, inputs built before timing, a
// real cache.
func seedScenarios() []Scenario {
	return []Scenario{
		{
			ScenarioInfo: info(ScenarioExecution), Suite: SuiteSeed, Executes: 1,
			// Measures one execute of a one-attempt agent step with a 1-key map input.
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("execution_performance", unlimitedAgent()))
				in := map[string]any{"test": "execution_performance"}
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, in) }}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioMemory), Suite: SuiteSeed, Executes: 50,
			// Measures 50 sequential executes, input i = {test: memory, iteration: i}.
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("memory_efficiency", unlimitedAgent()))
				inputs := make([]any, 50)
				for i := range inputs {
					inputs[i] = map[string]any{"test": "memory", "iteration": i}
				}
				return &Workload{Run: func(ctx context.Context, _ int) error {
					for _, in := range inputs {
						if err := once(ctx, ex, step, in); err != nil {
							return err
						}
					}
					return nil
				}}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioConcurrent), Suite: SuiteSeed, Executes: 20,
			// Measures 20 concurrent executes of one step, joined.
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("concurrent_performance", unlimitedAgent()))
				in := map[string]any{"test": "concurrent"}
				return &Workload{Run: func(ctx context.Context, _ int) error {
					return fanOut(20, func() error { return once(ctx, ex, step, in) })
				}}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioCache), Suite: SuiteSeed, Executes: 2,
			// Measures two executes of the same 2-key map through a real cache: a miss, then a hit (a fresh key per iteration).
			Setup: func(ex Executor) (*Workload, error) {
				cache, err := caudal.NewMemoryCache(1 << 16)
				if err != nil {
					return nil, err
				}
				step, err := build(caudal.Cached(caudal.AgentStep("cache_performance", unlimitedAgent()), cache))
				if err != nil {
					return nil, err
				}
				var seq int
				var inputs []any
				w := &Workload{
					Prepare: func(n int) {
						inputs = inputs[:0]
						for range n {
							seq++
							inputs = append(inputs, map[string]any{"test": "cache", "value": seq})
						}
					},
					Run: func(ctx context.Context, i int) error {
						if err := once(ctx, ex, step, inputs[i]); err != nil {
							return err
						}
						res, err := ex.Execute(ctx, step, inputs[i])
						if err == nil && res.Metadata[caudal.MetaCacheHit] != true {
							err = errors.New("second execute of the same input missed the cache")
						}
						return err
					},
				}
				return w, nil
			},
		},
		{
			ScenarioInfo: info(ScenarioContext), Suite: SuiteSeed, Executes: 1,
			// Measures one execute with a small run state attached.
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("context_handling", unlimitedAgent()))
				in := map[string]any{"test": "context"}
				opts := []caudal.Option{caudal.WithState(caudal.NewState(map[string]any{"user": "bench", "session": "s-1"}))}
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, in, opts...) }}, err
			},
		},
	}
}

// fanOut runs fn n times concurrently and returns the first error.
func fanOut(n int, fn func() error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = fn() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// countingSink is the designed execution scenario's telemetry consumer.
type countingSink struct{ n atomic.Int64 }

func (c *countingSink) Record(context.Context, *caudal.Event) { c.n.Add(1) }

var (
	errPermanent = errors.New("400 invalid request: the prompt exceeds the model's context window")
	errPrimary   = errors.New("primary model unavailable")
)

// sleepCtx blocks for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// designedScenarios are the five scenarios measured as their names say, plus
// the error and outage workloads: each component's workload from DESIGN.md.
func designedScenarios(suite string) []Scenario {
	return []Scenario{
		{
			ScenarioInfo: info(ScenarioExecution), Suite: suite, Executes: 1,
			// Measures a fully equipped step (retries, timeout, processors, validator, fallback) with telemetry on (a sink receives every event).
			Options: func() []caudal.Option { return []caudal.Option{caudal.WithSink(&countingSink{})} },
			Setup: func(ex Executor) (*Workload, error) {
				trim := func(_ context.Context, v any) (any, error) { return strings.TrimSpace(fmt.Sprint(v)), nil }
				nonEmpty := func(_ context.Context, out any) error {
					if out == "" {
						return errors.New("empty output")
					}
					return nil
				}
				step, err := build(caudal.AgentStep("equipped", unlimitedAgent(),
					caudal.WithRetries(2), caudal.WithBackoff(0, 0), caudal.WithTimeout(time.Second),
					caudal.WithPromptProcessors(trim), caudal.WithOutputProcessors(trim), caudal.WithValidators(nonEmpty),
					caudal.WithFallback(caudal.AgentStep("backup", unlimitedAgent()))))
				in := " what is caudal? "
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, in) }}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioMemory), Suite: suite, Executes: 1,
			// Measures a 10-step sequence whose steps time-box their attempt and fall back: the executor's own allocations dominate.
			Setup: func(ex Executor) (*Workload, error) {
				down := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errPrimary })
				steps := make([]caudal.Step, 10)
				for i := range steps {
					steps[i] = caudal.AgentStep(fmt.Sprint("step", i), down, caudal.WithTimeout(time.Second),
						caudal.WithFallback(caudal.AgentStep("fallback", unlimitedAgent())))
				}
				step, err := build(caudal.Seq("memory_intensive", steps...))
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, "input") }}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioConcurrent), Suite: suite, Executes: 1,
			// Measures a 64-way fan-out of agents that block about 2 ms on I/O.
			Setup: func(ex Executor) (*Workload, error) {
				io := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
					return caudal.Reply{Output: in}, sleepCtx(ctx, 2*time.Millisecond)
				})
				opts := make([]caudal.StepOption, 64)
				for i := range opts {
					opts[i] = caudal.Branch(fmt.Sprint("call", i), caudal.AgentStep("fetch", io))
				}
				step, err := build(caudal.Parallel("fan_out", opts...))
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, "q") }}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioCache), Suite: suite, Executes: 32,
			// Measures 16 concurrent identical misses of a fresh key, then 16 hits over 4 hot keys, ~2 KB payloads from a 100 µs agent.
			Setup: func(ex Executor) (*Workload, error) {
				payload := strings.Repeat("x", 2048)
				agent := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
					err := sleepCtx(ctx, 100*time.Microsecond)
					return caudal.Reply{Output: map[string]any{"input": in, "body": payload, "tokens": 512}}, err
				})
				cache, err := caudal.NewMemoryCache(1 << 16)
				if err != nil {
					return nil, err
				}
				step, err := build(caudal.Cached(caudal.AgentStep("lookup", agent), cache))
				if err != nil {
					return nil, err
				}
				hot := []any{"hot-0", "hot-1", "hot-2", "hot-3"}
				var seq int
				var fresh []any
				return &Workload{
					Prepare: func(n int) {
						fresh = fresh[:0]
						for range n {
							seq++
							fresh = append(fresh, map[string]any{"q": "fresh", "n": seq})
						}
					},
					Run: func(ctx context.Context, i int) error {
						if err := fanOut(16, func() error { return once(ctx, ex, step, fresh[i]) }); err != nil {
							return err
						}
						for k := range 16 {
							if err := once(ctx, ex, step, hot[k%len(hot)]); err != nil {
								return err
							}
						}
						return nil
					},
				}, nil
			},
		},
		{
			ScenarioInfo: info(ScenarioContext), Suite: suite, Executes: 1,
			// Measures an 8-way fan-out over a 1,000-key nested state, 2 writes per branch, merged back (ContextUpdate).
			Setup: func(ex Executor) (*Workload, error) {
				initial := make(map[string]any, 1000)
				for i := range 1000 {
					initial[fmt.Sprintf("key%04d", i)] = map[string]any{"n": float64(i), "tags": []any{"a", "b"}, "meta": map[string]any{"owner": "bench"}}
				}
				st := caudal.NewState(initial)
				var tick atomic.Int64
				opts := []caudal.StepOption{caudal.WithMerge(caudal.ContextUpdate)}
				for b := range 8 {
					writer := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
						s := caudal.StateFrom(ctx)
						t := tick.Add(1)
						s.Set(fmt.Sprintf("branch%d_a", b), t)
						s.Set(fmt.Sprintf("branch%d_b", b), t)
						return caudal.Reply{Output: in}, nil
					})
					opts = append(opts, caudal.Branch(fmt.Sprint("b", b), caudal.AgentStep("write", writer)))
				}
				step, err := build(caudal.Parallel("fan_out", opts...))
				runOpts := []caudal.Option{caudal.WithState(st)}
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, "q", runOpts...) }}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioError), Suite: suite, Executes: 1,
			// Measures a permanent error (HTTP 400) on a step with 3 retries and a 1 ms backoff: time to the same final failure.
			Setup: func(ex Executor) (*Workload, error) {
				bad := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errPermanent })
				step, err := build(caudal.AgentStep("permanent", bad, caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, time.Millisecond)))
				return &Workload{Run: func(ctx context.Context, _ int) error {
					if err := once(ctx, ex, step, "q"); !errors.Is(err, errPermanent) {
						return fmt.Errorf("want the permanent error, got %v", err)
					}
					return nil
				}}, err
			},
		},
		{
			ScenarioInfo: info(ScenarioOutage), Suite: suite, Executes: 1,
			// Measures an agent in an outage: every call times out after 2 ms, then the fallback answers.
			Setup: func(ex Executor) (*Workload, error) {
				dead := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
					<-ctx.Done()
					return caudal.Reply{}, context.Cause(ctx)
				})
				step, err := build(caudal.AgentStep("flaky_model", dead, caudal.WithTimeout(2*time.Millisecond),
					caudal.WithFallback(caudal.AgentStep("backup", unlimitedAgent()))))
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, "q") }}, err
			},
		},
	}
}
