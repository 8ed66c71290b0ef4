package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/internal/state"
)

// seamSet is what caudal.InstallSeams hands to its func.
type seamSet = engine.Seams[caudal.Event, caudal.StepResult]

// setKey makes a step that stores its input at key in the run's state and
// outputs it.
func setKey(name, key string) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		caudal.StateFrom(ctx).Set(key, in)
		return caudal.Reply{Output: in}, nil
	}))
}

// sleepy makes a step whose agent works for d (time.Sleep: run it under
// synctest), counts its calls in calls, then answers out or fails with err.
func sleepy(name string, d time.Duration, calls *atomic.Int32, out any, err error) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		calls.Add(1)
		time.Sleep(d)
		return caudal.Reply{Output: out}, err
	}))
}

// allocSpy is an [engine.Allocator] that pools — Get hands back what Put
// took — and checks the executor's side of the contract: every Put is of a
// value Get handed out for the same class and not yet put back, already
// reset. It is safe for concurrent use.
type allocSpy struct {
	mu   sync.Mutex     // protects every field below
	gets map[string]int // by class name
	puts map[string]int
	lent map[any]string // values handed out and not yet put back → class name
	free map[string][]any
	errs []string
}

// newAllocSpy returns an empty allocSpy.
func newAllocSpy() *allocSpy {
	return &allocSpy{gets: map[string]int{}, puts: map[string]int{}, lent: map[any]string{}, free: map[string][]any{}}
}

func (a *allocSpy) Get(c *engine.Class) any {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gets[c.Name]++
	var v any
	if f := a.free[c.Name]; len(f) > 0 {
		v, a.free[c.Name] = f[len(f)-1], f[:len(f)-1]
	} else {
		v = c.New()
	}
	a.lent[v] = c.Name
	return v
}

func (a *allocSpy) Put(c *engine.Class, v any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.puts[c.Name]++
	if name, ok := a.lent[v]; !ok || name != c.Name {
		a.errs = append(a.errs, fmt.Sprintf("Put(%q, %T) of a value not handed out for that class", c.Name, v))
	}
	delete(a.lent, v)
	if !reflect.ValueOf(v).Elem().IsZero() {
		a.errs = append(a.errs, fmt.Sprintf("Put(%q, %T) of a value not reset", c.Name, v))
	}
	a.free[c.Name] = append(a.free[c.Name], v)
}

// isLent reports whether v is handed out and not yet put back.
func (a *allocSpy) isLent(v any) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.lent[v]
	return ok
}

func TestSeamAllocator(t *testing.T) {
	t.Run("events go through Get and Put", func(t *testing.T) { synctest.Test(t, testAllocatorEvents) })

	t.Run("no sink, no event", func(t *testing.T) {
		spy := newAllocSpy()
		ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Alloc = spy }))
		if _, err := execute(t, ex, caudal.Seq("pipe", constant("A"), constant("B")), nil); err != nil {
			t.Fatalf("Execute(pipe) = %v; want success", err)
		}
		if spy.gets["event"] != 0 {
			t.Errorf("Get(event) = %d without a sink; want 0", spy.gets["event"])
		}
	})
}

// testAllocatorEvents checks, with a pooling allocator and a sink, that
// every event is lent by the allocator while the sink has it and put back
// after, and that what the caller keeps is never put back.
func testAllocatorEvents(t *testing.T) {
	spy := newAllocSpy()
	var events atomic.Int32
	var notLent atomic.Int32
	sink := sinkFunc(func(_ context.Context, e *caudal.Event) {
		events.Add(1)
		if !spy.isLent(e) {
			notLent.Add(1)
		}
	})
	ex := mustNew(t, caudal.WithSink(sink), caudal.InstallSeams(func(s *seamSet) { s.Alloc = spy }))
	step := mustBuild(t, caudal.Seq("pipe",
		caudal.AgentStep("flaky", &failN{n: 1, err: errors.New("flaky")}, caudal.WithRetries(1)),
		caudal.Parallel("par", caudal.Branch("x", constant("X")), caudal.Branch("y", constant("Y"))),
		caudal.AgentStep("down", costly(nil, caudal.Usage{}, errDown), caudal.WithFallback(constant("F"))),
	))
	res1, err := ex.Execute(t.Context(), step, "in")
	if err != nil {
		t.Fatalf("Execute(pipe) = %v; want success", err)
	}
	kept := fmt.Sprintf("%+v", res1)
	if _, err := ex.Execute(t.Context(), step, "in"); err != nil {
		t.Fatalf("second Execute(pipe) = %v; want success", err)
	}

	// Every event went through Get (lent while the sink had it), then Put.
	if n := int(events.Load()); n == 0 || spy.gets["event"] != n || spy.puts["event"] != n {
		t.Errorf("events = %d, Get(event) = %d, Put(event) = %d; want as many Gets and Puts as events (> 0)", n, spy.gets["event"], spy.puts["event"])
	}
	if n := notLent.Load(); n != 0 {
		t.Errorf("%d events reached the sink without being handed out by the allocator", n)
	}
	for class, n := range spy.gets {
		if spy.puts[class] != n {
			t.Errorf("Get(%s) = %d, Put(%s) = %d; want a Put for every Get", class, n, class, spy.puts[class])
		}
	}
	if len(spy.lent) != 0 {
		t.Errorf("after Execute, %d values are still out: %v; want every Get put back", len(spy.lent), spy.lent)
	}
	if len(spy.errs) != 0 {
		t.Errorf("allocator contract broken: %s", strings.Join(spy.errs, "; "))
	}
	// What the caller keeps is not pooled: the second execution, reusing
	// the pooled objects, left the first result as it was.
	if got := fmt.Sprintf("%+v", res1); got != kept {
		t.Errorf("first result after a second Execute = %s; want it unchanged: %s", got, kept)
	}
}

// isoSpy wraps an [engine.Isolation], counting forks and keeping what each
// Writes call returned, in call order; it checks that Writes is asked about
// a child relative to the store it was forked from. It is safe for
// concurrent use.
type isoSpy struct {
	base   engine.Isolation
	mu     sync.Mutex // protects every field below
	forks  int
	writes [][]caudal.Write
	parent map[*state.Store]*state.Store // child → the store it was forked from
	errs   []string
}

// newIsoSpy returns an isoSpy around base.
func newIsoSpy(base engine.Isolation) *isoSpy {
	return &isoSpy{base: base, parent: map[*state.Store]*state.Store{}}
}

