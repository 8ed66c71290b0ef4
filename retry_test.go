package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
)

// failN fails its first n calls with err, then echoes its input.
type failN struct {
	mu    sync.Mutex
	n     int
	err   error
	calls int
	seen  []any
}

func (f *failN) Run(_ context.Context, in any) (caudal.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.seen = append(f.seen, in)
	if f.calls <= f.n {
		return caudal.Reply{Usage: caudal.Usage{PromptTokens: 1}}, f.err
	}
	return caudal.Reply{Output: in, Usage: caudal.Usage{PromptTokens: 1}}, nil
}

func execute(t *testing.T, ex *caudal.Executor, s caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
	t.Helper()
	return ex.Execute(t.Context(), mustBuild(t, s), in, opts...)
}

func TestAttempts(t *testing.T) {
	errFlaky := errors.New("flaky")
	tests := []struct {
		name         string
		giveRetries  int
		giveFailures int
		wantAttempts int
		wantCalls    int
		wantSuccess  bool
	}{
		{"no retries, success", 0, 0, 1, 1, true},
		{"no retries, failure", 0, 1, 1, 1, false},
		{"retries absorb failures", 3, 2, 3, 3, true},
		{"last attempt succeeds", 2, 2, 3, 3, true},
		{"retries exhausted", 2, 5, 3, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := &failN{n: tt.giveFailures, err: errFlaky}
			step := caudal.AgentStep("s", agent, caudal.WithRetries(tt.giveRetries), caudal.WithBackoff(0, 0))
			res, err := execute(t, mustNew(t), step, "in")
			if res.Attempts != tt.wantAttempts || agent.calls != tt.wantCalls || res.Success != tt.wantSuccess {
				t.Errorf("attempts=%d calls=%d success=%v; want %d %d %v",
					res.Attempts, agent.calls, res.Success, tt.wantAttempts, tt.wantCalls, tt.wantSuccess)
			}
			if (err == nil) != res.Success {
				t.Errorf("err = %v with Success = %v; want err exactly on failure", err, res.Success)
			}
			if got := res.Usage.PromptTokens; got != int64(tt.wantCalls) {
				t.Errorf("Usage.PromptTokens = %d; want %d (every attempt metered)", got, tt.wantCalls)
			}
		})
	}
}

func TestRetriesExhaustedError(t *testing.T) {
	errFlaky := errors.New("flaky")
	res, err := execute(t, mustNew(t), caudal.AgentStep("s", &failN{n: 9, err: errFlaky},
		caudal.WithRetries(2), caudal.WithBackoff(0, 0)), nil)
	var se *caudal.StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %T %v; want *StepError", err, err)
	}
	if se.Step != "s" || se.Attempt != 3 || !errors.Is(err, caudal.ErrRetriesExhausted) || !errors.Is(err, errFlaky) {
		t.Errorf("StepError = %+v; want Step s, Attempt 3, matching ErrRetriesExhausted and the agent error", se)
	}
	if !strings.Contains(res.Feedback, "flaky") || res.Path != "s" {
		t.Errorf("result = %+v; want feedback naming the error and path s", res)
	}
}

func TestBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &caudaltest.Recorder{}
		ex := mustNew(t, caudal.WithSink(rec))
		agent := &failN{n: 4, err: errors.New("flaky")}
		step := caudal.AgentStep("s", agent, caudal.WithRetries(4), caudal.WithBackoff(100*time.Millisecond, 300*time.Millisecond))
		start := time.Now()
		res, err := execute(t, ex, step, "in")
		if err != nil {
			t.Fatalf("Execute: %v", err)
		}
		elapsed := time.Since(start)
		retries := rec.Filter(caudal.EventRetry)
		if len(retries) != 4 {
			t.Fatalf("retry events = %d; want 4", len(retries))
		}
		// Un-jittered delays 100, 200, 300 (capped), 300ms; jitter draws each
		// from the upper half of its value.
		want := []time.Duration{100, 200, 300, 300}
		var total time.Duration
		for i, e := range retries {
			hi := want[i] * time.Millisecond
			if e.Delay < hi/2 || e.Delay > hi || e.Attempt != i+2 {
				t.Errorf("retry %d: delay %v attempt %d; want delay in [%v, %v], attempt %d", i, e.Delay, e.Attempt, hi/2, hi, i+2)
			}
			total += e.Delay
		}
		if elapsed != total || res.Attempts != 5 {
			t.Errorf("elapsed %v, attempts %d; want the sum of delays %v, 5 attempts", elapsed, res.Attempts, total)
		}
	})
}

