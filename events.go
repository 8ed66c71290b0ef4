package caudal

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The kinds of [Event].
const (
	EventStepStarted   EventKind = iota + 1 // a step began
	EventStepFinished                       // a step ended; Success, Latency, Usage and Err are set
	EventAttemptFailed                      // an attempt failed; Attempt and Err are set
	EventRetry                              // a new attempt is about to start after Delay
	EventFallback                           // the step failed and its fallback starts; Err is the primary error
	EventCacheHit                           // a cache step served its result from the cache
	EventUsageBreach                        // the run's limits were breached; Usage is the run's usage
	EventPaused                             // a human-input step paused the run; Err is the *PausedError
	EventMergeConflict                      // parallel branches wrote the same state key; Err is a *MergeConflictError
	EventDropped                            // a bounded recorder (the optimization layer's telemetry) dropped events; Dropped is how many since the last such event
	EventCircuit                            // a circuit breaker changed state; Reason is "open", "half_open" or "closed", Err what opened it
	EventTuned                              // the automatic optimization switched a component on or off for a step; Reason says which and why
)

var eventKindNames = [...]string{
	EventStepStarted:   "step_started",
	EventStepFinished:  "step_finished",
	EventAttemptFailed: "attempt_failed",
	EventRetry:         "retry",
	EventFallback:      "fallback",
	EventCacheHit:      "cache_hit",
	EventUsageBreach:   "usage_breach",
	EventPaused:        "paused",
	EventMergeConflict: "merge_conflict",
	EventDropped:       "dropped",
	EventCircuit:       "circuit",
	EventTuned:         "tuned",
}

// String returns the kind's snake_case name, e.g. "step_started".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && eventKindNames[k] != "" {
		return eventKindNames[k]
	}
	return "unknown"
}

// Event is one thing that happened while a step ran. Events are built only
// when a [Sink] is attached ([WithSink]).
type Event struct {
	Kind    EventKind
	Time    time.Time     // when it happened
	RunID   string        // the run's ID, from [WithRunID]
	Path    string        // the step's path
	Attempt int           // the attempt it concerns, when it concerns one
	Delay   time.Duration // for EventRetry: the backoff before the attempt
	Latency time.Duration // for EventStepFinished: the step's wall time
	Success bool          // for EventStepFinished
	Usage   Usage         // for EventStepFinished: the step's usage; for EventUsageBreach: the run's
	Err     error         // the error reported, if any
	// Reason is, for the EventAttemptFailed of a step's last attempt, why
	// no further attempt follows (see [MetaRetryStopped]); for EventCircuit
	// the breaker's new state; for EventTuned the decision and its cause;
	// "" otherwise.
	Reason string
	// Dropped is, for EventDropped, how many events were dropped.
	Dropped int64
	// Class is, for EventAttemptFailed, the class an installed error
	// classifier gave the error (see [MetaErrorClass]); "" otherwise.
	Class string
}

// Sink receives events synchronously, on the goroutine running the step, in
// the order they happen for that step. A sink must be safe for concurrent
// use (parallel steps record concurrently), should return quickly, and must
// not retain the *Event after Record returns: copy what it keeps.
type Sink interface {
	Record(ctx context.Context, e *Event)
}

// SlogSink returns a [Sink] that writes each event to l: failures and
// breaches at Warn, finished steps at Info, the rest at Debug. Records the
// logger's handler does not enable are skipped before any attribute is
// built. A nil l means [slog.Default].
func SlogSink(l *slog.Logger) Sink {
	if l == nil {
		l = slog.Default()
	}
	return slogSink{l: l}
}

type slogSink struct{ l *slog.Logger }

func (s slogSink) Record(ctx context.Context, e *Event) {
	level := slog.LevelDebug
	switch {
	case e.Kind == EventAttemptFailed || e.Kind == EventUsageBreach || e.Kind == EventFallback || e.Kind == EventMergeConflict || e.Kind == EventDropped || e.Kind == EventCircuit:
		level = slog.LevelWarn
	case e.Kind == EventStepFinished && !e.Success:
		level = slog.LevelWarn
	case e.Kind == EventStepFinished:
		level = slog.LevelInfo
	}
	if !s.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("path", e.Path))
	if e.RunID != "" {
		attrs = append(attrs, slog.String("run_id", e.RunID))
	}
	if e.Attempt > 0 {
		attrs = append(attrs, slog.Int("attempt", e.Attempt))
	}
	switch e.Kind {
	case EventStepFinished:
		attrs = append(attrs, slog.Bool("success", e.Success), slog.Duration("latency", e.Latency))
		if e.Usage != (Usage{}) {
			attrs = append(attrs, slog.Int64("tokens", e.Usage.Tokens()), slog.Float64("cost_usd", e.Usage.CostUSD))
		}
	case EventRetry:
		attrs = append(attrs, slog.Duration("delay", e.Delay))
	case EventUsageBreach:
		attrs = append(attrs, slog.Int64("tokens", e.Usage.Tokens()), slog.Float64("cost_usd", e.Usage.CostUSD))
	case EventDropped:
		attrs = append(attrs, slog.Int64("dropped", e.Dropped))
	case EventAttemptFailed:
		if e.Reason != "" {
			attrs = append(attrs, slog.String("retry_stopped", e.Reason))
		}
		if e.Class != "" {
			attrs = append(attrs, slog.String("error_class", e.Class))
		}
	case EventCircuit:
		attrs = append(attrs, slog.String("state", e.Reason))
	case EventTuned:
		attrs = append(attrs, slog.String("decision", e.Reason))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	s.l.LogAttrs(ctx, level, "caudal."+e.Kind.String(), attrs...)
}
