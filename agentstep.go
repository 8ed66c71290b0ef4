package caudal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caudal-go/caudal/internal/backoff"
	"github.com/caudal-go/caudal/internal/engine"
)

// agentNode is a compiled agent step. Its policies are layers composed at
// Build, from the outside in: fallback (runFallback), retry (retry), then
// for each attempt usage → timeout → processors and validators → the guard
// and the agent call (attempt).
type agentNode struct {
	nodeBase
	agent    Agent
	streamer StreamAgent // agent as a StreamAgent, or nil
	attempts int
	backoff  backoffPolicy
	// retryIf and maxRetryDuration narrow which failures are retried
	// (WithRetryIf, WithMaxRetryDuration).
	retryIf          func(error) bool
	maxRetryDuration time.Duration
	fallback         node // nil: none
	// attempt is the layers of one attempt, usage outermost.
	attempt *usageLayer
	// bare: one plain attempt (no timeout, processors, validators), no
	// fallback, no streaming, no UpdatesContext — see execBare.
	bare bool
}

func (a *agentNode) kids() []node {
	if a.fallback == nil {
		return nil
	}
	return []node{a.fallback}
}

// backoffPolicy is the delay schedule between attempts.
type backoffPolicy struct{ initial, max time.Duration }

var defaultBackoff = backoffPolicy{initial: 100 * time.Millisecond, max: 10 * time.Second}

// delay returns the delay before retry n (n >= 1), jittered by u, a uniform
// draw in [0, 1).
func (b backoffPolicy) delay(n int, u float64) time.Duration {
	return backoff.Jitter(backoff.Exponential(b.initial, b.max, n), u)
}

// layer is one policy of an attempt: it runs the attempt of step instance p
// on input in, with the feedback of the previous attempt's rejection.
// Layers are composed at Build and know their step.
type layer interface {
	call(ctx context.Context, e env, p string, in any, feedback string) (Reply, error)
}

// env is what an attempt's layers need of their execution, passed by value
// so that the execution's frame does not escape through them.
type env struct {
	quota  *quota // nil: no limits
	rt     *rtime
	strat  *engine.Strategy[StepResult]
	stream streamFunc
}

// usageLayer reserves the step's estimate before the attempt and
// reconciles the actual usage after it ([Limits], [WithUsageEstimate]).
type usageLayer struct {
	next     layer
	estimate Usage
}

func (l *usageLayer) call(ctx context.Context, e env, p string, in any, feedback string) (Reply, error) {
	if e.quota == nil {
		return l.next.call(ctx, e, p, in, feedback)
	}
	if at, used, ok := e.quota.reserve(l.estimate); !ok {
		return Reply{}, e.quota.breach(p, at, used)
	}
	reply, err := l.next.call(ctx, e, p, in, feedback)
	// An invalid report was refused below and books nothing.
	if at, used, ok := e.quota.reconcile(l.estimate, reply.Usage); !ok {
		return reply, e.quota.breach(p, at, used)
	}
	return reply, err
}

// timeoutLayer bounds the attempt by its own deadline ([WithTimeout]).
type timeoutLayer struct {
	next  layer
	d     time.Duration
	cause *timeoutError
}

func (l *timeoutLayer) call(parent context.Context, e env, p string, in any, feedback string) (reply Reply, err error) {
	ctx, cancel := e.rt.withTimeout(parent, l.d, l.cause)
	defer cancel()
	reply, err = l.next.call(ctx, e, p, in, feedback)
	if ctx.Err() != nil && parent.Err() == nil && !errors.Is(err, ErrCircuitOpen) {
		// The deadline fired while the caller's context is alive: whatever
		// the agent returned, the attempt timed out — unless a guard refused
		// it, and no agent ran (a refusal that took past the deadline is
		// still one: the step must not retry it).
		err = l.cause
	}
	return reply, err
}

// processLayer feeds a rejected attempt's feedback to the next one, and
// runs the prompt processors, the agent, the output processors and the
// validators, turning a panic in any of them into a *PanicError.
type processLayer struct {
	a          *agentNode
	prompt     []processor
	output     []processor
	validators []validator
}

