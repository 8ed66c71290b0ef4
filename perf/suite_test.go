package perf

import (
	"strings"
	"testing"
)

func result(variant string, mean, allocs, bytes float64, means ...float64) Result {
	return Result{Variant: variant, Stats: Stats{MeanNS: mean, AllocsPerOp: allocs, BytesPerOp: bytes}, BatchMeans: means}
}

// spread returns n batch means around center.
func spread(center float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = center + float64(i%5) - 2
	}
	return out
}

func TestCompareAndCheck(t *testing.T) {
	sc := Scenario{ScenarioInfo: info(ScenarioCache), Executes: 2}
	tests := []struct {
		name      string
		suite     string
		give      Result
		wantMet   bool
		wantFails []string
	}{
		{"component meets its target", SuiteDesigned, result("cache-optimization", 60, 4, 100, spread(60, 20)...), true, nil},
		{"component misses its target", SuiteDesigned, result("cache-optimization", 90, 4, 100, spread(90, 20)...), false, []string{"misses its target: +10.0% mean_ns"}},
		{"component off target is only gated on overhead", SuiteSeed, result("cache-optimization", 90, 4, 100, spread(90, 20)...), false, nil},
		{"slower elsewhere", SuiteSeed, result("naive", 200, 4, 100, spread(200, 20)...), false, []string{"significantly slower"}},
		{"slower but within 3%", SuiteSeed, result("naive", 102, 4, 100, spread(102, 20)...), false, nil},
		{"slower but not significant", SuiteSeed, result("naive", 150, 4, 100, 100, 200), false, nil},
		{"one more alloc", SuiteSeed, result("telemetry", 100, 6, 100, spread(100, 20)...), false, []string{"allocates more"}},
		{"more bytes", SuiteSeed, result("telemetry", 100, 4, 110, spread(100, 20)...), false, []string{"uses more memory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := result(VariantBaseline, 100, 4, 100, spread(100, 20)...)
			cs := compare(sc, []Result{base, tt.give})
			if len(cs) != 3 {
				t.Fatalf("compare made %d comparisons; want 3 (one per metric)", len(cs))
			}
			if cs[0].Metric != MetricMeanNS || cs[0].TargetPct == nil || *cs[0].TargetPct != 25 || cs[0].Met != tt.wantMet {
				t.Errorf("mean_ns comparison = %+v; want target 25, met %v", cs[0], tt.wantMet)
			}
			if cs[1].TargetPct != nil || cs[2].TargetPct != nil {
				t.Errorf("allocs/bytes comparisons carry a target; want none on a latency scenario")
			}
			fails := Check(&Report{Suite: tt.suite, Comparisons: cs})
			if len(fails) != len(tt.wantFails) {
				t.Fatalf("Check = %v; want %d failure(s) %q", fails, len(tt.wantFails), tt.wantFails)
			}
			for i, want := range tt.wantFails {
				if !strings.Contains(fails[i].String(), want) {
					t.Errorf("failure %d = %q; want %q", i, fails[i], want)
				}
			}
		})
	}
}

func TestLookupVariant(t *testing.T) {
	tests := []struct {
		give      string
		wantBuilt bool
		wantErr   bool
	}{
		{"baseline", true, false},
		{"naive", true, false},
		{"optimized", false, false},
		{"context-manager", false, false},
		{"high-allocation", false, false},
		{"turbo", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			_, built, err := LookupVariant(tt.give)
			if built != tt.wantBuilt || (err != nil) != tt.wantErr {
				t.Errorf("LookupVariant(%q) = built %v, err %v; want %v, error %v", tt.give, built, err, tt.wantBuilt, tt.wantErr)
			}
		})
	}
}

func TestNaiveStatsGrowWithHistory(t *testing.T) {
	// The negative control's per-record work is O(history): recomputing at a
	// full history touches 1,000 values, at an empty one a single value.
	n := &naiveExecutor{keep: naiveHistoryCap, pinned: true}
	n.resetHistory()
	if got := len(n.metrics["execute_ns"]); got != naiveHistoryCap {
		t.Fatalf("history = %d; want %d", got, naiveHistoryCap)
	}
	n.record("execute_ns", 5)
	if got := len(n.metrics["execute_ns"]); got != naiveHistoryCap {
		t.Errorf("history after a record = %d; want it capped at %d", got, naiveHistoryCap)
	}
	if s := n.stats["execute_ns"]; s.mean == 0 || s.p99 == 0 {
		t.Errorf("stats = %+v; want them recomputed", s)
	}
}
