package caudal_test

// Regression tests for issue 8, "Panics kill the process": every site where
// user code or a user backend runs, each asserting that Execute returns (no
// panic escapes, nothing deadlocks), that the panic comes back as a
// *caudal.PanicError naming the instance path where it happened (or, for a
// cache, as a cache error the step runs past), and that the executor and
// the caller's State stay usable afterwards.
//
// Before (96b9599): sinks, cache Get/Set, reducers, Cloner.Clone and
// MarshalJSON ran without a guard, so on the caller's goroutine their
// panic escaped Execute; on a worker of a parallel step or concurrent map
// fanOne caught it, but named the construct's static path ("p", "m")
// instead of the branch or item instance; and a failed branch did not
// cancel its siblings. Each site's comment says how it failed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

// panicSiteEnv selects, in the subprocess TestPanicSitesOnWorkers starts,
// the site TestPanicSiteHelper runs.
const panicSiteEnv = "CAUDAL_ISSUE8_PANIC_SITE"

// panicWait bounds every wait of these tests: a call that has not returned
// by then is taken as deadlocked.
const panicWait = 5 * time.Second

// panicIf panics with a message naming site while armed is set: each site's
// callback panics during the first Execute, and behaves once disarmed, so
// that a second Execute of the same pipeline shows the executor usable.
func panicIf(armed *atomic.Bool, site string) {
	if armed.Load() {
		panic("boom in " + site)
	}
}

// panicAgent is an agent that panics while armed, else echoes its input.
func panicAgent(armed *atomic.Bool, site string) caudal.Agent {
	return caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		panicIf(armed, site)
		return caudal.Reply{Output: in}, nil
	})
}

// panicCache is a Cache whose Get or Set panics while armed; otherwise it
// is a MemoryCache.
type panicCache struct {
	armed    *atomic.Bool
	get, set bool // which call panics
	mem      *caudal.MemoryCache
}

func (c *panicCache) Get(ctx context.Context, key string) (any, bool, error) {
	if c.get {
		panicIf(c.armed, "cache Get")
	}
	return c.mem.Get(ctx, key)
}

func (c *panicCache) Set(ctx context.Context, key string, v any, ttl time.Duration) error {
	if c.set {
		panicIf(c.armed, "cache Set")
	}
	return c.mem.Set(ctx, key, v, ttl)
}

// panicSink is a Sink that panics while armed when it receives the
// step_started event of the step instance at path.
type panicSink struct {
	armed *atomic.Bool
	path  string
}

func (s panicSink) Record(_ context.Context, e *caudal.Event) {
	if e.Kind == caudal.EventStepStarted && e.Path == s.path {
		panicIf(s.armed, "sink")
	}
}

// cloneBomb is a state value whose Clone panics while armed, from its
// skip+1-th call on when calls is not nil.
type cloneBomb struct {
	armed *atomic.Bool
	calls *atomic.Int32
	skip  int32
	N     int
}

func (c cloneBomb) Clone() any {
	if c.calls == nil || c.calls.Add(1) > c.skip {
		panicIf(c.armed, "Clone")
	}
	return c
}

// jsonBomb is a value whose MarshalJSON panics while armed; disarmed, it
// encodes as {"ok":true}.
type jsonBomb struct {
	armed *atomic.Bool
}

func (j jsonBomb) MarshalJSON() ([]byte, error) {
	panicIf(j.armed, "MarshalJSON")
	return []byte(`{"ok":true}`), nil
}

// panicSibling is an agent for the sibling of a panicking branch: while
// armed it blocks until its context is done (or release is closed, so that
// a failing test does not leak it), counting the calls that started and
// returned; disarmed, it echoes its input.
type panicSibling struct {
	armed             *atomic.Bool
	started, returned atomic.Int32
	release           chan struct{}
}

func newPanicSibling(armed *atomic.Bool) *panicSibling {
	return &panicSibling{armed: armed, release: make(chan struct{})}
}

