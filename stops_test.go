package caudal_test

// Regression tests for issue 8's "Crashes and stalls" and "A default that
// doubles latency": cancelled fan-outs that keep handing out work, a
// Propagate map that runs past its first failure, pickers run on a
// cancelled context, a cyclic UpdatesContext output, a quadratic state
// diff, and Parallel's and Router's cap on branches running at once. Each
// test says how the code before issue 8 (96b9599) failed it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
)

// stopBound is how soon a cancelled fan-out must return. The issue asks
// for 50 ms; this noisy 2-core machine (and -race) gets 250 ms, and the
// tests log the figure measured.
const stopBound = 250 * time.Millisecond

// stopBlocker is an agent that counts its calls, signals the first one, and
// blocks until its context is done.
type stopBlocker struct {
	started atomic.Int32
	first   chan struct{}
	once    sync.Once
}

func newStopBlocker() *stopBlocker { return &stopBlocker{first: make(chan struct{})} }

func (b *stopBlocker) Run(ctx context.Context, _ any) (caudal.Reply, error) {
	b.started.Add(1)
	b.once.Do(func() { close(b.first) })
	<-ctx.Done()
	return caudal.Reply{}, context.Cause(ctx)
}

// stopItems returns n items 0..n-1.
func stopItems(n int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = i
	}
	return items
}

// checkStopsPromptly runs step (built around agent b) with a 500-key
// state, cancels the run once the first agent call has started, and checks
// that Execute returns within stopBound of the cancel, with
// context.Canceled, and that fewer than maxCalls agent calls started.
func checkStopsPromptly(t *testing.T, step caudal.Step, in any, b *stopBlocker, maxCalls int32) {
	t.Helper()
	step = mustBuild(t, step)
	ex := mustNew(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type outcome struct {
		err error
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		_, err := ex.Execute(ctx, step, in, caudal.WithState(caudal.NewState(wideState(500))))
		done <- outcome{err, time.Now()}
	}()
	select {
	case <-b.first:
	case o := <-done:
		t.Fatalf("Execute returned before any agent started: %v", o.err)
	}
	cancelled := time.Now()
	cancel()
	o := <-done // however long it takes: nothing may be left running
	took := o.at.Sub(cancelled)
	t.Logf("returned %v after the cancel; %d agent calls started", took, b.started.Load())
	if !errors.Is(o.err, context.Canceled) {
		t.Errorf("Execute error = %v; want context.Canceled", o.err)
	}
	if took > stopBound {
		t.Errorf("Execute returned %v after the cancel; want within %v", took, stopBound)
	}
	if n := b.started.Load(); n >= maxCalls {
		t.Errorf("%d agent calls started; want fewer than %d", n, maxCalls)
	}
}

// Defect: "a cancelled concurrent Map keeps handing out (and forking state
// for) every remaining item — 19–49 s to return with 20,000 items and a
// 500-key state".
//
// Before: fanOut's workers took every remaining item after the cancel,
// forking the 500-key state for each before its agent step saw the
// cancelled context: the concurrent case returned 10.3 s after the cancel
// (under -race). The sequential map stopped at its first failed item
// already (7 ms).
func TestMapCancelledStopsPromptly(t *testing.T) {
	t.Run("concurrent", func(t *testing.T) {
		b := newStopBlocker()
		step := caudal.Map("m", caudal.AgentStep("body", b), caudal.WithConcurrency(4))
		checkStopsPromptly(t, step, stopItems(20_000), b, 1000)
	})
	t.Run("sequential", func(t *testing.T) {
		b := newStopBlocker()
		checkStopsPromptly(t, caudal.Map("m", caudal.AgentStep("body", b)), stopItems(20_000), b, 2)
	})
}

// Defect: "A cancelled map or parallel stops handing out work at once and
// returns within 50 ms whatever the item count and state size".
//
// Before: passes (about 1 ms under -race: the 256 forks happen before any
// branch starts, and queued branches see the cancelled context at once).
// Kept so that running every branch at once cannot bring the stall back.
// Every branch may have started by the cancel, so only the time is
// checked.
func TestParallelCancelledStopsPromptly(t *testing.T) {
	b := newStopBlocker()
	opts := make([]caudal.StepOption, 256)
	for i := range opts {
		opts[i] = caudal.Branch(fmt.Sprint("b", i), caudal.AgentStep("a", b))
	}
	checkStopsPromptly(t, caudal.Parallel("p", opts...), "x", b, 257)
}

// Defect: "a failing item does not stop a Propagate map (200 of 200 items
// ran and were charged)".
//
// Before: the workers took all 200 items although item 3 failed at once:
// 200 agent calls, 200 tokens charged.
func TestMapPropagateStopsAfterFirstFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var started atomic.Int32
		errItem := errors.New("item 3 broke")
		body := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			started.Add(1)
			used := caudal.Usage{PromptTokens: 1}
			if in == 3 {
				return caudal.Reply{Usage: used}, errItem
			}
			time.Sleep(time.Millisecond)
			return caudal.Reply{Output: in, Usage: used}, nil
		})
		step := caudal.Map("m", caudal.AgentStep("body", body), caudal.WithConcurrency(2))
		res, err := execute(t, mustNew(t), step, stopItems(200))
		if !errors.Is(err, errItem) || !strings.Contains(err.Error(), `"m[3]/body"`) {
			t.Errorf("Execute error = %v; want item 3's error naming m[3]/body", err)
		}
		n := started.Load()
		t.Logf("%d items started", n)
		if n >= 20 {
			t.Errorf("%d of 200 items started; want the map to stop starting items after item 3 failed", n)
		}
		if res.Usage.PromptTokens != int64(n) {
			t.Errorf("usage charged = %d tokens; want %d, one per item started", res.Usage.PromptTokens, n)
		}
	})
}

