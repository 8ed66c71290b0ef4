package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
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
	// MemIterations is the number of iterations of a memory pass (default:
	// enough for 20ms at the measured mean, at least MemMinIterations and
	// at most 1<<20).
	MemIterations int
	// MemMinIterations is the least number of iterations of a memory pass
	// (default 20).
	MemMinIterations int
	// MemPasses is the number of memory passes per subject, interleaved
	// across subjects (default 5).
	MemPasses int
	// CalibrationRuns is the number of timings whose median decides
	// whether a batch size reaches MinBatch (default 5).
	CalibrationRuns int
	// TailBudget is the time of the tail pass, all subjects together:
	// iterations timed one by one, round-robin, up to 10,000 per subject
	// (default Duration/4).
	TailBudget time.Duration
	// LongRound is the round length from which the collector runs between
	// rounds, and between the subjects' batches of the next round when the
	// heap nears the collector's goal, so that one subject's garbage is
	// not collected in another's batch (default 20ms).
	LongRound time.Duration
	// Groups is the number of groups of rounds the comparison pairs, and of
	// instances of every workload with a Rebuild: one per group (default
	// 20; fewer when there are fewer rounds).
	Groups int
}

// The defaults of [SampleConfig].
const (
	defaultWarmup     = 100 * time.Millisecond
	defaultDuration   = 2 * time.Second
	defaultMinBatch   = 10 * time.Microsecond
	defaultMinRounds  = 20
	defaultMinSamples = 200
	defaultMemPasses  = 5
	defaultMemMin     = 20
	defaultCalibRuns  = 5
	defaultLongRound  = 20 * time.Millisecond
	defaultGroups     = 20

	// heapFloor is the pointer-free block Sample holds while it times: the
	// collector then runs about every heapFloor bytes allocated, at the
	// pace of a service with that much live heap, and not every 4 MiB as
	// in a process whose own heap is a few MiB — where the cache
	// workload's baseline spent a third of its time collecting (GC CPU
	// 33 %, 41 µs an iteration against 26 µs with the floor), and each
	// variant's time mostly measured how often the collector happened to
	// run in its batches. The block is never written: it costs address
	// space, not memory, and the collector does not scan it.
	heapFloor = 64 << 20

	memPassTarget = 20 * time.Millisecond // default memory pass length
	memPassSpan   = 10 * memPassTarget    // how long a pass may grow by taking another subject's length
	memMaxIters   = 1 << 20               // bounds what Prepare(MemIterations) must build
	memCheckpoint = 10                    // heap reads in the peak-heap pass
	tailMaxIters  = 10000                 // tail pass timings per subject

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
	if cfg.MemPasses <= 0 {
		cfg.MemPasses = defaultMemPasses
	}
	if cfg.MemMinIterations <= 0 {
		cfg.MemMinIterations = defaultMemMin
	}
	if cfg.CalibrationRuns <= 0 {
		cfg.CalibrationRuns = defaultCalibRuns
	}
	if cfg.TailBudget <= 0 {
		cfg.TailBudget = cfg.Duration / 4
	}
	if cfg.LongRound <= 0 {
		cfg.LongRound = defaultLongRound
	}
	if cfg.Groups <= 0 {
		cfg.Groups = defaultGroups
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
// and every other field set. It never calls the workloads concurrently; it
// closes only the instances it replaces (see [Subject.Rebuild]), leaving
// subjects[i].Workload, the last instance, to the caller. A nil progress
// is allowed.
//
// The measurement, in phases:
//
//  0. Phases 1 to 5 hold a pointer-free block of heapFloor bytes, so that
//     the collector runs at a service's pace rather than every 4 MiB (see
//     heapFloor); the memory passes run without it.
//  1. Warm-up: each subject runs untimed for cfg.Warmup, in batches of
//     Prepare(k) then Run(ctx, 0..k-1), k doubling from 1 (up to 1024)
//     while a batch takes under 1ms.
//  2. Calibration, right after a subject's warm-up: its batch size is the
//     smallest power of two for which the median of cfg.CalibrationRuns
//     timed batches (Prepare(B), timer start, Run i = 0..B-1, timer stop)
//     takes at least cfg.MinBatch; iterations slower than MinBatch get
//  1. One timing alone is at the mercy of a GC or a preemption. Every
//     subject is then timed in batches of the largest of these sizes, so
//     that the clock's cost, amortized over a batch, is the same share for
//     all — unless that would make its batch longer than 100×MinBatch.
//  3. Rounds: each round times one batch per subject, in an order drawn
//     at random (from a fixed seed) on even rounds and reversed on odd
//     ones, so that every subject has the same mean position in each pair
//     of rounds and follows others at random: a subject pays for what the
//     one before it left (garbage, background work), and in a fixed order
//     its neighbours' would bias it. A batch gives one raw sample, its
//     duration over B rounded to whole nanoseconds. Prepare always runs
//     before the timer starts; the clock is the monotonic one of time.Now
//     and time.Since.
//     Rounds go on until cfg.Duration has passed, at least cfg.MinRounds
//     rounds ran and every subject has cfg.MinSamples samples, or until
//     3×cfg.Duration has passed, never with fewer than MinRounds rounds.
//     After a round longer than cfg.LongRound, and before each batch of
//     the round that follows, the collector runs, untimed, when the heap
//     has grown past halfway from the live heap to the collector's goal,
//     so that no subject
//     pays for another's garbage; the GC CPU time read
//     around each batch (runtime/metrics) gives GCCPUFraction. After
//     each group of rounds (phase 4), each subject with a Rebuild gets a
//     fresh instance of its workload, warmed by one untimed round in a
//     random order, and the collector runs: two instances of identical
//     code can differ by several percent (memory layout, hash seeds), and
//     a comparison must not take that for the variants' difference.
//  4. Group means: the rounds fall into groups of RoundsPerGroup, chosen
//     after calibration so that the sampling makes about cfg.Groups of
//     them, and BatchMeans holds each subject's mean time per iteration in
//     each group, from the unrounded batch durations. Rounds interleave
//     the subjects, so group j of every subject covers the same stretch of
//     time: the groups pair ([ComparePaired]). A group is also one
//     instance of every workload with a Rebuild (see phase 3): instances
//     differ, and a group must not share its instance with the next, or
//     the pairs would not be independent. Stats' mean, spread and
//     extremes are [ComputeStats] of Raw.
//  5. Tail pass: iterations timed one by one, one per subject in turn,
//     until cfg.TailBudget has passed (at least one each, at most 10,000
//     each, each after a Prepare(1)); Stats' percentiles and Tail come
//     from them, p99 only from 100 timings on, p99.9 from 1,000.
//  6. Memory passes, after all timing, with no progress calls:
//     cfg.MemPasses passes per subject, interleaved (pass p runs every
//     subject in turn). A pass is Prepare(n), runtime.GC, RSS and
//     runtime.MemStats read, n iterations run, MemStats and RSS read
//     again, with n = cfg.MemIterations, or by default the largest of the
//     subjects' lengths for 20ms, unless a subject's pass would then last
//     over 200ms. AllocsPasses and BytesPasses hold
//     each pass's ΔMallocs/n and ΔTotalAlloc/n; Stats holds their medians,
//     and RSSDeltaBytes the first pass's RSS growth (Linux:
//     /proc/self/statm resident pages × page size; elsewhere 0). A last
//     pass of n iterations reads MemStats at 11 evenly spaced checkpoints;
//     PeakHeapBytes is the largest HeapAlloc seen. The checkpoint reads
//     happen only in that pass, so the counts of the others are exact.
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

	// Phases 1 to 5 run the collector at a service's pace (see heapFloor).
	floor := make([]byte, heapFloor)

	// 1 and 2: warm-up and calibration.
	batch := make([]int, len(subjects))
	cost := make([]time.Duration, len(subjects)) // per iteration, from calibration
	for i, s := range subjects {
		report(progressPrepShare*float64(i)/float64(len(subjects)), "warm-up "+s.Variant)
		if err := warmUp(ctx, s, cfg.Warmup); err != nil {
			return nil, err
		}
		report(progressPrepShare*(float64(i)+0.5)/float64(len(subjects)), "calibrate "+s.Variant)
		b, perIter, err := calibrate(ctx, s, cfg.MinBatch, cfg.CalibrationRuns)
		if err != nil {
			return nil, err
		}
		batch[i], cost[i] = b, perIter
	}
	commonBatch(batch, cost, maxBatchSpan*cfg.MinBatch)
	perGroup := roundsPerGroup(cfg, batch, cost)

	// 3: interleaved rounds.
	perIter := make([][]float64, len(subjects)) // unrounded ns per iteration
	gcCPU := make([]float64, len(subjects))     // GC CPU seconds during each subject's batches
	timed := make([]time.Duration, len(subjects))
	wantRounds := max(cfg.MinRounds, cfg.MinSamples)
	roundsDone := func(rounds int, elapsed time.Duration) float64 {
		byBudget := min(float64(elapsed)/float64(cfg.Duration), float64(rounds)/float64(wantRounds))
		byCap := float64(elapsed) / float64(3*cfg.Duration)
		return min(max(byBudget, byCap), 1)
	}
	report(progressPrepShare, "sampling")
	runtime.GC()
	gc := newGCClock()
	orders := newRoundOrders(len(subjects))
	start := time.Now()
	lastReport := start
	long := false // the last round was long: collect between its subjects' batches too, when due
	heap := newHeapGauge()
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
		var round time.Duration
		for j, i := range orders.next() {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if j > 0 && long && heap.nearGoal() {
				runtime.GC() // the subjects before left garbage enough to trigger a collection in this one's batch
			}
			g0 := gc.read()
			d, err := timeBatch(ctx, subjects[i], batch[i], "sampling")
			if err != nil {
				return nil, err
			}
			gcCPU[i] += gc.read() - g0
			timed[i] += d
			round += d
			perIter[i] = append(perIter[i], float64(d)/float64(batch[i]))
		}
		long = round >= cfg.LongRound
		if long && heap.nearGoal() {
			// Unconditional, a collection of a large live heap after every
			// round took the CPU-bound map's sampling budget: 58 rounds of
			// 200, 6 groups, an interval as wide as one group's noise.
			runtime.GC()
		}
		if (rounds+1)%perGroup == 0 {
			if err := rebuild(ctx, subjects, batch, orders.shuffled()); err != nil {
				return nil, err
			}
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
			BatchSize:            batch[i],
			Stats:                ComputeStats(raw, executes),
			Raw:                  raw,
			BatchMeans:           groupMeans(perIter[i], perGroup),
			RoundsPerGroup:       perGroup,
		}
		if timed[i] > 0 {
			results[i].GCCPUFraction = gcCPU[i] / timed[i].Seconds()
		}
	}

	// 5: the tail pass.
	report(progressPrepShare+progressRoundShare, "tails")
	tails, err := tailPass(ctx, subjects, cfg.TailBudget)
	if err != nil {
		return nil, err
	}
	for i := range results {
		t := ComputeStats(tails[i], executes)
		st := &results[i].Stats
		st.MedianNS, st.P95NS, st.P99NS, st.P999NS, st.TailSamples = t.MedianNS, t.P95NS, t.P99NS, t.P999NS, len(tails[i])
		results[i].Tail = histogram(tails[i])
	}

	runtime.KeepAlive(floor) // and no longer: the memory passes see the process's own heap

	// 6: memory passes.
	report(progressPrepShare+progressRoundShare, "memory")
	iters := make([]int, len(subjects))
	for i := range subjects {
		iters[i] = cfg.MemIterations
		if iters[i] <= 0 {
			iters[i] = defaultMemIterations(results[i].Stats.MeanNS, cfg.MemMinIterations)
		}
	}
	// One pass length for all, as one batch size: a workload whose state
	// grows over a pass (a cache filling with fresh keys) allocates per
	// iteration according to the pass's length — an A/A run measured passes
	// of different lengths 4 % apart in bytes per op.
	means := make([]time.Duration, len(subjects))
	for i := range results {
		means[i] = time.Duration(results[i].Stats.MeanNS)
	}
	commonBatch(iters, means, memPassSpan)
	for pass := range cfg.MemPasses {
		for j := range subjects {
			i := j
			if pass%2 == 1 {
				i = len(subjects) - 1 - j
			}
			allocs, bytes, rss, err := memoryPass(ctx, subjects[i], iters[i])
			if err != nil {
				return nil, err
			}
			r := &results[i]
			r.AllocsPasses = append(r.AllocsPasses, allocs)
			r.BytesPasses = append(r.BytesPasses, bytes)
			if pass == 0 {
				r.Stats.RSSDeltaBytes = rss
			}
		}
	}
	for i, s := range subjects {
		r := &results[i]
		r.Stats.AllocsPerOp = median(slices.Sorted(slices.Values(r.AllocsPasses)))
		r.Stats.BytesPerOp = median(slices.Sorted(slices.Values(r.BytesPasses)))
		peak, err := peakHeapPass(ctx, s, iters[i])
		if err != nil {
			return nil, err
		}
		r.Stats.PeakHeapBytes = peak
	}
	report(1, "done")
	return results, nil
}