func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			select {
			case <-ctx.Done():
				return caudal.Reply{}, context.Cause(ctx)
			case <-time.After(time.Hour):
				return caudal.Reply{Output: in}, nil
			}
		})
		start := time.Now()
		res, err := execute(t, mustNew(t), caudal.AgentStep("slow", slow,
			caudal.WithTimeout(50*time.Millisecond), caudal.WithRetries(1), caudal.WithBackoff(0, 0)), "in")
		if !errors.Is(err, caudal.ErrTimeout) || !errors.Is(err, caudal.ErrRetriesExhausted) {
			t.Fatalf("err = %v; want ErrTimeout and ErrRetriesExhausted", err)
		}
		if got := time.Since(start); got != 100*time.Millisecond || res.Attempts != 2 {
			t.Errorf("elapsed %v, attempts %d; want 100ms over 2 attempts", got, res.Attempts)
		}
		if !strings.Contains(err.Error(), `"slow"`) {
			t.Errorf("err = %q; want it to name the step", err)
		}
	})
}

func TestTimeoutIgnoredByAgentStillFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// An agent that ignores its context overruns, but its late answer is
		// not taken.
		stubborn := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			time.Sleep(time.Second)
			return caudal.Reply{Output: in}, nil
		})
		res, err := execute(t, mustNew(t), caudal.AgentStep("stubborn", stubborn, caudal.WithTimeout(10*time.Millisecond)), "in")
		if !errors.Is(err, caudal.ErrTimeout) || res.Success {
			t.Errorf("Execute = %+v, %v; want a failed result matching ErrTimeout", res, err)
		}
	})
}

func TestValidatorFeedback(t *testing.T) {
	tests := []struct {
		name      string
		give      any
		wantInput any
	}{
		{"map input gets a feedback key", map[string]any{"q": "x"}, map[string]any{"q": "x", "feedback": "too short"}},
		{"map feedback appended", map[string]any{"feedback": "earlier"}, map[string]any{"feedback": "earlier\ntoo short"}},
		{"string input gets a line", "question", "question\ntoo short"},
		{"other input unchanged", 42, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []any
			var feedback []string
			agent := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
				seen = append(seen, in)
				feedback = append(feedback, caudal.Feedback(ctx))
				return caudal.Reply{Output: len(seen)}, nil
			})
			atLeastTwo := func(_ context.Context, out any) error {
				if out.(int) < 2 {
					return errors.New("too short")
				}
				return nil
			}
			orig := fmt.Sprint(tt.give)
			res, err := execute(t, mustNew(t), caudal.AgentStep("v", agent,
				caudal.WithRetries(1), caudal.WithBackoff(0, 0), caudal.WithValidators(atLeastTwo)), tt.give)
			if err != nil || res.Attempts != 2 {
				t.Fatalf("Execute = %+v, %v; want success on attempt 2", res, err)
			}
			if fmt.Sprint(seen[1]) != fmt.Sprint(tt.wantInput) {
				t.Errorf("second input = %v; want %v", seen[1], tt.wantInput)
			}
			if feedback[0] != "" || feedback[1] != "too short" {
				t.Errorf("Feedback(ctx) per attempt = %q; want [\"\" \"too short\"]", feedback)
			}
			if fmt.Sprint(tt.give) != orig {
				t.Errorf("caller's input changed to %v; want %v", tt.give, orig)
			}
		})
	}
}

func TestValidationFailureKeepsOutput(t *testing.T) {
	reject := func(context.Context, any) error { return errors.New("not good enough") }
	res, err := execute(t, mustNew(t), caudal.AgentStep("v", echoAgent{}, caudal.WithValidators(reject)), "draft")
	if !errors.Is(err, caudal.ErrValidation) || res.Output != "draft" {
		t.Errorf("Execute = %+v, %v; want ErrValidation with the rejected output kept", res, err)
	}
	var ve *caudal.ValidationError
	if !errors.As(err, &ve) || ve.Feedback != "not good enough" || ve.Step != "v" {
		t.Errorf("ValidationError = %+v; want feedback and step", ve)
	}
}

