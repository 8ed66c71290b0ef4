package optimize_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		give func(c *optimize.Config)
		want string // a field the error must name; "" for a valid config
	}{
		{"zero", func(*optimize.Config) {}, ""},
		{"buffer negative", func(c *optimize.Config) { c.Telemetry.BufferSize = -1 }, "Telemetry.BufferSize"},
		{"buffer huge", func(c *optimize.Config) { c.Telemetry.BufferSize = 1 << 30 }, "Telemetry.BufferSize"},
		{"bucket zero", func(c *optimize.Config) { c.Telemetry.LatencyBuckets = []time.Duration{0} }, "Telemetry.LatencyBuckets[0]"},
		{"buckets descending", func(c *optimize.Config) {
			c.Telemetry.LatencyBuckets = []time.Duration{time.Second, time.Millisecond}
		}, "Telemetry.LatencyBuckets[1]"},
		{"min limit negative", func(c *optimize.Config) { c.AdaptiveResourceManager.MinLimit = -2 }, "AdaptiveResourceManager.MinLimit"},
		{"max limit negative", func(c *optimize.Config) { c.AdaptiveResourceManager.MaxLimit = -2 }, "AdaptiveResourceManager.MaxLimit"},
		{"min above max", func(c *optimize.Config) {
			c.AdaptiveResourceManager.MinLimit, c.AdaptiveResourceManager.MaxLimit = 9, 3
		}, "AdaptiveResourceManager.MinLimit"},
		{"initial outside", func(c *optimize.Config) {
			c.AdaptiveResourceManager.InitialLimit, c.AdaptiveResourceManager.MaxLimit = 500, 100
		}, "AdaptiveResourceManager.InitialLimit"},
		{"tolerance below one", func(c *optimize.Config) { c.AdaptiveResourceManager.Tolerance = 0.5 }, "AdaptiveResourceManager.Tolerance"},
		{"backoff one", func(c *optimize.Config) { c.AdaptiveResourceManager.Backoff = 1 }, "AdaptiveResourceManager.Backoff"},
		{"memory negative", func(c *optimize.Config) { c.AdaptiveResourceManager.MemoryLimit = -1 }, "AdaptiveResourceManager.MemoryLimit"},
		{"threshold above one", func(c *optimize.Config) {
			c.AdaptiveResourceManager.MemoryLimit, c.AdaptiveResourceManager.PressureThreshold = 1<<30, 1.5
		}, "AdaptiveResourceManager.PressureThreshold"},
		{"interval tiny", func(c *optimize.Config) {
			c.AdaptiveResourceManager.MemoryLimit, c.AdaptiveResourceManager.PressureInterval = 1<<30, time.Microsecond
		}, "AdaptiveResourceManager.PressureInterval"},
		{"pressure without a limit", func(c *optimize.Config) { c.AdaptiveResourceManager.PressureThreshold = 0.5 }, "set MemoryLimit or GOMEMLIMIT"},
		{"shards negative", func(c *optimize.Config) { c.CacheOptimization.Shards = -1 }, "CacheOptimization.Shards"},
		{"capacity below shards", func(c *optimize.Config) {
			c.CacheOptimization.Capacity, c.CacheOptimization.Shards = 3, 8
		}, "CacheOptimization.Capacity"},
		{"ttl negative", func(c *optimize.Config) { c.CacheOptimization.TTL = -time.Second }, "CacheOptimization.TTL"},
		{"rule unknown class", func(c *optimize.Config) {
			c.ErrorHandling.Rules = []optimize.ErrorRule{optimize.Sentinel(io.EOF, optimize.ClassTransient), optimize.Sentinel(io.EOF, "fatal")}
		}, "ErrorHandling.Rules[1]"},
		{"rule circuit_open class", func(c *optimize.Config) {
			c.ErrorHandling.Rules = []optimize.ErrorRule{optimize.Sentinel(io.EOF, optimize.ClassCircuitOpen)}
		}, "ErrorHandling.Rules[0]"},
		{"rule nil sentinel", func(c *optimize.Config) {
			c.ErrorHandling.Rules = []optimize.ErrorRule{optimize.Sentinel(nil, optimize.ClassPermanent)}
		}, "matches nothing"},
		{"rule no codes", func(c *optimize.Config) {
			c.ErrorHandling.Rules = []optimize.ErrorRule{optimize.StatusCodes(optimize.ClassPermanent)}
		}, "matches nothing"},
		{"rule nil func", func(c *optimize.Config) {
			c.ErrorHandling.Rules = []optimize.ErrorRule{optimize.MatchFunc("f", nil, optimize.ClassPermanent)}
		}, "matches nothing"},
		{"rule negative retry-after", func(c *optimize.Config) {
			r := optimize.StatusCodes(optimize.ClassRateLimited, 420)
			r.RetryAfter = -time.Second
			c.ErrorHandling.Rules = []optimize.ErrorRule{r}
		}, "RetryAfter"},
		{"consecutive negative", func(c *optimize.Config) { c.CircuitBreaker.ConsecutiveFailures = -1 }, "CircuitBreaker.ConsecutiveFailures"},
		{"rate above one", func(c *optimize.Config) { c.CircuitBreaker.FailureRate = 1.5 }, "CircuitBreaker.FailureRate"},
		{"rate negative", func(c *optimize.Config) { c.CircuitBreaker.FailureRate = -0.1 }, "CircuitBreaker.FailureRate"},
		{"rate NaN", func(c *optimize.Config) { c.CircuitBreaker.FailureRate = math.NaN() }, "CircuitBreaker.FailureRate"},
		{"window negative", func(c *optimize.Config) { c.CircuitBreaker.Window = -1 }, "CircuitBreaker.Window"},
		{"window huge", func(c *optimize.Config) { c.CircuitBreaker.Window = 1 << 20 }, "CircuitBreaker.Window"},
		{"probe interval negative", func(c *optimize.Config) { c.CircuitBreaker.ProbeInterval = -time.Second }, "CircuitBreaker.ProbeInterval"},
		{"probe every below -1", func(c *optimize.Config) { c.CircuitBreaker.ProbeEvery = -2 }, "CircuitBreaker.ProbeEvery"},
		{"half-open probes negative", func(c *optimize.Config) { c.CircuitBreaker.HalfOpenProbes = -1 }, "CircuitBreaker.HalfOpenProbes"},
		{"valid breaker and rules", func(c *optimize.Config) {
			c.ErrorHandling = optimize.ErrorHandlingConfig{Enabled: true, Rules: []optimize.ErrorRule{
				optimize.Sentinel(io.EOF, optimize.ClassTransient),
				optimize.ErrorType[*os.PathError](optimize.ClassPermanent),
				optimize.StatusCodes(optimize.ClassRateLimited, 420),
				optimize.MatchFunc("any", func(error) bool { return true }, optimize.ClassTimeout),
			}}
			c.CircuitBreaker = optimize.CircuitBreakerConfig{
				Enabled: true, ConsecutiveFailures: 5, FailureRate: 1, Window: 1 << 16,
				ProbeInterval: time.Millisecond, ProbeEvery: -1, HalfOpenProbes: 3,
			}
		}, ""},
		{"valid knobs", func(c *optimize.Config) {
			*c = optimize.All()
			c.Telemetry.BufferSize, c.Telemetry.LatencyBuckets = 100, []time.Duration{time.Millisecond, time.Second}
			c.AdaptiveResourceManager = optimize.AdaptiveConfig{
				Enabled: true, InitialLimit: 8, MinLimit: 2, MaxLimit: 64,
				Tolerance: 2, Backoff: 0.5, MemoryLimit: 1 << 30, PressureThreshold: 0.7, PressureInterval: time.Second,
			}
			c.CacheOptimization = optimize.CacheConfig{Enabled: true, Shards: 4, Capacity: 100, TTL: time.Hour, WithoutFlight: true}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c optimize.Config
			tt.give(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestPresetsAreValid(t *testing.T) {
	for _, name := range []string{"high-allocation", "large-context", "batch", "real-time", "memory-constrained", "cpu-intensive", "all", "auto"} {
		cfg, ok := optimize.Preset(name)
		if !ok {
			t.Fatalf("Preset(%q) missing", name)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Preset(%q).Validate() = %v", name, err)
		}
		if !cfg.Enabled() {
			t.Errorf("Preset(%q) turns nothing on", name)
		}
	}
	if got := optimize.All().Components(); len(got) != 6 || slices.Contains(got, "automatic-optimization") || slices.Contains(got, "circuit-breaker") {
		t.Errorf("All() turns on %q; want every component but automatic-optimization and circuit-breaker", got)
	}
	if _, ok := optimize.Preset("turbo"); ok {
		t.Error(`Preset("turbo") found`)
	}
}

func TestUseInvalidConfigFailsNew(t *testing.T) {
	var c optimize.Config
	c.Telemetry.BufferSize = -5
	ex, err := caudal.New(optimize.Use(c))
	if err == nil {
		mustClose(t, ex)
		t.Fatal("New with an invalid config succeeded")
	}
	for _, want := range []string{"optimize.Use", "Telemetry.BufferSize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not name %s", err, want)
		}
	}
}

func TestStatsOf(t *testing.T) {
	ex, err := caudal.New(optimize.Use(optimize.LargeContext()))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, ex)
	st, ok := optimize.StatsOf(ex)
	if !ok || strings.Join(st.Components, ",") != "object-pool,context-manager" {
		t.Errorf("StatsOf = %+v, %v; want the large-context components", st, ok)
	}
	plain, err := caudal.New()
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, plain)
	if _, ok := optimize.StatsOf(plain); ok {
		t.Error("StatsOf(an executor without the layer) reported ok")
	}
}