func (l *processLayer) call(ctx context.Context, e env, p string, in any, feedback string) (reply Reply, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(p, v)
		}
	}()
	if feedback != "" {
		in = withFeedback(in, feedback)
	}
	for _, p := range l.prompt {
		if in, err = p(ctx, in); err != nil {
			return reply, fmt.Errorf("prompt processor: %w", err)
		}
	}
	if g := e.strat.Guard; g == nil {
		reply, err = l.a.run(ctx, e.stream, p, in) // under this layer's panic guard
		if uerr := checkReported(p, reply.Usage); uerr != nil {
			reply.Usage, err = Usage{}, uerr
		}
	} else {
		reply, err = guarded(ctx, e, g, &l.a.site, l.a.agent, l.a.streamer, p, in)
	}
	if err != nil {
		return reply, err
	}
	for _, p := range l.output {
		if reply.Output, err = p(ctx, reply.Output); err != nil {
			return reply, fmt.Errorf("output processor: %w", err)
		}
	}
	for _, v := range l.validators {
		if verr := v(ctx, reply.Output); verr != nil {
			return reply, &ValidationError{Step: p, Feedback: verr.Error(), Err: verr}
		}
	}
	return reply, nil
}

// agentLayer is the attempt of a plain step: the agent call alone.
type agentLayer struct{ a *agentNode }

func (l agentLayer) call(ctx context.Context, e env, p string, in any, _ string) (Reply, error) {
	if g := e.strat.Guard; g != nil {
		return guarded(ctx, e, g, &l.a.site, l.a.agent, l.a.streamer, p, in)
	}
	return invoke(ctx, e.stream, l.a.agent, l.a.streamer, p, in)
}

// guarded calls agent under guard g, which knows the step as site.
func guarded(ctx context.Context, e env, g engine.Guard, site *engine.Site, agent Agent, streamer StreamAgent, p string, in any) (Reply, error) {
	if err := g.Allow(ctx, site); err != nil {
		return Reply{}, err
	}
	reply, err := invoke(ctx, e.stream, agent, streamer, p, in)
	g.Done(site, err)
	return reply, err
}

// run calls the agent — its Stream when the execution streams — with no
// panic guard of its own.
func (a *agentNode) run(ctx context.Context, stream streamFunc, p string, in any) (Reply, error) {
	if stream != nil && a.streamer != nil {
		return streamAgent(ctx, a.streamer, in, stream, p)
	}
	return a.agent.Run(ctx, in)
}

// invoke calls agent — streamer's Stream when the execution streams and
// streamer is not nil — under a panic guard.
func invoke(ctx context.Context, stream streamFunc, agent Agent, streamer StreamAgent, p string, in any) (reply Reply, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(p, v)
		}
	}()
	if stream != nil && streamer != nil {
		reply, err = streamAgent(ctx, streamer, in, stream, p)
	} else {
		reply, err = agent.Run(ctx, in)
	}
	if uerr := checkReported(p, reply.Usage); uerr != nil {
		reply.Usage, err = Usage{}, uerr
	}
	return reply, err
}

// exec runs an agent step: its attempts, then its fallback if they all
// failed.
func (a *agentNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	if a.bare && r.bareOK {
		if st := r.state(ctx); st != nil {
			_, err := bareOn(ctx, r.rt, r.strategy(&a.nodeBase), a, p, in, r.runID, res, r.rt.mono(), st)
			return err
		}
		_, err := execBareFrom(ctx, r.rt, r.strategy(&a.nodeBase), a, p, in, r.runID, res, r.rt.mono())
		return err
	}
	start := r.rt.mono()
	res.Path, res.RunID = p, r.runID
	if a.fallback != nil && r.replay != nil {
		if d := r.replay.decisions[p]; d != nil {
			return a.resumeFallback(ctx, r, p, in, res, start, d)
		}
	}
	var mark int
	var st *State
	if r.journal != nil {
		mark, st = r.mark(ctx)
	}
	stepErr, err := a.retry(ctx, r, p, in, res, start)
	if stepErr == nil {
		return err
	}
	if !stepErr.exhausted && !stepErr.gaveUp || a.fallback == nil {
		res.Latency = r.rt.mono() - start
		return &stepErr.StepError
	}
	if r.journal != nil {
		// The primary's failure is a decision the run goes on from: a
		// resumed run goes straight to the fallback.
		if err := r.journal.add(ctx, p, StatusDecided, res, st.writesSince(mark)); err != nil {
			res.Latency = r.rt.mono() - start
			return r.failStep(res, err)
		}
	}
	return a.runFallback(ctx, r, p, in, res, start, stepErr)
}

