package optimize

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// breakers is the circuit breaker's [engine.Guard]: one breaker per agent,
// shared by every step of the executor that calls it (see
// [CircuitBreakerConfig]). An agent is known by its identity: an agent of a
// pointer-shaped kind (a pointer, a func such as an [caudal.AgentFunc], a
// map, a chan) by its pointer, so two closures are two agents; an agent of
// another comparable type by its value. An agent whose value cannot be
// compared (a struct holding a slice, say) gets one breaker per step.
//
// A step finds its breaker through a lock-free table keyed by its site ID
// (open addressing over atomic pointers, grown copy-on-write under mu), so
// that a closed breaker costs the call a lookup and an atomic load, and a
// success a lookup and an atomic load (a store after failures; an atomic
// add with FailureRate set). The clock is read only while a breaker is
// open. BenchmarkCircuitBreaker/closed measures the closed path's overhead,
// BenchmarkCircuitBreaker/open the fast failure.
//
// breakers is safe for concurrent use. What it keeps — a breaker per agent
// and an entry per step — lives as long as the executor.
type breakers struct {
	cl    *classifier
	rec   engine.Recorder[caudal.Event] // nil: no events
	epoch time.Time                     // the origin of openedAt

	threshold     uint64        // consecutive failures that open
	rateNeed      uint64        // failures in a window that open; 0: no rate
	window        uint64        // calls per window
	probeInterval time.Duration // open → half-open after that
	probeEvery    int64         // open → half-open at the call after probeEvery-1 refusals; 0: never
	probes        uint64        // successful probes that close

	tab atomic.Pointer[siteTable]

	mu     sync.Mutex       // protects what follows and the growth of tab
	agents map[any]*breaker // agent identity → its breaker
	sites  []siteEntry      // every entry of tab, in insertion order
}

var _ engine.Guard = (*breakers)(nil)

// newBreakers returns the breakers of cfg (valid), counting as failures
// the errors cl classes transient, timeout or rate-limited, and recording
// each change of state to rec (nil: none).
func newBreakers(cfg CircuitBreakerConfig, cl *classifier, rec engine.Recorder[caudal.Event]) *breakers {
	bs := &breakers{
		cl:            cl,
		rec:           rec,
		epoch:         time.Now(),
		threshold:     uint64(cfg.consecutiveFailures()),
		window:        uint64(cfg.window()),
		probeInterval: cfg.probeInterval(),
		probeEvery:    int64(cfg.probeEvery()),
		probes:        min(uint64(cfg.halfOpenProbes()), countMask),
		agents:        map[any]*breaker{},
	}
	bs.threshold = min(bs.threshold, countMask)
	if cfg.FailureRate > 0 {
		bs.rateNeed = max(uint64(math.Ceil(cfg.FailureRate*float64(bs.window))), 1)
	}
	bs.tab.Store(newSiteTable(4))
	return bs
}

// The state word of a breaker: the state in stateMask's bits; while
// closed, the consecutive failures in countMask's; while half-open, the
// successful probes in countMask's and the probes in flight in
// flightMask's. Every change of state is a CompareAndSwap of the word, so
// exactly one caller makes it (and records its event).
const (
	stClosed   uint64 = 0
	stOpen     uint64 = 1 << 62
	stHalfOpen uint64 = 2 << 62
	stateMask  uint64 = 3 << 62

	countMask   uint64 = 1<<31 - 1
	flightShift        = 31
	flightOne   uint64 = 1 << flightShift
	flightMask  uint64 = countMask << flightShift
)

// breaker is the state of one agent's circuit.
type breaker struct {
	word     atomic.Uint64
	calls    atomic.Uint64 // FailureRate's window: calls in the low 32 bits, failures in the high
	openedAt atomic.Int64  // when it last opened, in ns since breakers.epoch
	refused  atomic.Int64  // calls refused since it last opened
	refusal  error         // what a refused call fails with
}

// stateName is the name of word's state, as events and [Stats] give it.
func stateName(word uint64) string {
	switch word & stateMask {
	case stOpen:
		return "open"
	case stHalfOpen:
		return "half_open"
	}
	return "closed"
}

// Allow implements [engine.Guard]: nil while site's breaker is closed, or
// when it lets a probe through; else its refusal, which matches
// [caudal.ErrCircuitOpen].
func (bs *breakers) Allow(_ context.Context, site *engine.Site) error {
	b := bs.forSite(site)
	if b.word.Load()&stateMask == stClosed {
		return nil
	}
	return bs.allowSlow(b, site)
}

