package optimize_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// decisions is a sink that keeps the automatic optimization's decisions.
type decisions struct {
	mu  sync.Mutex
	got []string // "path: reason"
}

func (d *decisions) Record(_ context.Context, e *caudal.Event) {
	if e.Kind != caudal.EventTuned {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, e.Path+": "+e.Reason)
}

func (d *decisions) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

// find returns the first decision with prefix.
func (d *decisions) find(prefix string) (string, bool) {
	for _, s := range d.all() {
		if strings.HasPrefix(s, prefix) {
			return s, true
		}
	}
	return "", false
}

// executeUntil executes step with in on ex until d holds a decision with
// prefix, for at most 5 s (the caller checks that it came).
func executeUntil(t *testing.T, ex *caudal.Executor, step caudal.Step, in any, d *decisions, prefix string, opts ...caudal.Option) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := d.find(prefix); ok {
			return
		}
		_, _ = ex.Execute(t.Context(), step, in, opts...)
	}
}

// fastAuto is the Auto preset with a 1 ms period.
func fastAuto(hold int) optimize.Config {
	cfg := optimize.Auto()
	cfg.AutomaticOptimization.Interval = time.Millisecond
	cfg.AutomaticOptimization.Hold = hold
	return cfg
}

// statusError is an error exposing an HTTP status, as an SDK's does.
type statusError struct{ code int }

func (e *statusError) Error() string   { return fmt.Sprintf("HTTP %d", e.code) }
func (e *statusError) StatusCode() int { return e.code }

func largeState() map[string]any {
	docs := make(map[string]any, 300)
	for i := range 300 {
		docs[fmt.Sprint("doc", i)] = map[string]any{"id": i}
	}
	return map[string]any{"docs": docs}
}

// TestAutoSwitchesOnThePattern: each pattern, shown by one step, switches
// its component on for that step — with a decision event naming the
// component and the counts — and for no other step.
func TestAutoSwitchesOnThePattern(t *testing.T) {
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	hang := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		<-ctx.Done()
		return caudal.Reply{}, context.Cause(ctx)
	})
	bad := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, &statusError{400} })
	wait := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		time.Sleep(100 * time.Microsecond)
		return caudal.Reply{Output: in}, nil
	})
	cache, err := caudal.NewMemoryCache(16)
	if err != nil {
		t.Fatal(err)
	}
	fanOut := func() caudal.Step {
		return caudal.Parallel("fan", caudal.WithMerge(caudal.ContextUpdate),
			caudal.Branch("x", caudal.AgentStep("x", echo)), caudal.Branch("y", caudal.AgentStep("y", echo)))
	}
	// hot cycles over 4 hot prompts.
	hot := func(i int) any {
		return map[string]any{"model": "bench-model", "prompt": fmt.Sprint("hot question ", i%4)}
	}
	tests := []struct {
		name      string
		step      caudal.Step
		state     bool // run on a large state
		input     func(i int) any
		together  int // executes of each input at once
		component string
		wantPath  string
	}{
		{"large state fanned out", caudal.Seq("p", caudal.AgentStep("plain", echo), fanOut()), true, nil, 1, "context-manager", "p/fan"},
		{"repeated inputs", caudal.Seq("p", caudal.AgentStep("plain", echo), caudal.Cached(caudal.AgentStep("c", echo), cache)), false, nil, 1, "cache-optimization", "p/c"},
		{"hot inputs", caudal.Cached(caudal.AgentStep("c", echo), cache), false, hot, 1, "cache-optimization", "c"},
		{"concurrent identical misses", caudal.Cached(caudal.AgentStep("c", wait), cache), false, func(i int) any { return i }, 8, "cache-optimization", "c"},
		{"permanent errors retried", caudal.AgentStep("bad", bad, caudal.WithRetries(2), caudal.WithBackoff(0, 0)), false, nil, 1, "error-handling", "bad"},
		{"timeouts", caudal.AgentStep("slow", hang, caudal.WithTimeout(time.Millisecond), caudal.WithFallback(caudal.AgentStep("fb", echo))), false, nil, 1, "circuit-breaker", "slow"},
		{"a capped fan-out", caudal.Map("m", caudal.AgentStep("item", wait), caudal.WithConcurrency(2)), false, nil, 1, "adaptive-resource-manager", "m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &decisions{}
			ex := newExecutor(t, caudal.WithSink(d), optimize.Use(fastAuto(1000)))
			step := build(t, tt.step)
			in := any("q")
			if tt.component == "adaptive-resource-manager" {
				in = []any{1, 2, 3, 4, 5, 6, 7, 8}
			}
			deadline := time.Now().Add(5 * time.Second)
			for i := 0; ; i++ {
				var opts []caudal.Option
				if tt.state {
					opts = append(opts, caudal.WithState(caudal.NewState(largeState())))
				}
				if tt.input != nil {
					in = tt.input(i)
				}
				var wg sync.WaitGroup
				for range tt.together {
					wg.Go(func() { _, _ = ex.Execute(t.Context(), step, in, opts...) })
				}
				wg.Wait()
				if _, ok := d.find(tt.wantPath + ": " + tt.component + " on: "); ok || time.Now().After(deadline) {
					break
				}
			}
			got, ok := d.find(tt.wantPath + ": " + tt.component + " on: ")
			if !ok {
				t.Fatalf("decisions = %q; want %s switched on for %s", d.all(), tt.component, tt.wantPath)
			}
			if !strings.ContainsAny(got, "0123456789") {
				t.Errorf("decision %q gives no count", got)
			}
			for _, other := range d.all() {
				if !strings.HasPrefix(other, tt.wantPath+": ") {
					t.Errorf("decision %q for another step; want decisions for %s only", other, tt.wantPath)
				}
			}
		})
	}
}

