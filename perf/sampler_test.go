package perf

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// testConfig is a short measurement: the whole file stays within seconds.
var testConfig = SampleConfig{
	Warmup:     5 * time.Millisecond,
	Duration:   50 * time.Millisecond,
	MinBatch:   10 * time.Microsecond,
	MinRounds:  20,
	MinSamples: 50,
}

// counter returns a workload whose iterations only count.
func counter() *Workload {
	var n int
	return &Workload{
		Run: func(context.Context, int) error {
			n++
			return nil
		},
	}
}

// sleeper returns a workload whose iterations sleep d.
func sleeper(d time.Duration) *Workload {
	return &Workload{
		Run: func(context.Context, int) error {
			time.Sleep(d)
			return nil
		},
	}
}

// allocSink keeps the allocating workload's objects on the heap.
var allocSink *[64]byte

// allocator returns a workload allocating one 64-byte object per iteration.
func allocator() *Workload {
	return &Workload{
		Run: func(context.Context, int) error {
			allocSink = new([64]byte)
			return nil
		},
	}
}

func TestSampleBatching(t *testing.T) {
	tests := []struct {
		name        string
		give        *Workload
		wantBatched bool
		wantMinNS   float64 // least plausible mean per iteration
	}{
		{name: "counter", give: counter(), wantBatched: true},
		{name: "sleep 200µs", give: sleeper(200 * time.Microsecond), wantBatched: false, wantMinNS: 200_000},
	}
	subjects := make([]Subject, len(tests))
	for i, tt := range tests {
		subjects[i] = Subject{Variant: tt.name, Workload: tt.give}
	}
	results, err := Sample(context.Background(), subjects, 3, testConfig, nil)
	if err != nil {
		t.Fatalf("Sample() error = %v", err)
	}
	if len(results) != len(tests) {
		t.Fatalf("Sample() returned %d results, want %d", len(results), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := results[i]
			if r.Variant != tt.name || r.Scenario != "" || r.ExecutesPerIteration != 3 {
				t.Errorf("result = variant %q scenario %q executes %d, want %q, \"\", 3", r.Variant, r.Scenario, r.ExecutesPerIteration, tt.name)
			}
			if r.Samples < testConfig.MinSamples || len(r.Raw) != r.Samples {
				t.Errorf("Samples = %d, len(Raw) = %d, want equal and >= %d", r.Samples, len(r.Raw), testConfig.MinSamples)
			}
			if r.Samples == 0 || r.Iterations%int64(r.Samples) != 0 {
				t.Fatalf("Iterations = %d, want a multiple of Samples = %d", r.Iterations, r.Samples)
			}
			b := r.Iterations / int64(r.Samples)
			if b&(b-1) != 0 {
				t.Errorf("batch size = %d, want a power of two", b)
			}
			if gotBatched := b > 1; gotBatched != tt.wantBatched {
				t.Errorf("batch size = %d, want batched %v", b, tt.wantBatched)
			}
			if n := len(r.BatchMeans); n < 10 || n > 40 || r.RoundsPerGroup < 1 {
				t.Errorf("len(BatchMeans) = %d of %d rounds; want 10..40 (about 20)", n, r.RoundsPerGroup)
			}
			if r.Stats.MeanNS <= 0 || r.Stats.MeanNS < tt.wantMinNS {
				t.Errorf("Stats.MeanNS = %v, want > 0 and >= %v", r.Stats.MeanNS, tt.wantMinNS)
			}
			// The median and percentiles come from the tail pass, timed
			// one by one: ordered among themselves, not with the batches.
			if r.Stats.MinNS > r.Stats.MaxNS || r.Stats.MedianNS > r.Stats.P95NS || r.Stats.TailSamples < 1 {
				t.Errorf("Stats = min %v max %v, median %v p95 %v from %d tail samples; want ordered, some tail", r.Stats.MinNS, r.Stats.MaxNS, r.Stats.MedianNS, r.Stats.P95NS, r.Stats.TailSamples)
			}
			if want := r.Stats.OpsPerSec * 3; math.Abs(r.Stats.ExecutesPerSec-want) > 1e-9*want {
				t.Errorf("Stats.ExecutesPerSec = %v, want %v", r.Stats.ExecutesPerSec, want)
			}
			t.Logf("B = %d, samples = %d, mean %.1f ns, median %.0f ns, tail %d, batch means %d",
				b, r.Samples, r.Stats.MeanNS, r.Stats.MedianNS, r.Stats.TailSamples, len(r.BatchMeans))
		})
	}
}

