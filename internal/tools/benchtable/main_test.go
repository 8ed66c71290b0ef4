package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/README.golden.md")

const testCmd = `go test -run='^$' -bench='^Benchmark(Floor|Execute|Seq|Parallel|Loop|Map|Isolation)$' -benchmem -count=5 .`

// fixedNow pins the date of the note for the duration of the test.
func fixedNow(t *testing.T) {
	t.Helper()
	old := now
	now = func() time.Time { return time.Date(2026, 3, 14, 23, 30, 0, 0, time.FixedZone("X", -5*3600)) }
	t.Cleanup(func() { now = old })
}

func parseFile(t *testing.T, path string) *Report {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	rep, err := parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestParseSample(t *testing.T) {
	rep := parseFile(t, "testdata/bench.txt")
	if rep.GOOS != "linux" || rep.GOARCH != "amd64" || rep.CPU != "Intel(R) Xeon(R) Processor" {
		t.Errorf("header = %q %q %q", rep.GOOS, rep.GOARCH, rep.CPU)
	}
	var names []string
	for _, b := range rep.Benchmarks {
		names = append(names, b.Name)
		if b.Runs() != 5 || len(b.BOp) != 5 || len(b.Allocs) != 5 {
			t.Errorf("%s: %d runs, %d B/op, %d allocs/op; want 5 each", b.Name, b.Runs(), len(b.BOp), len(b.Allocs))
		}
	}
	want := []string{
		"Floor/bare", "Floor/timeout", "Execute/bare", "Execute/policies",
		"Execute/policies+slog", "Execute/cache=hit", "Execute/cache=miss", "Execute/fallback",
		"Seq/steps=3", "Seq/steps=10", "Parallel/branches=5", "Loop/iters=10", "Map/items=100",
		"Isolation/keys=8", "Isolation/keys=64", "Isolation/keys=1024",
	}
	if !slices.Equal(names, want) {
		t.Errorf("names = %q, want %q (input order, no -N suffix)", names, want)
	}
	eb := rep.Find("Execute/bare")
	if want := []float64{230.6, 206.5, 178.9, 200.5, 209.6}; !slices.Equal(eb.NsOp, want) {
		t.Errorf("Execute/bare ns/op = %v, want %v", eb.NsOp, want)
	}
	ft := rep.Find("Floor/timeout")
	if m, _ := median(ft.BOp); m != 272 {
		t.Errorf("Floor/timeout B/op median = %v, want 272", m)
	}
	if m, _ := median(ft.Allocs); m != 4 {
		t.Errorf("Floor/timeout allocs/op median = %v, want 4", m)
	}
	ik := rep.Find("Isolation/keys=1024")
	if m, _ := median(ik.BOp); m != 1165723 {
		t.Errorf("Isolation/keys=1024 B/op median = %v, want 1165723", m)
	}
}

func TestParseResultLine(t *testing.T) {
	tests := []struct {
		line          string
		name          string
		ns, b, allocs float64
		ok            bool
	}{
		{"BenchmarkExecute/bare-2   \t 4375252\t       271.9 ns/op\t       0 B/op\t       0 allocs/op", "Execute/bare", 271.9, 0, 0, true},
		{"BenchmarkFloor/timeout-16 \t 100\t 1084 ns/op\t 272 B/op\t 4 allocs/op", "Floor/timeout", 1084, 272, 4, true},
		{"BenchmarkNoMem \t 100\t 12.5 ns/op", "NoMem", 12.5, -1, -1, true}, // GOMAXPROCS=1: no suffix, no -benchmem
		{"BenchmarkExecute/bare-2", "", 0, 0, 0, false},                     // interrupted line
		{"PASS", "", 0, 0, 0, false},
		{"ok  \tgithub.com/caudal-go/caudal\t4.899s", "", 0, 0, 0, false},
		{"Benchmark \t 100\t 12.5 ns/op", "", 0, 0, 0, false},
		{"BenchmarkX-2 \t many\t 12.5 ns/op", "", 0, 0, 0, false},
	}
	for _, tt := range tests {
		name, ns, b, allocs, ok := parseResult(tt.line)
		if ok != tt.ok || name != tt.name || (ok && (ns != tt.ns || b != tt.b || allocs != tt.allocs)) {
			t.Errorf("parseResult(%q) = %q %v %v %v %v, want %q %v %v %v %v",
				tt.line, name, ns, b, allocs, ok, tt.name, tt.ns, tt.b, tt.allocs, tt.ok)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},                          // odd: middle value
		{[]float64{271.9, 300, 250.1, 1000, 260}, 271.9}, // odd, unsorted, outlier
		{[]float64{4, 1, 3, 2}, 2.5},                     // even: mean of the two middle values
		{[]float64{10, 20}, 15},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		got, ok := median(in)
		if !ok || got != tt.want {
			t.Errorf("median(%v) = %v, %v; want %v", tt.in, got, ok, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("median modified its input: %v", in)
		}
	}
	if _, ok := median(nil); ok {
		t.Error("median(nil) reported ok")
	}
}

func report(results ...*Result) *Report {
	return &Report{GOOS: "linux", GOARCH: "amd64", CPU: "Test CPU", Benchmarks: results}
}

func bench(name string, ns []float64, allocs float64) *Result {
	r := &Result{Name: name, NsOp: ns}
	for range ns {
		r.BOp = append(r.BOp, 8*allocs)
		r.Allocs = append(r.Allocs, allocs)
	}
	return r
}

func TestTargetsPass(t *testing.T) {
	rep := report(
		bench("Floor/bare", []float64{100, 101, 99}, 0),
		bench("Floor/timeout", []float64{1000, 1010, 990}, 4),
		bench("Execute/bare", []float64{150, 149, 160}, 0),        // median 150: +50, on the limit
		bench("Execute/policies", []float64{1400, 1300, 1350}, 6), // median 1350: +350
	)
	want := []TargetRow{
		{"Execute/bare − Floor/bare", "50.0 ns", "≤ 50 ns", true},
		{"Execute/bare allocs", "0", "0", true},
		{"Execute/policies − Floor/timeout", "350.0 ns", "≤ 500 ns", true},
		{"Execute/policies allocs", "6", "≤ 6", true},
	}
	if got := targets(rep); !slices.Equal(got, want) {
		t.Errorf("targets =\n%v\nwant\n%v", got, want)
	}
}

func TestTargetsFail(t *testing.T) {
	rep := report(
		bench("Floor/bare", []float64{100, 100}, 0),
		bench("Floor/timeout", []float64{1000, 1000}, 4),
		bench("Execute/bare", []float64{150, 151}, 1),       // median 150.5: +50.5
		bench("Execute/policies", []float64{1500, 1502}, 7), // median 1501: +501
	)
	want := []TargetRow{
		{"Execute/bare − Floor/bare", "50.5 ns", "≤ 50 ns", false},
		{"Execute/bare allocs", "1", "0", false},
		{"Execute/policies − Floor/timeout", "501.0 ns", "≤ 500 ns", false},
		{"Execute/policies allocs", "7", "≤ 6", false},
	}
	if got := targets(rep); !slices.Equal(got, want) {
		t.Errorf("targets =\n%v\nwant\n%v", got, want)
	}
	block := render(rep, "go test", time.Now())
	if strings.Count(block, "❌") != 4 || strings.Contains(block, "✅") {
		t.Errorf("render marks:\n%s", block)
	}
}

func TestTargetsFlowPass(t *testing.T) {
	rep := report(
		bench("Seq/steps=3", []float64{4900, 5000, 5100}, 9),           // median 5000: on the limit
		bench("Seq/steps=10", []float64{6750, 6600, 6800}, 23),         // median 6750: (6750−5000)/7 = 250
		bench("Parallel/branches=5", []float64{9999, 10000, 8000}, 30), // median 9999
	)
	want := []TargetRow{
		{"Seq/steps=3", "5.00 µs", "≤ 5 µs", true},
		{"Parallel/branches=5", "10.00 µs", "≤ 10 µs", true},
		{"per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7", "250.0 ns", "≤ 250 ns", true},
		{"per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7 allocs", "2", "≤ 2", true},
	}
	if got := targets(rep); !slices.Equal(got, want) {
		t.Errorf("targets =\n%v\nwant\n%v", got, want)
	}
}

func TestTargetsFlowFail(t *testing.T) {
	rep := report(
		bench("Seq/steps=3", []float64{5001, 5003}, 9),            // median 5002
		bench("Seq/steps=10", []float64{6760, 6762}, 24),          // median 6761: (6761−5002)/7 ≈ 251.3
		bench("Parallel/branches=5", []float64{10000, 10004}, 30), // median 10002
	)
	want := []TargetRow{
		{"Seq/steps=3", "5.00 µs", "≤ 5 µs", false},
		{"Parallel/branches=5", "10.00 µs", "≤ 10 µs", false},
		{"per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7", "251.3 ns", "≤ 250 ns", false},
		{"per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7 allocs", "2.14", "≤ 2", false},
	}
	if got := targets(rep); !slices.Equal(got, want) {
		t.Errorf("targets =\n%v\nwant\n%v", got, want)
	}
	block := render(rep, "go test", time.Now())
	if strings.Count(block, "❌") != 4 || strings.Contains(block, "✅") {
		t.Errorf("render marks:\n%s", block)
	}
}

func TestTargetsJournal(t *testing.T) {
	tests := []struct {
		name    string
		give    []float64 // Journal/steps=10 ns/op; Seq/steps=10 is 2000
		allocs  float64
		wantNs  string
		wantMet bool
		wantA   string
	}{
		{"on the limit", []float64{3000, 2990, 3010}, 11, "100.0 ns", true, "1"},
		{"over the limit", []float64{3001, 3003}, 12, "100.2 ns", false, "1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := report(bench("Seq/steps=10", []float64{2000, 2000}, 1), bench("Journal/steps=10", tt.give, tt.allocs))
			want := []TargetRow{
				{"journaling per step: (Journal/steps=10 − Seq/steps=10) / 10", tt.wantNs, "≤ 100 ns", tt.wantMet},
				{"journaling per step: (Journal/steps=10 − Seq/steps=10) / 10 allocs", tt.wantA, "≤ 1", tt.wantMet},
			}
			if got := targets(rep); !slices.Equal(got, want) {
				t.Errorf("targets =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func TestTargetsFlowOnlyPresent(t *testing.T) {
	metrics := func(rep *Report) []string {
		var m []string
		for _, r := range targets(rep) {
			m = append(m, r.Metric)
		}
		return m
	}
	// Seq/steps=3 alone: its latency row, no per-step rows.
	rep := report(bench("Seq/steps=3", []float64{2000}, 9), bench("Loop/iters=10", []float64{3000}, 20))
	if got, want := metrics(rep), []string{"Seq/steps=3"}; !slices.Equal(got, want) {
		t.Errorf("metrics = %q, want %q", got, want)
	}
	// Without allocs (no -benchmem): the per-step ns row only.
	rep = report(
		&Result{Name: "Seq/steps=3", NsOp: []float64{2000}},
		&Result{Name: "Seq/steps=10", NsOp: []float64{3400}},
	)
	want := []TargetRow{
		{"Seq/steps=3", "2.00 µs", "≤ 5 µs", true},
		{"per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7", "200.0 ns", "≤ 250 ns", true},
	}
	if got := targets(rep); !slices.Equal(got, want) {
		t.Errorf("targets =\n%v\nwant\n%v", got, want)
	}
	// Only the other control-flow benchmarks: no Targets table.
	rep = report(
		bench("Loop/iters=10", []float64{3000}, 20),
		bench("Map/items=100", []float64{30000}, 300),
		bench("Isolation/keys=8", []float64{500}, 2),
	)
	if got := metrics(rep); len(got) != 0 {
		t.Errorf("metrics = %q, want none", got)
	}
}

func TestTargetsOnlyPresent(t *testing.T) {
	// Without Floor/timeout there is no policies difference row; allocs rows
	// need only their own benchmark.
	rep := report(
		bench("Floor/bare", []float64{100}, 0),
		bench("Execute/bare", []float64{120}, 0),
		bench("Execute/policies", []float64{900}, 5),
	)
	var metrics []string
	for _, r := range targets(rep) {
		metrics = append(metrics, r.Metric)
	}
	want := []string{"Execute/bare − Floor/bare", "Execute/bare allocs", "Execute/policies allocs"}
	if !slices.Equal(metrics, want) {
		t.Errorf("metrics = %q, want %q", metrics, want)
	}
	if got := targets(report(bench("Other", []float64{1}, 0))); len(got) != 0 {
		t.Errorf("targets without core benchmarks = %v", got)
	}
	if block := render(report(bench("Other", []float64{1}, 0)), "go test", time.Now()); strings.Contains(block, "Targets") {
		t.Errorf("Targets table rendered without its benchmarks:\n%s", block)
	}
}

func TestReadmeGolden(t *testing.T) {
	fixedNow(t)
	in, err := os.ReadFile("testdata/README.in.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(readme, in, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-in", "testdata/bench.txt", "-readme", readme, "-cmd", testCmd}
	if err := run(args, nil, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout with -readme: %q", stdout.String())
	}
	got, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/README.golden.md"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("README mismatch (go test -update to regenerate)\n--- got\n%s\n--- want\n%s", got, want)
	}

	// Running again on the generated file gives the same file.
	if err := run(args, nil, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(readme); !bytes.Equal(again, want) {
		t.Errorf("second run changed the README:\n%s", again)
	}
}

func TestStdout(t *testing.T) {
	fixedNow(t)
	bench, err := os.ReadFile("testdata/bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-cmd", testCmd}, bytes.NewReader(bench), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	wantNote := "Generated by `make bench-table` (`" + testCmd + "`) on Intel(R) Xeon(R) Processor, linux/amd64, 2026-03-15 UTC; medians of 5 runs.\n"
	if !strings.HasPrefix(out, wantNote) {
		t.Errorf("note:\n%s\nwant prefix:\n%s", out, wantNote)
	}
	for _, want := range []string{
		"| Benchmark | ns/op | B/op | allocs/op |",
		"| `Execute/bare` | 206.5 | 0 | 0 |",
		"| `Floor/timeout` | 1307 | 272 | 4 |",
		"| `Execute/bare − Floor/bare` | 33.7 ns | ≤ 50 ns | ✅ |",
		"| `Execute/policies − Floor/timeout` | -114.0 ns | ≤ 500 ns | ✅ |",
		"| `Execute/policies allocs` | 4 | ≤ 6 | ✅ |",
		"| `Seq/steps=10` | 3450 | 1536 | 1 |",
		"| `Isolation/keys=1024` | 4575526 | 1165723 | 10290 |",
		"| `Seq/steps=3` | 1.04 µs | ≤ 5 µs | ✅ |",
		"| `Parallel/branches=5` | 6.76 µs | ≤ 10 µs | ✅ |",
		"| `per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7` | 344.9 ns | ≤ 250 ns | ❌ |",
		"| `per extra sequential step: (Seq/steps=10 − Seq/steps=3) / 7 allocs` | 0 | ≤ 2 | ✅ |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks line %q:\n%s", want, out)
		}
	}
}

func TestMissingMarkers(t *testing.T) {
	block := "| table |\n"
	tests := []struct {
		doc, want string
	}{
		{"# Title\nno markers\n", "missing " + startMarker + " and " + endMarker},
		{"# T\n" + startMarker + "\nold\n", "missing " + endMarker},
		{"# T\nold\n" + endMarker + "\n", "missing " + startMarker},
		{endMarker + "\n" + startMarker + "\n", "comes before"},
		{startMarker + "\n" + startMarker + "\n" + endMarker + "\n", "duplicate"},
	}
	for _, tt := range tests {
		_, err := replaceBlock([]byte(tt.doc), block, "docs/X.md")
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "docs/X.md: ") {
			t.Errorf("replaceBlock(%q) error = %v, want one naming docs/X.md and containing %q", tt.doc, err, tt.want)
		}
	}

	// Through run: the file is named and left untouched.
	readme := filepath.Join(t.TempDir(), "NOTES.md")
	const doc = "# Notes\nnothing to replace\n"
	if err := os.WriteFile(readme, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run([]string{"-in", "testdata/bench.txt", "-readme", readme, "-cmd", "go test"}, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), readme) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("run error = %v, want a missing-marker error naming %s", err, readme)
	}
	if got, _ := os.ReadFile(readme); string(got) != doc {
		t.Errorf("file modified: %q", got)
	}
}

func TestReplaceBlockKeepsMarkers(t *testing.T) {
	doc := "a\n  " + startMarker + "  \nold 1\nold 2\n" + endMarker + "\nb\n"
	got, err := replaceBlock([]byte(doc), "new\n", "x")
	if err != nil {
		t.Fatal(err)
	}
	want := "a\n  " + startMarker + "  \nnew\n" + endMarker + "\nb\n"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args  []string
		usage bool // a usageError (exit 2)
	}{
		{[]string{"-nope"}, true},
		{[]string{"-cmd", "go test", "extra"}, true},
		{[]string{"-in", "testdata/bench.txt"}, true}, // -cmd missing
		{[]string{"-cmd", "go test", "-in", "testdata/does-not-exist.txt"}, false},
		{[]string{"-cmd", "go test", "-in", "testdata/README.in.md"}, false}, // no results
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(tt.args, strings.NewReader(""), &stdout, &stderr)
		var ue *usageError
		if err == nil || errors.As(err, &ue) != tt.usage {
			t.Errorf("run(%q) = %v (%T), want usage error: %v", tt.args, err, err, tt.usage)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-h"}, nil, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "usage: benchtable") {
		t.Errorf("-h printed %q", stderr.String())
	}
}

func TestFormatting(t *testing.T) {
	for v, want := range map[float64]string{0: "0.0", 33.75: "33.8", 271.9: "271.9", 999.9: "999.9", 1307: "1307", 1307.5: "1308", -114: "-114.0"} {
		if got := fmtNs(v); got != want {
			t.Errorf("fmtNs(%v) = %q, want %q", v, got, want)
		}
	}
	if got, want := cell("A|B"), "`A\\|B`"; got != want {
		t.Errorf("cell = %q, want %q", got, want)
	}
	if got, want := code("a`b|c"), "``a`b|c``"; got != want {
		t.Errorf("code = %q, want %q", got, want)
	}
}
