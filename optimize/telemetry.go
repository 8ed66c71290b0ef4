package optimize

import (
	"context"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// TelemetryStats are the telemetry's figures, read with [StatsOf]. They
// count the events that went through the ring: an event delivered at once
// to fast sinks, on the goroutine that recorded it as on the baseline (see
// [TelemetryConfig]), is not counted — counting it would cost every event
// more than the delivery does. Of the events the ring was handed,
// Recorded+Dropped is how many there were, and Recorded-Delivered how
// many are still on their way to the sinks.
type TelemetryStats struct {
	// Recorded counts the events taken into the ring, or, after the
	// executor's Close, delivered at once.
	Recorded uint64
	// Delivered counts the recorded events handed to the sinks; the
	// [caudal.EventDropped] events the telemetry makes are not counted.
	Delivered uint64
	// Dropped counts the events dropped because the ring was full and the
	// drain stalled.
	Dropped uint64
	// SinkPanics counts the deliveries on the drain goroutine in which a
	// sink panicked. There a panic is contained and the drain goes on with
	// the next event: unlike the baseline, where a sink's panic fails the
	// step that recorded the event, it cannot fail that step any more (the
	// step has moved on by then). An event delivered at once to fast sinks
	// is delivered as on the baseline: a panic there fails the step.
	SinkPanics uint64
	// Latency is the histogram of the latency of finished steps
	// ([caudal.EventStepFinished]), dropped events included.
	Latency Histogram
}

// Histogram is a fixed-bucket histogram: Counts[i] counts the values in
// (Bounds[i-1], Bounds[i]] (Counts[0] those up to Bounds[0]); the last
// count, one past Bounds, those above every bound. A Histogram returned by
// [StatsOf] is the caller's own copy.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
}

// telemetry is the Telemetry component: an [engine.Recorder] that copies
// each event, with its ctx, into a bounded lock-free ring, and an
// [engine.Service] whose one goroutine (the drain) hands the events to
// next, the baseline fan-out to the sinks, in the order they were
// recorded. Safe for concurrent use. Its hot path is measured by
// BenchmarkTelemetryRecord.
//
// Consumers: until the drain goroutine has exited (exited closed) it alone
// reads the ring; afterwards whoever holds lateMu does.
type telemetry struct {
	next    engine.Recorder[caudal.Event]
	fan     engine.Fanout[caudal.Event] // next, when it is the core's fan-out: called without an interface hop
	ring    ring
	latency histogram

	direct   atomic.Bool   // deliver on the recording goroutine: the sinks are fast
	closed   atomic.Bool   // Stop was called: Record delivers synchronously
	stalled  atomic.Bool   // the drain delivered nothing for stallTimeout: drop when full
	sleeping atomic.Bool   // the drain is about to wait, or waits, on wake
	wake     chan struct{} // 1-buffered: a token wakes the drain
	started  atomic.Bool
	exited   chan struct{} // closed when the drain goroutine has returned
	wg       sync.WaitGroup

	// The consumer's counters, on lines of their own: done changes with
	// every delivery, and must not evict what every Record reads.
	_        [64]byte
	done     atomic.Uint64 // ring positions delivered; consumer writes
	reported atomic.Uint64 // drops an EventDropped delivered; consumer writes
	dropped  atomic.Uint64 // events the ring had no room for
	dropPos  atomic.Uint64 // the ring position of the first drop not reported, or noDrop
	late     atomic.Uint64 // events delivered synchronously after Stop
	cost     atomic.Int64  // moving mean of a timed delivery, ns
	panics   atomic.Uint64 // sink panics contained
	_        [64]byte

	lateMu sync.Mutex // serializes the consumers after the drain has exited

	roomWaiters atomic.Int32  // Records waiting for room in a full ring
	roomMu      sync.Mutex    // protects room
	room        chan struct{} // closed, and replaced, when the drain made room
	quarter     uint64        // the drain signals room every quarter of the ring
	fixedMode   bool          // the delivery never switches (tests)

	mu       sync.Mutex // protects waiters
	waiters  []*flushWaiter
	nwaiters atomic.Int32 // len(waiters), read by the drain without mu
}

