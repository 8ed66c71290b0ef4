package optimize

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"time"
)

// Config chooses the components of the optimization layer and their
// knobs. The zero Config turns every component off: an executor built with
// it is the baseline. A knob left at its zero value takes the default its
// doc states; [Config.Validate] rejects the values no component can work
// with. Config is plain data: copy it, compare it, encode it as JSON.
type Config struct {
	ObjectPool              ObjectPoolConfig     `json:"object_pool"`
	ContextManager          ContextManagerConfig `json:"context_manager"`
	Telemetry               TelemetryConfig      `json:"telemetry"`
	AdaptiveResourceManager AdaptiveConfig       `json:"adaptive_resource_manager"`
	CacheOptimization       CacheConfig          `json:"cache_optimization"`
	ErrorHandling           ErrorHandlingConfig  `json:"error_handling"`
	CircuitBreaker          CircuitBreakerConfig `json:"circuit_breaker"`
	AutomaticOptimization   AutoConfig           `json:"automatic_optimization"`
}

// ObjectPoolConfig configures the object pool: the executor's
// per-execution internals (event records, attempt frames, key buffers) are
// recycled through pools instead of allocated afresh, and handed back once
// the execution no longer uses them. What a caller keeps — results,
// outputs, metadata, snapshots — is never pooled. It is for
// allocation-heavy executes: many steps, retries, fallbacks, events.
type ObjectPoolConfig struct {
	Enabled bool `json:"enabled"`
}

// ContextManagerConfig configures the context manager: parallel branches,
// loop iterations, map items and retried attempts get an O(1)
// copy-on-write overlay of the run's state instead of a deep copy, and a
// branch merges back only the keys it wrote instead of a diff of the whole
// tree. A nested value a child reads is copied on its first read, so the
// child can never mutate its parent through it. It is for large states
// under fan-out.
type ContextManagerConfig struct {
	Enabled bool `json:"enabled"`
}

// TelemetryConfig configures telemetry: the executor's events are copied
// into a bounded ring in O(1), without locks, on the executing goroutine,
// and a goroutine the executor owns delivers them to the sinks, in order
// per run. While the sinks are cheaper than that hand-off (a counter, a
// disabled log level), events go to them directly, as on the baseline;
// the choice follows a sampled mean of the sinks' cost. A step's latency
// goes into a fixed-bucket histogram as its finished event is recorded.
// When the ring is full, recording waits for the drain as long as the
// drain makes progress; when the drain has delivered nothing for 50 ms (a
// sink blocks) an event that finds the ring full is dropped and counted;
// the count is delivered as a [caudal.EventDropped] event and read with
// [StatsOf]. A sink's panic on the drain is contained and counted: it no
// longer fails the step. The executor's Flush waits for the ring to drain
// and Close flushes it. It is for executions whose sinks are slow (a JSON
// log, a span exporter).
type TelemetryConfig struct {
	Enabled bool `json:"enabled"`
	// BufferSize is the ring's capacity in events, rounded up to a power
	// of two (at least 2); default 8192.
	BufferSize int `json:"buffer_size,omitempty"`
	// LatencyBuckets are the upper bounds of the latency histogram's
	// buckets, ascending; a last bucket holds what exceeds them. Default:
	// powers of two from 1 µs to about 1 min.
	LatencyBuckets []time.Duration `json:"latency_buckets,omitempty"`
}