func TestExecutorsAreCollected(t *testing.T) {
	// StatsOf's registry holds each layer until its executor is collected:
	// nothing a layer keeps may lead back to the executor, or none would
	// ever go. (The tuner kept a pointer into the executor: every executor
	// with the automatic optimization stayed, with its telemetry ring.)
	// Each executor runs a pipeline built for it and one shared by all;
	// auto twice, so that one is not the shared pipeline's first executor
	// (which keeps its switches in the pipeline, the other a record of it).
	shared := memoryPipeline(t)
	presets := []string{"all", "auto", "high-allocation", "large-context", "batch", "real-time", "memory-constrained", "cpu-intensive", "auto"}
	collected := make([]atomic.Bool, len(presets))
	for i := range collected {
		cfg, _ := optimize.Preset(presets[i])
		ex, err := caudal.New(caudal.WithSink(discard{}), optimize.Use(cfg))
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []caudal.Step{shared, memoryPipeline(t)} {
			for range 20 {
				if _, err := ex.Execute(t.Context(), step, "in"); err != nil {
					t.Fatalf("%s: Execute = %v; want success", presets[i], err)
				}
			}
		}
		mustClose(t, ex)
		runtime.AddCleanup(ex, func(i int) { collected[i].Store(true) }, i)
	}
	all := func() bool {
		for i := range collected {
			if !collected[i].Load() {
				return false
			}
		}
		return true
	}
	for try := 0; try < 100 && !all(); try++ {
		runtime.GC()
		time.Sleep(time.Millisecond) // cleanups run on their own goroutine
	}
	for i := range collected {
		if !collected[i].Load() {
			t.Errorf("executor %d (%s) was never collected", i, presets[i])
		}
	}
	runtime.KeepAlive(shared)
}