func (s *panicSibling) Run(ctx context.Context, in any) (caudal.Reply, error) {
	if !s.armed.Load() {
		return caudal.Reply{Output: in}, nil
	}
	s.started.Add(1)
	defer s.returned.Add(1)
	select {
	case <-ctx.Done():
		return caudal.Reply{}, context.Cause(ctx)
	case <-s.release:
		return caudal.Reply{}, errors.New("released by the test: never cancelled")
	}
}

// cancelled checks that every call of the sibling that started had
// returned by the time Execute did: the sibling was cancelled and waited
// for.
func (s *panicSibling) cancelled(t *testing.T) {
	t.Helper()
	if started, returned := s.started.Load(), s.returned.Load(); started != returned {
		t.Errorf("sibling calls: %d started, %d returned when Execute returned; want every one cancelled and waited for", started, returned)
	}
}

// panicSetup is one site's pipeline and how it runs. The caller's State
// (WithState) holds a seed key and state.
type panicSetup struct {
	give     caudal.Step
	in       any
	state    map[string]any
	newOpts  []caudal.Option // for New
	execOpts []caudal.Option // for Execute, besides WithState
	// wantSteps are the accepted PanicError.Step values, the expected one
	// first (a second one where the site is ambiguous, see its comment).
	wantSteps []string
	// cached: the site is a cache's; the step must succeed with wantOut and
	// Metadata[MetaCacheError] must mention the panic.
	cached  bool
	wantOut any
	// release unblocks what the pipeline may leave blocked when the test
	// fails (nil: nothing); after runs further checks once Execute returned.
	release func()
	after   func(t *testing.T)
}

// panicSite is a place where a user callback runs. setup builds its
// pipeline around callbacks that panic while armed is set.
type panicSite struct {
	name  string
	setup func(armed *atomic.Bool) panicSetup
}