// tracedWorkload is a workload recording its batches into a shared trace and
// checking that Prepare, and progress, never run inside a batch.
type tracedWorkload struct {
	t        *testing.T
	name     string
	trace    *[]string // batch starts, by name, while sampling
	sampling *bool     // the last progress phase was "sampling"
	open     *bool     // some batch has begun and not finished
	prepared int
	ran      int
	count    int
}

func (w *tracedWorkload) workload() *Workload {
	return &Workload{
		Prepare: func(n int) {
			if *w.open {
				w.t.Errorf("%s: Prepare(%d) inside an open batch", w.name, n)
			}
			// Slow enough that timing it would show: 300µs per batch.
			time.Sleep(300 * time.Microsecond)
			w.prepared, w.ran = n, 0
			if *w.sampling {
				*w.trace = append(*w.trace, w.name)
			}
		},
		Run: func(_ context.Context, i int) error {
			if i != w.ran || i >= w.prepared {
				w.t.Errorf("%s: Run(%d) after %d of %d prepared iterations", w.name, i, w.ran, w.prepared)
			}
			w.ran++
			*w.open = w.ran < w.prepared
			w.count++
			return nil
		},
	}
}

func TestSampleInterleavesAndNeverTimesPrepare(t *testing.T) {
	var (
		trace         []string
		sampling      bool
		open          bool
		phases        []string
		lastDone      float64
		afterMemory   []string
		memoryStarted bool
	)
	a := &tracedWorkload{t: t, name: "a", trace: &trace, sampling: &sampling, open: &open}
	b := &tracedWorkload{t: t, name: "b", trace: &trace, sampling: &sampling, open: &open}
	progress := func(done float64, phase string) {
		if open {
			t.Errorf("progress(%v, %q) inside an open batch", done, phase)
		}
		if done < lastDone || done > 1 {
			t.Errorf("progress(%v, %q) after %v, want non-decreasing within 0..1", done, phase, lastDone)
		}
		lastDone = done
		if memoryStarted {
			afterMemory = append(afterMemory, phase)
		}
		memoryStarted = memoryStarted || phase == "memory"
		sampling = phase == "sampling"
		if len(phases) == 0 || phases[len(phases)-1] != phase {
			phases = append(phases, phase)
		}
	}
	subjects := []Subject{{Variant: "a", Workload: a.workload()}, {Variant: "b", Workload: b.workload()}}
	results, err := Sample(context.Background(), subjects, 1, testConfig, progress)
	if err != nil {
		t.Fatalf("Sample() error = %v", err)
	}

	wantPhases := "warm-up a,calibrate a,warm-up b,calibrate b,sampling,tails,memory,done"
	if got := strings.Join(phases, ","); got != wantPhases {
		t.Errorf("progress phases = %s, want %s", got, wantPhases)
	}
	if len(afterMemory) != 1 || afterMemory[0] != "done" {
		t.Errorf("progress after \"memory\" = %q, want only \"done\"", afterMemory)
	}
	if lastDone != 1 {
		t.Errorf("last progress = %v, want 1", lastDone)
	}

	// Rounds: a random order on even rounds, reversed on odd ones.
	if len(trace)%2 != 0 || len(trace)/2 != results[0].Samples || results[0].Samples != results[1].Samples {
		t.Fatalf("%d batches while sampling for %d and %d samples, want 2 per round", len(trace), results[0].Samples, results[1].Samples)
	}
	var forward, reverse int
	for r := 0; r < len(trace)/2; r++ {
		got := trace[2*r] + trace[2*r+1]
		if r%2 == 1 {
			if prev := trace[2*r-2] + trace[2*r-1]; got != prev[1:]+prev[:1] {
				t.Errorf("round %d order = %s after %s, want it reversed", r, got, prev)
			}
		}
		switch got {
		case "ab":
			forward++
		case "ba":
			reverse++
		default:
			t.Errorf("round %d order = %s, want each subject once", r, got)
		}
	}
	if forward == 0 || reverse == 0 {
		t.Errorf("rounds: %d forward, %d reverse, want both", forward, reverse)
	}

	// Prepare sleeps 300µs per batch: were it timed, an iteration would cost
	// at least 300µs / B, and B would be 1. Counting costs nanoseconds.
	for _, r := range results {
		if r.Stats.MeanNS > 20_000 {
			t.Errorf("%s: Stats.MeanNS = %v, want the Run cost only (< 20µs)", r.Variant, r.Stats.MeanNS)
		}
		t.Logf("%s: %d rounds, B = %d, mean %.1f ns", r.Variant, r.Samples, r.Iterations/int64(r.Samples), r.Stats.MeanNS)
	}
}

