package caudal

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Runtime is the interpreter's only way to time, concurrency and
// randomness: every clock reading, timer, sleep, goroutine and random draw
// of an execution goes through it. The default, used unless [WithRuntime]
// sets another, is the process itself (the time package, goroutines,
// math/rand/v2). A deterministic runtime — a test's fake with a manual
// clock (see caudaltest.Runtime), or a durable-workflow engine — drives the
// same interpreter reproducibly.
//
// Implementations must be safe for concurrent use.
type Runtime interface {
	// Now returns the current time. Event timestamps and step latencies
	// are read from it.
	Now() time.Time
	// Sleep waits d, or until ctx is done, when it returns
	// [context.Cause](ctx). With d <= 0 it returns at once: nil, or the
	// cause when ctx is already done.
	Sleep(ctx context.Context, d time.Duration) error
	// WithTimeout returns a child of ctx that is cancelled with cause once
	// d has passed, and a func that releases it (cancelling it with
	// [context.Canceled] if it is still running).
	WithTimeout(ctx context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc)
	// Go calls fn(wctx, i) for every i in [0, n) concurrently and returns
	// once every call has returned. wctx is ctx or a child of it that the
	// runtime uses to tell its workers apart; the executor runs each worker
	// under it. fn does not panic: the executor recovers its own panics.
	Go(ctx context.Context, n int, fn func(wctx context.Context, i int))
	// Float64 returns a pseudo-random number in [0, 1); backoff jitter is
	// drawn from it.
	Float64() float64
}

// WithRuntime makes the executor reach time, goroutines and randomness
// through rt instead of the process (see [Runtime]). It applies to [New].
func WithRuntime(rt Runtime) Option {
	o := &option{name: "WithRuntime", scope: scopeNew, kind: optRuntime, val: settings{runtime: rt}}
	if rt == nil {
		o.err = errors.New("nil Runtime")
	}
	return o
}

// processRuntime is the default [Runtime]: the process's clock, timers,
// goroutines and random source. It is the only place in the interpreter
// that touches them (a test checks this).
type processRuntime struct{}

var _ Runtime = processRuntime{}

func (processRuntime) Now() time.Time { return time.Now() }

func (processRuntime) Sleep(ctx context.Context, d time.Duration) error {
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

func (processRuntime) WithTimeout(ctx context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, cause)
}

// Go runs worker 0 on the caller's goroutine and the others on new ones:
// a fan-out of one starts no goroutine at all. The new goroutines share
// one join and one function value, and take their worker numbers from a
// counter: a fan-out costs two allocations, not two per goroutine.
func (processRuntime) Go(ctx context.Context, n int, fn func(context.Context, int)) {
	if n <= 1 {
		if n == 1 {
			fn(ctx, 0)
		}
		return
	}
	j := &forkJoin{ctx: ctx, fn: fn}
	j.wg.Add(n - 1)
	worker := j.worker
	for range n - 1 {
		go worker()
	}
	fn(ctx, 0)
	j.wg.Wait()
}

// forkJoin is one processRuntime.Go: its goroutines share it.
type forkJoin struct {
	wg   sync.WaitGroup
	next atomic.Int64 // the last worker number taken
	ctx  context.Context
	fn   func(context.Context, int)
}

func (j *forkJoin) worker() {
	defer j.wg.Done()
	j.fn(j.ctx, int(j.next.Add(1)))
}

func (processRuntime) Float64() float64 { return rand.Float64() }

// monoEpoch anchors monoNow.
var monoEpoch = time.Now()

// monoNow reads the process's monotonic clock only: step latencies need no
// wall time, and on the hot path the wall-clock read is the dearer half of
// time.Now.
func monoNow() time.Duration { return time.Since(monoEpoch) }

// rtime is an executor's view of its Runtime: with the process runtime (rt
// nil) it calls the standard library directly, without an interface call
// on the hot path.
type rtime struct {
	rt    Runtime // nil for the process runtime
	epoch time.Time
}

// mono returns the time elapsed since an arbitrary fixed point: step
// latencies are differences of its readings.
func (t *rtime) mono() time.Duration {
	if t.rt == nil {
		return monoNow()
	}
	return t.rt.Now().Sub(t.epoch)
}

// now returns the wall time, for event timestamps.
func (t *rtime) now() time.Time {
	if t.rt == nil {
		return time.Now()
	}
	return t.rt.Now()
}

// sleep waits d or until ctx is done (see [Runtime.Sleep]).
func (t *rtime) sleep(ctx context.Context, d time.Duration) error {
	if t.rt == nil {
		return processRuntime{}.Sleep(ctx, d)
	}
	return t.rt.Sleep(ctx, d)
}

// withTimeout returns a child of ctx cancelled with cause after d.
func (t *rtime) withTimeout(ctx context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	if t.rt == nil {
		return context.WithTimeoutCause(ctx, d, cause)
	}
	return t.rt.WithTimeout(ctx, d, cause)
}

// fork calls fn on n concurrent workers and waits for them (see
// [Runtime.Go]).
func (t *rtime) fork(ctx context.Context, n int, fn func(context.Context, int)) {
	if t.rt == nil {
		processRuntime{}.Go(ctx, n, fn)
		return
	}
	t.rt.Go(ctx, n, fn)
}

// float64 returns a pseudo-random number in [0, 1).
func (t *rtime) float64() float64 {
	if t.rt == nil {
		return rand.Float64()
	}
	return t.rt.Float64()
}
