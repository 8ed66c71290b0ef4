package caudal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Which errors are retried. By default every failed attempt is retried, up
// to [WithRetries], except:
//
//   - an error marked [Permanent] — a type mismatch ([ErrTypeMismatch]) and
//     an agent's invalid usage report are permanent too;
//   - an error matching [ErrCircuitOpen];
//   - a pause, a budget breach, a refused checkpoint, and the end of the
//     caller's context, which end the step at once without a fallback.
//
// A step that stops retrying for any other reason than its context goes
// to its fallback ([WithFallback]) when it has one. [WithRetryIf] narrows
// what a step retries, [WithMaxRetryDuration] bounds how long it keeps
// trying, and an error carrying a retry-after hint ([RetryAfter]) sets the
// delay before the next attempt. [MetaRetryStopped] says why the attempts
// stopped.

// MetaRetryStopped says why a failed agent step made no further attempt:
// "exhausted" (every attempt [WithRetries] allows was made), "permanent"
// (the error was [Permanent]), "retry_if" ([WithRetryIf] said no),
// "max_retry_duration" ([WithMaxRetryDuration] ran out), "circuit_open"
// (the error matched [ErrCircuitOpen]), "classifier" (an installed error
// classifier said no) or "cancelled" (the caller's context ended). The
// last failed attempt's [EventAttemptFailed] carries the same reason.
const MetaRetryStopped = "retry_stopped"

// MetaErrorClass is, when an error classifier is installed (the
// optimization layer's error handling), the class it gave a failed step's
// last failed attempt: "transient", "permanent", "rate_limited",
// "timeout", "circuit_open" or a class of its own rules. The
// [EventAttemptFailed] of every failed attempt carries its class in
// [Event.Class]. The baseline sets neither.
const MetaErrorClass = "error_class"

// The reasons of [MetaRetryStopped].
const (
	stopExhausted   = "exhausted"
	stopPermanent   = "permanent"
	stopRetryIf     = "retry_if"
	stopMaxDuration = "max_retry_duration"
	stopCircuitOpen = "circuit_open"
	stopClassifier  = "classifier"
	stopCancelled   = "cancelled"
)

// boxedReason returns reason as an interface value without allocating: a
// constant converts to an interface from static data, a variable does not.
func boxedReason(reason string) any {
	switch reason {
	case stopExhausted:
		return stopExhausted
	case stopPermanent:
		return stopPermanent
	case stopRetryIf:
		return stopRetryIf
	case stopMaxDuration:
		return stopMaxDuration
	case stopCircuitOpen:
		return stopCircuitOpen
	case stopClassifier:
		return stopClassifier
	case stopCancelled:
		return stopCancelled
	}
	return reason
}

// boxedClass returns an error class as an interface value, without
// allocating for the classes the optimization layer's rules give.
func boxedClass(class string) any {
	switch class {
	case "transient":
		return "transient"
	case "permanent":
		return "permanent"
	case "rate_limited":
		return "rate_limited"
	case "timeout":
		return "timeout"
	case "circuit_open":
		return "circuit_open"
	}
	return class
}

// Permanent marks err as one another attempt cannot mend: the step makes
// no further attempt and goes straight to its fallback. The result
// matches err with [errors.Is] and [errors.As]. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// RetryAfter marks err with a retry-after hint, such as an HTTP 429's
// Retry-After: the next attempt waits d instead of the backoff, capped at
// the step's maximum backoff ([WithBackoff]); when that wait would end past
// [WithMaxRetryDuration]'s bound, the attempts stop instead. Any error with
// a method RetryAfter() time.Duration in its chain is honoured the same
// way. The result matches err with [errors.Is] and [errors.As].
// RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, d: d}
}

type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.d }

// WithRetryIf makes the step retry a failed attempt only when retry
// reports true for its error; false ends the attempts (the fallback, if
// any, runs). It narrows the default: a [Permanent] error is never
// retried, whatever retry says. retry must be safe for concurrent use.
func WithRetryIf(retry func(err error) bool) StepOption {
	return agentOption("WithRetryIf", func(d *stepDef) error {
		if retry == nil {
			return errors.New("nil retry predicate")
		}
		d.retryIf = retry
		return nil
	})
}

// WithMaxRetryDuration bounds the time a step spends on its attempts: no
// attempt starts, and no backoff is waited, past d after the first attempt
// started (the fallback, if any, then runs). A running attempt is not cut
// short: [WithTimeout] bounds each attempt. d must be > 0.
func WithMaxRetryDuration(d time.Duration) StepOption {
	return agentOption("WithMaxRetryDuration", func(s *stepDef) error {
		if d <= 0 {
			return fmt.Errorf("max retry duration must be > 0, got %v", d)
		}
		s.maxRetryDuration = d
		return nil
	})
}

// attemptInfo is what an attempt after the first, or a fallback, learns of
// the attempts before it through its context.
type attemptInfo struct {
	n        int    // this attempt's number, from 1
	prev     error  // the previous attempt's error; a fallback's: the primary's
	feedback string // the previous attempt's validation feedback, or ""
}

type attemptKey struct{}

// attemptCtx is the context of an attempt after the first, or of a
// fallback: its parent with the attemptInfo as a value, in one allocation.
type attemptCtx struct {
	context.Context
	info attemptInfo
}

func (c *attemptCtx) Value(key any) any {
	if key == (attemptKey{}) {
		return &c.info
	}
	return c.Context.Value(key)
}

func withAttempt(ctx context.Context, info attemptInfo) context.Context {
	return &attemptCtx{Context: ctx, info: info}
}

func attemptFrom(ctx context.Context) *attemptInfo {
	info, _ := ctx.Value(attemptKey{}).(*attemptInfo)
	return info
}

// Attempt returns, inside an agent, processor or validator, the number of
// the attempt running: 1 on a first attempt, and in a fallback's first.
func Attempt(ctx context.Context) int {
	if info := attemptFrom(ctx); info != nil {
		return info.n
	}
	return 1
}

// PreviousError returns, inside an agent, processor or validator, the
// error of the attempt before this one; inside a fallback, the error of
// the primary step's last attempt; nil on a first attempt.
func PreviousError(ctx context.Context) error {
	if info := attemptFrom(ctx); info != nil {
		return info.prev
	}
	return nil
}

// Feedback returns, inside an agent, processor or validator, the feedback
// of the previous attempt's failed validation, or "" on a first attempt or
// after a failure of another kind. The attempt's input carries it too: a
// map[string]any input is copied with the text at key "feedback", a string
// input gets it appended on a new line; the caller's value is never changed.
func Feedback(ctx context.Context) string {
	if info := attemptFrom(ctx); info != nil {
		return info.feedback
	}
	return ""
}
