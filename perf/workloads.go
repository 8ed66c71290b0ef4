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
	// Configure, when set, replaces Setup for a workload that needs
	// executor options (a sink, say) sharing state with the workload: it
	// returns the options the executor is made with and the setup to run
	// on that executor.
	Configure func() (opts []caudal.Option, setup func(ex Executor) (*Workload, error))
}

// NewWorkload builds the scenario's workload on a fresh executor of v.
func (s Scenario) NewWorkload(v Variant) (*Workload, error) {
	var opts []caudal.Option
	setup := s.Setup
	if s.Configure != nil {
		opts, setup = s.Configure()
	}
	ex, err := v.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", v.Name, err)
	}
	w, err := setup(ex)
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
	// Background work (telemetry's delivery) ends with its batch, untimed:
	// left running, it would cost whichever subject comes next.
	verify := w.Verify
	w.Verify = func() error {
		if err := flush(ex); err != nil {
			return err
		}
		if verify != nil {
			return verify()
		}
		return nil
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

// seedInfo is scenario id's description with the seed suite's workload.
func seedInfo(id, workload string) ScenarioInfo {
	i := info(id)
	i.Workload = workload
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
// real cache, emptied before every batch.
func seedScenarios() []Scenario {
	return []Scenario{
		{
			ScenarioInfo: seedInfo(ScenarioExecution, "one execute of a one-attempt agent step with a 1-key map input"),
			Suite:        SuiteSeed, Executes: 1,
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("execution_performance", unlimitedAgent()))
				in := map[string]any{"test": "execution_performance"}
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, in) }}, err
			},
		},
		{
			ScenarioInfo: seedInfo(ScenarioMemory, "50 sequential executes of an agent step, input i = {test: memory, iteration: i}"),
			Suite:        SuiteSeed, Executes: 50,
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
			ScenarioInfo: seedInfo(ScenarioConcurrent, "20 concurrent executes of one agent step, joined"),
			Suite:        SuiteSeed, Executes: 20,
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("concurrent_performance", unlimitedAgent()))
				in := map[string]any{"test": "concurrent"}
				return &Workload{Run: func(ctx context.Context, _ int) error {
					return fanOut(20, func() error { return once(ctx, ex, step, in) })
				}}, err
			},
		},
		{
			ScenarioInfo: seedInfo(ScenarioCache, "two executes of the same 2-key map through a cache emptied before every batch: a miss, then a hit (a fresh key per iteration)"),
			Suite:        SuiteSeed, Executes: 2,
			Setup: seedCache,
		},
		{
			ScenarioInfo: seedInfo(ScenarioContext, "one execute of an agent step with a 2-key run state attached"),
			Suite:        SuiteSeed, Executes: 1,
			Setup: func(ex Executor) (*Workload, error) {
				step, err := build(caudal.AgentStep("context_handling", unlimitedAgent()))
				in := map[string]any{"test": "context"}
				opts := []caudal.Option{caudal.WithState(caudal.NewState(map[string]any{"user": "bench", "session": "s-1"}))}
				return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, in, opts...) }}, err
			},
		},
	}
}

// freshCached returns a function that builds def cached over a new, empty
// MemoryCache: a workload's Prepare calls it so that every batch starts
// from the same cache state.
func freshCached(def caudal.Step) func() (caudal.Step, error) {
	return func() (caudal.Step, error) {
		cache, err := caudal.NewMemoryCache(1 << 16)
		if err != nil {
			return caudal.Step{}, err
		}
		return build(caudal.Cached(def, cache))
	}
}

// seedCache is the seed cache scenario: a miss then a hit per iteration.
// Prepare rebuilds the cached step over an empty cache and restarts the key
// sequence, so every batch starts from the same state however fast the
// variant filled the cache in the last one.
func seedCache(ex Executor) (*Workload, error) {
	fresh := freshCached(caudal.AgentStep("cache_performance", unlimitedAgent()))
	step, err := fresh()
	if err != nil {
		return nil, err
	}
	var inputs []any
	var prepErr error
	return &Workload{
		Prepare: func(n int) {
			step, prepErr = fresh()
			inputs = inputs[:0]
			for i := range n {
				inputs = append(inputs, map[string]any{"test": "cache", "value": i + 1})
			}
		},
		Run: func(ctx context.Context, i int) error {
			if prepErr != nil {
				return prepErr
			}
			res, err := ex.Execute(ctx, step, inputs[i])
			if err != nil {
				return err
			}
			if res.Metadata[caudal.MetaCacheHit] != false {
				return errors.New("first execute of a fresh input did not miss the cache")
			}
			res, err = ex.Execute(ctx, step, inputs[i])
			if err == nil && res.Metadata[caudal.MetaCacheHit] != true {
				err = errors.New("second execute of the same input missed the cache")
			}
			return err
		},
	}, nil
}

