package optimize

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

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
		m := methodsOf(err)
		if m&^(hasUnwrap|hasUnwrapJoin) != 0 || err == caudal.ErrCircuitOpen || err == context.DeadlineExceeded || err == caudal.ErrTimeout {
			f.see(err, m)
		}
		switch {
		case m&hasUnwrap != 0:
			err = err.(interface{ Unwrap() error }).Unwrap()
		case m&hasUnwrapJoin != 0:
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				f.walk(e)
			}
			return
		default:
			return
		}
	}
}

// see gathers the facts of one error of a chain, whose methods are m.
func (f *facts) see(e error, m methods) {
	if !f.circuit && matches(e, m, caudal.ErrCircuitOpen) {
		f.circuit = true
	}
	if !f.deadline && (matches(e, m, context.DeadlineExceeded) || matches(e, m, caudal.ErrTimeout)) {
		f.deadline = true
	}
	if f.permanent == nil && m&hasPermanent != 0 {
		f.permanent = e.(permanentErr)
	}
	if f.retryAfter == nil && m&hasRetryAfter != 0 {
		f.retryAfter = e.(retryAfterErr)
	}
	if f.header == nil && m&hasHeader != 0 {
		f.header = e.(headerErr)
	}
	if f.timeout == nil && m&hasTimeout != 0 {
		f.timeout = e.(timeoutErr)
	}
	if !f.hasCode && m&hasStatus != 0 {
		f.code, f.hasCode = ownStatus(e)
	}
}

// methods is the set of methods the built-in rules look for that an
// error's dynamic type has.
type methods uint16

const (
	hasIs methods = 1 << iota
	hasPermanent
	hasRetryAfter
	hasHeader
	hasTimeout
	hasStatus
	hasUnwrap
	hasUnwrapJoin
)

// methodSets caches the methods of the error types seen, direct-mapped
// by the interface's type word: most failures carry a plain error
// (errors.New, fmt.Errorf), whose chain then costs a load and a compare
// per link instead of a type assertion per rule. A collision only costs
// a recomputation.
var methodSets [256]atomic.Pointer[methodSet]

type methodSet struct {
	typ uintptr
	m   methods
}

// methodsOf returns the methods of e's dynamic type.
func methodsOf(e error) methods {
	// The first word of a non-empty interface points to its itab, one
	// per dynamic type: a key for the type that costs no call.
	typ := (*[2]uintptr)(unsafe.Pointer(&e))[0]
	slot := &methodSets[(typ>>5^typ>>13)&255]
	if ms := slot.Load(); ms != nil && ms.typ == typ {
		return ms.m
	}
	var m methods
	if _, ok := e.(interface{ Is(error) bool }); ok {
		m |= hasIs
	}
	if _, ok := e.(permanentErr); ok {
		m |= hasPermanent
	}
	if _, ok := e.(retryAfterErr); ok {
		m |= hasRetryAfter
	}
	if _, ok := e.(headerErr); ok {
		m |= hasHeader
	}
	if _, ok := e.(timeoutErr); ok {
		m |= hasTimeout
	}
	if _, ok := ownStatus(e); ok {
		m |= hasStatus
	}
	if _, ok := e.(interface{ Unwrap() error }); ok {
		m |= hasUnwrap
	} else if _, ok := e.(interface{ Unwrap() []error }); ok {
		m |= hasUnwrapJoin
	}
	slot.Store(&methodSet{typ: typ, m: m})
	return m
}

// matches is errors.Is's test of one error of a chain, whose methods are
// m, against target (a comparable sentinel).
func matches(e error, m methods, target error) bool {
	if e == target {
		return true
	}
	return m&hasIs != 0 && e.(interface{ Is(error) bool }).Is(target)
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
