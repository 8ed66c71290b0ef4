package perf

import "time"

// SchemaVersion is the version of the JSON report format ([Report]).
const SchemaVersion = 1

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
}

// RunConfig records the sampling settings of a run.
type RunConfig struct {
	Quick           bool          `json:"quick"`
	TimePerScenario time.Duration `json:"time_per_scenario_ns"`
	MinBatchNS      int64         `json:"min_batch_ns"`
	Variants        []string      `json:"variants"`
}

// Result is the measurement of one variant on one scenario.
type Result struct {
	Scenario             string `json:"scenario"`
	Variant              string `json:"variant"`
	Samples              int    `json:"samples"`    // timings taken
	Iterations           int64  `json:"iterations"` // samples × batch size
	ExecutesPerIteration int    `json:"executes_per_iteration"`
	Stats                Stats  `json:"stats"`

	// Raw holds the raw samples: nanoseconds per iteration of each timing
	// (a batch's mean when iterations are timed in batches).
	Raw []int64 `json:"-"`
	// BatchMeans holds the interleaved batch means the significance test
	// compares (nanoseconds per iteration).
	BatchMeans []float64 `json:"-"`
}

// Stats are the figures of one [Result]. Times are nanoseconds per
// iteration; percentiles come from an HDR histogram (3 significant digits)
// of the raw samples; allocation figures come from a separate quiet pass.
type Stats struct {
	MeanNS         float64 `json:"mean_ns"`
	MedianNS       float64 `json:"median_ns"`
	P95NS          float64 `json:"p95_ns"`
	P99NS          float64 `json:"p99_ns"`
	P999NS         float64 `json:"p999_ns"`
	StddevNS       float64 `json:"stddev_ns"`
	MinNS          float64 `json:"min_ns"`
	MaxNS          float64 `json:"max_ns"`
	CI95LowNS      float64 `json:"ci95_low_ns"`
	CI95HighNS     float64 `json:"ci95_high_ns"`
	OpsPerSec      float64 `json:"ops_per_sec"`      // iterations per second
	ExecutesPerSec float64 `json:"executes_per_sec"` // executes per second
	AllocsPerOp    float64 `json:"allocs_per_op"`    // per iteration
	BytesPerOp     float64 `json:"bytes_per_op"`     // per iteration
	PeakHeapBytes  uint64  `json:"peak_heap_bytes"`
	RSSDeltaBytes  int64   `json:"rss_delta_bytes"`
}

// The metrics a [Comparison] is made on.
const (
	MetricMeanNS      = "mean_ns"
	MetricAllocsPerOp = "allocs_per_op"
	MetricBytesPerOp  = "bytes_per_op"
)

// Comparison is a variant against the baseline on one scenario and metric.
type Comparison struct {
	Scenario       string   `json:"scenario"`
	Baseline       string   `json:"baseline"`
	Variant        string   `json:"variant"`
	Metric         string   `json:"metric"`
	ImprovementPct float64  `json:"improvement_pct"` // positive = better than the baseline
	TargetPct      *float64 `json:"target_pct"`      // nil where no target applies
	Significant    bool     `json:"significant"`
	Met            bool     `json:"met"` // a target applies, the improvement reaches it, and it is significant
}

// ControlPoint is the negative control's cost at one history size.
type ControlPoint struct {
	History         int     `json:"history"`
	MeanNSPerExec   float64 `json:"mean_ns_per_execute"`
	BaselineNSPerEx float64 `json:"baseline_ns_per_execute"`
}