// fanOut runs fn n times concurrently and returns the errors joined.
func fanOut(n int, fn func() error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = fn() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

var (
	// errPermanent is the error workload's error: an HTTP 400 as an SDK
	// returns it, exposing its status code, so that a classifier reading
	// StatusCode can tell it will never succeed.
	errPermanent error = &httpError{code: 400, text: "400 invalid request: the prompt exceeds the model's context window"}
	errPrimary         = errors.New("primary model unavailable")
	errTransient       = errors.New("503 service unavailable: try again")
)

// httpError is an HTTP error as an API client's SDK returns it: its text,
// and the response's status code through StatusCode.
type httpError struct {
	code int
	text string
}

func (e *httpError) Error() string { return e.text }

// StatusCode returns the HTTP status code of the response.
func (e *httpError) StatusCode() int { return e.code }

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

// designedScenarios are the components' workloads from DESIGN.md, each
// shaped so its component can win and checking its own results: the
// study's five measured as their names say, split where one number hid two
// (cache hits and misses; I/O-bound, rate-limited and CPU-bound maps), and
// the error and breaker workloads.
func designedScenarios(suite string) []Scenario {
	return []Scenario{
		executionScenario(suite),
		memoryScenario(suite),
		concurrentScenario(suite),
		cacheScenario(suite),
		contextScenario(suite),
		errorScenario(suite),
		outageScenario(suite),
		cacheMissScenario(suite),
		downstreamScenario(suite, downstreamBestLimit),
		concurrentCPUScenario(suite),
		breakerSuccessScenario(suite),
	}
}

// executionScenario is the telemetry component's workload: a pipeline that
// emits every common kind of event, into a realistic sink — a log/slog
// JSON log and a span recorder — and checks after every batch, outside the
// timing, that each event arrived: the count, the counts by kind, the log
// lines and the spans (their count, the first and last by path) must be
// the batch's executes times what the baseline delivers for one execute,
// taken once in Setup from a reference executor. An executor that
// delivers in the background has been flushed by then (see NewWorkload). A variant that
// drops or merges events fails the batch.
func executionScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioExecution), Suite: suite, Executes: 1,
		Configure: func() ([]caudal.Option, func(Executor) (*Workload, error)) {
			t := newTelemetry()
			return []caudal.Option{caudal.WithSink(t.fan)}, func(ex Executor) (*Workload, error) {
				step, err := build(telemetryPipeline())
				if err != nil {
					return nil, err
				}
				in := " what is caudal? "
				want, err := referenceTelemetry(context.Background(), step, in)
				if err != nil {
					return nil, err
				}
				var (
					batch int           // executes since the last Prepare
					mark  telemetryMark // where the telemetry stood then
				)
				return &Workload{
					Prepare: func(int) { t.reset(); batch, mark = 0, t.mark() },
					Run: func(ctx context.Context, _ int) error {
						batch++
						return once(ctx, ex, step, in)
					},
					Verify: func() error { return t.checkBatch(mark, batch, want) }, // after NewWorkload's flush
				}, nil
			}
		},
	}
}