// memoryPipeline is the designed memory scenario's shape: 8 steps that
// fail and retry, odd ones falling back, every event built for a sink.
func memoryPipeline(t testing.TB) caudal.Step {
	errT := errors.New("transient")
	recovers := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		if caudal.Attempt(ctx) < 3 {
			return caudal.Reply{}, errT
		}
		return caudal.Reply{Output: "recovered"}, nil
	})
	down := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errT })
	backup := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{Output: "backup"}, nil })
	steps := make([]caudal.Step, 8)
	for i := range steps {
		agent := recovers
		if i%2 == 1 {
			agent = down
		}
		steps[i] = caudal.AgentStep(fmt.Sprint("step", i), agent, caudal.WithRetries(2), caudal.WithBackoff(0, 0),
			caudal.WithFallback(caudal.AgentStep("backup", backup)))
	}
	s, err := caudal.Build(caudal.Seq("memory_intensive", steps...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// discard is a sink that keeps nothing.
type discard struct{}

func (discard) Record(context.Context, *caudal.Event) {}

func TestObjectPoolAllocatesLess(t *testing.T) {
	step := memoryPipeline(t)
	allocs := func(opts ...caudal.Option) float64 {
		ex, err := caudal.New(append(opts, caudal.WithSink(discard{}))...)
		if err != nil {
			t.Fatal(err)
		}
		defer mustClose(t, ex)
		return testing.AllocsPerRun(200, func() {
			if _, err := ex.Execute(context.Background(), step, "in"); err != nil {
				t.Fatal(err)
			}
		})
	}
	base := allocs()
	pooled := allocs(optimize.Use(optimize.HighAllocation()))
	if pooled > 0.7*base {
		t.Errorf("allocs per execute: %v pooled, %v baseline; want at least 30%% fewer", pooled, base)
	}
}

// keeper is a sink that copies every event it is given, as the Sink
// contract asks, and checks none is handed to it twice while it holds it.
type keeper struct{ events []caudal.Event }

func (k *keeper) Record(_ context.Context, e *caudal.Event) { k.events = append(k.events, *e) }

func TestObjectPoolNeverRecyclesWhatTheCallerKeeps(t *testing.T) {
	step := memoryPipeline(t)
	k := &keeper{}
	ex, err := caudal.New(caudal.WithSink(k), optimize.Use(optimize.HighAllocation()))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, ex)
	var kept []caudal.StepResult
	var frozen []string
	for range 50 {
		res, err := ex.Execute(context.Background(), step, "in")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res)
		kept, frozen = append(kept, res), append(frozen, string(b))
	}
	for i, res := range kept {
		if b, _ := json.Marshal(res); string(b) != frozen[i] {
			t.Fatalf("result %d changed after later executes:\n was %s\n now %s", i, frozen[i], b)
		}
	}
	first := k.events[:len(k.events)/50]
	for i, e := range k.events {
		w := first[i%len(first)]
		if e.Kind != w.Kind || e.Path != w.Path || e.Attempt != w.Attempt {
			t.Fatalf("event %d = %v %s #%d; want %v %s #%d (a recycled event leaked into another)", i, e.Kind, e.Path, e.Attempt, w.Kind, w.Path, w.Attempt)
		}
	}
}

