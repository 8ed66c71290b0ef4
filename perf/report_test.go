package perf

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal/perf/internal/echartsjs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/report")

// fixtureVariant is one variant's figures on a fixture scenario.
type fixtureVariant struct {
	name    string
	meanNS  float64 // per iteration
	allocs  float64 // per iteration
	bytes   float64 // per iteration
	timeSig bool    // the time difference with the baseline is significant
}

// fixtureScenario is a scenario of a fixture report; its first variant is
// the baseline.
type fixtureScenario struct {
	id       string
	executes int
	variants []fixtureVariant
}

// fixtureImprovement is the improvement of v over base in percent.
func fixtureImprovement(base, v float64) float64 { return (base - v) / base * 100 }

// fixtureReport builds a realistic report: results derived from the
// figures given, and comparisons made the way the suite makes them.
func fixtureReport(suite string, started time.Time, scenarios []fixtureScenario) *Report {
	r := &Report{
		SchemaVersion: SchemaVersion,
		Suite:         suite,
		StartedAt:     started,
		GitCommit:     "338d1224fc98",
		Machine: Machine{
			GOOS: "linux", GOARCH: "amd64", CPUs: 2, GOMAXPROCS: 2,
			GoVersion: "go1.26.8", CPUModel: "AMD EPYC 7B13",
		},
		Config: RunConfig{TimePerScenario: 2 * time.Second, MinBatchNS: 10_000},
	}
	for _, sc := range scenarios {
		info, _ := Info(sc.id)
		base := sc.variants[0]
		var scComps []Comparison
		for _, v := range sc.variants {
			batch := int64(10_000/v.meanNS) + 1
			st := Stats{
				MeanNS: v.meanNS, MedianNS: v.meanNS * 0.97, P95NS: v.meanNS * 1.21,
				P99NS: ptr(v.meanNS * 1.48), P999NS: ptr(v.meanNS * 2.3), TailSamples: 4_000, StddevNS: v.meanNS * 0.08,
				MinNS: v.meanNS * 0.88, MaxNS: v.meanNS * 3.1,
				CI95LowNS: v.meanNS * 0.992, CI95HighNS: v.meanNS * 1.008,
				OpsPerSec: 1e9 / v.meanNS, ExecutesPerSec: 1e9 / v.meanNS * float64(sc.executes),
				AllocsPerOp: v.allocs, BytesPerOp: v.bytes,
				PeakHeapBytes: uint64(3<<20 + v.bytes*48), RSSDeltaBytes: int64(v.bytes*16) - 1<<20,
			}
			r.Results = append(r.Results, Result{
				Scenario: sc.id, Variant: v.name, Samples: 480, Iterations: 480 * batch,
				ExecutesPerIteration: sc.executes, Stats: st,
				Raw:        []int64{int64(v.meanNS), int64(v.meanNS * 1.1)},
				BatchMeans: []float64{v.meanNS, v.meanNS * 1.01},
			})
			if v.name == VariantBaseline {
				continue
			}
			for _, m := range []struct {
				metric string
				imp    float64
				sig    bool
				half   float64 // half the interval's width
			}{
				{MetricMeanNS, fixtureImprovement(base.meanNS, v.meanNS), v.timeSig, 1.5},
				{MetricAllocsPerOp, fixtureImprovement(base.allocs, v.allocs), v.allocs != base.allocs, 0},
				{MetricBytesPerOp, fixtureImprovement(base.bytes, v.bytes), fixtureAbs(fixtureImprovement(base.bytes, v.bytes)) > 1, 0},
			} {
				c := Comparison{
					Scenario: sc.id, Baseline: VariantBaseline, Variant: v.name, Metric: m.metric,
					ImprovementPct: m.imp, LowPct: m.imp - m.half, HighPct: m.imp + m.half, Significant: m.sig, P: 1,
				}
				if m.metric == MetricMeanNS {
					c.Pairs, c.Confidence, c.P = 20, 0.9586, 0.4
					if m.sig {
						c.P = 0.0001
					} else {
						c.LowPct, c.HighPct = m.imp-8, m.imp+8 // an interval wide enough to be n.s.
					}
				}
				scComps = append(scComps, c)
			}
		}
		// As compare does: the automatic optimization last, against its reference.
		for i := range scComps {
			if !isAuto(scComps[i].Variant) {
				judge(suite, info, sc.executes, base.meanNS, &scComps[i], nil)
			}
		}
		for i := range scComps {
			if isAuto(scComps[i].Variant) {
				judge(suite, info, sc.executes, base.meanNS, &scComps[i], referenceOf(scComps, info.Component, scComps[i].Metric))
			}
		}
		r.Comparisons = append(r.Comparisons, scComps...)
	}
	return r
}

