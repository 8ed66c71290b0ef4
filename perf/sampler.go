package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// SampleConfig controls a measurement. A zero field takes its default.
type SampleConfig struct {
	// Warmup is the untimed warm-up per subject before calibration
	// (default 100ms).
	Warmup time.Duration
	// Duration is the timed budget for all subjects together (default 2s).
	Duration time.Duration
	// MinBatch is the least time a timing spans: shorter iterations are
	// batched (default 10µs).
	MinBatch time.Duration
	// MinRounds is the least number of interleaved rounds, whatever
	// Duration says (default 20).
	MinRounds int
	// MinSamples makes sampling go on past Duration until each subject has
	// this many samples, up to 3×Duration (default 200).
	MinSamples int
	// MemIterations is the number of iterations of the memory pass per
	// subject (default: enough for 50ms at the measured mean, at least 10
	// and at most 1<<20).
	MemIterations int
}

// The defaults of [SampleConfig].
const (
	defaultWarmup     = 100 * time.Millisecond
	defaultDuration   = 2 * time.Second
	defaultMinBatch   = 10 * time.Microsecond
	defaultMinRounds  = 20
	defaultMinSamples = 200

	memPassTarget = 50 * time.Millisecond // default memory pass length
	memMinIters   = 10
	memMaxIters   = 1 << 20 // bounds what Prepare(MemIterations) must build
	memCheckpoint = 10      // heap reads in the peak-heap pass

	maxBatch      = 1 << 30               // calibration gives up doubling here
	warmupMaxK    = 1 << 10               // largest warm-up batch
	warmupBatch   = time.Millisecond      // warm-up batches stop growing at this length
	progressEvery = 10 * time.Millisecond // least time between round progress calls
)

// The share of the progress fraction each phase takes.
const (
	progressPrepShare  = 0.05 // warm-up and calibration
	progressRoundShare = 0.90 // interleaved rounds
)

// withDefaults returns cfg with every zero field set to its default.
func (cfg SampleConfig) withDefaults() SampleConfig {
	if cfg.Warmup <= 0 {
		cfg.Warmup = defaultWarmup
	}
	if cfg.Duration <= 0 {
		cfg.Duration = defaultDuration
	}
	if cfg.MinBatch <= 0 {
		cfg.MinBatch = defaultMinBatch
	}
	if cfg.MinRounds <= 0 {
		cfg.MinRounds = defaultMinRounds
	}
	if cfg.MinSamples <= 0 {
		cfg.MinSamples = defaultMinSamples
	}
	return cfg
}

// Progress receives the fraction done (0..1) and a short phase text; it is
// called between timings, never inside one, and never during a memory pass.
// The phases are "warm-up <variant>", "calibrate <variant>", "sampling",
// "memory" (announced before the memory passes start) and "done".
type Progress func(done float64, phase string)

