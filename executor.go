package caudal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
)

// Executor runs built steps: the ExecutorCore. Make one with [New] and share
// it; it is safe for concurrent use. Its overhead per agent step is measured
// by BenchmarkExecute/bare (no policies) and BenchmarkExecute/policies.
type Executor struct {
	// The seams the optimization layer swaps, chosen once in New.
	recorder engine.Recorder[Event] // nil when no sink is attached
	keyer    engine.Keyer
	sharer   engine.Sharer[StepResult]
	alloc    engine.Allocator[StepResult]
	isolate  engine.Isolation
	fanOut   engine.FanOut

	limits Limits // default limits of every execution
	quiet  bool   // no sink and no default limits: bare steps may take the fast path
	closed atomic.Bool
}

// New returns an executor configured by opts. An invalid option — a nil
// sink, negative limits, an option that applies only to Execute — is an
// error naming it.
func New(opts ...Option) (*Executor, error) {
	var s settings
	if err := s.apply(opts, scopeNew, "New"); err != nil {
		return nil, err
	}
	ex := &Executor{
		keyer:   engine.CanonicalKeyer{},
		sharer:  copySharer{},
		alloc:   engine.Fresh[StepResult]{},
		isolate: engine.DeepCopy{},
		fanOut:  engine.Fixed{},
		limits:  s.limits,
	}
	if len(s.sinks) > 0 {
		fan := make(engine.Fanout[Event], len(s.sinks))
		for i, sink := range s.sinks {
			fan[i] = sink
		}
		ex.recorder = fan
	}
	ex.quiet = ex.recorder == nil && ex.limits.isZero()
	return ex, nil
}

// Close releases the executor. Executions started after Close fail with
// [ErrClosed]. Close is idempotent and returns nil.
func (ex *Executor) Close() error {
	ex.closed.Store(true)
	return nil
}

// run is the per-execution context shared by every step of one Execute.
type run struct {
	runID  string
	quota  *quota // nil without limits
	stream func(chunk any) error
	state  *State
	resume *resumeState // nil unless resuming
}

// Execute runs step with input in and returns its result. err is non-nil
// exactly when res.Success is false, and res is always filled: on failure,
// pause or budget breach it holds what had been done (path, attempts,
// usage, last output). Nested steps run on the same executor.
//
// Errors: a step that was not built wraps [ErrNotBuilt]; after Close,
// [ErrClosed]; an invalid option names it; a step whose attempts all failed
// gives a [*StepError] matching [ErrRetriesExhausted] and wrapping the last
// attempt's error ([ErrTimeout], a [*ValidationError], a [*PanicError],
// [ErrTypeMismatch], or the agent's own error); a cancelled ctx gives a
// [*StepError] wrapping [context.Cause]; a budget breach gives a
// [*UsageLimitError] matching [ErrUsageLimitExceeded]. A panic in an agent,
// processor or validator never escapes: it becomes a [*PanicError].
func (ex *Executor) Execute(ctx context.Context, step Step, in any, opts ...Option) (StepResult, error) {
	n := step.node
	if n == nil {
		return StepResult{Path: step.Name()}, fmt.Errorf("caudal: step %q: %w", step.Name(), ErrNotBuilt)
	}
	if ex.closed.Load() {
		return StepResult{Path: n.path}, ErrClosed
	}
	if n.bare && ex.quiet && len(opts) == 0 {
		var res StepResult
		err := execBare(ctx, n, in, "", &res)
		return res, err
	}
	var r run
	limits := ex.limits
	if len(opts) > 0 {
		var s settings
		if err := s.apply(opts, scopeExecute, "Execute"); err != nil {
			return StepResult{Path: n.path}, err
		}
		r.runID, r.stream, r.state = s.runID, s.stream, s.state
		if s.hasLimits {
			limits = s.limits
		}
		if s.resume != nil {
			r.resume = newResume(s.resume, s.resumeInput)
			if r.state == nil {
				r.state = NewState(nil)
			}
			r.state.replace(deepcopy.CopyMap(s.resume.State))
		}
	}
	if r.state == nil && step.needsState {
		r.state = NewState(nil)
	}
	if r.state != nil {
		ctx = withState(ctx, r.state)
	}
	if !limits.isZero() {
		r.quota = newQuota(limits)
	}
	var res StepResult
	err := ex.exec(ctx, &r, n, in, &res)
	if pe := asPaused(err); pe != nil {
		pe.Snapshot.RunID = r.runID
		pe.Snapshot.State = r.state.snapshot()
	}
	if r.resume != nil && !r.resume.delivered.Load() && (err == nil || asPaused(err) == nil) {
		res.Success = false
		err = fmt.Errorf("caudal: WithResume: the run never reached the paused step %q: is this the step that paused? (run error: %v)", r.resume.target, err)
		res.Feedback = err.Error()
	}
	return res, err
}

