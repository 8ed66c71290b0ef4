// Package benchmarks compares Caudal with the Go libraries closest to it, on the
// same work, in one process and one run: failsafe-go (resilience policies),
// sony/gobreaker v2 (circuit breaker) and cloudwego/eino compose (chains and
// parallel fan-out). It is a separate module so that the core module keeps
// depending on the standard library only; it holds benchmarks and no API.
//
// The benchmarks are named by dimension, with the library as a sub-benchmark
// key, so that benchstat can put the libraries side by side:
//
//   - BenchmarkPolicies/lib=caudal|failsafe|failsafe-no-cb: retry (3 retries),
//     timeout (1s) and fallback around one call, success path; failsafe also
//     with a circuit breaker, which Caudal does not have yet (failsafe-no-cb is
//     the like-for-like row).
//   - BenchmarkBreaker/lib=gobreaker: a closed breaker's Execute; no Caudal row
//     until Caudal has a breaker.
//   - BenchmarkChain/lib=caudal|eino/steps=3|10: a sequence of N steps, each
//     incrementing an int.
//   - BenchmarkParallel/lib=caudal|eino/branches=5: fan-out of one int to five
//     incrementing branches, then a join step that sums their outputs.
//
// Every library wraps the same //go:noinline work function; each benchmark
// checks its result once, outside the timed loop, so a broken setup fails.
//
// Run the full comparison from the repository root with
//
//	make bench-peers
//
// which runs ./run.sh here: ten alternating -count=1 passes of every
// benchmark (so that machine drift hits every library alike), benchstat over
// the ten samples, and a regenerated RESULTS.md with the benchstat table and
// the caudal/peer ratios. A quick check that everything builds and runs:
//
//	cd benchmarks && go test -run=. -bench=. -benchtime=1x ./...
package benchmarks
