package optimize_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// statusErr is an HTTP client's error: a status, maybe headers.
type statusErr struct {
	code  int
	hdr   http.Header
	cause error
}

func (e *statusErr) Unwrap() error { return e.cause }

func (e *statusErr) Error() string       { return "status " + strconv.Itoa(e.code) }
func (e *statusErr) StatusCode() int     { return e.code }
func (e *statusErr) Header() http.Header { return e.hdr }

// otherStatusErr exposes its status the other way.
type otherStatusErr struct{ code int }

func (e otherStatusErr) Error() string       { return "other status" }
func (e otherStatusErr) HTTPStatusCode() int { return e.code }

// netErr is a net.Error-like error.
type netErr struct{ timeout bool }

func (e netErr) Error() string { return "net" }
func (e netErr) Timeout() bool { return e.timeout }

// notPermanent has a Permanent method that says no.
type notPermanent struct{}

func (notPermanent) Error() string   { return "not permanent" }
func (notPermanent) Permanent() bool { return false }

// quotaErr is a user's error type, for ErrorType rules.
type quotaErr struct{}

func (*quotaErr) Error() string { return "quota" }

func retryAfterHeader(v string) http.Header { return http.Header{"Retry-After": []string{v}} }

var (
	errBoom       = errors.New("boom")
	errBadRequest = errors.New("bad request")
)