// roundOrders hands out the order of the subjects in each round: a random
// permutation, then its reverse, then a fresh permutation and its reverse,
// and so on, from a fixed seed. The reverse gives every subject the same
// mean position in each pair of rounds; the fresh permutations vary whom
// a subject follows. A subject pays for what the one before it left —
// its garbage, its background work: in a fixed order (forward, then
// backward) the baseline always followed the first variant and the last
// variant the one before it, and an A/A control placed last measured
// 5 % slower than the baseline on two workloads.
type roundOrders struct {
	rng    *rand.Rand
	order  []int
	warm   []int
	rounds int
}

func newRoundOrders(n int) *roundOrders {
	o := &roundOrders{rng: rand.New(rand.NewPCG(0x5eed, uint64(n))), order: make([]int, n), warm: make([]int, n)}
	for i := range o.order {
		o.order[i], o.warm[i] = i, i
	}
	return o
}

// next returns the next round's order; it is valid until the next call.
func (o *roundOrders) next() []int {
	if o.rounds%2 == 0 {
		o.rng.Shuffle(len(o.order), func(i, j int) { o.order[i], o.order[j] = o.order[j], o.order[i] })
	} else {
		slices.Reverse(o.order)
	}
	o.rounds++
	return o.order
}

// shuffled returns a random order apart from the rounds' (a warm-up's).
func (o *roundOrders) shuffled() []int {
	o.rng.Shuffle(len(o.warm), func(i, j int) { o.warm[i], o.warm[j] = o.warm[j], o.warm[i] })
	return o.warm
}

