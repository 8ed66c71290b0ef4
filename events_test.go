package caudal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
)

func TestEvents(t *testing.T) {
	K := func(k ...caudal.EventKind) []caudal.EventKind { return k }
	cache := newCache(t, 4)
	tests := []struct {
		name  string
		give  caudal.Step
		runs  int
		limit caudal.Limits
		want  []caudal.EventKind
	}{
		{
			"success", caudal.AgentStep("s", echoAgent{}), 1,
			caudal.Limits{},
			K(caudal.EventStepStarted, caudal.EventStepFinished),
		},
		{
			"retry then success", caudal.AgentStep("s", &failN{n: 1, err: errDown}, caudal.WithRetries(1), caudal.WithBackoff(0, 0)), 1,
			caudal.Limits{},
			K(caudal.EventStepStarted, caudal.EventAttemptFailed, caudal.EventRetry, caudal.EventStepFinished),
		},
		{
			"fallback", caudal.AgentStep("s", &failN{n: 1, err: errDown}, caudal.WithFallback(caudal.AgentStep("b", echoAgent{}))), 1,
			caudal.Limits{},
			K(caudal.EventStepStarted, caudal.EventAttemptFailed, caudal.EventFallback,
				caudal.EventStepStarted, caudal.EventStepFinished, caudal.EventStepFinished),
		},
		{
			"cache hit", caudal.Cached(caudal.AgentStep("s", echoAgent{}), cache), 2,
			caudal.Limits{},
			// Every step instance starts and finishes, a hit too.
			K(caudal.EventStepStarted, caudal.EventStepFinished, caudal.EventStepStarted, caudal.EventCacheHit, caudal.EventStepFinished),
		},
		{
			"breach", caudal.AgentStep("s", costly("x", caudal.Usage{CompletionTokens: 9}, nil)), 1,
			caudal.Limits{MaxTokens: 1},
			K(caudal.EventStepStarted, caudal.EventUsageBreach, caudal.EventStepFinished),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &caudaltest.Recorder{}
			ex := mustNew(t, caudal.WithSink(rec))
			step := mustBuild(t, tt.give)
			for range tt.runs {
				_, _ = ex.Execute(t.Context(), step, "in", caudal.WithRunID("run-1"), caudal.WithLimits(tt.limit))
			}
			if got := rec.Kinds(); !slices.Equal(got, tt.want) {
				t.Fatalf("event kinds = %v; want %v", got, tt.want)
			}
			for _, e := range rec.Events() {
				if e.RunID != "run-1" || e.Path == "" || e.Time.IsZero() {
					t.Errorf("event %v = %+v; want run ID, path and time", e.Kind, e)
				}
			}
		})
	}
}

func TestNoSinkNoEvents(t *testing.T) {
	// With no sink nothing is recorded, and the bare path allocates nothing.
	ex := mustNew(t)
	step := mustBuild(t, caudal.AgentStep("s", echoAgent{}))
	in := any("x")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ex.Execute(context.Background(), step, in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocs per bare Execute = %v; want 0", allocs)
	}
}

func TestPoliciesAllocs(t *testing.T) {
	ex := mustNew(t)
	step := mustBuild(t, caudal.AgentStep("s", echoAgent{}, caudal.WithRetries(3), caudal.WithTimeout(1e9), caudal.WithValidators(acceptAll)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := any("x")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ex.Execute(ctx, step, in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 6 {
		t.Errorf("allocs per Execute with retry+timeout+validator = %v; want <= 6", allocs)
	}
}

func TestSlogSink(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ex := mustNew(t, caudal.WithSink(caudal.SlogSink(logger)))
	step := mustBuild(t, caudal.AgentStep("s", &failN{n: 1, err: errors.New("flaky")}, caudal.WithRetries(1), caudal.WithBackoff(0, 0)))
	if _, err := ex.Execute(t.Context(), step, "x", caudal.WithRunID("r1")); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"caudal.step_started", "level=WARN msg=caudal.attempt_failed", "error=flaky", "caudal.retry", "level=INFO msg=caudal.step_finished", "run_id=r1", "path=s", "success=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}

	// Disabled levels cost nothing but the check.
	buf.Reset()
	quiet := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	ex = mustNew(t, caudal.WithSink(caudal.SlogSink(quiet)))
	if _, err := ex.Execute(t.Context(), step, "x"); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("log at Error level wrote %q; want nothing", buf.String())
	}
}

func TestEventKindString(t *testing.T) {
	if got := caudal.EventCacheHit.String(); got != "cache_hit" {
		t.Errorf("EventCacheHit.String() = %q; want cache_hit", got)
	}
	if got := caudal.EventKind(200).String(); got != "unknown" {
		t.Errorf("EventKind(200).String() = %q; want unknown", got)
	}
}

func TestControlFlowEvents(t *testing.T) {
	rec := &caudaltest.Recorder{}
	step := caudal.Seq("s", caudal.AgentStep("a", echoAgent{}), caudal.Parallel("p", caudal.Branch("b", caudal.AgentStep("x", echoAgent{}))))
	if _, err := execute(t, mustNew(t, caudal.WithSink(rec)), step, "in"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range rec.Events() {
		got = append(got, e.Kind.String()+" "+e.Path)
	}
	want := []string{
		"step_started s", "step_started s/a", "step_finished s/a",
		"step_started s/p", "step_started s/p/b", "step_finished s/p/b", "step_finished s/p", "step_finished s",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

func TestExecuteOptionsAllocs(t *testing.T) {
	ex := mustNew(t)
	step := mustBuild(t, caudal.AgentStep("s", echoAgent{}))
	in := any("x")
	tests := []struct {
		name string
		give []caudal.Option
		want float64
	}{
		{"run ID", []caudal.Option{caudal.WithRunID("run-1")}, 0},
		{"run ID and state", []caudal.Option{caudal.WithRunID("run-1"), caudal.WithState(caudal.NewState(nil))}, 1}, // the state's context value
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testing.AllocsPerRun(100, func() {
				if _, err := ex.Execute(context.Background(), step, in, tt.give...); err != nil {
					t.Fatal(err)
				}
			})
			if got != tt.want {
				t.Errorf("allocs per Execute = %v; want %v", got, tt.want)
			}
		})
	}
}