func TestClassify(t *testing.T) {
	errRefused := errors.New("refused")
	tests := []struct {
		name      string
		rules     []optimize.ErrorRule
		give      error
		wantClass string
		wantRetry bool
		wantDelay time.Duration
	}{
		{"circuit open", nil, fmt.Errorf("call: %w", caudal.ErrCircuitOpen), optimize.ClassCircuitOpen, false, 0},
		{"permanent", nil, caudal.Permanent(errBoom), optimize.ClassPermanent, false, 0},
		{"permanent beats a status", nil, caudal.Permanent(&statusErr{code: 429}), optimize.ClassPermanent, false, 0},
		{"permanent method false", nil, notPermanent{}, optimize.ClassTransient, true, 0},
		{"retry-after method", nil, caudal.RetryAfter(errBoom, 2*time.Second), optimize.ClassRateLimited, true, 2 * time.Second},
		{"retry-after negative", nil, caudal.RetryAfter(errBoom, -time.Second), optimize.ClassRateLimited, true, 0},
		{"retry-after beats a 400", nil, caudal.RetryAfter(&statusErr{code: 400}, time.Second), optimize.ClassRateLimited, true, time.Second},
		{"429 header seconds", nil, &statusErr{code: 429, hdr: retryAfterHeader("7")}, optimize.ClassRateLimited, true, 7 * time.Second},
		{"503 header seconds", nil, fmt.Errorf("wrapped: %w", &statusErr{code: 503, hdr: retryAfterHeader(" 3 ")}), optimize.ClassRateLimited, true, 3 * time.Second},
		{"503 header garbage", nil, &statusErr{code: 503, hdr: retryAfterHeader("soon")}, optimize.ClassTransient, true, 0},
		{"429 header garbage", nil, &statusErr{code: 429, hdr: retryAfterHeader("-4")}, optimize.ClassRateLimited, true, 0},
		{"429 header past date", nil, &statusErr{code: 429, hdr: retryAfterHeader("Sun, 06 Nov 1994 08:49:37 GMT")}, optimize.ClassRateLimited, true, 0},
		{"500 header ignored", nil, &statusErr{code: 500, hdr: retryAfterHeader("5")}, optimize.ClassTransient, true, 0},
		{"429 no header", nil, &statusErr{code: 429}, optimize.ClassRateLimited, true, 0},
		{"400", nil, &statusErr{code: 400}, optimize.ClassPermanent, false, 0},
		{"404 wrapped", nil, fmt.Errorf("get: %w", &statusErr{code: 404}), optimize.ClassPermanent, false, 0},
		{"403 other method", nil, otherStatusErr{403}, optimize.ClassPermanent, false, 0},
		{"408", nil, &statusErr{code: 408}, optimize.ClassTimeout, true, 0},
		{"504", nil, otherStatusErr{504}, optimize.ClassTimeout, true, 0},
		{"500", nil, &statusErr{code: 500}, optimize.ClassTransient, true, 0},
		{"502", nil, &statusErr{code: 502}, optimize.ClassTransient, true, 0},
		{"503", nil, &statusErr{code: 503}, optimize.ClassTransient, true, 0},
		{"501 falls through", nil, &statusErr{code: 501}, optimize.ClassTransient, true, 0},
		{"deadline", nil, fmt.Errorf("call: %w", context.DeadlineExceeded), optimize.ClassTimeout, true, 0},
		{"step timeout", nil, fmt.Errorf("call: %w", caudal.ErrTimeout), optimize.ClassTimeout, true, 0},
		{"Timeout true", nil, netErr{timeout: true}, optimize.ClassTimeout, true, 0},
		{"Timeout false", nil, netErr{timeout: false}, optimize.ClassTransient, true, 0},
		{"cancelled", nil, context.Canceled, optimize.ClassTransient, true, 0},
		{"plain", nil, errBoom, optimize.ClassTransient, true, 0},
		{"rule sentinel", []optimize.ErrorRule{optimize.Sentinel(errRefused, optimize.ClassPermanent)}, fmt.Errorf("x: %w", errRefused), optimize.ClassPermanent, false, 0},
		{"rule sentinel misses", []optimize.ErrorRule{optimize.Sentinel(errRefused, optimize.ClassPermanent)}, errBoom, optimize.ClassTransient, true, 0},
		{"rule type", []optimize.ErrorRule{optimize.ErrorType[*quotaErr](optimize.ClassTimeout)}, fmt.Errorf("x: %w", &quotaErr{}), optimize.ClassTimeout, true, 0},
		{"rule status overrides a 404", []optimize.ErrorRule{optimize.StatusCodes(optimize.ClassTransient, 404, 409)}, &statusErr{code: 404}, optimize.ClassTransient, true, 0},
		{"rule status overrides a permanent", []optimize.ErrorRule{optimize.StatusCodes(optimize.ClassTransient, 400)}, caudal.Permanent(&statusErr{code: 400}), optimize.ClassTransient, true, 0},
		{"rule func", []optimize.ErrorRule{optimize.MatchFunc("boom", func(err error) bool { return err == errBoom }, optimize.ClassPermanent)}, errBoom, optimize.ClassPermanent, false, 0},
		{"rules in order", []optimize.ErrorRule{
			optimize.MatchFunc("all", func(error) bool { return true }, optimize.ClassTimeout),
			optimize.Sentinel(errBoom, optimize.ClassPermanent),
		}, errBoom, optimize.ClassTimeout, true, 0},
		{"rule rate limit delay", []optimize.ErrorRule{withRetryAfter(optimize.MatchFunc("all", func(error) bool { return true }, optimize.ClassRateLimited), 5*time.Second)}, errBoom, optimize.ClassRateLimited, true, 5 * time.Second},
		{"rule rate limit, the error's hint first", []optimize.ErrorRule{withRetryAfter(optimize.Sentinel(errBoom, optimize.ClassRateLimited), 5*time.Second)}, caudal.RetryAfter(errBoom, 2*time.Second), optimize.ClassRateLimited, true, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := optimize.ErrorHandlingConfig{Enabled: true, Rules: tt.rules}
			class, retry, delay := optimize.Classify(cfg, tt.give)
			if class != tt.wantClass || retry != tt.wantRetry || delay != tt.wantDelay {
				t.Errorf("Classify(%v) = %q, %v, %v; want %q, %v, %v", tt.give, class, retry, delay, tt.wantClass, tt.wantRetry, tt.wantDelay)
			}
		})
	}
}

