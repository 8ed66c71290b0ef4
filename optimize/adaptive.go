package optimize

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// The adaptive limit's fixed shape (the knobs are in [AdaptiveConfig]).
const (
	// plateauRounds is how many rounds the limit holds just below the
	// limit of its last cut before it probes that limit again; it doubles
	// with each probe that fails at the same limit, up to maxProbeFails
	// times.
	plateauRounds = 8
	maxProbeFails = 4
	// minRound is the fewest releases a round takes.
	minRound = 8
	// minWindow is how many rounds the minimum latency is kept before it
	// moves halfway toward the least latency of those rounds.
	minWindow = 16
	// maxWake bounds the wake-up tokens a step keeps for its waiters.
	maxWake = 1024
	// heapMetric is the reading memory pressure is judged on: the bytes
	// of heap objects, live or not yet swept.
	heapMetric = "/memory/classes/heap/objects:bytes"
)

// adaptive is the adaptive resource manager: an [engine.Limiter] whose
// limit is learned per step (see [AdaptiveConfig] for the algorithm), and
// the [engine.Service] whose ticker watches memory. It is safe for
// concurrent use. Its hot path — Acquire and Release under the limit — is
// a few atomic operations, without lock, clock read or allocation; a
// mutex is taken once per round (as many releases as the limit) and on a
// cut, and a worker over the limit parks on a channel. BenchmarkAdaptive
// measures it.
type adaptive struct {
	minLimit, maxLimit int64
	initial            int64 // 0: the step's own cap
	respect            bool
	tolerance, backoff float64
	memLimit           int64  // 0: memory not watched
	threshold          uint64 // heap bytes from which memory is under pressure
	interval           time.Duration
	readHeap           func() uint64 // the heap reading (a test replaces it)

	pressure atomic.Bool
	last     atomic.Pointer[stepLimit] // the step consulted last
	steps    sync.Map                  // Site.ID → *stepLimit

	startOnce, stopOnce sync.Once
	stop, done          chan struct{}         // nil until a ticker starts
	failure             atomic.Pointer[error] // the first panic of a memory reading
}

var (
	_ engine.Limiter = (*adaptive)(nil)
	_ engine.Service = (*adaptive)(nil)
)

// heapReader is the memory reading of new adaptive managers.
var heapReader = readHeapObjects

func newAdaptive(cfg AdaptiveConfig) *adaptive {
	a := &adaptive{
		minLimit:  int64(cfg.minLimit()),
		maxLimit:  int64(cfg.maxLimit()),
		initial:   int64(cfg.InitialLimit),
		respect:   cfg.RespectStepLimits,
		tolerance: cfg.tolerance(),
		backoff:   cfg.backoff(),
		memLimit:  cfg.memoryLimit(),
		interval:  cfg.pressureInterval(),
		readHeap:  heapReader,
	}
	a.threshold = uint64(float64(a.memLimit) * cfg.pressureThreshold())
	return a
}

// stepLimit is one step's limit and what it is learned from.
type stepLimit struct {
	id             uint64 // the step's Site.ID: the state does not keep the step alive
	path           string
	floor, ceiling int64

	limit     atomic.Int64 // the learned limit, in [floor, ceiling]
	inflight  atomic.Int64 // admitted, not yet released
	waiters   atomic.Int64 // workers waiting in Acquire
	releases  atomic.Int64
	full      atomic.Int64 // releases of this round that found every slot taken
	limited   atomic.Bool  // the last round was limited: most of its releases found every slot taken
	rounds    atomic.Int64 // rounds ended
	fanouts   atomic.Int64 // fan-outs started while the limit held nothing back
	peak      atomic.Int64 // the most slots taken at once this round
	lastPeak  atomic.Int64 // peak, of the last round
	slowStart atomic.Bool  // no cut yet: the limit doubles per limited round
	minLat    atomic.Int64 // the least latency seen (ns, ≥ 1); 0: none yet
	winMin    atomic.Int64 // the least latency of the current window
	cutAt     atomic.Int64 // when the limit was last cut (ns since adaptEpoch)
	roundEnd  atomic.Int64 // the release count that ends the round
	wake      chan struct{}

	mu       sync.Mutex // serializes cuts and round ends; protects the fields below
	roundCut bool       // the limit was cut this round
	wMax     int64      // the limit at the last cut; 0: none, or forgotten
	plateau  int        // rounds held just below wMax
	beyond   int        // rounds above wMax without a cut
	fails    int        // probes that failed at wMax in a row
	start    int64      // the release count that began the round
}

