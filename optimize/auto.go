package optimize

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/internal/state"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// The patterns the tuner looks for, per step and per period (see
// [AutoConfig]). A component goes on when its pattern reaches its
// threshold in one period, and off after Hold periods without the pattern.
const (
	// largeState is the number of values (map entries and slice elements,
	// nested ones too) from which a forked state is large: its deep copy
	// costs more than copy-on-write's overlay ever does. Counting stops
	// there, so a fork pays at most that many steps to be measured.
	largeState = 256
	// largeForks is the forks of a large state that switch copy-on-write on.
	largeForks = 2
	// cacheRepeats is the hits of keys hit before, and lookups of a key
	// already being looked up, of a cache step that switch the cache
	// optimization on. A key looked up once and hit once — a miss, then a
	// hit, the seed's shape — is neither: the in-process cache and the
	// flight group would only cost it.
	cacheRepeats = 4
	// hitPrints is the size of a step's table of the keys it hit last.
	hitPrints = 32
	// permanentFailures is the failures error handling's rules class as
	// permanent (which the baseline retries) that switch error handling on.
	permanentFailures = 2
	// timeoutFailures is the timed-out attempts in a row (no success nor
	// other failure between them, however long they took) that switch the
	// breaker on.
	timeoutFailures = 3
	// heldBackFanouts is the fan-outs whose cap held items back (more items
	// than the cap) that switch the adaptive limit on.
	heldBackFanouts = 1
)

// The components the tuner switches per step, as bits of a step's set.
const (
	tuneCOW uint8 = 1 << iota
	tuneCache
	tuneErrors
	tuneBreaker
	tuneAdaptive
	tuneCount = 5
)

var tuneNames = [tuneCount]string{"context-manager", "cache-optimization", "error-handling", "circuit-breaker", "adaptive-resource-manager"}

// tuner is the automatic optimization of one executor: an [engine.Tuner]
// that puts a watching strategy in every step's switch, and an
// [engine.Service] whose ticker reads the steps' counters and switches
// components per step.
type tuner struct {
	interval time.Duration
	hold     int
	rec      engine.Recorder[caudal.Event] // nil: no sink, no decision events
	fixed    uint8                         // the components on for every step (their Config sections): never switched

	// The components a step may be switched to, shared by the steps.
	cow        engine.Isolation
	limiter    engine.Limiter
	near       engine.Near[caudal.StepResult]
	flight     engine.Flight
	classifier *classifier  // error handling's: judges as error handling would, for the counters too
	guard      engine.Guard // the breakers

	mu      sync.Mutex
	steps   map[stepKey]*tunedStep // by definition and path: the builds of a step share its tunedStep
	tracked []*tunedStep           // the steps ticks read: those of steps, and older builds' whose pattern showed again

	stop      chan struct{}
	done      chan struct{}
	wake      chan struct{} // a step's pattern just reached its threshold: tune now
	decisions atomic.Int64  // switches made, for Stats
	panics    atomic.Int64  // ticks that panicked, contained
}

var (
	_ engine.Tuner[caudal.StepResult] = (*tuner)(nil)
	_ engine.Service                  = (*tuner)(nil)
)

// stepKey is what makes steps one step to the tuner: the same definition
// (engine.Site.Shape) at the same path. A pipeline built again, per
// request say, is the same pipeline: its steps share the counters and the
// switch of their earlier builds, and start with what those learned.
type stepKey struct {
	shape uint64
	path  string
}