func TestSampleMemory(t *testing.T) {
	tests := []struct {
		name       string
		give       *Workload
		giveIters  int
		wantAllocs float64
		wantBytes  float64
	}{
		{name: "alloc 64B", give: allocator(), wantAllocs: 1, wantBytes: 64},
		{name: "alloc 64B fixed iterations", give: allocator(), giveIters: 5000, wantAllocs: 1, wantBytes: 64},
		{name: "counter", give: counter(), wantAllocs: 0, wantBytes: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig
			cfg.MemIterations = tt.giveIters
			results, err := Sample(context.Background(), []Subject{{Variant: tt.name, Workload: tt.give}}, 1, cfg, nil)
			if err != nil {
				t.Fatalf("Sample() error = %v", err)
			}
			st := results[0].Stats
			if math.Abs(st.AllocsPerOp-tt.wantAllocs) > 0.05 {
				t.Errorf("AllocsPerOp = %v, want %v ± 0.05", st.AllocsPerOp, tt.wantAllocs)
			}
			if math.Abs(st.BytesPerOp-tt.wantBytes) > 0.05*64 {
				t.Errorf("BytesPerOp = %v, want %v ± 3.2", st.BytesPerOp, tt.wantBytes)
			}
			if st.PeakHeapBytes == 0 {
				t.Errorf("PeakHeapBytes = 0, want the heap seen")
			}
			t.Logf("allocs/op %.4f, bytes/op %.2f, peak heap %d B, RSS delta %d B", st.AllocsPerOp, st.BytesPerOp, st.PeakHeapBytes, st.RSSDeltaBytes)
		})
	}
}

var errBoom = errors.New("boom")

func TestSampleRunError(t *testing.T) {
	tests := []struct {
		name      string
		givePhase string // progress phase (prefix) in which iteration 3 fails
		wantMsg   string
	}{
		{name: "warm-up", givePhase: "warm-up broken", wantMsg: "variant broken: warm-up: iteration 3: boom"},
		{name: "calibration", givePhase: "calibrate broken", wantMsg: "variant broken: calibration: iteration 3: boom"},
		{name: "sampling", givePhase: "sampling", wantMsg: "variant broken: sampling: iteration 3: boom"},
		{name: "memory", givePhase: "memory", wantMsg: "variant broken: memory: iteration 3: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var phase string
			broken := &Workload{Run: func(_ context.Context, i int) error {
				if i == 3 && strings.HasPrefix(phase, tt.givePhase) {
					return errBoom
				}
				return nil
			}}
			subjects := []Subject{{Variant: "fine", Workload: counter()}, {Variant: "broken", Workload: broken}}
			results, err := Sample(context.Background(), subjects, 1, testConfig, func(_ float64, p string) { phase = p })
			if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), tt.wantMsg) || results != nil {
				t.Errorf("Sample() = %d results, %v, want nil, %q wrapping errBoom", len(results), err, tt.wantMsg)
			}
		})
	}
}

func TestSampleCancel(t *testing.T) {
	tests := []struct {
		name      string
		giveSetup func(cancel context.CancelFunc) Progress
		wantErr   error
	}{
		{
			name: "before",
			giveSetup: func(cancel context.CancelFunc) Progress {
				cancel()
				return nil
			},
			wantErr: context.Canceled,
		},
		{
			name: "while sampling",
			giveSetup: func(cancel context.CancelFunc) Progress {
				return func(_ float64, phase string) {
					if phase == "sampling" {
						cancel()
					}
				}
			},
			wantErr: context.Canceled,
		},
		{
			name: "while calibrating",
			giveSetup: func(cancel context.CancelFunc) Progress {
				return func(_ float64, phase string) {
					if strings.HasPrefix(phase, "calibrate") {
						cancel()
					}
				}
			},
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			progress := tt.giveSetup(cancel)
			cfg := testConfig
			cfg.Duration = 10 * time.Second // cancellation, not the budget, must end it
			start := time.Now()
			subjects := []Subject{{Variant: "a", Workload: counter()}, {Variant: "b", Workload: sleeper(50 * time.Microsecond)}}
			results, err := Sample(ctx, subjects, 1, cfg, progress)
			if !errors.Is(err, tt.wantErr) || results != nil {
				t.Errorf("Sample() = %d results, %v, want nil, %v", len(results), err, tt.wantErr)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Sample() returned after %v, want promptly", d)
			}
		})
	}
}

