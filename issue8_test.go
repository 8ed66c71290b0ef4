package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
)

// Tests of issue 8, "Trust nothing": each names the defect it proves gone.
// The panic sites, prompt stops and budgets have their own files
// (panics_test.go, stops_test.go, budget_property_test.go).

var errFlaky8 = errors.New("flaky")

// attemptLog is an agent that fails with errs[i] on call i (nil: succeeds
// with "ok") and records what each call saw of its attempt.
type attemptLog struct {
	mu       sync.Mutex
	errs     []error
	attempts []int
	prevs    []error
}

func (a *attemptLog) Run(ctx context.Context, _ any) (caudal.Reply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := len(a.attempts)
	a.attempts = append(a.attempts, caudal.Attempt(ctx))
	a.prevs = append(a.prevs, caudal.PreviousError(ctx))
	if i < len(a.errs) && a.errs[i] != nil {
		return caudal.Reply{}, a.errs[i]
	}
	return caudal.Reply{Output: "ok"}, nil
}

func (a *attemptLog) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.attempts)
}

// Defect: "everything but pause, breach and cancellation is retried".
func TestIssue8PermanentNotRetried(t *testing.T) {
	bad := errors.New("bad request")
	agent := &attemptLog{errs: []error{fmt.Errorf("call: %w", caudal.Permanent(bad)), nil}}
	fb := &attemptLog{}
	step := caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0),
		caudal.WithFallback(caudal.AgentStep("fb", fb)))
	res, err := execute(t, mustNew(t), step, "in")
	if err != nil || res.Output != "ok" {
		t.Fatalf("Execute = %v, %v; want the fallback's ok", res.Output, err)
	}
	if agent.calls() != 1 || fb.calls() != 1 {
		t.Errorf("primary calls %d, fallback calls %d; want 1, 1 (a permanent error is not retried)", agent.calls(), fb.calls())
	}
	if got := res.Metadata[caudal.MetaRetryStopped]; got != "permanent" {
		t.Errorf("retry_stopped = %v; want permanent", got)
	}
	if !errors.Is(fb.prevs[0], bad) || fb.attempts[0] != 1 {
		t.Errorf("the fallback saw attempt %d, previous error %v; want 1, the primary's error", fb.attempts[0], fb.prevs[0])
	}
}

// A type mismatch cannot mend itself: it is permanent too.
func TestIssue8TypeMismatchNotRetried(t *testing.T) {
	var calls atomic.Int32
	step := caudal.Func("typed", func(_ context.Context, n int) (int, error) {
		calls.Add(1)
		return n, nil
	}, caudal.WithRetries(3), caudal.WithBackoff(0, 0))
	res, err := execute(t, mustNew(t), step, "not an int")
	if !errors.Is(err, caudal.ErrTypeMismatch) || res.Metadata[caudal.MetaRetryStopped] != "permanent" || res.Attempts != 1 {
		t.Errorf("Execute = %v, attempts %d, retry_stopped %v; want ErrTypeMismatch after 1 attempt, permanent", err, res.Attempts, res.Metadata[caudal.MetaRetryStopped])
	}
}

// Defect: "an agent that cannot see its attempt number", "a fallback that
// cannot see why the primary failed".
func TestIssue8AttemptAndPreviousError(t *testing.T) {
	e1, e2 := errors.New("first"), errors.New("second")
	agent := &attemptLog{errs: []error{e1, e2, nil}}
	_, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, caudal.WithRetries(2), caudal.WithBackoff(0, 0)), "in")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(agent.attempts, []int{1, 2, 3}) || !slices.Equal(agent.prevs, []error{nil, e1, e2}) {
		t.Errorf("attempts %v, previous errors %v; want [1 2 3], [<nil> first second]", agent.attempts, agent.prevs)
	}
}