// panicSitesOnCaller lists the sites whose panic is raised on the goroutine
// that called Execute.
func panicSitesOnCaller() []panicSite {
	echo := func(name string) caudal.Step { return caudal.AgentStep(name, echoAgent{}) }
	return []panicSite{
		{
			// Before: contained already (execBareFrom's guard); kept as the
			// reference case.
			"agent", func(armed *atomic.Bool) panicSetup {
				return panicSetup{give: caudal.AgentStep("a", panicAgent(armed, "agent")), in: "x", wantSteps: []string{"a"}}
			},
		},
		{
			"agent in a sequence", func(armed *atomic.Bool) panicSetup {
				return panicSetup{give: caudal.Seq("s", echo("first"), caudal.AgentStep("a", panicAgent(armed, "agent"))), in: "x", wantSteps: []string{"s/a"}}
			},
		},
		{
			"prompt processor", func(armed *atomic.Bool) panicSetup {
				proc := func(_ context.Context, v any) (any, error) { panicIf(armed, "prompt processor"); return v, nil }
				return panicSetup{give: caudal.AgentStep("a", echoAgent{}, caudal.WithPromptProcessors(proc)), in: "x", wantSteps: []string{"a"}}
			},
		},
		{
			"output processor", func(armed *atomic.Bool) panicSetup {
				proc := func(_ context.Context, v any) (any, error) { panicIf(armed, "output processor"); return v, nil }
				return panicSetup{give: caudal.AgentStep("a", echoAgent{}, caudal.WithOutputProcessors(proc)), in: "x", wantSteps: []string{"a"}}
			},
		},
		{
			"validator", func(armed *atomic.Bool) panicSetup {
				v := func(context.Context, any) error { panicIf(armed, "validator"); return nil }
				return panicSetup{give: caudal.AgentStep("a", echoAgent{}, caudal.WithValidators(v)), in: "x", wantSteps: []string{"a"}}
			},
		},
		{
			"loop exit condition", func(armed *atomic.Bool) panicSetup {
				cond := func(context.Context, any) (bool, error) { panicIf(armed, "exit condition"); return true, nil }
				return panicSetup{give: caudal.Loop("loop", echo("body"), caudal.WithExitCondition(cond)), in: "x", wantSteps: []string{"loop"}}
			},
		},
		{
			"loop input mapper", func(armed *atomic.Bool) panicSetup {
				m := func(_ context.Context, v any) (any, error) { panicIf(armed, "input mapper"); return v, nil }
				return panicSetup{give: caudal.Loop("loop", echo("body"), caudal.WithMaxIterations(2), caudal.WithInputMapper(m)), in: "x", wantSteps: []string{"loop"}}
			},
		},
		{
			"loop iteration mapper", func(armed *atomic.Bool) panicSetup {
				m := func(_ context.Context, v any, _ int) (any, error) { panicIf(armed, "iteration mapper"); return v, nil }
				return panicSetup{give: caudal.Loop("loop", echo("body"), caudal.WithMaxIterations(2), caudal.WithIterationMapper(m)), in: "x", wantSteps: []string{"loop"}}
			},
		},
		{
			"loop output mapper", func(armed *atomic.Bool) panicSetup {
				m := func(_ context.Context, v any) (any, error) { panicIf(armed, "output mapper"); return v, nil }
				done := func(context.Context, any) (bool, error) { return true, nil }
				return panicSetup{give: caudal.Loop("loop", echo("body"), caudal.WithExitCondition(done), caudal.WithOutputMapper(m)), in: "x", wantSteps: []string{"loop"}}
			},
		},
		{
			"conditional key func", func(armed *atomic.Bool) panicSetup {
				key := func(context.Context, any) (string, error) { panicIf(armed, "key func"); return "x", nil }
				return panicSetup{give: caudal.Conditional("c", key, caudal.Branch("x", echo("x"))), in: "x", wantSteps: []string{"c"}}
			},
		},
		{
			"router picker", func(armed *atomic.Bool) panicSetup {
				pick := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
					panicIf(armed, "router picker")
					return caudal.Reply{Output: "x"}, nil
				})
				return panicSetup{give: caudal.Router("r", pick, caudal.Branch("x", echo("x"))), in: "x", wantSteps: []string{"r"}}
			},
		},
		{
			// The cache's error policy (WithCacheKey: "an error makes that
			// execution run uncached"), as for Get and Set.
			// Before: passes (guard2 turns it into a key error).
			"WithCacheKey func", func(armed *atomic.Bool) panicSetup {
				key := func(context.Context, any) (string, error) { panicIf(armed, "cache key func"); return "k", nil }
				return panicSetup{give: caudal.Cached(echo("a"), panicNewCache(), caudal.WithCacheKey(key)), in: "x", cached: true, wantOut: "x"}
			},
		},
		{
			// Before: cache.Get ran unguarded; the panic escaped Execute.
			"cache Get", func(armed *atomic.Bool) panicSetup {
				c := &panicCache{armed: armed, get: true, mem: panicNewCache()}
				return panicSetup{give: caudal.Cached(echo("a"), c), in: "x", cached: true, wantOut: "x"}
			},
		},
		{
			// Before: cache.Set ran unguarded; the panic escaped Execute.
			"cache Set", func(armed *atomic.Bool) panicSetup {
				c := &panicCache{armed: armed, set: true, mem: panicNewCache()}
				return panicSetup{give: caudal.Cached(echo("a"), c), in: "x", cached: true, wantOut: "x"}
			},
		},
		{
			// Before: the sink's panic escaped Execute (executeAgent's emit).
			"sink on a root step", func(armed *atomic.Bool) panicSetup {
				return panicSetup{
					give: echo("a"), in: "x", wantSteps: []string{"a"},
					newOpts: []caudal.Option{caudal.WithSink(panicSink{armed: armed, path: "a"})},
				}
			},
		},
		{
			"sink in a sequence", func(armed *atomic.Bool) panicSetup {
				return panicSetup{
					give: caudal.Seq("s", echo("a"), echo("b")), in: "x", wantSteps: []string{"s/b"},
					newOpts: []caudal.Option{caudal.WithSink(panicSink{armed: armed, path: "s/b"})},
				}
			},
		},
		{
			// Before: contained already (guard2).
			"WithMergeFunc", func(armed *atomic.Bool) panicSetup {
				fn := func(context.Context, *caudal.State, []caudal.BranchState) error {
					panicIf(armed, "merge func")
					return nil
				}
				return panicSetup{give: caudal.Parallel("p", caudal.Branch("b", echo("a")), caudal.WithMergeFunc(fn)), in: "x", wantSteps: []string{"p"}}
			},
		},
		{
			// Before: reduce ran unguarded; the panic escaped Execute.
			"WithReducer", func(armed *atomic.Bool) panicSetup {
				r := func(_ any, _ bool, vals []any) (any, error) { panicIf(armed, "reducer"); return vals[0], nil }
				return panicSetup{
					give: caudal.Parallel("p", caudal.Branch("b", setKey("a", "k")), caudal.WithReducer("k", r)),
					in:   "x", wantSteps: []string{"p"},
				}
			},
		},
		{
			// Where a fork clones is the isolation's business: the default
			// deep copy clones when the branch is forked (the branch's
			// instance, or the parallel step forking it), a copy-on-write
			// one when the branch's agent reads the key.
			// Before: the fork's panic escaped Execute.
			"Cloner forked for a parallel branch", func(armed *atomic.Bool) panicSetup {
				return panicSetup{
					give: caudal.Parallel("p", caudal.Branch("b", panicReads("a", "v"))), in: "x",
					state: map[string]any{"v": cloneBomb{armed: armed, N: 1}}, wantSteps: []string{"p/b", "p/b/a", "p"},
				}
			},
		},
		{
			"Cloner forked for a loop iteration", func(armed *atomic.Bool) panicSetup {
				return panicSetup{
					give: caudal.Loop("loop", panicReads("body", "v"), caudal.WithMaxIterations(1)), in: "x",
					state: map[string]any{"v": cloneBomb{armed: armed, N: 1}}, wantSteps: []string{"loop#1/body", "loop"},
				}
			},
		},
		{
			"Cloner forked for a map item", func(armed *atomic.Bool) panicSetup {
				return panicSetup{
					give: caudal.Map("m", panicReads("body", "v")), in: []any{"x"},
					state: map[string]any{"v": cloneBomb{armed: armed, N: 1}}, wantSteps: []string{"m[0]/body", "m"},
				}
			},
		},
		{
			// Before: outputMap's json.Marshal panicked out of Execute.
			"MarshalJSON of an UpdatesContext struct output", func(armed *atomic.Bool) panicSetup {
				a := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
					return caudal.Reply{Output: jsonBomb{armed: armed}}, nil
				})
				return panicSetup{give: caudal.Seq("s", caudal.AgentStep("a", a, caudal.UpdatesContext())), in: "x", wantSteps: []string{"s/a"}}
			},
		},
		{
			// Before: contained already (checkpoint's guard).
			"Checkpointer", func(armed *atomic.Bool) panicSetup {
				cp := panicCheckpointer(func(_ context.Context, rec caudal.Record) error {
					if rec.Path == "s/a" {
						panicIf(armed, "checkpointer")
					}
					return nil
				})
				return panicSetup{
					give: caudal.Seq("s", echo("a"), echo("b")), in: "x", wantSteps: []string{"s/a"},
					execOpts: []caudal.Option{caudal.WithCheckpointer(cp)},
				}
			},
		},
	}
}