func (s *isoSpy) Fork(p *state.Store) *state.Store {
	c := s.base.Fork(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forks++
	s.parent[c] = p
	return c
}

func (s *isoSpy) Writes(p, c *state.Store) []caudal.Write {
	w := s.base.Writes(p, c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if got, ok := s.parent[c]; !ok || got != p {
		s.errs = append(s.errs, "Writes asked about a child relative to a store it was not forked from")
	}
	s.writes = append(s.writes, w)
	return w
}

func TestSeamIsolationCalls(t *testing.T) {
	errFlaky := errors.New("flaky")
	var n atomic.Int32
	secondFails := caudal.AgentStep("it", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		caudal.StateFrom(ctx).Set("it", in)
		if n.Add(1) == 2 {
			return caudal.Reply{}, errFlaky
		}
		return caudal.Reply{Output: in}, nil
	}))
	tests := []struct {
		name       string
		give       caudal.Step
		in         any
		wantForks  int
		wantWrites int
		wantErr    bool
	}{
		{
			"parallel: a fork per branch, writes per successful branch",
			caudal.Parallel("par", caudal.Branch("a", setKey("sa", "a")), caudal.Branch("b", failing("sb")), caudal.Branch("c", setKey("sc", "c")),
				caudal.WithOnBranchFailure(caudal.Ignore), caudal.WithMerge(caudal.ContextUpdate)),
			"x", 3, 2, false,
		},
		{"loop: per iteration", caudal.Loop("loop", setKey("it", "it"), caudal.WithMaxIterations(3)), "x", 3, 3, false},
		{"loop: a failed iteration is not merged", caudal.Loop("loop", secondFails, caudal.WithMaxIterations(3)), "x", 2, 1, true},
		{"sequential map: per item", caudal.Map("m", setKey("item", "item")), []any{1, 2, 3, 4}, 4, 4, false},
		{"concurrent map: per item", caudal.Map("m", setKey("item", "item"), caudal.WithConcurrency(2)), []any{1, 2, 3, 4}, 4, 4, false},
		// Attempts never fork: a failed attempt's writes are undone on the
		// step's own state, whatever the retry count (issue 8).
		{"retries: no fork per attempt", caudal.AgentStep("r", &failN{n: 2, err: errFlaky}, caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, time.Millisecond)), "x", 0, 0, false},
		{"a step that does not retry runs on its parent's state", caudal.AgentStep("once", echoAgent{}), "x", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n.Store(0)
				spy := newIsoSpy(engine.CopyOnWrite{})
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Isolation = spy }))
				_, err := execute(t, ex, tt.give, tt.in, caudal.WithState(caudal.NewState(map[string]any{"seed": 0})))
				if (err != nil) != tt.wantErr {
					t.Fatalf("Execute(%s) = %v; want error %v", tt.give.Name(), err, tt.wantErr)
				}
				if spy.forks != tt.wantForks || len(spy.writes) != tt.wantWrites {
					t.Errorf("Fork, Writes calls = %d, %d; want %d, %d", spy.forks, len(spy.writes), tt.wantForks, tt.wantWrites)
				}
				if len(spy.errs) != 0 {
					t.Errorf("isolation contract broken: %s", strings.Join(spy.errs, "; "))
				}
			})
		})
	}
}

// wideState returns a store of n keys k0..k(n-1), each holding a small map.
func wideState(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprint("k", i)] = map[string]any{"v": i}
	}
	return m
}

// forkAllocs returns the allocations of one iso.Fork of a fresh flat store
// of n keys.
func forkAllocs(iso engine.Isolation, n int) float64 {
	const runs = 20
	stores := make([]*state.Store, runs+1) // AllocsPerRun calls once more to warm up
	for i := range stores {
		stores[i] = state.New(wideState(n))
	}
	next := 0
	return testing.AllocsPerRun(runs, func() {
		iso.Fork(stores[next])
		next++
	})
}

func TestSeamIsolationCopyOnWrite(t *testing.T) {
	t.Run("fork is O(1)", func(t *testing.T) {
		if small, big := forkAllocs(engine.CopyOnWrite{}, 8), forkAllocs(engine.CopyOnWrite{}, 1024); big != small {
			t.Errorf("allocs of CopyOnWrite.Fork of 1024 keys = %v; want %v, as of 8 keys", big, small)
		}
		// The measure tells a copy from a fork.
		if small, big := forkAllocs(engine.DeepCopy{}, 8), forkAllocs(engine.DeepCopy{}, 1024); big < small+1024 {
			t.Errorf("allocs of DeepCopy.Fork of 1024 keys = %v, of 8 keys = %v; want at least one per extra key", big, small)
		}
	})

	t.Run("writes are the keys written", func(t *testing.T) {
		spy := newIsoSpy(engine.CopyOnWrite{})
		ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Isolation = spy }))
		reader := caudal.AgentStep("reader", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
			st := caudal.StateFrom(ctx)
			for i := range 100 { // read, never change, mutable values
				if v, ok := caudal.Get[map[string]any](st, fmt.Sprint("k", i)); !ok || v["v"] != i {
					return caudal.Reply{}, fmt.Errorf("k%d = %v", i, v)
				}
			}
			st.Set("new", 1)
			return caudal.Reply{}, nil
		}))
		step := caudal.Parallel("par", caudal.Branch("a", setKey("sa", "k1")), caudal.Branch("b", reader), caudal.WithMerge(caudal.ContextUpdate))
		st := caudal.NewState(wideState(1024))
		if _, err := execute(t, ex, step, "changed", caudal.WithState(st)); err != nil {
			t.Fatalf("Execute(par) = %v; want success", err)
		}
		want := "[[{Path:[k1] Value:changed Deleted:false}] [{Path:[new] Value:1 Deleted:false}]]"
		if got := fmt.Sprintf("%+v", spy.writes); spy.forks != 2 || got != want {
			t.Errorf("forks = %d, writes = %s; want 2, %s", spy.forks, got, want)
		}
		if v, _ := caudal.Get[string](st, "k1"); v != "changed" || st.Len() != 1025 {
			t.Errorf("state k1 = %q, %d keys; want changed, 1025 keys", v, st.Len())
		}
	})
}

func TestSeamIsolationSemantics(t *testing.T) {
	// A branch that changes, in place and without Set, a nested map it got
	// from its state changes neither its parent nor its sibling; the merge
	// carries exactly that change. Same under both isolations.
	tests := []struct {
		name  string
		give  engine.Isolation
		merge caudal.MergeStrategy
		want  string
	}{
		{"copy-on-write, no merge", engine.CopyOnWrite{}, caudal.NoMerge, "map[flat:x nested:map[a:1]]"},
		{"copy-on-write, context update", engine.CopyOnWrite{}, caudal.ContextUpdate, "map[flat:x nested:map[a:1 b:2]]"},
		{"deep copy, no merge", engine.DeepCopy{}, caudal.NoMerge, "map[flat:x nested:map[a:1]]"},
		{"deep copy, context update", engine.DeepCopy{}, caudal.ContextUpdate, "map[flat:x nested:map[a:1 b:2]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				spy := newIsoSpy(tt.give)
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Isolation = spy }))
				st := caudal.NewState(map[string]any{"nested": map[string]any{"a": 1}, "flat": "x"})
				mutated := make(chan struct{})
				mut := caudal.AgentStep("mut", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
					defer close(mutated)
					m, ok := caudal.Get[map[string]any](caudal.StateFrom(ctx), "nested")
					if !ok {
						return caudal.Reply{}, errors.New("no nested map")
					}
					m["b"] = 2
					return caudal.Reply{}, nil
				}))
				var sibling, parent string
				peek := caudal.AgentStep("peek", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
					<-mutated
					own, _ := caudal.Get[map[string]any](caudal.StateFrom(ctx), "nested")
					up, _ := caudal.Get[map[string]any](st, "nested")
					sibling, parent = fmt.Sprint(own), fmt.Sprint(up)
					return caudal.Reply{}, nil
				}))
				step := caudal.Parallel("par", caudal.Branch("mut", mut), caudal.Branch("peek", peek), caudal.WithConcurrency(2), caudal.WithMerge(tt.merge))
				if _, err := execute(t, ex, step, nil, caudal.WithState(st)); err != nil {
					t.Fatalf("Execute(par) = %v; want success", err)
				}
				if sibling != "map[a:1]" || parent != "map[a:1]" {
					t.Errorf("nested after the change, seen by the sibling = %s, in the parent = %s; want map[a:1] for both", sibling, parent)
				}
				const wantWrites = "[[{Path:[nested b] Value:2 Deleted:false}] []]"
				if got := fmt.Sprintf("%+v", spy.writes); got != wantWrites {
					t.Errorf("writes of mut, peek = %s; want %s", got, wantWrites)
				}
				if got := fmt.Sprint(stateMap(st)); got != tt.want {
					t.Errorf("state after the step = %s; want %s", got, tt.want)
				}
			})
		})
	}
}

