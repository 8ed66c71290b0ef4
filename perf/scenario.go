package perf

import (
	"context"
	"fmt"
)

// The suites.
const (
	SuiteSeed     = "seed"
	SuiteDesigned = "designed"
	SuiteMatrix   = "matrix"
)

// The scenario IDs: the study's five, then DESIGN.md's additions.
const (
	ScenarioExecution      = "execution"
	ScenarioMemory         = "memory"
	ScenarioConcurrent     = "concurrent"
	ScenarioCache          = "cache"
	ScenarioContext        = "context"
	ScenarioError          = "error"
	ScenarioOutage         = "outage"
	ScenarioCacheMiss      = "cache-miss"
	ScenarioDownstream     = "downstream"
	ScenarioConcurrentCPU  = "concurrent-cpu"
	ScenarioBreakerSuccess = "breaker-success"
)

// ScenarioInfo describes a scenario for reports: its name as the study
// prints it, what it measures, and the target an optimization must reach.
type ScenarioInfo struct {
	ID   string
	Name string // e.g. "Execution Performance"
	// TargetPct is the improvement, in percent of the baseline on
	// TargetMetric, the component must show on this workload; a negative
	// value is the most it may cost instead (−3: at most 3 % slower). 0
	// with no TargetMaxCostNS: no target.
	TargetPct float64
	// TargetMaxCostNS, when positive, is the target instead of TargetPct:
	// the most the component may add to an execute, in nanoseconds.
	TargetMaxCostNS float64
	TargetMetric    string // the metric the target is on: [MetricMeanNS], [MetricAllocsPerOp] or [MetricBytesPerOp]
	Component       string // the optimization component whose workload this is (kebab-case)
	// Workload says what the scenario runs, for reports.
	Workload string
	// Stalls marks a workload of long iterations that keep every core
	// busy, where the machine stalls a few of them — a core taken away for
	// most of an iteration, which then lasts about twice its median — at
	// random, whatever runs. Its time comparison leaves out the stalled
	// iterations (over stallFactor × the subject's median) unless the
	// variant stalls significantly more often than the baseline, when its
	// stalls are its cost and stay in (see [Comparison].Stalls).
	Stalls bool
}

// HasTarget reports whether the scenario sets its component a target.
func (s ScenarioInfo) HasTarget() bool { return s.TargetPct != 0 || s.TargetMaxCostNS > 0 }

