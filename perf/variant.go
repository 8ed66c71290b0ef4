package perf

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// Executor is what a scenario drives: [caudal.Executor], or a variant's
// wrapper around one.
type Executor interface {
	Execute(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error)
	Close() error
}

// Variant is an executor configuration under test.
type Variant struct {
	Name string
	// New returns a fresh executor of this variant; opts are the scenario's
	// own executor options (a sink, for instance).
	New func(opts ...caudal.Option) (Executor, error)
}

// The variant names that are not optimization components.
const (
	VariantBaseline = "baseline"
	VariantNaive    = "naive"
	// VariantAA is the baseline measured a second time, as a variant: the
	// A/A control. Any difference it shows is the instrument's noise.
	// Asking for the baseline as a variant measures it.
	VariantAA = "baseline-aa"
)

// Baseline is the executor with every optimization off: what every other
// variant is compared with.
func Baseline() Variant {
	return Variant{
		Name: VariantBaseline,
		New: func(opts ...caudal.Option) (Executor, error) {
			return caudal.New(opts...)
		},
	}
}

// Naive is the negative control: the baseline wrapped in the study's failure
// modes — three metrics recorded per execute into a history capped at
// 1,000 records, with full statistics (mean, variance, a sort for four
// percentiles, a linear-regression trend) recomputed over the whole history
// under a lock at every record; a memory system call (getrusage) per
// execute; and a canonical cache key computed for every input with no cache
// behind it. It must lose, more as its history grows: that proves the suite
// can see a regression.
func Naive() Variant {
	return naiveVariant(-1)
}

// naiveVariant returns the naive variant with its history held at history
// records: reset to that size before every batch. A negative history lets
// it grow from empty, as in the study.
func naiveVariant(history int) Variant {
	name := VariantNaive
	if history >= 0 {
		name = fmt.Sprintf("%s@%d", VariantNaive, history)
	}
	return Variant{
		Name: name,
		New: func(opts ...caudal.Option) (Executor, error) {
			ex, err := caudal.New(opts...)
			if err != nil {
				return nil, err
			}
			n := &naiveExecutor{inner: ex, keep: max(history, 0), pinned: history >= 0}
			n.resetHistory()
			return n, nil
		},
	}
}

// naiveHistoryCap is the study's PerformanceMonitor cap.
const naiveHistoryCap = 1000

// naiveExecutor reproduces the study's optimized executor's overheads.
type naiveExecutor struct {
	inner  *caudal.Executor
	keep   int  // history size restored by resetHistory
	pinned bool // reset the history before every batch

	mu      sync.Mutex // protects metrics
	metrics map[string][]float64
	stats   map[string]naiveStats // recomputed at every record, read by nobody
}

type naiveStats struct {
	mean, variance, stddev, p50, p90, p95, p99, slope float64
}

func (n *naiveExecutor) Execute(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // a memory query per execute
	if b, err := json.Marshal(map[string]any{"step": step.Name(), "input": in}); err == nil {
		_ = sha256.Sum256(b) // a cache key with no cache behind it
	}
	start := time.Now()
	res, err := n.inner.Execute(ctx, step, in, opts...)
	elapsed := float64(time.Since(start))
	n.record("execute_ns", elapsed)
	n.record("success", boolFloat(err == nil))
	n.record("memory_maxrss", float64(ru.Maxrss))
	return res, err
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// record appends v and recomputes every statistic over the whole history.
func (n *naiveExecutor) record(metric string, v float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := append(n.metrics[metric], v)
	if len(h) > naiveHistoryCap {
		h = h[len(h)-naiveHistoryCap:]
	}
	n.metrics[metric] = h
	n.stats[metric] = computeNaiveStats(h)
}

func computeNaiveStats(h []float64) naiveStats {
	var s naiveStats
	for _, x := range h {
		s.mean += x
	}
	s.mean /= float64(len(h))
	for _, x := range h {
		s.variance += (x - s.mean) * (x - s.mean)
	}
	if len(h) > 1 {
		s.variance /= float64(len(h) - 1)
	}
	s.stddev = math.Sqrt(s.variance)
	sorted := slices.Clone(h)
	slices.Sort(sorted)
	at := func(q float64) float64 { return sorted[int(q*float64(len(sorted)-1))] }
	s.p50, s.p90, s.p95, s.p99 = at(0.50), at(0.90), at(0.95), at(0.99)
	var sx, sy, sxy, sxx float64
	for i, y := range h {
		x := float64(i)
		sx, sy, sxy, sxx = sx+x, sy+y, sxy+x*y, sxx+x*x
	}
	if d := float64(len(h))*sxx - sx*sx; d != 0 {
		s.slope = (float64(len(h))*sxy - sx*sy) / d
	}
	return s
}

// resetHistory sets every metric's history to n.keep synthetic records.
func (n *naiveExecutor) resetHistory() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.metrics = make(map[string][]float64, 3)
	n.stats = make(map[string]naiveStats, 3)
	for _, m := range []string{"execute_ns", "success", "memory_maxrss"} {
		h := make([]float64, n.keep, naiveHistoryCap+1)
		for i := range h {
			h[i] = float64(1000 + i%97)
		}
		n.metrics[m] = h
	}
}

