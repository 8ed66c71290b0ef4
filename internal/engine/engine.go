package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/state"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// Site identifies the step a seam is consulted for. Node is the compiled
// step (comparable, unique per step of a built graph, the same across
// executions: a seam keeps per-step state keyed on it); Path is the step's
// static path (names only, no iteration or item index), for messages;
// Agent is the step's agent, for seams that key on it (nil for steps
// without one).
type Site struct {
	Node  any
	Path  string
	Agent any
	// ID is unique to the compiled step in the process, never reused: a
	// component that keeps per-step state beyond an execution keys it on
	// ID, which, unlike Node, does not keep a dropped step (and what it
	// holds, such as its cache) alive.
	ID uint64
	// Traits say which seams the step may consult, for a tuner that
	// watches only the steps where a switch can change something.
	Traits Traits
	// Shape is a hash of the step's definition (its fingerprint's first
	// 8 bytes): the same for every build of the same definition, so that
	// a tuner may carry what it learned of a step to a rebuilt one.
	Shape uint64
}

// Traits is a set of things a step does.
type Traits uint8

// The traits of a step.
const (
	Forks   Traits = 1 << iota // forks the state: a parallel step, a router, a loop, a map
	Capped                     // fans out under a configured concurrency: the limiter is consulted
	Cached                     // a cache step: the keyer, sharer, near cache and flight group
	Retries                    // an agent step with more than one attempt: the classifier decides
	Timeout                    // an agent step with a timeout per attempt
	Calls                      // calls an agent: an agent step or a router (the guard stands around it)
)

// siteIDs hands out Site.ID.
var siteIDs atomic.Uint64

// NewSiteID returns a Site.ID never returned before.
func NewSiteID() uint64 { return siteIDs.Add(1) }

// Recorder receives the executor's events. E is the event type of the
// caller (the engine cannot import it). Implementations must be safe for
// concurrent use and must not retain e.
type Recorder[E any] interface {
	Record(ctx context.Context, e *E)
}

// Fanout is the baseline [Recorder]: it calls every sink synchronously, in
// order, on the calling goroutine.
type Fanout[E any] []Recorder[E]

// Record passes e to every sink in turn.
func (f Fanout[E]) Record(ctx context.Context, e *E) {
	for _, s := range f {
		s.Record(ctx, e)
	}
}

// Sharer decides how a cached result crosses the cache boundary: Store
// prepares a result for the cache, Load prepares a cached result for a
// caller. The baseline deep-copies both ways so no caller can mutate what
// another will read.
type Sharer[R any] interface {
	Store(r R) R
	Load(r R) R
}

// Flight lets concurrent executions of one cache step that miss on the same
// key share one run of the step: the first caller runs fn, the others wait
// for its outcome. shared reports that the caller got another's outcome.
// The baseline is no flight group at all: every miss runs the step.
type Flight interface {
	Do(ctx context.Context, site Site, key string, fn func() (any, error)) (v any, err error, shared bool)
}

// Class is a kind of per-execution object the executor allocates: an
// event record, a journal record, a key buffer, a fan-out's scratch. New
// makes one; the executor resets an object before it hands it back.
type Class struct {
	Name string
	New  func() any
}

// Allocator hands out the executor's per-execution objects and takes them
// back once the execution no longer uses them, so that an implementation
// may pool them. Get returns a value of the type c.New returns; Put
// receives only values Get returned for the same class, already reset. The
// executor never puts back what its caller keeps (results, outputs,
// snapshots). Implementations must be safe for concurrent use.
type Allocator interface {
	Get(c *Class) any
	Put(c *Class, v any)
}

// Fresh is the baseline [Allocator]: every Get is a new object, Put drops it.
type Fresh struct{}

// Get returns c.New().
func (Fresh) Get(c *Class) any { return c.New() }

// Put does nothing.
func (Fresh) Put(*Class, any) {}

// Isolation gives parallel branches, loop iterations, map items and
// retried attempts their own state, and finds what each changed.
type Isolation interface {
	// Fork returns a store for a child that the child may change without
	// the parent seeing it, nor any value of the parent's changing through
	// one the child read.
	Fork(parent *state.Store) *state.Store
	// Writes returns what child changed relative to parent, its fork
	// origin, in a form [state.Store.Apply] takes.
	Writes(parent, child *state.Store) []statemerge.Write
}

// DeepCopy is the baseline [Isolation]: a deep copy per fork and a
// full-tree diff per merge.
type DeepCopy struct{}

// Fork deep-copies parent.
func (DeepCopy) Fork(parent *state.Store) *state.Store {
	var m map[string]any
	parent.View(func(v map[string]any) { m = deepcopy.CopyMap(v) })
	return state.New(m)
}

// Writes diffs the whole trees.
func (DeepCopy) Writes(parent, child *state.Store) (writes []statemerge.Write) {
	parent.View(func(before map[string]any) {
		child.View(func(after map[string]any) { writes = statemerge.Diff(before, after) })
	})
	return writes
}