func ptr(v float64) *float64 { return &v }

func fixtureAbs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// seedFixture is a seed-suite run: the baseline and the negative control on
// the study's five light shapes; nothing else built.
func seedFixture() *Report {
	r := fixtureReport(SuiteSeed, time.Date(2025, 7, 31, 9, 30, 0, 0, time.UTC), []fixtureScenario{
		{ScenarioExecution, 1, []fixtureVariant{
			{VariantBaseline, 1_840, 14, 1_216, false},
			{VariantNaive, 36_700, 31, 5_872, true},
		}},
		{ScenarioMemory, 1, []fixtureVariant{
			{VariantBaseline, 58_400, 212, 141_312, false},
			{VariantNaive, 97_300, 229, 146_880, true},
		}},
		{ScenarioConcurrent, 10, []fixtureVariant{
			{VariantBaseline, 1_262_000, 190, 18_900, false},
			{VariantNaive, 1_268_500, 361, 62_400, false},
		}},
		{ScenarioCache, 1, []fixtureVariant{
			{VariantBaseline, 2_310, 17, 1_408, false},
			{VariantNaive, 39_800, 35, 6_144, true},
		}},
		{ScenarioContext, 1, []fixtureVariant{
			{VariantBaseline, 2_020, 16, 1_344, false},
			{VariantNaive, 37_100, 33, 6_000, true},
		}},
	})
	r.Config.Variants = []string{VariantBaseline, VariantNaive, "optimized", "auto"}
	r.NotBuilt = []string{"optimized", "auto"}
	r.NegativeControl = []ControlPoint{
		{History: 0, MeanNSPerExec: 9_850, BaselineNSPerEx: 1_830},
		{History: 100, MeanNSPerExec: 14_900, BaselineNSPerEx: 1_840},
		{History: 1000, MeanNSPerExec: 36_700, BaselineNSPerEx: 1_850},
	}
	return r
}

// designedFixture is a designed-suite run where two components are built:
// telemetry meets its target, cache-optimization misses it.
func designedFixture() *Report {
	near := func(name string, mean, allocs, bytes float64) fixtureVariant {
		return fixtureVariant{name, mean, allocs, bytes, false}
	}
	r := fixtureReport(SuiteDesigned, time.Date(2025, 8, 2, 14, 5, 9, 0, time.UTC), []fixtureScenario{
		{ScenarioExecution, 1, []fixtureVariant{
			{VariantBaseline, 1_840, 14, 1_216, false},
			{"telemetry", 1_410, 11, 960, true},
			near("cache-optimization", 1_852, 14, 1_216),
		}},
		{ScenarioMemory, 1, []fixtureVariant{
			{VariantBaseline, 812_000, 2_050, 4_718_592, false},
			near("telemetry", 809_500, 2_050, 4_718_592),
			near("cache-optimization", 815_200, 2_050, 4_718_592),
		}},
		{ScenarioConcurrent, 64, []fixtureVariant{
			{VariantBaseline, 3_950_000, 1_210, 131_072, false},
			near("telemetry", 3_938_000, 1_210, 131_072),
			near("cache-optimization", 3_961_000, 1_210, 131_072),
		}},
		{ScenarioCache, 1, []fixtureVariant{
			{VariantBaseline, 52_600, 96, 12_288, false},
			near("telemetry", 52_310, 96, 12_288),
			{"cache-optimization", 41_900, 88, 11_904, true},
		}},
		{ScenarioContext, 1, []fixtureVariant{
			{VariantBaseline, 96_300, 410, 262_144, false},
			near("telemetry", 96_800, 410, 262_144),
			near("cache-optimization", 95_900, 410, 262_144),
		}},
		{ScenarioError, 1, []fixtureVariant{
			{VariantBaseline, 4_120, 29, 2_432, false},
			near("telemetry", 4_135, 29, 2_432),
			near("cache-optimization", 4_098, 29, 2_432),
		}},
		{ScenarioOutage, 1, []fixtureVariant{
			{VariantBaseline, 25_300_000, 3_900, 311_296, false},
			near("telemetry", 25_310_000, 3_900, 311_296),
			near("cache-optimization", 25_280_000, 3_900, 311_296),
		}},
	})
	r.GitCommit = "9f1c2e7a4b10"
	r.Config.Variants = []string{VariantBaseline, "telemetry", "cache-optimization", "object-pool", "context-manager"}
	r.NotBuilt = []string{"object-pool", "context-manager"}
	return r
}

