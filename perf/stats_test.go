package perf

import (
	"math"
	"slices"
	"testing"
)

// seq returns lo, lo+1, ..., hi.
func seq(lo, hi int64) []int64 {
	var out []int64
	for v := lo; v <= hi; v++ {
		out = append(out, v)
	}
	return out
}

// repeat returns n copies of v.
func repeat(v int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestComputeStats(t *testing.T) {
	tests := []struct {
		name     string
		give     []int64
		executes int
		want     Stats
	}{
		{
			// n = 100, mean = 5050/100 = 50.5.
			// Σ(x−mean)² = n(n²−1)/12 = 100·9999/12 = 83325; /99 = 841.6667;
			// sd = √841.6667 = 29.011492.
			// t(0.975; 99) = 1.984217; sd/√100 = 2.9011492; half-width
			// 1.984217·2.9011492 = 5.756509 → CI [44.743491, 56.256509].
			// HDR percentile q = the sample of rank round(q·n) (exact below
			// 2048): median = rank 50 = 50 (not 50.5), p95 = 95, p99 = 99,
			// p99.9 = rank round(99.9) = 100.
			// OpsPerSec = 1e9/50.5 = 19801980.198; ×3 executes = 59405940.594.
			name:     "1..100",
			give:     seq(1, 100),
			executes: 3,
			want: Stats{
				MeanNS: 50.5, MedianNS: 50, P95NS: 95, P99NS: ptr(99), // p99.9 needs 1,000 samples
				StddevNS: 29.011492, MinNS: 1, MaxNS: 100,
				CI95LowNS: 44.743491, CI95HighNS: 56.256509,
				OpsPerSec: 19801980.198, ExecutesPerSec: 59405940.594,
			},
		},
		{
			// Ten samples of 500: no spread, so sd = 0 and the CI is the mean.
			name:     "constant",
			give:     repeat(500, 10),
			executes: 1,
			want: Stats{
				MeanNS: 500, MedianNS: 500, P95NS: 500, // p99 needs 100 samples
				MinNS: 500, MaxNS: 500, CI95LowNS: 500, CI95HighNS: 500,
				OpsPerSec: 2e6, ExecutesPerSec: 2e6,
			},
		},
		{
			// One sample: sd 0 by definition here, CI collapsed onto it.
			// 1e9/1234 = 810372.771; ×2 = 1620745.543.
			name:     "single",
			give:     []int64{1234},
			executes: 2,
			want: Stats{
				MeanNS: 1234, MedianNS: 1234, P95NS: 1234,
				MinNS: 1234, MaxNS: 1234, CI95LowNS: 1234, CI95HighNS: 1234,
				OpsPerSec: 810372.771, ExecutesPerSec: 1620745.543,
			},
		},
		{
			name:     "empty",
			give:     nil,
			executes: 5,
			want:     Stats{},
		},
		{
			// 990 × 1000 ns then 10 × 100000 ns (a 1 % tail), n = 1000.
			// mean = (990000 + 1000000)/1000 = 1990.
			// Σ(x−mean)² = 990·990² + 10·98010² = 970299000 + 96059601000
			// = 97029900000; /999 = 97127027.027; sd = 9855.304512.
			// t(0.975; 999) = 1.962341; sd/√1000 = 311.652093; half-width
			// 611.567823 → CI [1378.432177, 2601.567823].
			// p99 = rank round(990) = 1000: not the max, unlike the study's
			// p99 of 100 samples. p99.9 = rank 999 = 100000, whose HDR bucket
			// (64 ns wide above 65536) tops at 100031: clamped to max 100000.
			// OpsPerSec = 1e9/1990 = 502512.563.
			name:     "skewed",
			give:     append(repeat(1000, 990), repeat(100000, 10)...),
			executes: 1,
			want: Stats{
				MeanNS: 1990, MedianNS: 1000, P95NS: 1000, P99NS: ptr(1000), P999NS: ptr(100000),
				StddevNS: 9855.304512, MinNS: 1000, MaxNS: 100000,
				CI95LowNS: 1378.432177, CI95HighNS: 2601.567823,
				OpsPerSec: 502512.563, ExecutesPerSec: 502512.563,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			give := slices.Clone(tt.give)
			got := ComputeStats(give, tt.executes)
			if !slices.Equal(give, tt.give) {
				t.Errorf("ComputeStats modified its input")
			}
			fields := []struct {
				name      string
				got, want float64
			}{
				{"MeanNS", got.MeanNS, tt.want.MeanNS},
				{"MedianNS", got.MedianNS, tt.want.MedianNS},
				{"P95NS", got.P95NS, tt.want.P95NS},
				{"P99NS", orNaN(got.P99NS), orNaN(tt.want.P99NS)},
				{"P999NS", orNaN(got.P999NS), orNaN(tt.want.P999NS)},
				{"StddevNS", got.StddevNS, tt.want.StddevNS},
				{"MinNS", got.MinNS, tt.want.MinNS},
				{"MaxNS", got.MaxNS, tt.want.MaxNS},
				{"CI95LowNS", got.CI95LowNS, tt.want.CI95LowNS},
				{"CI95HighNS", got.CI95HighNS, tt.want.CI95HighNS},
				{"OpsPerSec", got.OpsPerSec, tt.want.OpsPerSec},
				{"ExecutesPerSec", got.ExecutesPerSec, tt.want.ExecutesPerSec},
				{"AllocsPerOp", got.AllocsPerOp, 0},
				{"BytesPerOp", got.BytesPerOp, 0},
			}
			for _, f := range fields {
				// The hand computations are rounded to about 1e-9 relative;
				// NaN stands for a percentile not given.
				if math.IsNaN(f.got) != math.IsNaN(f.want) || math.Abs(f.got-f.want) > 1e-6*max(1, math.Abs(f.want)) {
					t.Errorf("ComputeStats(%s).%s = %.6f, want %.6f", tt.name, f.name, f.got, f.want)
				}
			}
			if got.PeakHeapBytes != 0 || got.RSSDeltaBytes != 0 {
				t.Errorf("ComputeStats(%s) set memory fields: %d, %d", tt.name, got.PeakHeapBytes, got.RSSDeltaBytes)
			}
		})
	}
}

// orNaN returns *p, or NaN for nil.
func orNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func TestComputeStatsClampsOutOfRange(t *testing.T) {
	// Samples outside the histogram's 1 ns .. 1 h still count exactly for
	// mean, min and max; percentiles stay within [min, max].
	got := ComputeStats([]int64{0, 2 * 3600e9}, 1)
	if got.MinNS != 0 || got.MaxNS != 2*3600e9 || got.MeanNS != 3600e9 {
		t.Errorf("ComputeStats(0, 2h) = min %v max %v mean %v, want 0, 7.2e12, 3.6e12", got.MinNS, got.MaxNS, got.MeanNS)
	}
	if got.P95NS > got.MaxNS || got.MedianNS < got.MinNS {
		t.Errorf("ComputeStats(0, 2h) percentiles out of range: median %v, p95 %v", got.MedianNS, got.P95NS)
	}
}

func TestStudentT975(t *testing.T) {
	tests := []struct {
		give int
		want float64
	}{
		{give: 1, want: 12.7062},
		{give: 10, want: 2.2281},
		{give: 30, want: 2.0423},
		// Exact values: 2.0395 (31), 2.0086 (50), 1.9842 (99), 1.9623 (999).
		{give: 31, want: 2.0395},
		{give: 50, want: 2.0086},
		{give: 99, want: 1.9842},
		{give: 999, want: 1.9623},
		{give: 1_000_000, want: 1.9600},
	}
	for _, tt := range tests {
		if got := studentT975(tt.give); math.Abs(got-tt.want) > 1e-4 {
			t.Errorf("studentT975(%d) = %.5f, want %.4f", tt.give, got, tt.want)
		}
	}
}

func TestImprovement(t *testing.T) {
	tests := []struct {
		giveBase, giveVariant float64
		want                  float64
	}{
		{giveBase: 100, giveVariant: 80, want: 20},
		{giveBase: 100, giveVariant: 120, want: -20},
		{giveBase: 50, giveVariant: 50, want: 0},
		{giveBase: 100, giveVariant: 0, want: 100},
		{giveBase: 60000, giveVariant: 30000, want: 50},
		{giveBase: 0, giveVariant: 0, want: 0},
		{giveBase: 0, giveVariant: 2, want: -200},
		{giveBase: 0, giveVariant: 0.5, want: -50},
	}
	for _, tt := range tests {
		if got := Improvement(tt.giveBase, tt.giveVariant); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Improvement(%v, %v) = %v, want %v", tt.giveBase, tt.giveVariant, got, tt.want)
		}
	}
}