// stopCancelled returns a context that is already cancelled.
func stopCancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// stopCounted makes an agent step that counts its calls in n and echoes its
// input, charging a token.
func stopCounted(name string, n *atomic.Int32, opts ...caudal.StepOption) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		n.Add(1)
		return caudal.Reply{Output: in, Usage: caudal.Usage{PromptTokens: 1}}, nil
	}), opts...)
}

// Defect: "a router's picker runs (and is charged) on an already-cancelled
// context".
//
// Before: routerNode.choose called the picker without looking at the
// context: one pick, charged 5 tokens, per row.
func TestRouterPickerNotRunOnCancelledContext(t *testing.T) {
	var picks, calls atomic.Int32
	pick := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		picks.Add(1)
		return caudal.Reply{Output: "x", Usage: caudal.Usage{PromptTokens: 5}}, nil
	})
	router := func() caudal.Step { return caudal.Router("r", pick, caudal.Branch("x", stopCounted("x", &calls))) }
	tests := []struct {
		name string
		give caudal.Step
		opts []caudal.Option // for New
	}{
		{"root", router(), nil},
		{"in a sequence", caudal.Seq("s", router()), nil},
		{"with a sink", router(), []caudal.Option{caudal.WithSink(sinkFunc(func(context.Context, *caudal.Event) {}))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			picks.Store(0)
			calls.Store(0)
			res, err := mustNew(t, tt.opts...).Execute(stopCancelled(t), mustBuild(t, tt.give), "in")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Execute error = %v; want context.Canceled", err)
			}
			if picks.Load() != 0 || calls.Load() != 0 || res.Usage != (caudal.Usage{}) {
				t.Errorf("picks %d, branch calls %d, usage %+v; want none", picks.Load(), calls.Load(), res.Usage)
			}
		})
	}
}

// Defect: "no agent, picker or fallback starts on a cancelled context".
//
// Before: passes — the retry loop checks the context before each attempt
// and a stopped primary never reaches runFallback. Kept so the rework of
// attempts (issue 8's classification) cannot lose it.
func TestFallbackNotRunOnCancelledContext(t *testing.T) {
	t.Run("cancelled before Execute", func(t *testing.T) {
		var primary, fb, fb2 atomic.Int32
		step := stopCounted("a", &primary, caudal.WithRetries(2), caudal.WithBackoff(0, 0),
			caudal.WithFallback(stopCounted("fb", &fb, caudal.WithRetries(1), caudal.WithFallback(stopCounted("fb2", &fb2)))))
		_, err := mustNew(t).Execute(stopCancelled(t), mustBuild(t, step), "in")
		if !errors.Is(err, context.Canceled) || primary.Load()+fb.Load()+fb2.Load() != 0 {
			t.Errorf("Execute = %v; primary %d, fallback %d, its fallback %d calls; want context.Canceled and no call",
				err, primary.Load(), fb.Load(), fb2.Load())
		}
	})
	t.Run("cancelled during the last attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var primary, fb atomic.Int32
		a := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			primary.Add(1)
			cancel()
			return caudal.Reply{}, errors.New("primary broke")
		})
		step := caudal.AgentStep("a", a, caudal.WithRetries(1), caudal.WithBackoff(0, 0), caudal.WithFallback(stopCounted("fb", &fb)))
		_, err := mustNew(t).Execute(ctx, mustBuild(t, step), "in")
		if !errors.Is(err, context.Canceled) || primary.Load() != 1 || fb.Load() != 0 {
			t.Errorf("Execute = %v; primary %d, fallback %d calls; want context.Canceled, 1 primary call, no fallback",
				err, primary.Load(), fb.Load())
		}
	})
}

