package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
)

// These tests drive the executor with caudaltest.Runtime, a deterministic
// runtime: a virtual clock and a scheduler that runs one goroutine at a
// time. Agents wait only through it (rt.Sleep), so no test sleeps for real.

const ms = time.Millisecond

// virtualEpoch is where the clock of a new caudaltest.Runtime starts.
var virtualEpoch = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// virtualWork is an agent that works for d of rt's virtual time, then
// replies out with usage u. It fails with the context's cause if the
// context ends first.
func virtualWork(rt *caudaltest.Runtime, d time.Duration, out any, u caudal.Usage) caudal.Agent {
	return caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		if err := rt.Sleep(ctx, d); err != nil {
			return caudal.Reply{}, err
		}
		return caudal.Reply{Output: out, Usage: u}, nil
	})
}

// hangs is an agent that waits an hour of rt's virtual time, so that only
// a timeout or a cancellation ends it (with the context's cause).
func hangs(rt *caudaltest.Runtime) caudal.Agent {
	return caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		if err := rt.Sleep(ctx, time.Hour); err != nil {
			return caudal.Reply{}, err
		}
		return caudal.Reply{Output: "woke after an hour"}, nil
	})
}

// chunk is a map body agent: its item is a number of milliseconds, which it
// works for in rt's virtual time before replying ten times the item.
func chunk(rt *caudaltest.Runtime) caudal.Agent {
	return caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		n := in.(int)
		if err := rt.Sleep(ctx, time.Duration(n)*ms); err != nil {
			return caudal.Reply{}, err
		}
		return caudal.Reply{Output: 10 * n, Usage: caudal.Usage{PromptTokens: int64(n)}}, nil
	})
}

// flakyWork is an agent whose every attempt works for work of rt's virtual
// time; of each three calls the first two fail, the third echoes its input.
// It has no lock: under caudaltest.Runtime only one goroutine runs at a
// time, and the race detector checks that.
type flakyWork struct {
	rt    *caudaltest.Runtime
	work  time.Duration
	calls int
}

var errFlakyWork = errors.New("flaky work")

func (f *flakyWork) Run(ctx context.Context, in any) (caudal.Reply, error) {
	f.calls++
	if err := f.rt.Sleep(ctx, f.work); err != nil {
		return caudal.Reply{}, err
	}
	u := caudal.Usage{CompletionTokens: 1}
	if f.calls%3 != 0 {
		return caudal.Reply{Usage: u}, fmt.Errorf("call %d: %w", f.calls, errFlakyWork)
	}
	return caudal.Reply{Output: in, Usage: u}, nil
}

// The virtual-time facts of reproPipeline.
var (
	branchWork  = map[string]time.Duration{"a": 30 * ms, "b": 10 * ms, "c": 20 * ms}
	mapItems    = []int{50, 20, 40, 10, 30, 60} // ms of work per item
	mapWorkers  = 3
	flakyAtempt = 5 * ms  // work of each attempt of the loop body
	slowTimeout = 50 * ms // the timed-out step's timeout
	slowRetries = 2
)

// reproPipeline returns, built, a pipeline on rt that covers every timed
// construct:
//
//	pipeline/fan             Parallel: branches a, b, c work 30, 10, 20ms
//	pipeline/items           outputs mapItems
//	pipeline/work            Map, concurrency 3: item i works mapItems[i] ms
//	pipeline/retry           Loop of 2: body flaky fails twice per success, jittered backoff
//	pipeline/slow            waits an hour under a 50ms timeout, 2 retries, then its fallback
//	pipeline/slow/answer     the fallback, which takes no time
func reproPipeline(t *testing.T, rt *caudaltest.Runtime) caudal.Step {
	t.Helper()
	fanOpts := []caudal.StepOption{caudal.WithConcurrency(3)}
	for _, name := range []string{"a", "b", "c"} {
		d := branchWork[name]
		fanOpts = append(fanOpts, caudal.Branch(name, caudal.AgentStep(name,
			virtualWork(rt, d, name+" done", caudal.Usage{PromptTokens: int64(d / ms)}))))
	}
	items := caudal.Func("items", func(context.Context, any) ([]int, error) {
		return slices.Clone(mapItems), nil
	})
	body := caudal.AgentStep("flaky", &flakyWork{rt: rt, work: flakyAtempt},
		caudal.WithRetries(3), caudal.WithBackoff(10*ms, 80*ms))
	slow := caudal.AgentStep("slow", hangs(rt),
		caudal.WithTimeout(slowTimeout), caudal.WithRetries(slowRetries), caudal.WithBackoff(10*ms, 80*ms),
		caudal.WithFallback(caudal.AgentStep("answer", virtualWork(rt, 0, "fallback answer", caudal.Usage{CostUSD: 0.5}))))
	return mustBuild(t, caudal.Seq("pipeline",
		caudal.Parallel("fan", fanOpts...),
		items,
		caudal.Map("work", caudal.AgentStep("chunk", chunk(rt)), caudal.WithConcurrency(mapWorkers)),
		caudal.Loop("retry", body, caudal.WithMaxIterations(2)),
		slow,
	))
}

