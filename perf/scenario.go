package perf

import "context"

// The suites.
const (
	SuiteSeed     = "seed"
	SuiteDesigned = "designed"
	SuiteMatrix   = "matrix"
)

// The scenario IDs.
const (
	ScenarioExecution  = "execution"
	ScenarioMemory     = "memory"
	ScenarioConcurrent = "concurrent"
	ScenarioCache      = "cache"
	ScenarioContext    = "context"
	ScenarioError      = "error"
	ScenarioOutage     = "outage"
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
}

// HasTarget reports whether the scenario sets its component a target.
func (s ScenarioInfo) HasTarget() bool { return s.TargetPct != 0 || s.TargetMaxCostNS > 0 }

// scenarioInfos lists the scenarios in the study's order, then DESIGN.md's
// additions. Targets: the study's for its five, DESIGN.md's for error and
// outage.
var scenarioInfos = []ScenarioInfo{
	{ID: ScenarioExecution, Name: "Execution Performance", TargetPct: 20, TargetMetric: MetricMeanNS, Component: "telemetry"},
	{ID: ScenarioMemory, Name: "Memory Efficiency", TargetPct: 30, TargetMetric: MetricBytesPerOp, Component: "object-pool"},
	{ID: ScenarioConcurrent, Name: "Concurrent Performance", TargetPct: 50, TargetMetric: MetricMeanNS, Component: "adaptive-resource-manager"},
	{ID: ScenarioCache, Name: "Cache Performance", TargetPct: 25, TargetMetric: MetricMeanNS, Component: "cache-optimization"},
	{ID: ScenarioContext, Name: "Context Handling", TargetPct: 40, TargetMetric: MetricMeanNS, Component: "context-manager"},
	{ID: ScenarioError, Name: "Error Handling", TargetPct: 50, TargetMetric: MetricMeanNS, Component: "error-handling"},
	{ID: ScenarioOutage, Name: "Outage Handling", TargetPct: 90, TargetMetric: MetricMeanNS, Component: "circuit-breaker"},
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
	// Close releases the workload's executor.
	Close func()
}

// Subject is one variant's workload in an interleaved measurement.
type Subject struct {
	Variant  string
	Workload *Workload
}