// tunedStep is one step's counters and switch, shared by every build of
// the step attached while it is tracked. The counters are the pattern's
// occurrences since the last tick; the tuner swaps them to zero. The
// tuner forgets a step that counted nothing for Hold periods (by then
// every component it switched is off again): a pipeline built per request
// with a new definition each time must not grow the tuner. Its builds
// keep their switch, and one whose pattern shows again brings it back.
type tunedStep struct {
	key    stepKey
	traits engine.Traits
	slot   engine.Slot[caudal.StepResult] // the switch of every build
	base   *engine.Strategy[caudal.StepResult]
	t      *tuner

	largeForks atomic.Int64             // forks of a large state (any fork while copy-on-write is on)
	repeats    atomic.Int64             // hits of a key hit before, and lookups of a key being looked up (any lookup while the cache optimization is on)
	pending    atomic.Uint64            // the print of the key being looked up, until its lookup is answered; 0: none
	hits       [hitPrints]atomic.Uint64 // prints of the keys hit, by print
	builds     atomic.Uint64            // the builds attached: a print is of a key of the latest
	permanent  atomic.Int64             // failures error handling classes permanent
	timeouts   atomic.Int64             // failures classed timeout, and refusals of an open breaker
	streak     atomic.Int64             // timed-out calls in a row, while the breaker is off (the watch guards the calls)
	heldBack   atomic.Int64             // fan-outs with more items than their cap (any fan-out while the limit adapts)
	tracked    atomic.Bool              // in tuner.tracked
	onBits     atomic.Uint32            // on, for Stats

	// Read and written by the tuner's goroutine only (and Attach, under mu,
	// before the tuner sees the step).
	on    uint8            // the components switched on
	idle  int              // periods without a count
	quiet [tuneCount]int   // periods since each component's pattern was last seen
	seen  [tuneCount]int64 // this period's counts, for the decision's reason
	views []*watch         // the strategies made so far, one per set of components
}

// keyPrint is the print of a cache key for s, to notice a repeat: the
// key's hash (sampling a few of its bytes, cheaper, took keys that differ
// in a number inside for one), mixed with the count of s's builds — a key
// an earlier build looked up is not this one's repeat — and never 0.
func (s *tunedStep) keyPrint(key string) uint64 {
	return (hashOfKey(key) ^ s.builds.Load()*golden) | 1
}

// hitSlot returns the slot of a key of print p in a step's table of the
// keys it hit (not by p's lowest bit, always set).
func hitSlot(p uint64) uint64 { return (p >> 8) % hitPrints }

func newTuner(cfg AutoConfig, rec engine.Recorder[caudal.Event]) *tuner {
	return &tuner{interval: cfg.interval(), hold: cfg.hold(), rec: rec, wake: make(chan struct{}, 1), steps: make(map[stepKey]*tunedStep)}
}

// nudge asks the tuner for a period now: a pattern just reached its
// threshold, and a fresh executor should not run a whole period without
// the component it calls for. It never blocks.
func (t *tuner) nudge() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// counted adds one to a step's counter of the pattern of component bit,
// nudging the tuner when it reaches threshold while the component is off.
func (w *watch) counted(c *atomic.Int64, bit uint8, threshold int64) {
	if c.Add(1) == threshold && w.on&bit == 0 {
		if !w.s.tracked.Load() {
			w.s.t.track(w.s)
		}
		w.s.t.nudge()
	}
}

// Attach puts a watching switch in the slot of every step of g that may
// show a pattern: one that forks the state, fans out under a cap, is a
// cache step, or calls an agent with retries or a timeout. The others — a
// plain agent step, a sequence — keep the executor's strategy, and a graph
// of nothing else costs its executions nothing. A step built before (the
// same definition at the same path) gets the switch of its earlier build.
func (t *tuner) Attach(g *engine.Graph[caudal.StepResult]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, site := range g.Steps {
		if site.Traits&(engine.Forks|engine.Capped|engine.Cached|engine.Retries|engine.Timeout) == 0 {
			continue
		}
		k := stepKey{site.Shape, site.Path}
		s := t.steps[k]
		if s == nil {
			s = &tunedStep{key: k, traits: site.Traits, base: g.Base, t: t}
			s.slot.Strategy.Store(s.view(0).strategy())
			s.tracked.Store(true)
			t.steps[k] = s
			t.tracked = append(t.tracked, s)
		}
		// The in-process cache and the flight group are per build: a key
		// an earlier build hit or was looking up is not this one's repeat.
		s.builds.Add(1)
		g.Slots[i] = &s.slot
	}
}

// Start starts the ticker.
func (t *tuner) Start() {
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	go t.loop()
}

// Flush returns at once: the tuner holds nothing to deliver.
func (t *tuner) Flush(context.Context) error { return nil }

// Stop ends the ticker and waits for it.
func (t *tuner) Stop() error {
	close(t.stop)
	<-t.done
	return nil
}

func (t *tuner) loop() {
	defer close(t.done)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.safeTick()
		case <-t.wake:
			t.safeTick()
		}
	}
}

// safeTick runs tick, containing a panic: a tuner that failed leaves the
// steps as they are.
func (t *tuner) safeTick() {
	defer func() {
		if recover() != nil {
			t.panics.Add(1)
		}
	}()
	t.tick()
}