// panicSitesOnWorkers lists the sites whose panic is raised on a worker
// goroutine of a parallel step or a concurrent map: a panic that escapes
// there kills the process, so TestPanicSitesOnWorkers runs each in a
// subprocess.
func panicSitesOnWorkers() []panicSite {
	return []panicSite{
		{
			// A sink that panics fails the step whose event it was
			// receiving; the sibling is cancelled and waited for.
			// Before: fanOne caught it as a panic of "p", and the sibling
			// was never cancelled (Execute hung until the test released
			// it).
			"sink in a parallel branch", func(armed *atomic.Bool) panicSetup {
				sib := newPanicSibling(armed)
				return panicSetup{
					give: caudal.Parallel("p", caudal.Branch("b", caudal.AgentStep("a", echoAgent{})), caudal.Branch("w", caudal.AgentStep("w", sib))),
					in:   "x", wantSteps: []string{"p/b"},
					newOpts: []caudal.Option{caudal.WithSink(panicSink{armed: armed, path: "p/b"})},
					release: func() { close(sib.release) }, after: sib.cancelled,
				}
			},
		},
		{
			// Before: fanOne caught it as a panic of "p"; sibling hung.
			"Parallel branch", func(armed *atomic.Bool) panicSetup {
				sib := newPanicSibling(armed)
				a := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
					return caudal.Reply{Output: jsonBomb{armed: armed}}, nil
				})
				return panicSetup{
					give: caudal.Parallel("p",
						caudal.Branch("b", caudal.AgentStep("a", a, caudal.UpdatesContext())),
						caudal.Branch("w", caudal.AgentStep("w", sib))),
					in: "x", wantSteps: []string{"p/b"},
					release: func() { close(sib.release) }, after: sib.cancelled,
				}
			},
		},
		{
			// Item 1's body is a parallel step whose reducer panics.
			// Before: fanOne caught it as a panic of "m".
			"concurrent Map item", func(armed *atomic.Bool) panicSetup {
				r := func(_ any, _ bool, vals []any) (any, error) {
					if vals[0] == 1 {
						panicIf(armed, "reducer")
					}
					return vals[0], nil
				}
				body := caudal.Parallel("body", caudal.Branch("b", setKey("a", "k")), caudal.WithReducer("k", r))
				return panicSetup{give: caudal.Map("m", body, caudal.WithConcurrency(2)), in: []any{0, 1, 2, 3}, wantSteps: []string{"m[1]/body"}}
			},
		},
		{
			// Before: contained already (invoke's guard) with the right path.
			"agent in a concurrent Map item", func(armed *atomic.Bool) panicSetup {
				a := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
					if in == 2 {
						panicIf(armed, "agent")
					}
					return caudal.Reply{Output: in}, nil
				})
				return panicSetup{give: caudal.Map("m", caudal.AgentStep("body", a), caudal.WithConcurrency(2)), in: []any{0, 1, 2, 3}, wantSteps: []string{"m[2]/body"}}
			},
		},
		{
			// The map is in a loop, so that its instance path (loop#1/m)
			// differs from its static one (loop/m); Clone lets the loop's
			// fork of the iteration (its first call) through.
			// Before: the fork ran on the worker; fanOne caught it as a
			// panic of "loop/m", which is no instance path.
			"Cloner forked for a concurrent Map item", func(armed *atomic.Bool) panicSetup {
				m := caudal.Map("m", panicReads("body", "v"), caudal.WithConcurrency(2))
				return panicSetup{
					give: caudal.Loop("loop", m, caudal.WithMaxIterations(1)), in: []any{"x", "y"},
					state:     map[string]any{"v": cloneBomb{armed: armed, calls: new(atomic.Int32), skip: 1, N: 1}},
					wantSteps: []string{"loop#1/m[0]/body", "loop#1/m[1]/body", "loop#1/m"}, // whichever item forks first
				}
			},
		},
		{
			// Before: cache.Get ran unguarded on the worker; fanOne caught
			// it and failed the branch instead of running it uncached.
			"cache Get in a parallel branch", func(armed *atomic.Bool) panicSetup {
				c := &panicCache{armed: armed, get: true, mem: panicNewCache()}
				return panicSetup{
					give: caudal.Parallel("p", caudal.Branch("b", caudal.Cached(caudal.AgentStep("a", echoAgent{}), c))),
					in:   "x", cached: true, wantOut: map[string]any{"b": "x"},
				}
			},
		},
	}
}