// CopyOnWrite is the [Isolation] of overlays: an O(1) fork
// ([state.Store.Fork]) and the writes of the keys the child touched
// ([state.Store.Written]).
type CopyOnWrite struct{}

// Fork returns an overlay of parent.
func (CopyOnWrite) Fork(parent *state.Store) *state.Store { return parent.Fork() }

// Writes returns the child's own changes.
func (CopyOnWrite) Writes(_, child *state.Store) []statemerge.Write { return child.Written() }

// Limiter bounds how many branches of a parallel step, or items of a
// concurrent map, run at once. For each fan-out of n branches or items
// over a step whose configured cap is cap, the executor asks Workers how
// many workers to start (it starts between 1 and n; the baseline starts
// min(cap, n)) and whether to meter the fan-out; when metered, each worker
// calls Acquire before every branch or item and Release after it, with the
// branch's wall time and error: an adaptive limiter changes its limit
// while the step runs. An unmetered fan-out runs as the baseline's does,
// its workers its only bound, and consults the limiter no further. Acquire may
// block until a slot frees or ctx is done (then it returns ctx's cause and
// the branch fails with it). A sequential map (cap 1 by default) runs its
// items in order on the caller's goroutine and consults no limiter; nor
// does a parallel step or router without a configured concurrency, whose
// branches all run at once (they may wait on one another).
type Limiter interface {
	Workers(site Site, cap, n int) (workers int, metered bool)
	Acquire(ctx context.Context, site Site, cap int) error
	Release(site Site, latency time.Duration, err error)
}

// Fixed is the baseline [Limiter]: the configured cap, which the number of
// workers already enforces, so Acquire never waits.
type Fixed struct{}

// Workers returns min(cap, n), unmetered.
func (Fixed) Workers(_ Site, cap, n int) (int, bool) { return min(cap, n), false }

// Acquire returns nil.
func (Fixed) Acquire(context.Context, Site, int) error { return nil }

// Release does nothing.
func (Fixed) Release(Site, time.Duration, error) {}

// Guard stands around every agent call (a circuit breaker, for one).
// Before the call, Allow may refuse it: the attempt then fails with the
// error, without calling the agent, and an error that matches the core's
// ErrCircuitOpen is not retried, so the step fails fast or goes straight to
// its fallback. After a call Allow let through, Done reports its error
// (nil on success; a panic's *PanicError, an invalid usage report's
// error). The core reads no clock for a guard: one that needs the time
// reads it, on the paths where it needs it. site points into the compiled
// step (no copy per call): read it, never change it. The baseline is no
// guard: the agent is called directly.
type Guard interface {
	Allow(ctx context.Context, site *Site) error
	Done(site *Site, err error)
}

// Verdict is a [Classifier]'s judgement of a failed attempt.
type Verdict struct {
	// Retry says whether another attempt may succeed.
	Retry bool
	// Delay, when > 0, replaces the backoff before the next attempt (a
	// rate limit's retry-after, for one).
	Delay time.Duration
	// Class names the kind of error (for example "transient",
	// "permanent", "rate_limited", "timeout"), or "".
	Class string
}

// Classifier judges a failed attempt's error. The executor asks it about
// every failed attempt but a pause, a budget breach, a refused checkpoint or
// a cancelled context, which end the step whatever a classifier says; and
// it never retries a refusal of an open circuit (ErrCircuitOpen), even when
// a classifier would.
type Classifier interface {
	Classify(site Site, err error) Verdict
}

// Watching marks a [Classifier] that only watches failures (the automatic
// optimization's counters): it answers the baseline's verdicts, and the
// core treats it as the baseline — no class in results or events — except
// that it asks it about every failed attempt, the last one too.
type Watching interface {
	Classifier
	Watching()
}

// ErrCircuitOpen is set by the core at init to its ErrCircuitOpen, which
// the baseline classifier does not retry.
var ErrCircuitOpen error

// Rules is the baseline [Classifier], the core's documented default:
//
//   - an error that matches ErrCircuitOpen is not retried (class
//     "circuit_open");
//   - an error with a method Permanent() bool that returns true, anywhere
//     in its chain, is not retried (class "permanent");
//   - an error with a method RetryAfter() time.Duration, anywhere in its
//     chain, is retried after that delay (class "rate_limited");
//   - every other error is retried (class "transient").
type Rules struct{}

// Classify implements [Classifier].
func (Rules) Classify(_ Site, err error) Verdict {
	if ErrCircuitOpen != nil && errors.Is(err, ErrCircuitOpen) {
		return Verdict{Class: "circuit_open"}
	}
	if p, ok := errors.AsType[interface {
		error
		Permanent() bool
	}](err); ok && p.Permanent() {
		return Verdict{Class: "permanent"}
	}
	if ra, ok := errors.AsType[interface {
		error
		RetryAfter() time.Duration
	}](err); ok {
		return Verdict{Retry: true, Delay: max(ra.RetryAfter(), 0), Class: "rate_limited"}
	}
	return Verdict{Retry: true, Class: "transient"}
}

