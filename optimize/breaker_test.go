package optimize_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// circuitSink keeps every event. It is safe for concurrent use.
type circuitSink struct {
	mu     sync.Mutex // protects events
	events []caudal.Event
}

func (s *circuitSink) Record(_ context.Context, e *caudal.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, *e)
}

func (s *circuitSink) all() []caudal.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// circuit returns the states of the EventCircuit events, in order.
func (s *circuitSink) circuit() []string {
	var out []string
	for _, e := range s.all() {
		if e.Kind == caudal.EventCircuit {
			out = append(out, e.Reason)
		}
	}
	return out
}

// backend is an agent's backend that is up or down.
type backend struct {
	calls atomic.Int32
	down  atomic.Bool
	err   error // what it fails with when down; default errBoom
}

func (b *backend) agent() caudal.AgentFunc {
	return func(context.Context, any) (caudal.Reply, error) {
		b.calls.Add(1)
		if b.down.Load() {
			return caudal.Reply{}, cmp(b.err, errBoom)
		}
		return caudal.Reply{Output: "ok"}, nil
	}
}

func cmp(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// breakerExec is an executor with the circuit breaker of cfg (Enabled
// set) recording to a circuitSink.
func breakerExec(t testing.TB, cfg optimize.CircuitBreakerConfig) (*caudal.Executor, *circuitSink) {
	t.Helper()
	cfg.Enabled = true
	sink := &circuitSink{}
	return newExecutor(t, caudal.WithSink(sink), optimize.Use(optimize.Config{CircuitBreaker: cfg})), sink
}

// execN executes step n times and returns how many failed with
// ErrCircuitOpen.
func execN(t testing.TB, ex *caudal.Executor, step caudal.Step, n int) (refused int) {
	t.Helper()
	for range n {
		_, err := ex.Execute(context.Background(), step, "in")
		if errors.Is(err, caudal.ErrCircuitOpen) {
			refused++
		}
	}
	return refused
}

func circuitOf(t testing.TB, ex *caudal.Executor, path string) string {
	t.Helper()
	st, ok := optimize.StatsOf(ex)
	if !ok {
		t.Fatal("StatsOf: not ok")
	}
	return st.Circuits[path]
}

func TestBreakerOpensAfterConsecutiveFailures(t *testing.T) {
	for _, n := range []int{1, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: n, ProbeEvery: -1, ProbeInterval: time.Hour})
			var be backend
			be.down.Store(true)
			step := build(t, caudal.AgentStep("s", be.agent()))
			if refused := execN(t, ex, step, n+10); refused != 10 || be.calls.Load() != int32(n) {
				t.Errorf("%d executes: %d refused, %d agent calls; want 10 refused after %d calls", n+10, refused, be.calls.Load(), n)
			}
			if got := circuitOf(t, ex, "s"); got != "open" {
				t.Errorf("Stats.Circuits[s] = %q; want open", got)
			}
			evs := slices.DeleteFunc(sink.all(), func(e caudal.Event) bool { return e.Kind != caudal.EventCircuit })
			if len(evs) != 1 || evs[0].Reason != "open" || evs[0].Path != "s" || !errors.Is(evs[0].Err, errBoom) || evs[0].Time.IsZero() {
				t.Errorf("circuit events = %+v; want one open at s, opened by boom, timed", evs)
			}
		})
	}
}

func TestBreakerDefaultThreshold(t *testing.T) {
	ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{})
	var be backend
	be.down.Store(true)
	step := build(t, caudal.AgentStep("s", be.agent()))
	if execN(t, ex, step, 5); be.calls.Load() != 3 {
		t.Errorf("agent calls = %d; want 3 (the default ConsecutiveFailures)", be.calls.Load())
	}
}

