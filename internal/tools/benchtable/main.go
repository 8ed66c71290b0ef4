// Command benchtable turns `go test -bench` output into the Markdown
// performance table of the README, so that no benchmark figure is ever typed
// by hand.
//
// It reads text produced by `go test -bench ... -benchmem -count=N`, takes the
// median ns/op, B/op and allocs/op of every benchmark over its runs, and
// writes a Markdown block: a note naming the command, the machine and the
// date, a table of the medians in input order, and a table of the targets
// whose benchmarks are present:
//
//   - Execute/bare − Floor/bare ≤ 50 ns, with 0 allocs/op;
//   - Execute/policies − Floor/timeout ≤ 500 ns, with ≤ 6 allocs/op;
//   - Seq/steps=3 ≤ 5 µs and Parallel/branches=5 ≤ 10 µs;
//   - per extra sequential step, (Seq/steps=10 − Seq/steps=3) / 7 ≤ 250 ns,
//     with ≤ 2 allocs/op;
//   - journaling per step, (Journal/steps=10 − Seq/steps=10) / 10 ≤ 100 ns,
//     with ≤ 1 alloc/op.
//
// Usage:
//
//	benchtable -cmd 'go test ...' [-in bench.txt] [-readme README.md]
//
// The flags are:
//
//	-cmd string
//		the exact go test command that produced the input; named in the note (required)
//	-in file
//		go test -bench output to read; "-" or empty reads standard input
//	-readme file
//		replace the text between the lines <!-- bench-table:start --> and
//		<!-- bench-table:end --> of file with the block (keeping the markers);
//		without it the block is printed to standard output
//
// `make bench-table` runs the core and control-flow benchmarks and this
// command.
//
// Exit status: 2 on bad flags, 1 on any other error.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Marker lines delimiting the generated block in the README.
const (
	startMarker = "<!-- bench-table:start -->"
	endMarker   = "<!-- bench-table:end -->"
)

// now is the clock used for the date of the note; tests replace it.
var now = time.Now

// usageError is a command-line error: main exits with status 2 on it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		// -h: the usage has been printed.
	default:
		fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchtable", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	in := fs.String("in", "", "`file` of go test -bench output (\"-\" or empty: standard input)")
	readme := fs.String("readme", "", "`file` whose bench-table block to replace (default: print the block)")
	cmd := fs.String("cmd", "", "the exact go test `command` that produced the input, named in the note (required)")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "usage: benchtable -cmd 'go test ...' [-in bench.txt] [-readme README.md]")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return &usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	if strings.TrimSpace(*cmd) == "" {
		fs.Usage()
		return &usageError{errors.New("-cmd is required: name the go test command that produced the input")}
	}

	r, name := stdin, "standard input"
	if *in != "" && *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // read-only: a close error loses nothing
		r, name = f, *in
	}
	rep, err := parse(r)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if len(rep.Benchmarks) == 0 {
		return fmt.Errorf("%s: no benchmark results", name)
	}
	block := render(rep, *cmd, now())

	if *readme == "" {
		_, err := io.WriteString(stdout, block)
		return err
	}
	return updateReadme(*readme, block)
}

// Result is one benchmark with its runs, in input order.
type Result struct {
	Name   string    // without the "Benchmark" prefix and the -GOMAXPROCS suffix
	NsOp   []float64 // one per run
	BOp    []float64 // one per run reporting B/op
	Allocs []float64 // one per run reporting allocs/op
}

// Runs is the number of runs of r.
func (r *Result) Runs() int { return len(r.NsOp) }

// Report is the parsed go test -bench output.
type Report struct {
	GOOS, GOARCH, CPU string
	Benchmarks        []*Result
}

// Find returns the benchmark named name (without "Benchmark"), or nil.
func (rep *Report) Find(name string) *Result {
	for _, b := range rep.Benchmarks {
		if b.Name == name {
			return b
		}
	}
	return nil
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench text output. Lines other than the header lines
// and complete benchmark result lines (PASS, ok, logs, ...) are ignored.
func parse(r io.Reader) (*Report, error) {
	rep := &Report{}
	byName := map[string]*Result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "Benchmark") {
			v = strings.TrimSpace(v)
			switch k {
			case "goos":
				setOnce(&rep.GOOS, v)
			case "goarch":
				setOnce(&rep.GOARCH, v)
			case "cpu":
				setOnce(&rep.CPU, v)
			}
			continue
		}
		name, ns, b, allocs, ok := parseResult(line)
		if !ok {
			continue
		}
		res := byName[name]
		if res == nil {
			res = &Result{Name: name}
			byName[name] = res
			rep.Benchmarks = append(rep.Benchmarks, res)
		}
		res.NsOp = append(res.NsOp, ns)
		if b >= 0 {
			res.BOp = append(res.BOp, b)
		}
		if allocs >= 0 {
			res.Allocs = append(res.Allocs, allocs)
		}
	}
	return rep, sc.Err()
}