// limitRelease is one Release call of a [limiterSpy].
type limitRelease struct {
	latency time.Duration
	err     error
}

// limiterSpy is an [engine.Limiter] that records its calls and refuses the
// acquisitions deny returns an error for (n counts Acquire calls from 1).
// It never waits. It is safe for concurrent use.
type limiterSpy struct {
	deny     func(n int) error // nil: admit all
	mu       sync.Mutex        // protects the fields below
	acquires []string          // "path cap=N"
	releases []limitRelease
}

func (l *limiterSpy) Workers(_ engine.Site, limit, n int) (int, bool) { return min(limit, n), true }

func (l *limiterSpy) Acquire(_ context.Context, site engine.Site, limit int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acquires = append(l.acquires, fmt.Sprintf("%s cap=%d", site.Path, limit))
	if l.deny != nil {
		return l.deny(len(l.acquires))
	}
	return nil
}

func (l *limiterSpy) Release(_ engine.Site, latency time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releases = append(l.releases, limitRelease{latency, err})
}

func TestSeamLimiter(t *testing.T) {
	const work = 10 * time.Millisecond
	errBranch := errors.New("branch broke")
	var calls atomic.Int32
	ok := func(name string) caudal.Step { return sleepy(name, work, &calls, name, nil) }
	tests := []struct {
		name       string
		give       caudal.Step
		in         any
		want       []string // Acquire calls
		wantFailed int      // Release calls with an error
	}{
		{
			"parallel: each branch, with the step's cap",
			caudal.Parallel("par", caudal.Branch("a", ok("a")), caudal.Branch("b", sleepy("b", work, &calls, nil, errBranch)), caudal.Branch("c", ok("c")),
				caudal.WithConcurrency(2), caudal.WithOnBranchFailure(caudal.Ignore)),
			nil, slices.Repeat([]string{"par cap=2"}, 3), 1,
		},
		{
			"parallel without a concurrency: every branch at once, no limiter",
			caudal.Parallel("par", caudal.Branch("a", ok("a")), caudal.Branch("b", ok("b")), caudal.Branch("c", ok("c"))),
			nil, nil, 0,
		},
		{
			"parallel with a concurrency: each branch",
			caudal.Parallel("par", caudal.Branch("a", ok("a")), caudal.Branch("b", ok("b")), caudal.Branch("c", ok("c")), caudal.WithConcurrency(3)),
			nil, slices.Repeat([]string{"par cap=3"}, 3), 0,
		},
		{
			"router: each chosen branch",
			caudal.Router("route", costly([]any{"a", "c"}, caudal.Usage{}, nil), caudal.Branch("a", ok("a")), caudal.Branch("b", ok("b")), caudal.Branch("c", ok("c")), caudal.WithConcurrency(3)),
			nil, slices.Repeat([]string{"route cap=3"}, 2), 0,
		},
		{"concurrent map: each item", caudal.Map("m", ok("item"), caudal.WithConcurrency(3)), []any{1, 2, 3, 4, 5}, slices.Repeat([]string{"m cap=3"}, 5), 0},
		{"sequential map: not consulted", caudal.Map("m", ok("item")), []any{1, 2, 3}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lim := &limiterSpy{}
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Limiter = lim }))
				if _, err := execute(t, ex, tt.give, tt.in); err != nil {
					t.Fatalf("Execute(%s) = %v; want success", tt.give.Name(), err)
				}
				if !slices.Equal(lim.acquires, tt.want) {
					t.Errorf("Acquire calls = %q; want %q", lim.acquires, tt.want)
				}
				failed := 0
				for _, r := range lim.releases {
					if r.err != nil {
						failed++
						if !errors.Is(r.err, errBranch) {
							t.Errorf("Release error = %v; want the branch's error %v", r.err, errBranch)
						}
					}
					if r.latency != work {
						t.Errorf("Release latency = %v; want the branch's wall time %v", r.latency, work)
					}
				}
				if len(lim.releases) != len(tt.want) || failed != tt.wantFailed {
					t.Errorf("Release calls = %d, %d with an error; want %d, %d", len(lim.releases), failed, len(tt.want), tt.wantFailed)
				}
			})
		})
	}
}

func TestSeamLimiterRefusal(t *testing.T) {
	errDenied := errors.New("denied")
	var calls atomic.Int32
	ok := func(name string) caudal.Step { return sleepy(name, 0, &calls, name, nil) }
	all := func(int) error { return errDenied }
	second := func(n int) error {
		if n == 2 {
			return errDenied
		}
		return nil
	}
	tests := []struct {
		name      string
		give      caudal.Step
		in        any
		deny      func(int) error
		wantCalls int32
		wantText  string
	}{
		{"parallel: every branch refused", caudal.Parallel("par", caudal.Branch("a", ok("a")), caudal.Branch("b", ok("b")), caudal.WithConcurrency(2)), nil, all, 0, "denied"},
		{
			"parallel: the second branch refused",
			caudal.Parallel("par", caudal.Branch("a", ok("a")), caudal.Branch("b", ok("b")), caudal.Branch("c", ok("c")), caudal.WithConcurrency(1)),
			nil, second, 2, `"par/b"`,
		},
		{"concurrent map: every item refused", caudal.Map("m", ok("item"), caudal.WithConcurrency(2)), []any{1, 2, 3}, all, 0, "denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			lim := &limiterSpy{deny: tt.deny}
			ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Limiter = lim }))
			_, err := execute(t, ex, tt.give, tt.in)
			if !errors.Is(err, errDenied) || !strings.Contains(fmt.Sprint(err), tt.wantText) {
				t.Errorf("Execute(%s) = %v; want the limiter's error, mentioning %s", tt.give.Name(), err, tt.wantText)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("agent calls = %d; want %d (refused branches do not run)", got, tt.wantCalls)
			}
			if got := len(lim.releases); got != int(tt.wantCalls) {
				t.Errorf("Release calls = %d; want %d (one per admitted branch)", got, tt.wantCalls)
			}
		})
	}
}

// panicWrites is an [engine.Isolation] whose Writes panics.
type panicWrites struct{ engine.CopyOnWrite }

func (panicWrites) Writes(_, _ *state.Store) []caudal.Write { panic("writes broke") }

