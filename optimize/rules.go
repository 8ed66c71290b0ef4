package optimize

import (
	"errors"
	"fmt"
	"time"
)

// The classes error handling gives a failed attempt (see
// [ErrorHandlingConfig]); they are the values of [caudal.MetaErrorClass].
const (
	ClassTransient   = "transient"    // another attempt may succeed: retried
	ClassPermanent   = "permanent"    // no attempt will: not retried
	ClassRateLimited = "rate_limited" // retried after the retry-after it carries
	ClassTimeout     = "timeout"      // the attempt ran out of time: retried
	ClassCircuitOpen = "circuit_open" // refused by an open circuit: never retried
)

// ErrorRule classifies the errors it matches as Class. Make one with
// [Sentinel], [ErrorType], [StatusCodes] or [MatchFunc].
type ErrorRule struct {
	// Name describes the rule, for messages and events.
	Name string
	// Class is the class of a matched error: one of ClassTransient,
	// ClassPermanent, ClassRateLimited or ClassTimeout.
	Class string
	// RetryAfter is, for ClassRateLimited, the delay before the next
	// attempt when the error carries no hint of its own; 0: the backoff.
	RetryAfter time.Duration
	match      func(error) bool
}

// Sentinel returns the rule that classes every error matching target
// ([errors.Is]) as class.
func Sentinel(target error, class string) ErrorRule {
	r := ErrorRule{Name: fmt.Sprintf("sentinel %q", errorText(target)), Class: class}
	if target != nil {
		r.match = func(err error) bool { return errors.Is(err, target) }
	}
	return r
}

// ErrorType returns the rule that classes every error with an E in its
// chain ([errors.As]) as class.
func ErrorType[E error](class string) ErrorRule {
	return ErrorRule{
		Name:  fmt.Sprintf("type %T", *new(E)),
		Class: class,
		match: func(err error) bool { _, ok := errors.AsType[E](err); return ok },
	}
}

// StatusCodes returns the rule that classes every error exposing one of
// codes as its HTTP status (through a StatusCode() int or HTTPStatusCode()
// int method, anywhere in its chain) as class.
func StatusCodes(class string, codes ...int) ErrorRule {
	set := make(map[int]bool, len(codes))
	for _, c := range codes {
		set[c] = true
	}
	r := ErrorRule{Name: fmt.Sprintf("status %v", codes), Class: class}
	if len(codes) > 0 {
		r.match = func(err error) bool { c, ok := statusCode(err); return ok && set[c] }
	}
	return r
}

// MatchFunc returns the rule called name that classes every error match
// reports true for as class. match must be safe for concurrent use.
func MatchFunc(name string, match func(error) bool, class string) ErrorRule {
	return ErrorRule{Name: name, Class: class, match: match}
}

// check reports what makes r unusable.
func (r ErrorRule) check() error {
	switch r.Class {
	case ClassTransient, ClassPermanent, ClassRateLimited, ClassTimeout:
	default:
		return fmt.Errorf("(%s) has class %q; want %q, %q, %q or %q", r.Name, r.Class, ClassTransient, ClassPermanent, ClassRateLimited, ClassTimeout)
	}
	if r.match == nil {
		return fmt.Errorf("(%s) matches nothing: make it with Sentinel (a non-nil error), ErrorType, StatusCodes (at least one code) or MatchFunc (a non-nil func)", r.Name)
	}
	if r.RetryAfter < 0 {
		return fmt.Errorf("(%s) has RetryAfter %v; want >= 0", r.Name, r.RetryAfter)
	}
	return nil
}

func errorText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// statusCode returns the HTTP status an error in err's chain exposes.
func statusCode(err error) (int, bool) {
	if s, ok := errors.AsType[interface {
		error
		StatusCode() int
	}](err); ok {
		return s.StatusCode(), true
	}
	if s, ok := errors.AsType[interface {
		error
		HTTPStatusCode() int
	}](err); ok {
		return s.HTTPStatusCode(), true
	}
	return 0, false
}