// telemetryPipeline is the execution scenario's pipeline: an equipped step
// (timeout, processors, validator, retries), a step whose first attempt
// fails and is retried, and a step whose agent is down and whose fallback
// answers — step, attempt-failed, retry and fallback events.
func telemetryPipeline() caudal.Step {
	trim := func(_ context.Context, v any) (any, error) { return strings.TrimSpace(fmt.Sprint(v)), nil }
	nonEmpty := func(_ context.Context, out any) error {
		if out == "" {
			return errors.New("empty output")
		}
		return nil
	}
	flaky := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		if caudal.Attempt(ctx) == 1 {
			return caudal.Reply{}, errTransient
		}
		return caudal.Reply{Output: in}, nil
	})
	down := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errPrimary })
	return caudal.Seq("answer",
		caudal.AgentStep("draft", unlimitedAgent(),
			caudal.WithRetries(2), caudal.WithBackoff(0, 0), caudal.WithTimeout(time.Second),
			caudal.WithPromptProcessors(trim), caudal.WithOutputProcessors(trim), caudal.WithValidators(nonEmpty)),
		caudal.AgentStep("refine", flaky, caudal.WithRetries(2), caudal.WithBackoff(0, 0)),
		caudal.AgentStep("publish", down, caudal.WithFallback(caudal.AgentStep("backup", unlimitedAgent()))),
	)
}

// memorySteps is the length of the memory scenario's sequence.
const memorySteps = 8

// memoryScenario is the object pool's workload: bytes the executor
// allocates for itself and drops once the execute ends, not the caller's
// result nor stdlib timers. Every step of an 8-step sequence fails twice
// with a transient error and retries with no backoff (attempt contexts,
// events, error bookkeeping); the odd steps fail their third attempt too
// and go to their fallback (the fallback's frame and metadata); a metrics
// sink counts the events (so event records are built) without keeping
// them. The agents answer constants: they allocate nothing.
//
// The split of its bytes is measured, and regenerated by
//
//	go test -run TestMemoryScenarioBytesAreTheExecutors -v ./perf/
//
// which profiles every allocation of 200 executes (MemProfileRate 1),
// attributes each to the innermost frame of this module on its stack, and
// weighs what the returned results keep alive across a GC; it fails below
// 70 % of the bytes the executor's own. At db0af59 it printed, on the
// baseline: 15,299 B/op and 103 allocs/op, all allocated by the library —
// event records 69 %, result metadata maps 9 %, the sequence's child
// results 8 %, attempt contexts 7 %, fallback results 4 %, failed-attempt
// records 3 % — of which the returned result keeps 3,177 B/op (21 %) and
// 16.6 allocs/op: 79 % of the bytes and 84 % of the allocations are the
// executor's own, dropped when the execute ends.
func memoryScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioMemory), Suite: suite, Executes: 1,
		Configure: func() ([]caudal.Option, func(Executor) (*Workload, error)) {
			metrics := &fanoutSink{}
			return []caudal.Option{caudal.WithSink(metrics)}, func(ex Executor) (*Workload, error) {
				step, err := build(memoryPipeline())
				return &Workload{Run: func(ctx context.Context, _ int) error {
					res, err := ex.Execute(ctx, step, "input")
					if err == nil && res.Output != "backup" {
						err = fmt.Errorf("output %v; want the last step's fallback answer", res.Output)
					}
					return err
				}}, err
			}
		},
	}
}

// memoryPipeline is the memory scenario's sequence.
func memoryPipeline() caudal.Step {
	recovers := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		if caudal.Attempt(ctx) < 3 {
			return caudal.Reply{}, errTransient
		}
		return caudal.Reply{Output: "recovered"}, nil
	})
	down := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errTransient })
	backup := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{Output: "backup"}, nil })
	steps := make([]caudal.Step, memorySteps)
	for i := range steps {
		agent := recovers
		if i%2 == 1 {
			agent = down
		}
		steps[i] = caudal.AgentStep(fmt.Sprint("step", i), agent, caudal.WithRetries(2), caudal.WithBackoff(0, 0),
			caudal.WithFallback(caudal.AgentStep("backup", backup)))
	}
	return caudal.Seq("memory_intensive", steps...)
}

// The map scenarios' shape.
const (
	mapItems      = 256
	mapFixedLimit = 10                   // the baseline's fixed limit, as the study set it
	mapIO         = 2 * time.Millisecond // an item's I/O wait
	mapCPU        = 20 * time.Microsecond
)

// mapInput is a map scenario's collection.
func mapInput() []any {
	items := make([]any, mapItems)
	for i := range items {
		items[i] = fmt.Sprint("item", i)
	}
	return items
}