// Defect: no way to say which errors to retry (WithRetryIf).
func TestIssue8RetryIf(t *testing.T) {
	retryable := errors.New("retryable")
	onlyRetryable := caudal.WithRetryIf(func(err error) bool { return errors.Is(err, retryable) })
	t.Run("predicate says no", func(t *testing.T) {
		agent := &attemptLog{errs: []error{errFlaky8, nil}}
		res, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0), onlyRetryable), "in")
		if !errors.Is(err, errFlaky8) || agent.calls() != 1 || res.Metadata[caudal.MetaRetryStopped] != "retry_if" {
			t.Errorf("Execute = %v after %d calls, retry_stopped %v; want flaky after 1 call, retry_if", err, agent.calls(), res.Metadata[caudal.MetaRetryStopped])
		}
		if errors.Is(err, caudal.ErrRetriesExhausted) {
			t.Error("err matches ErrRetriesExhausted; want not: attempts remained")
		}
	})
	t.Run("predicate says yes", func(t *testing.T) {
		agent := &attemptLog{errs: []error{retryable, retryable, nil}}
		_, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0), onlyRetryable), "in")
		if err != nil || agent.calls() != 3 {
			t.Errorf("Execute = %v after %d calls; want success after 3", err, agent.calls())
		}
	})
	t.Run("a permanent error stays permanent", func(t *testing.T) {
		agent := &attemptLog{errs: []error{caudal.Permanent(retryable), nil}}
		_, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0), onlyRetryable), "in")
		if err == nil || agent.calls() != 1 {
			t.Errorf("Execute = %v after %d calls; want a failure after 1", err, agent.calls())
		}
	})
	t.Run("a panicking predicate stops retrying", func(t *testing.T) {
		agent := &attemptLog{errs: []error{errFlaky8, nil}}
		boom := caudal.WithRetryIf(func(error) bool { panic("boom") })
		_, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0), boom), "in")
		if err == nil || agent.calls() != 1 {
			t.Errorf("Execute = %v after %d calls; want a failure after 1", err, agent.calls())
		}
	})
}

// virtualRetryDelays runs step on a virtual clock and returns the delays of its
// EventRetry events.
func virtualRetryDelays(t *testing.T, step caudal.Step) ([]time.Duration, caudal.StepResult, error) {
	t.Helper()
	rt := caudaltest.NewRuntime(1)
	rec := &caudaltest.Recorder{}
	ex := mustNew(t, caudal.WithRuntime(rt), caudal.WithSink(rec))
	res, err := ex.Execute(t.Context(), mustBuild(t, step), "in")
	var delays []time.Duration
	for _, e := range rec.Filter(caudal.EventRetry) {
		delays = append(delays, e.Delay)
	}
	return delays, res, err
}

// Defect: no retry-after hint; and its cap.
func TestIssue8RetryAfter(t *testing.T) {
	agent := &attemptLog{errs: []error{caudal.RetryAfter(errFlaky8, 2*time.Second), caudal.RetryAfter(errFlaky8, time.Hour), nil}}
	delays, _, err := virtualRetryDelays(t, caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, 10*time.Second)))
	if err != nil || !slices.Equal(delays, []time.Duration{2 * time.Second, 10 * time.Second}) {
		t.Errorf("Execute = %v, retry delays %v; want [2s 10s]: the hint, then the hint capped at the backoff's max", err, delays)
	}
}

// Defect: "no bound on a step's total retry time".
func TestIssue8MaxRetryDuration(t *testing.T) {
	agent := &attemptLog{errs: slices.Repeat([]error{errFlaky8}, 20)}
	fb := &attemptLog{}
	_, res, err := virtualRetryDelays(t, caudal.AgentStep("a", agent, caudal.WithRetries(19), caudal.WithBackoff(time.Second, time.Second),
		caudal.WithMaxRetryDuration(2500*time.Millisecond), caudal.WithFallback(caudal.AgentStep("fb", fb))))
	// Delays are drawn from [0.5s, 1s]: within 2.5s, 3 to 5 attempts start.
	if err != nil || agent.calls() < 3 || agent.calls() > 5 || fb.calls() != 1 {
		t.Errorf("Execute = %v after %d calls, fallback calls %d; want the fallback after 3 to 5 calls", err, agent.calls(), fb.calls())
	}
	if got := res.Metadata[caudal.MetaRetryStopped]; got != "max_retry_duration" {
		t.Errorf("retry_stopped = %v; want max_retry_duration", got)
	}
}