// traceEntry is a [caudal.Event] with its error as text, so that the
// traces of two runs compare with ==.
type traceEntry struct {
	Kind    caudal.EventKind
	Time    time.Time
	Path    string
	Attempt int
	Delay   time.Duration
	Latency time.Duration
	Success bool
	Usage   caudal.Usage
	Err     string
}

func (e traceEntry) String() string {
	return fmt.Sprintf("%v %s %s attempt=%d delay=%v latency=%v success=%v usage=%+v err=%q",
		e.Time.Sub(virtualEpoch), e.Kind, e.Path, e.Attempt, e.Delay, e.Latency, e.Success, e.Usage, e.Err)
}

// traceOf turns recorded events into trace entries, in arrival order.
func traceOf(events []caudal.Event) []traceEntry {
	out := make([]traceEntry, len(events))
	for i, e := range events {
		out[i] = traceEntry{
			Kind: e.Kind, Time: e.Time, Path: e.Path, Attempt: e.Attempt, Delay: e.Delay,
			Latency: e.Latency, Success: e.Success, Usage: e.Usage,
		}
		if e.Err != nil {
			out[i].Err = e.Err.Error()
		}
	}
	return out
}

// virtualRun is one execution of reproPipeline under a fresh
// caudaltest.Runtime on a fresh executor.
type virtualRun struct {
	res   caudal.StepResult
	err   error
	trace []traceEntry
	end   time.Time // the virtual clock when Execute returned
}

// runVirtual executes reproPipeline under a fresh runtime seeded with seed.
func runVirtual(t *testing.T, seed uint64) virtualRun {
	t.Helper()
	rt := caudaltest.NewRuntime(seed)
	rec := &caudaltest.Recorder{}
	ex := mustNew(t, caudal.WithRuntime(rt), caudal.WithSink(rec))
	res, err := ex.Execute(t.Context(), reproPipeline(t, rt), "go")
	return virtualRun{res: res, err: err, trace: traceOf(rec.Events()), end: rt.Now()}
}

// retryDelays returns the delays of the EventRetry entries of trace.
func retryDelays(trace []traceEntry) []time.Duration {
	var out []time.Duration
	for _, e := range trace {
		if e.Kind == caudal.EventRetry {
			out = append(out, e.Delay)
		}
	}
	return out
}