// withRetryAfter sets r's delay for errors without a hint of their own.
func withRetryAfter(r optimize.ErrorRule, d time.Duration) optimize.ErrorRule {
	r.RetryAfter = d
	return r
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		give   string
		want   time.Duration
		wantOK bool
	}{
		{"120", 120 * time.Second, true},
		{" 5\t", 5 * time.Second, true},
		{"0", 0, true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", 0, false},
		{"9223372037", 0, false}, // just past what a Duration holds
		{"Mon, 30 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Monday, 30-Nov-26 12:01:00 GMT", time.Minute, true}, // RFC 850
		{"Mon Nov 30 12:00:10 2026", 10 * time.Second, true},  // asctime
		{"Mon, 30 Nov 2026 11:59:00 GMT", 0, false},           // past
		{"Mon, 30 Nov 2026 12:00:00 GMT", 0, false},           // now
		{"Mon, 30 Nov 2026 25:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, ok := optimize.ParseRetryAfter(tt.give, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestClassifyHTTPDateHeader(t *testing.T) {
	at := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	class, retry, delay := optimize.Classify(optimize.ErrorHandlingConfig{Enabled: true}, &statusErr{code: 429, hdr: retryAfterHeader(at)})
	if class != optimize.ClassRateLimited || !retry || delay < 59*time.Minute || delay > time.Hour {
		t.Errorf("Classify(429, Retry-After %s) = %q, %v, %v; want rate_limited, retried after about an hour", at, class, retry, delay)
	}
}

func TestClassifyAllocatesNothing(t *testing.T) {
	cfg := optimize.ErrorHandlingConfig{Enabled: true, Rules: []optimize.ErrorRule{optimize.StatusCodes(optimize.ClassTransient, 409)}}
	errs := []error{&statusErr{code: 400}, &statusErr{code: 429, hdr: retryAfterHeader("3")}, fmt.Errorf("x: %w", context.DeadlineExceeded), errBoom}
	classify := optimize.Classifier(cfg)
	for _, err := range errs {
		if n := testing.AllocsPerRun(100, func() { classify(err) }); n != 0 {
			t.Errorf("Classify(%v) allocates %v times; want none", err, n)
		}
	}
}

// errorWorkload is the designed error workload: a step retried 3 times
// with a 1 ms backoff whose agent answers 400 Bad Request, spending usage.
func errorWorkload(calls *atomic.Int32) caudal.Step {
	return caudal.AgentStep("bad", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		calls.Add(1)
		return caudal.Reply{Usage: caudal.Usage{PromptTokens: 10, CompletionTokens: 2}}, &statusErr{code: 400, cause: errBadRequest}
	}), caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, time.Millisecond))
}

func TestErrorHandlingPermanentFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type outcome struct {
			calls   int32
			took    time.Duration
			err     error
			res     caudal.StepResult
			classes []string
		}
		run := func(opts ...caudal.Option) outcome {
			var calls atomic.Int32
			sink := &circuitSink{}
			ex := newExecutor(t, append(opts, caudal.WithSink(sink))...)
			step := build(t, errorWorkload(&calls))
			start := time.Now()
			res, err := ex.Execute(context.Background(), step, "in")
			o := outcome{calls: calls.Load(), took: time.Since(start), err: err, res: res}
			for _, e := range sink.all() {
				if e.Kind == caudal.EventAttemptFailed {
					o.classes = append(o.classes, e.Class)
				}
			}
			return o
		}
		base := run()
		eh := run(optimize.Use(optimize.Config{ErrorHandling: optimize.ErrorHandlingConfig{Enabled: true}}))
		if base.calls != 4 || eh.calls != 1 {
			t.Fatalf("agent calls: baseline %d, error handling %d; want 4 and 1", base.calls, eh.calls)
		}
		if base.took <= 0 || base.took > 3*time.Millisecond || eh.took != 0 {
			t.Errorf("time: baseline %v, error handling %v; want three (jittered) 1ms backoffs and 0", base.took, eh.took)
		}
		if !errors.Is(base.err, errBadRequest) || !errors.Is(eh.err, errBadRequest) {
			t.Errorf("errors: baseline %v, error handling %v; want both to match the 400's", base.err, eh.err)
		}
		if base.res.Usage != eh.res.Usage.Add(eh.res.Usage).Add(eh.res.Usage).Add(eh.res.Usage) {
			t.Errorf("usage: baseline %+v for 4 attempts, error handling %+v for 1", base.res.Usage, eh.res.Usage)
		}
		if got := eh.res.Metadata[caudal.MetaErrorClass]; got != optimize.ClassPermanent {
			t.Errorf("MetaErrorClass = %v; want permanent", got)
		}
		if _, ok := base.res.Metadata[caudal.MetaErrorClass]; ok {
			t.Errorf("the baseline set MetaErrorClass")
		}
		if len(eh.classes) != 1 || eh.classes[0] != optimize.ClassPermanent {
			t.Errorf("attempt_failed classes = %q; want [permanent]", eh.classes)
		}
	})
}