// resumeFallback continues a step whose primary had failed before the run
// paused or stopped: its recorded outcome stands, and the fallback runs.
func (a *agentNode) resumeFallback(ctx context.Context, r *run, p string, in any, res *StepResult, start time.Duration, d *Record) error {
	res.Output, res.Attempts, res.Usage, res.Feedback = copyValue(d.Output), d.Attempts, d.Usage, d.Feedback
	if err := r.applyRecorded(ctx, p, d); err != nil {
		res.Latency = r.rt.mono() - start
		return r.failStep(res, err)
	}
	primary := &failedAttempts{StepError: StepError{Step: p, Attempt: d.Attempts, Err: &replayedError{path: p, text: d.Feedback}, exhausted: true}}
	return a.runFallback(ctx, r, p, in, res, start, primary)
}

// retry makes the step's attempts. It returns their failure when they all
// failed or were stopped, and otherwise the outcome: nil on success, the
// error of a pause or a budget breach.
//
// A failed attempt's state writes are rolled back before the next attempt
// or the fallback, whatever the retry count: a step's effect on the state
// is that of its successful attempt, or nothing.
func (a *agentNode) retry(ctx context.Context, r *run, p string, in any, res *StepResult, start time.Duration) (*failedAttempts, error) {
	strat := r.strategy(&a.nodeBase)
	var (
		lastErr  error
		feedback string
		reason   string        // why the attempts stopped, once they have
		delay    time.Duration // the delay before the next attempt
		deadline time.Duration // WithMaxRetryDuration's end on the clock, or 0
	)
	st := r.state(ctx)
	if a.maxRetryDuration > 0 {
		deadline = start + a.maxRetryDuration
	}
	for attempt := 1; attempt <= a.attempts; attempt++ {
		actx := ctx
		if attempt > 1 {
			if r.rec != nil {
				r.emit(ctx, Event{Kind: EventRetry, Path: p, Attempt: attempt, Delay: delay})
			}
			if err := r.rt.sleep(ctx, delay); err != nil {
				lastErr, reason = err, stopCancelled
				break
			}
			actx = withAttempt(ctx, attemptInfo{n: attempt, prev: lastErr, feedback: feedback})
		}
		if ctx.Err() != nil {
			lastErr, reason = context.Cause(ctx), stopCancelled
			break
		}
		res.Attempts = attempt

		var next layer = a.attempt
		if r.quota == nil {
			next = a.attempt.next // nothing to meter
		}
		sc := beginScope(st)
		reply, err := next.call(actx, env{quota: r.quota, rt: r.rt, strat: strat, stream: r.stream}, p, in, feedback)
		res.Usage = res.Usage.Add(reply.Usage)
		if reply.Output != nil || err == nil {
			res.Output = reply.Output
		}
		sc.end(err == nil)
		if err == nil {
			res.Success = true
			res.Latency = r.rt.mono() - start
			return nil, nil
		}
		lastErr = err
		if isControlFlow(err) {
			res.Latency = r.rt.mono() - start
			res.Feedback = err.Error()
			if ue, ok := err.(*UsageLimitError); ok && ue.Step == p {
				r.finishBreach(ctx, ue, res)
			}
			return nil, err
		}
		if ctx.Err() != nil {
			reason = stopCancelled
			if cause := context.Cause(ctx); !errors.Is(err, cause) {
				lastErr = fmt.Errorf("%w (%w)", cause, err)
			}
			break
		}
		var class string
		reason, delay, class = a.judge(ctx, r, strat, p, err, attempt, deadline)
		if class != "" && reason != "" {
			res.setMeta(MetaErrorClass, boxedClass(class)) // the class of the attempt the step fails with
		}
		if r.rec != nil {
			r.emit(ctx, Event{Kind: EventAttemptFailed, Path: p, Attempt: attempt, Err: err, Reason: reason, Class: class})
		}
		if reason != "" {
			break
		}
		feedback = ""
		if ve, ok := errors.AsType[*ValidationError](err); ok {
			feedback = ve.Feedback
		}
	}
	res.Feedback = lastErr.Error()
	res.setMeta(MetaRetryStopped, boxedReason(reason))
	return &failedAttempts{StepError: StepError{Step: p, Attempt: res.Attempts, Err: lastErr, exhausted: reason == stopExhausted, gaveUp: reason != stopCancelled}}, nil
}