// Defect: "no agent … starts on a cancelled context".
//
// Before: passes for every agent step — the bare path and the retry loop
// check the context first — but the router row above failed. Kept across
// every construct so the rework of stops cannot lose it.
func TestAgentNotRunOnCancelledContext(t *testing.T) {
	var calls atomic.Int32
	agent := func(name string, opts ...caudal.StepOption) caudal.Step { return stopCounted(name, &calls, opts...) }
	proc := func(_ context.Context, v any) (any, error) { calls.Add(1); return v, nil }
	tests := []struct {
		name string
		give caudal.Step
		in   any
		opts []caudal.Option // for New
	}{
		{"bare", agent("a"), "x", nil},
		{"retries", agent("a", caudal.WithRetries(2), caudal.WithBackoff(0, 0)), "x", nil},
		{"processors", agent("a", caudal.WithPromptProcessors(proc), caudal.WithOutputProcessors(proc)), "x", nil},
		{"timeout", agent("a", caudal.WithTimeout(time.Second)), "x", nil},
		{"sink", agent("a"), "x", []caudal.Option{caudal.WithSink(sinkFunc(func(context.Context, *caudal.Event) {}))}},
		{"limits", agent("a", caudal.WithUsageEstimate(caudal.Usage{PromptTokens: 1})), "x", []caudal.Option{caudal.WithLimits(caudal.Limits{MaxTokens: 100})}},
		{"sequence", caudal.Seq("s", agent("a"), agent("b")), "x", nil},
		{"parallel", caudal.Parallel("p", caudal.Branch("a", agent("a")), caudal.Branch("b", agent("b"))), "x", nil},
		{"sequential map", caudal.Map("m", agent("body")), []any{1, 2, 3}, nil},
		{"concurrent map", caudal.Map("m", agent("body"), caudal.WithConcurrency(2)), []any{1, 2, 3}, nil},
		{"loop", caudal.Loop("loop", agent("body")), "x", nil},
		{"conditional", caudal.Conditional("c", func(context.Context, any) (string, error) { return "a", nil }, caudal.Branch("a", agent("a"))), "x", nil},
		{"cached", caudal.Cached(agent("a"), panicNewCache()), "x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			_, err := mustNew(t, tt.opts...).Execute(stopCancelled(t), mustBuild(t, tt.give), tt.in)
			if !errors.Is(err, context.Canceled) || calls.Load() != 0 {
				t.Errorf("Execute = %v after %d agent or processor calls; want context.Canceled and none", err, calls.Load())
			}
		})
	}
}

// stopCyclicEnv makes TestUpdatesContextCyclicValueHelper run.
const stopCyclicEnv = "CAUDAL_ISSUE8_CYCLIC"

// Defect: "UpdatesContext merging a cyclic map twice recurses until a
// fatal stack overflow".
//
// Before: the second merge recursed into the cycle until the runtime
// killed the process ("fatal error: stack overflow", which no recover
// catches — hence a subprocess, whose stack is capped at 1 MB: each level
// of the recursion copies the path so far, so under the default 1 GB cap
// the child ran out of time (and memory) before it ran out of stack).
func TestUpdatesContextCyclicValue(t *testing.T) {
	if os.Getenv(stopCyclicEnv) != "" {
		t.Skip("in the subprocess")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestUpdatesContextCyclicValueHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), stopCyclicEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("subprocess: %v; want exit status 0\n%.4000s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestUpdatesContextCyclicValueHelper") || !strings.Contains(string(out), "cyclic output: ") {
		t.Fatalf("the helper did not pass:\n%s", out)
	}
}

// TestUpdatesContextCyclicValueHelper merges a cyclic output twice; it runs
// only in the subprocess TestUpdatesContextCyclicValue starts.
func TestUpdatesContextCyclicValueHelper(t *testing.T) {
	if os.Getenv(stopCyclicEnv) == "" {
		return
	}
	defer debug.SetMaxStack(debug.SetMaxStack(1 << 20))
	cyclic := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		m := map[string]any{"n": 1}
		m["self"] = m
		return caudal.Reply{Output: m}, nil
	})
	step := caudal.Seq("s", caudal.AgentStep("a", cyclic, caudal.UpdatesContext()), caudal.AgentStep("b", cyclic, caudal.UpdatesContext()))
	_, err := execute(t, mustNew(t), step, "x", caudal.WithState(caudal.NewState(nil)))
	t.Logf("cyclic output: %v", err)
	if err == nil || !strings.Contains(err.Error(), `"s/a"`) && !strings.Contains(err.Error(), `"s/b"`) {
		t.Errorf("Execute error = %v; want an error naming the step that merged the cyclic value (s/a or s/b)", err)
	}
}