func (n *naiveExecutor) Close() error { return n.inner.Close() }

// beforeBatch holds a pinned history at its size; the sampler's Prepare
// calls it outside the timing.
func (n *naiveExecutor) beforeBatch() {
	if n.pinned {
		n.resetHistory()
	}
}

// Optimized is the variant called name: the baseline executor with the
// optimization layer cfg chooses ([optimize.Use]).
func Optimized(name string, cfg optimize.Config) Variant {
	return Variant{
		Name: name,
		New: func(opts ...caudal.Option) (Executor, error) {
			return caudal.New(append(opts[:len(opts):len(opts)], optimize.Use(cfg))...)
		},
	}
}

// componentNames are the optimization components of DESIGN.md, in
// kebab-case; presetNames its presets.
var (
	componentNames = []string{
		"object-pool", "context-manager", "telemetry", "adaptive-resource-manager",
		"error-handling", "circuit-breaker", "cache-optimization", "automatic-optimization",
	}
	presetNames = []string{
		"high-allocation", "large-context", "batch", "real-time", "memory-constrained", "cpu-intensive",
	}
)

// KnownVariants returns every variant name the suite knows: the baseline,
// the A/A control, the negative control, optimized (the All preset), auto, the presets and
// the components.
func KnownVariants() []string {
	names := []string{VariantBaseline, VariantAA, VariantNaive, VariantOptimized, VariantAuto}
	names = append(names, presetNames...)
	return append(names, componentNames...)
}

// MatrixVariants returns the variants the matrix suite measures besides
// the baseline, in the selective-optimization table's row order: the
// components, the presets, optimized and auto, then the A/A control. The
// negative control is not among them (it exists to lose; the seed suite
// measures it), nor is "automatic-optimization", the same Config as auto
// measured twice.
func MatrixVariants() []string {
	var names []string
	for _, c := range componentNames {
		if !isAuto(c) {
			names = append(names, c)
		}
	}
	names = append(names, presetNames...)
	return append(names, VariantOptimized, VariantAuto, VariantAA)
}

// Components returns the optimization components' variant names, in
// DESIGN.md's order; Presets the presets' (besides optimized and auto).
func Components() []string { return slices.Clone(componentNames) }

// Presets returns the presets' variant names, besides optimized and auto.
func Presets() []string { return slices.Clone(presetNames) }

// The variant names of the presets that are not in [Presets].
const (
	// VariantOptimized is every component on: the [optimize.All] preset.
	VariantOptimized = "optimized"
	// VariantAuto is the [optimize.Auto] preset: the automatic
	// optimization ("automatic-optimization" is the same Config).
	VariantAuto = "auto"
)

// LookupVariant returns the variant called name. It reports built false
// for a known variant the optimization layer has no Config for (none at
// present: every component and preset is built), and an error for an
// unknown name.
func LookupVariant(name string) (v Variant, built bool, err error) {
	switch name {
	case VariantBaseline:
		return Baseline(), true, nil
	case VariantAA:
		v := Baseline()
		v.Name = VariantAA
		return v, true, nil
	case VariantNaive:
		return Naive(), true, nil
	case VariantOptimized:
		return Optimized(name, optimize.All()), true, nil
	}
	if cfg, ok := optimize.Component(name); ok {
		return Optimized(name, cfg), true, nil
	}
	if cfg, ok := optimize.Preset(name); ok && name != "all" {
		return Optimized(name, cfg), true, nil
	}
	if slices.Contains(KnownVariants(), name) {
		return Variant{Name: name}, false, nil
	}
	return Variant{}, false, fmt.Errorf("unknown variant %q (known: %v)", name, KnownVariants())
}
