package perf

import "time"

// SchemaVersion is the version of the JSON report format ([Report]).
// Version 2 added the paired comparison (interval, p-value, status and
// gate of every comparison), batch sizes, batch means, the tail pass's
// histogram, the memory passes, GC CPU, the sampling settings and the
// machine's load; [ReadJSON] still reads version 1.
const SchemaVersion = 2

// Report is one run of a suite: the JSON contract other tools read.
type Report struct {
	SchemaVersion int          `json:"schema_version"`
	Suite         string       `json:"suite"`
	StartedAt     time.Time    `json:"started_at"` // RFC 3339, UTC
	GitCommit     string       `json:"git_commit"`
	Machine       Machine      `json:"machine"`
	Results       []Result     `json:"results"`
	Comparisons   []Comparison `json:"comparisons"`
	NotBuilt      []string     `json:"not_built"` // variants and components that do not exist yet: never given a figure
	// NegativeControl is the naive variant's mean per execute as its
	// statistics history grows, when the naive variant was measured.
	NegativeControl []ControlPoint `json:"negative_control,omitempty"`
	// Config records how the run was measured.
	Config RunConfig `json:"config"`
}

// Machine records where a report was measured.
type Machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	CPUModel   string `json:"cpu_model"`
	// Load is the machine's load when the run started and ended.
	Load Load `json:"load"`
}

// Load is how busy the machine was: figures measured on a busy machine
// are noisier, and every report made on one says so.
type Load struct {
	Load1Start float64 `json:"load1_start"` // 1-minute load average (/proc/loadavg); -1: unknown
	Load1End   float64 `json:"load1_end"`
	// CPUPressureStart and CPUPressureEnd are the share of the last 10 s
	// in which some runnable task waited for a CPU (/proc/pressure/cpu,
	// "some avg10", in percent); -1: unknown.
	CPUPressureStart float64 `json:"cpu_pressure_start_pct"`
	CPUPressureEnd   float64 `json:"cpu_pressure_end_pct"`
	// Warning is set when either reading says the machine was busy.
	Warning string `json:"warning,omitempty"`
}

// RunConfig records the sampling settings of a run.
type RunConfig struct {
	Quick           bool          `json:"quick"`
	TimePerScenario time.Duration `json:"time_per_scenario_ns"`
	MinBatchNS      int64         `json:"min_batch_ns"`
	Variants        []string      `json:"variants"`            // measured, the baseline first
	Requested       []string      `json:"requested,omitempty"` // asked for on the command line
	// References are the components measured only as the automatic
	// optimization's references (see [Comparison.Reference]): not asked
	// for, judged as usual and reported, but not gated by [Check].
	References      []string `json:"references,omitempty"`
	WarmupNS        int64    `json:"warmup_ns"`
	MinRounds       int      `json:"min_rounds"`
	MinSamples      int      `json:"min_samples"`
	CalibrationRuns int      `json:"calibration_runs"`   // timings whose median sets a batch size
	MemPasses       int      `json:"mem_passes"`         // interleaved memory passes per subject
	MemMinIters     int      `json:"mem_min_iterations"` // least iterations of a memory pass
	TailBudgetNS    int64    `json:"tail_budget_ns"`     // time of the per-iteration tail pass, all subjects
	Groups          int      `json:"groups"`             // groups of rounds paired, and instances of every workload
}

// Result is the measurement of one variant on one scenario.
type Result struct {
	Scenario             string `json:"scenario"`
	Variant              string `json:"variant"`
	Samples              int    `json:"samples"`    // timings taken
	Iterations           int64  `json:"iterations"` // samples × batch size
	ExecutesPerIteration int    `json:"executes_per_iteration"`
	// BatchSize is the iterations one timing spans: the smallest power of
	// two whose median of [RunConfig.CalibrationRuns] timings reached the
	// minimum batch time.
	BatchSize int   `json:"batch_size"`
	Stats     Stats `json:"stats"`

	// Raw holds the raw samples: nanoseconds per iteration of each timing
	// (a batch's mean when iterations are timed in batches), in round order.
	// They are not part of the JSON format (tens of thousands per result):
	// BatchMeans and Tail are.
	Raw []int64 `json:"-"`
	// BatchMeans holds the per-group means the paired comparison pairs
	// (nanoseconds per iteration): group j of every subject covers the
	// same rounds.
	BatchMeans []float64 `json:"batch_means_ns"`
	// RoundsPerGroup is the number of rounds a group of BatchMeans spans,
	// each on one instance of the workload.
	RoundsPerGroup int `json:"rounds_per_group"`
	// Tail is the histogram of the tail pass: iterations timed one by one.
	Tail []Bucket `json:"tail_histogram,omitempty"`
	// AllocsPasses and BytesPasses are the memory passes' figures per
	// iteration, in pass order; Stats holds their medians.
	AllocsPasses []float64 `json:"allocs_passes,omitempty"`
	BytesPasses  []float64 `json:"bytes_passes,omitempty"`
	// GCCPUFraction is the share of the subject's timed batches spent in
	// the garbage collector (runtime/metrics, all goroutines: the
	// collector's background work lands on whichever batch is running).
	GCCPUFraction float64 `json:"gc_cpu_fraction"`
}

// Bucket is one bucket of a latency histogram: Count samples at most
// UpperNS (and above the previous bucket's bound).
type Bucket struct {
	UpperNS int64 `json:"upper_ns"`
	Count   int64 `json:"count"`
}