// panicCheckpointer is a func type implementing caudal.Checkpointer.
type panicCheckpointer func(ctx context.Context, rec caudal.Record) error

func (f panicCheckpointer) Checkpoint(ctx context.Context, rec caudal.Record) error {
	return f(ctx, rec)
}

// panicReads makes an agent step that reads key from its state (so that a
// copy-on-write isolation copies it there) and echoes its input.
func panicReads(name, key string) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		_, _ = caudal.Get[any](caudal.StateFrom(ctx), key)
		return caudal.Reply{Output: in}, nil
	}))
}

// panicNewCache returns a MemoryCache for the cache sites.
func panicNewCache() *caudal.MemoryCache {
	c, err := caudal.NewMemoryCache(16)
	if err != nil {
		panic(err)
	}
	return c
}

// panicRun runs fn on its own goroutine, recovering what it panics, and
// waits at most panicWait for it. On a timeout it calls release (if not
// nil) and waits for fn again, so that nothing is left running.
func panicRun(t *testing.T, release func(), fn func()) (escaped any, timedOut bool) {
	t.Helper()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		fn()
	}()
	select {
	case escaped = <-done:
		return escaped, false
	case <-time.After(panicWait):
	}
	if release != nil {
		release()
		select {
		case escaped = <-done:
		case <-time.After(panicWait):
		}
	}
	return escaped, true
}