// Sample measures the subjects' workloads interleaved and returns one
// [Result] per subject, in order, with Scenario left empty for the caller
// and Variant, Samples, Iterations, ExecutesPerIteration, Raw, BatchMeans
// and Stats set. It neither closes the workloads nor calls them
// concurrently; a nil progress is allowed.
//
// The measurement, in phases:
//
//  1. Warm-up: each subject runs untimed for cfg.Warmup, in batches of
//     Prepare(k) then Run(ctx, 0..k-1), k doubling from 1 (up to 1024)
//     while a batch takes under 1ms.
//  2. Calibration, right after a subject's warm-up: its batch size B is the
//     smallest power of two whose batch (Prepare(B), timer start, Run
//     i = 0..B-1, timer stop) takes at least cfg.MinBatch; iterations slower
//     than MinBatch get B = 1.
//  3. Rounds: each round times one batch per subject, in forward subject
//     order on even rounds and reverse order on odd rounds, so no subject
//     always goes first. A batch gives one raw sample, its duration over B
//     rounded to whole nanoseconds. Prepare always runs before the timer
//     starts; the clock is the monotonic one of time.Now and time.Since.
//     Rounds go on until cfg.Duration has passed, at least cfg.MinRounds
//     rounds ran and every subject has cfg.MinSamples samples, or until
//     3×cfg.Duration has passed, never with fewer than MinRounds rounds.
//  4. Batch means: each subject's samples are split, in order, into
//     k = max(10, min(30, samples/10)) contiguous groups of near-equal size
//     (k = samples when there are fewer than 10), and BatchMeans holds each
//     group's mean time per iteration, from the unrounded batch durations.
//     Rounds interleave the subjects, so group j of every subject covers
//     the same stretch of time. Stats timings are [ComputeStats] of Raw.
//  5. Memory pass, after all timing, one subject at a time, with no
//     progress calls: Prepare(n), runtime.GC, RSS and runtime.MemStats
//     read, n iterations run, MemStats and RSS read again, with
//     n = cfg.MemIterations. AllocsPerOp is ΔMallocs/n, BytesPerOp is
//     ΔTotalAlloc/n and RSSDeltaBytes the RSS growth (Linux:
//     /proc/self/statm resident pages × page size; elsewhere 0). A second
//     pass of n iterations reads MemStats at 11 evenly spaced checkpoints
//     (before the first iteration and after every tenth of them);
//     PeakHeapBytes is the largest HeapAlloc seen. The checkpoint reads
//     happen only in that second pass, so the counts of the first are exact.
//
// Cancelling ctx stops the measurement between batches with ctx's error; a
// Run error stops it with an error naming the subject's variant, the phase
// and the iteration.
func Sample(ctx context.Context, subjects []Subject, executes int, cfg SampleConfig, progress Progress) ([]Result, error) {
	cfg = cfg.withDefaults()
	for i, s := range subjects {
		if s.Workload == nil || s.Workload.Run == nil {
			return nil, fmt.Errorf("perf: subject %d (%s): no workload to run", i, s.Variant)
		}
	}
	if len(subjects) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	report := func(done float64, phase string) {
		if progress != nil {
			progress(min(max(done, 0), 1), phase)
		}
	}

	// 1 and 2: warm-up and calibration.
	batch := make([]int, len(subjects))
	for i, s := range subjects {
		report(progressPrepShare*float64(i)/float64(len(subjects)), "warm-up "+s.Variant)
		if err := warmUp(ctx, s, cfg.Warmup); err != nil {
			return nil, err
		}
		report(progressPrepShare*(float64(i)+0.5)/float64(len(subjects)), "calibrate "+s.Variant)
		b, err := calibrate(ctx, s, cfg.MinBatch)
		if err != nil {
			return nil, err
		}
		batch[i] = b
	}

	// 3: interleaved rounds.
	perIter := make([][]float64, len(subjects)) // unrounded ns per iteration
	wantRounds := max(cfg.MinRounds, cfg.MinSamples)
	roundsDone := func(rounds int, elapsed time.Duration) float64 {
		byBudget := min(float64(elapsed)/float64(cfg.Duration), float64(rounds)/float64(wantRounds))
		byCap := float64(elapsed) / float64(3*cfg.Duration)
		return min(max(byBudget, byCap), 1)
	}
	report(progressPrepShare, "sampling")
	runtime.GC()
	start := time.Now()
	lastReport := start
	for rounds := 0; ; rounds++ {
		elapsed := time.Since(start)
		if rounds >= cfg.MinRounds {
			enough := elapsed >= cfg.Duration && rounds >= cfg.MinSamples
			if enough || elapsed >= 3*cfg.Duration {
				break
			}
		}
		if time.Since(lastReport) >= progressEvery {
			report(progressPrepShare+progressRoundShare*roundsDone(rounds, elapsed), "sampling")
			lastReport = time.Now()
		}
		for j := range subjects {
			i := j
			if rounds%2 == 1 {
				i = len(subjects) - 1 - j
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d, err := timeBatch(ctx, subjects[i], batch[i], "sampling")
			if err != nil {
				return nil, err
			}
			perIter[i] = append(perIter[i], float64(d)/float64(batch[i]))
		}
	}

	// 4: results and batch means.
	results := make([]Result, len(subjects))
	for i, s := range subjects {
		raw := make([]int64, len(perIter[i]))
		for k, v := range perIter[i] {
			raw[k] = int64(math.Round(v))
		}
		results[i] = Result{
			Variant:              s.Variant,
			Samples:              len(raw),
			Iterations:           int64(len(raw)) * int64(batch[i]),
			ExecutesPerIteration: executes,
			Stats:                ComputeStats(raw, executes),
			Raw:                  raw,
			BatchMeans:           batchMeans(perIter[i]),
		}
	}

	// 5: memory passes.
	report(progressPrepShare+progressRoundShare, "memory")
	for i, s := range subjects {
		n := cfg.MemIterations
		if n <= 0 {
			n = defaultMemIterations(results[i].Stats.MeanNS)
		}
		if err := memoryPass(ctx, s, n, &results[i].Stats); err != nil {
			return nil, err
		}
	}
	report(1, "done")
	return results, nil
}

// warmUp runs s untimed for d, in batches doubling from 1 while a batch
// takes less than warmupBatch, up to warmupMaxK iterations.
func warmUp(ctx context.Context, s Subject, d time.Duration) error {
	start := time.Now()
	for k := 1; time.Since(start) < d; {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.Now()
		if err := runBatch(ctx, s, k, "warm-up"); err != nil {
			return err
		}
		if time.Since(t) < warmupBatch {
			k = min(2*k, warmupMaxK)
		}
	}
	return nil
}

// calibrate returns the smallest power of two B whose batch of s takes at
// least minBatch.
func calibrate(ctx context.Context, s Subject, minBatch time.Duration) (int, error) {
	b := 1
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d, err := timeBatch(ctx, s, b, "calibration")
		if err != nil {
			return 0, err
		}
		if d >= minBatch || b >= maxBatch {
			return b, nil
		}
		b *= 2
	}
}

