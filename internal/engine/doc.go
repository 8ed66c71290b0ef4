// Package engine holds the seams of the executor: what the packages around
// the core (the optimization layer, the runner) install in it without users
// seeing them. Executor-wide: event recording ([Recorder]) and the
// allocation of per-execution objects with release ([Allocator]). Per step,
// swappable at run time through a [Slot] ([Strategy]): state isolation with
// copy-on-write forks ([Isolation]), a concurrency limiter told each
// branch's latency and error ([Limiter]), a guard around agent calls
// ([Guard]), an error classifier ([Classifier]), a flight group for
// concurrent cache misses ([Flight]), cache-key derivation ([Keyer]) and
// result sharing ([Sharer]). A [Tuner] sees every graph an executor runs.
//
// Each seam is a small interface with a baseline implementation, chosen when
// the executor is built, so the hot path never branches on configuration;
// [Install] is the hook through which the core lets this module's packages
// replace them. The baselines are deliberately plain — they are what the
// optimization components are measured against.
package engine