// mapWorkload runs a map step over items and checks it answered for each.
func mapWorkload(ex Executor, step caudal.Step, items []any, after func() error) *Workload {
	return &Workload{Run: func(ctx context.Context, _ int) error {
		res, err := ex.Execute(ctx, step, items)
		if err != nil {
			return err
		}
		if out, ok := res.Output.([]any); !ok || len(out) != len(items) {
			return fmt.Errorf("map output %T of %d items; want %d", res.Output, len(out), len(items))
		}
		if after != nil {
			return after()
		}
		return nil
	}}
}

// concurrentScenario is the adaptive resource manager's I/O workload: a
// map whose items wait on I/O, held to the baseline's fixed limit.
func concurrentScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioConcurrent), Suite: suite, Executes: 1,
		Setup: func(ex Executor) (*Workload, error) {
			io := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
				return caudal.Reply{Output: in}, sleepCtx(ctx, mapIO)
			})
			step, err := build(caudal.Map("fetch_all", caudal.AgentStep("fetch", io), caudal.WithConcurrency(mapFixedLimit)))
			return mapWorkload(ex, step, mapInput(), nil), err
		},
	}
}

// The downstream scenario's service: a rate-limited API.
const (
	downstreamCapacity  = 16                   // calls it serves at once
	downstreamService   = 2 * time.Millisecond // a call's service time
	downstreamThrottle  = 1 * time.Millisecond // the extra service time of a call that queued
	downstreamBestLimit = 16                   // the best fixed limit of downstreamSweep
)

// downstream is a service with a capacity of concurrent calls: a call that
// finds a free slot is served in downstreamService; past capacity a call
// queues for a slot, and once served takes downstreamThrottle longer (it
// was throttled: the API answered 429 and the retried request costs it
// more). Going past capacity therefore loses throughput, so there is one
// best concurrency: the capacity. It is safe for concurrent use.
type downstream struct {
	slots  chan struct{}
	queued atomic.Int64 // calls that had to queue
}

func newDownstream(capacity int) *downstream {
	return &downstream{slots: make(chan struct{}, capacity)}
}

// call is one call to the service.
func (d *downstream) call(ctx context.Context) error {
	service := downstreamService
	select {
	case d.slots <- struct{}{}:
	default:
		d.queued.Add(1)
		select {
		case d.slots <- struct{}{}:
			service += downstreamThrottle
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	defer func() { <-d.slots }()
	return sleepCtx(ctx, service)
}

// downstreamStep is the downstream scenario's map at a fixed limit.
func downstreamStep(d *downstream, limit int) (caudal.Step, error) {
	api := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: in}, d.call(ctx)
	})
	return build(caudal.Map("call_api", caudal.AgentStep("call", api), caudal.WithConcurrency(limit)))
}

// downstreamScenario is the adaptive resource manager's capacity workload:
// a map calling a service that serves downstreamCapacity calls at once, at
// the fixed limit limit. The suite's baseline uses the best fixed limit
// (downstreamBestLimit, checked by a sweep in the tests), so the target is
// a cost: an adaptive limit must come within 20 % of it unconfigured.
func downstreamScenario(suite string, limit int) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioDownstream), Suite: suite, Executes: 1,
		Setup: func(ex Executor) (*Workload, error) {
			d := newDownstream(downstreamCapacity)
			step, err := downstreamStep(d, limit)
			return mapWorkload(ex, step, mapInput(), func() error {
				if n := len(d.slots); n != 0 {
					return fmt.Errorf("%d calls still in service after the map returned", n)
				}
				return nil
			}), err
		},
	}
}

// concurrentCPUScenario is the adaptive resource manager's no-harm
// workload: a map whose items only compute, where more concurrency than
// cores cannot help.
func concurrentCPUScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioConcurrentCPU), Suite: suite, Executes: 1,
		Setup: func(ex Executor) (*Workload, error) {
			spinRounds() // calibrated outside any timing
			cpu := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
				spinFor(mapCPU)
				return caudal.Reply{Output: in}, nil
			})
			step, err := build(caudal.Map("compute_all", caudal.AgentStep("compute", cpu), caudal.WithConcurrency(mapFixedLimit)))
			return mapWorkload(ex, step, mapInput(), nil), err
		},
	}
}

