package caudal

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors callers branch on with [errors.Is].
var (
	// ErrNotBuilt is returned by [Executor.Execute] for a step that did not go
	// through [Build].
	ErrNotBuilt = errors.New("caudal: step not built")
	// ErrClosed is returned by [Executor.Execute] after [Executor.Close].
	ErrClosed = errors.New("caudal: executor closed")
	// ErrTimeout matches an attempt that ran past its [WithTimeout] budget.
	ErrTimeout = errors.New("caudal: attempt timed out")
	// ErrRetriesExhausted matches a [*StepError] whose every attempt failed.
	ErrRetriesExhausted = errors.New("caudal: retries exhausted")
	// ErrUsageLimitExceeded matches a [*UsageLimitError]: a run spent, or was
	// about to spend, more than its [Limits].
	ErrUsageLimitExceeded error = &controlError{"caudal: usage limit exceeded"}
	// ErrInfiniteFallback is a [Build] error: a fallback chain repeats a step
	// name or is longer than 10 steps.
	ErrInfiniteFallback = errors.New("caudal: infinite fallback chain")
	// ErrTypeMismatch matches an input whose type does not fit a typed step
	// made by [Func].
	ErrTypeMismatch = errors.New("caudal: type mismatch")
	// ErrValidation matches a [*ValidationError]: a validator rejected an
	// attempt's output.
	ErrValidation = errors.New("caudal: validation failed")
	// ErrPaused matches a [*PausedError]: a run stopped at a [HumanInput]
	// step. It is never retried and never triggers a fallback.
	ErrPaused error = &controlError{"caudal: paused for human input"}
	// ErrMaxIterations matches a [Loop] that ran out of iterations before its
	// exit condition held.
	ErrMaxIterations = errors.New("caudal: max iterations reached")
	// ErrNoBranch matches a [Conditional] step whose key names no branch and
	// that has no default branch.
	ErrNoBranch = errors.New("caudal: no branch for key")
	// ErrCircuitOpen matches an agent call refused because a circuit
	// breaker is open: it is never retried, so the step fails fast or goes
	// straight to its fallback. An agent that guards its backend with a
	// breaker of its own returns it (wrapped) when that breaker refuses;
	// an installed guard produces it too.
	ErrCircuitOpen = errors.New("caudal: circuit open")
	// ErrSnapshotMismatch matches a [WithResume] refused because the
	// snapshot does not fit the pipeline: another pipeline's, a changed
	// one's, an unknown version, records at steps the pipeline does not
	// have or in an order it cannot have made; or because the resumed run
	// never reached the paused step.
	ErrSnapshotMismatch = errors.New("caudal: snapshot does not match the pipeline")
)

// StepError reports a step that failed: Err is the error of its last attempt
// (or of the fallback chain, which it then wraps as well). When every attempt
// ran and failed, the error also matches [ErrRetriesExhausted]; when the
// step stopped early — the caller's context was cancelled, or the error was
// one another attempt could not mend ([ErrCircuitOpen]) — it does not.
type StepError struct {
	Step    string // instance path of the failed step
	Attempt int    // number of the last attempt made
	Err     error  // the last attempt's error

	exhausted bool
	gaveUp    bool // stopped by the error classifier: the fallback may run
}

func (e *StepError) Error() string {
	// The attempt's error names the step too, more often than not: once is
	// enough.
	inner := strings.TrimPrefix(e.Err.Error(), stepPrefix(e.Step))
	if e.exhausted {
		return fmt.Sprintf("caudal: step %q failed after %d attempt(s): %s", e.Step, e.Attempt, inner)
	}
	return fmt.Sprintf("caudal: step %q stopped at attempt %d: %s", e.Step, e.Attempt, inner)
}

func (e *StepError) instancePath() string { return e.Step }

// stepPrefix is how the error of step instance p begins.
func stepPrefix(p string) string { return "caudal: step " + strconv.Quote(p) + ": " }

// pathed is implemented by the errors that name their step instance.
type pathed interface {
	error
	instancePath() string
}

// pathError is an error of step instance path that says what failed there.
type pathError struct {
	path string
	what string // what failed, e.g. "input mapper"; "" when err says it
	err  error
}

func (e *pathError) Error() string {
	inner := strings.TrimPrefix(e.err.Error(), stepPrefix(e.path))
	if e.what == "" {
		return stepPrefix(e.path) + inner
	}
	return stepPrefix(e.path) + e.what + ": " + inner
}

func (e *pathError) Unwrap() error        { return e.err }
func (e *pathError) instancePath() string { return e.path }

// stepError returns err as an error of step instance p, where what failed.
// An error that names a deeper instance already says where it happened
// (its path says which branch, iteration or item) and is returned as it
// is; one that names p itself gets what added, and no second p: every
// error names its instance once.
func stepError(p, what string, err error) error {
	if pe, ok := errors.AsType[pathed](err); ok && inside(pe.instancePath(), p) {
		return err
	}
	return &pathError{path: p, what: what, err: err}
}