// allowSlow is Allow for a breaker that was not closed.
func (bs *breakers) allowSlow(b *breaker, site *engine.Site) error {
	for {
		w := b.word.Load()
		switch w & stateMask {
		case stClosed:
			return nil
		case stHalfOpen:
			if (w&flightMask)>>flightShift >= bs.probes {
				return b.refusal // as many probes in flight as may succeed
			}
			if b.word.CompareAndSwap(w, w+flightOne) {
				return nil
			}
		default: // open
			n := b.refused.Add(1)
			due := bs.probeEvery > 0 && n >= bs.probeEvery // one call in probeEvery
			if !due {
				due = time.Since(bs.epoch)-time.Duration(b.openedAt.Load()) >= bs.probeInterval
			}
			if !due {
				return b.refusal
			}
			if b.word.CompareAndSwap(w, stHalfOpen|flightOne) {
				bs.emit(site, "half_open", nil)
				return nil // the first probe
			}
		}
	}
}

// Done implements [engine.Guard]: it counts the call's outcome against
// site's breaker.
func (bs *breakers) Done(site *engine.Site, err error) {
	b := bs.forSite(site)
	if err != nil {
		bs.failed(b, site, err)
		return
	}
	w := b.word.Load()
	if bs.rateNeed != 0 && w&stateMask == stClosed {
		bs.tally(b, site, 1, nil)
	}
	if w != 0 {
		bs.succeeded(b, site)
	}
}

// failed counts a call that ended in err.
func (bs *breakers) failed(b *breaker, site *engine.Site, err error) {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, caudal.ErrCircuitOpen):
		bs.neutral(b) // says nothing of the agent
		return
	case !bs.isFailure(err):
		if bs.rateNeed != 0 && b.word.Load()&stateMask == stClosed {
			bs.tally(b, site, 1, nil)
		}
		bs.succeeded(b, site) // the agent answered: it is up
		return
	}
	if bs.rateNeed != 0 && b.word.Load()&stateMask == stClosed {
		if bs.tally(b, site, 1<<32|1, err) {
			return
		}
	}
	for {
		w := b.word.Load()
		var next uint64
		switch w & stateMask {
		case stOpen:
			return // a call let through before it opened
		case stHalfOpen:
			next = stOpen // a failed probe
		default:
			if n := w&countMask + 1; n < bs.threshold {
				next = w + 1
			} else {
				next = stOpen
			}
		}
		if bs.transition(b, site, w, next, err) {
			return
		}
	}
}

// isFailure reports whether err counts against the agent: error handling's
// rules class it transient, timeout or rate-limited.
func (bs *breakers) isFailure(err error) bool {
	switch bs.cl.classify(err).Class {
	case ClassTransient, ClassTimeout, ClassRateLimited:
		return true
	}
	return false
}

// succeeded counts a call the agent answered.
func (bs *breakers) succeeded(b *breaker, site *engine.Site) {
	for {
		w := b.word.Load()
		var next uint64
		switch w & stateMask {
		case stClosed:
			if w == stClosed {
				return
			}
			next = stClosed // a success ends the run of failures
		case stHalfOpen:
			flight, ok := w&flightMask, w&countMask+1
			if flight > 0 {
				flight -= flightOne
			}
			next = stHalfOpen | flight | ok
			if ok >= bs.probes {
				next = stClosed
			}
		default:
			return // a call let through before it opened
		}
		if bs.transition(b, site, w, next, nil) {
			return
		}
	}
}

// neutral releases the probe slot of a call whose outcome says nothing.
func (bs *breakers) neutral(b *breaker) {
	for {
		w := b.word.Load()
		if w&stateMask != stHalfOpen || w&flightMask == 0 || b.word.CompareAndSwap(w, w-flightOne) {
			return
		}
	}
}

// tally adds delta (a call, and in the high half a failure, err) to b's
// window of calls. Windows follow one another: the call that completes one
// starts the next. The failure that brings a window's failures to
// FailureRate × Window opens the breaker, whatever the rest of the window
// brings: that share of Window calls has failed. It reports whether it
// opened the breaker.
func (bs *breakers) tally(b *breaker, site *engine.Site, delta uint64, err error) bool {
	v := b.calls.Add(delta)
	if v&(1<<32-1) == bs.window {
		b.calls.Add(^(v - 1)) // minus v: the next window keeps the calls past this one
	}
	if err == nil || v>>32 != bs.rateNeed {
		return false
	}
	for {
		w := b.word.Load()
		if w&stateMask != stClosed {
			return false
		}
		if bs.transition(b, site, w, stOpen, err) {
			return true
		}
	}
}

// transition moves b's word from w to next, recording the change of state
// if there is one; it reports false when another caller changed the word
// first.
func (bs *breakers) transition(b *breaker, site *engine.Site, w, next uint64, err error) bool {
	if next == stOpen {
		// Before the swap: a caller that sees it open must see when.
		b.openedAt.Store(int64(time.Since(bs.epoch)))
		b.refused.Store(0)
	}
	if !b.word.CompareAndSwap(w, next) {
		return false
	}
	if w&stateMask != next&stateMask {
		if next == stClosed {
			b.calls.Store(0) // a fresh window
		}
		bs.emit(site, stateName(next), err)
	}
	return true
}