// TestSeamLimiterReleasePanic checks that a branch or item that panics
// after the limiter admitted it (here in the isolation's Writes, outside
// the agent's own recovery) is still released: an adaptive limiter keeps
// its count of slots across executions.
func TestSeamLimiterReleasePanic(t *testing.T) {
	var calls atomic.Int32
	lim := &limiterSpy{}
	ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) {
		s.Strategy.Limiter = lim
		s.Strategy.Isolation = panicWrites{}
	}))
	step := caudal.Map("m", sleepy("item", 0, &calls, 1, nil), caudal.WithConcurrency(2))
	_, err := execute(t, ex, step, []any{1, 2, 3}, caudal.WithState(caudal.NewState(map[string]any{"seed": 0})))
	if _, ok := errors.AsType[*caudal.PanicError](err); !ok {
		t.Fatalf("Execute = %v; want a *PanicError", err)
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if len(lim.releases) != len(lim.acquires) || len(lim.acquires) == 0 {
		t.Errorf("Release calls = %d; want one per Acquire (%d)", len(lim.releases), len(lim.acquires))
	}
	for _, r := range lim.releases {
		if _, ok := errors.AsType[*caudal.PanicError](r.err); !ok {
			t.Errorf("Release error = %v; want the *PanicError", r.err)
		}
	}
}

// oneAtATime is an [engine.Limiter] that admits one branch or item at a
// time whatever the step's cap, as an adaptive limiter that cut its limit
// to 1 would.
type oneAtATime struct{ sem chan struct{} }

func (l oneAtATime) Workers(_ engine.Site, limit, n int) (int, bool) { return min(limit, n), true }

func (l oneAtATime) Acquire(ctx context.Context, _ engine.Site, _ int) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (l oneAtATime) Release(engine.Site, time.Duration, error) { <-l.sem }

// wider is an [engine.Limiter] that starts a worker for every branch or
// item whatever the step's cap, as an adaptive limiter that raised its
// limit past it would.
type wider struct{}

func (wider) Workers(_ engine.Site, _, n int) (int, bool)     { return n, true }
func (wider) Acquire(context.Context, engine.Site, int) error { return nil }
func (wider) Release(engine.Site, time.Duration, error)       {}

func TestSeamLimiterAdaptive(t *testing.T) {
	// The limiter is consulted for every branch while the step runs, so it
	// bounds concurrency below the step's cap.
	var inFlight, peak atomic.Int32
	busy := caudal.AgentStep("busy", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		inFlight.Add(-1)
		return caudal.Reply{Output: in}, nil
	}))
	parallel := caudal.Parallel("par", caudal.Branch("a", busy), caudal.Branch("b", busy), caudal.Branch("c", busy), caudal.Branch("d", busy), caudal.WithConcurrency(4))
	mapped := caudal.Map("m", busy, caudal.WithConcurrency(4))
	items := []any{1, 2, 3, 4, 5, 6, 7, 8}
	fixed := func() engine.Limiter { return engine.Fixed{} }
	single := func() engine.Limiter { return oneAtATime{make(chan struct{}, 1)} }
	tests := []struct {
		name string
		give func() engine.Limiter // called inside the bubble, which must own the semaphore
		step caudal.Step
		want int32
	}{
		{"map, fixed baseline", fixed, mapped, 4},
		{"map, one at a time", single, mapped, 1},
		{"parallel, fixed baseline", fixed, parallel, 4},
		{"parallel, one at a time", single, parallel, 1},
		{"map, more workers than the cap", func() engine.Limiter { return wider{} }, mapped, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				peak.Store(0)
				lim := tt.give()
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Limiter = lim }))
				if _, err := execute(t, ex, tt.step, items); err != nil {
					t.Fatalf("Execute(%s) = %v; want success", tt.step.Name(), err)
				}
				if got := peak.Load(); got != tt.want {
					t.Errorf("peak concurrency = %d; want %d", got, tt.want)
				}
			})
		})
	}
}

// callLog is a log of calls, shared by agents and seams to show their
// order. It is safe for concurrent use.
type callLog struct {
	mu      sync.Mutex // protects entries
	entries []string
}

// add appends one formatted entry.
func (l *callLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf(format, args...))
}

// all returns a copy of the entries, in order.
func (l *callLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

// loggedAgent logs "call name" and works for 3ms (time.Sleep: run it under
// synctest); it fails its first fails calls with err, then answers out.
func loggedAgent(log *callLog, name string, fails int, err error, out any) caudal.Agent {
	var calls atomic.Int32
	return caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		log.add("call %s", name)
		time.Sleep(3 * time.Millisecond)
		if int(calls.Add(1)) <= fails {
			return caudal.Reply{}, err
		}
		return caudal.Reply{Output: out}, nil
	})
}

// guardSpy is an [engine.Guard] that logs its calls to log and refuses the
// sites named in refuse with an error wrapping [caudal.ErrCircuitOpen]. It
// is safe for concurrent use.
type guardSpy struct {
	log    *callLog
	refuse map[string]bool // by static path
}

func (g *guardSpy) Allow(_ context.Context, site *engine.Site) error {
	g.log.add("allow %s", site.Path)
	if g.refuse[site.Path] {
		return fmt.Errorf("breaker of %s: %w", site.Path, caudal.ErrCircuitOpen)
	}
	return nil
}

func (g *guardSpy) Done(site *engine.Site, err error) {
	g.log.add("done %s: %v", site.Path, err)
}

func TestSeamGuard(t *testing.T) {
	errFlaky := errors.New("flaky")
	tests := []struct {
		name string
		give func(log *callLog) caudal.Step
		want []string
	}{
		{
			"retries and fallback",
			func(log *callLog) caudal.Step {
				return caudal.Seq("g",
					caudal.AgentStep("a", loggedAgent(log, "a", 2, errFlaky, "A"), caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, time.Millisecond)),
					caudal.AgentStep("b", loggedAgent(log, "b", 1, errDown, "B"), caudal.WithFallback(caudal.AgentStep("fb", loggedAgent(log, "fb", 0, nil, "FB")))),
				)
			},
			[]string{
				"allow g/a", "call a", "done g/a: flaky",
				"allow g/a", "call a", "done g/a: flaky",
				"allow g/a", "call a", "done g/a: <nil>",
				"allow g/b", "call b", "done g/b: agent down",
				"allow g/b/fb", "call fb", "done g/b/fb: <nil>",
			},
		},
		{
			"a router's pick",
			func(log *callLog) caudal.Step {
				return caudal.Router("r", loggedAgent(log, "pick", 0, nil, "x"), caudal.Branch("x", caudal.AgentStep("ax", loggedAgent(log, "ax", 0, nil, "X"))))
			},
			[]string{"allow r", "call pick", "done r: <nil>", "allow r/x", "call ax", "done r/x: <nil>"},
		},
		{
			// The fast path of a root bare step keeps its guard.
			"a bare step",
			func(log *callLog) caudal.Step { return caudal.AgentStep("one", loggedAgent(log, "one", 0, nil, "1")) },
			[]string{"allow one", "call one", "done one: <nil>"},
		},
		{
			// So does the fast path of a sequence of bare steps.
			"bare steps in sequence",
			func(log *callLog) caudal.Step {
				return caudal.Seq("s",
					caudal.AgentStep("a", loggedAgent(log, "a", 0, nil, "A")),
					caudal.AgentStep("b", loggedAgent(log, "b", 0, nil, "B")))
			},
			[]string{"allow s/a", "call a", "done s/a: <nil>", "allow s/b", "call b", "done s/b: <nil>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := &callLog{}
				g := &guardSpy{log: log}
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Guard = g }))
				if _, err := execute(t, ex, tt.give(log), "in"); err != nil {
					t.Fatalf("Execute = %v; want success", err)
				}
				if got := log.all(); !slices.Equal(got, tt.want) {
					t.Errorf("calls = %q;\nwant %q", got, tt.want)
				}
			})
		})
	}
}