// failedAttempts is the failure of a step's attempts, with room for its
// fallback's context: one allocation for both.
type failedAttempts struct {
	StepError
	fallbackCtx attemptCtx // set by runFallback
}

// judge decides, after failed attempt number attempt, whether another one
// follows: it returns the reason the attempts stop ("" when they go on),
// the delay before the next one — the classifier's (a retry-after hint),
// capped at the backoff's max, or the backoff's — and the class an
// installed classifier gave the error ("" under the baseline's).
func (a *agentNode) judge(ctx context.Context, r *run, strat *engine.Strategy[StepResult], p string, err error, attempt int, deadline time.Duration) (reason string, delay time.Duration, class string) {
	if _, rules := strat.Classifier.(engine.Rules); rules && attempt == a.attempts {
		return stopExhausted, 0, "" // the baseline's verdict on the last attempt changes nothing
	}
	v := strat.Classifier.Classify(a.site, err) // an installed classifier hears of every failure
	if classifies(strat) {
		class = v.Class
	}
	switch {
	case attempt == a.attempts:
		return stopExhausted, 0, class
	case errors.Is(err, ErrCircuitOpen):
		// Never retried, whatever a classifier says: the step fails fast or
		// goes straight to its fallback.
		return stopCircuitOpen, 0, class
	case !v.Retry && v.Class == "permanent":
		return stopPermanent, 0, class
	case !v.Retry:
		return stopClassifier, 0, class
	}
	if a.retryIf != nil {
		retry, perr := guard2(ctx, p, err, func(_ context.Context, err error) (bool, error) { return a.retryIf(err), nil })
		if perr != nil || !retry {
			return stopRetryIf, 0, class
		}
	}
	delay = min(v.Delay, a.backoff.max)
	if delay <= 0 {
		delay = a.backoff.delay(attempt, r.rt.float64())
	}
	if deadline > 0 && r.rt.mono()+delay > deadline {
		return stopMaxDuration, 0, class // the next attempt would start past the bound
	}
	return "", delay, class
}

// classifies reports whether strat's classifier is an installed one, not
// the baseline's rules nor one that only watches: its classes are the
// step's metadata and events.
func classifies(strat *engine.Strategy[StepResult]) bool {
	switch strat.Classifier.(type) {
	case engine.Rules, engine.Watching:
		return false
	}
	return true
}

// finishBreach completes the breach error of step res: its partial result,
// and the event.
func (r *run) finishBreach(ctx context.Context, ue *UsageLimitError, res *StepResult) {
	ue.Result = *res
	if r.rec != nil {
		r.emit(ctx, Event{Kind: EventUsageBreach, Path: ue.Step, Attempt: res.Attempts, Usage: ue.Used, Err: ue})
	}
}

// runFallback runs the fallback of step p after its primary failed with
// primary.
func (a *agentNode) runFallback(ctx context.Context, r *run, p string, in any, res *StepResult, start time.Duration, primary *failedAttempts) error {
	if r.rec != nil {
		r.emit(ctx, Event{Kind: EventFallback, Path: p, Attempt: res.Attempts, Err: primary.Err})
	}
	res.Children = make([]StepResult, 1)
	fres := &res.Children[0]
	if ctx.Err() != nil {
		// No fallback starts on an ended context.
		cause := context.Cause(ctx)
		res.Latency = r.rt.mono() - start
		primary.Err, primary.exhausted = fmt.Errorf("%w (%w)", cause, primary.Err), false
		res.Children = nil
		return r.failStep(res, &primary.StepError)
	}
	primary.fallbackCtx = attemptCtx{Context: ctx, info: attemptInfo{n: 1, prev: primary.Err}}
	ferr := r.step(&primary.fallbackCtx, a.fallback, childPath(p, a.fallback.base()), in, fres)
	res.Usage = res.Usage.Add(fres.Usage)
	if res.Metadata == nil {
		res.Metadata = make(map[string]any, 3)
	}
	res.Metadata[MetaFallbackTriggered] = true
	res.Metadata[MetaOriginalError] = primary.Err.Error()
	res.Latency = r.rt.mono() - start
	switch {
	case ferr == nil:
		res.Success, res.Output, res.Feedback = true, fres.Output, ""
		return nil
	case isControlFlow(ferr):
		res.Feedback = ferr.Error()
		return ferr
	}
	res.Feedback = "Original error: " + primary.Err.Error() + "\nFallback error: " + ferr.Error()
	failure := primary.StepError // a copy: the error returned does not hold the fallback's context
	failure.Err = fmt.Errorf("%w; fallback: %w", primary.Err, ferr)
	return &failure
}

