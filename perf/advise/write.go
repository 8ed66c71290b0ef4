package advise

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// The output formats of [Write].
const (
	FormatText = "text" // the findings, then the Config as Go and as JSON
	FormatGo   = "go"   // the Config as a Go source file only
	FormatJSON = "json" // the Advice as JSON
)

// Write prints a in format: text, go or json. Errors: an unknown format,
// a Config that cannot be printed, w's.
func Write(w io.Writer, a *Advice, format string) error {
	switch format {
	case FormatGo:
		src, err := GoSource("advised", a.Config)
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, src)
		return err
	case FormatJSON:
		b, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case FormatText:
		return writeText(w, a)
	}
	return fmt.Errorf("advise: unknown format %q (want text, go or json)", format)
}

func writeText(w io.Writer, a *Advice) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Read: %s\n\n", strings.Join(a.Files, ", "))
	if a.Keep != "" {
		fmt.Fprintf(&b, "No recommendation: %s.\n", a.Keep)
	} else {
		fmt.Fprintf(&b, "Recommendations (%d component(s): %s)\n", len(a.Components), strings.Join(a.Components, ", "))
		for _, c := range a.Components {
			fmt.Fprintf(&b, "\n%s\n", c)
			for _, f := range a.Findings {
				if f.Component == c {
					fmt.Fprintf(&b, "  - %s (%s)\n    %s\n", f.Pattern, f.File, f.Evidence)
				}
			}
		}
	}
	for _, n := range a.Notes {
		fmt.Fprintf(&b, "\nNote: %s\n", n)
	}
	src, err := GoSource("advised", a.Config)
	if err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(a.Config, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "\nConfig as Go (caudal.New(optimize.Use(advised.Config))):\n\n%s\nConfig as JSON:\n\n%s\n", src, cfg)
	_, err = io.WriteString(w, b.String())
	return err
}
