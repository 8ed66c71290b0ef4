package optimize

// The presets: a Config per kind of workload, each turning on the
// components that win there and nothing that would cost there. Each
// returns a fresh Config, which the caller may adjust before [Use].

// HighAllocation is for allocation-heavy executes — long sequences,
// retries, fallbacks, many events: the object pool.
func HighAllocation() Config {
	return Config{ObjectPool: ObjectPoolConfig{Enabled: true}}
}

// LargeContext is for runs whose state is large and that fan out (parallel
// branches, loops, maps over a big state): the context manager, and the
// object pool for the forks' events.
func LargeContext() Config {
	return Config{
		ObjectPool:     ObjectPoolConfig{Enabled: true},
		ContextManager: ContextManagerConfig{Enabled: true},
	}
}

// Batch is for throughput over many items — maps over collections whose
// items wait on I/O, repeated inputs: the adaptive resource manager, the
// cache optimization, the context manager for the items' state and the
// object pool.
func Batch() Config {
	return Config{
		ObjectPool:              ObjectPoolConfig{Enabled: true},
		ContextManager:          ContextManagerConfig{Enabled: true},
		AdaptiveResourceManager: AdaptiveConfig{Enabled: true},
		CacheOptimization:       CacheConfig{Enabled: true},
	}
}

// RealTime is for latency-sensitive executes with sinks attached: the
// telemetry moves event delivery off the executing goroutine, the cache
// optimization answers repeated inputs at once, and the object pool keeps
// the collector quiet.
func RealTime() Config {
	return Config{
		ObjectPool:        ObjectPoolConfig{Enabled: true},
		Telemetry:         TelemetryConfig{Enabled: true},
		CacheOptimization: CacheConfig{Enabled: true},
	}
}

// MemoryConstrained is for processes short of memory: the object pool and
// the context manager allocate less, the adaptive resource manager lowers
// fan-out under memory pressure (when a memory limit is known: GOMEMLIMIT,
// or AdaptiveResourceManager.MemoryLimit set on the result), and telemetry
// and the in-process cache are small.
func MemoryConstrained() Config {
	return Config{
		ObjectPool:              ObjectPoolConfig{Enabled: true},
		ContextManager:          ContextManagerConfig{Enabled: true},
		Telemetry:               TelemetryConfig{Enabled: true, BufferSize: 1024},
		AdaptiveResourceManager: AdaptiveConfig{Enabled: true, MaxLimit: 64},
		CacheOptimization:       CacheConfig{Enabled: true, Capacity: 256},
	}
}

// CPUIntensive is for steps that compute rather than wait: whatever saves
// work on the executing goroutine — the object pool, the context manager,
// the cache optimization (repeated inputs computed once) — and no
// background goroutine competing for the processors, so no telemetry and
// no adaptive limit (more concurrency than cores cannot help).
func CPUIntensive() Config {
	return Config{
		ObjectPool:        ObjectPoolConfig{Enabled: true},
		ContextManager:    ContextManagerConfig{Enabled: true},
		CacheOptimization: CacheConfig{Enabled: true},
	}
}

// All turns every component on for every step with its defaults — all but
// the automatic optimization, which would have nothing left to switch, and
// the circuit breaker, a policy rather than a speed-up (it changes what a
// call does during an outage, and costs a healthy call its atomic load;
// [Auto] arms it for the steps whose agents time out): the "optimized"
// executor of `caudal bench`.
func All() Config {
	return Config{
		ObjectPool:              ObjectPoolConfig{Enabled: true},
		ContextManager:          ContextManagerConfig{Enabled: true},
		Telemetry:               TelemetryConfig{Enabled: true},
		AdaptiveResourceManager: AdaptiveConfig{Enabled: true},
		CacheOptimization:       CacheConfig{Enabled: true},
		ErrorHandling:           ErrorHandlingConfig{Enabled: true},
	}
}

// Auto is for a user who does not know the workload: the executor-wide
// components that adapt on their own (the object pool, telemetry) and the
// automatic optimization, which switches the others on per step when the
// step shows their pattern ([AutoConfig]).
func Auto() Config {
	return Config{
		ObjectPool:            ObjectPoolConfig{Enabled: true},
		Telemetry:             TelemetryConfig{Enabled: true},
		AutomaticOptimization: AutoConfig{Enabled: true},
	}
}

// Preset returns the preset called name — the kebab-case names `caudal
// bench` uses: high-allocation, large-context, batch, real-time,
// memory-constrained, cpu-intensive, all, auto — and whether there is one.
func Preset(name string) (Config, bool) {
	switch name {
	case "high-allocation":
		return HighAllocation(), true
	case "large-context":
		return LargeContext(), true
	case "batch":
		return Batch(), true
	case "real-time":
		return RealTime(), true
	case "memory-constrained":
		return MemoryConstrained(), true
	case "cpu-intensive":
		return CPUIntensive(), true
	case "all":
		return All(), true
	case "auto":
		return Auto(), true
	}
	return Config{}, false
}

// Component returns the Config that turns on only the component called
// name, with its defaults — object-pool, context-manager, telemetry,
// adaptive-resource-manager, cache-optimization, error-handling,
// circuit-breaker — and whether there is one; automatic-optimization is
// the [Auto] preset.
func Component(name string) (Config, bool) {
	var c Config
	switch name {
	case "object-pool":
		c.ObjectPool.Enabled = true
	case "context-manager":
		c.ContextManager.Enabled = true
	case "telemetry":
		c.Telemetry.Enabled = true
	case "adaptive-resource-manager":
		c.AdaptiveResourceManager.Enabled = true
	case "cache-optimization":
		c.CacheOptimization.Enabled = true
	case "error-handling":
		c.ErrorHandling.Enabled = true
	case "circuit-breaker":
		c.CircuitBreaker.Enabled = true
	case "automatic-optimization":
		return Auto(), true
	default:
		return Config{}, false
	}
	return c, true
}