// flushWaiter is a Flush waiting for the ring positions below pos to be
// delivered and drops drops to be reported.
type flushWaiter struct {
	pos, drops uint64
	ch         chan struct{} // closed when satisfied
}

// deliveryMode chooses where events are delivered; tests fix it.
type deliveryMode int

const (
	adaptiveDelivery deliveryMode = iota // direct while the sinks are fast
	ringDelivery                         // always through the ring
	directDelivery                       // always on the recording goroutine
)

// telemetryMode is the mode of the telemetries made from now on.
var telemetryMode = adaptiveDelivery

var (
	_ engine.Recorder[caudal.Event] = (*telemetry)(nil)
	_ engine.Service                = (*telemetry)(nil)
)

func newTelemetry(cfg TelemetryConfig, next engine.Recorder[caudal.Event]) *telemetry {
	t := &telemetry{
		next:   next,
		wake:   make(chan struct{}, 1),
		exited: make(chan struct{}),
		room:   make(chan struct{}),
	}
	t.ring.init(max(cfg.bufferSize(), 2)) // a ring of one cannot tell a full slot from a free one
	t.dropPos.Store(noDrop)
	t.quarter = max(t.ring.size/4, 1)
	t.fixedMode = telemetryMode != adaptiveDelivery
	t.direct.Store(telemetryMode != ringDelivery)
	t.latency.init(cfg.latencyBuckets())
	if fan, ok := next.(engine.Fanout[caudal.Event]); ok {
		t.fan = fan
	}
	return t
}

// Record implements [engine.Recorder]. While the sinks are fast it hands
// e to them at once, on the caller's goroutine (a hand-off to the drain
// would cost more than the sinks do); once they are slow it copies *e and
// ctx into the ring and returns, and the drain delivers them. When the
// ring is full it waits for the drain while the drain makes progress, and
// drops the event (counted) when the drain is stalled. After Stop it
// delivers e synchronously. It takes no lock, allocates nothing and makes
// no system call unless it has to wake the drain from its sleep.
func (t *telemetry) Record(ctx context.Context, e *caudal.Event) {
	timed := false
	if e.Kind == caudal.EventStepFinished {
		t.latency.observe(e.Latency)
		timed = sampled(e)
	}
	if t.direct.Load() && t.ring.tail.Load() == t.done.Load() {
		if timed {
			t.deliverTimedDirect(ctx, e)
		} else if t.fan != nil {
			t.fan.Record(ctx, e)
		} else {
			t.next.Record(ctx, e)
		}
		return
	}
	t.recordSlow(ctx, e)
}

// recordSlow is Record when the event goes through the ring, or the
// telemetry is stopped, or the ring still holds events recorded before
// the switch to direct delivery.
func (t *telemetry) recordSlow(ctx context.Context, e *caudal.Event) {
	if t.closed.Load() {
		t.recordLate(ctx, e)
		return
	}
	if t.direct.Load() {
		// Events recorded before the switch are still in the ring: they
		// go first, and so does every event put there before this call.
		t.awaitDrained(t.ring.tail.Load())
		t.deliverDirect(ctx, e)
		return
	}
	if !t.ring.put(ctx, e) && !t.putFull(ctx, e) {
		return
	}
	if t.closed.Load() {
		// Stop raced this Record: the drain may have made its last pass
		// before the event was in. Deliver what is left here.
		t.drainLate()
		return
	}
	if t.sleeping.Load() {
		t.wakeDrain()
	}
}

// deliverDirect hands e to the sinks on the caller's goroutine (a
// Record that found events in the ring first), timing it when sampled.
func (t *telemetry) deliverDirect(ctx context.Context, e *caudal.Event) {
	if sampled(e) {
		t.deliverTimedDirect(ctx, e)
		return
	}
	t.next.Record(ctx, e)
}

