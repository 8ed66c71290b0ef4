package optimize

import (
	"context"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// classifier is error handling's [engine.Classifier]: the rules of an
// [ErrorHandlingConfig] first, in order, then the built-in ones its doc
// lists. It keeps no state: it is safe for concurrent use, and classifying
// allocates nothing (unless a rule's own matcher does). Its cost on the
// failure path is measured by BenchmarkErrorHandling.
type classifier struct {
	rules []ErrorRule
}

var _ engine.Classifier = (*classifier)(nil)

// newClassifier returns the classifier of cfg's rules (cfg is valid: every
// rule has a matcher and a known class).
func newClassifier(cfg ErrorHandlingConfig) *classifier {
	return &classifier{rules: slices.Clone(cfg.Rules)}
}

// Classify implements [engine.Classifier].
func (c *classifier) Classify(_ engine.Site, err error) engine.Verdict {
	return c.classify(err)
}

// classify is Classify without a site: the breaker asks it too.
func (c *classifier) classify(err error) engine.Verdict {
	for i := range c.rules {
		r := &c.rules[i]
		if r.match(err) {
			return ruleVerdict(r, err)
		}
	}
	return builtinVerdict(err)
}

// ruleVerdict is the verdict of rule r on err, which it matched.
func ruleVerdict(r *ErrorRule, err error) engine.Verdict {
	switch r.Class {
	case ClassPermanent:
		return engine.Verdict{Class: ClassPermanent}
	case ClassRateLimited:
		d, ok := retryHint(err)
		if !ok || d <= 0 {
			d = r.RetryAfter
		}
		return engine.Verdict{Retry: true, Delay: d, Class: ClassRateLimited}
	case ClassTimeout:
		return engine.Verdict{Retry: true, Class: ClassTimeout}
	}
	return engine.Verdict{Retry: true, Class: ClassTransient}
}

// The interfaces the built-in rules look for in an error's chain.
type (
	permanentErr interface {
		error
		Permanent() bool
	}
	retryAfterErr interface {
		error
		RetryAfter() time.Duration
	}
	headerErr interface {
		error
		Header() http.Header
	}
	timeoutErr interface {
		error
		Timeout() bool
	}
)

// builtinVerdict is the verdict of the built-in rules (see
// [ErrorHandlingConfig]) on err. It walks err's chain once: a failure of
// an error-heavy workload pays one walk, not one per rule.
func builtinVerdict(err error) engine.Verdict {
	var f facts
	f.walk(err)
	if f.circuit {
		return engine.Verdict{Class: ClassCircuitOpen}
	}
	if f.permanent != nil && f.permanent.Permanent() {
		return engine.Verdict{Class: ClassPermanent}
	}
	if d, ok := f.retryHint(); ok {
		return engine.Verdict{Retry: true, Delay: d, Class: ClassRateLimited}
	}
	if f.hasCode {
		switch code := f.code; {
		case code == http.StatusTooManyRequests:
			return engine.Verdict{Retry: true, Class: ClassRateLimited}
		case code == http.StatusRequestTimeout || code == http.StatusGatewayTimeout:
			return engine.Verdict{Retry: true, Class: ClassTimeout}
		case code == http.StatusInternalServerError || code == http.StatusBadGateway || code == http.StatusServiceUnavailable:
			return engine.Verdict{Retry: true, Class: ClassTransient}
		case code >= 400 && code < 500:
			return engine.Verdict{Class: ClassPermanent}
		}
	}
	if f.deadline || (f.timeout != nil && f.timeout.Timeout()) {
		return engine.Verdict{Retry: true, Class: ClassTimeout}
	}
	return engine.Verdict{Retry: true, Class: ClassTransient}
}

// facts is what the built-in rules look for in an error's chain: of each
// interface, the first error in the chain that has it, as errors.As finds
// it; of each sentinel, whether errors.Is would match it.
type facts struct {
	circuit, deadline bool
	permanent         permanentErr
	retryAfter        retryAfterErr
	header            headerErr
	timeout           timeoutErr
	code              int
	hasCode           bool
}

// walk gathers the facts of err's chain, in the order errors.Is and
// errors.As visit it (depth first through a join).
func (f *facts) walk(err error) {
	for err != nil {
		f.see(err)
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				f.walk(e)
			}
			return
		default:
			return
		}
	}
}

// see gathers the facts of one error of a chain.
func (f *facts) see(e error) {
	if !f.circuit && matches(e, caudal.ErrCircuitOpen) {
		f.circuit = true
	}
	if !f.deadline && (matches(e, context.DeadlineExceeded) || matches(e, caudal.ErrTimeout)) {
		f.deadline = true
	}
	if f.permanent == nil {
		f.permanent, _ = e.(permanentErr)
	}
	if f.retryAfter == nil {
		f.retryAfter, _ = e.(retryAfterErr)
	}
	if f.header == nil {
		f.header, _ = e.(headerErr)
	}
	if f.timeout == nil {
		f.timeout, _ = e.(timeoutErr)
	}
	if !f.hasCode {
		f.code, f.hasCode = ownStatus(e)
	}
}

// matches is errors.Is's test of one error of a chain against target (a
// comparable sentinel).
func matches(e, target error) bool {
	if e == target {
		return true
	}
	if x, ok := e.(interface{ Is(error) bool }); ok {
		return x.Is(target)
	}
	return false
}

// ownStatus returns the HTTP status e itself exposes, not its chain's.
func ownStatus(e error) (int, bool) {
	switch s := e.(type) {
	case interface{ StatusCode() int }:
		return s.StatusCode(), true
	case interface{ HTTPStatusCode() int }:
		return s.HTTPStatusCode(), true
	}
	return 0, false
}

// retryHint returns the retry-after hint err carries, and whether it
// carries one (see facts.retryHint).
func retryHint(err error) (time.Duration, bool) {
	var f facts
	f.walk(err)
	return f.retryHint()
}

// retryHint returns the retry-after hint of the chain, and whether it
// carries one: a RetryAfter() time.Duration method's (a negative one counts
// as 0: no delay of its own), or a Retry-After header's on an HTTP 429 or
// 503 (through a Header() http.Header method). A header that parses as
// neither delta-seconds nor an HTTP-date, or names a time past, is no hint.
func (f *facts) retryHint() (time.Duration, bool) {
	if f.retryAfter != nil {
		return max(f.retryAfter.RetryAfter(), 0), true
	}
	h := f.header
	if h == nil {
		return 0, false
	}
	code, ok := statusCode(h) // the header's own error first
	if !ok {
		code, ok = f.code, f.hasCode
	}
	if !ok || (code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable) {
		return 0, false
	}
	hdr := h.Header()
	if hdr == nil {
		return 0, false
	}
	return parseRetryAfter(hdr.Get("Retry-After"), time.Now)
}

// maxDeltaSeconds is the most delta-seconds a Retry-After may name without
// overflowing a time.Duration.
const maxDeltaSeconds = math.MaxInt64 / int64(time.Second)

// parseRetryAfter parses a Retry-After value (RFC 9110 §10.2.3):
// delta-seconds, or an HTTP-date, which now turns into a delay. ok is false
// for a value that is neither, for delta-seconds too large for a
// time.Duration, and for a date not in the future.
func parseRetryAfter(v string, now func() time.Time) (d time.Duration, ok bool) {
	v = trimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		var n int64
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
			if n > maxDeltaSeconds {
				return 0, false
			}
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d = t.Sub(now()); d <= 0 {
		return 0, false
	}
	return d, true
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