// matrixFixture is a matrix-suite run: two components, a preset, auto and
// the A/A control on three workloads.
func matrixFixture() *Report {
	r := fixtureReport(SuiteMatrix, time.Date(2025, 8, 3, 7, 0, 0, 0, time.UTC), []fixtureScenario{
		{ScenarioExecution, 1, []fixtureVariant{
			{VariantBaseline, 1_840, 14, 1_216, false},
			{"object-pool", 1_862, 14, 1_216, false},
			{"context-manager", 1_921, 15, 1_280, true},
			{"large-context", 1_930, 15, 1_280, true},
			{VariantAuto, 1_850, 14, 1_216, false},
			{VariantAA, 1_845, 14, 1_216, false},
		}},
		{ScenarioMemory, 1, []fixtureVariant{
			{VariantBaseline, 812_000, 2_050, 4_718_592, false},
			{"object-pool", 664_000, 310, 3_110_000, true},
			{"context-manager", 816_000, 2_050, 4_718_592, false},
			{"large-context", 660_000, 300, 3_100_000, true},
			{VariantAuto, 700_000, 400, 3_300_000, true},
			{VariantAA, 811_000, 2_050, 4_718_592, false},
		}},
		{ScenarioContext, 1, []fixtureVariant{
			{VariantBaseline, 96_300, 410, 262_144, false},
			{"object-pool", 95_100, 410, 262_144, false},
			{"context-manager", 56_400, 120, 65_536, true},
			{"large-context", 55_000, 120, 65_536, true},
			{VariantAuto, 80_000, 300, 200_000, true},
			{VariantAA, 96_000, 410, 262_144, false},
		}},
	})
	r.Config.Variants = []string{VariantBaseline, "object-pool", "context-manager", "large-context", VariantAuto, VariantAA}
	return r
}

// checkGolden compares got with testdata/report/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "report", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run go test ./perf -run %s -update to accept.\ngot:\n%s", name, t.Name(), got)
	}
}

func TestWriteMarkdownGolden(t *testing.T) {
	tests := []struct {
		name   string
		report *Report
		golden string
	}{
		{"seed", seedFixture(), "seed.golden.md"},
		{"designed", designedFixture(), "designed.golden.md"},
		{"matrix", matrixFixture(), "matrix.golden.md"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMarkdown(&buf, tt.report); err != nil {
				t.Fatalf("WriteMarkdown() = %v", err)
			}
			var again bytes.Buffer
			if err := WriteMarkdown(&again, tt.report); err != nil {
				t.Fatalf("WriteMarkdown() = %v", err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Error("WriteMarkdown() output differs between two calls")
			}
			checkGolden(t, tt.golden, buf.Bytes())
		})
	}
}

