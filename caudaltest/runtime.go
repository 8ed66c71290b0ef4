package caudaltest

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/caudal-go/caudal"
)

// Runtime is a deterministic [caudal.Runtime]: a discrete-event simulation
// with a virtual clock and a cooperative scheduler in which exactly one
// goroutine of the run executes at a time. Given the same seed, a run is
// exactly reproducible: the same clock readings, random draws and order of
// everything. Time moves only when every goroutine of the run waits: the
// clock then jumps to the earliest pending timer.
//
// The goroutine that calls the executor is the run's root; [Runtime.Go]
// starts the others, and the context it hands each worker tells the
// runtime which goroutine is calling, so a worker must pass that context,
// or one derived from it, to every later call.
//
// Under Runtime, code must wait only through the runtime: call
// rt.Sleep(ctx, d) to simulate work that takes d, and
// rt.Sleep(ctx, time.Hour) to wait for a timeout or a cancellation.
// Blocking on a channel, a lock held by another goroutine of the run, or
// <-ctx.Done() directly keeps the run's only turn and hangs the run. If
// every goroutine of the run waits and no timer is pending, the runtime
// panics.
//
// A Runtime drives one execution at a time; running several executions on
// one Runtime concurrently is a misuse. The zero Runtime is not usable:
// create one with [NewRuntime]. Its methods are safe for concurrent use.
type Runtime struct {
	mu       sync.Mutex // protects every field below
	now      time.Time
	rng      *rand.Rand
	seq      uint64     // registration number of the last timer
	timers   timerHeap  // live timers, earliest first
	sleepers []*sleeper // goroutines in Sleep, in registration order
	runq     []*coro    // goroutines ready to run, in order
	root     *coro      // the goroutine that is not a worker of Go
	running  *coro      // the goroutine that holds the turn
	live     int        // workers started by Go that have not returned
}

var _ caudal.Runtime = (*Runtime)(nil)

// epoch is where the virtual clock of a new Runtime starts.
var epoch = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Messages of the panics that report a misuse or a hung run.
const (
	msgStuck   = "caudaltest: Runtime: every goroutine of the run waits and no timer is pending"
	msgCaller  = "caudaltest: Runtime: Sleep or Go called from a goroutine that does not hold the run's turn (pass the worker's ctx, or one derived from it)"
	msgAdvance = "caudaltest: Runtime: Advance called while a run is in progress"
)

// NewRuntime returns a Runtime whose clock reads 2026-01-01T00:00:00Z and
// whose random draws come from a [rand.PCG] source seeded with seed.
func NewRuntime(seed uint64) *Runtime {
	root := &coro{wake: make(chan struct{}, 1)}
	return &Runtime{
		now:     epoch,
		rng:     rand.New(rand.NewPCG(seed, seed)),
		root:    root,
		running: root,
	}
}

// coro is one goroutine of a run: the root or a worker of Go.
type coro struct {
	wake chan struct{} // receives the turn; capacity 1
	join *join         // the Go call that started it; nil for the root
}

// join is the state of one Go call.
type join struct {
	pending int   // workers that have not returned
	waiter  *coro // the caller of Go
}

// sleeper is one goroutine waiting in Sleep.
type sleeper struct {
	c           *coro
	ctx         context.Context
	t           *timer
	interrupted bool // ctx was found done before t fired
}

// timer is a point of virtual time at which something happens: a sleeper
// wakes (s != nil) or a context is cancelled with cause.
type timer struct {
	when   time.Time
	seq    uint64
	index  int // in Runtime.timers; -1 once fired or stopped
	s      *sleeper
	cancel context.CancelCauseFunc
	cause  error
}

// coroKey is the context key of the calling goroutine of the Runtime rt.
type coroKey struct{ rt *Runtime }

// Now returns the virtual time.
func (r *Runtime) Now() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

// Float64 returns the next draw, in [0, 1), of the seeded random source.
func (r *Runtime) Float64() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.Float64()
}

// WithTimeout returns a child of ctx, made by [context.WithCancelCause],
// whose Deadline reports Now()+d and which is cancelled with cause when the
// virtual clock reaches that instant (at once if d <= 0). Unlike
// [context.WithTimeoutCause], its Err is then [context.Canceled], not
// [context.DeadlineExceeded]; [context.Cause] reports cause. The returned
// func cancels the child with [context.Canceled] and stops its timer, which
// then never moves the clock.
func (r *Runtime) WithTimeout(ctx context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancelCause(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	tctx := &deadlineCtx{Context: cctx, deadline: r.now.Add(d)}
	if d <= 0 {
		cancel(cause)
		return tctx, func() { cancel(context.Canceled) }
	}
	t := r.addTimer(d)
	t.cancel, t.cause = cancel, cause
	return tctx, func() {
		cancel(context.Canceled)
		r.mu.Lock()
		r.stop(t)
		r.mu.Unlock()
	}
}

// Sleep waits until the virtual clock has moved d forward, and returns nil,
// or until ctx is found done, when it returns [context.Cause](ctx). It
// returns at once if ctx is done, or with nil if d <= 0. Other goroutines of
// the run execute while it waits. ctx must be the caller's: the run's root
// context or one derived from a worker's context (see [Runtime.Go]); Sleep
// panics otherwise.
func (r *Runtime) Sleep(ctx context.Context, d time.Duration) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if d <= 0 {
		return nil
	}
	r.mu.Lock()
	c := r.caller(ctx)
	s := &sleeper{c: c, ctx: ctx}
	s.t = r.addTimer(d)
	s.t.s = s
	r.sleepers = append(r.sleepers, s)
	r.yield(c)
	// s.interrupted was written before the turn came back to c.
	if s.interrupted {
		return context.Cause(ctx)
	}
	return nil
}