// deliverTimedDirect hands e to the sinks on the caller's goroutine and
// times the delivery. As on the baseline, a sink's panic is not contained
// here: it reaches the step that recorded e. Once the sinks' mean cost
// exceeds directBelow, delivery moves to the drain.
func (t *telemetry) deliverTimedDirect(ctx context.Context, e *caudal.Event) {
	start := time.Now()
	t.next.Record(ctx, e)
	if t.learn(time.Since(start)) > directBelow && !t.fixedMode {
		t.direct.Store(false)
	}
}

// sampled reports whether the delivery of e is timed: a finished step's
// event, one in about sampleEvery, chosen by a hash of its latency. It
// costs nothing on the other events, keeps no shared counter (whose atomic
// increment would cost every event) and draws no random number: the
// nanoseconds of a measured latency do not alias with a pipeline's period
// of events. Under a fake clock whose latencies share their low bits,
// every finished event or none is timed: the mode is then fixed by the
// first samples.
func sampled(e *caudal.Event) bool {
	return e.Kind == caudal.EventStepFinished && (uint64(e.Latency)*golden)>>58 == 0
}

// learn adds a timed delivery to the moving mean of the sinks' cost and
// returns the mean. A sample counts for at most sampleCap, so that one
// preempted delivery does not switch the mode. Updates racing each other
// may lose one: the mean is a guide, not a figure.
func (t *telemetry) learn(d time.Duration) time.Duration {
	d = min(d, sampleCap)
	m := time.Duration(t.cost.Load())
	m += (d - m) / 8
	t.cost.Store(int64(m))
	return m
}

// awaitDrained waits until the ring positions below pos are delivered.
func (t *telemetry) awaitDrained(pos uint64) {
	for t.done.Load() < pos {
		room := t.awaitRoom()
		if t.done.Load() >= pos || t.closed.Load() {
			t.roomWaiters.Add(-1)
			break
		}
		t.wakeDrain()
		<-room
		t.roomWaiters.Add(-1)
	}
	if t.closed.Load() {
		t.drainLate()
	}
}

// The choice between delivering on the recording goroutine and on the
// drain: a hand-off through the ring costs the recording goroutine about
// a hundred nanoseconds (the event's cache lines move to the drain's
// processor), so sinks cheaper than that are better called directly. One
// delivery in about sampleEvery is timed, into a moving mean of the
// sinks' cost per event; the gap between the two thresholds keeps a sink
// near one of them from flapping.
const (
	sampleEvery = 64                    // a power of two: sampled masks with it
	sampleCap   = 4 * directBelow       // the most one sample counts for
	directBelow = 250 * time.Nanosecond // direct delivery stays while the mean is this low
	drainAbove  = 120 * time.Nanosecond // the drain keeps delivery while the mean is this high
)

// stallTimeout is how long a Record waits on a full ring for the drain to
// deliver anything before it takes the drain for stalled (a sink blocks)
// and drops.
const stallTimeout = 50 * time.Millisecond

// putFull is put when the ring is full, off the hot path: it waits for the
// drain to make room as long as the drain makes progress — a sink slower
// than the executions slows them down as the baseline does, and loses
// nothing. When the drain has delivered nothing for stallTimeout, the
// drain is stalled: e is dropped and counted, and so is every event that
// finds the ring full until the drain delivers again. It reports whether
// e is in the ring; if not, it was dropped or, the telemetry being
// stopped meanwhile, delivered.
func (t *telemetry) putFull(ctx context.Context, e *caudal.Event) bool {
	if t.stalled.Load() {
		t.drop()
		return false
	}
	timer := time.NewTimer(stallTimeout)
	defer timer.Stop()
	from := t.done.Load()
	for {
		room := t.awaitRoom()
		if t.ring.put(ctx, e) {
			t.roomWaiters.Add(-1)
			return true
		}
		if t.closed.Load() {
			t.roomWaiters.Add(-1)
			t.recordLate(ctx, e)
			return false
		}
		t.wakeDrain()
		select {
		case <-room:
		case <-timer.C:
			if d := t.done.Load(); d != from {
				from = d
				timer.Reset(stallTimeout)
				break
			}
			t.roomWaiters.Add(-1)
			t.stalled.Store(true)
			t.drop()
			return false
		}
		t.roomWaiters.Add(-1)
	}
}