// classifierSpy is an [engine.Classifier] that answers verdict and records
// what it was asked. It is safe for concurrent use.
type classifierSpy struct {
	verdict engine.Verdict
	mu      sync.Mutex // protects asked
	asked   []error
	paths   []string
}

func (c *classifierSpy) Classify(site engine.Site, err error) engine.Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, err)
	c.paths = append(c.paths, site.Path)
	return c.verdict
}

func TestSeamGuardCircuitOpen(t *testing.T) {
	// A refusal wrapping ErrCircuitOpen does not call the agent, is never
	// retried, and goes straight to the fallback.
	fallback := caudal.WithFallback(constant("F"))
	tests := []struct {
		name       string
		give       []caudal.StepOption
		classifier engine.Classifier // the strategy's classifier
		wantOut    any
		wantOpen   bool // the step's error matches ErrCircuitOpen
	}{
		{"no fallback", nil, engine.Rules{}, nil, true},
		{"fallback", []caudal.StepOption{fallback}, engine.Rules{}, "F", false},
		{"no fallback, a classifier that retries everything", nil, &classifierSpy{verdict: engine.Verdict{Retry: true}}, nil, true},
		{"fallback, a classifier that retries everything", []caudal.StepOption{fallback}, &classifierSpy{verdict: engine.Verdict{Retry: true}}, "F", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := &callLog{}
				g := &guardSpy{log: log, refuse: map[string]bool{"p": true}}
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) {
					s.Strategy.Guard = g
					s.Strategy.Classifier = tt.classifier
				}))
				agent := &failN{}
				opts := append([]caudal.StepOption{caudal.WithRetries(3)}, tt.give...)
				res, err := execute(t, ex, caudal.AgentStep("p", agent, opts...), "in")
				if errors.Is(err, caudal.ErrCircuitOpen) != tt.wantOpen || errors.Is(err, caudal.ErrRetriesExhausted) || res.Output != tt.wantOut {
					t.Errorf("Execute(p) = %v, %v; want output %v, ErrCircuitOpen %v, not ErrRetriesExhausted", res.Output, err, tt.wantOut, tt.wantOpen)
				}
				if res.Attempts != 1 || agent.calls != 0 {
					t.Errorf("attempts = %d, agent calls = %d; want 1, 0 (refused, never retried)", res.Attempts, agent.calls)
				}
				if got := log.all(); len(got) == 0 || got[0] != "allow p" || slices.Contains(got[1:], "allow p") || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "done p:") }) {
					t.Errorf("guard calls = %q; want one Allow of p and no Done of p", got)
				}
			})
		})
	}
}

func TestSeamClassifier(t *testing.T) {
	errFlaky := errors.New("flaky")

	asked := []struct {
		name         string
		giveFailures int
		giveRetries  int
		wantAttempts int
		wantSuccess  bool
	}{
		{"two failures, then success", 2, 3, 3, true},
		{"every attempt fails", 10, 2, 3, false},
	}
	for _, tt := range asked {
		t.Run("asked once per failed attempt: "+tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := &classifierSpy{verdict: engine.Verdict{Retry: true}}
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Classifier = c }))
				res, _ := execute(t, ex, caudal.AgentStep("c", &failN{n: tt.giveFailures, err: errFlaky}, caudal.WithRetries(tt.giveRetries)), "in")
				if res.Success != tt.wantSuccess || res.Attempts != tt.wantAttempts {
					t.Fatalf("Execute(c) = success %v after %d attempts; want %v after %d", res.Success, res.Attempts, tt.wantSuccess, tt.wantAttempts)
				}
				failed := min(tt.giveFailures, tt.wantAttempts)
				if len(c.asked) != failed || !slices.Equal(c.paths, slices.Repeat([]string{"c"}, failed)) {
					t.Errorf("Classify calls = %v at %q; want %d (one per failed attempt), at c", c.asked, c.paths, failed)
				}
				for _, err := range c.asked {
					if !errors.Is(err, errFlaky) {
						t.Errorf("Classify asked about %v; want the attempt's error %v", err, errFlaky)
					}
				}
			})
		})
	}

	t.Run("a retry's delay", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const d = 7 * time.Second
			c := &classifierSpy{verdict: engine.Verdict{Retry: true, Delay: d}}
			rec := &caudaltest.Recorder{}
			ex := mustNew(t, caudal.WithSink(rec), caudal.InstallSeams(func(s *seamSet) { s.Strategy.Classifier = c }))
			start := time.Now()
			_, err := execute(t, ex, caudal.AgentStep("c", &failN{n: 2, err: errFlaky}, caudal.WithRetries(3), caudal.WithBackoff(time.Hour, time.Hour)), "in")
			if err != nil {
				t.Fatalf("Execute(c) = %v; want success", err)
			}
			var delays []time.Duration
			for _, e := range rec.Filter(caudal.EventRetry) {
				delays = append(delays, e.Delay)
			}
			if !slices.Equal(delays, []time.Duration{d, d}) || time.Since(start) != 2*d {
				t.Errorf("retry delays = %v, elapsed %v; want [%v %v], %v", delays, time.Since(start), d, d, 2*d)
			}
		})
	})

	tests := []struct {
		name    string
		give    []caudal.StepOption
		wantOut any
		wantErr bool // a StepError of attempt 1 wrapping the agent's error, not ErrRetriesExhausted
	}{
		{"no retry, no fallback", nil, nil, true},
		{"no retry, fallback", []caudal.StepOption{caudal.WithFallback(constant("F"))}, "F", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &classifierSpy{verdict: engine.Verdict{Class: "permanent"}}
			ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Classifier = c }))
			agent := &failN{n: 10, err: errFlaky}
			res, err := execute(t, ex, caudal.AgentStep("c", agent, append([]caudal.StepOption{caudal.WithRetries(3)}, tt.give...)...), "in")
			if res.Success == tt.wantErr || res.Output != tt.wantOut || res.Attempts != 1 || agent.calls != 1 || len(c.asked) != 1 {
				t.Errorf("Execute(c) = %+v; want success %v, output %v, 1 attempt, 1 agent call, 1 Classify (got %d, %d)", res, !tt.wantErr, tt.wantOut, agent.calls, len(c.asked))
			}
			var se *caudal.StepError
			gaveUp := errors.As(err, &se) && se.Attempt == 1 && errors.Is(err, errFlaky) && !errors.Is(err, caudal.ErrRetriesExhausted)
			if gaveUp != tt.wantErr || (err != nil) != tt.wantErr {
				t.Errorf("Execute(c) error = %v; want error %v: a StepError of attempt 1 wrapping %v, not ErrRetriesExhausted", err, tt.wantErr, errFlaky)
			}
		})
	}
}