// The reason retrying stopped is in the result and in the last
// EventAttemptFailed.
func TestIssue8RetryStoppedEvent(t *testing.T) {
	rec := &caudaltest.Recorder{}
	agent := &attemptLog{errs: []error{errFlaky8, errFlaky8}}
	res, _ := execute(t, mustNew(t, caudal.WithSink(rec)), caudal.AgentStep("a", agent, caudal.WithRetries(1), caudal.WithBackoff(0, 0)), "in")
	failed := rec.Filter(caudal.EventAttemptFailed)
	if len(failed) != 2 || failed[0].Reason != "" || failed[1].Reason != "exhausted" || res.Metadata[caudal.MetaRetryStopped] != "exhausted" {
		t.Errorf("attempt-failed reasons %v, retry_stopped %v; want [\"\" exhausted], exhausted", reasons(failed), res.Metadata[caudal.MetaRetryStopped])
	}
}

func reasons(es []caudal.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Reason
	}
	return out
}

// writesThenFails sets key k in the state (and changes the nested value
// at "shared" in place), then fails on calls before the n-th.
type writesThenFails struct {
	n     int
	calls atomic.Int32
}

func (w *writesThenFails) Run(ctx context.Context, _ any) (caudal.Reply, error) {
	c := int(w.calls.Add(1))
	st := caudal.StateFrom(ctx)
	st.Set(fmt.Sprint("k", c), c)
	if m, ok := caudal.Get[map[string]any](st, "shared"); ok {
		m[fmt.Sprint("touched", c)] = true
	}
	if c < w.n {
		return caudal.Reply{}, errFlaky8
	}
	return caudal.Reply{Output: c}, nil
}

// Defect: "with WithRetries(0) a failed attempt's writes persist and the
// fallback sees them, with WithRetries(1) they are rolled back".
func TestIssue8FailedAttemptWritesDiscarded(t *testing.T) {
	for _, retries := range []int{0, 1, 3} {
		for _, shape := range []string{"bare", "policies"} {
			t.Run(fmt.Sprintf("retries=%d/%s", retries, shape), func(t *testing.T) {
				agent := &writesThenFails{n: 100}
				var sawInFallback []string
				fb := caudal.AgentStep("fb", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
					st := caudal.StateFrom(ctx)
					for k := range st.All() {
						sawInFallback = append(sawInFallback, k)
					}
					shared, _ := caudal.Get[map[string]any](st, "shared")
					return caudal.Reply{Output: len(shared)}, nil
				}))
				opts := []caudal.StepOption{caudal.WithRetries(retries), caudal.WithBackoff(0, 0), caudal.WithFallback(fb)}
				if shape == "policies" {
					opts = append(opts, caudal.WithTimeout(time.Minute), caudal.WithValidators(func(context.Context, any) error { return nil }))
				}
				st := caudal.NewState(map[string]any{"shared": map[string]any{"x": 1}})
				res, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, opts...), "in", caudal.WithState(st))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(sawInFallback, []string{"shared"}) || res.Output != 1 {
					t.Errorf("the fallback saw keys %v and %v shared keys; want [shared] and 1: failed attempts leave nothing", sawInFallback, res.Output)
				}
				want := map[string]any{"shared": map[string]any{"x": 1}}
				if got := stateMap(st); !reflect.DeepEqual(got, want) {
					t.Errorf("state = %v; want %v", got, want)
				}
			})
		}
	}
}