// rebuild gives every subject with a Rebuild a fresh instance of its
// workload, closes the instance it replaces, and warms the new instances
// with one untimed round in the given order, then collects the garbage of
// the old instances and of the warm-up, so that the first subject timed
// next does not pay for it.
func rebuild(ctx context.Context, subjects []Subject, batch []int, order []int) error {
	rebuilt := false
	for i := range subjects {
		s := &subjects[i]
		if s.Rebuild == nil {
			continue
		}
		w, err := s.Rebuild()
		if err != nil {
			return fmt.Errorf("perf: variant %s: rebuilding its workload: %w", s.Variant, err)
		}
		if w == nil || w.Run == nil {
			return fmt.Errorf("perf: variant %s: rebuilding its workload: no workload to run", s.Variant)
		}
		old := s.Workload
		s.Workload = w
		if old.Close != nil {
			old.Close()
		}
		rebuilt = true
	}
	if !rebuilt {
		return nil
	}
	for _, i := range order {
		if err := runBatch(ctx, subjects[i], batch[i], "warm-up"); err != nil {
			return err
		}
	}
	runtime.GC()
	return nil
}

// roundsPerGroup returns how many rounds make a group: the rounds the
// sampling will take, estimated from the calibrated cost of a round (a
// batch of every subject, and a warm-up round per group) and the stopping
// rule, over cfg.Groups — at least 1.
func roundsPerGroup(cfg SampleConfig, batch []int, cost []time.Duration) int {
	var round time.Duration
	for i := range batch {
		round += time.Duration(batch[i]) * cost[i]
	}
	if round <= 0 {
		return max(1, max(cfg.MinRounds, cfg.MinSamples)/cfg.Groups)
	}
	least := max(cfg.MinRounds, cfg.MinSamples)
	est := max(int(cfg.Duration/round), least)
	est = min(est, max(int(3*cfg.Duration/round)*cfg.Groups/(cfg.Groups+1), cfg.MinRounds)) // the cap, less the warm-up rounds
	return max(1, est/cfg.Groups)
}