func TestBreakerSuccessResetsTheCount(t *testing.T) {
	ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 3})
	var be backend
	step := build(t, caudal.AgentStep("s", be.agent()))
	for range 5 {
		be.down.Store(true)
		execN(t, ex, step, 2)
		be.down.Store(false)
		execN(t, ex, step, 1)
	}
	if got := sink.circuit(); len(got) != 0 || be.calls.Load() != 15 {
		t.Errorf("2 failures then a success, 5 times: circuit events %q, %d calls; want none, 15", got, be.calls.Load())
	}
}

func TestBreakerIgnores(t *testing.T) {
	for _, tt := range []struct {
		name string
		give error
	}{
		{"permanent", caudal.Permanent(errBoom)},
		{"status 400", &statusErr{code: 400}},
		{"cancelled", fmt.Errorf("call: %w", context.Canceled)},
		{"another circuit", fmt.Errorf("backend: %w", caudal.ErrCircuitOpen)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 2})
			be := backend{err: tt.give}
			be.down.Store(true)
			step := build(t, caudal.AgentStep("s", be.agent()))
			if refused := execN(t, ex, step, 10); refused != 0 && tt.name != "another circuit" || be.calls.Load() != 10 || len(sink.circuit()) != 0 {
				t.Errorf("10 executes failing with %v: %d agent calls, circuit events %q; want 10 calls and none", tt.give, be.calls.Load(), sink.circuit())
			}
		})
	}
}

func TestBreakerCountsPanics(t *testing.T) {
	ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 2, ProbeEvery: -1})
	var calls atomic.Int32
	step := build(t, caudal.AgentStep("s", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		calls.Add(1)
		panic("agent bug")
	})))
	if refused := execN(t, ex, step, 5); refused != 3 || calls.Load() != 2 {
		t.Errorf("a panicking agent: %d calls, %d refused; want 2 calls, then refusals", calls.Load(), refused)
	}
}

func TestBreakerFailureRate(t *testing.T) {
	for _, tt := range []struct {
		name      string
		rate      float64
		window    int
		wantCalls int32 // calls before it opened; 40: never opened
	}{
		{"off", 0, 10, 40},
		{"half of 10", 0.5, 10, 9}, // the 5th failure of f s f s f s f s f
		{"half of 100", 0.5, 100, 40},
		{"a fifth of 10", 0.2, 10, 3}, // the 2nd failure
		{"half of default 20", 0.5, 0, 19},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1000, FailureRate: tt.rate, Window: tt.window, ProbeEvery: -1, ProbeInterval: time.Hour})
			var be backend
			step := build(t, caudal.AgentStep("s", be.agent()))
			for i := range 40 {
				be.down.Store(i%2 == 0)
				execN(t, ex, step, 1)
			}
			if be.calls.Load() != tt.wantCalls {
				t.Errorf("alternating failures: %d calls reached the agent (events %q); want %d", be.calls.Load(), sink.circuit(), tt.wantCalls)
			}
		})
	}
}

func TestBreakerProbesByInterval(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second} {
		t.Run(interval.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1, ProbeEvery: -1, ProbeInterval: interval})
				var be backend
				be.down.Store(true)
				step := build(t, caudal.AgentStep("s", be.agent()))
				execN(t, ex, step, 1)
				be.down.Store(false)
				time.Sleep(interval - time.Nanosecond)
				if refused := execN(t, ex, step, 3); refused != 3 {
					t.Fatalf("just before ProbeInterval: %d of 3 refused; want all", refused)
				}
				time.Sleep(time.Nanosecond)
				if refused := execN(t, ex, step, 3); refused != 0 || be.calls.Load() != 4 {
					t.Errorf("after ProbeInterval: %d refused, %d calls; want none refused, 4 calls", refused, be.calls.Load())
				}
				if got := sink.circuit(); !slices.Equal(got, []string{"open", "half_open", "closed"}) {
					t.Errorf("circuit events = %q; want open, half_open, closed", got)
				}
			})
		})
	}
}

func TestBreakerDefaultProbeInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1, ProbeEvery: -1})
		var be backend
		be.down.Store(true)
		step := build(t, caudal.AgentStep("s", be.agent()))
		execN(t, ex, step, 1)
		time.Sleep(999 * time.Millisecond)
		if execN(t, ex, step, 1) != 1 {
			t.Fatal("not refused before the default 1s")
		}
		time.Sleep(time.Millisecond)
		if execN(t, ex, step, 1); be.calls.Load() != 2 {
			t.Errorf("calls = %d; want a probe after the default 1s", be.calls.Load())
		}
	})
}

func TestBreakerProbesByCount(t *testing.T) {
	for _, tt := range []struct {
		every int
		want  int // refusals before the probe: one call in every is a probe
	}{{4, 3}, {8, 7}, {0, 19}, {1, 0}} {
		t.Run(fmt.Sprint(tt.every), func(t *testing.T) {
			ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1, ProbeEvery: tt.every, ProbeInterval: time.Hour})
			var be backend
			be.down.Store(true)
			step := build(t, caudal.AgentStep("s", be.agent()))
			execN(t, ex, step, 1)
			if refused := execN(t, ex, step, tt.want); refused != tt.want {
				t.Fatalf("%d refused of %d; want all", refused, tt.want)
			}
			// The probe fails: open again, and again as many refusals.
			if refused := execN(t, ex, step, 1); refused != 0 || be.calls.Load() != 2 {
				t.Fatalf("the call after %d refusals: refused %d, %d calls; want a probe", tt.want, refused, be.calls.Load())
			}
			if refused := execN(t, ex, step, tt.want); refused != tt.want {
				t.Fatalf("after a failed probe: %d refused of %d; want all", refused, tt.want)
			}
			be.down.Store(false)
			if refused := execN(t, ex, step, 2); refused != 0 {
				t.Errorf("after recovery: %d refused; want the probe, then closed", refused)
			}
			if got := sink.circuit(); !slices.Equal(got, []string{"open", "half_open", "open", "half_open", "closed"}) {
				t.Errorf("circuit events = %q; want open, half_open, open, half_open, closed", got)
			}
		})
	}
}

func TestBreakerHalfOpenProbes(t *testing.T) {
	for _, probes := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(probes), func(t *testing.T) {
			ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1, ProbeEvery: 2, ProbeInterval: time.Hour, HalfOpenProbes: probes})
			var be backend
			be.down.Store(true)
			step := build(t, caudal.AgentStep("s", be.agent()))
			execN(t, ex, step, 2) // opens, then one refusal
			be.down.Store(false)
			for i := range probes {
				if got := circuitOf(t, ex, "s"); i > 0 && got != "half_open" {
					t.Fatalf("after %d successful probes of %d: %s; want half_open", i, probes, got)
				}
				if refused := execN(t, ex, step, 1); refused != 0 {
					t.Fatalf("probe %d refused", i+1)
				}
			}
			if got := circuitOf(t, ex, "s"); got != "closed" {
				t.Errorf("after %d probes: %s; want closed", probes, got)
			}
			if got := sink.circuit(); !slices.Equal(got, []string{"open", "half_open", "closed"}) {
				t.Errorf("circuit events = %q", got)
			}
		})
	}
}

// TestBreakerHalfOpenRefusesBeyondProbes: while half-open, calls beyond
// the probes in flight are refused.
func TestBreakerHalfOpenRefusesBeyondProbes(t *testing.T) {
	for _, probes := range []int{1, 2} {
		t.Run(fmt.Sprint(probes), func(t *testing.T) {
			ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1, ProbeEvery: 2, ProbeInterval: time.Hour, HalfOpenProbes: probes})
			var be backend
			be.down.Store(true)
			release := make(chan struct{})
			var inside sync.WaitGroup
			blocking := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
				if in == "block" {
					inside.Done()
					<-release
					return caudal.Reply{Output: "ok"}, nil
				}
				return be.agent()(ctx, in)
			})
			step := build(t, caudal.AgentStep("s", blocking))
			execN(t, ex, step, 2) // open, one refusal
			var wg sync.WaitGroup
			inside.Add(probes)
			for range probes {
				wg.Go(func() { _, _ = ex.Execute(context.Background(), step, "block") })
			}
			inside.Wait() // every probe in flight
			if refused := execN(t, ex, step, 3); refused != 3 {
				t.Errorf("with %d probes in flight: %d of 3 refused; want all", probes, refused)
			}
			close(release)
			wg.Wait()
			if got := circuitOf(t, ex, "s"); got != "closed" {
				t.Errorf("after the probes succeeded: %s; want closed", got)
			}
		})
	}
}

func TestBreakerOpenGoesStraightToFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 1, ProbeEvery: -1, ProbeInterval: time.Hour})
		var be, fb backend
		be.down.Store(true)
		step := build(t, caudal.AgentStep("s", be.agent(), caudal.WithRetries(3), caudal.WithBackoff(time.Second, time.Second),
			caudal.WithFallback(caudal.AgentStep("fb", fb.agent()))))
		if _, err := ex.Execute(context.Background(), step, "in"); err != nil {
			t.Fatalf("first execute (opens, falls back): %v", err)
		}
		calls := be.calls.Load()
		start := time.Now()
		res, err := ex.Execute(context.Background(), step, "in")
		if err != nil || res.Output != "ok" || fb.calls.Load() != 2 {
			t.Fatalf("open: %v, %v, fallback calls %d; want the fallback's ok", res.Output, err, fb.calls.Load())
		}
		if be.calls.Load() != calls || res.Attempts != 1 || time.Since(start) != 0 || res.Metadata[caudal.MetaRetryStopped] != "circuit_open" {
			t.Errorf("open: %d agent calls more, %d attempts, %v waited, stopped %v; want none, 1, 0, circuit_open",
				be.calls.Load()-calls, res.Attempts, time.Since(start), res.Metadata[caudal.MetaRetryStopped])
		}
	})
}

// agentKind is an agent of a comparable non-pointer type: equal values are
// one agent.
type agentKind struct{ name string }

func (a agentKind) Run(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errBoom }

// ptrAgent is an agent of a pointer type.
type ptrAgent struct{ _ int } // sized: distinct agents must have distinct addresses

func (*ptrAgent) Run(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errBoom }

// sliceAgent cannot be compared: one breaker per step.
type sliceAgent []int

func (sliceAgent) Run(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errBoom }

// ifaceAgent is comparable as a type, but holds a func: hashing it panics.
type ifaceAgent struct{ v any }

func (ifaceAgent) Run(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errBoom }

func TestBreakerPerAgent(t *testing.T) {
	failing := func() caudal.AgentFunc {
		return func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errBoom }
	}
	shared := failing()
	p := &ptrAgent{}
	for _, tt := range []struct {
		name       string
		a, b       caudal.Agent
		wantShared bool
	}{
		{"one AgentFunc", shared, shared, true},
		{"two AgentFunc closures", failing(), failing(), false},
		{"one pointer", p, p, true},
		{"two pointers", &ptrAgent{}, &ptrAgent{}, false},
		{"equal values", agentKind{"x"}, agentKind{"x"}, true},
		{"different values", agentKind{"x"}, agentKind{"y"}, false},
		{"not comparable", sliceAgent{1}, sliceAgent{1}, false},
		{"hashing panics", ifaceAgent{v: failing()}, ifaceAgent{v: failing()}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 2, ProbeEvery: -1, ProbeInterval: time.Hour})
			s1 := build(t, caudal.AgentStep("s1", tt.a))
			s2 := build(t, caudal.AgentStep("s2", tt.b))
			execN(t, ex, s1, 2) // opens s1's breaker
			refused := execN(t, ex, s2, 1) == 1
			if refused != tt.wantShared {
				t.Errorf("s2 refused after s1's agent tripped = %v; want %v", refused, tt.wantShared)
			}
			st, _ := optimize.StatsOf(ex)
			if st.Circuits["s1"] != "open" {
				t.Errorf("Circuits = %v; want s1 open", st.Circuits)
			}
		})
	}
}