// scenarioInfos lists the scenarios in the study's order, then DESIGN.md's
// additions. Targets: the study's for its five, DESIGN.md's for the others.
// Workload describes the designed suite's workload (the seed suite's
// scenarios carry their own text).
var scenarioInfos = []ScenarioInfo{
	{
		ID: ScenarioExecution, Name: "Execution Performance", TargetPct: 20, TargetMetric: MetricMeanNS, Component: "telemetry",
		Workload: "a 3-step pipeline (an equipped step; a step retried once; a step its fallback answers) logging to a slog JSON handler and a span recorder; every execute's events checked by count, kind and path",
	},
	{
		ID: ScenarioMemory, Name: "Memory Efficiency", TargetPct: 30, TargetMetric: MetricBytesPerOp, Component: "object-pool",
		Workload: fmt.Sprintf("a %d-step sequence whose steps fail twice and retry with no backoff, every other one then falling back, events counted by a metrics sink: the executor's own bytes (the target is also −30 %% allocs/op)", memorySteps),
	},
	{
		ID: ScenarioConcurrent, Name: "Concurrent Performance", TargetPct: 50, TargetMetric: MetricMeanNS, Component: "adaptive-resource-manager",
		Workload: fmt.Sprintf("a Map of %d items, each waiting %v on I/O, at the baseline's fixed limit of %d at once", mapItems, mapIO, mapFixedLimit),
	},
	{
		ID: ScenarioCache, Name: "Cache Performance", TargetPct: 25, TargetMetric: MetricMeanNS, Component: "cache-optimization",
		Workload: fmt.Sprintf("%d executes of a cached agent step over %d hot keys, ~2 KB results: every one a hit that calls no agent (checked)", cacheHits, cacheHotKeys),
	},
	{
		ID: ScenarioContext, Name: "Context Handling", TargetPct: 40, TargetMetric: MetricMeanNS, Component: "context-manager",
		Workload: "an 8-way fan-out over a 1,000-key nested state, 2 writes per branch, merged back (ContextUpdate)",
	},
	{
		ID: ScenarioError, Name: "Error Handling", TargetPct: 50, TargetMetric: MetricMeanNS, Component: "error-handling",
		Workload: "a permanent error (HTTP 400, an SDK-style error exposing StatusCode) on a step with 3 retries and a 1 ms backoff: time to the same final failure (checked with errors.Is) and the same usage (none: the agent reports none on any attempt, so usage is equal by construction)",
	},
	{
		ID: ScenarioOutage, Name: "Outage Handling", TargetPct: 90, TargetMetric: MetricMeanNS, Component: "circuit-breaker",
		Workload: fmt.Sprintf("%d calls to a step with a %v timeout and a fallback, the first %d in an outage (the agent hangs), then healthy: the primary must answer from the %s healthy call on (checked)", outageCalls, outageTimeout, outageDown, ordinal(outageRecoveryCalls)),
	},
	{
		ID: ScenarioCacheMiss, Name: "Cache Misses", TargetPct: 25, TargetMetric: MetricMeanNS, Component: "cache-optimization",
		Workload: fmt.Sprintf("%d concurrent executes of one fresh key on a cached agent step costing %v of CPU a call; 1 to %d agent calls per key (checked), one is the aim", cacheMissers, cacheAgentCost, cacheMissers),
	},
	{
		ID: ScenarioDownstream, Name: "Downstream Capacity", TargetPct: -20, TargetMetric: MetricMeanNS, Component: "adaptive-resource-manager",
		Workload: fmt.Sprintf("a Map of %d items calling a service that serves %d at once (%v each; a call that queues takes %v more), at the best fixed limit of a sweep, %d", mapItems, downstreamCapacity, downstreamService, downstreamThrottle, downstreamBestLimit),
	},
	{
		ID: ScenarioConcurrentCPU, Name: "CPU-bound Map", TargetPct: -3, TargetMetric: MetricMeanNS, Component: "adaptive-resource-manager", Stalls: true,
		Workload: fmt.Sprintf("a Map of %d items, each spinning %v of CPU, at a fixed limit of %d at once", mapItems, mapCPU, mapFixedLimit),
	},
	{
		ID: ScenarioBreakerSuccess, Name: "Breaker Success Path", TargetMaxCostNS: 20, TargetMetric: MetricMeanNS, Component: "circuit-breaker",
		Workload: "one execute of a healthy agent step: what a closed breaker adds",
	},
}

// ordinal spells n as an English ordinal: "1st", "2nd", "3rd", "4th" and so on.
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprint(n, suffix)
}

// Info returns the description of scenario id, reporting false for an
// unknown id.
func Info(id string) (ScenarioInfo, bool) {
	for _, s := range scenarioInfos {
		if s.ID == id {
			return s, true
		}
	}
	return ScenarioInfo{}, false
}

// Infos returns every scenario description, in report order.
func Infos() []ScenarioInfo { return append([]ScenarioInfo(nil), scenarioInfos...) }

// Workload is a scenario made ready for one variant: the executor built,
// the steps compiled.
type Workload struct {
	// Prepare, if set, builds the inputs of the next n iterations. It runs
	// before the timer starts, so input construction is never timed.
	Prepare func(n int)
	// Run performs iteration i (0 <= i < n) of the batch last prepared.
	Run func(ctx context.Context, i int) error
	// Verify, if set, checks what the iterations since the last Prepare
	// did — events delivered, calls made — after they ran and outside any
	// timing, so that a check costs the variant nothing and an executor
	// that delivers in the background is judged once it has delivered.
	// The sampler calls it after every batch; an error stops the
	// measurement.
	Verify func() error
	// Close releases the workload's executor.
	Close func()
}

// Subject is one variant's workload in an interleaved measurement.
type Subject struct {
	Variant  string
	Workload *Workload
	// Rebuild, if set, returns a fresh instance of the workload: a new
	// executor, steps, caches and state. [Sample] replaces Workload with
	// one for every group of rounds (closing the one it replaces), so that
	// what one instance happens to get — its memory layout, its maps' hash
	// seeds — is noise between the groups, not a difference between two
	// variants of identical code.
	Rebuild func() (*Workload, error)
}
