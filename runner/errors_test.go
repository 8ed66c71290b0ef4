package runner_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// schemaPipeline pauses at a step whose answer must be an object with an
// integer "n" from 1 to 10 and a "who" of 2 to 5 characters.
func schemaPipeline(l *ledger) caudal.Step {
	schema := map[string]any{
		"type":     "object",
		"required": []string{"n"},
		"properties": map[string]any{
			"n":   map[string]any{"type": "integer", "minimum": 1, "maximum": 10},
			"who": map[string]any{"type": "string", "minLength": 2, "maxLength": 5},
		},
	}
	return caudal.Seq("p", agent(l, "first"), caudal.HumanInput("ask", "how many?", caudal.WithSchema(schema)), agent(l, "after"))
}

// pausedRun starts a run of schemaPipeline and returns the runner, the
// store and the paused run.
func pausedRun(t *testing.T) (*runner.Runner, *runner.MemoryStore, *clock, *runner.Run) {
	t.Helper()
	s, clk := memStore(t)
	r := newRunner(t, s, map[string]caudal.Step{"p": schemaPipeline(newLedger())})
	run, err := r.Start(t.Context(), "p", "in", runner.WithRunID("r"))
	if err != nil || run.Status != runner.StatusPaused {
		t.Fatalf("Start = %+v, %v; want paused", run, err)
	}
	return r, s, clk, run
}

var goodAnswer = runner.Answer{Value: map[string]any{"n": 3, "who": "ann"}}

func TestResumeRefused(t *testing.T) {
	tests := []struct {
		name string
		// give changes the paused run "r", or makes the runner to resume it
		// with; it returns the run's ID and the runner.
		give   func(t *testing.T, r *runner.Runner, s *runner.MemoryStore, clk *clock) (string, *runner.Runner)
		answer runner.Answer
		want   []error
	}{
		{
			name: "unknown run",
			give: func(_ *testing.T, r *runner.Runner, _ *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				return "nope", r
			},
			answer: goodAnswer,
			want:   []error{runner.ErrNotFound},
		},
		{
			name: "held by another process",
			give: func(t *testing.T, r *runner.Runner, s *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				if _, err := s.Claim(t.Context(), "r", "other", time.Hour, runner.StatusPaused); err != nil {
					t.Fatal(err)
				}
				return "r", r
			},
			answer: goodAnswer,
			want:   []error{runner.ErrRunLocked},
		},
		{
			name: "answer missing a required property",
			give: func(_ *testing.T, r *runner.Runner, _ *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				return "r", r
			},
			answer: runner.Answer{Value: map[string]any{"who": "ann"}},
			want:   []error{runner.ErrInvalidAnswer},
		},
		{
			name: "answer out of range, too long",
			give: func(_ *testing.T, r *runner.Runner, _ *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				return "r", r
			},
			answer: runner.Answer{Value: map[string]any{"n": 11, "who": "annabel"}},
			want:   []error{runner.ErrInvalidAnswer},
		},
		{
			name: "answer not JSON",
			give: func(_ *testing.T, r *runner.Runner, _ *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				return "r", r
			},
			answer: runner.Answer{Value: make(chan int)},
			want:   []error{runner.ErrInvalidAnswer},
		},
		{
			name: "pipeline changed since the pause",
			give: func(t *testing.T, _ *runner.Runner, s *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				l := newLedger()
				changed := caudal.Seq("p", agent(l, "first"), caudal.HumanInput("ask", "how many?"), agent(l, "then"))
				return "r", newRunner(t, s, map[string]caudal.Step{"p": changed})
			},
			answer: goodAnswer,
			want:   []error{runner.ErrPipelineChanged, caudal.ErrSnapshotMismatch},
		},
		{
			name: "pipeline not registered",
			give: func(t *testing.T, _ *runner.Runner, s *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				return "r", newRunner(t, s, nil)
			},
			answer: goodAnswer,
			want:   []error{runner.ErrUnknownPipeline},
		},
		{
			name: "snapshot corrupt",
			give: func(_ *testing.T, r *runner.Runner, s *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				runner.EditRun(s, "r", func(run *runner.Run) { run.Pause.Snapshot = []byte(`{"version": 2, "journal": [`) })
				return "r", r
			},
			answer: goodAnswer,
			want:   []error{runner.ErrCorrupt},
		},
		{
			name: "snapshot of another pause",
			give: func(_ *testing.T, r *runner.Runner, s *runner.MemoryStore, _ *clock) (string, *runner.Runner) {
				runner.EditRun(s, "r", func(run *runner.Run) { run.Pause.Path = "p/first" })
				return "r", r
			},
			answer: goodAnswer,
			want:   []error{runner.ErrCorrupt},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, s, clk, _ := pausedRun(t)
			id, rr := tt.give(t, r, s, clk)
			before := stored(t, s, "r")
			run, err := rr.Resume(t.Context(), id, tt.answer)
			for _, want := range tt.want {
				if run != nil || !errors.Is(err, want) {
					t.Errorf("Resume = %+v, %v; want %v", run, err, want)
				}
			}
			if after := stored(t, s, "r"); !reflect.DeepEqual(after, before) {
				t.Errorf("the refused Resume changed the run:\n%+v\nwas\n%+v", after, before)
			}
		})
	}
}