// TestAutoLeavesMissThenHit: a cache step whose every input misses, then
// hits once — the seed's cache shape — shows neither pattern of the cache
// optimization, whose in-process cache and flight group would only cost
// it: the tuner leaves it off.
func TestAutoLeavesMissThenHit(t *testing.T) {
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	d := &decisions{}
	ex := newExecutor(t, caudal.WithSink(d), optimize.Use(fastAuto(1000)))
	var step caudal.Step
	for i := range 2000 {
		if i%10 == 0 { // rebuilt over an empty cache, as the suite does per batch: the same keys again
			cache, err := caudal.NewMemoryCache(16)
			if err != nil {
				t.Fatal(err)
			}
			step = build(t, caudal.Cached(caudal.AgentStep("c", echo), cache))
		}
		in := map[string]any{"test": "cache", "value": i % 10}
		for range 2 {
			if _, err := ex.Execute(t.Context(), step, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(5 * time.Millisecond) // a few periods
	if got := d.all(); len(got) != 0 {
		t.Errorf("decisions = %q; want none", got)
	}
}

// TestAutoErrorHandlingTakesEffect: once the tuner switched error handling
// on for a step retrying a permanent error, the step stops retrying it —
// same error, same usage, one attempt — and the class is in its metadata.
func TestAutoErrorHandlingTakesEffect(t *testing.T) {
	var calls atomic.Int64
	bad := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		calls.Add(1)
		return caudal.Reply{}, &statusError{400}
	})
	d := &decisions{}
	ex := newExecutor(t, caudal.WithSink(d), optimize.Use(fastAuto(1000)))
	step := build(t, caudal.AgentStep("bad", bad, caudal.WithRetries(3), caudal.WithBackoff(0, 0)))
	executeUntil(t, ex, step, "q", d, "bad: error-handling on")
	before := calls.Load()
	res, err := ex.Execute(t.Context(), step, "q")
	var se *statusError
	if !errors.As(err, &se) || calls.Load()-before != 1 || res.Attempts != 1 || res.Metadata[caudal.MetaErrorClass] != optimize.ClassPermanent {
		t.Errorf("after the switch: err %v, agent calls %d, attempts %d, class %v; want the 400, 1, 1, permanent",
			err, calls.Load()-before, res.Attempts, res.Metadata[caudal.MetaErrorClass])
	}
}

// TestAutoSwitchesOffAfterHold: a component goes off again once its step
// has not shown the pattern for Hold periods.
func TestAutoSwitchesOffAfterHold(t *testing.T) {
	bad := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, &statusError{404} })
	d := &decisions{}
	ex := newExecutor(t, caudal.WithSink(d), optimize.Use(fastAuto(3)))
	step := build(t, caudal.AgentStep("bad", bad, caudal.WithRetries(2), caudal.WithBackoff(0, 0)))
	executeUntil(t, ex, step, "q", d, "bad: error-handling on")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := d.find("bad: error-handling off"); ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("decisions = %q; want error-handling on, then off once the step went quiet", d.all())
}