// TestBreakerSharedInOnePipeline: two steps of one pipeline calling one
// agent share its breaker, so the second fails fast once the first opened
// it, within the same execute.
func TestBreakerSharedInOnePipeline(t *testing.T) {
	ex, _ := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 2, ProbeEvery: -1, ProbeInterval: time.Hour})
	var be backend
	be.down.Store(true)
	a := be.agent()
	fb := caudal.WithFallback(caudal.AgentStep("fb", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{Output: "fb"}, nil })))
	seq := build(t, caudal.Seq("seq", caudal.AgentStep("one", a, caudal.WithRetries(1), caudal.WithBackoff(0, 0), fb), caudal.AgentStep("two", a, caudal.WithRetries(5), fb)))
	if _, err := ex.Execute(context.Background(), seq, "in"); err != nil {
		t.Fatal(err)
	}
	if be.calls.Load() != 2 {
		t.Errorf("agent calls = %d; want 2 (the second step refused)", be.calls.Load())
	}
}

// TestBreakerEventsOncePerTransition hammers one breaker from many
// goroutines: every change of state is one event, and the events add up
// to the breaker's final state.
func TestBreakerEventsOncePerTransition(t *testing.T) {
	t.Run("one opening", func(t *testing.T) {
		ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 3, ProbeEvery: -1, ProbeInterval: time.Hour})
		var be backend
		be.down.Store(true)
		step := build(t, caudal.AgentStep("s", be.agent()))
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() { execN(t, ex, step, 50) })
		}
		wg.Wait()
		if got := sink.circuit(); !slices.Equal(got, []string{"open"}) {
			t.Errorf("circuit events = %q; want one open", got)
		}
	})
	t.Run("flapping", func(t *testing.T) {
		ex, sink := breakerExec(t, optimize.CircuitBreakerConfig{ConsecutiveFailures: 2, ProbeEvery: 3, ProbeInterval: time.Hour, HalfOpenProbes: 2})
		var n atomic.Int64
		step := build(t, caudal.AgentStep("s", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			if n.Add(1)%3 != 0 {
				return caudal.Reply{}, errBoom
			}
			return caudal.Reply{}, nil
		})))
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() { execN(t, ex, step, 200) })
		}
		wg.Wait()
		count := map[string]int{}
		for _, s := range sink.circuit() {
			count[s]++
		}
		final := circuitOf(t, ex, "s")
		is := func(s string) int {
			if final == s {
				return 1
			}
			return 0
		}
		// Every opening but a last one is followed by a half-opening; every
		// closing follows one that did not reopen.
		if count["open"] == 0 || count["open"] != count["half_open"]+is("open") || count["closed"] > count["half_open"]-is("half_open") {
			t.Errorf("events %v, final %s: not one event per transition", count, final)
		}
	})
}

func TestBreakerOffCostsNothing(t *testing.T) {
	ex := newExecutor(t, optimize.Use(optimize.Config{ErrorHandling: optimize.ErrorHandlingConfig{Enabled: true}}))
	if st, _ := optimize.StatsOf(ex); st.Circuits != nil {
		t.Errorf("Circuits = %v with the breaker off; want nil", st.Circuits)
	}
}

func TestBreakerClosedPathAllocatesNothing(t *testing.T) {
	step := build(t, caudal.AgentStep("s", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{Output: "ok"}, nil })))
	allocs := func(opts ...caudal.Option) float64 {
		ex := newExecutor(t, opts...)
		return testing.AllocsPerRun(200, func() { _, _ = ex.Execute(context.Background(), step, "in") })
	}
	base := allocs()
	on := allocs(optimize.Use(optimize.Config{CircuitBreaker: optimize.CircuitBreakerConfig{Enabled: true, FailureRate: 0.5}}))
	if on > base {
		t.Errorf("allocs per execute: %v with the breaker, %v without; want no more", on, base)
	}
}