// step returns site's state, made on first use with the step's cap (≤ 0:
// none known).
func (a *adaptive) step(site engine.Site, cap int) *stepLimit {
	if s := a.last.Load(); s != nil && s.id == site.ID {
		return s
	}
	v, ok := a.steps.Load(site.ID)
	if !ok {
		v, _ = a.steps.LoadOrStore(site.ID, a.newStep(site, cap))
	}
	s := v.(*stepLimit)
	a.last.Store(s)
	return s
}

func (a *adaptive) newStep(site engine.Site, cap int) *stepLimit {
	s := &stepLimit{id: site.ID, path: site.Path, ceiling: a.maxLimit}
	if a.respect && cap > 0 {
		s.ceiling = min(s.ceiling, int64(cap))
	}
	s.floor = min(a.minLimit, s.ceiling)
	start := a.initial
	if start == 0 {
		start = int64(max(cap, 1))
	}
	s.limit.Store(min(max(start, s.floor), s.ceiling))
	s.slowStart.Store(true)
	s.winMin.Store(1<<63 - 1)
	s.cutAt.Store(-1 << 63)
	s.roundEnd.Store(max(s.limit.Load(), minRound))
	s.wake = make(chan struct{}, min(s.ceiling, maxWake))
	return s
}

// effective returns the limit in force: the learned one, halved under
// memory pressure (to at least the floor).
func (s *stepLimit) effective(pressure bool) int64 {
	l := s.limit.Load()
	if pressure {
		l = max(s.floor, l/2)
	}
	return l
}

// Workers starts enough workers for the limit to be used and to grow:
// min(n, the ceiling, 2 × the limit), or 4 × in slow start after a limited
// round (the limit then doubles per round). Workers over the limit wait in
// Acquire. Once a round showed the limit holding nothing back, not even
// half of it ever taken (a CPU-bound map, say, where only GOMAXPROCS items
// really run: more workers would only wait), a fan-out gets the limit's
// number of workers, unmetered — the core then runs it as the baseline
// runs a fixed limit, without a call per item — but one in probeEvery is
// metered, to notice when the work changes.
func (a *adaptive) Workers(site engine.Site, cap, n int) (int, bool) {
	s := a.step(site, cap)
	w := s.effective(a.pressure.Load())
	metered := true
	switch {
	case s.limited.Load() && s.slowStart.Load():
		w *= 4
	case s.limited.Load() || s.rounds.Load() == 0:
		w *= 2
	case 2*s.lastPeak.Load() <= w:
		// Not even half the limit was ever taken: nothing waits on it.
		metered = s.fanouts.Add(1)%probeEvery == 0
	}
	return int(min(int64(n), s.ceiling, w)), metered
}

// probeEvery is how often a fan-out of a step whose limit holds nothing
// back is metered.
const probeEvery = 8

// Acquire admits a branch or item when the step's in-flight count is under
// its limit; otherwise it waits for a release, a raised limit or the end
// of ctx, when it returns [context.Cause](ctx).
func (a *adaptive) Acquire(ctx context.Context, site engine.Site, cap int) error {
	s := a.step(site, cap)
	if s.tryAcquire(a.pressure.Load()) {
		return nil
	}
	return a.wait(ctx, s)
}

// tryAcquire takes a slot if one is free.
func (s *stepLimit) tryAcquire(pressure bool) bool {
	l := s.effective(pressure)
	for {
		n := s.inflight.Load()
		if n >= l {
			return false
		}
		if s.inflight.CompareAndSwap(n, n+1) {
			for p := s.peak.Load(); n+1 > p && !s.peak.CompareAndSwap(p, n+1); p = s.peak.Load() {
			}
			return true
		}
	}
}