// tick reads every tracked step's counters and switches what they call
// for; it forgets the steps that counted nothing for Hold periods.
func (t *tuner) tick() {
	t.mu.Lock()
	steps := slices.Clone(t.tracked)
	t.mu.Unlock()
	var forget []*tunedStep
	for _, s := range steps {
		if s.tune() {
			s.idle = 0
		} else if s.idle++; s.idle >= t.hold {
			forget = append(forget, s) // and every component is off: quiet as long
		}
	}
	if len(forget) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range forget {
		s.tracked.Store(false)
		if t.steps[s.key] == s {
			delete(t.steps, s.key)
		}
	}
	t.tracked = slices.DeleteFunc(t.tracked, func(s *tunedStep) bool { return !s.tracked.Load() })
}

// track brings a forgotten step back under the tuner: its pattern showed
// again. Its later builds share it again, unless another build of its
// definition took its place meanwhile.
func (t *tuner) track(s *tunedStep) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.tracked.CompareAndSwap(false, true) {
		s.idle = 0
		t.tracked = append(t.tracked, s)
		if t.steps[s.key] == nil {
			t.steps[s.key] = s
		}
	}
}

// tune makes one period's decisions for s; it reports whether s counted
// anything this period.
func (s *tunedStep) tune() (counted bool) {
	t := s.t
	counts := [tuneCount]int64{
		s.largeForks.Swap(0), s.repeats.Swap(0), s.permanent.Swap(0), s.timeouts.Swap(0), s.heldBack.Swap(0),
	}
	if s.on&tuneBreaker == 0 {
		// Off, the breaker's pattern is a row of timeouts, however slow:
		// an outage of 30 s timeouts shows three in no period.
		counts[3] = s.streak.Load()
	}
	for _, c := range counts {
		counted = counted || c != 0
	}
	thresholds := [tuneCount]int64{largeForks, cacheRepeats, permanentFailures, timeoutFailures, heldBackFanouts}
	next := s.on
	var changed [tuneCount]bool
	for i := range tuneCount {
		bit := uint8(1) << i
		if t.fixed&bit != 0 || !t.can(bit) {
			continue
		}
		s.seen[i] = counts[i]
		switch {
		case s.on&bit == 0 && counts[i] >= thresholds[i]:
			next |= bit
			s.quiet[i] = 0
			changed[i] = true
		case s.on&bit != 0 && counts[i] > 0:
			s.quiet[i] = 0
		case s.on&bit != 0:
			if s.quiet[i]++; s.quiet[i] >= t.hold {
				next &^= bit
				changed[i] = true
			}
		}
	}
	if next == s.on {
		return counted
	}
	if next&tuneBreaker == 0 && s.on&tuneBreaker != 0 {
		s.streak.Store(0) // the watch guards the calls again: a new row
	}
	s.on = next
	s.onBits.Store(uint32(next))
	s.slot.Strategy.Store(s.view(next).strategy())
	for i, c := range changed {
		if c {
			t.decisions.Add(1)
			t.emit(s, uint8(1)<<i, next&(uint8(1)<<i) != 0, s.seen[i])
		}
	}
	return counted
}

// tuned returns the components switched on, by step path, for Stats.
func (t *tuner) tuned() map[string][]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string][]string)
	for _, s := range t.tracked {
		on := uint8(s.onBits.Load())
		for i := range tuneCount {
			if on&(1<<i) != 0 && !slices.Contains(m[s.key.path], tuneNames[i]) {
				m[s.key.path] = append(m[s.key.path], tuneNames[i])
			}
		}
	}
	return m
}

// can reports whether the tuner has the component bit to switch to.
func (t *tuner) can(bit uint8) bool {
	switch bit {
	case tuneCOW:
		return t.cow != nil
	case tuneCache:
		return t.near != nil
	case tuneErrors:
		return t.classifier != nil
	case tuneBreaker:
		return t.guard != nil
	case tuneAdaptive:
		return t.limiter != nil
	}
	return false
}