func TestWriteMarkdownContents(t *testing.T) {
	tests := []struct {
		name    string
		report  *Report
		want    []string
		notWant []string
	}{
		{
			name:   "seed",
			report: seedFixture(),
			want: []string{
				"# ExecutorCore Performance Validation — seed suite\n",
				"**Key Finding**: nothing to win.",
				"naive: 9.85 µs per execute at history 0 → 36.7 µs at 1,000",
				"| Metric | Baseline | naive | Change | Target | Status |",
				"| Execution Performance | 1.84 µs | 36.7 µs | −1894.6% [−1896.1%, −1893.1%] | — | ❌ time regression, allocs/op regression, bytes/op regression |",
				"| Memory Efficiency | 138 KiB/op | 143 KiB/op | −3.9% | — | ❌ time regression, allocs/op regression, bytes/op regression |",
				"| Concurrent Performance | 1.26 ms | 1.27 ms | −0.5% [−8.5%, +7.5%] (n.s.) | — | ❌ allocs/op regression, bytes/op regression |",
				"| 1,000 | 36.7 µs | 1.85 µs | 19.8× |",
				"Execution Performance: keep the baseline",
				"| telemetry | Execution Performance | not measured in this run | — | — |",
				"- optimized\n- auto\n",
				"Wilcoxon signed-rank",
			},
			notWant: []string{"✅ target met", "use naive"},
		},
		{
			name:   "designed",
			report: designedFixture(),
			want: []string{
				"**Key Finding**: telemetry meets its target on its own workload, Execution Performance (+23.4%, target +20%); cache-optimization misses its target on its own workload, Cache Performance (+20.3%, target +25%).",
				"| Execution Performance | 1.84 µs | 1.41 µs | +23.4% [+21.9%, +24.9%] | +20% | ✅ target met |",
				"| Cache Performance | 52.6 µs | 41.9 µs | +20.3% [+18.8%, +21.8%] | +25% | ❌ time target missed |",
				"| Memory Efficiency | 4.50 MiB/op | 4.50 MiB/op | 0.0% (n.s.) | — | ✅ no regression |",
				"| object-pool | Memory Efficiency | not built yet — no figure | — | — |",
				"Execution Performance: use telemetry for execution workloads: +23.4% on mean time per iteration (target +20% met).",
				"Cache Performance: use cache-optimization for cache workloads: +20.3%",
			},
			notWant: []string{"Not met", "Negative Control"},
		},
		{
			name: "seed with an optimization that wins nothing",
			report: fixtureReport(SuiteSeed, time.Date(2025, 8, 5, 0, 0, 0, 0, time.UTC), []fixtureScenario{
				{ScenarioExecution, 1, []fixtureVariant{
					{VariantBaseline, 1_840, 14, 1_216, false},
					{"optimized", 1_851, 14, 1_216, false},
				}},
			}),
			want: []string{
				"**Key Finding**: nothing to win. No variant is significantly better than the baseline on any scenario of the seed suite: on the study's light shapes, the 1 optimization variant measured finds nothing to improve",
				"| Execution Performance | 1.84 µs | 1.85 µs | −0.6% [−8.6%, +7.4%] (n.s.) | — | ✅ no regression |",
				"- Execution Performance: keep the baseline",
			},
			notWant: []string{"never recommended"},
		},
		{
			name: "baseline only, unknown scenario",
			report: func() *Report {
				r := fixtureReport(SuiteMatrix, time.Date(2025, 8, 4, 0, 0, 0, 0, time.UTC), []fixtureScenario{
					{ScenarioCache, 1, []fixtureVariant{{VariantBaseline, 2_310, 17, 1_408, false}}},
					{"custom", 2, []fixtureVariant{{VariantBaseline, 7_500, 40, 4_096, false}}},
				})
				r.GitCommit = ""
				return r
			}(),
			want: []string{
				"at git commit unknown",
				"**Key Finding**: only the baseline was measured, so there is nothing to compare.",
				"Only the baseline was measured: there is no comparison.",
				"| Metric | Baseline (ops/sec) | Baseline (executes/sec) |",
				"| custom | baseline | 40 | 4.00 KiB |",
				"- custom: keep the baseline",
				"Every requested variant was built and measured.",
			},
			notWant: []string{"Negative Control", "use "},
		},
		{
			name:   "matrix",
			report: matrixFixture(),
			want: []string{
				"### Selective Optimization Strategy",
				"| Variant | Execution Performance (time) | Memory Efficiency (bytes/op) | Context Handling (time) |",
				"| object-pool (component) | −1.2% [−9.2%, +6.8%] (n.s.) = same | +34.1% ✅ target met | +1.2% [−6.8%, +9.2%] (n.s.) = same |",
				"| auto (preset: auto) | −0.5% [−8.5%, +7.5%] (n.s.) ❌ target missed | +30.1% ✅ target met | +16.9% [+15.4%, +18.4%] ❌ target missed |",
				"| baseline-aa (A/A control) |",
				"- Memory Efficiency: large-context, +34.3% on bytes per op (better).",
				"- **object-pool**: turn it on for Memory Efficiency (+34.1%, target met).",
				"- **context-manager**: wins nowhere in this run — leave it off; fails a gate on",
				"| Execution Performance | 1.84 µs | 1.92 µs | −4.4% [−5.9%, −2.9%] | — | ❌ allocs/op regression, bytes/op regression |",
				"| Execution Performance | 1.84 µs | 1.86 µs | −1.2% [−9.2%, +6.8%] (n.s.) | — | ✅ no regression |",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMarkdown(&buf, tt.report); err != nil {
				t.Fatalf("WriteMarkdown() = %v", err)
			}
			got := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("WriteMarkdown() output lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("WriteMarkdown() output contains %q", w)
				}
			}
		})
	}
}