// The successful attempt's writes stay, and only its.
func TestIssue8SuccessfulAttemptWritesKept(t *testing.T) {
	agent := &writesThenFails{n: 3}
	st := caudal.NewState(map[string]any{"shared": map[string]any{"x": 1}})
	_, err := execute(t, mustNew(t), caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0)), "in", caudal.WithState(st))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"k3": 3, "shared": map[string]any{"x": 1, "touched3": true}}
	if got := stateMap(st); !reflect.DeepEqual(got, want) {
		t.Errorf("state = %v; want %v (attempt 3's writes only)", got, want)
	}
}

// stateWriter is a cached step's agent: it counts its calls, writes
// "seen:<in>" at key "log" and outputs a map that UpdatesContext merges.
type stateWriter struct{ calls atomic.Int32 }

func (w *stateWriter) Run(ctx context.Context, in any) (caudal.Reply, error) {
	w.calls.Add(1)
	if st := caudal.StateFrom(ctx); st != nil {
		st.Set("log", fmt.Sprint("seen:", in))
	}
	return caudal.Reply{Output: map[string]any{"answer": fmt.Sprint("A(", in, ")")}}, nil
}

// Defect: "a hit does not re-apply UpdatesContext, so the state differs
// between a miss and a hit" — and the agent's own writes were lost on a
// hit. Differential: miss vs hit inside every construct.
func TestIssue8CacheHitEqualsMiss(t *testing.T) {
	constructs := map[string]func(caudal.Step) caudal.Step{
		"root":     func(s caudal.Step) caudal.Step { return s },
		"sequence": func(s caudal.Step) caudal.Step { return caudal.Seq("seq", s) },
		"parallel branch": func(s caudal.Step) caudal.Step {
			return caudal.Parallel("par", caudal.Branch("b", s), caudal.WithMerge(caudal.ContextUpdate))
		},
		"loop iteration": func(s caudal.Step) caudal.Step { return caudal.Loop("loop", s, caudal.WithMaxIterations(1)) },
		"map item":       func(s caudal.Step) caudal.Step { return caudal.Map("m", s) },
		"conditional": func(s caudal.Step) caudal.Step {
			return caudal.Conditional("c", func(context.Context, any) (string, error) { return "x", nil }, caudal.Branch("x", s))
		},
	}
	for name, wrap := range constructs {
		t.Run(name, func(t *testing.T) {
			agent := &stateWriter{}
			cache := newCache(t, 16)
			step := mustBuild(t, wrap(caudal.Cached(caudal.AgentStep("w", agent, caudal.UpdatesContext()), cache)))
			in := any("q")
			if name == "map item" {
				in = []any{"q"}
			}
			ex := mustNew(t)
			var results [2]caudal.StepResult
			var states [2]map[string]any
			for i := range 2 {
				st := caudal.NewState(nil)
				res, err := ex.Execute(t.Context(), step, in, caudal.WithState(st))
				if err != nil {
					t.Fatalf("Execute %d = %v", i, err)
				}
				results[i], states[i] = res, stateMap(st)
			}
			if agent.calls.Load() != 1 {
				t.Errorf("agent calls = %d; want 1 (the second run hits)", agent.calls.Load())
			}
			if !reflect.DeepEqual(results[0].Output, results[1].Output) {
				t.Errorf("outputs: miss %v, hit %v; want equal", results[0].Output, results[1].Output)
			}
			if !reflect.DeepEqual(states[0], states[1]) || states[0]["log"] != "seen:q" || states[0]["answer"] != "A(q)" {
				t.Errorf("states: miss %v, hit %v; want equal, with log and answer", states[0], states[1])
			}
		})
	}
}