// AdaptiveConfig configures the adaptive resource manager: the number of
// branches of a parallel step, or items of a concurrent map (a map with a
// concurrency above 1), that run at once follows a limit learned per step
// instead of the step's fixed [caudal.WithConcurrency]. Memory pressure,
// read from runtime/metrics on a ticker (never per call), lowers every
// limit. It is for fan-out that waits on I/O.
//
// The core consults it only for fan-outs with a configured concurrency
// (parallel steps and routers with WithConcurrency, maps with
// WithConcurrency(n > 1)); never for a sequential map, nor for a parallel
// step or router without WithConcurrency, whose branches all run at once
// (they may wait on one another). The limit is per step and kept across the
// executions of the executor (what one learned, the next starts from); the
// executions running one step at the same time share it. It moves in
// [MinLimit, MaxLimit] (with RespectStepLimits, below the step's own
// concurrency):
//
//   - A round is as many releases as the limit (at least 8). It is
//     limited when at least 3/4 of its releases found every slot taken:
//     the limit held the work back (RFC 7661's check for TCP). A limit
//     that holds nothing back — a CPU-bound map, where only GOMAXPROCS
//     items really run — is neither raised nor cut for latency.
//   - Slow start: each limited round raises the limit by the releases
//     that found it full (doubling it).
//   - A cut: a latency above Tolerance × the minimum latency after a
//     limited round, or a failed branch or item (not a cancelled context,
//     nor a pause), multiplies the limit by Backoff; the cut that ends
//     slow start halves it at least. Only a branch or item that started
//     after the last cut may cut again (at most one cut per round, as
//     TCP's window): this slow path reads the clock.
//   - After a cut, each limited round without one raises the limit:
//     halfway to the limit of the last cut, then holding one below it for
//     8 rounds (16, 32… after probes that failed there) before probing it
//     again, then past it by 1, 2, 4… per round.
//   - The minimum latency is the least seen; every 16 rounds it moves
//     halfway toward the least of those rounds, so it follows a workload
//     that got slower.
//   - Under memory pressure every limit in force is halved (to at least
//     MinLimit) and none grows; the learned limits come back when the
//     pressure goes.
//
// The core starts twice the limit's number of workers for a fan-out (4 ×
// in slow start while the limit holds work back; never more than the
// branches or items, nor than the ceiling); the workers over the limit
// wait for a slot.
type AdaptiveConfig struct {
	Enabled bool `json:"enabled"`
	// InitialLimit is where a step's limit starts; default the step's own
	// concurrency (its WithConcurrency), so that no step starts below the
	// baseline.
	InitialLimit int `json:"initial_limit,omitempty"`
	// MinLimit is the least a limit falls to; default 1.
	MinLimit int `json:"min_limit,omitempty"`
	// MaxLimit is the most a limit rises to; default 64. (A limit that
	// holds work back gets twice its workers; past about 128 goroutines
	// waiting at once, the runtime's own bookkeeping of them allocates per
	// execute, and 64 items waiting on I/O at once already cut a fixed
	// limit of 10's time by five.)
	MaxLimit int `json:"max_limit,omitempty"`
	// RespectStepLimits keeps each step's WithConcurrency as the most its
	// limit may reach; without it the limit replaces it.
	RespectStepLimits bool `json:"respect_step_limits,omitempty"`
	// Tolerance is how much slower than the fastest recent branch or item
	// one may be before the limit is cut, as a ratio; default 1.5.
	Tolerance float64 `json:"tolerance,omitempty"`
	// Backoff is the factor a cut multiplies the limit by, in (0, 1);
	// default 0.9.
	Backoff float64 `json:"backoff,omitempty"`
	// MemoryLimit is the heap size, in bytes, against which pressure is
	// judged; default the runtime's soft memory limit (GOMEMLIMIT) when
	// one is set. Without either, memory pressure is not watched.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// PressureThreshold is the share of MemoryLimit above which memory is
	// under pressure, in (0, 1]; default 0.85.
	PressureThreshold float64 `json:"pressure_threshold,omitempty"`
	// PressureInterval is how often memory is read; default 100 ms.
	PressureInterval time.Duration `json:"pressure_interval,omitempty"`
}