func TestWritersRejectNil(t *testing.T) {
	tests := []struct {
		name  string
		write func() error
	}{
		{"WriteJSON", func() error { return WriteJSON(&bytes.Buffer{}, nil) }},
		{"WriteMarkdown", func() error { return WriteMarkdown(&bytes.Buffer{}, nil) }},
		{"WriteHTML", func() error { return WriteHTML(&bytes.Buffer{}, nil) }},
		{"WriteHistoryTable", func() error { return WriteHistoryTable(&bytes.Buffer{}, []*Report{nil}) }},
		{"SaveHistory", func() error { _, err := SaveHistory(t.TempDir(), nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.write(); err == nil {
				t.Errorf("%s(nil) = nil error, want an error", tt.name)
			}
		})
	}
}

// withoutRaw returns a copy of r without the raw samples, which JSON does
// not carry.
func withoutRaw(r *Report) *Report {
	c := *r
	c.Results = append([]Result(nil), r.Results...)
	for i := range c.Results {
		c.Results[i].Raw = nil
	}
	return &c
}

func TestJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		report *Report
	}{
		{"seed", seedFixture()},
		{"designed", designedFixture()},
		{"matrix", matrixFixture()},
		{"empty", &Report{SchemaVersion: SchemaVersion, Suite: SuiteSeed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteJSON(&buf, tt.report); err != nil {
				t.Fatalf("WriteJSON() = %v", err)
			}
			out := buf.String()
			if !strings.HasSuffix(out, "}\n") || !strings.HasPrefix(out, "{\n  \"schema_version\": 2,") {
				t.Errorf("WriteJSON() = %.60q…, want indented JSON with a trailing newline", out)
			}
			if len(tt.report.Results) > 0 && (!strings.Contains(out, "\"batch_means_ns\"") || strings.Contains(out, "\"Raw\"")) {
				t.Error("WriteJSON() left out the batch means, or wrote the raw samples")
			}
			got, err := ReadJSON(&buf)
			if err != nil {
				t.Fatalf("ReadJSON() = %v", err)
			}
			if want := withoutRaw(tt.report); !reflect.DeepEqual(got, want) {
				t.Errorf("ReadJSON(WriteJSON(r)) = %+v, want %+v", got, want)
			}
		})
	}
}

func TestReadJSONSchema1(t *testing.T) {
	// A report of schema version 1 (before paired comparisons) still reads,
	// for bench history: the fields it lacks stay zero.
	const v1 = `{"schema_version": 1, "suite": "seed", "started_at": "2025-07-31T09:30:00Z",
		"results": [{"scenario": "execution", "variant": "baseline", "samples": 480,
			"stats": {"mean_ns": 1840, "p99_ns": 2700, "p999_ns": 4200}},
			{"scenario": "execution", "variant": "naive", "samples": 480, "stats": {"mean_ns": 2070}}],
		"comparisons": [{"scenario": "execution", "baseline": "baseline", "variant": "naive",
			"metric": "mean_ns", "improvement_pct": -12.5, "significant": true}]}`
	r, err := ReadJSON(strings.NewReader(v1))
	if err != nil {
		t.Fatalf("ReadJSON(v1) = %v", err)
	}
	st := r.Results[0].Stats
	if r.SchemaVersion != 1 || st.MeanNS != 1840 || st.P99NS == nil || *st.P99NS != 2700 || r.Comparisons[0].ImprovementPct != -12.5 {
		t.Errorf("ReadJSON(v1) = %+v; want its figures", r)
	}
	var buf bytes.Buffer
	if err := WriteHistoryTable(&buf, []*Report{r}); err != nil || !strings.Contains(buf.String(), "−12.5%") {
		t.Errorf("WriteHistoryTable(v1) = %v:\n%s\nwant the v1 comparison", err, buf.String())
	}
}

