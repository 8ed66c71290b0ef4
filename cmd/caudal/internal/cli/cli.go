package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caudal-go/caudal/perf"
)

// Exit statuses.
const (
	exitGate  = 1
	exitUsage = 2
)

// usageError is a bad command line: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// gateError is a failed --check gate: exit status 1.
type gateError struct{ n int }

func (e *gateError) Error() string { return fmt.Sprintf("%d gate(s) failed", e.n) }

// ExitCode maps an error of Run to the process exit status: 1 for a failed
// gate, 2 for bad flags and run errors.
func ExitCode(err error) int {
	var g *gateError
	if errors.As(err, &g) {
		return exitGate
	}
	return exitUsage
}

const usage = `usage:
  caudal bench [--suite seed|designed|matrix|all] [--variant NAME]... [--quick] [--time D]
               [--json FILE] [--md FILE] [--html FILE] [--history DIR] [--check]
  caudal bench history [--history DIR]`

// Run runs the caudal command with args (without the program name).
func Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{errors.New("no command\n" + usage)}
	}
	switch args[0] {
	case "bench":
		if len(args) > 1 && args[1] == "history" {
			return benchHistory(args[2:], stdout)
		}
		return bench(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		_, _ = fmt.Fprintln(stdout, usage)
		return nil
	}
	return &usageError{fmt.Errorf("unknown command %q\n%s", args[0], usage)}
}

// variantList is a repeatable --variant flag.
type variantList []string

func (v *variantList) String() string { return strings.Join(*v, ",") }

func (v *variantList) Set(s string) error {
	if _, _, err := perf.LookupVariant(s); err != nil {
		return err
	}
	*v = append(*v, s)
	return nil
}

type benchFlags struct {
	suite    string
	variants variantList
	quick    bool
	time     time.Duration
	json     string
	md       string
	html     string
	history  string
	check    bool
}

func parseBench(args []string) (*benchFlags, error) {
	f := &benchFlags{}
	fs := flag.NewFlagSet("caudal bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.suite, "suite", perf.SuiteSeed, "seed, designed, matrix or all")
	fs.Var(&f.variants, "variant", "variant to compare with the baseline (repeatable)")
	fs.BoolVar(&f.quick, "quick", false, "short sampling")
	fs.DurationVar(&f.time, "time", 0, "timed budget per scenario")
	fs.StringVar(&f.json, "json", "", "write the JSON report to `file`")
	fs.StringVar(&f.md, "md", "", "write the Markdown report to `file`")
	fs.StringVar(&f.html, "html", "", "write the HTML report to `file`")
	fs.StringVar(&f.history, "history", filepath.Join(".caudal", "bench"), "history `dir`")
	fs.BoolVar(&f.check, "check", false, "exit 1 when a gate fails")
	if err := fs.Parse(args); err != nil {
		return nil, &usageError{fmt.Errorf("bench: %w\n%s", err, usage)}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Errorf("bench: unexpected arguments %q\n%s", fs.Args(), usage)}
	}
	switch f.suite {
	case perf.SuiteSeed, perf.SuiteDesigned, perf.SuiteMatrix, "all":
	default:
		return nil, &usageError{fmt.Errorf("bench: --suite %q: want seed, designed, matrix or all", f.suite)}
	}
	if f.time < 0 {
		return nil, &usageError{fmt.Errorf("bench: --time %v: must be positive", f.time)}
	}
	return f, nil
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseBench(args)
	if err != nil {
		return err
	}
	suites := []string{f.suite}
	if f.suite == "all" {
		suites = []string{perf.SuiteSeed, perf.SuiteDesigned, perf.SuiteMatrix}
	}
	prog := newProgress(stderr)
	failed := 0
	for _, suite := range suites {
		rep, err := perf.Run(ctx, perf.Options{
			Suite: suite, Variants: f.variants, Quick: f.quick, TimePerScenario: f.time,
			Progress: func(scenario string, done float64, phase string) { prog.update(suite, scenario, done, phase) },
		})
		prog.done()
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := writeReports(rep, f, suite, len(suites) > 1, stdout); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if f.check {
			for _, g := range perf.Check(rep) {
				failed++
				_, _ = fmt.Fprintf(stderr, "gate failed (%s suite): %s\n", suite, g)
			}
		}
	}
	if failed > 0 {
		return &gateError{n: failed}
	}
	return nil
}

// writeReports prints the Markdown report and writes the requested files
// and the history entry. With several suites, file names get the suite
// before their extension.
func writeReports(rep *perf.Report, f *benchFlags, suite string, several bool, stdout io.Writer) error {
	if err := perf.WriteMarkdown(stdout, rep); err != nil {
		return err
	}
	name := func(path string) string {
		if !several || path == "" {
			return path
		}
		ext := filepath.Ext(path)
		return strings.TrimSuffix(path, ext) + "-" + suite + ext
	}
	writers := []struct {
		path  string
		write func(io.Writer, *perf.Report) error
	}{
		{name(f.md), perf.WriteMarkdown},
		{name(f.json), perf.WriteJSON},
		{name(f.html), perf.WriteHTML},
	}
	for _, w := range writers {
		if w.path == "" {
			continue
		}
		if err := writeFile(w.path, func(out io.Writer) error { return w.write(out, rep) }); err != nil {
			return err
		}
	}
	if f.history != "" {
		if _, err := perf.SaveHistory(f.history, rep); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(out); err != nil {
		_ = out.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return out.Close()
}

func benchHistory(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("caudal bench history", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("history", filepath.Join(".caudal", "bench"), "history `dir`")
	if err := fs.Parse(args); err != nil {
		return &usageError{fmt.Errorf("bench history: %w\n%s", err, usage)}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Errorf("bench history: unexpected arguments %q\n%s", fs.Args(), usage)}
	}
	reports, err := perf.LoadHistory(*dir)
	if err != nil {
		return fmt.Errorf("bench history: %w", err)
	}
	if len(reports) == 0 {
		return fmt.Errorf("bench history: no runs stored in %s (run caudal bench first)", *dir)
	}
	return perf.WriteHistoryTable(stdout, reports)
}