// execBareFrom runs a bare agent step — one attempt of a plain agent, no
// fallback — when nothing observes or meters the execution: the whole
// engine overhead is this function. It behaves exactly as the general path
// does, strat being the step's seams: its guard stands around the call, its
// classifier (when one is installed) judges a failure. start is the
// clock's reading when the step began (a sequence passes the end of one
// step as the start of the next, so a chain of bare steps reads the clock
// once per step); it returns the end. It knows of no state: bareOn runs it
// on one.
func execBareFrom(ctx context.Context, c *rtime, strat *engine.Strategy[StepResult], a *agentNode, p string, in any, runID string, res *StepResult, start time.Duration) (end time.Duration, err error) {
	res.Path, res.RunID = p, runID
	if ctx.Err() != nil {
		end = c.mono()
		res.Latency = end - start
		res.Feedback = context.Cause(ctx).Error()
		res.setMeta(MetaRetryStopped, stopCancelled)
		return end, &StepError{Step: p, Err: context.Cause(ctx)}
	}
	res.Attempts = 1
	guard := strat.Guard
	if guard != nil {
		if err := guard.Allow(ctx, &a.site); err != nil {
			end = c.mono()
			res.Latency = end - start
			return end, failedAttempt(ctx, strat, a, p, res, err)
		}
	}
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(p, v)
		}
		end = c.mono()
		res.Latency = end - start
		if res.Usage != (Usage{}) { // a tool's or a function's report needs no check
			if uerr := checkReported(p, res.Usage); uerr != nil {
				res.Usage, err = Usage{}, uerr
			}
		}
		if guard != nil {
			guard.Done(&a.site, err)
		}
		if err != nil {
			res.Success = false
			err = failedAttempt(ctx, strat, a, p, res, err)
		}
	}()
	reply, err := a.agent.Run(ctx, in)
	res.Output, res.Usage, res.Success = reply.Output, reply.Usage, err == nil
	return 0, err
}

// bareOn is execBareFrom on state st (nil: none): a failed attempt leaves
// the state as it found it.
func bareOn(ctx context.Context, c *rtime, strat *engine.Strategy[StepResult], a *agentNode, p string, in any, runID string, res *StepResult, start time.Duration, st *State) (time.Duration, error) {
	if st == nil {
		return execBareFrom(ctx, c, strat, a, p, in, runID, res, start)
	}
	sc := beginScope(st)
	end, err := execBareFrom(ctx, c, strat, a, p, in, runID, res, start)
	sc.end(err == nil)
	return end, err
}

// failedAttempt turns the error of bare step a's only attempt into the
// step's error, as retry does.
func failedAttempt(ctx context.Context, strat *engine.Strategy[StepResult], a *agentNode, p string, res *StepResult, err error) error {
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
		res.setMeta(MetaRetryStopped, stopCancelled)
		return &StepError{Step: p, Attempt: 1, Err: err}
	}
	if _, rules := strat.Classifier.(engine.Rules); !rules {
		if v := strat.Classifier.Classify(a.site, err); v.Class != "" && classifies(strat) {
			res.setMeta(MetaErrorClass, boxedClass(v.Class))
		}
	}
	res.setMeta(MetaRetryStopped, stopExhausted)
	return &StepError{Step: p, Attempt: 1, Err: err, exhausted: true}
}

// failStep marks res failed with err and returns err.
func (r *run) failStep(res *StepResult, err error) error {
	res.Success = false
	res.Feedback = err.Error()
	return err
}

// streamFunc is the callback of [WithStream], serialized.
type streamFunc func(path string, chunk any) error

// serialized returns fn behind a lock: branches stream concurrently.
func serialized(fn func(path string, chunk any) error) streamFunc {
	var mu sync.Mutex
	return func(path string, chunk any) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(path, chunk)
	}
}

// streamAgent calls a's Stream for step instance p, forwarding chunks to
// fn and joining them.
func streamAgent(ctx context.Context, a StreamAgent, in any, fn streamFunc, p string) (Reply, error) {
	var chunks []any
	reply, err := a.Stream(ctx, in, func(c any) error {
		chunks = append(chunks, c)
		return fn(p, c)
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