// Defect: "a hit also reports the stored result's Attempts".
func TestIssue8CacheHitMakesNoAttempt(t *testing.T) {
	agent := &attemptLog{errs: []error{errFlaky8, nil}}
	step := mustBuild(t, caudal.Cached(caudal.AgentStep("a", agent, caudal.WithRetries(1), caudal.WithBackoff(0, 0)), newCache(t, 4)))
	ex := mustNew(t)
	miss, err := ex.Execute(t.Context(), step, "in")
	if err != nil || miss.Attempts != 2 {
		t.Fatalf("miss = attempts %d, %v; want 2, nil", miss.Attempts, err)
	}
	hit, err := ex.Execute(t.Context(), step, "in")
	if err != nil || hit.Metadata[caudal.MetaCacheHit] != true || hit.Attempts != 0 || hit.Usage != (caudal.Usage{}) {
		t.Errorf("hit = attempts %d, usage %+v, cache_hit %v, %v; want 0 attempts, zero usage, a hit", hit.Attempts, hit.Usage, hit.Metadata[caudal.MetaCacheHit], err)
	}
}

// Defect: "Only agent steps get a fingerprint, so Cached(Seq("mirror", …))
// returns the output cached for Cached(Seq("shout", …))"; and "two agent
// steps named alike in different pipelines share entries".
func TestIssue8CacheStepsNeverShareEntries(t *testing.T) {
	cache := newCache(t, 16)
	upper := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: strings.ToUpper(fmt.Sprint(in))}, nil
	})
	ex := mustNew(t)
	shout := mustBuild(t, caudal.Cached(caudal.Seq("shout", caudal.AgentStep("up", upper)), cache))
	mirror := mustBuild(t, caudal.Cached(caudal.Seq("mirror", caudal.AgentStep("echo", echoAgent{})), cache))
	if res, err := ex.Execute(t.Context(), shout, "hi"); err != nil || res.Output != "HI" {
		t.Fatalf("shout = %v, %v", res.Output, err)
	}
	if res, err := ex.Execute(t.Context(), mirror, "hi"); err != nil || res.Output != "hi" || res.Metadata[caudal.MetaCacheHit] != false {
		t.Errorf("mirror = %v, %v, cache_hit %v; want hi from a miss", res.Output, err, res.Metadata[caudal.MetaCacheHit])
	}

	// The same agent step, by name and type, in two pipelines.
	summarize := func(out string) caudal.Step {
		return caudal.Cached(caudal.AgentStep("summarize", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			return caudal.Reply{Output: out}, nil
		})), cache)
	}
	p1 := mustBuild(t, caudal.Seq("reports", summarize("report summary")))
	p2 := mustBuild(t, caudal.Seq("tickets", summarize("ticket summary")))
	r1, _ := ex.Execute(t.Context(), p1, "text")
	r2, _ := ex.Execute(t.Context(), p2, "text")
	if r1.Output != "report summary" || r2.Output != "ticket summary" {
		t.Errorf("outputs %v, %v; want each pipeline's own summary", r1.Output, r2.Output)
	}
}

// translator is an agent step that answers "<lang>:<input>", lang read
// from its state, counting its calls.
func translator(calls *atomic.Int32) caudal.Step {
	return caudal.AgentStep("translate", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		calls.Add(1)
		lang, _ := caudal.Get[string](caudal.StateFrom(ctx), "lang")
		return caudal.Reply{Output: lang + ":" + fmt.Sprint(in)}, nil
	}))
}

