package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal"
)

// The execution scenario's telemetry: what a service would attach to an
// executor — a log/slog JSON handler writing into a buffer, and a span
// recorder in the manner of an OpenTelemetry SDK — behind a fan-out sink
// that also counts what it delivers, so a workload can check that every
// event arrived.

// fanoutSink passes every event to each of its sinks in turn and counts the
// events it delivered, by kind. It is safe for concurrent use.
type fanoutSink struct {
	sinks  []caudal.Sink
	total  atomic.Int64
	byKind [16]atomic.Int64 // indexed by EventKind; kinds past 15 count in total only
	// own counts the events components record of themselves — a breaker's
	// change of state, the tuner's decisions — which no execute makes and
	// the baseline never has: they are kept out of the per-execute counts
	// and the sinks.
	own atomic.Int64
}

func (f *fanoutSink) Record(ctx context.Context, e *caudal.Event) {
	if e.Kind == caudal.EventCircuit || e.Kind == caudal.EventTuned {
		f.own.Add(1)
		return
	}
	for _, s := range f.sinks {
		s.Record(ctx, e)
	}
	f.total.Add(1)
	if int(e.Kind) < len(f.byKind) {
		f.byKind[e.Kind].Add(1)
	}
}

// kinds returns the delivered counts by kind.
func (f *fanoutSink) kinds() (k [16]int64) {
	for i := range f.byKind {
		k[i] = f.byKind[i].Load()
	}
	return k
}

// spanAttr is one attribute of a span.
type spanAttr struct {
	Key   string
	Value any
}

// spanEvent is a point event within a span (a failed attempt, a retry, a
// fallback, a cache hit).
type spanEvent struct {
	Name  string
	Time  time.Time
	Attrs []spanAttr
}

// span is one step's execution, from its start event to its finish event.
type span struct {
	Name       string // the step's path
	Start, End time.Time
	OK         bool
	Attrs      []spanAttr
	Events     []spanEvent
}

// spanRecorder turns start/finish event pairs into spans, as a tracing
// SDK's span processor would, and keeps the finished ones. It copies what
// it keeps and is safe for concurrent use.
type spanRecorder struct {
	mu      sync.Mutex       // protects the fields below
	open    map[string]*span // started, not finished, by path
	done    []span           // finished, in finishing order
	orphans int              // events for no open span
}

func newSpanRecorder() *spanRecorder {
	return &spanRecorder{open: make(map[string]*span)}
}

func (s *spanRecorder) Record(_ context.Context, e *caudal.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case caudal.EventStepStarted:
		attrs := make([]spanAttr, 0, 6)
		attrs = append(attrs, spanAttr{"caudal.step.path", e.Path})
		if e.RunID != "" {
			attrs = append(attrs, spanAttr{"caudal.run_id", e.RunID})
		}
		s.open[e.Path] = &span{Name: e.Path, Start: e.Time, Attrs: attrs}
	case caudal.EventStepFinished:
		sp := s.open[e.Path]
		if sp == nil {
			s.orphans++
			return
		}
		delete(s.open, e.Path)
		sp.End, sp.OK = e.Time, e.Success
		sp.Attrs = append(sp.Attrs, spanAttr{"caudal.latency_ns", e.Latency.Nanoseconds()})
		if t := e.Usage.Tokens(); t > 0 {
			sp.Attrs = append(sp.Attrs, spanAttr{"caudal.tokens", t})
		}
		if e.Err != nil {
			sp.Attrs = append(sp.Attrs, spanAttr{"error.message", e.Err.Error()})
		}
		s.done = append(s.done, *sp)
	default:
		sp := s.open[e.Path]
		if sp == nil {
			s.orphans++
			return
		}
		ev := spanEvent{Name: e.Kind.String(), Time: e.Time, Attrs: make([]spanAttr, 0, 3)}
		if e.Attempt > 0 {
			ev.Attrs = append(ev.Attrs, spanAttr{"caudal.attempt", e.Attempt})
		}
		if e.Err != nil {
			ev.Attrs = append(ev.Attrs, spanAttr{"error.message", e.Err.Error()})
		}
		if e.Reason != "" {
			ev.Attrs = append(ev.Attrs, spanAttr{"caudal.retry_stopped", e.Reason})
		}
		sp.Events = append(sp.Events, ev)
	}
}

// telemetry is one executor's telemetry stack: a JSON log and a span
// recorder behind a counting fan-out.
type telemetry struct {
	log   *lockedBuffer
	spans *spanRecorder
	fan   *fanoutSink
}

func newTelemetry() *telemetry {
	t := &telemetry{log: &lockedBuffer{}, spans: newSpanRecorder()}
	t.fan = &fanoutSink{sinks: []caudal.Sink{
		caudal.SlogSink(slog.New(slog.NewJSONHandler(t.log, nil))),
		t.spans,
	}}
	return t
}

// reset empties the log and the spans, keeping their storage.
func (t *telemetry) reset() {
	t.log.Reset()
	t.spans.mu.Lock()
	clear(t.spans.open)
	t.spans.done = t.spans.done[:0]
	t.spans.orphans = 0
	t.spans.mu.Unlock()
}