// drop counts an event dropped, and marks where in the ring the first
// drop since the last EventDropped happened, so that the EventDropped
// comes after the events recorded before it (give or take the drops that
// race its delivery: those are reported early, never lost).
func (t *telemetry) drop() {
	t.dropped.Add(1)
	t.dropPos.CompareAndSwap(noDrop, t.ring.tail.Load())
}

// noDrop is dropPos when no drop waits for its EventDropped.
const noDrop = ^uint64(0)

// awaitRoom counts the caller as waiting for room in the ring and returns
// the channel the drain closes when it has made some.
func (t *telemetry) awaitRoom() <-chan struct{} {
	t.roomWaiters.Add(1)
	t.roomMu.Lock()
	defer t.roomMu.Unlock()
	return t.room
}

// signalRoom wakes the Records waiting for room. Consumer only.
func (t *telemetry) signalRoom() {
	t.roomMu.Lock()
	defer t.roomMu.Unlock()
	close(t.room)
	t.room = make(chan struct{})
}

// wakeDrain wakes the drain if it sleeps, or is about to.
func (t *telemetry) wakeDrain() {
	if t.sleeping.Swap(false) {
		select {
		case t.wake <- struct{}{}:
		default: // a token is there already
		}
	}
}

// Start implements [engine.Service]: it starts the drain goroutine.
func (t *telemetry) Start() {
	if !t.started.CompareAndSwap(false, true) {
		return
	}
	t.wg.Add(1)
	go t.run()
}

// Stop implements [engine.Service]: the drain delivers everything
// recorded, then ends, and Stop waits for it. Later Records deliver
// synchronously. It always returns nil.
func (t *telemetry) Stop() error {
	if !t.closed.CompareAndSwap(false, true) {
		<-t.exited // a concurrent Stop: wait for the first to be done
		return nil
	}
	if t.started.CompareAndSwap(false, true) {
		close(t.exited) // never started: no drain to end
	} else {
		t.sleeping.Store(false)
		select {
		case t.wake <- struct{}{}:
		default:
		}
		t.wg.Wait()
	}
	t.drainLate()
	return nil
}

// Flush implements [engine.Service]: it returns once every event recorded
// before the call, and the count of every event dropped before it, is
// delivered, or ctx ends (then ctx's cause).
func (t *telemetry) Flush(ctx context.Context) error {
	if t.closed.Load() {
		t.drainLate()
		return nil
	}
	w := &flushWaiter{pos: t.ring.tail.Load(), drops: t.dropped.Load()}
	if t.satisfied(w) {
		return nil
	}
	w.ch = make(chan struct{})
	t.mu.Lock()
	t.waiters = append(t.waiters, w)
	t.nwaiters.Store(int32(len(t.waiters)))
	t.mu.Unlock()
	t.wakeDrain()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		if i := slices.Index(t.waiters, w); i >= 0 {
			t.waiters = slices.Delete(t.waiters, i, i+1)
			t.nwaiters.Store(int32(len(t.waiters)))
		}
		return context.Cause(ctx)
	}
}

// satisfied reports whether everything w waits for is delivered.
func (t *telemetry) satisfied(w *flushWaiter) bool {
	return t.done.Load() >= w.pos && t.reported.Load() >= w.drops
}