// stored returns what the store holds of run id, lease aside.
func stored(t *testing.T, s runner.Store, id string) *runner.Run {
	t.Helper()
	run, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	run.Owner, run.LeaseUntil = "", time.Time{}
	return run
}

func TestAnswerErrorNamesProblems(t *testing.T) {
	r, _, _, _ := pausedRun(t)
	_, err := r.Resume(t.Context(), "r", runner.Answer{Value: map[string]any{"n": 1.5, "who": "a"}})
	ae, ok := errors.AsType[*runner.AnswerError](err)
	want := []string{"$.n: is number, want integer", "$.who: 1 characters, fewer than 2"}
	if !ok || ae.RunID != "r" || ae.Path != "p/ask" || !reflect.DeepEqual(ae.Problems, want) {
		t.Fatalf("Resume = %v; want an AnswerError with %q", err, want)
	}
	// A good answer is taken afterwards.
	run, err := r.Resume(t.Context(), "r", goodAnswer)
	if err != nil || run.Status != runner.StatusCompleted {
		t.Fatalf("Resume with a good answer = %+v, %v; want completed", run, err)
	}
	if _, err := r.Resume(t.Context(), "r", goodAnswer); !errors.Is(err, runner.ErrWrongStatus) {
		t.Errorf("Resume of a completed run = %v; want ErrWrongStatus", err)
	}
}

