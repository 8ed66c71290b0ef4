package advise_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
	"github.com/caudal-go/caudal/perf"
	"github.com/caudal-go/caudal/perf/advise"
)

func analyzeFiles(t *testing.T, paths ...string) *advise.Advice {
	t.Helper()
	var inputs []*advise.Input
	for _, p := range paths {
		in, err := advise.ReadFile(p)
		if err != nil {
			t.Fatalf("ReadFile(%q) = %v", p, err)
		}
		inputs = append(inputs, in)
	}
	return advise.Analyze(inputs)
}

func findings(a *advise.Advice, component string) []advise.Finding {
	var out []advise.Finding
	for _, f := range a.Findings {
		if f.Component == component {
			out = append(out, f)
		}
	}
	return out
}

func TestAnalyzePatterns(t *testing.T) {
	a := analyzeFiles(t, "testdata/patterns.jsonl")
	tests := []struct {
		component string
		evidence  string
	}{
		{"error-handling", `p/bad: 2 time(s), 6 attempts in all, each failing with "400 invalid request"`},
		{"error-handling", "with a client error (p/bad: 6), 4 of them retried"},
		{"circuit-breaker", "p/flaky: 6 timeouts in a row (6 in all)"},
		{"cache-optimization", "2 cache hit(s) (p/summary: 2)"},
		{"adaptive-resource-manager", "p/m: a map of 8 items, median latency 2ms"},
		{"context-manager", "p/m: a map of 8 items (large from 8)"},
		{"context-manager", "p/par: a parallel of 0 branches (large from 8), 2 merge conflict(s)"},
		{"cache-optimization", `switched on for p/summary; e.g. "cache-optimization on: 12 repeated keys"`},
		{"object-pool", "per run"},
		{"telemetry", "per run"},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			fs := findings(a, tt.component)
			if !slices.ContainsFunc(fs, func(f advise.Finding) bool { return strings.Contains(f.Evidence, tt.evidence) }) {
				t.Errorf("findings for %s = %+v; want one with evidence %q", tt.component, fs, tt.evidence)
			}
		})
	}
	// The "off" decision switches nothing on: no breaker finding from it.
	for _, f := range findings(a, "circuit-breaker") {
		if strings.Contains(f.Evidence, "switched on") {
			t.Errorf("finding %+v: an off decision recommended the breaker", f)
		}
	}
	want := []string{"object-pool", "context-manager", "telemetry", "adaptive-resource-manager", "error-handling", "circuit-breaker", "cache-optimization"}
	if !slices.Equal(a.Components, want) {
		t.Errorf("Components = %v; want %v", a.Components, want)
	}
	if !a.Config.CircuitBreaker.Enabled || !a.Config.ErrorHandling.Enabled || a.Config.AutomaticOptimization.Enabled {
		t.Errorf("Config = %+v; want the findings' components on, automatic optimization off", a.Config)
	}
	if err := a.Config.Validate(); err != nil {
		t.Errorf("Config.Validate() = %v", err)
	}
}

func TestAnalyzeQuickstart(t *testing.T) {
	// A log examples/quickstart recorded: a retried planner failing with
	// a 503 until its retries run out, then its fallback — an agent down,
	// which a breaker stops calling (error handling would retry a 503).
	a := analyzeFiles(t, "testdata/quickstart.jsonl")
	if a.Keep != "" || len(findings(a, "circuit-breaker")) == 0 || len(findings(a, "error-handling")) != 0 {
		t.Fatalf("Analyze(quickstart) = %+v; want the circuit breaker recommended, not error handling", a)
	}
	if f := findings(a, "circuit-breaker")[0]; !strings.Contains(f.Evidence, `report/plan: 1 time(s), 2 attempts in all, each failing with "503 model overloaded"`) {
		t.Errorf("evidence = %q; want the planner's repeated 503", f.Evidence)
	}
}

func TestAnalyzeKeepsTheBaseline(t *testing.T) {
	a := analyzeFiles(t, "testdata/quiet.jsonl")
	if len(a.Findings) != 0 || !strings.HasPrefix(a.Keep, "keep the baseline: 2 event(s) show no pattern") {
		t.Errorf("Analyze(quiet) = findings %v, keep %q; want none and the reason to keep the baseline", a.Findings, a.Keep)
	}
	if !reflect.DeepEqual(a.Config, optimize.Config{}) {
		t.Errorf("Config = %+v; want the zero Config (the baseline)", a.Config)
	}
	var b bytes.Buffer
	if err := advise.Write(&b, a, advise.FormatText); err != nil || !strings.Contains(b.String(), "No recommendation: keep the baseline") {
		t.Errorf("Write(text) = %v:\n%s\nwant the baseline advice", err, b.String())
	}
}