// gcClock reads the collector's CPU time (runtime/metrics).
// heapGauge tells, from runtime/metrics (no stop of the world), whether
// the heap has grown past halfway from the live heap the last collection
// found to the collector's goal: a batch that starts there may well pay
// for a collection of garbage it did not make.
type heapGauge struct{ sample []metrics.Sample }

func newHeapGauge() *heapGauge {
	return &heapGauge{sample: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"},
	}}
}

func (h *heapGauge) nearGoal() bool {
	metrics.Read(h.sample)
	for _, s := range h.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return false
		}
	}
	objects, live, goal := h.sample[0].Value.Uint64(), h.sample[1].Value.Uint64(), h.sample[2].Value.Uint64()
	return goal > live && objects > live+(goal-live)/2
}

type gcClock struct{ sample []metrics.Sample }

func newGCClock() *gcClock {
	return &gcClock{sample: []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}}
}

// read returns the CPU seconds the collector has used, or 0 where the
// runtime does not report it.
func (g *gcClock) read() float64 {
	metrics.Read(g.sample)
	if g.sample[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return g.sample[0].Value.Float64()
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

// calibrate returns the smallest power of two B for which the median of
// runs timed batches of s takes at least minBatch, and the time of an
// iteration that median gives.
func calibrate(ctx context.Context, s Subject, minBatch time.Duration, runs int) (int, time.Duration, error) {
	times := make([]time.Duration, runs)
	for b := 1; ; b *= 2 {
		for k := range times {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			d, err := timeBatch(ctx, s, b, "calibration")
			if err != nil {
				return 0, 0, err
			}
			times[k] = d
		}
		slices.Sort(times)
		if med := times[runs/2]; med >= minBatch || b >= maxBatch {
			return b, med / time.Duration(b), nil
		}
	}
}

// maxBatchSpan bounds, in multiples of the minimum batch, how long a batch
// may grow by taking another subject's batch size.
const maxBatchSpan = 100

// commonBatch gives every subject the largest batch size, where that keeps
// its batch under span: a batch's clock reads are amortized over its
// iterations, so subjects timed in batches of different sizes differ by
// that share alone (an A/A run measured batches of 1 and 64 iterations
// 23 % apart on a 250 ns iteration). A subject whose batch would grow past
// span — one far slower than another — keeps its own size, and the clock's
// share is negligible beside its difference.
func commonBatch(batch []int, cost []time.Duration, span time.Duration) {
	common := slices.Max(batch)
	for i := range batch {
		if time.Duration(common)*cost[i] <= span {
			batch[i] = common
		}
	}
}

// tailPass times iterations of the subjects one by one, round-robin, until
// budget has passed (every subject gets at least one, at most
// tailMaxIters), and returns each subject's timings in nanoseconds.
func tailPass(ctx context.Context, subjects []Subject, budget time.Duration) ([][]int64, error) {
	out := make([][]int64, len(subjects))
	runtime.GC()
	start := time.Now()
	for round := 0; round < tailMaxIters && (round == 0 || time.Since(start) < budget); round++ {
		for i, s := range subjects {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d, err := timeBatch(ctx, s, 1, "tail")
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], int64(d))
		}
	}
	return out, nil
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
	d := time.Since(start)
	return d, verify(ctx, s, phase)
}