// CacheConfig configures the cache optimization of cache steps
// ([caudal.Cached]): keys are a fast hash of a canonical binary encoding of
// the step's fingerprint, input and selected state (no JSON, no SHA-256),
// with the encoding itself kept in the key so that two inputs never share
// an entry; a sharded in-process cache with a TTL stands in front of each
// step's backend and serves hits without copying what a caller cannot
// change; and concurrent executions that miss on one key run the step
// once. A step with its own key function ([caudal.WithCacheKey]) keeps it.
// It is for repeated inputs.
type CacheConfig struct {
	Enabled bool `json:"enabled"`
	// Shards is the number of shards of the in-process cache, rounded up
	// to a power of two; default 16.
	Shards int `json:"shards,omitempty"`
	// Capacity is the most entries the in-process cache holds, over all
	// steps of the executor; default 4096. The least recently used entry
	// of a full shard makes room.
	Capacity int `json:"capacity,omitempty"`
	// TTL is the longest an entry stays in the in-process cache; default
	// 1 min. An entry never outlives the step's own TTL
	// ([caudal.WithCacheTTL]) either, counted from when the in-process
	// cache took it.
	TTL time.Duration `json:"ttl,omitempty"`
	// WithoutFlight lets concurrent misses on one key each run the step.
	WithoutFlight bool `json:"without_flight,omitempty"`
}

// ErrorHandlingConfig configures error handling: every failed attempt of
// an agent step is classified — transient, permanent, rate-limited (with
// the retry-after it carries) or timeout — and only what another attempt
// can mend is retried. The class is the step's [caudal.MetaErrorClass] and
// each failed attempt's [caudal.Event].Class. Rules decide first, in
// order; then the built-in ones:
//
//   - an open circuit ([caudal.ErrCircuitOpen]): "circuit_open", not
//     retried;
//   - an error marked [caudal.Permanent] (a Permanent() bool method):
//     "permanent";
//   - an error with a retry-after hint ([caudal.RetryAfter], a
//     RetryAfter() time.Duration method, or a Retry-After header on an
//     HTTP 429 or 503, through a Header() http.Header method, as
//     delta-seconds or an HTTP-date): "rate_limited", retried after the
//     hint (a negative RetryAfter counts as none; a header that does not
//     parse, or names a time past, is no hint);
//   - an error exposing an HTTP status code (a StatusCode() int or
//     HTTPStatusCode() int method): 429 "rate_limited"; 408 and 504
//     "timeout"; 500, 502, 503 "transient"; any other 4xx "permanent";
//   - a deadline ([context.DeadlineExceeded], [caudal.ErrTimeout], an
//     error with a Timeout() bool method that returns true): "timeout",
//     retried;
//   - everything else: "transient", retried.
//
// It is for steps whose agents fail in ways another attempt cannot mend
// (a bad request, a refused key): those fail at once instead of after every
// retry and backoff, with the same error and the same usage.
type ErrorHandlingConfig struct {
	Enabled bool `json:"enabled"`
	// Rules are checked in order before the built-in ones; the first that
	// matches decides. A rule's matcher is code, not data: rules are not
	// part of the JSON form.
	Rules []ErrorRule `json:"-"`
}