func TestSampleInvalid(t *testing.T) {
	tests := []struct {
		name    string
		give    []Subject
		wantErr bool
	}{
		{name: "no subjects", give: nil, wantErr: false},
		{name: "nil workload", give: []Subject{{Variant: "x"}}, wantErr: true},
		{name: "nil run", give: []Subject{{Variant: "x", Workload: &Workload{}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, err := Sample(context.Background(), tt.give, 1, testConfig, nil)
			if (err != nil) != tt.wantErr || len(results) != 0 {
				t.Errorf("Sample() = %d results, %v, want none, error %v", len(results), err, tt.wantErr)
			}
		})
	}
}

func TestGroupMeans(t *testing.T) {
	// floats returns 1, 2, ..., n.
	floats := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(i + 1)
		}
		return out
	}
	tests := []struct {
		name     string
		give     []float64
		perGroup int
		want     []float64
	}{
		{"even", floats(6), 2, []float64{1.5, 3.5, 5.5}},
		// 7 by 2: a remainder of one is half a group: its own group.
		{"remainder of half a group", floats(7), 2, []float64{1.5, 3.5, 5.5, 7}},
		// 7 by 3: a remainder of one is under half: it joins the last group.
		{"short remainder", floats(7), 3, []float64{2, 5.5}},
		{"fewer than a group", floats(2), 5, []float64{1.5}},
		{"one per group", floats(3), 1, []float64{1, 2, 3}},
		{"empty", nil, 4, []float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := groupMeans(tt.give, tt.perGroup); !slices.Equal(got, tt.want) {
				t.Errorf("groupMeans(%v, %d) = %v; want %v", tt.give, tt.perGroup, got, tt.want)
			}
		})
	}
}

func TestRoundsPerGroup(t *testing.T) {
	cfg := SampleConfig{Duration: 2 * time.Second, MinRounds: 20, MinSamples: 200, Groups: 20}
	tests := []struct {
		name  string
		batch []int
		cost  []time.Duration
		want  int
	}{
		// 20 µs rounds: 100,000 rounds in 2 s, 5,000 per group.
		{"fast", []int{1, 1}, []time.Duration{10 * time.Microsecond, 10 * time.Microsecond}, 5000},
		// 1 ms rounds: 2,000 rounds, 100 per group.
		{"medium", []int{1, 1}, []time.Duration{500 * time.Microsecond, 500 * time.Microsecond}, 100},
		// 100 ms rounds: the cap allows 60 rounds less the warm-ups, 57: 2 per group.
		{"slow", []int{1, 1}, []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}, 2},
		// 1 s rounds: the minimum of 20 rounds, 1 per group.
		{"very slow", []int{1, 1}, []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}, 1},
	}
	for _, tt := range tests {
		if got := roundsPerGroup(cfg, tt.batch, tt.cost); got != tt.want {
			t.Errorf("%s: roundsPerGroup = %d; want %d", tt.name, got, tt.want)
		}
	}
}

func TestDefaultMemIterations(t *testing.T) {
	tests := []struct {
		give float64
		want int
	}{
		{give: 60_000, want: 334},        // ceil(20ms / 60µs)
		{give: 20e6, want: 20},           // one iteration fills 20ms: at least 20
		{give: 1e9, want: 20},            // slower still
		{give: 1, want: memMaxIters},     // 20M iterations: capped
		{give: 0, want: memMaxIters},     // unknown cost
		{give: 1000, want: 20_000},       // exactly 20ms
		{give: 19.07, want: memMaxIters}, // 1048768 > 1<<20
	}
	for _, tt := range tests {
		if got := defaultMemIterations(tt.give, 20); got != tt.want {
			t.Errorf("defaultMemIterations(%v, 20) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

func TestParseStatmResident(t *testing.T) {
	tests := []struct {
		give    string
		want    int64
		wantErr bool
	}{
		{give: "1147 263 227 1 0 114 0\n", want: 263},
		{give: "1147", wantErr: true},
		{give: "", wantErr: true},
		{give: "1 x 3", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseStatmResident(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseStatmResident(%q) = %d, %v, want %d, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
	if residentBytes() < 0 {
		t.Errorf("residentBytes() < 0")
	}
}