// flightSpy is an [engine.Flight]: concurrent calls with one key share
// the first caller's run of fn. arrived is closed once want calls have
// entered Do. It is safe for concurrent use.
type flightSpy struct {
	want    int
	arrived chan struct{}
	mu      sync.Mutex // protects the fields below
	n       int
	calls   map[string]*flightCall
	paths   []string
}

// flightCall is one run of fn in a [flightSpy].
type flightCall struct {
	done chan struct{}
	v    any
	err  error
}

func (f *flightSpy) Do(_ context.Context, site engine.Site, key string, fn func() (any, error)) (any, error, bool) {
	f.mu.Lock()
	f.n++
	f.paths = append(f.paths, site.Path)
	if f.n == f.want {
		close(f.arrived)
	}
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		<-c.done
		return c.v, c.err, true
	}
	c := &flightCall{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	c.v, c.err = fn()
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	return c.v, c.err, false
}

func TestSeamFlight(t *testing.T) {
	const callers = 16
	synctest.Test(t, func(t *testing.T) {
		fl := &flightSpy{want: callers, arrived: make(chan struct{}), calls: map[string]*flightCall{}}
		var runs atomic.Int32
		agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			runs.Add(1)
			<-fl.arrived // every caller has missed and joined the flight
			return caudal.Reply{Output: map[string]any{"answer": in}}, nil
		})
		ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Strategy.Flight = fl }))
		step := mustBuild(t, caudal.Cached(caudal.AgentStep("ask", agent), newCache(t, 8)))
		results := make([]caudal.StepResult, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() { results[i], errs[i] = ex.Execute(t.Context(), step, "q") })
		}
		wg.Wait()
		if n := runs.Load(); n != 1 {
			t.Errorf("agent runs = %d; want 1", n)
		}
		hits := 0
		for i, res := range results {
			if errs[i] != nil || fmt.Sprint(res.Output) != "map[answer:q]" || res.Path != "ask" {
				t.Errorf("Execute %d = %+v, %v; want map[answer:q] at ask", i, res, errs[i])
			}
			if res.Metadata[caudal.MetaCacheHit] == true {
				hits++
			}
		}
		if hits != callers-1 {
			t.Errorf("results with %s = %d; want %d (every waiter)", caudal.MetaCacheHit, hits, callers-1)
		}
		if !slices.Equal(fl.paths, slices.Repeat([]string{"ask"}, callers)) {
			t.Errorf("Flight.Do sites = %q; want ask for every caller", fl.paths)
		}
	})
}

// keyerSpy wraps an [engine.Keyer], recording the input and state of every
// key it computes. It is safe for concurrent use.
type keyerSpy struct {
	base  engine.Keyer
	mu    sync.Mutex // protects asked
	asked []string
}

func (k *keyerSpy) Key(fingerprint string, input any, st map[string]any) (string, error) {
	k.mu.Lock()
	k.asked = append(k.asked, fmt.Sprint(input, " ", st))
	k.mu.Unlock()
	return k.base.Key(fingerprint, input, st)
}

// sharerSpy wraps an [engine.Sharer], counting its calls.
type sharerSpy struct {
	base          engine.Sharer[caudal.StepResult]
	stores, loads atomic.Int32
}

func (s *sharerSpy) Store(r caudal.StepResult) caudal.StepResult {
	s.stores.Add(1)
	return s.base.Store(r)
}

func (s *sharerSpy) Load(r caudal.StepResult) caudal.StepResult {
	s.loads.Add(1)
	return s.base.Load(r)
}

func TestSeamKeyerSharer(t *testing.T) {
	keyFunc := caudal.WithCacheKey(func(_ context.Context, in any) (string, error) { return fmt.Sprint(in), nil })
	tests := []struct {
		name string
		give caudal.StepOption
		want []string // what the keyer was asked, per execution
	}{
		{"canonical key", caudal.WithCacheStateKeys("lang"), []string{"a map[lang:en]", "a map[lang:en]"}},
		{"key func: no keyer", keyFunc, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &keyerSpy{}
			sh := &sharerSpy{}
			ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) {
				k.base, s.Strategy.Keyer = s.Strategy.Keyer, k
				sh.base, s.Strategy.Sharer = s.Strategy.Sharer, sh
			}))
			agent := &counting{}
			step := mustBuild(t, caudal.Cached(caudal.AgentStep("c", agent), newCache(t, 8), tt.give))
			var hits []any
			for range 2 {
				res, err := ex.Execute(t.Context(), step, "a", caudal.WithState(caudal.NewState(map[string]any{"lang": "en"})))
				if err != nil {
					t.Fatalf("Execute(c) = %v; want success", err)
				}
				hits = append(hits, res.Metadata[caudal.MetaCacheHit])
			}
			if fmt.Sprint(hits) != "[false true]" || agent.calls != 1 {
				t.Errorf("cache hits = %v, agent calls = %d; want [false true], 1", hits, agent.calls)
			}
			if !slices.Equal(k.asked, tt.want) {
				t.Errorf("Keyer.Key calls = %q; want %q", k.asked, tt.want)
			}
			if sh.stores.Load() != 1 || sh.loads.Load() != 1 {
				t.Errorf("Sharer Store, Load calls = %d, %d; want 1 (the miss), 1 (the hit)", sh.stores.Load(), sh.loads.Load())
			}
		})
	}
}

// recorderSpy is an [engine.Recorder] that keeps the kind and path of every
// event, then passes it to next when set. It is safe for concurrent use.
type recorderSpy struct {
	next engine.Recorder[caudal.Event]
	mu   sync.Mutex // protects got
	got  []string
}

func (r *recorderSpy) Record(ctx context.Context, e *caudal.Event) {
	r.mu.Lock()
	r.got = append(r.got, fmt.Sprintf("%v %s", e.Kind, e.Path))
	r.mu.Unlock()
	if r.next != nil {
		r.next.Record(ctx, e)
	}
}

func TestSeamRecorder(t *testing.T) {
	want := []string{
		"step_started pipe", "step_started pipe/a", "step_finished pipe/a",
		"step_started pipe/b", "step_finished pipe/b", "step_finished pipe",
	}
	noSink := func(caudal.Sink) []caudal.Option { return nil }
	withSink := func(s caudal.Sink) []caudal.Option { return []caudal.Option{caudal.WithSink(s)} }
	tests := []struct {
		name     string
		give     func(caudal.Sink) []caudal.Option // options attaching the sink, or not
		wantSink []string                          // what the sink got
	}{
		{"alone", noSink, nil},
		{"in front of the sinks", withSink, want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spy := &recorderSpy{}
			sink := &caudaltest.Recorder{}
			install := caudal.InstallSeams(func(s *seamSet) { spy.next, s.Recorder = s.Recorder, spy })
			ex := mustNew(t, append(tt.give(sink), install)...)
			if _, err := execute(t, ex, caudal.Seq("pipe", caudal.AgentStep("a", echoAgent{}), caudal.AgentStep("b", echoAgent{})), "in"); err != nil {
				t.Fatalf("Execute(pipe) = %v; want success", err)
			}
			if !slices.Equal(spy.got, want) {
				t.Errorf("recorded %q; want %q", spy.got, want)
			}
			var got []string
			for _, e := range sink.Events() {
				got = append(got, fmt.Sprintf("%v %s", e.Kind, e.Path))
			}
			if !slices.Equal(got, tt.wantSink) {
				t.Errorf("sink got %q; want %q", got, tt.wantSink)
			}
		})
	}
}