// run is the drain goroutine: it delivers what the ring holds, then
// sleeps until a Record, Flush or Stop wakes it. A wakeup is never lost:
// the drain sets sleeping before it looks at the ring a last time, and a
// Record publishes its event before it looks at sleeping (both
// sequentially consistent).
func (t *telemetry) run() {
	defer t.wg.Done()
	defer close(t.exited)
	for {
		closed := t.closed.Load()
		t.drainReady()
		t.settle()
		if closed {
			return // every event published before Stop is delivered
		}
		t.sleeping.Store(true)
		if t.ring.ready(t.done.Load()) || t.closed.Load() || (t.nwaiters.Load() > 0 && t.anySatisfied()) {
			t.sleeping.Store(false)
			continue
		}
		<-t.wake
	}
}

// drainReady delivers, in order, the events published from the ring's
// head on, up to the first slot not published yet. Consumer only.
func (t *telemetry) drainReady() {
	r := &t.ring
	for pos := t.done.Load(); ; pos++ {
		s := &r.slots[pos&r.mask]
		if s.seq.Load() != pos+1 {
			return
		}
		if t.dropped.Load() != t.reported.Load() && t.dropPos.Load() <= pos {
			t.reportDrops()
		}
		if sampled(&s.ev) {
			t.deliverTimed(s.ctx, &s.ev)
		} else {
			t.deliver(s.ctx, &s.ev)
		}
		s.ctx, s.ev = nil, caudal.Event{} // hold nothing of the run
		s.seq.Store(pos + r.size)
		t.done.Store(pos + 1)
		if t.stalled.Load() {
			t.stalled.Store(false)
		}
		if (pos+1)&(t.quarter-1) == 0 && t.roomWaiters.Load() > 0 {
			t.signalRoom()
		}
	}
}

// settle reports any drop not reported yet and releases the Flush calls
// now satisfied. Consumer only.
func (t *telemetry) settle() {
	if t.dropped.Load() != t.reported.Load() {
		t.reportDrops()
	}
	if t.roomWaiters.Load() > 0 {
		t.signalRoom()
	}
	if t.nwaiters.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiters = slices.DeleteFunc(t.waiters, func(w *flushWaiter) bool {
		if t.satisfied(w) {
			close(w.ch)
			return true
		}
		return false
	})
	t.nwaiters.Store(int32(len(t.waiters)))
}

// anySatisfied reports whether a Flush waits for nothing more.
func (t *telemetry) anySatisfied() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.ContainsFunc(t.waiters, t.satisfied)
}

// reportDrops delivers one EventDropped for the drops since the last one.
// Consumer only.
func (t *telemetry) reportDrops() {
	t.dropPos.Store(noDrop)
	d := t.dropped.Load()
	n := d - t.reported.Load()
	t.reported.Store(d)
	t.deliver(context.Background(), &caudal.Event{Kind: caudal.EventDropped, Time: time.Now(), Dropped: int64(n)})
}

// deliverTimed is deliver, timed: once the sinks' mean cost is below
// drainAbove, delivery moves back to the recording goroutines. Drain only.
func (t *telemetry) deliverTimed(ctx context.Context, e *caudal.Event) {
	start := time.Now()
	t.deliver(ctx, e)
	if t.learn(time.Since(start)) < drainAbove && !t.fixedMode {
		t.direct.Store(true)
	}
}

// deliver hands e to the sinks, containing and counting a panic.
func (t *telemetry) deliver(ctx context.Context, e *caudal.Event) {
	defer func() {
		if recover() != nil {
			t.panics.Add(1)
		}
	}()
	t.next.Record(ctx, e)
}

// drainLate delivers what the ring holds once the drain goroutine has
// exited (it waits for that).
func (t *telemetry) drainLate() {
	<-t.exited
	t.lateMu.Lock()
	defer t.lateMu.Unlock()
	t.drainReady()
	t.settle()
}