// emit records that site's breaker went to state, opened by err.
func (bs *breakers) emit(site *engine.Site, state string, err error) {
	if bs.rec == nil {
		return
	}
	bs.rec.Record(context.Background(), &caudal.Event{Kind: caudal.EventCircuit, Time: time.Now(), Path: site.Path, Reason: state, Err: err})
}

// siteTable maps site IDs to breakers: open addressing, linear probing,
// never more than half full, so that a lookup always meets an empty slot.
// Readers only load; writers store under breakers.mu.
type siteTable struct {
	slots []atomic.Pointer[siteEntry]
	shift uint8 // 64 - log2(len(slots))
	n     int   // entries, under breakers.mu
}

type siteEntry struct {
	id   uint64
	b    *breaker
	path string
}

func newSiteTable(bits uint8) *siteTable {
	return &siteTable{slots: make([]atomic.Pointer[siteEntry], 1<<bits), shift: 64 - bits}
}

// home is id's first slot (Fibonacci hashing).
func (t *siteTable) home(id uint64) uint64 { return (id * golden) >> t.shift }

func (t *siteTable) get(id uint64) *breaker {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(id); ; i = (i + 1) & mask {
		e := t.slots[i].Load()
		if e == nil {
			return nil
		}
		if e.id == id {
			return e.b
		}
	}
}

// put adds e, which t does not hold and has room for.
func (t *siteTable) put(e *siteEntry) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(e.id)
	for t.slots[i].Load() != nil {
		i = (i + 1) & mask
	}
	t.slots[i].Store(e)
	t.n++
}

// forSite returns the breaker of site's agent.
func (bs *breakers) forSite(site *engine.Site) *breaker {
	if b := bs.tab.Load().get(site.ID); b != nil {
		return b
	}
	return bs.add(site)
}

// add finds or makes the breaker of a site met for the first time, and
// enters it in the table.
func (bs *breakers) add(site *engine.Site) *breaker {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	t := bs.tab.Load()
	if b := t.get(site.ID); b != nil {
		return b // entered while this caller waited
	}
	b := bs.agentBreaker(site)
	e := &siteEntry{id: site.ID, b: b, path: site.Path}
	if 2*(t.n+1) > len(t.slots) {
		bigger := newSiteTable(64 - t.shift + 1)
		for _, old := range bs.sites {
			bigger.put(&old)
		}
		t = bigger
		t.put(e)
		bs.tab.Store(t) // readers switch to the copy; the old one stays valid
	} else {
		t.put(e)
	}
	bs.sites = append(bs.sites, *e)
	return b
}

// agentBreaker returns the breaker of site's agent, made on first use; a
// new one for site alone when the agent has no identity.
func (bs *breakers) agentBreaker(site *engine.Site) *breaker {
	key, ok := agentKey(site.Agent)
	if ok {
		if b, ok := bs.lookupAgent(key); ok {
			return b
		}
	}
	// Short, and free of quotes: a refusal is logged on every refused call.
	b := &breaker{refusal: fmt.Errorf("%w: the agent of step %s is failing", caudal.ErrCircuitOpen, site.Path)}
	if ok {
		bs.storeAgent(key, b)
	}
	return b
}

// ptrKey is the identity of an agent of a pointer-shaped kind. Holding the
// pointer keeps the agent alive, so no other agent can take its address.
type ptrKey struct {
	t reflect.Type
	p unsafe.Pointer
}

// agentKey returns the identity of agent, and false when it has none (nil,
// or a value that cannot be compared).
func agentKey(agent any) (any, bool) {
	if agent == nil {
		return nil, false
	}
	t := reflect.TypeOf(agent)
	switch t.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Chan, reflect.UnsafePointer:
		// The interface's data word is the value itself.
		return ptrKey{t, (*[2]unsafe.Pointer)(unsafe.Pointer(&agent))[1]}, true
	}
	return agent, t.Comparable()
}

// lookupAgent returns the breaker of key; ok is false when there is none,
// or when key cannot be hashed after all (a comparable type holding an
// interface whose dynamic value is not).
func (bs *breakers) lookupAgent(key any) (b *breaker, ok bool) {
	defer func() {
		if recover() != nil {
			b, ok = nil, false
		}
	}()
	b, ok = bs.agents[key]
	return b, ok
}

func (bs *breakers) storeAgent(key any, b *breaker) {
	defer func() { _ = recover() }() // not hashable: b stays the step's own
	bs.agents[key] = b
}

// circuits returns the state of every step's breaker, by step path.
func (bs *breakers) circuits() map[string]string {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	m := make(map[string]string, len(bs.sites))
	for _, e := range bs.sites {
		m[e.path] = stateName(e.b.word.Load())
	}
	return m
}
