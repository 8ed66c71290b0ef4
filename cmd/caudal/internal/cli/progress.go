package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// progress shows how far a suite run is: a redrawn bar on a terminal, one
// plain line per phase otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	last     string // the last plain line, to print each once
	drawn    bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

const barWidth = 30

func (p *progress) update(suite, scenario string, done float64, phase string) {
	done = min(max(done, 0), 1)
	if p.terminal {
		filled := int(done * barWidth)
		_, _ = fmt.Fprintf(p.w, "\r\033[K[%s%s] %3.0f%% %s/%s: %s", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled),
			done*100, suite, scenario, phase)
		p.drawn = true
		return
	}
	line := fmt.Sprintf("bench: %s/%s: %s", suite, scenario, phase)
	if line != p.last {
		_, _ = fmt.Fprintln(p.w, line)
		p.last = line
	}
}

// done ends the bar's line.
func (p *progress) done() {
	if p.terminal && p.drawn {
		_, _ = fmt.Fprintln(p.w)
		p.drawn = false
	}
}
