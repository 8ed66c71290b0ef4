package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/caudal-go/caudal/perf/advise"
)

// adviseCmd runs caudal advise: read every file, find the patterns,
// print the recommended config. Errors: a usage error for bad flags, no
// file or an unknown --format; a file that cannot be read or parsed
// (naming file:line for a malformed line of an event log).
func adviseCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("caudal advise", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("format", advise.FormatText, "text, go or json")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return printHelp(stdout)
	} else if err != nil {
		return usagef("advise: %w\n%s", err, synopsis)
	}
	switch *format {
	case advise.FormatText, advise.FormatGo, advise.FormatJSON:
	default:
		return usagef("advise: --format %q: want text, go or json", *format)
	}
	if fs.NArg() == 0 {
		return usagef("advise: no file: give an event log or a bench JSON report\n%s", synopsis)
	}
	var inputs []*advise.Input
	for _, path := range fs.Args() {
		in, err := advise.ReadFile(path)
		if err != nil {
			return fmt.Errorf("advise: %w", err)
		}
		inputs = append(inputs, in)
	}
	return advise.Write(stdout, advise.Analyze(inputs), *format)
}
