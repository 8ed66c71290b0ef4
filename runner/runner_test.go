package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// outcome is what a run ended with, for comparisons.
type outcome struct {
	status runner.Status
	output string
	state  string
	calls  map[string]int
}

func outcomeOf(run *runner.Run, l *ledger) outcome {
	return outcome{status: run.Status, output: string(run.Output), state: string(run.FinalState), calls: l.snapshot()}
}

func (o outcome) String() string {
	return fmt.Sprintf("%s output=%s state=%s calls=%v", o.status, o.output, o.state, o.calls)
}

// uninterrupted runs pipeline name of pipelines(l) on a store of its own,
// without pauses, and returns what it ended with.
func uninterrupted(t *testing.T, name string, pipelines func(l *ledger) map[string]caudal.Step, input any) outcome {
	t.Helper()
	l := newLedger()
	s, _ := memStore(t)
	r := newRunner(t, s, pipelines(l))
	run, err := r.Start(t.Context(), name, input)
	if err != nil || run.Status != runner.StatusCompleted {
		t.Fatalf("uninterrupted Start(%q) = %+v, %v; want completed", name, run, err)
	}
	return outcomeOf(run, l)
}

func TestResumeInEveryConstruct(t *testing.T) {
	tests := []struct {
		give       string
		wantPauses int
	}{
		{give: "seq", wantPauses: 1},
		{give: "loop", wantPauses: 2},
		{give: "map", wantPauses: 3},
		{give: "map-concurrent", wantPauses: 3},
		{give: "conditional", wantPauses: 1},
		{give: "parallel-two-pauses", wantPauses: 2},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			want := uninterrupted(t, tt.give, func(l *ledger) map[string]caudal.Step { return pausingPipelines(l, true) }, "in")

			l := newLedger()
			s, _ := memStore(t)
			r := newRunner(t, s, pausingPipelines(l, false))
			run, err := r.Start(t.Context(), tt.give, "in")
			if err != nil || run.Status != runner.StatusPaused {
				t.Fatalf("Start = %+v, %v; want paused", run, err)
			}
			run, pauses := resumeAll(t.Context(), t, r, run)
			if got := outcomeOf(run, l); got.String() != want.String() || pauses != tt.wantPauses {
				t.Errorf("after %d pauses: %v\nwant after %d: %v", pauses, got, tt.wantPauses, want)
			}
			checkAnswers(t, r, run.ID, tt.wantPauses)
		})
	}
}

// checkAnswers checks that run id's journal records n answers, with who
// and when.
func checkAnswers(t *testing.T, r *runner.Runner, id string, n int) {
	t.Helper()
	in, err := r.Inspect(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	answers := 0
	var walk func(ns []*runner.StepNode)
	walk = func(ns []*runner.StepNode) {
		for _, n := range ns {
			for _, e := range n.Entries {
				if e.Record.Metadata[runner.MetaAnsweredBy] == "tester" && e.Record.Metadata[runner.MetaAnsweredAt] != nil {
					answers++
				}
			}
			walk(n.Children)
		}
	}
	walk(in.Steps)
	if answers != n {
		t.Errorf("the journal records %d answers with who and when; want %d", answers, n)
	}
}

// appendsOf returns how many records an uninterrupted run of the full
// pipeline appends.
func appendsOf(t *testing.T) int {
	base, _ := memStore(t)
	fs := newFaultStore(base, nil)
	r := newRunner(t, fs, map[string]caudal.Step{"full": fullPipeline(newLedger())})
	if _, err := r.Start(t.Context(), "full", "in"); err != nil {
		t.Fatal(err)
	}
	return fs.calls["Append"]
}

// TestRecoverAfterCrash kills the store under a run after each of its
// records — the process can save nothing more, as one that died — and
// recovers the run with another runner: no instance that completed (its
// record saved) runs again, the one in flight runs again at most once,
// and the run ends as an uninterrupted one.
func TestRecoverAfterCrash(t *testing.T) {
	full := func(l *ledger) map[string]caudal.Step { return map[string]caudal.Step{"full": fullPipeline(l)} }
	want := uninterrupted(t, "full", full, "in")
	total := appendsOf(t)
	if total < 15 {
		t.Fatalf("the full pipeline appends %d records; want at least 15", total)
	}
	for crashAt := 0; crashAt < total; crashAt++ {
		t.Run(fmt.Sprintf("after=%d", crashAt), func(t *testing.T) {
			l := newLedger()
			base, clk := memStore(t)
			dying := newFaultStore(base, dieAfterAppends(crashAt))
			r1 := newRunner(t, dying, full(l), runner.WithOwner("p1"))
			run, err := r1.Start(t.Context(), "full", "in", runner.WithRunID("r"))
			if !errors.Is(err, errInjected) || run != nil {
				t.Fatalf("Start on a dying store = %+v, %v; want the store's error", run, err)
			}
			saved := completedOutputs(t, base, "r")
			before := l.snapshot()

			r2 := newRunner(t, base, full(l), runner.WithOwner("p2"))
			if runs, err := r2.Recover(t.Context()); err != nil || len(runs) != 0 {
				t.Fatalf("Recover with the lease live = %v, %v; want nothing", runs, err)
			}
			clk.advance(runner.DefaultLeaseTTL + time.Second)
			runs, err := r2.Recover(t.Context())
			if err != nil || len(runs) != 1 {
				t.Fatalf("Recover = %v, %v; want the run", runs, err)
			}
			got := outcomeOf(runs[0], l)
			if got.output != want.output || got.state != want.state || got.status != want.status {
				t.Errorf("recovered: %v\nwant %v", got, want)
			}
			checkLedger(t, got.calls, want.calls, saved, before)
		})
	}
}

// completedOutputs returns the outputs of the completed instances of run
// id's journal: the ledger keys of the side effects that must not happen
// again.
func completedOutputs(t *testing.T, s runner.Store, id string) []string {
	t.Helper()
	entries, err := s.Journal(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if o, ok := e.Record.Output.(string); ok && e.Record.Status == caudal.StatusSucceeded {
			out = append(out, o)
		}
	}
	return out
}

// checkLedger checks the side effects of an interrupted run against an
// uninterrupted one's: the same ones, none lost; none saved before the
// crash twice; none more than twice (the in-flight instance, once more).
func checkLedger(t *testing.T, got, want map[string]int, saved []string, before map[string]int) {
	t.Helper()
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Errorf("side effects %v; want those of %v", got, want)
	}
	for _, k := range saved {
		if got[k] != 1 {
			t.Errorf("%q was saved before the crash, and ran %d times in all", k, got[k])
		}
	}
	again := 0
	for k, n := range got {
		if n > 2 || n == 2 && before[k] != 1 {
			t.Errorf("%q ran %d times (%d before the crash)", k, n, before[k])
		}
		if n == 2 {
			again++
		}
	}
	// The parallel step and the map run two instances at once: at most
	// those in flight run again.
	if again > 2 {
		t.Errorf("%d instances ran again; want at most the 2 in flight", again)
	}
}