// Defect: "WithCacheStateKeys builds its key from the run's root state":
// inside parallel branches a translate step keyed on lang served the "de"
// branch the "fr" branch's answer.
func TestIssue8CacheStateKeysFromTheStepsState(t *testing.T) {
	var calls atomic.Int32
	translate := translator(&calls)
	cache := newCache(t, 16)
	cached := caudal.Cached(translate, cache, caudal.WithCacheStateKeys("lang"))
	setLang := func(lang string) caudal.Step {
		return caudal.AgentStep("set", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			caudal.StateFrom(ctx).Set("lang", lang)
			return caudal.Reply{Output: in}, nil
		}))
	}
	step := mustBuild(t, caudal.Parallel("langs",
		caudal.Branch("de", caudal.Seq("de", setLang("de"), cached)),
		caudal.Branch("fr", caudal.Seq("fr", setLang("fr"), cached))))
	res, err := execute(t, mustNew(t), step, "hello", caudal.WithState(caudal.NewState(map[string]any{"lang": "en"})))
	if err != nil {
		t.Fatal(err)
	}
	out := res.Output.(map[string]any)
	if out["de"] != "de:hello" || out["fr"] != "fr:hello" || calls.Load() != 2 {
		t.Errorf("outputs %v after %d translations; want de:hello and fr:hello from 2", out, calls.Load())
	}
}

// Defect: "keys from encoding/json collide for inputs that differ only in
// unexported fields".
func TestIssue8CacheKeyUnexportedFields(t *testing.T) {
	type query struct {
		Text  string
		model string
	}
	var calls atomic.Int32
	step := mustBuild(t, caudal.Cached(caudal.AgentStep("ask", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		calls.Add(1)
		return caudal.Reply{Output: in.(query).model}, nil
	})), newCache(t, 8)))
	ex := mustNew(t)
	a, _ := ex.Execute(t.Context(), step, query{Text: "q", model: "small"})
	b, _ := ex.Execute(t.Context(), step, query{Text: "q", model: "large"})
	if a.Output != "small" || b.Output != "large" || calls.Load() != 2 {
		t.Errorf("outputs %v, %v after %d calls; want small, large from 2", a.Output, b.Output, calls.Load())
	}
}

// Defect: "error text repeats caudal: step "…": at every level of nesting".
func TestIssue8ErrorNamesItsInstanceOnce(t *testing.T) {
	boom := caudal.AgentStep("critic", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{}, errors.New("boom")
	}))
	tests := map[string]struct {
		step caudal.Step
		in   any
		path string
	}{
		"sequence in loop": {caudal.Seq("report", caudal.Loop("refine", caudal.Seq("round", boom))), "x", "report/refine#1/round/critic"},
		"parallel branch":  {caudal.Parallel("p", caudal.Branch("b", caudal.Seq("s", boom))), "x", "p/b/critic"},
		"map item":         {caudal.Map("m", caudal.Seq("s", boom), caudal.WithConcurrency(2)), []any{1}, "m[0]/s/critic"},
		"conditional": {caudal.Conditional("c", func(context.Context, any) (string, error) { return "x", nil },
			caudal.Branch("x", boom)), "x", "c/x"},
		"panicking mapper": {caudal.Loop("l", caudal.AgentStep("e", echoAgent{}),
			caudal.WithInputMapper(func(context.Context, any) (any, error) { panic("mapper") })), "x", "l"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := execute(t, mustNew(t), tt.step, tt.in)
			if err == nil {
				t.Fatal("Execute succeeded; want an error")
			}
			text := err.Error()
			if n := strings.Count(text, "caudal: step"); n != 1 || !strings.Contains(text, fmt.Sprintf("%q", tt.path)) {
				t.Errorf("error %q names a step %d times; want once, as %q", text, n, tt.path)
			}
		})
	}
}

// Defect: "Get[T](StateFrom(ctx), k) panics when the caller passed no state".
func TestIssue8GetOnNoState(t *testing.T) {
	step := caudal.AgentStep("a", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		v, ok := caudal.Get[string](caudal.StateFrom(ctx), "k")
		return caudal.Reply{Output: fmt.Sprintf("%q %t", v, ok)}, nil
	}))
	res, err := execute(t, mustNew(t), step, "in")
	if err != nil || res.Output != `"" false` {
		t.Errorf("Execute = %v, %v; want \"\" false", res.Output, err)
	}
}

