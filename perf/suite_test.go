package perf

import (
	"slices"
	"strings"
	"testing"
)

func result(variant string, allocs, bytes float64, means ...float64) Result {
	return Result{
		Variant: variant, BatchMeans: means,
		Stats:        Stats{MeanNS: median(sortedCopy(means)), AllocsPerOp: allocs, BytesPerOp: bytes},
		AllocsPasses: []float64{allocs, allocs, allocs}, BytesPasses: []float64{bytes, bytes * 1.002, bytes},
	}
}

// spread returns n group means around center, each ±2 % at most, in an
// order that pairs them with the same spread's groups.
func spread(center float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = center * (1 + 0.01*float64(i%5-2))
	}
	return out
}

// shifted returns means scaled by f, with a little noise of its own so
// that the paired ratios are not all equal.
func shifted(means []float64, f float64) []float64 {
	out := make([]float64, len(means))
	for i, m := range means {
		out[i] = m * f * (1 + 0.002*float64(i%3-1))
	}
	return out
}

func TestCompareAndCheck(t *testing.T) {
	sc := Scenario{ScenarioInfo: info(ScenarioCache), Executes: 2}
	base := spread(100, 20)
	tests := []struct {
		name       string
		suite      string
		give       Result
		wantMet    bool
		wantStatus Status
		wantFails  []string
	}{
		{"component meets its target", SuiteDesigned, result("cache-optimization", 4, 100, shifted(base, 0.6)...), true, StatusMet, nil},
		{"component misses its target", SuiteDesigned, result("cache-optimization", 4, 100, shifted(base, 0.9)...), false, StatusMissed, []string{"misses its target: +10.0%"}},
		{"component on the seed shapes gets the budget", SuiteSeed, result("cache-optimization", 4, 100, shifted(base, 0.9)...), false, StatusBetter, nil},
		{"component on the seed shapes is gated", SuiteSeed, result("cache-optimization", 4, 100, shifted(base, 1.2)...), false, StatusRegression, []string{"slower than the baseline beyond the 3% budget"}},
		{"slower elsewhere", SuiteSeed, result("naive", 4, 100, shifted(base, 2)...), false, StatusRegression, []string{"slower than the baseline"}},
		{"slower but within 3%", SuiteSeed, result("naive", 4, 100, shifted(base, 1.02)...), false, StatusWorse, nil},
		{"slower but the interval reaches the budget", SuiteSeed, result("naive", 4, 100, append(shifted(base[:10], 1.1), shifted(base[10:], 0.98)...)...), false, "", nil},
		{"identical", SuiteSeed, result(VariantAA, 4, 100, shifted(base, 1)...), false, StatusSame, nil},
		{"one more alloc", SuiteSeed, result("telemetry", 6, 100, shifted(base, 1)...), false, StatusSame, []string{"allocates more"}},
		{"more bytes", SuiteSeed, result("telemetry", 4, 110, shifted(base, 1)...), false, StatusSame, []string{"uses more memory"}},
		{"bytes within the baseline's pass range", SuiteSeed, result("telemetry", 4, 100.1, shifted(base, 1)...), false, StatusSame, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := compare(tt.suite, sc, []Result{result(VariantBaseline, 4, 100, base...), tt.give})
			if len(cs) != 3 {
				t.Fatalf("compare made %d comparisons; want 3 (one per metric)", len(cs))
			}
			time := cs[0]
			if time.Metric != MetricMeanNS || time.Met != tt.wantMet {
				t.Errorf("mean_ns comparison = %+v; want met %v", time, tt.wantMet)
			}
			if tt.wantStatus != "" && time.Status != tt.wantStatus {
				t.Errorf("status = %q; want %q", time.Status, tt.wantStatus)
			}
			if time.LowPct > time.ImprovementPct || time.ImprovementPct > time.HighPct {
				t.Errorf("interval [%v, %v] does not hold the change %v", time.LowPct, time.HighPct, time.ImprovementPct)
			}
			wantTarget := tt.suite == SuiteDesigned && tt.give.Variant == "cache-optimization"
			if (time.TargetPct != nil) != wantTarget || cs[1].TargetPct != nil || cs[2].TargetPct != nil {
				t.Errorf("targets = %v, %v, %v; want one on time only for the component on its designed workload", time.TargetPct, cs[1].TargetPct, cs[2].TargetPct)
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

func TestJudgeCostTarget(t *testing.T) {
	// A 20 ns budget per execute on a 1 µs execute: 1 % is 10 ns.
	sc := ScenarioInfo{ID: "success", TargetMaxCostNS: 20, TargetMetric: MetricMeanNS, Component: "circuit-breaker"}
	for _, tt := range []struct {
		lowPct float64
		met    bool
	}{{-1, true}, {-2, true}, {-2.5, false}} {
		c := Comparison{Variant: "circuit-breaker", Metric: MetricMeanNS, ImprovementPct: tt.lowPct + 0.5, LowPct: tt.lowPct, HighPct: tt.lowPct + 1}
		judge(SuiteDesigned, sc, 1, 1000, &c, nil)
		if c.Met != tt.met || c.CostNS == nil || *c.CostNS != -tt.lowPct*10 {
			t.Errorf("low %v%%: met %v, cost %v; want met %v, cost %v ns", tt.lowPct, c.Met, c.CostNS, tt.met, -tt.lowPct*10)
		}
	}
}

func TestCheckFailsWhenNothingWasCompared(t *testing.T) {
	r := &Report{Suite: SuiteSeed, NotBuilt: []string{"optimized", "telemetry"}, Config: RunConfig{Requested: []string{"optimized"}}}
	fails := Check(r)
	if len(fails) != 2 || !strings.Contains(fails[0].String(), "optimized: not built") || !strings.Contains(fails[1].String(), "compared nothing") {
		t.Errorf("Check = %v; want the unbuilt request and the empty comparison to fail", fails)
	}
}

func TestLookupVariant(t *testing.T) {
	tests := []struct {
		give      string
		wantBuilt bool
		wantErr   bool
	}{
		{"baseline", true, false},
		{"baseline-aa", true, false},
		{"naive", true, false},
		{"optimized", true, false},
		{"context-manager", true, false},
		{"high-allocation", true, false},
		{"all", false, true}, // the preset's name in the suite is optimized
		{"auto", true, false},
		{"automatic-optimization", true, false},
		{"error-handling", true, false},
		{"circuit-breaker", true, false},
		{"real-time", true, false},
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

func TestJudgeAuto(t *testing.T) {
	sc := ScenarioInfo{ID: "cache", TargetPct: 25, TargetMetric: MetricMeanNS, Component: "cache-optimization"}
	ref := &Comparison{Variant: "cache-optimization", Metric: MetricMeanNS, ImprovementPct: 50, Significant: true}
	tests := []struct {
		name     string
		suite    string
		give     Comparison
		ref      *Comparison
		wantMet  bool
		wantGate string
	}{
		{"80 % of the reference", SuiteDesigned, Comparison{ImprovementPct: 40, LowPct: 35, HighPct: 45, Significant: true}, ref, true, ""},
		{"below 80 %", SuiteDesigned, Comparison{ImprovementPct: 39, LowPct: 35, HighPct: 45, Significant: true}, ref, false, "below 80% of the reference's"},
		{"interval not clear of 0", SuiteDesigned, Comparison{ImprovementPct: 45, LowPct: -1, HighPct: 60, Significant: true}, ref, false, "not clearly better"},
		// Five groups: Wilcoxon cannot reach p < 0.05, the interval can.
		{"interval clear, few groups", SuiteDesigned, Comparison{ImprovementPct: 100, LowPct: 99.9, HighPct: 100}, ref, true, ""},
		{"no reference", SuiteMatrix, Comparison{ImprovementPct: 45, LowPct: 40, HighPct: 50, Significant: true}, nil, false, "no reference"},
		{"seed keeps the budget", SuiteSeed, Comparison{ImprovementPct: -2, LowPct: -4, HighPct: -1, Significant: true}, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.give
			c.Variant, c.Metric = VariantAuto, MetricMeanNS
			judge(tt.suite, sc, 1, 1000, &c, tt.ref)
			if c.Met != tt.wantMet || !strings.Contains(c.Gate, tt.wantGate) || (tt.wantGate == "") != (c.Gate == "") {
				t.Errorf("judge = met %v, gate %q; want met %v, gate containing %q", c.Met, c.Gate, tt.wantMet, tt.wantGate)
			}
			if tt.suite != SuiteSeed && tt.ref != nil && (c.ReferencePct == nil || *c.ReferencePct != 50 || c.Reference != "cache-optimization") {
				t.Errorf("reference = %q %v; want cache-optimization at +50%%", c.Reference, c.ReferencePct)
			}
		})
	}
}

func TestJudgeAutoBound(t *testing.T) {
	// Where the target is a bound, auto meets the same bound.
	sc := ScenarioInfo{ID: "concurrent-cpu", TargetPct: -3, TargetMetric: MetricMeanNS, Component: "adaptive-resource-manager"}
	for _, tt := range []struct {
		low  float64
		want bool
	}{{-2, true}, {-5, false}} {
		c := Comparison{Variant: "automatic-optimization", Metric: MetricMeanNS, ImprovementPct: tt.low + 1, LowPct: tt.low, HighPct: tt.low + 2}
		judge(SuiteMatrix, sc, 1, 1000, &c, nil)
		if c.Met != tt.want || c.Reference != "" {
			t.Errorf("low %v%%: met %v, reference %q; want met %v, no reference", tt.low, c.Met, c.Reference, tt.want)
		}
	}
}

func TestMatrixVariants(t *testing.T) {
	got := MatrixVariants()
	for _, name := range got {
		if _, built, err := LookupVariant(name); !built || err != nil {
			t.Errorf("LookupVariant(%q) = built %v, err %v; want built", name, built, err)
		}
	}
	for _, want := range []string{"object-pool", "circuit-breaker", "real-time", VariantOptimized, VariantAuto, VariantAA} {
		if !slices.Contains(got, want) {
			t.Errorf("MatrixVariants() = %v; want %q in it", got, want)
		}
	}
	for _, not := range []string{VariantNaive, VariantBaseline, "automatic-optimization"} {
		if slices.Contains(got, not) {
			t.Errorf("MatrixVariants() = %v; want no %q", got, not)
		}
	}
}

func TestReferenceComponents(t *testing.T) {
	scs := designedScenarios(SuiteDesigned)
	got := referenceComponents(scs)
	want := []string{"telemetry", "object-pool", "adaptive-resource-manager", "cache-optimization", "context-manager", "error-handling", "circuit-breaker"}
	if !slices.Equal(got, want) {
		t.Errorf("referenceComponents = %v; want %v", got, want)
	}
}

func TestPlanVariants(t *testing.T) {
	names := func(vs []Variant) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.Name)
		}
		return out
	}
	designed := designedScenarios(SuiteDesigned)
	tests := []struct {
		name     string
		opts     Options
		wantVars []string
		wantRefs []string
	}{
		{"default", Options{Suite: SuiteDesigned}, []string{VariantBaseline, VariantOptimized}, nil},
		{
			"auto brings its references",
			Options{Suite: SuiteDesigned, Variants: []string{VariantAuto, "telemetry"}},
			[]string{VariantBaseline, VariantAuto, "telemetry", "object-pool", "adaptive-resource-manager", "cache-optimization", "context-manager", "error-handling", "circuit-breaker"},
			[]string{"object-pool", "adaptive-resource-manager", "cache-optimization", "context-manager", "error-handling", "circuit-breaker"},
		},
		{"seed keeps auto alone", Options{Suite: SuiteSeed, Variants: []string{VariantAuto}}, []string{VariantBaseline, VariantAuto}, nil},
		{"baseline is the A/A control", Options{Suite: SuiteSeed, Variants: []string{VariantBaseline}}, []string{VariantBaseline, VariantAA}, nil},
		{"matrix", Options{Suite: SuiteMatrix, Variants: []string{VariantNaive}}, append([]string{VariantBaseline}, MatrixVariants()...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scs := designed
			if tt.opts.Suite == SuiteSeed {
				scs = seedScenarios()
			}
			l, err := planVariants(tt.opts, scs)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(l.variants); !slices.Equal(got, tt.wantVars) || !slices.Equal(l.references, tt.wantRefs) {
				t.Errorf("planVariants = %v, references %v; want %v, references %v", got, l.references, tt.wantVars, tt.wantRefs)
			}
		})
	}
	if _, err := planVariants(Options{Suite: SuiteSeed, Variants: []string{"turbo"}}, nil); err == nil {
		t.Error("planVariants(turbo) = nil error; want unknown variant")
	}
}

// TestCheckSkipsReferences: a component measured only as auto's reference
// is reported with its verdicts, but its gates are not this run's.
func TestCheckSkipsReferences(t *testing.T) {
	r := &Report{
		Suite: SuiteDesigned, Config: RunConfig{Requested: []string{"auto"}, References: []string{"cache-optimization"}},
		Comparisons: []Comparison{
			{Scenario: ScenarioCache, Variant: "cache-optimization", Gate: "misses its target"},
			{Scenario: ScenarioCache, Variant: "auto", Gate: "below 80%"},
		},
	}
	fails := Check(r)
	if len(fails) != 1 || fails[0].Variant != "auto" {
		t.Errorf("Check = %v; want auto's gate only", fails)
	}
	r.Config.Requested = append(r.Config.Requested, "cache-optimization")
	if fails := Check(r); len(fails) != 2 {
		t.Errorf("Check with the reference requested too = %v; want both gates", fails)
	}
	r.Suite = SuiteMatrix
	r.Config.Requested = nil
	if fails := Check(r); len(fails) != 2 {
		t.Errorf("Check of a matrix = %v; want every gate", fails)
	}
}

// TestJudgePresetBound: a preset with a workload's component may cost there
// what the component may, where that bound is wider than the budget; a
// preset without it keeps the budget.
func TestJudgePresetBound(t *testing.T) {
	sc, _ := Info(ScenarioDownstream)
	for _, tt := range []struct {
		variant  string
		low, med float64
		wantGate bool
	}{
		{"batch", -14, -13, false},          // the adaptive limit's cost, within its −20 %
		{"optimized", -14, -13, false},      // All has it too
		{"batch", -26, -25, true},           // beyond the component's bound
		{"real-time", -14, -13, true},       // no adaptive limit: the 3 % budget
		{"context-manager", -14, -13, true}, // a component: the budget
	} {
		c := Comparison{Variant: tt.variant, Metric: MetricMeanNS, ImprovementPct: tt.med, LowPct: tt.low, HighPct: tt.med + 1, Significant: true}
		judge(SuiteDesigned, sc, 1, 1e6, &c, nil)
		if (c.Gate != "") != tt.wantGate {
			t.Errorf("%s at %+.0f%% on downstream: gate %q; want a gate %v", tt.variant, tt.med, c.Gate, tt.wantGate)
		}
	}
}

// stalledResult is a subject of 20 groups of 10 samples around 2.7 ms
// (±1 %) scaled by f, with stalls — samples at twice the time — at the
// given sample indexes; BatchMeans groups Raw as the sampler does.
func stalledResult(variant string, f float64, stalls ...int) Result {
	const groups, perGroup = 20, 10
	raw := make([]int64, groups*perGroup)
	for i := range raw {
		raw[i] = int64(2.7e6 * f * (1 + 0.01*float64(i%3-1)))
	}
	for _, i := range stalls {
		raw[i] *= 2
	}
	samples := make([]float64, len(raw))
	for i, v := range raw {
		samples[i] = float64(v)
	}
	r := result(variant, 4, 100, groupMeans(samples, perGroup)...)
	r.Raw, r.RoundsPerGroup, r.BatchSize = raw, perGroup, 1
	return r
}

// TestCompareStalls: on a workload the machine stalls, the stalls of both
// sides are left out of the time comparison — a variant as fast as the
// baseline meets a −3 % bound however the stalls fell — unless the variant
// stalls significantly more often: then they are its cost.
func TestCompareStalls(t *testing.T) {
	sc := Scenario{ScenarioInfo: info(ScenarioConcurrentCPU), Executes: 1}
	if !sc.Stalls {
		t.Fatal("the CPU-bound map is not marked as stalled by the machine")
	}
	// The baseline's stalls fall in groups 0-3, the variant's in 4-9:
	// with them, 6 of 20 pairs are 10 % worse and the interval misses −3 %.
	base := stalledResult(VariantBaseline, 1, 5, 15, 25, 35)
	same := stalledResult("adaptive-resource-manager", 1, 45, 55, 65, 75, 85, 95)
	heavy := stalledResult("adaptive-resource-manager", 1, 3, 13, 23, 33, 43, 53, 63, 73, 83, 93, 103, 113, 123, 133, 143, 153, 163, 173, 183, 193)
	slower := stalledResult("adaptive-resource-manager", 1.05, 45, 55)

	plain := sc
	plain.Stalls = false
	if c := compare(SuiteDesigned, plain, []Result{base, same})[0]; c.Met {
		t.Fatalf("without leaving stalls out: %+v; want the −3 %% bound missed (the test's premise)", c)
	}
	c := compare(SuiteDesigned, sc, []Result{base, same})[0]
	if !c.Met || c.Stalls == nil || *c.Stalls != [2]int{4, 6} || c.StallsKept {
		t.Errorf("stalls alike: %+v, stalls %v; want the bound met, stalls [4 6] left out", c, c.Stalls)
	}
	c = compare(SuiteDesigned, sc, []Result{base, heavy})[0]
	if c.Met || !c.StallsKept || *c.Stalls != [2]int{4, 20} {
		t.Errorf("a variant stalling 5× as often: %+v, stalls %v; want its stalls kept, the bound missed", c, c.Stalls)
	}
	c = compare(SuiteDesigned, sc, []Result{base, slower})[0]
	if c.Met || c.StallsKept {
		t.Errorf("a variant 5 %% slower: %+v; want the bound missed without its stalls", c)
	}
}

func TestStallsExcess(t *testing.T) {
	for _, tt := range []struct {
		base, variant int
		wantLow       bool
	}{{0, 0, false}, {4, 6, false}, {10, 5, false}, {2, 20, true}, {0, 6, true}} {
		p := stallsExcess(tt.base, 200, tt.variant, 200)
		if (p < 0.05) != tt.wantLow || p < 0 || p > 1 {
			t.Errorf("stallsExcess(%d, 200, %d, 200) = %v; want below 0.05: %v", tt.base, tt.variant, p, tt.wantLow)
		}
	}
}