// Go calls fn(wctx, i) for every i in [0, n), each on its own goroutine,
// and returns once every call has returned; n <= 0 returns at once. The
// workers are queued in order 0..n-1 behind the goroutines already ready
// to run; wctx is a child of ctx that identifies worker i to the Runtime.
// ctx must be the caller's (see [Runtime.Sleep]); Go panics otherwise. A
// panic in fn is recovered and discarded: the worker just counts as
// returned.
func (r *Runtime) Go(ctx context.Context, n int, fn func(wctx context.Context, i int)) {
	if n <= 0 {
		return
	}
	r.mu.Lock()
	caller := r.caller(ctx)
	j := &join{pending: n, waiter: caller}
	for i := range n {
		c := &coro{wake: make(chan struct{}, 1), join: j}
		wctx := context.WithValue(ctx, coroKey{r}, c)
		r.live++
		r.runq = append(r.runq, c)
		go r.work(c, wctx, i, fn)
	}
	r.yield(caller)
}

// Advance moves the virtual clock d forward, firing in order the timers
// that fall due. It is meant for tests that move time between executions
// and may be called only while no run is in progress: it panics if a
// goroutine of a run is sleeping or a worker of Go has not returned, and
// if d < 0.
func (r *Runtime) Advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		panic("caudaltest: Runtime: Advance with a negative duration")
	}
	if r.live > 0 || len(r.sleepers) > 0 {
		panic(msgAdvance)
	}
	end := r.now.Add(d)
	for len(r.timers) > 0 && !r.timers[0].when.After(end) {
		t := heap.Pop(&r.timers).(*timer)
		r.now = t.when
		r.fire(t)
	}
	r.now = end
}

// deadlineCtx reports the virtual deadline of a WithTimeout context. It
// forwards Done, Err and Value to the embedded context, so std contexts
// derived from it are cancelled synchronously with it.
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// work is the body of a worker's goroutine.
func (r *Runtime) work(c *coro, wctx context.Context, i int, fn func(context.Context, int)) {
	<-c.wake
	defer func() {
		_ = recover() // see Go: a panicking worker just returns
		r.exit(c)
	}()
	fn(wctx, i)
}

// caller returns the goroutine that ctx belongs to, and panics if it does
// not hold the turn. r.mu must be held; it is released before panicking.
func (r *Runtime) caller(ctx context.Context) *coro {
	c, _ := ctx.Value(coroKey{r}).(*coro)
	if c == nil {
		c = r.root
	}
	if c != r.running {
		r.mu.Unlock()
		panic(msgCaller)
	}
	return c
}

// yield passes the turn from c, which holds it, to the next goroutine to
// run, and returns when c holds it again. r.mu must be held; yield
// releases it.
func (r *Runtime) yield(c *coro) {
	next := r.handOff()
	if next == c {
		return
	}
	<-c.wake
}

// exit records that worker c has returned and passes the turn on.
func (r *Runtime) exit(c *coro) {
	r.mu.Lock()
	r.live--
	c.join.pending--
	if c.join.pending == 0 {
		r.runq = append(r.runq, c.join.waiter)
	}
	r.handOff()
}

// handOff picks the next goroutine to run, releases r.mu and gives that
// goroutine the turn; it returns the goroutine. r.mu must be held. It
// panics if no goroutine can ever run again.
func (r *Runtime) handOff() *coro {
	next := r.next()
	if next == nil {
		r.mu.Unlock()
		panic(msgStuck)
	}
	prev := r.running
	r.running = next
	r.mu.Unlock()
	if next != prev {
		next.wake <- struct{}{}
	}
	return next
}

// next is the scheduling step: it returns the next goroutine to run,
// moving the clock to the earliest timers while none is ready, or nil if
// none ever will be. r.mu must be held.
func (r *Runtime) next() *coro {
	for {
		r.wakeInterrupted()
		if len(r.runq) > 0 {
			c := r.runq[0]
			r.runq[0] = nil
			r.runq = r.runq[1:]
			return c
		}
		if len(r.timers) == 0 {
			return nil
		}
		at := r.timers[0].when
		r.now = at
		for len(r.timers) > 0 && r.timers[0].when.Equal(at) {
			r.fire(heap.Pop(&r.timers).(*timer))
		}
	}
}

// wakeInterrupted makes ready, in registration order, every sleeper whose
// context is done, and stops its timer. r.mu must be held.
func (r *Runtime) wakeInterrupted() {
	kept := r.sleepers[:0]
	for _, s := range r.sleepers {
		if s.ctx.Err() == nil {
			kept = append(kept, s)
			continue
		}
		s.interrupted = true
		r.stop(s.t)
		r.runq = append(r.runq, s.c)
	}
	clear(r.sleepers[len(kept):])
	r.sleepers = kept
}

// addTimer registers a timer at Now()+d. r.mu must be held.
func (r *Runtime) addTimer(d time.Duration) *timer {
	r.seq++
	t := &timer{when: r.now.Add(d), seq: r.seq}
	heap.Push(&r.timers, t)
	return t
}

// stop removes t if it has not fired. r.mu must be held.
func (r *Runtime) stop(t *timer) {
	if t.index >= 0 {
		heap.Remove(&r.timers, t.index)
	}
}

// fire runs t, which has left the heap: its sleeper becomes ready or its
// context is cancelled. r.mu must be held.
func (r *Runtime) fire(t *timer) {
	if t.s == nil {
		t.cancel(t.cause)
		return
	}
	for i, s := range r.sleepers {
		if s == t.s {
			r.sleepers = slices.Delete(r.sleepers, i, i+1)
			break
		}
	}
	r.runq = append(r.runq, t.s.c)
}

// timerHeap orders timers by time, then by registration.
type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