func setOnce(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// parseResult parses a line such as
//
//	BenchmarkExecute/bare-2   	 4375252	       271.9 ns/op	       0 B/op	       0 allocs/op
//
// b and allocs are -1 when the line does not report them.
func parseResult(line string) (name string, ns, b, allocs float64, ok bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f[0]) == len("Benchmark") {
		return "", 0, 0, 0, false
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return "", 0, 0, 0, false
	}
	name = procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
	ns, b, allocs = -1, -1, -1
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", 0, 0, 0, false
		}
		switch f[i+1] {
		case "ns/op":
			ns = v
		case "B/op":
			b = v
		case "allocs/op":
			allocs = v
		}
	}
	if ns < 0 {
		return "", 0, 0, 0, false
	}
	return name, ns, b, allocs, true
}

// median returns the median of xs (the mean of the two middle values for an
// even count); ok is false when xs is empty.
func median(xs []float64) (m float64, ok bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// TargetRow is one line of the Targets table.
type TargetRow struct {
	Metric   string // e.g. "Execute/bare − Floor/bare"
	Measured string // e.g. "12.3 ns"
	Target   string // e.g. "≤ 50 ns"
	Met      bool
}

// targets computes the target rows whose benchmarks are present in rep.
func targets(rep *Report) []TargetRow {
	var rows []TargetRow
	diff := func(exec, floor string, limit float64) {
		e, f := rep.Find(exec), rep.Find(floor)
		if e == nil || f == nil {
			return
		}
		em, _ := median(e.NsOp)
		fm, _ := median(f.NsOp)
		d := em - fm
		rows = append(rows, TargetRow{
			Metric:   exec + " − " + floor,
			Measured: fmtNs(d) + " ns",
			Target:   "≤ " + fmtNum(limit) + " ns",
			Met:      d <= limit,
		})
	}
	allocs := func(exec string, limit float64) {
		e := rep.Find(exec)
		if e == nil {
			return
		}
		m, ok := median(e.Allocs)
		if !ok {
			return
		}
		t := "≤ " + fmtNum(limit)
		if limit == 0 {
			t = "0"
		}
		rows = append(rows, TargetRow{
			Metric:   exec + " allocs",
			Measured: fmtNum(m),
			Target:   t,
			Met:      m <= limit,
		})
	}
	// latency is a median ns/op against a limit in µs.
	latency := func(name string, limitUs float64) {
		b := rep.Find(name)
		if b == nil {
			return
		}
		m, _ := median(b.NsOp)
		rows = append(rows, TargetRow{
			Metric:   name,
			Measured: fmtUs(m) + " µs",
			Target:   "≤ " + fmtNum(limitUs) + " µs",
			Met:      m <= limitUs*1000,
		})
	}
	// perUnit is the difference of two benchmarks' medians per unit of
	// their difference in work: per extra sequential step, per journaled
	// step.
	perUnit := func(metric, more, less string, units, limitNs, limitAllocs float64) {
		m, l := rep.Find(more), rep.Find(less)
		if m == nil || l == nil {
			return
		}
		mm, _ := median(m.NsOp)
		lm, _ := median(l.NsOp)
		d := (mm - lm) / units
		rows = append(rows, TargetRow{
			Metric:   metric,
			Measured: fmtNs(d) + " ns",
			Target:   "≤ " + fmtNum(limitNs) + " ns",
			Met:      d <= limitNs,
		})
		ma, mok := median(m.Allocs)
		la, lok := median(l.Allocs)
		if !mok || !lok {
			return
		}
		a := (ma - la) / units
		rows = append(rows, TargetRow{
			Metric:   metric + " allocs",
			Measured: fmtNum(math.Round(a*100) / 100),
			Target:   "≤ " + fmtNum(limitAllocs),
			Met:      a <= limitAllocs,
		})
	}
	diff("Execute/bare", "Floor/bare", 50)
	allocs("Execute/bare", 0)
	diff("Execute/policies", "Floor/timeout", 500)
	allocs("Execute/policies", 6)
	latency(seqShort, 5)
	latency("Parallel/branches=5", 10)
	perUnit(perStepMetric, seqLong, seqShort, seqLongSteps-seqShortSteps, 250, 2)
	perUnit(journalMetric, journalSeq, seqLong, seqLongSteps, 100, 1)
	return rows
}

// The two sequence benchmarks whose difference gives the per-step cost.
const (
	seqShortSteps = 3
	seqLongSteps  = 10
	seqShort      = "Seq/steps=3"
	seqLong       = "Seq/steps=10"
	perStepMetric = "per extra sequential step: (" + seqLong + " − " + seqShort + ") / 7"
	journalSeq    = "Journal/steps=10"
	journalMetric = "journaling per step: (" + journalSeq + " − " + seqLong + ") / 10"
)

// render writes the Markdown block (without the markers), ending in a newline.
func render(rep *Report, cmd string, t time.Time) string {
	var buf bytes.Buffer
	cpu := rep.CPU
	if cpu == "" {
		cpu = "an unknown CPU"
	}
	goos, goarch := orUnknown(rep.GOOS), orUnknown(rep.GOARCH)
	fmt.Fprintf(&buf, "Generated by `make bench-table` (%s) on %s, %s/%s, %s UTC; medians of %s.\n",
		code(cmd), cpu, goos, goarch, t.UTC().Format(time.DateOnly), runsText(rep))

	buf.WriteString("\n| Benchmark | ns/op | B/op | allocs/op |\n|---|--:|--:|--:|\n")
	for _, b := range rep.Benchmarks {
		ns, _ := median(b.NsOp)
		fmt.Fprintf(&buf, "| %s | %s | %s | %s |\n",
			cell(b.Name), fmtNs(ns), medianOrDash(b.BOp), medianOrDash(b.Allocs))
	}

	if rows := targets(rep); len(rows) > 0 {
		buf.WriteString("\nTargets:\n\n| Metric | Measured | Target | Met |\n|---|--:|--:|:-:|\n")
		for _, r := range rows {
			mark := "❌"
			if r.Met {
				mark = "✅"
			}
			fmt.Fprintf(&buf, "| %s | %s | %s | %s |\n", cell(r.Metric), r.Measured, r.Target, mark)
		}
	}
	return buf.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// runsText is "10 runs", or "3–10 runs" when the benchmarks ran a different
// number of times.
func runsText(rep *Report) string {
	lo, hi := rep.Benchmarks[0].Runs(), rep.Benchmarks[0].Runs()
	for _, b := range rep.Benchmarks[1:] {
		lo, hi = min(lo, b.Runs()), max(hi, b.Runs())
	}
	switch {
	case lo != hi:
		return fmt.Sprintf("%d–%d runs", lo, hi)
	case lo == 1:
		return "1 run"
	}
	return fmt.Sprintf("%d runs", lo)
}

func medianOrDash(xs []float64) string {
	m, ok := median(xs)
	if !ok {
		return "–"
	}
	return fmtNum(m)
}

// fmtNs formats a duration in ns: one decimal below 1000 ns, none above.
func fmtNs(v float64) string {
	if math.Abs(v) >= 999.95 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fmtUs formats a duration given in ns as µs with two decimals.
func fmtUs(ns float64) string { return strconv.FormatFloat(ns/1000, 'f', 2, 64) }

// fmtNum formats a count without trailing zeros (0, 48, 2.5).
func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// cell renders s as a Markdown code span in a table cell, where the column
// separator must be escaped even inside the span.
func cell(s string) string { return code(strings.ReplaceAll(s, "|", `\|`)) }

// code renders s as a Markdown code span.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// replaceBlock replaces the lines between the start and end marker lines of
// doc with block, keeping the markers. name is used in errors.
func replaceBlock(doc []byte, block, name string) ([]byte, error) {
	lines := strings.SplitAfter(string(doc), "\n")
	start, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case startMarker:
			if start >= 0 {
				return nil, fmt.Errorf("%s: duplicate %s marker (lines %d and %d)", name, startMarker, start+1, i+1)
			}
			start = i
		case endMarker:
			if end >= 0 {
				return nil, fmt.Errorf("%s: duplicate %s marker (lines %d and %d)", name, endMarker, end+1, i+1)
			}
			end = i
		}
	}
	switch {
	case start < 0 && end < 0:
		return nil, fmt.Errorf("%s: missing %s and %s marker lines", name, startMarker, endMarker)
	case start < 0:
		return nil, fmt.Errorf("%s: missing %s marker line", name, startMarker)
	case end < 0:
		return nil, fmt.Errorf("%s: missing %s marker line", name, endMarker)
	case end < start:
		return nil, fmt.Errorf("%s: %s (line %d) comes before %s (line %d)", name, endMarker, end+1, startMarker, start+1)
	}
	if !strings.HasSuffix(lines[start], "\n") {
		return nil, fmt.Errorf("%s: %s marker line must be followed by a newline", name, startMarker)
	}
	var out strings.Builder
	for _, l := range lines[:start+1] {
		out.WriteString(l)
	}
	out.WriteString(block)
	if block != "" && !strings.HasSuffix(block, "\n") {
		out.WriteString("\n")
	}
	for _, l := range lines[end:] {
		out.WriteString(l)
	}
	return []byte(out.String()), nil
}

// updateReadme replaces the marked block of the file named path.
func updateReadme(path, block string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := replaceBlock(doc, block, path)
	if err != nil {
		return err
	}
	if bytes.Equal(out, doc) {
		return nil
	}
	return os.WriteFile(path, out, fi.Mode().Perm())
}
