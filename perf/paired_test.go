package perf

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSignedRankExact(t *testing.T) {
	tests := []struct {
		name string
		d    []float64
		want float64
	}{
		{"all of 10 positive", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 2.0 / 1024},
		{"all of 5 negative", []float64{-1, -2, -3, -4, -5}, 2.0 / 32},
		// W+ = 1+2+3 = 6 with n = 5: 13 of the 32 sign assignments have
		// W+ <= 6, 22 have W+ >= 6.
		{"mixed", []float64{0.1, 0.2, 0.3, -0.4, -0.5}, 2 * 13.0 / 32},
		{"zeros only", []float64{0, 0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := signedRankP(tt.d); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("signedRankP(%v) = %v; want %v", tt.d, got, tt.want)
			}
		})
	}
}

func TestSignedRankNormalApproximationAgreesWithExact(t *testing.T) {
	// At 25 pairs both are available: the approximation (with continuity
	// correction) must be close to the exact value.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		d := make([]float64, 25)
		for i := range d {
			d[i] = rng.NormFloat64() + 0.3
		}
		exact := signedRankP(d)
		// Force the approximation by adding a tie far from the others'
		// magnitudes: ranks barely move.
		approx := signedRankP(append(d, 1e9, -1e9))
		if math.Abs(exact-approx) > 0.05 {
			t.Errorf("exact %v vs approximate %v", exact, approx)
		}
	}
}

func TestMedianCIRank(t *testing.T) {
	tests := []struct {
		n            int
		wantK        int
		wantCoverage float64
	}{
		{5, 1, 1 - 2.0/32},
		{10, 2, 0.978515625},
		{20, 6, 0.958610535},
		{30, 10, 0.957226055},
	}
	for _, tt := range tests {
		k, c := medianCIRank(tt.n)
		if k != tt.wantK || math.Abs(c-tt.wantCoverage) > 1e-6 {
			t.Errorf("medianCIRank(%d) = %d, %.9f; want %d, %.9f", tt.n, k, c, tt.wantK, tt.wantCoverage)
		}
	}
}

// pairs simulates n paired group means: a drift shared by both halves of
// a pair, and independent noise of relative size noise; the variant's true
// ratio to the baseline is ratio.
func pairs(rng *rand.Rand, n int, ratio, noise float64) (base, variant []float64) {
	for range n {
		drift := 1000 * math.Exp(0.3*rng.NormFloat64())
		base = append(base, drift*math.Exp(noise*rng.NormFloat64()))
		variant = append(variant, ratio*drift*math.Exp(noise*rng.NormFloat64()))
	}
	return base, variant
}

func TestComparePairedCalibration(t *testing.T) {
	// A/A: identical distributions. A calibrated test calls about 5 % of
	// comparisons significant, and the interval covers 1 about 95 % of the
	// time, however large the drift between pairs.
	rng := rand.New(rand.NewPCG(7, 9))
	const reps = 2000
	var significant, covered int
	for range reps {
		b, v := pairs(rng, 20, 1, 0.05)
		p := ComparePaired(b, v)
		if p.Significant() {
			significant++
		}
		if p.RatioLow <= 1 && 1 <= p.RatioHigh {
			covered++
		}
	}
	if rate := float64(significant) / reps; rate > 0.065 || rate < 0.03 {
		t.Errorf("A/A false-positive rate = %.3f; want about 0.05", rate)
	}
	if rate := float64(covered) / reps; rate < 0.94 {
		t.Errorf("A/A interval coverage = %.3f; want at least 0.95", rate)
	}
}

func TestComparePairedPower(t *testing.T) {
	// A 5 % regression with 2 % noise per group mean is caught nearly
	// always, the interval excludes 1, and the headline is about −5 %.
	rng := rand.New(rand.NewPCG(3, 4))
	const reps = 500
	var caught int
	for range reps {
		b, v := pairs(rng, 20, 1.05, 0.02)
		p := ComparePaired(b, v)
		if p.Significant() && p.RatioLow > 1 {
			caught++
		}
		if pct, _, _ := p.Improvement(); pct > 0 || pct < -10 {
			t.Fatalf("improvement = %.1f%%; want about -5%%", pct)
		}
	}
	if rate := float64(caught) / reps; rate < 0.95 {
		t.Errorf("a 5%% regression was caught in %.3f of comparisons; want at least 0.95", rate)
	}
}

func TestComparePairedEdges(t *testing.T) {
	if p := ComparePaired(nil, nil); p.Pairs != 0 || p.P != 1 || p.Significant() {
		t.Errorf("no pairs: %+v; want zero pairs, P 1, not significant", p)
	}
	p := ComparePaired([]float64{100, 0, math.NaN(), 100}, []float64{50, 50, 50, 50, 50})
	if p.Pairs != 2 || p.MedianRatio != 0.5 {
		t.Errorf("pairs with a zero or NaN are left out: %+v; want 2 pairs at ratio 0.5", p)
	}
	if pct, lo, hi := p.Improvement(); pct != 50 || lo != 50 || hi != 50 {
		t.Errorf("Improvement = %v [%v, %v]; want 50 [50, 50]", pct, lo, hi)
	}
}