// tunerSpy is an [engine.Tuner] that keeps the graphs attached to it and
// sets every switch to the executor's strategy (unless idle), so that a
// test may store another later. It is safe for concurrent use.
type tunerSpy struct {
	idle   bool       // set no switch
	mu     sync.Mutex // protects graphs
	graphs []*engine.Graph[caudal.StepResult]
}

func (tu *tunerSpy) Attach(g *engine.Graph[caudal.StepResult]) {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	tu.graphs = append(tu.graphs, g)
	if !tu.idle {
		for i := range g.Slots {
			g.Slots[i] = new(engine.Slot[caudal.StepResult])
			g.Slots[i].Strategy.Store(g.Base)
		}
	}
}

// attached returns how many graphs were attached.
func (tu *tunerSpy) attached() int {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	return len(tu.graphs)
}

func TestSeamTuner(t *testing.T) {
	a, ax, ay, body, b := &tally{name: "a"}, &tally{name: "ax"}, &tally{name: "ay"}, &tally{name: "body"}, &tally{name: "b"}
	pipe := caudal.Seq("pipe",
		a.step(),
		caudal.Parallel("par", caudal.Branch("x", ax.step()), caudal.Branch("y", ay.step())),
		caudal.Loop("loop", body.step(), caudal.WithMaxIterations(2)),
		b.step(),
	)
	tuner := &tunerSpy{}
	var base engine.Strategy[caudal.StepResult]
	ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Tuner, base = tuner, s.Strategy }))
	built := mustBuild(t, pipe)

	// A graph is attached at its first execution, once per executor.
	if _, err := ex.Execute(t.Context(), built, "in"); err != nil || tuner.attached() != 1 {
		t.Fatalf("first Execute(pipe) = %v, Attach calls %d; want success, 1", err, tuner.attached())
	}
	for range 2 {
		if _, err := ex.Execute(t.Context(), built, "in"); err != nil {
			t.Fatalf("Execute(pipe) = %v; want success", err)
		}
	}
	if n := tuner.attached(); n != 1 {
		t.Fatalf("Attach calls after three executions of one built step = %d; want 1", n)
	}
	again := mustBuild(t, pipe)
	for range 2 {
		if _, err := ex.Execute(t.Context(), again, "in"); err != nil {
			t.Fatalf("Execute(pipe, built again) = %v; want success", err)
		}
	}
	if n := tuner.attached(); n != 2 {
		t.Errorf("Attach calls after executing another built step twice = %d; want 2", n)
	}
	other := &tunerSpy{}
	ex3 := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Tuner = other }))
	for i := range 2 { // built is not its first executor's: this one keeps its own record
		if _, err := ex3.Execute(t.Context(), built, "in"); err != nil || other.attached() != 1 {
			t.Errorf("another executor, execution %d: Execute = %v, Attach calls = %d; want success, 1", i+1, err, other.attached())
		}
	}

	// Every step, with its static path.
	g := tuner.graphs[0]
	var paths []string
	for _, s := range g.Steps {
		paths = append(paths, s.Path)
	}
	want := []string{"pipe/a", "pipe/par/x", "pipe/par/y", "pipe/par", "pipe/loop/body", "pipe/loop", "pipe/b", "pipe"}
	if !slices.Equal(paths, want) || len(g.Slots) != len(g.Steps) || g.Root != g.Steps[len(g.Steps)-1].Node {
		t.Fatalf("graph steps = %q, %d slots, root last %v; want %q, as many slots, the root last", paths, len(g.Slots), g.Root == g.Steps[len(g.Steps)-1].Node, want)
	}

	// A strategy stored in one step's slot applies to that step only, until
	// nil restores the executor's.
	log := &callLog{}
	refusing := base
	refusing.Guard = &guardSpy{log: log, refuse: map[string]bool{"pipe/b": true}}
	slot := g.Slots[slices.Index(paths, "pipe/b")]
	slot.Strategy.Store(&refusing)
	aCalls, bCalls := a.calls.Load(), b.calls.Load()
	_, err := ex.Execute(t.Context(), built, "in")
	var se *caudal.StepError
	if !errors.Is(err, caudal.ErrCircuitOpen) || !errors.As(err, &se) || se.Step != "pipe/b" {
		t.Errorf("Execute(pipe) with b's circuit open = %v; want a StepError of pipe/b matching ErrCircuitOpen", err)
	}
	if a.calls.Load() != aCalls+1 || b.calls.Load() != bCalls || !slices.Equal(log.all(), []string{"allow pipe/b"}) {
		t.Errorf("a, b calls = +%d, +%d, guard calls %q; want +1, +0, [allow pipe/b]", a.calls.Load()-aCalls, b.calls.Load()-bCalls, log.all())
	}
	slot.Strategy.Store(nil)
	if _, err := ex.Execute(t.Context(), built, "in"); err != nil || b.calls.Load() != bCalls+1 || len(log.all()) != 1 {
		t.Errorf("Execute(pipe) after the slot was cleared = %v, b calls +%d, guard calls %q; want success, +1, unchanged", err, b.calls.Load()-bCalls, log.all())
	}

	// A tuner that set no switch at Attach has the graph run on the
	// executor's strategy for good: a switch stored later is not consulted.
	idle := &tunerSpy{idle: true}
	ex2 := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Tuner = idle }))
	for range 2 {
		if _, err := ex2.Execute(t.Context(), built, "in"); err != nil {
			t.Fatal(err)
		}
	}
	late := new(engine.Slot[caudal.StepResult])
	late.Strategy.Store(&refusing)
	idle.graphs[0].Slots[slices.Index(paths, "pipe/b")] = late
	if _, err := ex2.Execute(t.Context(), built, "in"); err != nil || len(log.all()) != 1 {
		t.Errorf("Execute(pipe) with a switch stored after Attach left every one unset = %v, guard calls %q; want success, unchanged", err, log.all())
	}
}

// TestSeamTunerOnFastPaths: the fast paths of a root bare step, a bare
// sequence and a root agent step consult the switches too, in every executor
// that runs the graph (the first finds them without a map lookup).
func TestSeamTunerOnFastPaths(t *testing.T) {
	steps := map[string]caudal.Step{
		"bare":     caudal.AgentStep("one", &failN{}),
		"sequence": caudal.Seq("s", caudal.AgentStep("a", &failN{}), caudal.AgentStep("one", &failN{})),
		"retries":  caudal.AgentStep("one", &failN{}, caudal.WithRetries(2)),
	}
	for name, step := range steps {
		t.Run(name, func(t *testing.T) {
			built := mustBuild(t, step)
			for i := range 2 { // the graph's first executor, then another
				tuner := &tunerSpy{}
				var base engine.Strategy[caudal.StepResult]
				ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Tuner, base = tuner, s.Strategy }))
				for range 2 { // the second execution attaches the graph
					if _, err := ex.Execute(t.Context(), built, "in"); err != nil {
						t.Fatalf("executor %d: Execute = %v; want success", i, err)
					}
				}
				g := tuner.graphs[0]
				at := slices.IndexFunc(g.Steps, func(s engine.Site) bool { return strings.HasSuffix(s.Path, "one") })
				log := &callLog{}
				refusing := base
				refusing.Guard = &guardSpy{log: log, refuse: map[string]bool{g.Steps[at].Path: true}}
				g.Slots[at].Strategy.Store(&refusing)
				if _, err := ex.Execute(t.Context(), built, "in"); !errors.Is(err, caudal.ErrCircuitOpen) || len(log.all()) != 1 {
					t.Errorf("executor %d: Execute with the step's circuit open = %v, guard calls %q; want ErrCircuitOpen after one Allow", i, err, log.all())
				}
			}
		})
	}
}