// emit records the decision to switch component bit on or off for s.
func (t *tuner) emit(s *tunedStep, bit uint8, on bool, count int64) {
	if t.rec == nil {
		return
	}
	i := 0
	for bit>>uint(i) != 1 {
		i++
	}
	var reason string
	if on {
		reason = fmt.Sprintf("%s on: %s", tuneNames[i], pattern(bit, count, t.interval))
	} else {
		reason = fmt.Sprintf("%s off: its pattern was not seen for %v", tuneNames[i], time.Duration(t.hold)*t.interval)
	}
	t.rec.Record(context.Background(), &caudal.Event{Kind: caudal.EventTuned, Time: time.Now(), Path: s.key.path, Reason: reason})
}

// pattern describes the pattern that switched component bit on.
func pattern(bit uint8, n int64, period time.Duration) string {
	switch bit {
	case tuneCOW:
		return fmt.Sprintf("%d forks of a state of %d or more values in %v", n, largeState, period)
	case tuneCache:
		return fmt.Sprintf("%d hits of keys hit before and lookups of a key already being looked up in %v", n, period)
	case tuneErrors:
		return fmt.Sprintf("%d failures classed permanent, which the baseline retries, in %v", n, period)
	case tuneBreaker:
		return fmt.Sprintf("%d timed-out calls in a row", n)
	default:
		return fmt.Sprintf("%d fan-outs with more items than their cap in %v", n, period)
	}
}

// view returns the watching strategy of s with the components of set on,
// made once per set.
func (s *tunedStep) view(set uint8) *watch {
	for _, w := range s.views {
		if w.on == set|s.t.fixed {
			return w
		}
	}
	t, b := s.t, s.base
	w := &watch{s: s, on: set | s.t.fixed, iso: b.Isolation, lim: b.Limiter, keyer: b.Keyer, sharer: b.Sharer, cl: b.Classifier}
	st := *b
	if set&tuneCOW != 0 {
		w.iso = t.cow
	}
	if set&tuneAdaptive != 0 {
		w.lim = t.limiter
	}
	if set&tuneCache != 0 {
		st.Near, st.Flight = t.near, t.flight
	}
	st.Isolation, st.Limiter, st.Keyer, st.Sharer = w, w, w, w
	st.Classifier = w
	if set&tuneErrors != 0 {
		w.cl = t.classifier
		st.Classifier = (*reportingWatch)(w)
	}
	switch {
	case set&tuneBreaker != 0:
		st.Guard = t.guard
	case t.guard != nil && s.traits&engine.Timeout != 0:
		st.Guard = w // counts the timeouts in a row
	}
	w.strat = st
	s.views = append(s.views, w)
	return w
}

// watch is a step's strategy under the tuner: the seams of the components
// on (or the executor's), wrapped to count the patterns on the paths that
// already do the work counted. It is immutable: a switch stores another.
type watch struct {
	s      *tunedStep
	on     uint8
	iso    engine.Isolation
	lim    engine.Limiter
	keyer  engine.Keyer
	sharer engine.Sharer[caudal.StepResult]
	cl     engine.Classifier
	strat  engine.Strategy[caudal.StepResult]
}

func (w *watch) strategy() *engine.Strategy[caudal.StepResult] { return &w.strat }

// Fork counts a fork of a large state, then forks.
func (w *watch) Fork(parent *state.Store) *state.Store {
	if w.on&tuneCOW != 0 || stateSize(parent) >= largeState {
		w.counted(&w.s.largeForks, tuneCOW, largeForks)
	}
	return w.iso.Fork(parent)
}

// Writes returns the child's writes.
func (w *watch) Writes(parent, child *state.Store) []statemerge.Write {
	return w.iso.Writes(parent, child)
}

// Workers counts a fan-out its cap holds back, and asks the limiter. A
// fan-out its cap holds back goes to the adaptive limit at once, before the
// tuner has switched it on: the pattern shows in the fan-out itself, and a
// fan-out learns only while it runs (a fresh executor's first map of
// 256 items would otherwise run whole at the fixed cap).
func (w *watch) Workers(site engine.Site, cap, n int) (int, bool) {
	if w.on&tuneAdaptive != 0 || n > cap {
		w.counted(&w.s.heldBack, tuneAdaptive, heldBackFanouts)
		if l := w.s.t.limiter; l != nil {
			return l.Workers(site, cap, n)
		}
	}
	return w.lim.Workers(site, cap, n)
}