// wideState is a state of n keys, each a small nested value.
func wideState(n int) *caudal.State {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("key%04d", i)] = map[string]any{"n": float64(i), "tags": []any{"a", "b"}, "meta": map[string]any{"owner": "bench"}}
	}
	return caudal.NewState(m)
}

// fanOut8 is the designed context scenario's shape: 8 branches, each
// writing 2 keys.
func fanOut8(t testing.TB) caudal.Step {
	opts := []caudal.StepOption{caudal.WithMerge(caudal.ContextUpdate)}
	for b := range 8 {
		w := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			s := caudal.StateFrom(ctx)
			s.Set(fmt.Sprintf("branch%d_a", b), float64(b))
			s.Set(fmt.Sprintf("branch%d_b", b), float64(b))
			return caudal.Reply{Output: in}, nil
		})
		opts = append(opts, caudal.Branch(fmt.Sprint("b", b), caudal.AgentStep("write", w)))
	}
	s, err := caudal.Build(caudal.Parallel("fan_out", opts...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContextManagerForksWithoutCopying(t *testing.T) {
	step := fanOut8(t)
	allocs := func(opts ...caudal.Option) float64 {
		ex, err := caudal.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer mustClose(t, ex)
		st := wideState(1000)
		return testing.AllocsPerRun(5, func() {
			if _, err := ex.Execute(context.Background(), step, "q", caudal.WithState(st)); err != nil {
				t.Fatal(err)
			}
		})
	}
	base := allocs()
	cow := allocs(optimize.Use(optimize.Config{ContextManager: optimize.ContextManagerConfig{Enabled: true}}))
	if cow*10 > base {
		t.Errorf("allocs per 8-way fan-out over 1,000 keys: %v copy-on-write, %v baseline; want at least 10× fewer", cow, base)
	}
}

func TestContextManagerIsolatesNestedValues(t *testing.T) {
	// A branch mutating a nested value it read must not change the parent's,
	// nor a sibling's view of it.
	mutated := make(chan struct{})
	mutate := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		defer close(mutated)
		v, _ := caudal.Get[map[string]any](caudal.StateFrom(ctx), "doc")
		v["owner"] = "branch" // the branch's own copy
		v["tags"].([]any)[0] = "changed"
		return caudal.Reply{Output: in}, nil
	})
	read := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		select { // the branches run at once: read after the sibling's mutation
		case <-mutated:
		case <-ctx.Done():
			return caudal.Reply{}, ctx.Err()
		}
		v, _ := caudal.Get[map[string]any](caudal.StateFrom(ctx), "doc")
		return caudal.Reply{Output: fmt.Sprint(v["owner"], v["tags"])}, nil
	})
	step, err := caudal.Build(caudal.Parallel("p", caudal.Branch("mutate", caudal.AgentStep("m", mutate)),
		caudal.Branch("read", caudal.AgentStep("r", read)), caudal.WithMerge(caudal.NoMerge)))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := caudal.New(optimize.Use(optimize.Config{ContextManager: optimize.ContextManagerConfig{Enabled: true}}))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, ex)
	st := caudal.NewState(map[string]any{"doc": map[string]any{"owner": "parent", "tags": []any{"a"}}})
	res, err := ex.Execute(context.Background(), step, "in", caudal.WithState(st))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Output.(map[string]any)["read"]; got != "parent[a]" {
		t.Errorf("the sibling read %v; want parent[a]", got)
	}
	if b, _ := st.MarshalJSON(); string(b) != `{"doc":{"owner":"parent","tags":["a"]}}` {
		t.Errorf("parent state = %s; want it unchanged", b)
	}
}