// Stats are the figures of one [Result]. Times are nanoseconds per
// iteration: the mean, spread and extremes of the batch samples; the
// percentiles of the tail pass, iterations timed one by one (an HDR
// histogram, 3 significant digits), p99 only from 100 timings and p99.9
// only from 1,000 (nil otherwise). Allocation figures are the medians of
// the memory passes.
type Stats struct {
	MeanNS         float64  `json:"mean_ns"`
	MedianNS       float64  `json:"median_ns"`
	P95NS          float64  `json:"p95_ns"`
	P99NS          *float64 `json:"p99_ns"`
	P999NS         *float64 `json:"p999_ns"`
	TailSamples    int      `json:"tail_samples"` // iterations timed one by one
	StddevNS       float64  `json:"stddev_ns"`
	MinNS          float64  `json:"min_ns"`
	MaxNS          float64  `json:"max_ns"`
	CI95LowNS      float64  `json:"ci95_low_ns"`
	CI95HighNS     float64  `json:"ci95_high_ns"`
	OpsPerSec      float64  `json:"ops_per_sec"`      // iterations per second
	ExecutesPerSec float64  `json:"executes_per_sec"` // executes per second
	AllocsPerOp    float64  `json:"allocs_per_op"`    // per iteration
	BytesPerOp     float64  `json:"bytes_per_op"`     // per iteration
	PeakHeapBytes  uint64   `json:"peak_heap_bytes"`
	RSSDeltaBytes  int64    `json:"rss_delta_bytes"`
}

// The metrics a [Comparison] is made on.
const (
	MetricMeanNS      = "mean_ns"
	MetricAllocsPerOp = "allocs_per_op"
	MetricBytesPerOp  = "bytes_per_op"
)

// Comparison is a variant against the baseline on one scenario and metric.
//
// On time, ImprovementPct is (1 − m)·100 for m the median of the paired
// ratios (variant over baseline per group of rounds, [Paired]), LowPct and
// HighPct its confidence interval, P the Wilcoxon signed-rank p-value.
// On allocations and bytes, ImprovementPct compares the medians of the
// memory passes, LowPct and HighPct the variant's worst and best pass with
// the baseline's median, and a difference is significant only when it
// exceeds the baseline's own pass-to-pass range.
type Comparison struct {
	Scenario       string  `json:"scenario"`
	Baseline       string  `json:"baseline"`
	Variant        string  `json:"variant"`
	Metric         string  `json:"metric"`
	ImprovementPct float64 `json:"improvement_pct"` // positive = better than the baseline
	LowPct         float64 `json:"improvement_low_pct"`
	HighPct        float64 `json:"improvement_high_pct"`
	// Confidence is the interval's coverage (time; 0.95 or more from 6
	// pairs on).
	Confidence float64 `json:"confidence,omitempty"`
	// MeanImprovementPct is the change of the means (time only): a
	// secondary figure, sensitive to outliers.
	MeanImprovementPct float64 `json:"mean_improvement_pct"`
	P                  float64 `json:"p"`               // time only; 1 elsewhere
	Pairs              int     `json:"pairs,omitempty"` // time only
	// TargetPct and TargetMaxCostNS are the variant's target on this
	// workload (nil where none applies, see [ScenarioInfo]).
	TargetPct       *float64 `json:"target_pct"`
	TargetMaxCostNS *float64 `json:"target_max_cost_ns,omitempty"`
	// CostNS is the variant's added time per execute at the interval's
	// worse end, when a TargetMaxCostNS applies.
	CostNS *float64 `json:"cost_ns,omitempty"`
	// Reference and ReferencePct, on an automatic optimization's
	// comparison where the workload's target is an improvement, are the
	// hand-picked component measured in the same run as the reference and
	// its median change on this metric: auto must reach 80 % of it.
	Reference    string   `json:"reference,omitempty"`
	ReferencePct *float64 `json:"reference_pct,omitempty"`
	// Stalls, on the time of a workload whose iterations the machine
	// stalls ([ScenarioInfo].Stalls), counts the stalled iterations of
	// the baseline and the variant; StallsKept says the variant stalled
	// significantly more often (one-sided binomial test, α = 0.05), so its
	// stalls were kept in the comparison as its cost; otherwise both
	// sides' were left out.
	Stalls      *[2]int `json:"stalls,omitempty"`
	StallsKept  bool    `json:"stalls_kept,omitempty"`
	Significant bool    `json:"significant"`
	Met         bool    `json:"met"` // a target applies and the interval clears it
	// Status is the verdict reports print, Gate why the comparison fails
	// its gate ("" when it passes): both come from one function.
	Status Status `json:"status"`
	Gate   string `json:"gate,omitempty"`
}

// Status is the verdict on one [Comparison].
type Status string

// The statuses.
const (
	StatusMet        Status = "target met"
	StatusMissed     Status = "target missed"
	StatusRegression Status = "regression"    // worse than the baseline beyond the budget
	StatusBetter     Status = "better"        // significantly better, no target
	StatusWorse      Status = "within budget" // significantly worse, not beyond the budget
	StatusSame       Status = "no difference" // not significant
)

// ControlPoint is the negative control's cost at one history size.
type ControlPoint struct {
	History         int     `json:"history"`
	MeanNSPerExec   float64 `json:"mean_ns_per_execute"`
	BaselineNSPerEx float64 `json:"baseline_ns_per_execute"`
}