// telemetryMark is where the telemetry stood before an execute.
type telemetryMark struct {
	events  int64
	byKind  [16]int64
	logLen  int
	spans   int
	orphans int
}

func (t *telemetry) mark() telemetryMark {
	t.spans.mu.Lock()
	defer t.spans.mu.Unlock()
	return telemetryMark{events: t.fan.total.Load(), byKind: t.fan.kinds(), logLen: t.log.Len(), spans: len(t.spans.done), orphans: t.spans.orphans}
}

// telemetryRecord is what one execute delivered.
type telemetryRecord struct {
	events   int64
	byKind   [16]int64
	logLines int
	spans    []string // finished span names, in order
	rootOK   bool     // the last span finished succeeded
	orphans  int
}

// since returns what was delivered after m. It must not run concurrently
// with an execute.
func (t *telemetry) since(m telemetryMark) telemetryRecord {
	t.spans.mu.Lock()
	defer t.spans.mu.Unlock()
	r := telemetryRecord{events: t.fan.total.Load() - m.events, orphans: t.spans.orphans - m.orphans}
	k := t.fan.kinds()
	for i := range k {
		r.byKind[i] = k[i] - m.byKind[i]
	}
	r.logLines = t.log.linesFrom(m.logLen)
	done := t.spans.done[min(m.spans, len(t.spans.done)):]
	for _, sp := range done {
		r.spans = append(r.spans, sp.Name)
	}
	if len(done) > 0 {
		r.rootOK = done[len(done)-1].OK
	}
	return r
}

// checkBatch compares what the n executes since mark delivered
// with n times want, the reference's record of one execute: the event
// count and counts by kind, the log line count, the span count, the names
// of the first and last spans and whether the last succeeded.
func (t *telemetry) checkBatch(m telemetryMark, n int, want telemetryRecord) error {
	got := t.since(m)
	nn := int64(n)
	switch {
	case got.events != nn*want.events:
		return fmt.Errorf("telemetry: %d events delivered for %d executes; want %d", got.events, n, nn*want.events)
	case got.orphans != 0:
		return fmt.Errorf("telemetry: %d events for no started step", got.orphans)
	case len(got.spans) != n*len(want.spans):
		return fmt.Errorf("telemetry: %d spans finished for %d executes; want %d", len(got.spans), n, n*len(want.spans))
	case n > 0 && (got.spans[0] != want.spans[0] || got.spans[len(got.spans)-1] != want.spans[len(want.spans)-1]):
		return fmt.Errorf("telemetry: spans %q … %q; want %q … %q", got.spans[0], got.spans[len(got.spans)-1], want.spans[0], want.spans[len(want.spans)-1])
	case n > 0 && got.rootOK != want.rootOK:
		return fmt.Errorf("telemetry: last span ok = %v; want %v", got.rootOK, want.rootOK)
	case got.logLines != n*want.logLines:
		return fmt.Errorf("telemetry: %d log records for %d executes; want %d", got.logLines, n, n*want.logLines)
	}
	for i := range got.byKind {
		if got.byKind[i] != nn*want.byKind[i] {
			return fmt.Errorf("telemetry: %d %s events for %d executes; want %d", got.byKind[i], caudal.EventKind(i), n, nn*want.byKind[i])
		}
	}
	return nil
}

// flush makes an executor that delivers events in the background deliver
// what it holds: one with a Flush(context.Context) error method. The
// baseline delivers as it executes and has none.
func flush(ex Executor) error {
	if f, ok := ex.(interface{ Flush(context.Context) error }); ok {
		return f.Flush(context.Background())
	}
	return nil
}

// referenceTelemetry executes step once on a baseline executor with a
// fresh telemetry stack and returns what that delivered: the record every
// execute of the workload must match. It fails when the reference itself
// delivered nothing or left a span open.
func referenceTelemetry(ctx context.Context, step caudal.Step, in any) (telemetryRecord, error) {
	t := newTelemetry()
	ex, err := caudal.New(caudal.WithSink(t.fan))
	if err != nil {
		return telemetryRecord{}, err
	}
	defer func() { _ = ex.Close() }()
	m := t.mark()
	if _, err := ex.Execute(ctx, step, in); err != nil {
		return telemetryRecord{}, fmt.Errorf("reference execute: %w", err)
	}
	rec := t.since(m)
	t.spans.mu.Lock()
	open := len(t.spans.open)
	t.spans.mu.Unlock()
	switch {
	case rec.events == 0 || len(rec.spans) == 0 || rec.logLines == 0:
		return rec, errors.New("reference execute delivered no telemetry")
	case open != 0 || rec.orphans != 0:
		return rec, fmt.Errorf("reference execute left %d spans open and %d events orphaned", open, rec.orphans)
	}
	return rec, nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes: the log's
// destination.
type lockedBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	b.buf.Reset()
	b.mu.Unlock()
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// linesFrom counts the lines written after offset off.
func (b *lockedBuffer) linesFrom(off int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	return bytes.Count(data[min(off, len(data)):], []byte{'\n'})
}

// lines returns the log's non-empty lines (for tests).
func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range bytes.SplitSeq(b.buf.Bytes(), []byte{'\n'}) {
		if len(l) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}