// TestRepairedAfterRefusal: a run refused for a corrupt pause or journal
// goes on once it is repaired.
func TestRepairedAfterRefusal(t *testing.T) {
	t.Run("snapshot", func(t *testing.T) {
		r, s, _, run := pausedRun(t)
		good := run.Pause.Snapshot
		runner.EditRun(s, "r", func(run *runner.Run) { run.Pause.Snapshot = []byte("garbage") })
		if _, err := r.Resume(t.Context(), "r", goodAnswer); !errors.Is(err, runner.ErrCorrupt) {
			t.Fatalf("Resume = %v; want ErrCorrupt", err)
		}
		runner.EditRun(s, "r", func(run *runner.Run) { run.Pause.Snapshot = good })
		if run, err := r.Resume(t.Context(), "r", goodAnswer); err != nil || run.Status != runner.StatusCompleted {
			t.Fatalf("Resume after the repair = %+v, %v; want completed", run, err)
		}
	})
	t.Run("snapshot not fitting", func(t *testing.T) {
		r, s, _, run := pausedRun(t)
		good := run.Pause.Snapshot
		bad := []byte(`{"version":2,"fingerprint":"` + run.Fingerprint + `","path":"p/ask","journal":[{"path":"p/nowhere","status":"succeeded"}]}`)
		runner.EditRun(s, "r", func(run *runner.Run) { run.Pause.Snapshot = bad })
		before := stored(t, s, "r")
		if _, err := r.Resume(t.Context(), "r", goodAnswer); !errors.Is(err, runner.ErrCorrupt) || !errors.Is(err, caudal.ErrSnapshotMismatch) {
			t.Fatalf("Resume = %v; want ErrCorrupt and the core's mismatch", err)
		}
		after := stored(t, s, "r")
		after.UpdatedAt = before.UpdatedAt
		if !reflect.DeepEqual(after, before) {
			t.Fatalf("the run after the refusal:\n%+v\nwant\n%+v", after, before)
		}
		runner.EditRun(s, "r", func(run *runner.Run) { run.Pause.Snapshot = good })
		if run, err := r.Resume(t.Context(), "r", goodAnswer); err != nil || run.Status != runner.StatusCompleted {
			t.Fatalf("Resume after the repair = %+v, %v; want completed", run, err)
		}
	})
	t.Run("record", func(t *testing.T) {
		l := newLedger()
		base, clk := memStore(t)
		dying := newFaultStore(base, dieAfterAppends(3))
		full := map[string]caudal.Step{"full": fullPipeline(l)}
		r1 := newRunner(t, dying, full, runner.WithOwner("p1"))
		if _, err := r1.Start(t.Context(), "full", "in", runner.WithRunID("r")); !errors.Is(err, errInjected) {
			t.Fatalf("Start = %v; want the store's error", err)
		}
		clk.advance(time.Hour)
		good := runner.SetRecord(base, "r", 2, []byte(`{"path": 7`))
		r2 := newRunner(t, base, full, runner.WithOwner("p2"))
		if runs, err := r2.Recover(t.Context()); !errors.Is(err, runner.ErrCorrupt) || len(runs) != 0 {
			t.Fatalf("Recover = %v, %v; want ErrCorrupt", runs, err)
		}
		if got := stored(t, base, "r"); got.Status != runner.StatusRunning {
			t.Fatalf("the run is %s after the refused recovery; want running", got.Status)
		}
		runner.SetRecord(base, "r", 2, good)
		if runs, err := r2.Recover(t.Context()); err != nil || len(runs) != 1 || runs[0].Status != runner.StatusCompleted {
			t.Fatalf("Recover after the repair = %v, %v; want the run completed", runs, err)
		}
	})
}

// TestStoreFaults: a store failing mid-way fails the call with its error,
// and the run goes on once the store is back.
func TestStoreFaults(t *testing.T) {
	full := func(l *ledger) map[string]caudal.Step { return map[string]caudal.Step{"full": fullPipeline(l)} }
	want := uninterrupted(t, "full", full, "in")
	tests := []struct {
		name string
		give func(method string, n int) error
	}{
		{name: "fifth append", give: failNth("Append", 5)},
		{name: "first append", give: failNth("Append", 1)},
		{name: "final update", give: failNth("Update", 1)},
		{name: "final update and release", give: func(m string, n int) error {
			return errors.Join(failNth("Update", 1)(m, n), failNth("Release", 1)(m, n))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			base, clk := memStore(t)
			fs := newFaultStore(base, tt.give)
			r := newRunner(t, fs, full(l))
			run, err := r.Start(t.Context(), "full", "in")
			fs.heal()
			clk.advance(time.Hour) // a lease not released expires
			if err != nil {
				runs, rerr := r.Recover(t.Context())
				if rerr != nil || len(runs) != 1 || !errors.Is(err, errInjected) {
					t.Fatalf("Start = %v; Recover = %v, %v; want the store's error, then the run", err, runs, rerr)
				}
				run = runs[0]
			}
			got := outcomeOf(run, l)
			if got.output != want.output || got.state != want.state || got.status != want.status {
				t.Errorf("got %v\nwant %v", got, want)
			}
			for k, n := range got.calls {
				if n > 2 {
					t.Errorf("%q ran %d times", k, n)
				}
			}
		})
	}
}

// failNth fails the nth call of method (n 0: every call).
func failNth(method string, nth int) func(string, int) error {
	return func(m string, n int) error {
		if m == method && (nth == 0 || n == nth) {
			return errInjected
		}
		return nil
	}
}