// TestRecoverRace: two runners recover the same orphans at once; each run
// is continued by exactly one.
func TestRecoverRace(t *testing.T) {
	const runs = 20
	l := newLedger()
	base, clk := memStore(t)
	dying := newFaultStore(base, func(method string, _ int) error {
		if method == "Append" || method == "Release" || method == "Update" {
			return errInjected
		}
		return nil
	})
	r0 := newRunner(t, dying, map[string]caudal.Step{"full": fullPipeline(l)}, runner.WithOwner("p0"))
	for i := range runs {
		if _, err := r0.Start(t.Context(), "full", fmt.Sprint("in", i)); !errors.Is(err, errInjected) {
			t.Fatalf("Start = %v; want the store's error", err)
		}
	}
	clk.advance(time.Hour)
	r1 := newRunner(t, base, map[string]caudal.Step{"full": fullPipeline(l)}, runner.WithOwner("p1"))
	r2 := newRunner(t, base, map[string]caudal.Step{"full": fullPipeline(l)}, runner.WithOwner("p2"))
	var got [2][]*runner.Run
	var errs [2]error
	var wg sync.WaitGroup
	for i, r := range []*runner.Runner{r1, r2} {
		wg.Go(func() { got[i], errs[i] = r.Recover(t.Context()) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Recover errors: %v, %v", errs[0], errs[1])
	}
	seen := make(map[string]int)
	for _, rs := range got {
		for _, run := range rs {
			seen[run.ID]++
			if run.Status != runner.StatusCompleted {
				t.Errorf("run %s is %s", run.ID, run.Status)
			}
		}
	}
	if len(seen) != runs {
		t.Errorf("recovered %d runs; want %d", len(seen), runs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("run %s recovered %d times", id, n)
		}
	}
	for k, n := range l.snapshot() {
		if n != 2 && k[:4] == "prep" { // prep ran before the store failed, and once more in the recovery
			t.Errorf("%q ran %d times; want 2", k, n)
		}
		if n != 1 && k[:4] != "prep" {
			t.Errorf("%q ran %d times; want 1", k, n)
		}
	}
}

// TestConcurrentRuns runs 200 runs at once on one store, each pausing and
// resumed at once.
func TestConcurrentRuns(t *testing.T) {
	const n = 200
	l := newLedger()
	s, _ := memStore(t)
	r := newRunner(t, s, map[string]caudal.Step{"full": fullPipeline(l), "seq": pausingPipelines(l, false)["seq"]})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			name := []string{"full", "seq"}[i%2]
			run, err := r.Start(t.Context(), name, fmt.Sprint("in", i))
			if err == nil && run.Status == runner.StatusPaused {
				run, err = r.Resume(t.Context(), run.ID, runner.Answer{Value: map[string]any{"n": i}})
			}
			if err == nil && run.Status != runner.StatusCompleted {
				err = fmt.Errorf("run %d is %s", i, run.Status)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for k, c := range l.snapshot() {
		if c != 1 {
			t.Errorf("%q ran %d times", k, c)
		}
	}
	runs, err := r.List(t.Context(), runner.Filter{Status: []runner.Status{runner.StatusCompleted}})
	if err != nil || len(runs) != n {
		t.Errorf("List(completed) = %d runs, %v; want %d", len(runs), err, n)
	}
}

// TestLeaseLost: a runner whose run another process took over stops it
// and writes nothing more.
func TestLeaseLost(t *testing.T) {
	s, clk := memStore(t)
	started := make(chan struct{})
	blocking := caudal.AgentStep("wait", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		close(started)
		<-ctx.Done()
		return caudal.Reply{}, context.Cause(ctx)
	}))
	r := newRunner(t, s, map[string]caudal.Step{"p": caudal.Seq("p", blocking)}, runner.WithLease(30*time.Millisecond))
	var wg sync.WaitGroup
	var err error
	var run *runner.Run
	wg.Go(func() { run, err = r.Start(t.Context(), "p", "in", runner.WithRunID("r")) })
	<-started
	clk.advance(time.Hour)
	if _, cerr := s.Claim(t.Context(), "r", "thief", time.Hour, runner.StatusRunning); cerr != nil {
		t.Fatalf("Claim by another process = %v", cerr)
	}
	wg.Wait()
	if !errors.Is(err, runner.ErrLeaseLost) || run != nil {
		t.Errorf("Start = %+v, %v; want ErrLeaseLost", run, err)
	}
	stored, _ := s.Get(t.Context(), "r")
	if stored.Status != runner.StatusRunning || stored.Owner != "thief" {
		t.Errorf("stored run %s owned by %q; want running, the thief's", stored.Status, stored.Owner)
	}
}

// TestCancelled: a run whose ctx is cancelled is stored cancelled.
func TestCancelled(t *testing.T) {
	s, _ := memStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	stop := caudal.AgentStep("stop", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		cancel()
		<-ctx.Done()
		return caudal.Reply{}, ctx.Err()
	}))
	l := newLedger()
	r := newRunner(t, s, map[string]caudal.Step{"p": caudal.Seq("p", agent(l, "a"), stop)})
	run, err := r.Start(ctx, "p", "in")
	if !errors.Is(err, context.Canceled) || run == nil || run.Status != runner.StatusCancelled {
		t.Fatalf("Start = %+v, %v; want cancelled", run, err)
	}
	var state map[string]any
	if err := json.Unmarshal(run.FinalState, &state); err != nil || state["a"] != "a(in)" {
		t.Errorf("final state %s, %v; want a's write", run.FinalState, err)
	}
}