// TestErrorHandlingPermanentSameResult: the final result of the designed
// workload on a step whose agent is permanently broken is the baseline's
// (same error, same usage) when nothing of it depends on the number of
// attempts.
func TestErrorHandlingPermanentSameResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mk := func() caudal.Step {
			return build(t, caudal.AgentStep("bad", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
				return caudal.Reply{}, caudal.Permanent(&statusErr{code: 400})
			}), caudal.WithRetries(3), caudal.WithBackoff(time.Millisecond, time.Millisecond)))
		}
		_, want := newExecutor(t).Execute(context.Background(), mk(), "in")
		_, got := newExecutor(t, optimize.Use(optimize.Config{ErrorHandling: optimize.ErrorHandlingConfig{Enabled: true}})).Execute(context.Background(), mk(), "in")
		if want == nil || got == nil || want.Error() != got.Error() {
			t.Errorf("error = %v; want the baseline's %v", got, want)
		}
	})
}

func TestErrorHandlingRulesRetryAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		cfg := optimize.Config{ErrorHandling: optimize.ErrorHandlingConfig{Enabled: true, Rules: []optimize.ErrorRule{optimize.StatusCodes(optimize.ClassTransient, 400)}}}
		res, err := newExecutor(t, optimize.Use(cfg)).Execute(context.Background(), build(t, errorWorkload(&calls)), "in")
		if err == nil || calls.Load() != 4 || res.Metadata[caudal.MetaErrorClass] != optimize.ClassTransient {
			t.Errorf("with a rule making 400 transient: %d calls, class %v, err %v; want 4 calls, transient, an error", calls.Load(), res.Metadata[caudal.MetaErrorClass], err)
		}
	})
}

func TestErrorHandlingRateLimitWaitsTheHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mk := func() caudal.Step {
			return build(t, caudal.AgentStep("limited", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
				if caudal.Attempt(ctx) == 1 {
					return caudal.Reply{}, &statusErr{code: 429, hdr: retryAfterHeader("2")}
				}
				return caudal.Reply{Output: "ok"}, nil
			}), caudal.WithRetries(1), caudal.WithBackoff(time.Millisecond, time.Minute)))
		}
		for _, tt := range []struct {
			name     string
			opts     []caudal.Option
			min, max time.Duration
		}{
			{"baseline", nil, 0, time.Millisecond}, // the header means nothing to it: the (jittered) backoff
			{"error-handling", []caudal.Option{optimize.Use(optimize.Config{ErrorHandling: optimize.ErrorHandlingConfig{Enabled: true}})}, 2 * time.Second, 2 * time.Second},
		} {
			start := time.Now()
			res, err := newExecutor(t, tt.opts...).Execute(context.Background(), mk(), "in")
			if err != nil || res.Output != "ok" {
				t.Fatalf("%s: Execute = %v, %v; want ok", tt.name, res.Output, err)
			}
			if took := time.Since(start); took < tt.min || took > tt.max {
				t.Errorf("%s: waited %v before the second attempt; want [%v, %v]", tt.name, took, tt.min, tt.max)
			}
		}
	})
}