func TestProcessors(t *testing.T) {
	var got any
	agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		got = in
		return caudal.Reply{Output: in.(string) + "!"}, nil
	})
	prefix := func(_ context.Context, v any) (any, error) { return "please: " + v.(string), nil }
	upper := func(_ context.Context, v any) (any, error) { return strings.ToUpper(v.(string)), nil }
	exclaim := func(_ context.Context, v any) (any, error) { return v.(string) + "?", nil }
	res, err := execute(t, mustNew(t), caudal.AgentStep("p", agent,
		caudal.WithPromptProcessors(prefix, upper), caudal.WithOutputProcessors(exclaim)), "go")
	if err != nil || got != "PLEASE: GO" || res.Output != "PLEASE: GO!?" {
		t.Errorf("agent saw %v, output %v, err %v; want PLEASE: GO, PLEASE: GO!?, nil", got, res.Output, err)
	}

	failing := func(context.Context, any) (any, error) { return nil, errors.New("bad prompt") }
	_, err = execute(t, mustNew(t), caudal.AgentStep("p", agent, caudal.WithPromptProcessors(failing)), "go")
	if err == nil || !strings.Contains(err.Error(), "prompt processor: bad prompt") {
		t.Errorf("err = %v; want the processor's error", err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	errInner := errors.New("inner")
	tests := []struct {
		name      string
		give      any
		wantInner bool
	}{
		{"string panic", "boom", false},
		{"error panic unwraps", errInner, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { panic(tt.give) })
			res, err := execute(t, mustNew(t), caudal.AgentStep("p", agent, caudal.WithRetries(1), caudal.WithBackoff(0, 0)), nil)
			var pe *caudal.PanicError
			if !errors.As(err, &pe) || pe.Value != tt.give || len(pe.Stack) == 0 {
				t.Fatalf("err = %v; want *PanicError carrying %v and a stack", err, tt.give)
			}
			if errors.Is(err, errInner) != tt.wantInner || res.Attempts != 2 {
				t.Errorf("errors.Is(inner) = %v, attempts %d; want %v, 2", errors.Is(err, errInner), res.Attempts, tt.wantInner)
			}
		})
	}
}

func TestCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errStop := errors.New("caller gave up")
		ctx, cancel := context.WithCancelCause(t.Context())
		calls := 0
		// The caller gives up during the second attempt.
		agent := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			calls++
			if calls == 2 {
				cancel(errStop)
			}
			return caudal.Reply{}, errors.New("flaky")
		})
		step := mustBuild(t, caudal.AgentStep("s", agent, caudal.WithRetries(10), caudal.WithBackoff(time.Second, time.Second),
			caudal.WithFallback(caudal.AgentStep("fb", echoAgent{}))))
		res, err := mustNew(t).Execute(ctx, step, "in")
		if !errors.Is(err, errStop) || errors.Is(err, caudal.ErrRetriesExhausted) {
			t.Errorf("err = %v; want the cancellation cause, not ErrRetriesExhausted", err)
		}
		if calls != 2 || res.Metadata[caudal.MetaFallbackTriggered] != nil {
			t.Errorf("calls %d, metadata %v; want 2 calls and no fallback after cancellation", calls, res.Metadata)
		}
	})
}

// TestCancelledDuringBackoff cancels while the step waits between attempts.
func TestCancelledDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		agent := &failN{n: 100, err: errors.New("flaky")}
		step := mustBuild(t, caudal.AgentStep("s", agent, caudal.WithRetries(10), caudal.WithBackoff(time.Hour, time.Hour)))
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, err := mustNew(t).Execute(ctx, step, "in")
		if !errors.Is(err, context.Canceled) || agent.calls != 1 || time.Since(start) != time.Second {
			t.Errorf("Execute = %v after %v with %d calls; want context.Canceled after 1s, 1 call", err, time.Since(start), agent.calls)
		}
	})
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	agent := &failN{}
	res, err := mustNew(t).Execute(ctx, mustBuild(t, caudal.AgentStep("s", agent)), "in")
	if !errors.Is(err, context.Canceled) || agent.calls != 0 || res.Success {
		t.Errorf("Execute = %+v, %v, calls %d; want context.Canceled and no call", res, err, agent.calls)
	}
}

func TestTypedFunc(t *testing.T) {
	double := caudal.Func("double", func(_ context.Context, n int) (int, error) { return 2 * n, nil })
	tests := []struct {
		name    string
		give    any
		want    any
		wantErr error
	}{
		{"typed input", 21, 42, nil},
		{"nil is the zero value", nil, 0, nil},
		{"wrong type", "21", nil, caudal.ErrTypeMismatch},
		{"JSON number converted", 21.0, 42, nil},
		{"fractional JSON number refused", 21.5, nil, caudal.ErrTypeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := execute(t, mustNew(t), double, tt.give)
			if !errors.Is(err, tt.wantErr) || res.Output != tt.want {
				t.Errorf("Execute(%v) = %v, %v; want %v, %v", tt.give, res.Output, err, tt.want, tt.wantErr)
			}
		})
	}
}

// streamer streams its words.
type streamer struct{ words []any }

func (s streamer) Run(context.Context, any) (caudal.Reply, error) {
	return caudal.Reply{Output: "not streamed"}, nil
}