// exec runs one node into res; nested steps call back into it. Results
// travel by pointer so that no layer copies them.
func (ex *Executor) exec(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	switch {
	case n.bare && r.quota == nil && ex.recorder == nil:
		return execBare(ctx, n, in, r.runID, res)
	case ex.recorder != nil && n.kind != kindAgent && n.kind != kindCache:
		// Agent steps report their own start and end, with attempts.
		ex.emit(ctx, Event{Kind: EventStepStarted, RunID: r.runID, Path: n.path})
		err := ex.dispatch(ctx, r, n, in, res)
		ex.emitFinished(ctx, r, res, &err)
		return err
	}
	return ex.dispatch(ctx, r, n, in, res)
}

// dispatch runs n by kind, then merges its output into the state when it
// updates the context.
func (ex *Executor) dispatch(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	var err error
	switch n.kind {
	case kindAgent:
		err = ex.execAgent(ctx, r, n, in, res)
	case kindCache:
		err = ex.execCache(ctx, r, n, in, res)
	case kindSeq:
		err = ex.execSeq(ctx, r, n, in, res)
	case kindParallel:
		err = ex.execParallel(ctx, r, n, in, res)
	case kindLoop:
		err = ex.execLoop(ctx, r, n, in, res)
	case kindMap:
		err = ex.execMap(ctx, r, n, in, res)
	case kindConditional:
		err = ex.execConditional(ctx, r, n, in, res)
	case kindRouter:
		err = ex.execRouter(ctx, r, n, in, res)
	case kindHuman:
		err = ex.execHuman(ctx, r, n, in, res)
	case kindRefineRound:
		err = ex.execRefineRound(ctx, r, n, in, res)
	}
	if err == nil && n.updatesState {
		if st := StateFrom(ctx); st != nil {
			if merr := st.mergeOutput(res.Output); merr != nil {
				return ex.fail(res, fmt.Errorf("caudal: step %q: %w", n.path, merr))
			}
		}
	}
	return err
}

// execBare runs a bare agent step — one attempt of a plain agent, no
// fallback — when nothing observes or meters the execution: the whole
// engine overhead is this function. It behaves exactly as execAgent would.
func execBare(ctx context.Context, n *node, in any, runID string, res *StepResult) error {
	_, err := execBareFrom(ctx, n, in, runID, res, monoNow())
	return err
}

// execBareFrom is execBare for a step whose start time the caller read: a
// sequence passes the end of one step as the start of the next, so a chain
// of bare steps reads the clock once per step. It returns the end time.
func execBareFrom(ctx context.Context, n *node, in any, runID string, res *StepResult, start time.Duration) (end time.Duration, err error) {
	res.Path, res.RunID = n.path, runID
	if ctx.Err() != nil {
		end = monoNow()
		res.Latency = end - start
		res.Feedback = context.Cause(ctx).Error()
		return end, &StepError{Step: n.path, Err: context.Cause(ctx)}
	}
	res.Attempts = 1
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
		end = monoNow()
		res.Latency = end - start
		if err != nil {
			res.Success = false
			err = failedAttempt(ctx, n, res, err)
		}
	}()
	reply, err := n.agent.Run(ctx, in)
	res.Output, res.Usage, res.Success = reply.Output, reply.Usage, err == nil
	return 0, err
}

// failedAttempt turns the error of a bare step's only attempt into the
// step's error, as the retry loop of execAgent does.
func failedAttempt(ctx context.Context, n *node, res *StepResult, err error) error {
	res.Feedback = err.Error()
	if isControlFlow(err) {
		return err
	}
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		res.Feedback = err.Error()
		return &StepError{Step: n.path, Attempt: 1, Err: err}
	}
	return &StepError{Step: n.path, Attempt: 1, Err: err, exhausted: true}
}

// emit stamps e and hands it to the recorder. Callers check ex.recorder != nil
// first, so no event is built without a sink.
func (ex *Executor) emit(ctx context.Context, e Event) {
	e.Time = time.Now()
	ex.recorder.Record(ctx, &e)
}