// inside reports whether instance path ip is strictly inside the instance
// at p: a child, an iteration or an item of it ("m[3]/a" is inside "m",
// "m2/a" is not).
func inside(ip, p string) bool {
	if len(ip) <= len(p) || !strings.HasPrefix(ip, p) {
		return false
	}
	return p == "" || strings.IndexByte("/#[", ip[len(p)]) >= 0
}

// Unwrap returns the last attempt's error.
func (e *StepError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrRetriesExhausted] and every attempt ran.
func (e *StepError) Is(target error) bool { return e.exhausted && target == ErrRetriesExhausted }

// PanicError is a panic raised by an agent, processor, validator or other
// callback of a step, turned into an error. A panic never escapes
// [Executor.Execute].
type PanicError struct {
	Step  string // instance path of the step that panicked
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

func newPanicError(step string, v any) *PanicError {
	return &PanicError{Step: step, Value: v, Stack: debug.Stack()}
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("caudal: step %q: panic: %v", e.Step, e.Value)
}

func (e *PanicError) instancePath() string { return e.Step }

// Unwrap returns the panic value when it is an error, or nil.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// ValidationError is a validator's rejection of an attempt's output. Its
// Feedback reaches the next attempt (see [Feedback]).
type ValidationError struct {
	Step     string // instance path of the validated step
	Feedback string // the validator's error text
	Err      error  // the validator's error
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("caudal: step %q: validation failed: %s", e.Step, e.Feedback)
}

func (e *ValidationError) instancePath() string { return e.Step }

// Unwrap returns the validator's error.
func (e *ValidationError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrValidation].
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

// UsageLimitError reports a breach of the run's [Limits]: a reservation the
// remaining budget could not cover, or actual usage past a limit. Result is
// the breaching step's partial result; Used is the run's usage so far.
type UsageLimitError struct {
	Step   string     // instance path of the step that breached
	Limits Limits     // the limits in force: the run's, or a parallel branch's share
	Used   Usage      // usage of the run, reserved work included
	Result StepResult // the partial result of the breaching step
}

func (e *UsageLimitError) Error() string {
	return fmt.Sprintf("caudal: step %q: usage limit exceeded: %s", e.Step, e.Limits.describeBreach(e.Used))
}

func (e *UsageLimitError) instancePath() string { return e.Step }

// Is reports whether target is [ErrUsageLimitExceeded].
func (e *UsageLimitError) Is(target error) bool { return target == ErrUsageLimitExceeded }

// typeError reports an input whose dynamic type does not fit a typed step;
// it matches [ErrTypeMismatch].
type typeError struct {
	Step string // name of the typed step
	Want string // the type the step accepts
	Got  string // the type it was given
}

func (e *typeError) Error() string {
	return fmt.Sprintf("caudal: step %q: input of type %s, want %s", e.Step, e.Got, e.Want)
}

// Is reports whether target is [ErrTypeMismatch].
func (e *typeError) Is(target error) bool { return target == ErrTypeMismatch }

// Permanent reports true: another attempt on the same input cannot fit.
func (e *typeError) Permanent() bool { return true }

// timeoutError is the cause installed on an attempt's context by
// [WithTimeout]. One is built per step at [Build], so a timeout allocates
// nothing to describe itself; the [StepError] around it names the step
// instance.
type timeoutError struct {
	timeout time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("caudal: attempt timed out after %v", e.timeout)
}

func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }

// isControlFlow reports errors that end a step at once: no retry, no
// fallback. A pause, a budget breach or a refused checkpoint must reach the
// caller untouched.
//
// It is errors.Is against each of those sentinels, in one walk of the chain:
// it runs on every failed attempt.
func isControlFlow(err error) bool {
	for err != nil {
		if _, ok := err.(*controlError); ok {
			return true // ErrPaused, ErrUsageLimitExceeded or errCheckpoint
		}
		// One type switch: a leaf error with none of these methods, the
		// common case, costs a single cached type lookup.
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			if controlFlowIs(err) {
				return true
			}
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			if controlFlowIs(err) {
				return true
			}
			for _, e := range u.Unwrap() {
				if isControlFlow(e) {
					return true
				}
			}
			return false
		case interface{ Is(error) bool }:
			return u.Is(ErrPaused) || u.Is(ErrUsageLimitExceeded) || u.Is(errCheckpoint)
		default:
			return false
		}
	}
	return false
}

// controlError is the type of the control-flow sentinels alone: telling
// one apart from an agent's error is one type comparison, not three
// interface comparisons.
type controlError struct{ text string }

func (e *controlError) Error() string { return e.text }

// controlFlowIs reports whether err's own Is method, if any, matches a
// control-flow sentinel.
func controlFlowIs(err error) bool {
	x, ok := err.(interface{ Is(error) bool })
	return ok && (x.Is(ErrPaused) || x.Is(ErrUsageLimitExceeded) || x.Is(errCheckpoint))
}