// verify runs the workload's Verify, if any, on the batch just run.
func verify(ctx context.Context, s Subject, phase string) error {
	if s.Workload.Verify == nil {
		return nil
	}
	if err := s.Workload.Verify(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("perf: variant %s: %s: %w", s.Variant, phase, err)
	}
	return nil
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
	return verify(ctx, s, phase)
}

// runError is the error of s failing iteration i of a batch: ctx's own error
// when ctx is done (the Run most likely failed because of it).
func runError(ctx context.Context, s Subject, phase string, i int, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("perf: variant %s: %s: iteration %d: %w", s.Variant, phase, i, err)
}

// groupMeans splits samples, in order, into groups of perGroup (see
// groupBounds) and returns each group's mean.
func groupMeans(samples []float64, perGroup int) []float64 {
	bounds := groupBounds(len(samples), perGroup)
	means := make([]float64, len(bounds))
	for j, b := range bounds {
		var sum float64
		for _, v := range samples[b[0]:b[1]] {
			sum += v
		}
		means[j] = sum / float64(b[1]-b[0])
	}
	return means
}

// groupBounds returns the [lo, hi) bounds of the groups of perGroup that n
// samples fall into, in order: the last group takes a remainder of at
// least half a group; a shorter one joins the group before it.
func groupBounds(n, perGroup int) [][2]int {
	perGroup = max(perGroup, 1)
	k := n / perGroup
	if rest := n - k*perGroup; k == 0 || 2*rest >= perGroup {
		k++
	}
	k = min(k, n)
	bounds := make([][2]int, k)
	for j := range k {
		bounds[j] = [2]int{j * perGroup, min((j+1)*perGroup, n)}
	}
	if k > 0 {
		bounds[k-1][1] = n
	}
	return bounds
}

