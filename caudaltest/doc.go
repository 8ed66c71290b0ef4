// Package caudaltest helps users test code built on caudal: a [Recorder]
// sink that keeps every event for assertions, a [Script] agent that
// replays canned replies and counts its calls, and [Runtime], a fake
// [caudal.Runtime] with a manual clock that runs an executor
// deterministically.
//
// # Deterministic runs
//
// [NewRuntime](seed) returns a runtime with a virtual clock, starting at
// 2026-01-01T00:00:00Z, and a cooperative scheduler that runs one
// goroutine of the run at a time; its random draws (backoff jitter) come
// from seed. Install it with [caudal.WithRuntime] and let agents wait
// only through it — rt.Sleep(ctx, d) to simulate work that takes d,
// rt.Sleep(ctx, time.Hour) to wait for a timeout or a cancellation. The
// same pipeline on the same input and seed then runs identically every
// time, down to event timestamps, latencies and retry delays, and a test
// of hours of timeouts and backoff finishes at once. A Runtime drives one
// execution at a time.
package caudaltest
