package optimize

import (
	"context"
	"errors"
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
// [ErrorHandlingConfig]) on err.
func builtinVerdict(err error) engine.Verdict {
	if errors.Is(err, caudal.ErrCircuitOpen) {
		return engine.Verdict{Class: ClassCircuitOpen}
	}
	if p, ok := errors.AsType[permanentErr](err); ok && p.Permanent() {
		return engine.Verdict{Class: ClassPermanent}
	}
	if d, ok := retryHint(err); ok {
		return engine.Verdict{Retry: true, Delay: d, Class: ClassRateLimited}
	}
	if code, ok := statusCode(err); ok {
		switch {
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
	if isTimeout(err) {
		return engine.Verdict{Retry: true, Class: ClassTimeout}
	}
	return engine.Verdict{Retry: true, Class: ClassTransient}
}

// isTimeout reports a deadline: [context.DeadlineExceeded],
// [caudal.ErrTimeout], or an error whose Timeout() reports true.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, caudal.ErrTimeout) {
		return true
	}
	t, ok := errors.AsType[timeoutErr](err)
	return ok && t.Timeout()
}

// retryHint returns the retry-after hint err carries, and whether it
// carries one: a RetryAfter() time.Duration method's (a negative one counts
// as 0: no delay of its own), or a Retry-After header's on an HTTP 429 or
// 503 (through a Header() http.Header method). A header that parses as
// neither delta-seconds nor an HTTP-date, or names a time past, is no hint.
func retryHint(err error) (time.Duration, bool) {
	if ra, ok := errors.AsType[retryAfterErr](err); ok {
		return max(ra.RetryAfter(), 0), true
	}
	h, ok := errors.AsType[headerErr](err)
	if !ok {
		return 0, false
	}
	code, ok := statusCode(h) // the header's own error first
	if !ok {
		code, ok = statusCode(err)
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