// CircuitBreakerConfig configures the circuit breaker: one breaker per
// agent, shared by every step of the executor that calls that agent. While
// it is closed a call costs an atomic load. It opens after
// ConsecutiveFailures failures in a row, or (with FailureRate set) when
// that share of the last Window calls failed; a failure is an attempt
// whose error error handling's rules class as transient, timeout or
// rate-limited (a permanent error says the agent is up; a cancelled
// caller's context says nothing). While open, a call fails at once with an
// error matching [caudal.ErrCircuitOpen], which the step never retries: it
// fails fast, or goes straight to its fallback. After ProbeInterval, or at
// every ProbeEvery-th call while open, whichever comes first, the breaker is
// half-open and lets probe calls through: HalfOpenProbes successes close
// it, a failure opens it again. Every change of state is a
// [caudal.EventCircuit] event. It is for agents that go down: an outage
// costs a fast failure per call instead of a timeout.
type CircuitBreakerConfig struct {
	Enabled bool `json:"enabled"`
	// ConsecutiveFailures opens the breaker after that many failures in a
	// row; default 3.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// FailureRate, when > 0, also opens the breaker when at least that
	// share of a window of Window calls failed, in (0, 1]. Windows follow
	// one another (the calls are counted afresh every Window calls, and
	// when the breaker closes), and the breaker opens as soon as a
	// window's failures reach FailureRate × Window (rounded up), whatever
	// the rest of the window brings. Default 0: off (counting every call
	// costs an atomic add on the success path).
	FailureRate float64 `json:"failure_rate,omitempty"`
	// Window is the number of calls FailureRate is judged over; default
	// 20. No fewer than FailureRate × Window failures open the breaker, so
	// a handful of calls never does.
	Window int `json:"window,omitempty"`
	// ProbeInterval is how long the breaker stays open before it lets a
	// probe through; default 1 s.
	ProbeInterval time.Duration `json:"probe_interval,omitempty"`
	// ProbeEvery, when > 0, makes one call in that many a probe while the
	// breaker is open, even before ProbeInterval: the call after
	// ProbeEvery-1 refusals goes through, so that under steady traffic the
	// end of an outage is noticed within ProbeEvery calls. Default 20; -1
	// turns it off (time alone).
	ProbeEvery int `json:"probe_every,omitempty"`
	// HalfOpenProbes is the number of successful probes that close the
	// breaker; default 1. Calls beyond the probes in flight are refused
	// while it is half-open.
	HalfOpenProbes int `json:"half_open_probes,omitempty"`
}

// AutoConfig configures the automatic optimization: counters per step —
// atomic adds on paths that already do the work they count, no locks, no
// clock reads — feed a tuner on a ticker the executor owns (woken early when
// a step's pattern reaches its threshold, so that a fresh executor does not
// run a whole period without what it calls for), which switches components
// on for a step only when that step shows their pattern, and off again
// when it has not for a while:
//
//   - copy-on-write state (the context manager) for a step that forks a
//     large state (parallel branches, loop iterations, map items);
//   - the cache optimization's in-process cache and flight group for a
//     cache step that hits a key it hit before, or looks a key up while
//     its lookup is not answered yet (concurrent identical misses) — a
//     key that misses, then hits once, is neither: both would only cost
//     it (its fast keys and shared results are a cache step's from its
//     first execution: keys that changed later would lose what the step's
//     backend holds);
//   - error handling for a step whose failures its rules class as
//     permanent;
//   - the circuit breaker for a step whose agent times out repeatedly;
//   - the adaptive limit for a fan-out its cap holds back (more branches or
//     items than its concurrency). A fan-out shows this pattern itself, and
//     learns only while it runs, so such a fan-out takes the adaptive limit
//     from the first; the limit itself tells waiting items from CPU-bound
//     ones (it grows only while the work waits).
//
// A step is its definition at its path: the builds of a pipeline built
// again, per request say, share their counters and switch, and a new build
// starts with what the earlier ones were switched to; a step none of whose
// builds counted anything for Hold periods is forgotten.
//
// Each switch is a [caudal.EventTuned] event naming the step, the
// component and the counts that decided it. The executor-wide components —
// the object pool and telemetry — adapt on their own (the pool acts only
// when events are built; telemetry delivers directly while its sinks are
// cheap) and are on with Auto. A component whose own section is enabled is
// on for every step from the start and left alone by the tuner.
type AutoConfig struct {
	Enabled bool `json:"enabled"`
	// Interval is the tuner's period; default 1 s. A pattern that reaches
	// its threshold within a period switches its component on at once;
	// the period paces the rest: counts start again, components go off.
	// (A short period costs more than its ticks: on this project's 2-core
	// machine, a 25 ms ticker anywhere in the process doubled the time of
	// about one CPU-bound fan-out in ten.)
	Interval time.Duration `json:"interval,omitempty"`
	// Hold is how many periods a step must go without its pattern before
	// a component is switched off again; default 10.
	Hold int `json:"hold,omitempty"`
}