// TestSeamClassifierClass: an installed classifier's class is the failed
// step's MetaErrorClass and its attempts' Event.Class, on the general path
// and on a bare step's fast path alike; the baseline sets neither.
func TestSeamClassifierClass(t *testing.T) {
	errBad := errors.New("bad request")
	for _, retries := range []int{0, 2} {
		for _, installed := range []bool{false, true} {
			t.Run(fmt.Sprintf("retries=%d/installed=%v", retries, installed), func(t *testing.T) {
				var sinkClasses []string
				sink := sinkFunc(func(_ context.Context, e *caudal.Event) {
					if e.Kind == caudal.EventAttemptFailed {
						sinkClasses = append(sinkClasses, e.Class)
					}
				})
				var opts []caudal.Option
				if installed {
					opts = append(opts, caudal.InstallSeams(func(s *seamSet) {
						s.Strategy.Classifier = &classifierSpy{verdict: engine.Verdict{Class: "permanent"}}
					}))
				}
				for _, withSink := range []bool{false, true} {
					o := opts
					if withSink {
						o = append(o[:len(o):len(o)], caudal.WithSink(sink))
					}
					ex := mustNew(t, o...)
					res, err := execute(t, ex, caudal.AgentStep("c", &failN{n: 10, err: errBad}, caudal.WithRetries(retries)), "in")
					want := any(nil)
					if installed {
						want = "permanent"
					}
					if err == nil || res.Metadata[caudal.MetaErrorClass] != want {
						t.Errorf("sink %v: Execute = %v, metadata %v; want a failure with %s %v", withSink, err, res.Metadata, caudal.MetaErrorClass, want)
					}
				}
				for _, c := range sinkClasses {
					if (c == "permanent") != installed {
						t.Errorf("event classes = %q; want every one %q", sinkClasses, map[bool]string{true: "permanent"}[installed])
					}
				}
				if len(sinkClasses) == 0 {
					t.Error("no EventAttemptFailed reached the sink")
				}
			})
		}
	}
}

func TestSeamNewRejectsMissing(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*seamSet)
		wantErr bool
	}{
		{"nil func", nil, true},
		{"allocator", func(s *seamSet) { s.Alloc = nil }, true},
		{"isolation", func(s *seamSet) { s.Strategy.Isolation = nil }, true},
		{"limiter", func(s *seamSet) { s.Strategy.Limiter = nil }, true},
		{"classifier", func(s *seamSet) { s.Strategy.Classifier = nil }, true},
		{"keyer", func(s *seamSet) { s.Strategy.Keyer = nil }, true},
		{"sharer", func(s *seamSet) { s.Strategy.Sharer = nil }, true},
		{"optional seams", func(s *seamSet) { s.Recorder, s.Tuner, s.Strategy.Guard, s.Strategy.Flight = nil, nil, nil, nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, err := caudal.New(caudal.InstallSeams(tt.give))
			if (err != nil) != tt.wantErr || (ex == nil) == (err == nil) {
				t.Errorf("New(seams without %s) = %v, %v; want error %v", tt.name, ex, err, tt.wantErr)
			}
			if ex != nil {
				_ = ex.Close()
			}
		})
	}
}

// TestSeamSiteTraits: each step's site says which seams it may consult.
func TestSeamSiteTraits(t *testing.T) {
	echo := &failN{}
	pipe := caudal.Seq("p",
		caudal.AgentStep("plain", echo),
		caudal.AgentStep("retried", echo, caudal.WithRetries(1), caudal.WithTimeout(time.Second)),
		caudal.Parallel("par", caudal.Branch("x", caudal.AgentStep("x", echo))),
		caudal.Parallel("capped", caudal.WithConcurrency(2), caudal.Branch("y", caudal.AgentStep("y", echo))),
		caudal.Map("seqmap", caudal.AgentStep("item", echo)),
		caudal.Map("map", caudal.AgentStep("item", echo), caudal.WithConcurrency(4)),
	)
	tuner := &tunerSpy{}
	ex := mustNew(t, caudal.InstallSeams(func(s *seamSet) { s.Tuner = tuner }))
	built := mustBuild(t, pipe)
	for range 2 { // the second execution attaches the graph, whatever the maps make of their input
		_, _ = ex.Execute(t.Context(), built, []any{1})
	}
	want := map[string]engine.Traits{
		"p/plain":   engine.Calls,
		"p/retried": engine.Calls | engine.Retries | engine.Timeout,
		"p/par":     engine.Forks,
		"p/capped":  engine.Forks | engine.Capped,
		"p/seqmap":  engine.Forks,
		"p/map":     engine.Forks | engine.Capped,
		"p":         0,
	}
	for _, s := range tuner.graphs[0].Steps {
		if w, ok := want[s.Path]; ok && s.Traits != w {
			t.Errorf("%s: traits %b; want %b", s.Path, s.Traits, w)
		}
	}
}

func TestSeamTunerGraphKeepsNoExecutor(t *testing.T) {
	// A step built once and run by many executors with a tuner, closed or
	// just dropped: the graph must not keep them (the record of a graph
	// an executor keeps is the executor's, never the graph's). The
	// graph's first executor is the exception: the graph holds its
	// switches, whose strategies may point into it.
	built := mustBuild(t, caudal.Seq("pipe", (&tally{name: "a"}).step(), (&tally{name: "b"}).step()))
	const executors = 20
	var freed [executors]atomic.Bool
	for i := range executors {
		ex, err := caudal.New(caudal.InstallSeams(func(s *seamSet) { s.Tuner = &tunerSpy{} })) // not mustNew: its t.Cleanup would keep ex
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ex.Execute(t.Context(), built, "in"); err != nil {
			t.Fatalf("executor %d: Execute = %v; want success", i, err)
		}
		if i%2 == 0 {
			if err := ex.Close(); err != nil {
				t.Fatalf("executor %d: Close = %v", i, err)
			}
		}
		runtime.AddCleanup(ex, func(i int) { freed[i].Store(true) }, i)
	}
	allFreed := func() bool {
		for i := 1; i < executors; i++ {
			if !freed[i].Load() {
				return false
			}
		}
		return true
	}
	for try := 0; try < 50 && !allFreed(); try++ {
		runtime.GC()
		time.Sleep(time.Millisecond) // cleanups run on their own goroutine
	}
	for i := 1; i < executors; i++ {
		if !freed[i].Load() {
			t.Errorf("executor %d (closed %v) is still reachable while its graph lives; want it collected", i, i%2 == 0)
		}
	}
	runtime.KeepAlive(built)
}