// Defect: "the state diff re-checks every ancestor (8.5 s for a value
// nested 20,000 deep)".
//
// Before: merging the branch's change to the deepest leaf took 53 s under
// -race (8.5 s measured by the issue without it), quadratic in the depth.
func TestStateDiffDeepValueLinear(t *testing.T) {
	const depth = 20_000
	deep := map[string]any{}
	cur := deep
	for range depth {
		next := map[string]any{}
		cur["n"] = next
		cur = next
	}
	cur["leaf"] = 0
	leaf := func(v map[string]any) map[string]any {
		for range depth {
			v, _ = v["n"].(map[string]any)
		}
		return v
	}
	change := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		v, ok := caudal.Get[map[string]any](caudal.StateFrom(ctx), "deep")
		if !ok {
			return caudal.Reply{}, errors.New("no deep value")
		}
		leaf(v)["leaf"] = 1
		return caudal.Reply{Output: in}, nil
	})
	st := caudal.NewState(map[string]any{"deep": deep})
	step := caudal.Parallel("p", caudal.Branch("b", caudal.AgentStep("change", change)), caudal.WithMerge(caudal.ContextUpdate))
	start := time.Now()
	_, err := execute(t, mustNew(t), step, "x", caudal.WithState(st))
	took := time.Since(start)
	t.Logf("a change %d levels deep merged in %v", depth, took)
	if err != nil {
		t.Fatalf("Execute = %v; want success", err)
	}
	if took > 5*time.Second {
		t.Errorf("Execute took %v; want under 5s (linear in the value's size)", took)
	}
	if v, _ := caudal.Get[map[string]any](st, "deep"); leaf(v)["leaf"] != 1 {
		t.Errorf("the parent's deepest leaf = %v; want the branch's 1", leaf(v)["leaf"])
	}
}

// stopBarrier returns an agent that waits until n calls of it are running
// at once; it fails when that has not happened after 2 s (of synctest's
// fake clock: as soon as every running call is waiting).
func stopBarrier(n int) caudal.Agent {
	var arrived atomic.Int32
	all := make(chan struct{})
	return caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		if arrived.Add(1) == int32(n) {
			close(all)
		}
		select {
		case <-all:
			return caudal.Reply{Output: in}, nil
		case <-time.After(2 * time.Second):
			return caudal.Reply{}, fmt.Errorf("%d branches were not all running at once within 2s", n)
		}
	})
}

// Defect: "Parallel and Router run at most min(10, 2×CPUs) branches at
// once — 4 on this machine".
//
// Before: 4 branches (on 2 CPUs) reached the barrier and waited for 12
// that could not start until they finished: both fail after 2 s. The cap
// row passed.
func TestParallelRunsDeclaredBranchesTogether(t *testing.T) {
	const n = 16
	branches := func(a caudal.Agent) ([]caudal.StepOption, []string) {
		opts := make([]caudal.StepOption, n)
		names := make([]string, n)
		for i := range opts {
			names[i] = fmt.Sprint("b", i)
			opts[i] = caudal.Branch(names[i], caudal.AgentStep("a", a))
		}
		return opts, names
	}
	t.Run("parallel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			opts, _ := branches(stopBarrier(n))
			if _, err := execute(t, mustNew(t), caudal.Parallel("p", opts...), "x"); err != nil {
				t.Errorf("Execute = %v; want all %d branches running at once", err, n)
			}
		})
	})
	t.Run("router", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			opts, names := branches(stopBarrier(n))
			pick := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{Output: names}, nil })
			if _, err := execute(t, mustNew(t), caudal.Router("r", pick, opts...), "x"); err != nil {
				t.Errorf("Execute = %v; want all %d chosen branches running at once", err, n)
			}
		})
	})
	t.Run("WithConcurrency caps", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var running, peak atomic.Int32
			a := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
				now := running.Add(1)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				time.Sleep(time.Millisecond)
				running.Add(-1)
				return caudal.Reply{Output: in}, nil
			})
			opts, _ := branches(a)
			opts = append(opts, caudal.WithConcurrency(4))
			if _, err := execute(t, mustNew(t), caudal.Parallel("p", opts...), "x"); err != nil {
				t.Fatal(err)
			}
			if peak.Load() != 4 {
				t.Errorf("at most %d branches ran at once; want 4 (WithConcurrency(4))", peak.Load())
			}
		})
	})
}