// signal wakes one waiter, if a token is not already pending for it.
func (s *stepLimit) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wait is Acquire's slow path. A waiter registers before it retries, and a
// release reads the count after it frees its slot: one of the two sees the
// other. A waiter admitted passes the wake-up on while room is left.
func (a *adaptive) wait(ctx context.Context, s *stepLimit) error {
	s.waiters.Add(1)
	defer s.waiters.Add(-1)
	for {
		pressure := a.pressure.Load()
		if s.tryAcquire(pressure) {
			if s.waiters.Load() > 1 && s.inflight.Load() < s.effective(pressure) {
				s.signal()
			}
			return nil
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Release frees the slot and learns from the branch's or item's latency
// and error.
func (a *adaptive) Release(site engine.Site, latency time.Duration, err error) {
	s := a.step(site, 0)
	if s.inflight.Add(-1) >= s.effective(a.pressure.Load())-1 {
		s.full.Add(1) // the limit held work back, as far as this release tells
	}
	if s.waiters.Load() > 0 {
		s.signal()
	}
	n := s.releases.Add(1)
	a.observe(s, max(int64(latency), 1), err)
	if n >= s.roundEnd.Load() {
		a.endRound(s, n)
	}
}

// observe is what one release teaches: a failure (not a cancellation nor
// a pause) cuts the limit, and so does a latency over Tolerance × the
// minimum when the last round was limited.
func (a *adaptive) observe(s *stepLimit, lat int64, err error) {
	if err != nil {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, caudal.ErrPaused) {
			a.cut(s, lat)
		}
		return
	}
	m := s.minLat.Load()
	if m == 0 || lat < m {
		lower(&s.minLat, lat)
		m = lat
	}
	if lat < s.winMin.Load() {
		lower(&s.winMin, lat)
	}
	if float64(lat) > float64(m)*a.tolerance && s.limited.Load() {
		a.cut(s, lat)
	}
}

// lower lowers v to x, unless another lowered it further (0 is above all).
func lower(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if cur != 0 && cur <= x || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// grow raises the limit by k, to at most the ceiling; it reports whether
// the limit rose.
func (s *stepLimit) grow(k int64) bool {
	for {
		l := s.limit.Load()
		if l >= s.ceiling {
			return false
		}
		if s.limit.CompareAndSwap(l, min(l+k, s.ceiling)) {
			return true
		}
	}
}

// cut lowers the limit — by Backoff, or by half when it ends slow start —
// on a signal from a branch or item that started after the last cut: the
// ones in flight then cannot tell of the lowered limit (TCP's rule of one
// cut per window). lat is the signalling one's latency: this slow path
// reads the clock to date its start.
func (a *adaptive) cut(s *stepLimit, lat int64) {
	now := int64(time.Since(adaptEpoch))
	if now-lat <= s.cutAt.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now-lat <= s.cutAt.Load() {
		return
	}
	l := s.limit.Load()
	next := max(int64(float64(l)*a.backoff), s.floor)
	wMax := l
	if s.slowStart.Load() {
		// Slow start doubled the limit over the round the signal took to
		// come back: half of it is the last limit known to be good, and
		// the limit of the cut tells nothing of where the knee is.
		next = max(min(next, l/2), s.floor)
		wMax = next
		s.slowStart.Store(false)
	}
	switch {
	case l == s.wMax && s.fails < maxProbeFails:
		s.fails++ // the probe failed where the last one did
	case l != s.wMax:
		s.fails = 0
	}
	s.limit.Store(next)
	s.wMax, s.plateau, s.beyond, s.roundCut = wMax, 0, 0, true
	s.cutAt.Store(now)
}

// adaptEpoch anchors the dates of cuts.
var adaptEpoch = time.Now()

// endRound closes a round — as many releases as the limit, at least
// minRound. The round was limited when at least 3/4 of its releases found
// every slot taken: a CPU-bound fan-out, where only GOMAXPROCS items run,
// finds so only when the scheduler preempts a holder. A limited round
// without a cut raises the limit: in slow start by the releases that found
// it full (doubling it); after, quickly toward the limit of the last cut,
// then holding one below it plateauRounds rounds (doubled for each probe
// that failed there), then probing past it by 1, 2, 4… per round. Every
// minWindow rounds the minimum latency moves halfway toward the least of
// the window, so that it follows a workload that got slower.
func (a *adaptive) endRound(s *stepLimit, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < s.roundEnd.Load() {
		return // another release ended it
	}
	full := s.full.Swap(0)
	limited := 4*full >= 3*(n-s.start)
	if limited && !s.roundCut && !a.pressure.Load() {
		l := s.limit.Load()
		var k int64
		switch {
		case s.slowStart.Load():
			k = full
		case s.wMax == 0 || l >= s.wMax:
			s.beyond++
			if s.beyond >= 2 { // the first round's signals still come from below
				k = 1 << min(s.beyond-2, 20)
				s.fails = 0
			}
		case l+1 < s.wMax:
			k = max(1, (s.wMax-1-l)/2)
		default:
			s.plateau++
			if s.plateau >= plateauRounds<<s.fails {
				k, s.plateau = 1, 0
			}
		}
		if k > 0 && s.grow(k) && s.waiters.Load() > 0 {
			s.signal()
		}
	}
	s.limited.Store(limited)
	s.lastPeak.Store(s.peak.Swap(s.inflight.Load()))
	r := s.rounds.Add(1)
	s.start = n
	s.roundCut = false
	if r%minWindow == 0 {
		if w := s.winMin.Swap(1<<63 - 1); w != 1<<63-1 {
			if m := s.minLat.Load(); w > m {
				s.minLat.Store(m + (w-m)/2)
			}
		}
	}
	s.roundEnd.Store(n + max(s.limit.Load(), minRound))
}

// limits returns the limit in force of every step that has fanned out, by
// path (of two steps with one path, either's).
func (a *adaptive) limits() map[string]int {
	m := make(map[string]int)
	pressure := a.pressure.Load()
	a.steps.Range(func(_, v any) bool {
		s := v.(*stepLimit)
		m[s.path] = int(s.effective(pressure))
		return true
	})
	return m
}

func (a *adaptive) underPressure() bool { return a.pressure.Load() }

// Start starts the memory ticker when there is a memory limit to judge
// pressure against; otherwise it does nothing.
func (a *adaptive) Start() {
	if a.memLimit <= 0 {
		return
	}
	a.startOnce.Do(func() {
		a.stop, a.done = make(chan struct{}), make(chan struct{})
		go a.watch()
	})
}

// Flush returns nil: nothing is ever handed to the ticker.
func (a *adaptive) Flush(context.Context) error { return nil }

// Stop stops the ticker and waits for it. It returns an error if a memory
// reading panicked (the ticker went on without it).
func (a *adaptive) Stop() error {
	a.stopOnce.Do(func() {
		a.startOnce.Do(func() {}) // a Start after Stop starts nothing
		if a.stop != nil {
			close(a.stop)
			<-a.done
		}
	})
	if p := a.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// watch reads memory every interval until Stop.
func (a *adaptive) watch() {
	defer close(a.done)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.sample()
		}
	}
}

// sample reads memory once and sets the pressure; releasing it wakes the
// waiters of every step. A panic in the reading is kept for Stop.
func (a *adaptive) sample() {
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("optimize: adaptive resource manager: memory reading panicked: %v", v)
			if e, ok := v.(error); ok {
				err = fmt.Errorf("optimize: adaptive resource manager: memory reading panicked: %w", e)
			}
			a.failure.CompareAndSwap(nil, &err)
		}
	}()
	on := a.readHeap() >= a.threshold
	if a.pressure.Swap(on) && !on {
		a.steps.Range(func(_, v any) bool {
			if s := v.(*stepLimit); s.waiters.Load() > 0 {
				s.signal()
			}
			return true
		})
	}
}

// readHeapObjects reads heapMetric.
func readHeapObjects() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
