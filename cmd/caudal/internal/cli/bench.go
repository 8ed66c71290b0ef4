package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/caudal-go/caudal/perf"
)

// checkAgainst compares a run with its reference; a variable so that tests
// can make it fail.
var checkAgainst = perf.CheckAgainst

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
	against  string
}

// parseBench parses the flags of bench. It returns flag.ErrHelp, unwrapped,
// when they ask for help.
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
	fs.StringVar(&f.against, "against", "", "exit 1 on a regression against the JSON report in `file`")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil, err
	} else if err != nil {
		return nil, usagef("bench: %w\n%s", err, synopsis)
	}
	if fs.NArg() > 0 {
		return nil, usagef("bench: unexpected arguments %q\n%s", fs.Args(), synopsis)
	}
	switch f.suite {
	case perf.SuiteSeed, perf.SuiteDesigned, perf.SuiteMatrix, "all":
	default:
		return nil, usagef("bench: --suite %q: want seed, designed, matrix or all", f.suite)
	}
	if f.time < 0 {
		return nil, usagef("bench: --time %v: must be positive", f.time)
	}
	return f, nil
}

// suites returns the suites to run, in order.
func (f *benchFlags) suites() []string {
	if f.suite == "all" {
		return []string{perf.SuiteSeed, perf.SuiteDesigned, perf.SuiteMatrix}
	}
	return []string{f.suite}
}

// output is a report file asked for by a flag.
type output struct {
	flag  string // without dashes
	path  string
	write func(io.Writer, *perf.Report) error
}

// outputs returns the report files of suite. With several suites, file
// names get the suite before their extension.
func (f *benchFlags) outputs(suite string) []output {
	name := func(path string) string {
		if f.suite != "all" {
			return path
		}
		ext := filepath.Ext(path)
		return strings.TrimSuffix(path, ext) + "-" + suite + ext
	}
	var outs []output
	for _, o := range []output{
		{"md", f.md, perf.WriteMarkdown},
		{"json", f.json, perf.WriteJSON},
		{"html", f.html, perf.WriteHTML},
	} {
		if o.path != "" {
			o.path = name(o.path)
			outs = append(outs, o)
		}
	}
	return outs
}

// checkPaths checks, before the run, that every report file and the
// history can be written. Errors are usage errors naming the flag and path.
func (f *benchFlags) checkPaths() error {
	seen := make(map[string]string) // cleaned destination → flag
	for _, suite := range f.suites() {
		for _, o := range f.outputs(suite) {
			if err := checkOutputFile(o.path); err != nil {
				return usagef("bench: --%s %s: %w", o.flag, o.path, err)
			}
			key := filepath.Clean(destination(o.path))
			if prev, ok := seen[key]; ok {
				return usagef("bench: --%s and --%s both write %s", prev, o.flag, o.path)
			}
			seen[key] = o.flag
		}
	}
	if f.history != "" {
		if err := checkHistoryDir(f.history); err != nil {
			return usagef("bench: --history %s: %w", f.history, err)
		}
	}
	return nil
}

// loadReference loads and checks the --against report, if any.
func (f *benchFlags) loadReference() (*perf.Report, error) {
	if f.against == "" {
		return nil, nil
	}
	ref, err := perf.LoadReport(f.against)
	if err != nil {
		return nil, usagef("bench: --against %s: %w", f.against, err)
	}
	switch ref.Suite {
	case perf.SuiteSeed, perf.SuiteDesigned, perf.SuiteMatrix:
	default:
		return nil, usagef("bench: --against %s: a report of suite %q; want seed, designed or matrix", f.against, ref.Suite)
	}
	if f.suite != "all" && ref.Suite != f.suite {
		return nil, usagef("bench: --against %s: a report of the %s suite; this run measures the %s suite", f.against, ref.Suite, f.suite)
	}
	return ref, nil
}

// failedError is a completed run that failed gates or regressed against
// its reference: exit status 1.
type failedError struct {
	gates       int
	regressions int
	against     string
}

func (e *failedError) Error() string {
	var parts []string
	if e.gates > 0 {
		parts = append(parts, fmt.Sprintf("%d gate(s) failed", e.gates))
	}
	if e.regressions > 0 {
		parts = append(parts, fmt.Sprintf("%d regression(s) against %s", e.regressions, e.against))
	}
	return strings.Join(parts, ", ")
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseBench(args)
	if errors.Is(err, flag.ErrHelp) {
		return printHelp(stdout)
	}
	if err != nil {
		return err
	}
	if err := f.checkPaths(); err != nil {
		return err
	}
	ref, err := f.loadReference()
	if err != nil {
		return err
	}
	prog := newProgress(stderr)
	failed := &failedError{against: f.against}
	for _, suite := range f.suites() {
		rep, err := perf.Run(ctx, perf.Options{
			Suite: suite, Variants: f.variants, Quick: f.quick, TimePerScenario: f.time,
			Progress: func(scenario string, done float64, phase string) { prog.update(suite, scenario, done, phase) },
		})
		prog.done()
		if ctx.Err() != nil {
			return interrupted(ctx, suite)
		}
		if err != nil {
			return fmt.Errorf("bench: %s suite: %w", suite, err)
		}
		if err := perf.WriteMarkdown(stdout, rep); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := f.save(ctx, rep, suite); err != nil {
			return err
		}
		if f.check {
			for _, g := range perf.Check(rep) {
				failed.gates++
				_, _ = fmt.Fprintf(stderr, "gate failed (%s suite): %s\n", suite, g)
			}
		}
		if ref != nil && ref.Suite == suite {
			for _, g := range checkAgainst(rep, ref) {
				failed.regressions++
				_, _ = fmt.Fprintf(stderr, "regression against %s: %s\n", f.against, g)
			}
		}
	}
	if failed.gates+failed.regressions > 0 {
		return failed
	}
	return nil
}

// interrupted is the error of a run of suite stopped by ctx.
func interrupted(ctx context.Context, suite string) error {
	return fmt.Errorf("bench: interrupted during the %s suite (%w): nothing of it was saved", suite, context.Cause(ctx))
}

// save writes the report files of suite and its history entry. Each file
// is written beside its destination and renamed into place only once every
// file is complete; nothing is saved once ctx is done.
func (f *benchFlags) save(ctx context.Context, rep *perf.Report, suite string) error {
	var staged []*stagedFile
	defer func() {
		for _, s := range staged {
			s.discard()
		}
	}()
	for _, o := range f.outputs(suite) {
		s, err := stage(o.path, func(w io.Writer) error { return o.write(w, rep) })
		if err != nil {
			return fmt.Errorf("bench: --%s: %w", o.flag, err)
		}
		staged = append(staged, s)
	}
	if ctx.Err() != nil {
		return interrupted(ctx, suite)
	}
	for _, s := range staged {
		if err := s.commit(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if f.history != "" {
		if _, err := perf.SaveHistory(f.history, rep); err != nil {
			return fmt.Errorf("bench: --history: %w", err)
		}
	}
	return nil
}
