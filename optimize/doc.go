// Package optimize is Caudal's optimization layer: components that make an
// executor faster on the workloads they are for, and cost nothing where
// they are not, because a component that is off is never consulted.
//
// # Use
//
// Choose the components with a [Config] — by hand, or from a preset such
// as [HighAllocation] or [All] — and build an executor with it:
//
//	ex, err := caudal.New(caudal.WithSink(sink), optimize.Use(optimize.LargeContext()))
//
// Every executor built so gets components of its own; [StatsOf] reads
// their figures. Call the executor's Close when done: it flushes and stops
// the components' background work (telemetry's drain, the memory ticker).
//
// # Components
//
//   - ObjectPool ([ObjectPoolConfig]): recycles the executor's event
//     records through pools. Workload: allocation-heavy executes.
//   - ContextManager ([ContextManagerConfig]): copy-on-write state for
//     branches, iterations, items and attempts. Workload: large state under
//     fan-out.
//   - Telemetry ([TelemetryConfig]): events recorded into a lock-free
//     bounded ring and delivered by a background goroutine. Workload: slow
//     sinks.
//   - AdaptiveResourceManager ([AdaptiveConfig]): a concurrency limit
//     learned per fan-out step, lowered under memory pressure. Workload:
//     I/O-bound maps.
//   - CacheOptimization ([CacheConfig]): fast keys, a sharded in-process
//     cache, shared immutable results and one run for concurrent identical
//     misses. Workload: repeated inputs.
//   - ErrorHandling ([ErrorHandlingConfig]): each failed attempt
//     classified (transient, permanent, rate-limited, timeout; rules of
//     one's own first), and only what another attempt can mend retried.
//     Workload: agents that fail for good.
//   - CircuitBreaker ([CircuitBreakerConfig]): a breaker per agent; while
//     open, calls fail at once or go straight to the fallback. Workload:
//     agents that go down.
//   - AutomaticOptimization ([AutoConfig], the [Auto] preset): per-step
//     counters and a tuner on a ticker that switch the components above
//     on for the steps that show their pattern, and off again; every
//     decision is a [caudal.EventTuned] event. Workload: all of the above,
//     for a user who does not know which it is.
//
// # Results do not change
//
// A component changes how fast an execution runs, never what it returns:
// outputs, errors, final state, usage and the events (in order per run)
// are those of the baseline, which the package's differential tests check
// for each component and for [All]. The exceptions are documented where
// they are: telemetry delivers events after the step that recorded them
// (call Flush to wait for them) and may drop them when its ring is full;
// the adaptive limit changes how many branches run at once, which only a
// pipeline whose results depend on timing can see; an in-process cache
// hit answers without asking the step's backend; error handling adds the
// class of each failure ([caudal.MetaErrorClass], [caudal.Event].Class) and
// makes no further attempt after an error it classes permanent (an HTTP
// 4xx, say) where the baseline retries it — one attempt's usage instead of
// every attempt's; an open circuit breaker refuses calls the baseline
// makes.
//
// # Measuring
//
// `caudal bench --suite designed --variant <component> --check` measures
// each component on its workload against the baseline, and on every other
// workload for its cost; `--variant optimized` is [All], `--variant auto`
// is [Auto], judged against the hand-picked component of each workload.
// `caudal advise` reads a recorded run and recommends a Config.
package optimize