// Acquire asks the limiter that metered the fan-out: only the adaptive one
// meters.
func (w *watch) Acquire(ctx context.Context, site engine.Site, cap int) error {
	if l := w.s.t.limiter; l != nil {
		return l.Acquire(ctx, site, cap)
	}
	return w.lim.Acquire(ctx, site, cap)
}

// Release tells the limiter that metered the fan-out.
func (w *watch) Release(site engine.Site, latency time.Duration, err error) {
	if l := w.s.t.limiter; l != nil {
		l.Release(site, latency, err)
		return
	}
	w.lim.Release(site, latency, err)
}

// Key computes the key, and counts a lookup of a key already being
// looked up: concurrent identical misses, the flight group's pattern.
// While the cache optimization is on it counts every lookup: its
// in-process cache answers the hits it would count, and it stays on while
// the step is used.
func (w *watch) Key(fingerprint string, input any, st map[string]any) (string, error) {
	key, err := w.keyer.Key(fingerprint, input, st)
	switch {
	case err != nil:
	case w.on&tuneCache != 0:
		w.counted(&w.s.repeats, tuneCache, cacheRepeats)
	default:
		if p := w.s.keyPrint(key); w.s.pending.Load() == p {
			w.counted(&w.s.repeats, tuneCache, cacheRepeats)
		} else {
			w.s.pending.Store(p)
		}
	}
	return key, err
}

// Store prepares a result for the cache: the lookup missed, and is
// answered.
func (w *watch) Store(r caudal.StepResult) caudal.StepResult {
	if w.on&tuneCache == 0 && w.s.pending.Load() != 0 {
		w.s.pending.Store(0)
	}
	return w.sharer.Store(r)
}

// Load counts a hit of a key hit before — the in-process cache's pattern
// —, then prepares the result for its caller.
func (w *watch) Load(r caudal.StepResult) caudal.StepResult {
	if w.on&tuneCache == 0 {
		if p := w.s.pending.Load(); p != 0 {
			w.s.pending.Store(0)
			if seen := &w.s.hits[hitSlot(p)]; seen.Load() == p {
				w.counted(&w.s.repeats, tuneCache, cacheRepeats)
			} else {
				seen.Store(p)
			}
		}
	}
	return w.sharer.Load(r)
}

// Classify answers the baseline's verdict and counts what error handling
// would have made of the failure.
func (w *watch) Classify(site engine.Site, err error) engine.Verdict {
	w.count(site, err)
	return w.cl.Classify(site, err)
}

// Allow lets every call through: the watch only counts.
func (w *watch) Allow(context.Context, *engine.Site) error { return nil }

// Done counts a timed-out call into the step's row of timeouts; any other
// outcome ends the row.
func (w *watch) Done(site *engine.Site, err error) {
	if err != nil && w.s.t.classifier.classify(err).Class == ClassTimeout {
		w.counted(&w.s.streak, tuneBreaker, timeoutFailures)
	} else if w.s.streak.Load() != 0 {
		w.s.streak.Store(0)
	}
}

// Watching marks the watch as a classifier that only watches.
func (w *watch) Watching() {}

// count counts a failure's class under error handling's rules.
func (w *watch) count(site engine.Site, err error) {
	judge := w.s.t.classifier
	if judge == nil {
		return
	}
	switch judge.classify(err).Class {
	case ClassPermanent:
		if (engine.Rules{}).Classify(site, err).Retry { // the baseline would retry it
			w.counted(&w.s.permanent, tuneErrors, permanentFailures)
		}
	case ClassTimeout, ClassCircuitOpen:
		w.s.timeouts.Add(1)
	}
}

// reportingWatch is a watch whose classifier is error handling's: its
// verdicts, and its classes, are the step's.
type reportingWatch watch

// Classify counts the failure and answers error handling's verdict.
func (r *reportingWatch) Classify(site engine.Site, err error) engine.Verdict {
	w := (*watch)(r)
	w.count(site, err)
	return w.cl.Classify(site, err)
}

// stateSize counts the values of st, nested ones too, up to largeState.
func stateSize(st *state.Store) (n int) {
	st.View(func(m map[string]any) { n = countValues(m, 0) })
	return n
}

func countValues(v any, n int) int {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if n++; n >= largeState {
				return n
			}
			n = countValues(e, n)
		}
	case []any:
		for _, e := range x {
			if n++; n >= largeState {
				return n
			}
			n = countValues(e, n)
		}
	}
	return n
}