// execAgent runs an agent step: attempts with retries and backoff, each
// bounded by the timeout, then the fallback if every attempt failed.
func (ex *Executor) execAgent(ctx context.Context, r *run, n *node, in any, res *StepResult) (err error) {
	start := monoNow()
	res.Path, res.RunID = n.path, r.runID
	if ex.recorder != nil {
		ex.emit(ctx, Event{Kind: EventStepStarted, RunID: r.runID, Path: n.path})
		defer ex.emitFinished(ctx, r, res, &err)
	}

	var (
		lastErr  error
		feedback string
		stopped  bool   // the caller's context ended the step
		state    *State // the state, isolated per attempt when the step retries
	)
	if n.attempts > 1 {
		state = StateFrom(ctx)
	}
	for attempt := 1; attempt <= n.attempts; attempt++ {
		if attempt > 1 {
			delay := n.backoff.delay(attempt - 1)
			if ex.recorder != nil {
				ex.emit(ctx, Event{Kind: EventRetry, RunID: r.runID, Path: n.path, Attempt: attempt, Delay: delay})
			}
			if serr := sleep(ctx, delay); serr != nil {
				lastErr, stopped = serr, true
				break
			}
		}
		if ctx.Err() != nil {
			lastErr, stopped = context.Cause(ctx), true
			break
		}
		res.Attempts = attempt

		var estimate Usage
		if r.quota != nil {
			if used, ok := r.quota.reserve(n.estimate); !ok {
				return ex.breach(ctx, r, n, res, start, used)
			}
			estimate = n.estimate
		}

		actx, astate := ctx, state
		if state != nil {
			astate = state.fork(ex.isolate)
			actx = withState(ctx, astate)
		}
		var (
			reply Reply
			aerr  error
		)
		if n.plain && feedback == "" && r.stream == nil {
			reply, aerr = callAgent(actx, n.agent, in)
		} else {
			reply, aerr = ex.attempt(actx, r, n, in, feedback)
		}
		if aerr == nil && state != nil {
			state.mergeFrom(ex.isolate, astate)
		}
		res.Usage = res.Usage.Add(reply.Usage)
		if reply.Output != nil || aerr == nil {
			res.Output = reply.Output
		}
		if r.quota != nil {
			if used, ok := r.quota.reconcile(estimate, reply.Usage); !ok {
				return ex.breach(ctx, r, n, res, start, used)
			}
		}
		if aerr == nil {
			res.Success = true
			res.Latency = monoNow() - start
			return nil
		}

		lastErr = aerr
		if isControlFlow(aerr) {
			res.Latency = monoNow() - start
			res.Feedback = aerr.Error()
			return aerr
		}
		if ctx.Err() != nil {
			stopped = true
			if cause := context.Cause(ctx); !errors.Is(aerr, cause) {
				lastErr = fmt.Errorf("%w (%w)", cause, aerr)
			}
			break
		}
		if ex.recorder != nil {
			ex.emit(ctx, Event{Kind: EventAttemptFailed, RunID: r.runID, Path: n.path, Attempt: attempt, Err: aerr})
		}
		feedback = ""
		if ve, ok := errors.AsType[*ValidationError](aerr); ok {
			feedback = ve.Feedback
		}
	}

	stepErr := &StepError{Step: n.path, Attempt: res.Attempts, Err: lastErr, exhausted: !stopped}
	res.Feedback = lastErr.Error()
	if stopped || n.fallback == nil {
		res.Latency = monoNow() - start
		return stepErr
	}
	return ex.runFallback(ctx, r, n, in, res, start, stepErr)
}

// emitFinished records the end of the step whose result is res.
func (ex *Executor) emitFinished(ctx context.Context, r *run, res *StepResult, err *error) {
	ex.emit(ctx, Event{
		Kind: EventStepFinished, RunID: r.runID, Path: res.Path,
		Attempt: res.Attempts, Latency: res.Latency, Success: res.Success, Usage: res.Usage, Err: *err,
	})
}