// TestResumeStoreFaults: a store failing during a resume leaves the run
// resumable once it is back.
func TestResumeStoreFaults(t *testing.T) {
	tests := []struct {
		name string
		give func(method string, n int) error
		// wantStatus is where the failure leaves the run; a running one is
		// recovered to its pause, then resumed.
		wantStatus runner.Status
	}{
		{name: "claim", give: failNth("Claim", 1), wantStatus: runner.StatusPaused},
		{name: "update to running", give: failNth("Update", 1), wantStatus: runner.StatusPaused},
		{name: "the answer's record", give: failNth("Append", 1), wantStatus: runner.StatusRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			base, clk := memStore(t)
			fs := newFaultStore(base, nil)
			r := newRunner(t, fs, map[string]caudal.Step{"p": schemaPipeline(l)})
			if _, err := r.Start(t.Context(), "p", "in", runner.WithRunID("r")); err != nil {
				t.Fatal(err)
			}
			fs.mu.Lock()
			fs.rule, fs.calls = tt.give, map[string]int{}
			fs.mu.Unlock()
			if run, err := r.Resume(t.Context(), "r", goodAnswer); !errors.Is(err, errInjected) || run != nil {
				t.Fatalf("Resume = %+v, %v; want the store's error", run, err)
			}
			fs.heal()
			if got := stored(t, base, "r").Status; got != tt.wantStatus {
				t.Fatalf("the run is %s; want %s", got, tt.wantStatus)
			}
			clk.advance(time.Hour)
			if _, err := r.Recover(t.Context()); err != nil {
				t.Fatal(err)
			}
			run, err := r.Resume(t.Context(), "r", goodAnswer)
			if err != nil || run.Status != runner.StatusCompleted {
				t.Fatalf("Resume once the store is back = %+v, %v; want completed", run, err)
			}
			for k, n := range l.snapshot() {
				if n != 1 {
					t.Errorf("%q ran %d times", k, n)
				}
			}
		})
	}
}

func TestStartRefused(t *testing.T) {
	s, _ := memStore(t)
	r := newRunner(t, s, map[string]caudal.Step{"p": schemaPipeline(newLedger())})
	tests := []struct {
		name     string
		pipeline string
		input    any
		opts     []runner.StartOption
		want     error
	}{
		{name: "unknown pipeline", pipeline: "q", input: "in", want: runner.ErrUnknownPipeline},
		{name: "taken ID", pipeline: "p", input: "in", opts: []runner.StartOption{runner.WithRunID("taken")}, want: runner.ErrRunExists},
	}
	if _, err := r.Start(t.Context(), "p", "in", runner.WithRunID("taken")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if run, err := r.Start(t.Context(), tt.pipeline, tt.input, tt.opts...); !errors.Is(err, tt.want) || run != nil {
				t.Errorf("Start = %+v, %v; want %v", run, err, tt.want)
			}
		})
	}
	if _, err := r.Start(t.Context(), "p", make(chan int)); err == nil {
		t.Error("Start with a channel for input = nil error")
	}
	if runs, _ := s.List(t.Context(), runner.Filter{}); len(runs) != 1 {
		t.Errorf("the store holds %d runs; want the one started", len(runs))
	}
}

func TestBadSchemaFailsThePause(t *testing.T) {
	s, _ := memStore(t)
	bad := caudal.Seq("p", caudal.HumanInput("ask", "?", caudal.WithSchema(map[string]any{"type": "object", "pattern": "x"})))
	r := newRunner(t, s, map[string]caudal.Step{"p": bad})
	run, err := r.Start(t.Context(), "p", "in")
	if !errors.Is(err, runner.ErrInvalidSchema) || run == nil || run.Status != runner.StatusFailed {
		t.Fatalf("Start = %+v, %v; want the run failed with ErrInvalidSchema", run, err)
	}
}

// panicStore panics in every journal append.
type panicStore struct{ runner.Store }

func (panicStore) Append(context.Context, string, string, caudal.Record) (int64, error) {
	panic("boom")
}

func TestStorePanicIsAnError(t *testing.T) {
	s, _ := memStore(t)
	r := newRunner(t, panicStore{s}, map[string]caudal.Step{"p": caudal.Seq("p", agent(newLedger(), "a"))})
	run, err := r.Start(t.Context(), "p", "in")
	if err == nil || run != nil {
		t.Fatalf("Start on a panicking store = %+v, %v; want an error", run, err)
	}
	if !strings.Contains(err.Error(), "store Append panicked: boom") {
		t.Errorf("Start = %v; want the panic named", err)
	}
}
