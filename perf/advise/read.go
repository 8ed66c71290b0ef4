package advise

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caudal-go/caudal/perf"
)

// Event is one event of a recorded run, as [caudal.SlogSink] logged it.
type Event struct {
	File         string        // the file it was read from
	Line         int           // its line, from 1
	Kind         string        // the event kind, e.g. "attempt_failed" (msg without "caudal.")
	Time         time.Time     // the record's time
	Path         string        // the step's path
	RunID        string        // the run's ID, "" when none was set
	Attempt      int           // the attempt, 0 when none
	Success      bool          // for step_finished
	Latency      time.Duration // for step_finished
	RetryStopped string        // for the last attempt_failed: why no attempt follows
	ErrorClass   string        // for attempt_failed with error handling on
	State        string        // for circuit: the breaker's new state
	Decision     string        // for tuned: the automatic optimization's decision
	Err          string        // the error text, if any
}

// Log is an event log read by [Read]: its caudal events, in file order.
type Log struct {
	File    string
	Events  []Event
	Skipped int // lines of other messages
}

// Input is one file read by [Read]: an event log or a bench report.
type Input struct {
	File   string
	Log    *Log         // set for an event log
	Report *perf.Report // set for a bench report
}

// slogRecord is a line of a JSON event log.
type slogRecord struct {
	Time         time.Time `json:"time"`
	Msg          *string   `json:"msg"`
	Path         string    `json:"path"`
	RunID        string    `json:"run_id"`
	Attempt      int       `json:"attempt"`
	Success      bool      `json:"success"`
	Latency      int64     `json:"latency"` // slog's JSON handler writes a time.Duration in nanoseconds
	RetryStopped string    `json:"retry_stopped"`
	ErrorClass   string    `json:"error_class"`
	State        string    `json:"state"`
	Decision     string    `json:"decision"`
	Error        string    `json:"error"`
}

// errUnknownFormat is what a file that is neither kind of input is.
var errUnknownFormat = errors.New("unknown format: want a JSON event log (one {\"msg\":\"caudal.<kind>\",...} object a line, as caudal.SlogSink writes through slog.NewJSONHandler) or a caudal bench JSON report (caudal bench --json)")

// ReadFile reads the file at path with [Read].
func ReadFile(path string) (*Input, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Read(path, data)
}

// Read parses data, the content of the file called name: a JSON event log
// or a bench report, told apart by their content. Errors, each naming
// name: an empty file; an unknown format; in an event log, a line that is
// not a JSON object (name:line) or a log with no caudal event; a report
// that does not decode.
func Read(name string, data []byte) (*Input, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: empty file: no event log or bench report to advise from", name)
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("%s: %w", name, errUnknownFormat)
	}
	first, _, _ := bytes.Cut(trimmed, []byte("\n"))
	var probe map[string]json.RawMessage
	if json.Unmarshal(first, &probe) == nil {
		if _, ok := probe["msg"]; ok {
			log, err := readLog(name, data)
			if err != nil {
				return nil, err
			}
			return &Input{File: name, Log: log}, nil
		}
	}
	if err := json.Unmarshal(trimmed, &probe); err == nil {
		if _, ok := probe["schema_version"]; ok {
			rep, err := perf.ReadJSON(bytes.NewReader(trimmed))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return &Input{File: name, Report: rep}, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", name, errUnknownFormat)
}

// readLog parses a JSON event log.
func readLog(name string, data []byte) (*Log, error) {
	log := &Log{File: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var r slogRecord
		if err := json.Unmarshal(text, &r); err != nil {
			return nil, fmt.Errorf("%s:%d: not a JSON log record: %w", name, line, err)
		}
		if r.Msg == nil {
			return nil, fmt.Errorf("%s:%d: a JSON object with no \"msg\": not a log record", name, line)
		}
		kind, ok := strings.CutPrefix(*r.Msg, "caudal.")
		if !ok {
			log.Skipped++
			continue
		}
		log.Events = append(log.Events, Event{
			File: name, Line: line, Kind: kind, Time: r.Time, Path: r.Path, RunID: r.RunID,
			Attempt: r.Attempt, Success: r.Success, Latency: time.Duration(r.Latency),
			RetryStopped: r.RetryStopped, ErrorClass: r.ErrorClass, State: r.State,
			Decision: r.Decision, Err: r.Error,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	if len(log.Events) == 0 {
		return nil, fmt.Errorf("%s: no caudal events (msg \"caudal.<kind>\") in %d line(s): was the log written by caudal.SlogSink at slog.LevelDebug?", name, line)
	}
	return log, nil
}
