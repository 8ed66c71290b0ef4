// Command caudal is Caudal's command line. Today it runs the performance
// validation suite and recommends an optimization config from a recorded
// run; running, resuming and validating pipelines come with the runner and
// the blueprints.
//
// Usage:
//
//	caudal bench [flags]           measure the suite and print its report
//	caudal bench history [flags]   print the historical comparison of stored runs
//	caudal advise [flags] FILE...  recommend an optimize.Config from a recorded run
//	caudal help                    print the usage (so do -h and --help)
//
// Flags of bench:
//
//	--suite seed|designed|matrix|all   the suite to run (default seed)
//	--variant NAME                     a variant to compare with the baseline; repeatable;
//	                                   default optimized; any --variant replaces the default
//	--quick                            short sampling: the whole seed suite in under a minute
//	--time DURATION                    timed budget per scenario (default 2s, 1s with --quick)
//	--json FILE, --md FILE, --html FILE   write the report there too
//	--history DIR                      where runs are stored (default .caudal/bench)
//	--check                            exit 1 when a gate fails
//	--against FILE                     exit 1 on a regression against an earlier run's
//	                                   --json report of the same suite (no --check needed)
//
// Flags of advise:
//
//	--format text|go|json              text (default): each recommended component with the
//	                                   pattern behind it, then the Config as Go and JSON;
//	                                   go: the Config as a Go file; json: findings and Config
//
// advise reads JSON event logs (caudal.SlogSink through slog.NewJSONHandler
// at slog.LevelDebug) and bench JSON reports; with no pattern it says to
// keep the baseline, and why. See package perf/advise for the patterns.
//
// The output paths and the --against file are checked before anything runs.
// The Markdown report is printed on standard output; progress goes to
// standard error, as a bar on a terminal and as plain lines otherwise.
// Interrupting a run (Ctrl-C, SIGTERM) stops it and saves nothing of the
// suite it was running: report files are replaced only once complete, and
// no history entry is stored. A second Ctrl-C kills the process at once.
//
// Exit status: 0 on success; 1 for a failed gate, a regression against
// --against, or a run error (a workload failing, an interruption, a report
// that could not be written); 2 for bad flags, arguments or paths.
//
// # Examples
//
// Reproduce the study's five scenarios, with the negative control, quickly:
//
//	caudal bench --suite seed --quick --variant naive --md report.md --json report.json
//
// Gate a change in CI:
//
//	caudal bench --suite seed --quick --check
//
// Catch a regression of the baseline itself between commits:
//
//	caudal bench --suite seed --quick --variant baseline --json ref.json   # on the old commit
//	caudal bench --suite seed --quick --variant baseline --against ref.json
//
// Compare stored runs:
//
//	caudal bench history
//
// Recommend a config from the quickstart's recorded run, or from a report:
//
//	go run ./examples/quickstart && caudal advise caudal-events.jsonl
//	caudal advise --format go report.json
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/caudal-go/caudal/cmd/caudal/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Once interrupted, the run winds down; a second signal kills at once.
	context.AfterFunc(ctx, stop)
	err := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err and maps it to the exit status.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	_, _ = fmt.Fprintln(stderr, "caudal:", err)
	return cli.ExitCode(err)
}