// The cache scenarios' agent and shape.
const (
	cacheAgentCost  = 50 * time.Microsecond // CPU per agent call: a fixed cost no timer floors
	cacheAgentSlice = 5 * time.Microsecond  // the agent yields the processor after each slice of work
	cacheHotKeys    = 4
	cacheHits       = 16 // hits per iteration
	cacheMissers    = 16 // concurrent identical misses per iteration
)

// cachePayload is the cached agent's answer, about 2 KB as JSON: a
// completion's text, its token log-probabilities and its usage.
var cachePayload = func() map[string]any {
	logprobs := make([]any, 64)
	for i := range logprobs {
		logprobs[i] = -float64(i%17) / 7
	}
	return map[string]any{
		"id":       "cmpl-7f3a9c",
		"model":    "bench-model",
		"text":     strings.Repeat("The cached answer. ", 64),
		"logprobs": logprobs,
		"usage":    map[string]any{"prompt_tokens": 212.0, "completion_tokens": 256.0},
	}
}()

// countingAgent is the cache scenarios' agent: it counts its calls and
// costs cacheAgentCost of CPU each, yielding every cacheAgentSlice, so
// concurrent calls all run (and all miss) rather than one per core.
type countingAgent struct{ calls atomic.Int64 }

func (a *countingAgent) Run(context.Context, any) (caudal.Reply, error) {
	a.calls.Add(1)
	spinYielding(cacheAgentCost, cacheAgentSlice)
	return caudal.Reply{Output: cachePayload}, nil
}

// cacheScenario is the cache component's hit workload: every execute is a
// hit on one of a few hot keys, warmed in Setup. Each must report
// MetaCacheHit and none may call the agent.
func cacheScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioCache), Suite: suite, Executes: cacheHits,
		Setup: func(ex Executor) (*Workload, error) {
			spinRounds() // calibrated outside any timing
			agent := &countingAgent{}
			cache, err := caudal.NewMemoryCache(1 << 10)
			if err != nil {
				return nil, err
			}
			step, err := build(caudal.Cached(caudal.AgentStep("lookup", agent), cache))
			if err != nil {
				return nil, err
			}
			hot := make([]any, cacheHotKeys)
			for k := range hot {
				hot[k] = map[string]any{"model": "bench-model", "prompt": fmt.Sprint("hot question ", k)}
				if err := once(context.Background(), ex, step, hot[k]); err != nil {
					return nil, fmt.Errorf("warming hot key %d: %w", k, err)
				}
			}
			if n := agent.calls.Load(); n != cacheHotKeys {
				return nil, fmt.Errorf("warming %d hot keys called the agent %d times", cacheHotKeys, n)
			}
			return &Workload{Run: func(ctx context.Context, _ int) error {
				before := agent.calls.Load()
				for k := range cacheHits {
					res, err := ex.Execute(ctx, step, hot[k%cacheHotKeys])
					if err != nil {
						return err
					}
					if res.Metadata[caudal.MetaCacheHit] != true {
						return fmt.Errorf("execute %d of hot key %d: not a cache hit", k, k%cacheHotKeys)
					}
				}
				if n := agent.calls.Load() - before; n != 0 {
					return fmt.Errorf("%d cache hits called the agent %d times", cacheHits, n)
				}
				return nil
			}}, nil
		},
	}
}

// cacheMissScenario is the cache component's miss workload: per iteration,
// cacheMissers concurrent executes of one fresh key. The agent must be
// called at least once for the key (a cache may not answer what it never
// computed) and at most once per execute; one call per key is the target.
// Prepare rebuilds the cached step over an empty cache and restarts the
// keys, so every batch sees the same state.
func cacheMissScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioCacheMiss), Suite: suite, Executes: cacheMissers,
		Setup: func(ex Executor) (*Workload, error) {
			spinRounds() // calibrated outside any timing
			agent := &countingAgent{}
			fresh := freshCached(caudal.AgentStep("lookup", agent))
			step, err := fresh()
			if err != nil {
				return nil, err
			}
			var keys []any
			var prepErr error
			return &Workload{
				Prepare: func(n int) {
					step, prepErr = fresh()
					keys = keys[:0]
					for i := range n {
						keys = append(keys, map[string]any{"model": "bench-model", "prompt": "fresh question", "n": i + 1})
					}
				},
				Run: func(ctx context.Context, i int) error {
					if prepErr != nil {
						return prepErr
					}
					before := agent.calls.Load()
					if err := fanOut(cacheMissers, func() error { return once(ctx, ex, step, keys[i]) }); err != nil {
						return err
					}
					if n := agent.calls.Load() - before; n < 1 || n > cacheMissers {
						return fmt.Errorf("%d concurrent executes of a fresh key called the agent %d times; want 1 to %d", cacheMissers, n, cacheMissers)
					}
					return nil
				},
			}, nil
		},
	}
}