// Near is an in-process cache in front of a cache step's backend: a hit
// there is served without calling the backend. The core offers it every
// result the backend answers a hit with: Set takes one the [Sharer]'s
// Store prepared (a near cache may decline it: admit only what is hit
// again, say), for at most ttl (0: the near cache's own bound); Get
// returns one Set stored for the same site and key, unexpired,
// prepared for its caller as the Sharer's Load would (the caller may change
// it: the near cache must not give out what another caller reads). now is
// the executor's monotonic time (of its [caudal.Runtime]), which the core
// has read anyway. Implementations must be safe for concurrent use. The
// baseline has none: every lookup is the backend's.
type Near[R any] interface {
	Get(site Site, key string, now time.Duration) (R, bool)
	Set(site Site, key string, r R, ttl, now time.Duration)
}

// Strategy is the set of seams that may differ per step: a tuner switches
// a step to another Strategy at run time through its [Slot]. R is the
// core's result type.
type Strategy[R any] struct {
	Isolation  Isolation
	Limiter    Limiter
	Guard      Guard      // nil: no guard
	Classifier Classifier // never nil
	Flight     Flight     // nil: no flight group
	Keyer      Keyer
	Sharer     Sharer[R]
	Near       Near[R] // nil: no near cache
}

// Slot is a step's switch in one executor: Strategy, when set, replaces
// the executor's strategy for the steps whose switch it is. A tuner owns
// its slots and flips them with Store at any time; executions read one
// once per step. A slot may be the switch of several steps: the builds of
// one definition, say, tuned as one step.
type Slot[R any] struct {
	Strategy atomic.Pointer[Strategy[R]]
}

// Graph describes a built step graph to a [Tuner]: the step at index i of
// Steps has its switch at Slots[i], nil until the tuner puts one there. A
// Strategy stored in a slot must set every seam a Strategy requires (all
// but Guard and Flight): start from a copy of Base, the executor's own.
// Base is a copy the tuner may keep: it holds no reference to the
// executor, which must stay collectable while its tuner is referenced.
type Graph[R any] struct {
	Root  any    // the graph's identity: its root node
	Steps []Site // every step of the graph, in build order
	Slots []*Slot[R]
	Base  *Strategy[R]
}

// Untuned reports whether the tuner put no switch in g: once its Attach
// has returned, the executor reads none.
func (g *Graph[R]) Untuned() bool {
	for _, s := range g.Slots {
		if s != nil {
			return false
		}
	}
	return true
}

// Tuner receives, once per executor, each graph the executor runs, and
// puts a switch in Slots for each step it may tune. What Slots holds when
// Attach returns is what the executor reads: a slot set later is never
// consulted, and a graph left without any costs the executor one atomic
// load per execution (a graph of plain steps, say). An executor with a
// tuner pays one atomic load per execution (a map lookup in an executor
// that is not the graph's first) and one per step of a graph with slots
// set; without one, nothing.
type Tuner[R any] interface {
	Attach(g *Graph[R])
}

// Seams is everything a package of this module may install in an
// executor ([Install]): the executor-wide seams and the default strategy
// of its steps. E is the core's event type, R its result type.
type Seams[E, R any] struct {
	// Owner is the executor being built (a *caudal.Executor), for a package
	// that keeps per-executor figures: read it, never call it from the
	// installing function.
	Owner    any
	Recorder Recorder[E] // nil: no sink, no event is built
	Alloc    Allocator
	Strategy Strategy[R]
	Tuner    Tuner[R] // nil: no per-step switch
	// Services is the background work installed seams need (a drain, a
	// ticker): the executor starts each once it is built, in order,
	// flushes them on its Flush, and stops them, in reverse order, on its
	// Close.
	Services []Service
}

// Service is background work an executor owns. Start begins it; Flush
// returns once everything handed to it before the call is done (or ctx
// ends: then ctx's cause); Stop flushes, ends the work and waits for its
// goroutines. The executor calls Start once, before any execution, and
// Stop once; Flush any number of times in between, also concurrently with
// executions.
type Service interface {
	Start()
	Flush(ctx context.Context) error
	Stop() error
}

// Install is set by package caudal at init. Install(fn) returns a
// caudal.Option (typed any here, since this package cannot import the
// core) that, passed to caudal.New, calls fn on the executor's seams after
// every other option has been applied, baselines already in place. Its
// dynamic type is func(func(*Seams[caudal.Event, caudal.StepResult])) any.
var Install any

// Refuse is set by package caudal at init. Refuse(name, err) returns a
// caudal.Option (typed any here) that makes caudal.New fail with err,
// naming the option name: how a package of this module reports an invalid
// configuration through the option that would have installed it. Its
// dynamic type is func(string, error) caudal.Option.
var Refuse any