// runFallback runs n's fallback after the primary failed with primary.
func (ex *Executor) runFallback(ctx context.Context, r *run, n *node, in any, res *StepResult, start time.Duration, primary *StepError) error {
	if ex.recorder != nil {
		ex.emit(ctx, Event{Kind: EventFallback, RunID: r.runID, Path: n.path, Attempt: res.Attempts, Err: primary.Err})
	}
	res.Children = append(ex.alloc.Children(1), StepResult{})
	fres := &res.Children[0]
	ferr := ex.exec(ctx, r, n.fallback, in, fres)
	res.Usage = res.Usage.Add(fres.Usage)
	res.Metadata = ex.alloc.Metadata(2)
	res.Metadata[MetaFallbackTriggered] = true
	res.Metadata[MetaOriginalError] = primary.Err.Error()
	res.Latency = monoNow() - start
	switch {
	case ferr == nil:
		res.Success, res.Output, res.Feedback = true, fres.Output, ""
		return nil
	case isControlFlow(ferr):
		res.Feedback = ferr.Error()
		return ferr
	}
	res.Feedback = "Original error: " + primary.Err.Error() + "\nFallback error: " + ferr.Error()
	primary.Err = fmt.Errorf("%w; fallback %q: %w", primary.Err, n.fallback.path, ferr)
	return primary
}

// breach ends the step on a usage-limit breach.
func (ex *Executor) breach(ctx context.Context, r *run, n *node, res *StepResult, start time.Duration, used Usage) error {
	res.Latency = monoNow() - start
	err := &UsageLimitError{Step: n.path, Limits: r.quota.effectiveLimits(), Used: used}
	res.Feedback = err.Error()
	err.Result = *res
	if ex.recorder != nil {
		ex.emit(ctx, Event{Kind: EventUsageBreach, RunID: r.runID, Path: n.path, Attempt: res.Attempts, Usage: used, Err: err})
	}
	return err
}

// callAgent calls the agent under a panic guard: the whole attempt of a
// plain step (no timeout, processors or validators).
func callAgent(ctx context.Context, a Agent, in any) (reply Reply, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
	}()
	return a.Run(ctx, in)
}

// attempt runs one full attempt: timeout, prompt processors, the agent,
// output processors, validators. A panic anywhere in it becomes a
// *PanicError.
func (ex *Executor) attempt(ctx context.Context, r *run, n *node, in any, feedback string) (reply Reply, err error) {
	if n.timeout > 0 {
		parent := ctx
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(parent, n.timeout, n.timeoutErr)
		defer func() {
			// The deadline fired while the caller's context is alive: whatever
			// the agent returned, the attempt timed out.
			if ctx.Err() != nil && parent.Err() == nil {
				err = n.timeoutErr
			}
			cancel()
		}()
	}
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
	}()
	if feedback != "" {
		in = withFeedback(in, feedback)
		ctx = context.WithValue(ctx, feedbackKey{}, feedback)
	}
	for _, p := range n.promptProcs {
		if in, err = p(ctx, in); err != nil {
			return reply, fmt.Errorf("prompt processor: %w", err)
		}
	}
	if r.stream != nil && n.streamer != nil {
		reply, err = streamAgent(ctx, n.streamer, in, r.stream)
	} else {
		reply, err = n.agent.Run(ctx, in)
	}
	if err != nil {
		return reply, err
	}
	for _, p := range n.outputProcs {
		if reply.Output, err = p(ctx, reply.Output); err != nil {
			return reply, fmt.Errorf("output processor: %w", err)
		}
	}
	for _, v := range n.validators {
		if verr := v(ctx, reply.Output); verr != nil {
			return reply, &ValidationError{Step: n.path, Feedback: verr.Error(), Err: verr}
		}
	}
	return reply, nil
}

// streamAgent calls a's Stream, forwarding chunks to fn and joining them.
func streamAgent(ctx context.Context, a StreamAgent, in any, fn func(any) error) (Reply, error) {
	var chunks []any
	reply, err := a.Stream(ctx, in, func(c any) error {
		chunks = append(chunks, c)
		return fn(c)
	})
	if err == nil && reply.Output == nil {
		reply.Output = joinChunks(chunks)
	}
	return reply, err
}

// joinChunks concatenates string or []byte chunks; other mixes become a []any.
func joinChunks(chunks []any) any {
	if len(chunks) == 0 {
		return ""
	}
	switch chunks[0].(type) {
	case string:
		var b strings.Builder
		for _, c := range chunks {
			s, ok := c.(string)
			if !ok {
				return chunks
			}
			b.WriteString(s)
		}
		return b.String()
	case []byte:
		var b bytes.Buffer
		for _, c := range chunks {
			s, ok := c.([]byte)
			if !ok {
				return chunks
			}
			b.Write(s)
		}
		return b.Bytes()
	}
	return chunks
}

// sleep waits d or until ctx is done, returning ctx's cause then.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