func TestReadJSONRejects(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{"future version", `{"schema_version": 3, "suite": "seed"}`, "schema_version 3 is not supported"},
		{"missing version", `{"suite": "seed"}`, "schema_version 0 is not supported"},
		{"not JSON", `suite: seed`, "decoding report"},
		{"wrong type", `{"schema_version": "1"}`, "decoding report"},
		{"non-positive group mean", `{"schema_version": 2, "results": [{"scenario": "cache", "variant": "baseline", "batch_means_ns": [120, 0]}]}`, "group mean 0 is not positive"},
		{"negative memory pass", `{"schema_version": 2, "results": [{"scenario": "cache", "variant": "baseline", "bytes_passes": [-5]}]}`, "memory pass figure -5 is negative"},
		{"result without a variant", `{"schema_version": 2, "results": [{"scenario": "cache"}]}`, "no scenario or variant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadJSON(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ReadJSON(%q) = %v, %v; want error containing %q", tt.input, r, err, tt.wantErr)
			}
		})
	}
}

func TestWriteJSONRejectsSchemaVersion(t *testing.T) {
	r := seedFixture()
	r.SchemaVersion = SchemaVersion + 1
	if err := WriteJSON(&bytes.Buffer{}, r); err == nil || !strings.Contains(err.Error(), "schema_version") {
		t.Errorf("WriteJSON(schema_version %d) = %v, want a schema_version error", r.SchemaVersion, err)
	}
}

func TestHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "history")
	older, newer := seedFixture(), seedFixture()
	newer.StartedAt = older.StartedAt.Add(26*time.Hour + 15*time.Minute)
	newer.GitCommit = "4c0ffee12345"
	newer.Results[1].Stats.MeanNS = 30_100 // naive on execution got faster
	newer.Comparisons[0].ImprovementPct = fixtureImprovement(1_840, 30_100)

	// Saved newest first: LoadHistory must sort.
	for _, r := range []*Report{newer, older} {
		path, err := SaveHistory(dir, r)
		if err != nil {
			t.Fatalf("SaveHistory() = %v", err)
		}
		if want := filepath.Join(dir, strings.ReplaceAll(r.StartedAt.Format(time.RFC3339), ":", "-")+".json"); path != want {
			t.Errorf("SaveHistory() path = %q, want %q", path, want)
		}
	}
	if got, want := filepath.Base(mustSaved(t, dir, 0)), "2025-07-31T09-30-00Z.json"; got != want {
		t.Errorf("first history file = %q, want %q", got, want)
	}
	if _, err := SaveHistory(dir, older); !errors.Is(err, fs.ErrExist) {
		t.Errorf("SaveHistory() of a run already saved = %v, want fs.ErrExist", err)
	}
	if _, err := SaveHistory(dir, &Report{SchemaVersion: SchemaVersion}); err == nil {
		t.Error("SaveHistory() of a report with no started_at = nil error, want an error")
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a report"), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := LoadHistory(dir)
	if err != nil {
		t.Fatalf("LoadHistory() = %v", err)
	}
	want := []*Report{withoutRaw(older), withoutRaw(newer)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadHistory() = %d reports, want the two saved, oldest first", len(got))
	}

	var buf bytes.Buffer
	if err := WriteHistoryTable(&buf, []*Report{newer, older}); err != nil {
		t.Fatalf("WriteHistoryTable() = %v", err)
	}
	checkGolden(t, "history.golden.md", buf.Bytes())

	bad := filepath.Join(dir, "2025-09-01T00-00-00Z.json")
	if err := os.WriteFile(bad, []byte(`{"schema_version": 1,`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHistory(dir); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadHistory() with a malformed file = %v, want an error naming %s", err, bad)
	}
	if _, err := LoadHistory(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadHistory(missing dir) = %v, want fs.ErrNotExist", err)
	}
}

// mustSaved returns the path of the i-th file of dir.
func mustSaved(t *testing.T, dir string, i int) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= i {
		t.Fatalf("ReadDir(%s) = %d entries, %v", dir, len(entries), err)
	}
	return filepath.Join(dir, entries[i].Name())
}

func TestWriteHistoryTableEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHistoryTable(&buf, nil); err != nil {
		t.Fatalf("WriteHistoryTable(nil) = %v", err)
	}
	if got, want := buf.String(), "## Historical Performance Comparison\n\nNo run recorded yet.\n"; got != want {
		t.Errorf("WriteHistoryTable(nil) = %q, want %q", got, want)
	}
}

