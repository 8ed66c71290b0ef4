package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/caudal-go/caudal/perf"
)

// Exit statuses.
const (
	exitFailure = 1 // a failed gate or run
	exitUsage   = 2 // a bad command line
)

// usageError is a bad command line (flags, arguments, paths): exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError formatted like fmt.Errorf.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// ExitCode maps an error returned by [Run] to the process exit status: 0
// for nil; 2 for a usage error (bad flags, arguments, output paths or
// --against file), detected before anything runs; 1 for everything else: a
// failed --check gate, a regression against --against, or a run error (a
// workload failing, an interruption, a report that could not be written).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var u *usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailure
}

// synopsis follows every flag or argument error.
const synopsis = `usage:
  caudal bench [--suite seed|designed|matrix|all] [--variant NAME]... [--quick] [--time D]
               [--json FILE] [--md FILE] [--html FILE] [--history DIR] [--check] [--against FILE]
  caudal bench history [--history DIR]
  caudal advise [--format text|go|json] FILE...
run 'caudal help' for details`

// help is printed on standard output by caudal help, -h and --help.
const help = `usage:
  caudal bench [flags]           measure a suite, print its report and store the run
  caudal bench history [flags]   print the historical comparison of stored runs
  caudal advise [flags] FILE...  recommend an optimization config from a recorded run
  caudal help                    print this text

Flags of bench:
  --suite seed|designed|matrix|all   the suite to run (default seed)
  --variant NAME    a variant to compare with the baseline; repeatable; default
                    optimized; any --variant replaces the default
  --quick           short sampling: the whole seed suite in under a minute
  --time DURATION   timed budget per scenario (default 2s, 1s with --quick)
  --json FILE, --md FILE, --html FILE
                    write the report there too; with --suite all, each suite's
                    name goes before the extension (r.json: r-seed.json, ...)
  --history DIR     where runs are stored (default .caudal/bench)
  --check           exit 1 when a gate fails
  --against FILE    compare the run with an earlier one stored by --json, of the
                    same suite (with --suite all, of the suite it recorded), and
                    exit 1 on a regression; it gates with or without --check

Flags of bench history:
  --history DIR     where runs are stored (default .caudal/bench)

Flags of advise:
  --format text|go|json
                    text (default): each recommended component with the
                    pattern that triggered it (counts, paths, examples), then
                    the optimize.Config as Go and as JSON; go: the Config as
                    a Go file only; json: the findings and the Config
advise reads each FILE — a JSON event log written by caudal.SlogSink through
slog.NewJSONHandler at slog.LevelDebug (examples/quickstart writes one:
caudal-events.jsonl), or a report written by caudal bench --json — and
recommends the components its data calls for; with no pattern, it says to
keep the baseline and why. A malformed line is an error naming FILE:LINE.

The output paths and the --against file are checked before anything runs.
The Markdown report is printed on standard output; progress goes to standard
error. Interrupting a run (Ctrl-C) saves nothing of the suite it was running:
report files are replaced only once complete, and no history entry is stored.

Exit status: 0 on success; 1 for a failed gate, a regression against
--against, or a run error (a workload failing, an interruption, a report that
could not be written); 2 for bad flags, arguments or paths.`

// Run runs the caudal command with args (without the program name). It
// returns nil after printing the help asked for with help, -h or --help.
// Errors: a usage error ([ExitCode] 2) before anything runs; a failed gate,
// a regression or a run error (ExitCode 1) otherwise. Cancelling ctx
// interrupts a run: Run returns an error wrapping ctx's cause.
func Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("no command\n%s", synopsis)
	}
	switch args[0] {
	case "bench":
		if len(args) > 1 && args[1] == "history" {
			return benchHistory(args[2:], stdout)
		}
		return bench(ctx, args[1:], stdout, stderr)
	case "advise":
		return adviseCmd(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		return printHelp(stdout)
	}
	return usagef("unknown command %q\n%s", args[0], synopsis)
}

func printHelp(stdout io.Writer) error {
	_, err := fmt.Fprintln(stdout, help)
	return err
}

func benchHistory(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("caudal bench history", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("history", filepath.Join(".caudal", "bench"), "history `dir`")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return printHelp(stdout)
	} else if err != nil {
		return usagef("bench history: %w\n%s", err, synopsis)
	}
	if fs.NArg() > 0 {
		return usagef("bench history: unexpected arguments %q\n%s", fs.Args(), synopsis)
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