// checkPanicSite runs a site's pipeline with its callbacks armed, checks
// the outcome, then checks that the caller's State and the executor still
// work, the pipeline running again with the callbacks disarmed.
func checkPanicSite(t *testing.T, site panicSite) {
	armed := new(atomic.Bool)
	armed.Store(true)
	s := site.setup(armed)
	ex := mustNew(t, s.newOpts...)
	step := mustBuild(t, s.give)
	initial := map[string]any{"seed": 1}
	for k, v := range s.state {
		initial[k] = v
	}
	st := caudal.NewState(initial)
	opts := append([]caudal.Option{caudal.WithState(st)}, s.execOpts...)

	var res caudal.StepResult
	var err error
	escaped, timedOut := panicRun(t, s.release, func() {
		res, err = ex.Execute(context.Background(), step, s.in, opts...)
	})
	armed.Store(false)
	switch {
	case timedOut:
		t.Fatalf("Execute did not return within %v (deadlock, or a sibling never cancelled)", panicWait)
	case escaped != nil:
		t.Fatalf("Execute panicked: %v; want the panic contained", escaped)
	}
	if s.after != nil {
		s.after(t)
	}
	if s.cached {
		checkCachePanic(t, s, res, err)
	} else {
		checkPanicError(t, s, res, err)
	}

	// The caller's State: no lock left held.
	var stateErr error
	if _, timedOut := panicRun(t, nil, func() {
		st.Set("after", 2)
		if v, ok := caudal.Get[int](st, "after"); !ok || v != 2 {
			stateErr = fmt.Errorf("Get(after) = %v, %v; want 2, true", v, ok)
			return
		}
		if _, err := st.MarshalJSON(); err != nil {
			stateErr = fmt.Errorf("MarshalJSON: %w", err)
		}
	}); timedOut {
		t.Fatalf("State Set/Get/MarshalJSON did not return within %v: a lock was left held", panicWait)
	}
	if stateErr != nil {
		t.Errorf("the caller's State after the panic: %v", stateErr)
	}

	// The executor: the same pipeline runs again, disarmed.
	var err2 error
	escaped, timedOut = panicRun(t, s.release, func() {
		_, err2 = ex.Execute(context.Background(), step, s.in, opts...)
	})
	if timedOut || escaped != nil || err2 != nil {
		t.Errorf("second Execute (disarmed): timed out %v, panicked %v, err %v; want success", timedOut, escaped, err2)
	}
}

// checkPanicError checks a site outside caches: Execute failed with a
// *PanicError naming the site's step instance.
func checkPanicError(t *testing.T, s panicSetup, res caudal.StepResult, err error) {
	t.Helper()
	pe, ok := errors.AsType[*caudal.PanicError](err)
	if !ok {
		t.Fatalf("Execute error = %v; want a *caudal.PanicError", err)
	}
	t.Logf("PanicError.Step = %q", pe.Step)
	if !slices.Contains(s.wantSteps, pe.Step) {
		t.Errorf("PanicError.Step = %q; want one of %q", pe.Step, s.wantSteps)
	}
	if !strings.Contains(fmt.Sprint(pe.Value), "boom in") {
		t.Errorf("PanicError.Value = %v; want the value passed to panic", pe.Value)
	}
	if res.Success {
		t.Errorf("res.Success = true with error %v", err)
	}
}

// checkCachePanic checks a cache site: the panic is a cache error, so the
// step ran past it and succeeded, saying so in its metadata.
func checkCachePanic(t *testing.T, s panicSetup, res caudal.StepResult, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Execute error = %v; want success (a cache that panics is a cache error)", err)
	}
	if !reflect.DeepEqual(res.Output, s.wantOut) {
		t.Errorf("Output = %#v; want %#v", res.Output, s.wantOut)
	}
	text := panicCacheError(res)
	t.Logf("cache_error = %q", text)
	if !strings.Contains(text, "panic") {
		t.Errorf("Metadata[%s] = %q; want the text of the panic", caudal.MetaCacheError, text)
	}
}

