package perf

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A spin is a fixed CPU cost that stands in for an agent's latency where a
// timer cannot: time.Sleep and timers wake no sooner than about a
// millisecond after they are set on Linux, so a "50 µs" sleep takes 1 ms.
// spinFor burns the CPU time instead, calibrated once per process.

// spinSink keeps the spin's result observable, so the compiler cannot drop
// the loop.
var spinSink atomic.Uint64

// spinWork runs n rounds of a xorshift generator: deterministic work with
// no memory traffic, the same on every call.
func spinWork(n int) uint64 {
	x := uint64(0x9e3779b97f4a7c15)
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// spinRounds is the calibration: spinWork rounds per nanosecond.
var spinRounds = sync.OnceValue(calibrateSpin)

// calibrateSpin times spinWork: it doubles the rounds until a run takes at
// least 2 ms, then keeps the fastest of five runs of that size (the least
// disturbed by preemption) and returns rounds per nanosecond.
func calibrateSpin() float64 {
	n := 1 << 10
	for {
		start := time.Now()
		spinSink.Store(spinWork(n))
		if time.Since(start) >= 2*time.Millisecond || n >= 1<<30 {
			break
		}
		n *= 2
	}
	best := time.Duration(1<<63 - 1)
	for range 5 {
		start := time.Now()
		spinSink.Store(spinWork(n))
		best = min(best, time.Since(start))
	}
	return float64(n) / float64(max(best, 1))
}

// spinFor burns about d of CPU time on the calling goroutine (longer in
// wall time when the CPU is shared). It never sleeps.
func spinFor(d time.Duration) {
	if d <= 0 {
		return
	}
	spinSink.Store(spinWork(max(int(float64(d)*spinRounds()), 1)))
}

// spinYielding burns about d of CPU time in slices of every, yielding the
// processor after each (runtime.Gosched), as a call that mixes work and
// waits lets other goroutines run: concurrent calls all make progress
// instead of running one after another per core.
func spinYielding(d, every time.Duration) {
	if d <= 0 {
		return
	}
	rate := spinRounds()
	total, step := max(int(float64(d)*rate), 1), max(int(float64(every)*rate), 1)
	var x uint64
	for done := 0; done < total; done += step {
		x ^= spinWork(min(step, total-done))
		runtime.Gosched()
	}
	spinSink.Store(x)
}