// timeBatch prepares n iterations of s, then times running them.
func timeBatch(ctx context.Context, s Subject, n int, phase string) (time.Duration, error) {
	if s.Workload.Prepare != nil {
		s.Workload.Prepare(n)
	}
	run := s.Workload.Run
	start := time.Now()
	for i := range n {
		if err := run(ctx, i); err != nil {
			return 0, runError(ctx, s, phase, i, err)
		}
	}
	return time.Since(start), nil
}

// runBatch prepares and runs n iterations of s, untimed.
func runBatch(ctx context.Context, s Subject, n int, phase string) error {
	if s.Workload.Prepare != nil {
		s.Workload.Prepare(n)
	}
	for i := range n {
		if err := s.Workload.Run(ctx, i); err != nil {
			return runError(ctx, s, phase, i, err)
		}
	}
	return nil
}

// runError is the error of s failing iteration i of a batch: ctx's own error
// when ctx is done (the Run most likely failed because of it).
func runError(ctx context.Context, s Subject, phase string, i int, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("perf: variant %s: %s: iteration %d: %w", s.Variant, phase, i, err)
}

// batchMeans splits samples, in order, into k = max(10, min(30, n/10))
// contiguous groups of near-equal size (k = n below 10 samples) and returns
// each group's mean.
func batchMeans(samples []float64) []float64 {
	n := len(samples)
	k := min(max(10, min(30, n/10)), n)
	means := make([]float64, k)
	for j := range k {
		lo, hi := j*n/k, (j+1)*n/k
		var sum float64
		for _, v := range samples[lo:hi] {
			sum += v
		}
		means[j] = sum / float64(hi-lo)
	}
	return means
}

// defaultMemIterations returns the memory pass length for iterations of
// meanNS each: enough for memPassTarget, within [memMinIters, memMaxIters].
func defaultMemIterations(meanNS float64) int {
	if meanNS <= 0 || math.IsNaN(meanNS) {
		return memMaxIters
	}
	n := math.Ceil(float64(memPassTarget) / meanNS)
	return int(min(max(n, memMinIters), memMaxIters))
}

// memoryPass runs n iterations of s twice, untimed, and sets st's allocation
// fields: counts and RSS from the first pass, peak heap from the second.
func memoryPass(ctx context.Context, s Subject, n int, st *Stats) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	run := s.Workload.Run

	// Counted pass: nothing but the iterations between the two reads.
	if s.Workload.Prepare != nil {
		s.Workload.Prepare(n)
	}
	runtime.GC()
	rss0 := residentBytes()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := range n {
		if err := run(ctx, i); err != nil {
			return runError(ctx, s, "memory", i, err)
		}
	}
	runtime.ReadMemStats(&m1)
	rss1 := residentBytes()
	st.AllocsPerOp = float64(m1.Mallocs-m0.Mallocs) / float64(n)
	st.BytesPerOp = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n)
	st.RSSDeltaBytes = rss1 - rss0

	// Peak-heap pass: HeapAlloc before the first iteration and after every
	// tenth of them.
	if s.Workload.Prepare != nil {
		s.Workload.Prepare(n)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	peak := m.HeapAlloc
	for i := range n {
		if err := run(ctx, i); err != nil {
			return runError(ctx, s, "memory", i, err)
		}
		if (i+1)*memCheckpoint/n != i*memCheckpoint/n { // a tenth of n done
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	st.PeakHeapBytes = peak
	return nil
}

// residentBytes returns the process's resident set size: on Linux the
// resident pages of /proc/self/statm times the page size, elsewhere (or on
// failure) 0.
func residentBytes() int64 {
	if runtime.GOOS != "linux" {
		return 0
	}
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	pages, err := parseStatmResident(string(b))
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// parseStatmResident returns the resident page count, the second field of a
// /proc/self/statm line.
func parseStatmResident(s string) (int64, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return 0, errors.New("perf: short /proc/self/statm")
	}
	return strconv.ParseInt(f[1], 10, 64)
}