// Defaults of the knobs.
const (
	defaultBufferSize        = 8192
	defaultMinLimit          = 1
	defaultMaxLimit          = 64
	defaultTolerance         = 1.5
	defaultBackoff           = 0.9
	defaultPressureThreshold = 0.85
	defaultPressureInterval  = 100 * time.Millisecond
	defaultShards            = 16
	defaultCapacity          = 4096
	defaultCacheTTL          = time.Minute
	defaultConsecutive       = 3
	defaultWindow            = 20
	defaultProbeInterval     = time.Second
	defaultProbeEvery        = 20
	defaultHalfOpenProbes    = 1
	defaultTunerInterval     = time.Second
	defaultHold              = 10

	maxBufferSize = 1 << 24
	maxShards     = 1 << 12
	maxWindow     = 1 << 16
)

// Validate reports every knob no component can work with, each named by
// its field path (as "Telemetry.BufferSize"), joined. Knobs of a disabled
// component are checked too: enabling it later must not surprise.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("optimize: %s %s", field, fmt.Sprintf(format, args...)))
	}
	t := c.Telemetry
	if t.BufferSize < 0 || t.BufferSize > maxBufferSize {
		bad("Telemetry.BufferSize", "is %d; want 0 (default) to %d", t.BufferSize, maxBufferSize)
	}
	for i, b := range t.LatencyBuckets {
		if b <= 0 {
			bad(fmt.Sprintf("Telemetry.LatencyBuckets[%d]", i), "is %v; want > 0", b)
		} else if i > 0 && b <= t.LatencyBuckets[i-1] {
			bad(fmt.Sprintf("Telemetry.LatencyBuckets[%d]", i), "is %v, not above the bucket before (%v); want ascending", b, t.LatencyBuckets[i-1])
		}
	}
	a := c.AdaptiveResourceManager
	for _, k := range []struct {
		field string
		v     int
	}{{"InitialLimit", a.InitialLimit}, {"MinLimit", a.MinLimit}, {"MaxLimit", a.MaxLimit}} {
		if k.v < 0 {
			bad("AdaptiveResourceManager."+k.field, "is %d; want >= 1, or 0 for the default", k.v)
		}
	}
	if lo, hi := a.minLimit(), a.maxLimit(); a.MinLimit >= 0 && a.MaxLimit >= 0 && lo > hi {
		bad("AdaptiveResourceManager.MinLimit", "(%d) is above MaxLimit (%d)", lo, hi)
	} else if a.InitialLimit > 0 && a.MinLimit >= 0 && a.MaxLimit >= 0 && (a.InitialLimit < lo || a.InitialLimit > hi) {
		bad("AdaptiveResourceManager.InitialLimit", "(%d) is outside [MinLimit, MaxLimit] = [%d, %d]", a.InitialLimit, lo, hi)
	}
	if a.Tolerance != 0 && (math.IsNaN(a.Tolerance) || a.Tolerance <= 1 || math.IsInf(a.Tolerance, 0)) {
		bad("AdaptiveResourceManager.Tolerance", "is %v; want a ratio > 1, or 0 for the default", a.Tolerance)
	}
	if a.Backoff != 0 && (math.IsNaN(a.Backoff) || a.Backoff <= 0 || a.Backoff >= 1) {
		bad("AdaptiveResourceManager.Backoff", "is %v; want a factor in (0, 1), or 0 for the default", a.Backoff)
	}
	if a.MemoryLimit < 0 {
		bad("AdaptiveResourceManager.MemoryLimit", "is %d; want bytes > 0, or 0 for GOMEMLIMIT", a.MemoryLimit)
	}
	if a.PressureThreshold != 0 && (math.IsNaN(a.PressureThreshold) || a.PressureThreshold <= 0 || a.PressureThreshold > 1) {
		bad("AdaptiveResourceManager.PressureThreshold", "is %v; want a share in (0, 1], or 0 for the default", a.PressureThreshold)
	}
	if a.PressureInterval < 0 || (a.PressureInterval > 0 && a.PressureInterval < time.Millisecond) {
		bad("AdaptiveResourceManager.PressureInterval", "is %v; want >= 1ms, or 0 for the default", a.PressureInterval)
	}
	if (a.PressureThreshold != 0 || a.PressureInterval != 0) && a.MemoryLimit == 0 && softMemoryLimit() == 0 {
		bad("AdaptiveResourceManager.PressureThreshold", "is set, but there is no memory limit to judge pressure against: set MemoryLimit or GOMEMLIMIT")
	}
	k := c.CacheOptimization
	if k.Shards < 0 || k.Shards > maxShards {
		bad("CacheOptimization.Shards", "is %d; want 0 (default) to %d", k.Shards, maxShards)
	}
	if k.Capacity < 0 {
		bad("CacheOptimization.Capacity", "is %d; want >= 1, or 0 for the default", k.Capacity)
	} else if k.Capacity > 0 && k.Capacity < k.shards() {
		bad("CacheOptimization.Capacity", "(%d) is below Shards (%d): every shard needs room for an entry", k.Capacity, k.shards())
	}
	if k.TTL < 0 {
		bad("CacheOptimization.TTL", "is %v; want > 0, or 0 for the default", k.TTL)
	}
	for i, r := range c.ErrorHandling.Rules {
		if err := r.check(); err != nil {
			bad(fmt.Sprintf("ErrorHandling.Rules[%d]", i), "%v", err)
		}
	}
	b := c.CircuitBreaker
	if b.ConsecutiveFailures < 0 {
		bad("CircuitBreaker.ConsecutiveFailures", "is %d; want >= 1, or 0 for the default", b.ConsecutiveFailures)
	}
	if b.FailureRate != 0 && (math.IsNaN(b.FailureRate) || b.FailureRate < 0 || b.FailureRate > 1) {
		bad("CircuitBreaker.FailureRate", "is %v; want a share in (0, 1], or 0 for off", b.FailureRate)
	}
	if b.Window < 0 || b.Window > maxWindow {
		bad("CircuitBreaker.Window", "is %d; want 1 to %d calls, or 0 for the default", b.Window, maxWindow)
	}
	if b.ProbeInterval < 0 {
		bad("CircuitBreaker.ProbeInterval", "is %v; want > 0, or 0 for the default", b.ProbeInterval)
	}
	if b.ProbeEvery < -1 {
		bad("CircuitBreaker.ProbeEvery", "is %d; want >= 1, 0 for the default or -1 for off", b.ProbeEvery)
	}
	if b.HalfOpenProbes < 0 {
		bad("CircuitBreaker.HalfOpenProbes", "is %d; want >= 1, or 0 for the default", b.HalfOpenProbes)
	}
	t2 := c.AutomaticOptimization
	if t2.Interval < 0 || (t2.Interval > 0 && t2.Interval < time.Millisecond) {
		bad("AutomaticOptimization.Interval", "is %v; want >= 1ms, or 0 for the default", t2.Interval)
	}
	if t2.Hold < 0 {
		bad("AutomaticOptimization.Hold", "is %d; want >= 1 periods, or 0 for the default", t2.Hold)
	}
	return errors.Join(errs...)
}