// Defect: "Build accepts Branch("default", …) together with WithDefault,
// giving two steps one path".
func TestIssue8DefaultBranchSharesNoPath(t *testing.T) {
	_, err := caudal.Build(caudal.Conditional("c", func(context.Context, any) (string, error) { return "x", nil },
		caudal.Branch("default", caudal.AgentStep("a", echoAgent{})), caudal.WithDefault(caudal.AgentStep("b", echoAgent{}))))
	if err == nil || !strings.Contains(err.Error(), `"default"`) {
		t.Errorf("Build = %v; want an error naming the shared segment \"default\"", err)
	}
}

// chunker streams its input's letters, one chunk each.
type chunker struct{}

func (chunker) Run(_ context.Context, in any) (caudal.Reply, error) {
	return caudal.Reply{Output: in}, nil
}

func (chunker) Stream(_ context.Context, in any, emit func(any) error) (caudal.Reply, error) {
	for _, r := range fmt.Sprint(in) {
		if err := emit(string(r)); err != nil {
			return caudal.Reply{}, err
		}
		time.Sleep(10 * time.Microsecond)
	}
	return caudal.Reply{}, nil
}

// Defect (documented edge): WithStream's callback was called from
// concurrent branches without saying which.
func TestIssue8StreamSerializedWithPaths(t *testing.T) {
	var inFlight, overlap atomic.Int32
	got := map[string]string{}
	onChunk := func(path string, c any) error {
		if inFlight.Add(1) > 1 {
			overlap.Add(1)
		}
		got[path] += c.(string) // unsynchronized on purpose: calls are serialized
		inFlight.Add(-1)
		return nil
	}
	step := caudal.Parallel("p", caudal.Branch("a", caudal.AgentStep("s", chunker{})), caudal.Branch("b", caudal.AgentStep("s", chunker{})),
		caudal.Branch("c", caudal.AgentStep("s", chunker{})))
	if _, err := execute(t, mustNew(t), step, "streamed", caudal.WithStream(onChunk)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"p/a": "streamed", "p/b": "streamed", "p/c": "streamed"}
	if overlap.Load() != 0 || !maps.Equal(got, want) {
		t.Errorf("overlapping calls %d, chunks by path %v; want 0, %v", overlap.Load(), got, want)
	}
}

// Defect: "an int64 token sum overflows past the limit" — sums saturate.
func TestIssue8UsageAddSaturates(t *testing.T) {
	u := caudal.Usage{PromptTokens: math.MaxInt64 - 1}.Add(caudal.Usage{PromptTokens: 5, CompletionTokens: 3})
	if u.PromptTokens != math.MaxInt64 || u.Tokens() != math.MaxInt64 {
		t.Errorf("sum = %+v, tokens %d; want both saturated at MaxInt64", u, u.Tokens())
	}
}

// Concurrent executions on one State: their attempts' undo logs would
// interleave (and a savepoint ended out of order panics), so attempts fork
// instead; failed attempts still leave nothing and successful ones land.
func TestIssue8SharedStateConcurrentAttempts(t *testing.T) {
	st := caudal.NewState(nil)
	ex := mustNew(t)
	const runs = 8
	var wg sync.WaitGroup
	errs := make([]error, runs)
	for i := range runs {
		wg.Go(func() {
			var calls atomic.Int32
			agent := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
				c := calls.Add(1)
				caudal.StateFrom(ctx).Set(fmt.Sprintf("run%d-attempt%d", i, c), true)
				time.Sleep(50 * time.Microsecond)
				if c < 3 {
					return caudal.Reply{}, errFlaky8
				}
				return caudal.Reply{Output: c}, nil
			})
			step := mustBuild(t, caudal.AgentStep("a", agent, caudal.WithRetries(3), caudal.WithBackoff(0, 0)))
			_, errs[i] = ex.Execute(t.Context(), step, "in", caudal.WithState(st))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
	var keys []string
	for k := range st.All() {
		keys = append(keys, k)
	}
	want := make([]string, runs)
	for i := range runs {
		want[i] = fmt.Sprintf("run%d-attempt3", i)
	}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("state keys %v; want each run's third attempt's only: %v", keys, want)
	}
}