// contextScenario is the context manager's workload.
func contextScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioContext), Suite: suite, Executes: 1,
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
	}
}

// errorScenario is the error handling component's workload.
func errorScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioError), Suite: suite, Executes: 1,
		Setup: func(ex Executor) (*Workload, error) {
			bad := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errPermanent })
			step, err := build(caudal.AgentStep("permanent", bad, caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, time.Millisecond)))
			return &Workload{Run: func(ctx context.Context, _ int) error {
				res, err := ex.Execute(ctx, step, "q")
				if !errors.Is(err, errPermanent) {
					return fmt.Errorf("want the permanent error, got %v", err)
				}
				if res.Usage != (caudal.Usage{}) {
					return fmt.Errorf("usage %+v; want none: the agent reports none", res.Usage)
				}
				return nil
			}}, err
		},
	}
}

// The outage scenario's shape. The outage is long against the bound on
// noticing its end, so that a breaker can win the target (+90 %) and still
// notice recovery: opening after a few timeouts and letting one call in 20
// through as a probe costs it about 8 of the baseline's 100 timeouts.
const (
	outageCalls         = 120              // calls per iteration
	outageDown          = 100              // the first calls, during the outage
	outageRecoveryCalls = 20               // the healthy call by which the primary must answer again
	outageTimeout       = time.Millisecond // the primary's timeout
	outagePrimaryAnswer = "primary answer"
	outageBackupAnswer  = "backup answer"
)

// outageScenario is the circuit breaker's workload: an outage that ends.
// Each iteration makes outageCalls sequential calls to a step with a
// timeout and a fallback; during the first outageDown the primary hangs
// until its timeout, then it answers at once. From the outageRecoveryCalls-th
// healthy call on, the primary must answer: a breaker may skip a dead
// agent, but must notice it is back.
func outageScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioOutage), Suite: suite, Executes: outageCalls,
		Setup: func(ex Executor) (*Workload, error) {
			var down atomic.Bool
			primary := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
				if down.Load() {
					<-ctx.Done()
					return caudal.Reply{}, context.Cause(ctx)
				}
				return caudal.Reply{Output: outagePrimaryAnswer}, nil
			})
			backup := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
				return caudal.Reply{Output: outageBackupAnswer}, nil
			})
			step, err := build(caudal.AgentStep("flaky_model", primary, caudal.WithTimeout(outageTimeout),
				caudal.WithFallback(caudal.AgentStep("backup", backup))))
			return &Workload{Run: func(ctx context.Context, _ int) error {
				for j := range outageCalls {
					down.Store(j < outageDown)
					res, err := ex.Execute(ctx, step, "q")
					if err != nil {
						return fmt.Errorf("call %d: %w", j, err)
					}
					if healthy := j - outageDown + 1; healthy >= outageRecoveryCalls && res.Output != outagePrimaryAnswer {
						return fmt.Errorf("healthy call %d after the outage answered %v; the primary must answer from healthy call %d on", healthy, res.Output, outageRecoveryCalls)
					}
				}
				return nil
			}}, err
		},
	}
}

// breakerSuccessScenario is the circuit breaker's cost workload: the
// success path of a healthy agent step, where a closed breaker can only
// add work.
func breakerSuccessScenario(suite string) Scenario {
	return Scenario{
		ScenarioInfo: info(ScenarioBreakerSuccess), Suite: suite, Executes: 1,
		Setup: func(ex Executor) (*Workload, error) {
			step, err := build(caudal.AgentStep("healthy_model", unlimitedAgent()))
			return &Workload{Run: func(ctx context.Context, _ int) error { return once(ctx, ex, step, "q") }}, err
		},
	}
}