// defaultMemIterations returns the memory pass length for iterations of
// meanNS each: enough for memPassTarget, within [least, memMaxIters].
func defaultMemIterations(meanNS float64, least int) int {
	if meanNS <= 0 || math.IsNaN(meanNS) {
		return memMaxIters
	}
	n := math.Ceil(float64(memPassTarget) / meanNS)
	return int(min(max(n, float64(least)), memMaxIters))
}

// memoryPass runs n iterations of s, untimed, with nothing but the
// iterations between two reads of the allocation counters, and returns the
// allocations and bytes per iteration and the RSS growth.
func memoryPass(ctx context.Context, s Subject, n int) (allocs, bytes float64, rss int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, 0, err
	}
	run := s.Workload.Run
	if s.Workload.Prepare != nil {
		s.Workload.Prepare(n)
	}
	runtime.GC()
	rss0 := residentBytes()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := range n {
		if err := run(ctx, i); err != nil {
			return 0, 0, 0, runError(ctx, s, "memory", i, err)
		}
	}
	runtime.ReadMemStats(&m1)
	rss1 := residentBytes()
	if err := verify(ctx, s, "memory"); err != nil {
		return 0, 0, 0, err
	}
	return float64(m1.Mallocs-m0.Mallocs) / float64(n), float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n), rss1 - rss0, nil
}

// peakHeapPass runs n iterations of s and returns the largest HeapAlloc
// read before the first and after every tenth of them.
func peakHeapPass(ctx context.Context, s Subject, n int) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.Workload.Prepare != nil {
		s.Workload.Prepare(n)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	peak := m.HeapAlloc
	for i := range n {
		if err := s.Workload.Run(ctx, i); err != nil {
			return 0, runError(ctx, s, "memory", i, err)
		}
		if (i+1)*memCheckpoint/n != i*memCheckpoint/n { // a tenth of n done
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	return peak, verify(ctx, s, "memory")
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