// Enabled reports whether any component is on.
func (c Config) Enabled() bool {
	return c.ObjectPool.Enabled || c.ContextManager.Enabled || c.Telemetry.Enabled ||
		c.AdaptiveResourceManager.Enabled || c.CacheOptimization.Enabled ||
		c.ErrorHandling.Enabled || c.CircuitBreaker.Enabled || c.AutomaticOptimization.Enabled
}

// Components returns the names of the components c turns on, in the order
// of [Config]'s fields, in kebab-case (the names `caudal bench` uses).
func (c Config) Components() []string {
	var names []string
	for _, on := range []struct {
		name string
		on   bool
	}{
		{"object-pool", c.ObjectPool.Enabled},
		{"context-manager", c.ContextManager.Enabled},
		{"telemetry", c.Telemetry.Enabled},
		{"adaptive-resource-manager", c.AdaptiveResourceManager.Enabled},
		{"cache-optimization", c.CacheOptimization.Enabled},
		{"error-handling", c.ErrorHandling.Enabled},
		{"circuit-breaker", c.CircuitBreaker.Enabled},
		{"automatic-optimization", c.AutomaticOptimization.Enabled},
	} {
		if on.on {
			names = append(names, on.name)
		}
	}
	return names
}

func (t TelemetryConfig) bufferSize() int {
	n := t.BufferSize
	if n == 0 {
		n = defaultBufferSize
	}
	return ceilPow2(n)
}