func TestReadBadInputs(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.jsonl")
	if err := os.WriteFile(empty, []byte("\n \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give string
		want string
	}{
		{"testdata/malformed.jsonl", "testdata/malformed.jsonl:3: not a JSON log record"},
		{"testdata/notes.txt", "testdata/notes.txt: unknown format"},
		{"testdata/other.jsonl", "testdata/other.jsonl: no caudal events"},
		{empty, empty + ": empty file"},
		{filepath.Join(dir, "missing.jsonl"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.give), func(t *testing.T) {
			_, err := advise.ReadFile(tt.give)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadFile(%q) = %v; want an error containing %q", tt.give, err, tt.want)
			}
		})
	}
	if _, err := advise.Read("r.json", []byte(`{"schema_version": 99, "suite": "seed"}`)); err == nil || !strings.Contains(err.Error(), "r.json: perf: report schema_version 99") {
		t.Errorf("Read(a report of schema 99) = %v; want the version refused, naming the file", err)
	}
}

func TestAnalyzeGeneratedLog(t *testing.T) {
	// A log written here by a pipeline through the slog JSON sink: a step
	// whose agent returns an HTTP 400 and retries it twice, and a cached
	// step executed three times with one input.
	var log bytes.Buffer
	ex, err := caudal.New(caudal.WithSink(caudal.SlogSink(slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ex.Close() }()
	bad := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{}, errors.New("400 bad request: unknown model")
	})
	good := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	cache, err := caudal.NewMemoryCache(16)
	if err != nil {
		t.Fatal(err)
	}
	failing, err := caudal.Build(caudal.AgentStep("classify", bad, caudal.WithRetries(2), caudal.WithBackoff(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	cached, err := caudal.Build(caudal.Cached(caudal.AgentStep("summarize", good), cache))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.Execute(t.Context(), failing, "q"); err == nil {
		t.Fatal("Execute(failing) = nil error; want the 400")
	}
	for range 3 {
		if _, err := ex.Execute(t.Context(), cached, "same input"); err != nil {
			t.Fatal(err)
		}
	}
	in, err := advise.Read("generated.jsonl", log.Bytes())
	if err != nil {
		t.Fatalf("Read(generated log) = %v\n%s", err, log.String())
	}
	a := advise.Analyze([]*advise.Input{in})
	for _, c := range []string{"error-handling", "cache-optimization"} {
		if len(findings(a, c)) == 0 {
			t.Errorf("Analyze(generated log) recommends %v; want %s among them\n%s", a.Components, c, log.String())
		}
	}
	if f := findings(a, "error-handling"); len(f) > 0 && !strings.Contains(f[0].Evidence, `classify: 1 time(s), 3 attempts in all, each failing with "400 bad request: unknown model"`) {
		t.Errorf("evidence = %q; want the 3 attempts of classify", f[0].Evidence)
	}
}

func TestAnalyzeReport(t *testing.T) {
	pct := func(v float64) *float64 { return &v }
	r := &perf.Report{
		SchemaVersion: perf.SchemaVersion, Suite: perf.SuiteDesigned, StartedAt: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		Config: perf.RunConfig{Variants: []string{"baseline", "cache-optimization", "telemetry", "context-manager"}},
		Comparisons: []perf.Comparison{
			{Scenario: perf.ScenarioCache, Baseline: "baseline", Variant: "cache-optimization", Metric: perf.MetricMeanNS, ImprovementPct: 61, LowPct: 58, HighPct: 63, P: 0.001, TargetPct: pct(25), Significant: true, Met: true, Status: perf.StatusMet},
			{Scenario: perf.ScenarioExecution, Baseline: "baseline", Variant: "telemetry", Metric: perf.MetricMeanNS, ImprovementPct: 5, LowPct: -2, HighPct: 9, P: 0.3, TargetPct: pct(20), Status: perf.StatusMissed, Gate: "misses"},
			{Scenario: perf.ScenarioContext, Baseline: "baseline", Variant: "context-manager", Metric: perf.MetricMeanNS, ImprovementPct: 70, LowPct: 66, HighPct: 72, P: 0.001, TargetPct: pct(40), Significant: true, Met: true, Status: perf.StatusMet},
			{Scenario: perf.ScenarioMemory, Baseline: "baseline", Variant: "context-manager", Metric: perf.MetricMeanNS, ImprovementPct: -9, LowPct: -12, HighPct: -6, P: 0.001, Significant: true, Status: perf.StatusRegression, Gate: "slower"},
			{Scenario: perf.ScenarioBreakerSuccess, Baseline: "baseline", Variant: "circuit-breaker", Metric: perf.MetricMeanNS, ImprovementPct: -0.2, LowPct: -1, HighPct: 1, P: 0.9, TargetMaxCostNS: pct(20), Met: true, Status: perf.StatusMet},
			{Scenario: perf.ScenarioConcurrent, Baseline: "baseline", Variant: "adaptive-resource-manager", Metric: perf.MetricMeanNS, ImprovementPct: 70, LowPct: 69, HighPct: 71, P: 0.001, TargetPct: pct(50), Significant: true, Met: true, Status: perf.StatusMet},
			{Scenario: perf.ScenarioConcurrentCPU, Baseline: "baseline", Variant: "adaptive-resource-manager", Metric: perf.MetricMeanNS, ImprovementPct: -28, LowPct: -39, HighPct: -19, P: 0.001, TargetPct: pct(-3), Significant: true, Status: perf.StatusMissed, Gate: "misses"},
		},
	}
	var b bytes.Buffer
	if err := perf.WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	in, err := advise.Read("designed.json", b.Bytes())
	if err != nil || in.Report == nil {
		t.Fatalf("Read(report) = %+v, %v; want a report", in, err)
	}
	a := advise.Analyze([]*advise.Input{in})
	if !slices.Equal(a.Components, []string{"cache-optimization"}) {
		t.Errorf("Components = %v; want only cache-optimization (telemetry missed, context-manager regressed, the breaker only met a bound, the adaptive manager broke one)", a.Components)
	}
	if f := findings(a, "cache-optimization"); len(f) != 1 || !strings.Contains(f[0].Evidence, "cache (Cache Performance): +61.0% [+58.0%, +63.0%] p=0.001, target met") {
		t.Errorf("findings = %+v; want the cache workload's figures", f)
	}
	if len(a.Notes) != 2 || !strings.Contains(a.Notes[0], "context-manager wins on 1 workload(s) but is set aside") || !strings.Contains(a.Notes[1], "adaptive-resource-manager wins on 1 workload(s) but is set aside") {
		t.Errorf("Notes = %q; want context-manager set aside", a.Notes)
	}
}

func TestGoSourceCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet")
	}
	cfg := optimize.All()
	cfg.Telemetry.BufferSize = 1024
	cfg.Telemetry.LatencyBuckets = []time.Duration{time.Millisecond, 250 * time.Millisecond, 3 * time.Second}
	cfg.AdaptiveResourceManager.Tolerance = 2
	cfg.AdaptiveResourceManager.Backoff = 0.75
	cfg.CacheOptimization.TTL = 90 * time.Second
	cfg.CircuitBreaker.ProbeEvery = -1
	src, err := advise.GoSource("advised", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Tolerance: 2.0,", "Backoff:   0.75,", "TTL:     90 * time.Second", "[]time.Duration{time.Millisecond, 250 * time.Millisecond, 3 * time.Second}", "ProbeEvery: -1"} {
		if !strings.Contains(src, want) {
			t.Errorf("GoSource = \n%s\nwant %q in it", src, want)
		}
	}
	if strings.Contains(src, "false") || strings.Contains(src, "ContextManager: optimize.ContextManagerConfig{}") {
		t.Errorf("GoSource = \n%s\nwant only non-zero fields", src)
	}
	// The file must compile in this module: go vet type-checks it.
	dir, err := os.MkdirTemp(".", "vetgen")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.WriteFile(filepath.Join(dir, "config.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "vet", "./"+filepath.Base(dir)).CombinedOutput(); err != nil {
		t.Errorf("go vet of the generated Config: %v\n%s\n%s", err, out, src)
	}
}

func TestWriteFormats(t *testing.T) {
	a := analyzeFiles(t, "testdata/quickstart.jsonl")
	var text, gosrc, js bytes.Buffer
	for _, tt := range []struct {
		format string
		w      *bytes.Buffer
	}{{advise.FormatText, &text}, {advise.FormatGo, &gosrc}, {advise.FormatJSON, &js}} {
		if err := advise.Write(tt.w, a, tt.format); err != nil {
			t.Fatalf("Write(%s) = %v", tt.format, err)
		}
	}
	if !strings.Contains(text.String(), "circuit-breaker\n  - failed attempts repeat a server error") || !strings.Contains(text.String(), "CircuitBreaker: optimize.CircuitBreakerConfig{Enabled: true}") || !strings.Contains(text.String(), `"circuit_breaker": {`) {
		t.Errorf("text output:\n%s\nwant the finding, the Go and the JSON", text.String())
	}
	if !strings.HasPrefix(gosrc.String(), "package advised") {
		t.Errorf("go output:\n%s\nwant a Go file", gosrc.String())
	}
	if !strings.Contains(js.String(), `"component": "circuit-breaker"`) {
		t.Errorf("json output:\n%s\nwant the findings", js.String())
	}
	if err := advise.Write(&text, a, "yaml"); err == nil {
		t.Error("Write(yaml) = nil; want an unknown-format error")
	}
}