// firstDiff describes the first entry where traces a and b differ.
func firstDiff(a, b []traceEntry) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("entry %d:\n  %v\n  %v", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

func TestRuntimeExecuteReproducible(t *testing.T) {
	first := runVirtual(t, 7)
	if first.err != nil {
		t.Fatalf("Execute(pipeline) = %v; want nil", first.err)
	}
	if len(retryDelays(first.trace)) == 0 {
		t.Fatal("the pipeline made no retry: nothing to reproduce")
	}
	for run := 2; run <= 3; run++ {
		again := runVirtual(t, 7)
		if !errors.Is(again.err, first.err) {
			t.Fatalf("run %d: Execute(pipeline) = %v; want %v", run, again.err, first.err)
		}
		if !slices.Equal(again.trace, first.trace) {
			t.Errorf("run %d: same seed, different event traces, %s", run, firstDiff(first.trace, again.trace))
		}
		if !reflect.DeepEqual(again.res, first.res) {
			t.Errorf("run %d: same seed, different results:\n%+v\n%+v", run, first.res, again.res)
		}
		if !again.end.Equal(first.end) {
			t.Errorf("run %d: clock at the end %v; want %v", run, again.end, first.end)
		}
	}

	// Unobserved, the run takes the executor's plain path: same outcome.
	rt := caudaltest.NewRuntime(7)
	res, err := mustNew(t, caudal.WithRuntime(rt)).Execute(t.Context(), reproPipeline(t, rt), "go")
	if err != nil || !reflect.DeepEqual(res, first.res) {
		t.Errorf("without a sink: Execute(pipeline) = %+v, %v; want %+v, nil", res, err, first.res)
	}

	other := runVirtual(t, 8)
	if other.err != nil {
		t.Fatalf("seed 8: Execute(pipeline) = %v; want nil", other.err)
	}
	if d7, d8 := retryDelays(first.trace), retryDelays(other.trace); slices.Equal(d7, d8) {
		t.Errorf("seeds 7 and 8 gave the same retry delays %v", d7)
	}
	// The seed draws only the jitter: both runs make the same steps, in the
	// same order.
	steps := func(trace []traceEntry) []string {
		out := make([]string, len(trace))
		for i, e := range trace {
			out[i] = fmt.Sprint(e.Kind, " ", e.Path, " ", e.Attempt)
		}
		return out
	}
	if s7, s8 := steps(first.trace), steps(other.trace); !slices.Equal(s7, s8) {
		t.Errorf("seeds 7 and 8 ran different steps:\n%v\n%v", s7, s8)
	}
}

// find returns the first entry of trace of kind k at path p.
func find(t *testing.T, trace []traceEntry, k caudal.EventKind, p string) traceEntry {
	t.Helper()
	for _, e := range trace {
		if e.Kind == k && e.Path == p {
			return e
		}
	}
	t.Fatalf("no %v event at %q", k, p)
	return traceEntry{}
}

// child returns the result at path p among rs.
func child(t *testing.T, rs []caudal.StepResult, p string) caudal.StepResult {
	t.Helper()
	for _, r := range rs {
		if r.Path == p {
			return r
		}
	}
	t.Fatalf("no result at %q", p)
	return caudal.StepResult{}
}

// backoffBounds returns the range [d/2, d) that the jittered delay before
// retry n (n >= 1) of WithBackoff(10ms, 80ms) falls in.
func backoffBounds(n int) (lo, hi time.Duration) {
	d := min(10*ms<<(n-1), 80*ms)
	return d / 2, d
}

func TestRuntimeExecuteVirtualTime(t *testing.T) {
	run := runVirtual(t, 7)
	if run.err != nil {
		t.Fatalf("Execute(pipeline) = %v; want nil", run.err)
	}
	tr, kids := run.trace, run.res.Children

	t.Run("parallel lasts as its slowest branch", func(t *testing.T) {
		fan := child(t, kids, "pipeline/fan")
		if fan.Latency != 30*ms {
			t.Errorf("fan latency = %v; want 30ms (branch a)", fan.Latency)
		}
		var order []string
		for _, e := range tr {
			if e.Kind == caudal.EventStepFinished && strings.HasPrefix(e.Path, "pipeline/fan/") {
				order = append(order, e.Path)
			}
		}
		if want := []string{"pipeline/fan/b", "pipeline/fan/c", "pipeline/fan/a"}; !slices.Equal(order, want) {
			t.Errorf("branches finished in order %v; want %v", order, want)
		}
		for _, name := range []string{"a", "b", "c"} {
			if got := child(t, fan.Children, "pipeline/fan/"+name).Latency; got != branchWork[name] {
				t.Errorf("branch %s latency = %v; want %v", name, got, branchWork[name])
			}
		}
	})

	t.Run("map follows a 3-worker schedule", func(t *testing.T) {
		// Workers take the next item as they free up: items 0, 1, 2 start
		// at 0; 1 ends at 20 and its worker takes 3 (ends 30), then 4 (ends
		// 60); 2 ends at 40 and its worker takes 5, which ends at 100.
		// Batches of three would end at 110, one worker at 210.
		wantStarts := []time.Duration{0, 0, 0, 20 * ms, 30 * ms, 40 * ms}
		const wantLatency = 100 * ms
		start := find(t, tr, caudal.EventStepStarted, "pipeline/work").Time
		for i, want := range wantStarts {
			p := fmt.Sprintf("pipeline/work[%d]/chunk", i)
			if got := find(t, tr, caudal.EventStepStarted, p).Time.Sub(start); got != want {
				t.Errorf("item %d started at +%v; want +%v", i, got, want)
			}
		}
		work := child(t, kids, "pipeline/work")
		if work.Latency != wantLatency {
			t.Errorf("map latency = %v; want %v", work.Latency, wantLatency)
		}
		for i, n := range mapItems {
			if got := work.Children[i].Latency; got != time.Duration(n)*ms {
				t.Errorf("item %d latency = %v; want %v", i, got, time.Duration(n)*ms)
			}
		}
		if want := []any{500, 200, 400, 100, 300, 600}; !reflect.DeepEqual(work.Output, want) {
			t.Errorf("map output = %v; want %v", work.Output, want)
		}
	})

	t.Run("loop with backoff", func(t *testing.T) {
		loop := child(t, kids, "pipeline/retry")
		var delays time.Duration
		for i := 1; i <= 2; i++ {
			p := fmt.Sprintf("pipeline/retry#%d/flaky", i)
			iter := child(t, loop.Children, p)
			if iter.Attempts != 3 || !iter.Success {
				t.Errorf("%s: attempts %d, success %v; want 3, true", p, iter.Attempts, iter.Success)
			}
			var own time.Duration
			n := 0
			for _, e := range tr {
				if e.Kind != caudal.EventRetry || e.Path != p {
					continue
				}
				n++
				if lo, hi := backoffBounds(n); e.Delay < lo || e.Delay >= hi {
					t.Errorf("%s: retry %d delay %v; want in [%v, %v)", p, n, e.Delay, lo, hi)
				}
				own += e.Delay
			}
			if want := 3*flakyAtempt + own; iter.Latency != want {
				t.Errorf("%s latency = %v; want 3×%v + delays %v = %v", p, iter.Latency, flakyAtempt, own, want)
			}
			delays += own
		}
		if want := 6*flakyAtempt + delays; loop.Latency != want {
			t.Errorf("loop latency = %v; want 6×%v + delays %v = %v", loop.Latency, flakyAtempt, delays, want)
		}
	})

	t.Run("timeout fires at its duration", func(t *testing.T) {
		const p = "pipeline/slow"
		slow := child(t, kids, p)
		wantAttempts := 1 + slowRetries
		if slow.Attempts != wantAttempts || !slow.Success || slow.Output != "fallback answer" {
			t.Errorf("slow: attempts %d, success %v, output %v; want %d, true, fallback answer",
				slow.Attempts, slow.Success, slow.Output, wantAttempts)
		}
		// Each attempt starts when the step does, or when its retry's
		// delay has passed, and fails exactly one timeout later.
		attemptStart := find(t, tr, caudal.EventStepStarted, p).Time
		var delays time.Duration
		failed := 0
		for _, e := range tr {
			if e.Path != p {
				continue
			}
			switch e.Kind {
			case caudal.EventAttemptFailed:
				failed++
				if got := e.Time.Sub(attemptStart); got != slowTimeout {
					t.Errorf("attempt %d failed after %v; want %v", e.Attempt, got, slowTimeout)
				}
				if !strings.Contains(e.Err, "timed out") {
					t.Errorf("attempt %d failed with %q; want a timeout", e.Attempt, e.Err)
				}
			case caudal.EventRetry:
				attemptStart = e.Time.Add(e.Delay)
				delays += e.Delay
			}
		}
		if failed != wantAttempts {
			t.Errorf("slow: %d attempt_failed events; want %d", failed, wantAttempts)
		}
		if want := time.Duration(wantAttempts)*slowTimeout + delays; slow.Latency != want {
			t.Errorf("slow latency = %v; want %d×%v + delays %v = %v", slow.Latency, wantAttempts, slowTimeout, delays, want)
		}
	})

	t.Run("the run lasts as its steps", func(t *testing.T) {
		var sum time.Duration
		for _, k := range kids {
			sum += k.Latency
		}
		if run.res.Latency != sum {
			t.Errorf("pipeline latency = %v; want the sum of its steps' %v", run.res.Latency, sum)
		}
		if got := run.end.Sub(virtualEpoch); got != run.res.Latency {
			t.Errorf("clock moved %v; want the pipeline latency %v", got, run.res.Latency)
		}
	})
}

func TestRuntimeEventTimes(t *testing.T) {
	run := runVirtual(t, 7)
	if run.err != nil {
		t.Fatalf("Execute(pipeline) = %v; want nil", run.err)
	}
	tr := run.trace
	if first := tr[0]; first.Kind != caudal.EventStepStarted || first.Path != "pipeline" || !first.Time.Equal(virtualEpoch) {
		t.Errorf("first event = %v at %v; want step_started pipeline at %v", first, first.Time, virtualEpoch)
	}
	last := tr[len(tr)-1]
	if last.Kind != caudal.EventStepFinished || last.Path != "pipeline" || !last.Time.Equal(run.end) {
		t.Errorf("last event = %v at %v; want step_finished pipeline at the clock's end %v", last, last.Time, run.end)
	}
	started := make(map[string]time.Time)
	for i, e := range tr {
		if i > 0 && e.Time.Before(tr[i-1].Time) {
			t.Errorf("event %d (%v) is earlier than the one before (%v)", i, e, tr[i-1])
		}
		switch e.Kind {
		case caudal.EventStepStarted:
			started[e.Path] = e.Time
		case caudal.EventStepFinished:
			if got := e.Time.Sub(started[e.Path]); got != e.Latency {
				t.Errorf("%s: finished %v after it started; want its latency %v", e.Path, got, e.Latency)
			}
		}
	}
}

func TestRuntimeBreachCancelsSibling(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	rec := &caudaltest.Recorder{}
	ex := mustNew(t, caudal.WithRuntime(rt), caudal.WithSink(rec), caudal.WithLimits(caudal.Limits{MaxTokens: 50}))
	// Each branch may spend 25 tokens; the spender spends 100 after 25ms.
	const breachAt = 25 * ms
	step := mustBuild(t, caudal.Parallel("guarded", caudal.WithConcurrency(2),
		caudal.Branch("spender", caudal.AgentStep("spender", virtualWork(rt, breachAt, "spent", caudal.Usage{PromptTokens: 100}))),
		caudal.Branch("sleeper", caudal.AgentStep("sleeper", hangs(rt))),
	))

	res, err := ex.Execute(t.Context(), step, "go")
	ue, ok := errors.AsType[*caudal.UsageLimitError](err)
	if !ok || ue.Step != "guarded/spender" {
		t.Fatalf("Execute(guarded) = %v; want a *UsageLimitError at guarded/spender", err)
	}
	if got := rt.Now().Sub(virtualEpoch); got != breachAt {
		t.Errorf("clock moved %v; want %v (the breach)", got, breachAt)
	}
	if res.Latency != breachAt {
		t.Errorf("guarded latency = %v; want %v", res.Latency, breachAt)
	}
	sleeper := child(t, res.Children, "guarded/sleeper")
	if sleeper.Success || sleeper.Latency != breachAt {
		t.Errorf("sleeper: success %v, latency %v; want false, %v", sleeper.Success, sleeper.Latency, breachAt)
	}
	fin := find(t, traceOf(rec.Events()), caudal.EventStepFinished, "guarded/sleeper")
	if want := virtualEpoch.Add(breachAt); !fin.Time.Equal(want) || !strings.Contains(fin.Err, "usage limit") {
		t.Errorf("sleeper finished at %v with %q; want at %v with the breach", fin.Time, fin.Err, want)
	}
}