// recordLate delivers e synchronously after Stop, after what the ring
// still holds. As on the baseline, a sink's panic is not contained here:
// it reaches the step that recorded e.
func (t *telemetry) recordLate(ctx context.Context, e *caudal.Event) {
	<-t.exited
	t.lateMu.Lock()
	defer t.lateMu.Unlock()
	t.drainReady()
	t.settle()
	t.late.Add(1)
	t.next.Record(ctx, e)
}

func (t *telemetry) stats() TelemetryStats {
	late := t.late.Load()
	return TelemetryStats{
		Recorded:   t.ring.tail.Load() + late,
		Delivered:  t.done.Load() + late,
		Dropped:    t.dropped.Load(),
		SinkPanics: t.panics.Load(),
		Latency:    t.latency.snapshot(),
	}
}

// ring is a bounded multi-producer queue after Dmitry Vyukov's: a producer
// claims a position with a CAS on tail, copies its event into the
// position's slot and publishes it by storing the slot's sequence number;
// the one consumer delivers slots in position order. Claim order is each
// producer's program order, so the events of one goroutine stay in order.
type ring struct {
	slots []slot
	mask  uint64
	size  uint64
	_     [64]byte      // keep tail off the line of the fields read by all
	tail  atomic.Uint64 // next position to claim
	_     [56]byte
}

// slot holds one event. seq is pos+1 once the event at pos is published,
// and pos+size once the consumer has freed it for the next lap. ctx is
// kept for the sinks (they read values such as a trace span from it); it
// is cleared after delivery, as the event is.
type slot struct {
	seq atomic.Uint64
	ctx context.Context
	ev  caudal.Event
}

func (r *ring) init(size int) {
	r.size = uint64(size)
	r.mask = r.size - 1
	r.slots = make([]slot, size)
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
}

// put copies e and ctx into the ring; false when the ring is full.
func (r *ring) put(ctx context.Context, e *caudal.Event) bool {
	pos := r.tail.Load()
	for {
		s := &r.slots[pos&r.mask]
		switch d := int64(s.seq.Load() - pos); {
		case d == 0:
			if r.tail.CompareAndSwap(pos, pos+1) {
				s.ctx = ctx
				s.ev = *e
				s.seq.Store(pos + 1)
				return true
			}
			pos = r.tail.Load()
		case d < 0: // the slot still holds the event of the lap before
			return false
		default: // another producer claimed pos
			pos = r.tail.Load()
		}
	}
}

// ready reports whether the event at pos is published.
func (r *ring) ready(pos uint64) bool { return r.slots[pos&r.mask].seq.Load() == pos+1 }

// histogram is the lock-free form of [Histogram].
type histogram struct {
	bounds []time.Duration
	counts []atomic.Uint64 // len(bounds)+1
	pow2   bool            // bounds are the default ones: no search
}

func (h *histogram) init(bounds []time.Duration) {
	h.bounds = bounds
	h.counts = make([]atomic.Uint64, len(bounds)+1)
	h.pow2 = slices.Equal(bounds, TelemetryConfig{}.latencyBuckets())
}

// observe counts d in its bucket: the first whose bound is >= d.
func (h *histogram) observe(d time.Duration) {
	if h.pow2 {
		// The default bounds, 2^i µs: the bucket is ⌈log2(d/1µs)⌉.
		i := 0
		if d > 0 {
			i = min(bits.Len64(uint64(d-1)/uint64(time.Microsecond)), len(h.bounds))
		}
		h.counts[i].Add(1)
		return
	}
	lo, hi := 0, len(h.bounds)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if h.bounds[m] < d {
			lo = m + 1
		} else {
			hi = m
		}
	}
	h.counts[lo].Add(1)
}

func (h *histogram) snapshot() Histogram {
	c := make([]uint64, len(h.counts))
	for i := range h.counts {
		c[i] = h.counts[i].Load()
	}
	return Histogram{Bounds: slices.Clone(h.bounds), Counts: c}
}