// panicCacheError returns the first MetaCacheError in res or its children,
// depth first.
func panicCacheError(res caudal.StepResult) string {
	if v, ok := res.Metadata[caudal.MetaCacheError]; ok {
		return fmt.Sprint(v)
	}
	for _, c := range res.Children {
		if text := panicCacheError(c); text != "" {
			return text
		}
	}
	return ""
}

// Defect: "Panics in sinks, cache backends, WithMergeFunc functions,
// reducers, Cloner.Clone and MarshalJSON run without a guard; on the
// caller's goroutine they escape Execute".
func TestPanicSites(t *testing.T) {
	for _, tt := range panicSitesOnCaller() {
		t.Run(tt.name, func(t *testing.T) { checkPanicSite(t, tt) })
	}
}

// Defect: "on a worker goroutine of a parallel step or map they crash the
// whole process with exit status 2 — no caller recover can catch it".
// Each site runs in a subprocess: the child must exit 0 and report the
// expected PanicError path (or cache error).
func TestPanicSitesOnWorkers(t *testing.T) {
	if os.Getenv(panicSiteEnv) != "" {
		t.Skip("in the subprocess")
	}
	for _, tt := range panicSitesOnWorkers() {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPanicSiteHelper$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), panicSiteEnv+"="+tt.name)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("subprocess: %v; want exit status 0\n%s", err, out)
			}
			// What the child printed: the cache error, or a PanicError.Step
			// the site accepts.
			s := tt.setup(new(atomic.Bool))
			want := []string{"cache_error = "}
			if !s.cached {
				want = want[:0]
				for _, p := range s.wantSteps {
					want = append(want, fmt.Sprintf("PanicError.Step = %q\n", p))
				}
			}
			printed := slices.ContainsFunc(want, func(w string) bool { return strings.Contains(string(out), w) })
			if !strings.Contains(string(out), "--- PASS: TestPanicSiteHelper") || !printed {
				t.Fatalf("subprocess did not pass or did not print %q:\n%s", want, out)
			}
		})
	}
}

// TestPanicSiteHelper runs one worker site, named by $CAUDAL_ISSUE8_PANIC_SITE;
// it runs only in the subprocess TestPanicSitesOnWorkers starts.
func TestPanicSiteHelper(t *testing.T) {
	name := os.Getenv(panicSiteEnv)
	if name == "" {
		return
	}
	i := slices.IndexFunc(panicSitesOnWorkers(), func(s panicSite) bool { return s.name == name })
	if i < 0 {
		t.Fatalf("no worker site %q", name)
	}
	checkPanicSite(t, panicSitesOnWorkers()[i])
}

// Defect: siblings of a panicking branch must be "cancelled and waited
// for".
//
// Before: runBranches cancelled siblings only on a budget breach or a
// refused checkpoint; the waiting sibling blocked until the test released
// it after panicWait.
func TestPanicCancelsSiblings(t *testing.T) {
	armed := new(atomic.Bool)
	armed.Store(true)
	sib := newPanicSibling(armed)
	step := mustBuild(t, caudal.Parallel("p",
		caudal.Branch("boom", caudal.AgentStep("a", panicAgent(armed, "agent"))),
		caudal.Branch("wait", caudal.AgentStep("w", sib))))
	ex := mustNew(t)
	var err error
	escaped, timedOut := panicRun(t, func() { close(sib.release) }, func() {
		_, err = ex.Execute(context.Background(), step, "x")
	})
	if timedOut || escaped != nil {
		t.Fatalf("Execute: timed out %v, panicked %v; want it to return once the sibling is cancelled", timedOut, escaped)
	}
	sib.cancelled(t)
	if pe, ok := errors.AsType[*caudal.PanicError](err); !ok || pe.Step != "p/boom" {
		t.Errorf("Execute error = %v; want a *PanicError of p/boom", err)
	}
}