// A cache key is computed without calling any method of the values keyed:
// a value whose MarshalJSON panics (the input, or a state value keyed by
// WithCacheStateKeys) is keyed by its Go value, and the step is cached.
// Before: encoding/json re-panicked and the panic escaped Execute.
func TestIssue8CacheKeyCallsNoMethod(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	var calls atomic.Int32
	agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		calls.Add(1)
		return caudal.Reply{Output: "out"}, nil
	})
	ex := mustNew(t)
	input := mustBuild(t, caudal.Cached(caudal.AgentStep("a", agent), newCache(t, 4)))
	stateKeyed := mustBuild(t, caudal.Cached(caudal.AgentStep("a", agent), newCache(t, 4), caudal.WithCacheStateKeys("v")))
	for range 2 {
		if _, err := ex.Execute(t.Context(), input, jsonBomb{armed: &armed}); err != nil {
			t.Fatalf("keyed on the input: %v", err)
		}
		st := caudal.NewState(map[string]any{"v": jsonBomb{armed: &armed}})
		if _, err := ex.Execute(t.Context(), stateKeyed, "x", caudal.WithState(st)); err != nil {
			t.Fatalf("keyed on a state value: %v", err)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("agent calls = %d; want 2 (each second execution hits)", calls.Load())
	}
}

// Defect: "a sequential map stored "de:hello" under the key for lang=fr,
// which a later top-level call got as a hit".
func TestIssue8CacheStateKeysInMapItems(t *testing.T) {
	var calls atomic.Int32
	translate := translator(&calls)
	cache := newCache(t, 16)
	cached := caudal.Cached(translate, cache, caudal.WithCacheStateKeys("lang"))
	// Each item sets lang to its own value, then translates "hello".
	item := caudal.Seq("item",
		caudal.AgentStep("set", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			caudal.StateFrom(ctx).Set("lang", in)
			return caudal.Reply{Output: "hello"}, nil
		})),
		cached)
	ex := mustNew(t)
	step := mustBuild(t, caudal.Map("m", item))
	// The root state says fr both times; the items say de, then fr. A key
	// read from the root state would store de:hello under lang=fr and
	// serve it to the second run.
	for _, tt := range []struct{ lang, want string }{{"de", "[de:hello]"}, {"fr", "[fr:hello]"}} {
		res, err := ex.Execute(t.Context(), step, []any{tt.lang}, caudal.WithState(caudal.NewState(map[string]any{"lang": "fr"})))
		if err != nil || fmt.Sprint(res.Output) != tt.want {
			t.Errorf("map over [%s] = %v, %v; want %s", tt.lang, res.Output, err, tt.want)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("translations = %d; want 2 (one per language)", calls.Load())
	}
}

// An error naming another instance whose path merely starts like this
// step's ("l2" beside "l") is no deeper error of "l": it must still be
// wrapped with "l" and what failed there. Before, a bare prefix test took
// it for a deeper error and dropped "l: input mapper".
func TestIssue8ErrorOfAnotherStepWithALongerName(t *testing.T) {
	ex := mustNew(t)
	other := mustBuild(t, caudal.AgentStep("l2", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{}, errors.New("boom")
	})))
	step := caudal.Loop("l", caudal.AgentStep("e", echoAgent{}), caudal.WithInputMapper(func(ctx context.Context, in any) (any, error) {
		_, err := ex.Execute(ctx, other, in) // a nested run's error names "l2"
		return nil, err
	}))
	_, err := execute(t, ex, step, "x")
	if err == nil || !strings.HasPrefix(err.Error(), `caudal: step "l": input mapper: `) {
		t.Errorf("Execute = %v; want it to begin with the loop's own path and the mapper", err)
	}
}