// TestAutoLeavesEnabledComponents: a component whose section is enabled is
// on for every step already; the tuner never switches it.
func TestAutoLeavesEnabledComponents(t *testing.T) {
	cfg := fastAuto(1000)
	cfg.ContextManager.Enabled = true
	d := &decisions{}
	ex := newExecutor(t, caudal.WithSink(d), optimize.Use(cfg))
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	step := build(t, caudal.Parallel("fan", caudal.Branch("x", caudal.AgentStep("x", echo)), caudal.Branch("y", caudal.AgentStep("y", echo))))
	for range 200 {
		if _, err := ex.Execute(t.Context(), step, "q", caudal.WithState(caudal.NewState(largeState()))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if st, _ := optimize.StatsOf(ex); st.Decisions != 0 || len(d.all()) != 0 {
		got := d.all()
		t.Errorf("decisions = %q; want none (the context manager is on for every step)", got)
	}
}

// TestAutoRemembersRebuiltSteps: a step built again from the same
// definition is the same step to the tuner: it starts with the components
// its earlier build was switched to, without another decision.
func TestAutoRemembersRebuiltSteps(t *testing.T) {
	cache, err := caudal.NewMemoryCache(16)
	if err != nil {
		t.Fatal(err)
	}
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	def := caudal.Cached(caudal.AgentStep("c", echo), cache)
	d := &decisions{}
	ex := newExecutor(t, caudal.WithSink(d), optimize.Use(fastAuto(1000)))
	first := build(t, def)
	executeUntil(t, ex, first, "q", d, "c: cache-optimization on: ")
	before, _ := optimize.StatsOf(ex)
	if want := map[string][]string{"c": {"cache-optimization"}}; !reflect.DeepEqual(before.Tuned, want) {
		t.Fatalf("Stats.Tuned = %v; want %v", before.Tuned, want)
	}
	rebuilt := build(t, def)
	for range 3 { // a hit offered twice to the near cache is taken, the third is served from it
		if _, err := ex.Execute(t.Context(), rebuilt, "q"); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := optimize.StatsOf(ex)
	if after.Decisions != before.Decisions || after.CacheEntries != before.CacheEntries+1 {
		t.Errorf("after 3 executes of the rebuilt step: %d decisions, %d near cache entries; want %d (no new one), %d (the rebuilt step's result taken by the near cache)",
			after.Decisions, after.CacheEntries, before.Decisions, before.CacheEntries+1)
	}
}

// TestAutoForgetsIdleSteps: rebuilds of one definition are one tracked
// step, and steps of definitions no longer executed are forgotten after
// Hold periods: a pipeline built per request does not grow the tuner.
func TestAutoForgetsIdleSteps(t *testing.T) {
	cache, err := caudal.NewMemoryCache(64)
	if err != nil {
		t.Fatal(err)
	}
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	ex := newExecutor(t, optimize.Use(fastAuto(50)))
	def := caudal.Cached(caudal.AgentStep("same", echo), cache)
	for range 50 {
		if _, err := ex.Execute(t.Context(), build(t, def), "q"); err != nil {
			t.Fatal(err)
		}
	}
	if n := optimize.TrackedSteps(ex); n != 1 {
		t.Errorf("tracked steps after 50 builds of one definition = %d; want 1", n)
	}
	for i := range 50 {
		step := build(t, caudal.Cached(caudal.AgentStep(fmt.Sprint("request-", i), echo), cache))
		if _, err := ex.Execute(t.Context(), step, "q"); err != nil {
			t.Fatal(err)
		}
	}
	if n := optimize.TrackedSteps(ex); n < 2 {
		t.Fatalf("tracked steps after 50 new definitions = %d; want them tracked", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for optimize.TrackedSteps(ex) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := optimize.TrackedSteps(ex); n != 0 {
		t.Errorf("tracked steps 5 s after the last execute = %d; want 0 (each idle for 50 periods of 1 ms)", n)
	}
}