func (t TelemetryConfig) latencyBuckets() []time.Duration {
	if len(t.LatencyBuckets) > 0 {
		return slices.Clone(t.LatencyBuckets)
	}
	var b []time.Duration
	for d := time.Microsecond; d <= 64*time.Second; d *= 2 {
		b = append(b, d)
	}
	return b
}

func (a AdaptiveConfig) minLimit() int { return orDefault(a.MinLimit, defaultMinLimit) }
func (a AdaptiveConfig) maxLimit() int { return orDefault(a.MaxLimit, defaultMaxLimit) }

func (a AdaptiveConfig) tolerance() float64 {
	if a.Tolerance == 0 {
		return defaultTolerance
	}
	return a.Tolerance
}

func (a AdaptiveConfig) backoff() float64 {
	if a.Backoff == 0 {
		return defaultBackoff
	}
	return a.Backoff
}

func (a AdaptiveConfig) pressureThreshold() float64 {
	if a.PressureThreshold == 0 {
		return defaultPressureThreshold
	}
	return a.PressureThreshold
}

func (a AdaptiveConfig) pressureInterval() time.Duration {
	if a.PressureInterval == 0 {
		return defaultPressureInterval
	}
	return a.PressureInterval
}

// memoryLimit is the limit pressure is judged against; 0: none.
func (a AdaptiveConfig) memoryLimit() int64 {
	if a.MemoryLimit > 0 {
		return a.MemoryLimit
	}
	return softMemoryLimit()
}

// softMemoryLimit returns the runtime's soft memory limit, or 0 when none
// is set.
func softMemoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}

func (k CacheConfig) shards() int   { return ceilPow2(orDefault(k.Shards, defaultShards)) }
func (k CacheConfig) capacity() int { return orDefault(k.Capacity, defaultCapacity) }

func (k CacheConfig) ttl() time.Duration {
	if k.TTL == 0 {
		return defaultCacheTTL
	}
	return k.TTL
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// ceilPow2 returns the least power of two >= n (n >= 1).
func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func (b CircuitBreakerConfig) consecutiveFailures() int {
	return orDefault(b.ConsecutiveFailures, defaultConsecutive)
}
func (b CircuitBreakerConfig) window() int { return orDefault(b.Window, defaultWindow) }
func (b CircuitBreakerConfig) halfOpenProbes() int {
	return orDefault(b.HalfOpenProbes, defaultHalfOpenProbes)
}

func (b CircuitBreakerConfig) probeInterval() time.Duration {
	if b.ProbeInterval == 0 {
		return defaultProbeInterval
	}
	return b.ProbeInterval
}

// probeEvery is the refused calls that let a probe through; 0: never.
func (b CircuitBreakerConfig) probeEvery() int {
	switch b.ProbeEvery {
	case 0:
		return defaultProbeEvery
	case -1:
		return 0
	}
	return b.ProbeEvery
}

func (a AutoConfig) interval() time.Duration {
	if a.Interval == 0 {
		return defaultTunerInterval
	}
	return a.Interval
}

func (a AutoConfig) hold() int { return orDefault(a.Hold, defaultHold) }