func TestWriteHTML(t *testing.T) {
	tests := []struct {
		name        string
		report      *Report
		wantControl bool
	}{
		{"seed", seedFixture(), true},
		{"designed", designedFixture(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteHTML(&buf, tt.report); err != nil {
				t.Fatalf("WriteHTML() = %v", err)
			}
			page := buf.String()
			for _, remote := range []string{`src="http`, `src='http`, `href="http`, "go-echarts.github.io", "<script src"} {
				if strings.Contains(page, remote) {
					t.Errorf("WriteHTML() output references a remote asset: contains %q", remote)
				}
			}
			if !strings.Contains(page, echartsjs.JS) {
				t.Error("WriteHTML() output lacks the embedded ECharts library")
			}
			if !strings.Contains(page, `version="`+echartsjs.Version+`"`) {
				t.Errorf("WriteHTML() output lacks ECharts %s's version marker", echartsjs.Version)
			}
			for _, want := range []string{
				"<title>ExecutorCore Performance Validation — " + tt.report.Suite + " suite</title>",
				"echarts.init(document.getElementById('mean_per_scenario')",
				"echarts.init(document.getElementById('allocs_per_scenario')",
				"<th>Metric</th><th>Baseline</th>",
				"<td>Execution Performance</td><td>1.84 µs</td>",
				"<h2>Performance Testing Methodology</h2>",
			} {
				if !strings.Contains(page, want) {
					t.Errorf("WriteHTML() output lacks %q", want)
				}
			}
			if got := strings.Contains(page, "getElementById('negative_control')"); got != tt.wantControl {
				t.Errorf("WriteHTML() negative control chart present = %v, want %v", got, tt.wantControl)
			}
			var again bytes.Buffer
			if err := WriteHTML(&again, tt.report); err != nil {
				t.Fatalf("WriteHTML() = %v", err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Error("WriteHTML() output differs between two calls")
			}
		})
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"ns", formatNS(512), "512 ns"},
		{"ns fraction", formatNS(0.5), "0.500 ns"},
		{"µs", formatNS(60_000), "60.0 µs"},
		{"µs rounded", formatNS(331_900), "332 µs"},
		{"rollover", formatNS(999.6), "1.00 µs"},
		{"ms", formatNS(1_280_000), "1.28 ms"},
		{"s", formatNS(2.5e9), "2.50 s"},
		{"zero", formatNS(0), "0 ns"},
		{"bytes", formatBytes(48), "48 B"},
		{"KiB", formatBytes(141_312), "138 KiB"},
		{"negative MiB", formatBytes(-1 << 20), "-1.00 MiB"},
		{"pct plus", formatPct(12.34), "+12.3%"},
		{"pct minus", formatPct(-452.94), "−452.9%"},
		{"pct zero", formatPct(-0.04), "0.0%"},
		{"rate", formatRate(16_659.4), "16,659"},
		{"small rate", formatRate(0.789), "0.789"},
		{"count", formatCount(12.3333), "12.33"},
		{"large count", formatCount(2050), "2,050"},
		{"ratio", formatRatio(36_700, 1_850), "19.8×"},
		{"group", groupInt(-1234567), "-1,234,567"},
		{"group small", groupInt(999), "999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestMarkdownListsReferences(t *testing.T) {
	r := designedFixture()
	r.Config.Requested = []string{VariantAuto}
	r.Config.References = []string{"telemetry", "cache-optimization"}
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, r); err != nil {
		t.Fatal(err)
	}
	if want := "- References (measured so that auto is judged against 80% of each component's change on its workload; judged as usual themselves): telemetry, cache-optimization"; !strings.Contains(buf.String(), want) {
		t.Errorf("WriteMarkdown() lacks %q", want)
	}
}

func TestWriteHTMLSelectiveTable(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, matrixFixture()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<h2>Selective Optimization</h2>",
		"<th>Variant</th><th>Execution Performance (time)</th><th>Memory Efficiency (bytes/op)</th><th>Context Handling (time)</th>",
		"<td>object-pool (component)</td>",
		"<td>auto (preset: auto)</td>",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("WriteHTML(matrix) lacks %q", want)
		}
	}
}