func (s streamer) Stream(_ context.Context, _ any, emit func(any) error) (caudal.Reply, error) {
	for _, w := range s.words {
		if err := emit(w); err != nil {
			return caudal.Reply{}, err
		}
	}
	return caudal.Reply{Usage: caudal.Usage{CompletionTokens: int64(len(s.words))}}, nil
}

func TestStreaming(t *testing.T) {
	errEnough := errors.New("enough")
	tests := []struct {
		name       string
		give       []any
		stopAfter  int
		wantOutput any
		wantChunks int
		wantErr    error
	}{
		{"strings joined", []any{"a", "b", "c"}, 0, "abc", 3, nil},
		{"bytes joined", []any{[]byte("x"), []byte("y")}, 0, "xy", 2, nil},
		{"mixed kept as a list", []any{"a", 1}, 0, "[a 1]", 2, nil},
		{"callback error stops", []any{"a", "b", "c"}, 2, "", 2, errEnough},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var chunks []any
			onChunk := func(_ string, c any) error {
				chunks = append(chunks, c)
				if len(chunks) == tt.stopAfter {
					return errEnough
				}
				return nil
			}
			res, err := execute(t, mustNew(t), caudal.AgentStep("stream", streamer{tt.give}), nil, caudal.WithStream(onChunk))
			out := res.Output
			if b, ok := out.([]byte); ok {
				out = string(b)
			}
			if !errors.Is(err, tt.wantErr) || len(chunks) != tt.wantChunks || (err == nil && fmt.Sprint(out) != tt.wantOutput) {
				t.Errorf("Execute = %v, %v with %d chunks; want %v, %v with %d", out, err, len(chunks), tt.wantOutput, tt.wantErr, tt.wantChunks)
			}
		})
	}
	// Without WithStream the agent's Run answers.
	res, err := execute(t, mustNew(t), caudal.AgentStep("stream", streamer{[]any{"a"}}), nil)
	if err != nil || res.Output != "not streamed" {
		t.Errorf("Execute without WithStream = %v, %v; want Run's output", res.Output, err)
	}
}

// TestBarePathMatchesGeneralPath differential-tests the bare fast path
// (no sink, no limits, one plain attempt) against the general path, forced
// here by attaching a sink.
func TestBarePathMatchesGeneralPath(t *testing.T) {
	errAgent := errors.New("agent failed")
	cancelled, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("caller left"))
	tests := []struct {
		name  string
		agent caudal.AgentFunc
		ctx   context.Context
	}{
		{"success", func(_ context.Context, in any) (caudal.Reply, error) {
			return caudal.Reply{Output: in, Usage: caudal.Usage{PromptTokens: 3, CostUSD: 0.1}}, nil
		}, context.Background()},
		{"error keeps output", func(context.Context, any) (caudal.Reply, error) {
			return caudal.Reply{Output: "partial", Usage: caudal.Usage{CompletionTokens: 2}}, errAgent
		}, context.Background()},
		{"panic", func(context.Context, any) (caudal.Reply, error) { panic("boom") }, context.Background()},
		{"control flow passes through", func(context.Context, any) (caudal.Reply, error) {
			return caudal.Reply{}, fmt.Errorf("waiting: %w", caudal.ErrPaused)
		}, context.Background()},
		{"cancelled before start", func(_ context.Context, in any) (caudal.Reply, error) {
			return caudal.Reply{Output: in}, nil
		}, cancelled},
	}
	sentinels := []error{caudal.ErrRetriesExhausted, caudal.ErrPaused, errAgent, context.Canceled}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step := mustBuild(t, caudal.AgentStep("s", tt.agent))
			bare, bareErr := mustNew(t).Execute(tt.ctx, step, "in")
			full, fullErr := mustNew(t, caudal.WithSink(&caudaltest.Recorder{})).Execute(tt.ctx, step, "in")
			bare.Latency, full.Latency = 0, 0
			if fmt.Sprintf("%+v", bare) != fmt.Sprintf("%+v", full) {
				t.Errorf("results differ:\nbare    %+v\ngeneral %+v", bare, full)
			}
			if (bareErr == nil) != (fullErr == nil) || (bareErr != nil && bareErr.Error() != fullErr.Error()) {
				t.Errorf("errors differ: bare %v, general %v", bareErr, fullErr)
			}
			for _, s := range sentinels {
				if errors.Is(bareErr, s) != errors.Is(fullErr, s) {
					t.Errorf("errors.Is(%v): bare %v, general %v", s, errors.Is(bareErr, s), errors.Is(fullErr, s))
				}
			}
		})
	}
}