func TestContextManagerRetriesCostTheSameOnAnyState(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not exact under the race detector")
	}
	retried := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	step, err := caudal.Build(caudal.AgentStep("retried", retried, caudal.WithRetries(3)))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := caudal.New(optimize.Use(optimize.Config{ContextManager: optimize.ContextManagerConfig{Enabled: true}}))
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, ex)
	allocs := func(n int) float64 {
		st := wideState(n)
		return testing.AllocsPerRun(50, func() {
			if _, err := ex.Execute(context.Background(), step, "in", caudal.WithState(st)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a8, a1024 := allocs(8), allocs(1024); a1024 != a8 {
		t.Errorf("allocs per retried execute: %v on 1,024 keys, %v on 8; want the same", a1024, a8)
	}
}

func TestCloseIsIdempotentAndExecutesFailAfter(t *testing.T) {
	ex, err := caudal.New(caudal.WithSink(discard{}), optimize.Use(optimize.All()))
	if err != nil {
		t.Fatal(err)
	}
	step := memoryPipeline(t)
	if _, err := ex.Execute(context.Background(), step, "in"); err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := ex.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := ex.Execute(context.Background(), step, "in"); !errors.Is(err, caudal.ErrClosed) {
		t.Fatalf("Execute after Close = %v; want ErrClosed", err)
	}
}

func TestDisabledComponentsCostNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not exact under the race detector")
	}
	// An executor built with the layer and every component off allocates
	// exactly what the baseline does, on every kind of step.
	steps := map[string]caudal.Step{"memory": memoryPipeline(t), "fan-out": fanOut8(t)}
	for name, step := range steps {
		allocs := func(opts ...caudal.Option) float64 {
			ex, err := caudal.New(append(opts, caudal.WithSink(discard{}))...)
			if err != nil {
				t.Fatal(err)
			}
			defer mustClose(t, ex)
			st := wideState(16)
			return testing.AllocsPerRun(100, func() {
				if _, err := ex.Execute(context.Background(), step, "in", caudal.WithState(st)); err != nil {
					t.Fatal(err)
				}
			})
		}
		if base, off := allocs(), allocs(optimize.Use(optimize.Config{})); off != base {
			t.Errorf("%s: %v allocs per execute with every component off; the baseline makes %v", name, off, base)
		}
	}
}

func TestAdaptiveLeavesUncappedParallelTogether(t *testing.T) {
	// Branches that wait on one another need to run at once: a parallel
	// step without WithConcurrency is never limited, even to a limit of 1.
	const n = 4
	var arrived sync.WaitGroup
	arrived.Add(n)
	barrier := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		arrived.Done()
		done := make(chan struct{})
		go func() { arrived.Wait(); close(done) }()
		select {
		case <-done:
			return caudal.Reply{Output: in}, nil
		case <-ctx.Done():
			return caudal.Reply{}, ctx.Err()
		}
	})
	var opts []caudal.StepOption
	for i := range n {
		opts = append(opts, caudal.Branch(fmt.Sprint("b", i), caudal.AgentStep("wait", barrier)))
	}
	step := build(t, caudal.Parallel("together", opts...))
	ex := newExecutor(t, optimize.Use(optimize.Config{AdaptiveResourceManager: optimize.AdaptiveConfig{Enabled: true, InitialLimit: 1, MaxLimit: 1}}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ex.Execute(ctx, step, "in"); err != nil {
		t.Fatalf("Execute = %v; want every branch to run at once and meet", err)
	}
}