var errAgent = errors.New("agent broke")

func TestStartOutcomes(t *testing.T) {
	l := newLedger()
	failing := caudal.AgentStep("bad", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{}, caudal.Permanent(errAgent)
	}))
	tests := []struct {
		name       string
		give       caudal.Step
		opts       []runner.StartOption
		wantStatus runner.Status
		wantErr    error
		wantOutput string
		wantState  string
	}{
		{
			name: "completed", give: caudal.Seq("p", agent(l, "a")), wantStatus: runner.StatusCompleted,
			wantOutput: `"a(in)"`, wantState: `{"a":"a(in)"}`,
		},
		{
			name: "with state", give: caudal.Seq("p", agent(l, "b")), opts: []runner.StartOption{runner.WithState(map[string]any{"k": 1})},
			wantStatus: runner.StatusCompleted, wantOutput: `"b(in)"`, wantState: `{"b":"b(in)","k":1}`,
		},
		{
			name: "failed", give: caudal.Seq("p", agent(l, "c"), failing), wantStatus: runner.StatusFailed, wantErr: errAgent,
			wantOutput: "", wantState: `{"c":"c(in)"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := memStore(t)
			r := newRunner(t, s, map[string]caudal.Step{"p": tt.give})
			run, err := r.Start(t.Context(), "p", "in", tt.opts...)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) || run == nil {
				t.Fatalf("Start = %+v, %v; want %v", run, err, tt.wantErr)
			}
			got := stored(t, s, run.ID)
			if got.Status != tt.wantStatus || string(got.Output) != tt.wantOutput || string(got.FinalState) != tt.wantState || got.Usage.Tokens() == 0 {
				t.Errorf("stored %s output=%s state=%s usage=%+v; want %s output=%s state=%s, some usage",
					got.Status, got.Output, got.FinalState, got.Usage, tt.wantStatus, tt.wantOutput, tt.wantState)
			}
		})
	}
}
