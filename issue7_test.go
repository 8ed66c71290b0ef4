package caudal_test

// Regression tests for the defects listed in issue 7 ("The executor's
// interior, rebuilt …"): one test per wall of the issue's list, each quoting
// the defect and saying how the code before the rebuild (fd72324) failed it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/token"
	"math"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
)

// Defect: "Pause/resume is hand-threaded through every construct … and
// recorded only while a pause unwinds, so nothing can checkpoint after each
// completed step, which is what crash recovery needs."
//
// Before: fd72324 had no Checkpointer at all; progress existed only as the
// frames PausedError.addFrame collected on the way out of a pause
// (human.go), so a run that never paused left no record of its steps.
func TestIssue7CheckpointEachStep(t *testing.T) {
	t.Run("sequence", func(t *testing.T) {
		var mu sync.Mutex // protects log
		var log []string
		note := func(s string) {
			mu.Lock()
			log = append(log, s)
			mu.Unlock()
		}
		step := caudal.Seq("s", issue7Noted("a", note), issue7Noted("b", note))
		cp := caudal.CheckpointFunc(func(_ context.Context, rec caudal.Record) error {
			note(fmt.Sprintf("record %s %s %v", rec.Path, rec.Status, rec.Output))
			return nil
		})
		res, err := execute(t, mustNew(t), step, "x", caudal.WithCheckpointer(cp))
		if err != nil || res.Output != "b(a(x))" {
			t.Fatalf("Execute = %v, %v; want b(a(x)), nil", res.Output, err)
		}
		want := []string{"run a", "record s/a succeeded a(x)", "run b", "record s/b succeeded b(a(x))", "record s succeeded b(a(x))"}
		if !slices.Equal(log, want) {
			t.Errorf("agent calls and records = %q;\nwant %q", log, want)
		}
	})
	t.Run("parallel in completion order", func(t *testing.T) {
		// Under the fake runtime "fast" completes at 1s and "slow" at 2s:
		// records follow completion, not declaration, order.
		rt := caudaltest.NewRuntime(1)
		sleeper := func(d time.Duration) caudal.Agent {
			return caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
				return caudal.Reply{Output: d.String()}, rt.Sleep(ctx, d)
			})
		}
		step := caudal.Parallel("p",
			caudal.Branch("slow", caudal.AgentStep("slow", sleeper(2*time.Second))),
			caudal.Branch("fast", caudal.AgentStep("fast", sleeper(time.Second))))
		var mu sync.Mutex // protects paths
		var paths []string
		cp := caudal.CheckpointFunc(func(_ context.Context, rec caudal.Record) error {
			mu.Lock()
			paths = append(paths, rec.Path)
			mu.Unlock()
			return nil
		})
		if _, err := execute(t, mustNew(t, caudal.WithRuntime(rt), caudal.WithCheckpointer(cp)), step, nil); err != nil {
			t.Fatalf("Execute = %v; want success", err)
		}
		if want := []string{"p/fast", "p/slow", "p"}; !slices.Equal(paths, want) {
			t.Errorf("records = %q; want %q", paths, want)
		}
	})
	t.Run("called before the next step runs", func(t *testing.T) {
		// A checkpointer that cancels the run after the first record: if it
		// were called late (at the end, or at a pause), b would have run.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var bCalls atomic.Int32
		b := caudal.AgentStep("b", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			bCalls.Add(1)
			return caudal.Reply{Output: in}, nil
		}))
		var records []string
		cp := caudal.CheckpointFunc(func(_ context.Context, rec caudal.Record) error {
			records = append(records, rec.Path)
			cancel()
			return nil
		})
		_, err := mustNew(t).Execute(ctx, mustBuild(t, caudal.Seq("s", caudal.AgentStep("a", echoAgent{}), b)), "x", caudal.WithCheckpointer(cp))
		if !errors.Is(err, context.Canceled) || bCalls.Load() != 0 {
			t.Errorf("Execute = %v, b calls %d; want context.Canceled and b never called", err, bCalls.Load())
		}
		if len(records) == 0 || records[0] != "s/a" {
			t.Errorf("records = %q; want s/a first", records)
		}
	})
}

// issue7Noted is an agent step that notes its call and outputs
// "<name>(<input>)".
func issue7Noted(name string, note func(string)) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		note("run " + name)
		return caudal.Reply{Output: fmt.Sprintf("%s(%v)", name, in)}, nil
	}))
}

// Defect: "Step paths are not unique per execution: every loop iteration
// runs as loop/body, map items carry no index".
//
// Before: fd72324 compiled one static path per node (build.go: node.path),
// and execLoop/execMap ran every iteration and item at n.body.path, so
// every row below got "loop/body" or "m/body" for each child.
func TestIssue7InstancePaths(t *testing.T) {
	echo := func(name string) caudal.Step { return caudal.AgentStep(name, echoAgent{}) }
	tests := []struct {
		name         string
		give         caudal.Step
		in           any
		wantChildren string // paths of the root result's children
		wantStarted  string // paths of the step_started events, in order
	}{
		{
			"loop", caudal.Loop("loop", echo("body"), caudal.WithMaxIterations(3)), "x",
			"[loop#1/body loop#2/body loop#3/body]",
			"[loop loop#1/body loop#2/body loop#3/body]",
		},
		{
			"map", caudal.Map("m", caudal.Seq("body", echo("fetch"))),
			[]any{"a", "b"},
			"[m[0]/body m[1]/body]",
			"[m m[0]/body m[0]/body/fetch m[1]/body m[1]/body/fetch]",
		},
		{
			"loop in map", caudal.Map("m", caudal.Loop("loop", echo("body"), caudal.WithMaxIterations(2))),
			[]any{"a", "b"},
			"[m[0]/loop m[1]/loop]",
			"[m m[0]/loop m[0]/loop#1/body m[0]/loop#2/body m[1]/loop m[1]/loop#1/body m[1]/loop#2/body]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &caudaltest.Recorder{}
			res, err := execute(t, mustNew(t, caudal.WithSink(rec)), tt.give, tt.in)
			if err != nil {
				t.Fatalf("Execute = %v; want success", err)
			}
			var children []string
			for _, c := range res.Children {
				children = append(children, c.Path)
			}
			if got := fmt.Sprint(children); got != tt.wantChildren {
				t.Errorf("children's paths = %s; want %s", got, tt.wantChildren)
			}
			var started []string
			for _, e := range rec.Filter(caudal.EventStepStarted) {
				started = append(started, e.Path)
			}
			if got := fmt.Sprint(started); got != tt.wantStarted {
				t.Errorf("started events' paths = %s; want %s", got, tt.wantStarted)
			}
		})
	}
}

// Defect: "map items carry no index, so events of concurrent items cannot
// be paired".
//
// Before: each of the 8 items below started and finished at "m/body" and
// "m/body/fetch": 8 started and 8 finished events per path, interleaved.
func TestIssue7ConcurrentMapEventsPair(t *testing.T) {
	items := []any{0, 1, 2, 3, 4, 5, 6, 7}
	rec := &caudaltest.Recorder{}
	step := caudal.Map("m", caudal.Seq("body", caudal.AgentStep("fetch", echoAgent{})), caudal.WithConcurrency(4))
	res, err := execute(t, mustNew(t, caudal.WithSink(rec)), step, items)
	if err != nil {
		t.Fatalf("Execute = %v; want success", err)
	}
	count := make(map[string][2]int) // path → started, finished
	for _, e := range rec.Events() {
		c := count[e.Path]
		switch e.Kind {
		case caudal.EventStepStarted:
			c[0]++
		case caudal.EventStepFinished:
			c[1]++
		}
		count[e.Path] = c
	}
	for i := range items {
		for _, p := range []string{fmt.Sprintf("m[%d]/body", i), fmt.Sprintf("m[%d]/body/fetch", i)} {
			if count[p] != [2]int{1, 1} {
				t.Errorf("events at %s: %d started, %d finished; want 1 and 1", p, count[p][0], count[p][1])
			}
		}
		if c := res.Children[i]; c.Path != fmt.Sprintf("m[%d]/body", i) || c.Output != items[i] {
			t.Errorf("child %d = %s → %v; want m[%d]/body → %v", i, c.Path, c.Output, i, items[i])
		}
	}
	if len(count) != 1+2*len(items) {
		t.Errorf("events at %d paths; want %d (the map and two per item)", len(count), 1+2*len(items))
	}
}

// Defect: "Events, errors, results and panics carry it [the instance path]"
// (the list: "Step paths are not unique per execution").
//
// Before: StepError.Step and PanicError.Step held the static path, so the
// rows below reported "loop/body" and "m/body": which iteration or item
// failed was lost.
func TestIssue7ErrorsCarryInstancePaths(t *testing.T) {
	// panicOnCall panics at its n-th call, panicOnInput on input v.
	panicOnCall := func(n int32) caudal.Agent {
		var calls atomic.Int32
		return caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			if calls.Add(1) == n {
				panic(fmt.Sprint("broke at call ", n))
			}
			return caudal.Reply{Output: in}, nil
		})
	}
	panicOnInput := func(v any) caudal.Agent {
		return caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			if in == v {
				panic(fmt.Sprint("broke on ", v))
			}
			return caudal.Reply{Output: in}, nil
		})
	}
	items := []any{10, 11, 2, 13}
	tests := []struct {
		name string
		give caudal.Step
		in   any
		want string // StepError.Step and PanicError.Step
	}{
		{"loop iteration 2", caudal.Loop("loop", caudal.AgentStep("body", panicOnCall(2)), caudal.WithMaxIterations(3)), "x", "loop#2/body"},
		{"sequential map item 2", caudal.Map("m", caudal.AgentStep("body", panicOnInput(2))), items, "m[2]/body"},
		{"concurrent map item 2", caudal.Map("m", caudal.AgentStep("body", panicOnInput(2)), caudal.WithConcurrency(4)), items, "m[2]/body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(t, mustNew(t), tt.give, tt.in)
			se, isStep := errors.AsType[*caudal.StepError](err)
			pe, isPanic := errors.AsType[*caudal.PanicError](err)
			if !isStep || !isPanic {
				t.Fatalf("Execute = %v; want a *StepError wrapping a *PanicError", err)
			}
			if se.Step != tt.want || pe.Step != tt.want {
				t.Errorf("StepError.Step = %q, PanicError.Step = %q; want %q", se.Step, pe.Step, tt.want)
			}
		})
	}
}

// issue7Loop is a loop (at most 3 iterations) whose body runs work, then
// pauses at "ask": it pauses at loop#1/body/ask with a record of
// loop#1/body/work.
func issue7Loop(work *tally) caudal.Step {
	return caudal.Loop("loop", caudal.Seq("body", work.step(), caudal.HumanInput("ask", "?")), caudal.WithMaxIterations(3))
}

// issue7Map is a map whose item body runs work, then pauses at "ask".
func issue7Map(work *tally) caudal.Step {
	return caudal.Map("m", caudal.Seq("body", work.step(), caudal.HumanInput("ask", "?")))
}

// issue7Paused executes step on in and returns the pause it must end in.
func issue7Paused(t *testing.T, ex *caudal.Executor, step caudal.Step, in any, opts ...caudal.Option) *caudal.PausedError {
	t.Helper()
	_, err := ex.Execute(t.Context(), step, in, opts...)
	pe, ok := errors.AsType[*caudal.PausedError](err)
	if !ok {
		t.Fatalf("Execute = %v; want a pause", err)
	}
	return pe
}

// issue7Edit returns a copy of snap, sent through JSON, in which every
// occurrence of the JSON string from is replaced by to, as a hand editing
// a persisted snapshot would. It fails the test when from does not occur.
func issue7Edit(t *testing.T, snap *caudal.Snapshot, from, to string) *caudal.Snapshot {
	t.Helper()
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatalf("Marshal(snapshot): %v", err)
	}
	q, r := strconv.Quote(from), strconv.Quote(to)
	if !bytes.Contains(b, []byte(q)) {
		t.Fatalf("snapshot %s has no %s to edit", b, q)
	}
	var back caudal.Snapshot
	if err := json.Unmarshal(bytes.ReplaceAll(b, []byte(q), []byte(r)), &back); err != nil {
		t.Fatalf("Unmarshal(edited snapshot): %v", err)
	}
	return &back
}

// issue7Resume resumes step from snap with answer, failing the test if
// Execute panics.
func issue7Resume(t *testing.T, ex *caudal.Executor, step caudal.Step, snap *caudal.Snapshot, answer any, opts ...caudal.Option) (res caudal.StepResult, err error) {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("Execute(WithResume) panicked: %v", v)
		}
	}()
	return ex.Execute(t.Context(), step, nil, append(opts, caudal.WithResume(snap, answer))...)
}

// issue7ResumeEdited pauses step (which runs work) on in, edits from into
// to in the snapshot, resumes it and returns how many times the resumed
// run called work, and its error.
func issue7ResumeEdited(t *testing.T, step caudal.Step, work *tally, in any, from, to string) (int32, error) {
	t.Helper()
	ex := mustNew(t)
	built := mustBuild(t, step)
	pe := issue7Paused(t, ex, built, in)
	before := work.calls.Load()
	_, err := issue7Resume(t, ex, built, issue7Edit(t, pe.Snapshot, from, to), "ok")
	return work.calls.Load() - before, err
}

// Defect: "a snapshot edited to "index": -1 panics out of Execute".
//
// Before: frame indexes were taken as is (first, cur = fr.Index, fr.Input
// in flow.go and loop.go): a sequence frame with index -1 started at
// n.children[-1] and panicked with "index out of range" out of Execute.
// Now every index in a record's or the paused step's path is checked.
func TestIssue7SnapshotNegativeIndex(t *testing.T) {
	tests := []struct {
		name     string
		give     func(*tally) caudal.Step
		in       any
		from, to string
	}{
		{"loop record", issue7Loop, "x", "loop#1/body/work", "loop#-1/body/work"},
		{"loop paused step", issue7Loop, "x", "loop#1/body/ask", "loop#-1/body/ask"},
		{"map record", issue7Map, []any{"x"}, "m[0]/body/work", "m[-1]/body/work"},
		{"map paused step", issue7Map, []any{"x"}, "m[0]/body/ask", "m[-1]/body/ask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := &tally{name: "work"}
			calls, err := issue7ResumeEdited(t, tt.give(work), work, tt.in, tt.from, tt.to)
			if !errors.Is(err, caudal.ErrSnapshotMismatch) || calls != 0 {
				t.Errorf("resume = %v, %d work calls; want ErrSnapshotMismatch and none", err, calls)
			}
		})
	}
}

// Defect: "a negative loop index ignores WithMaxIterations (250k agent
// calls in a second)".
//
// Before: the loop ran "for i := first; i <= n.maxIterations" from the
// frame's index: from -250000 it made 250k calls, and nothing checked an
// index above the cap either. Now an iteration outside 1..max is rejected.
func TestIssue7SnapshotIndexBeyondMaxIterations(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
	}{
		{"record beyond", "loop#1/body/work", "loop#4/body/work"},
		{"paused step beyond", "loop#1/body/ask", "loop#4/body/ask"},
		{"far beyond", "loop#1/body/ask", "loop#250000/body/ask"},
		{"beyond int32", "loop#1/body/ask", "loop#99999999999/body/ask"},
		{"far below", "loop#1/body/ask", "loop#-250000/body/ask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := &tally{name: "work"}
			calls, err := issue7ResumeEdited(t, issue7Loop(work), work, "x", tt.from, tt.to)
			if !errors.Is(err, caudal.ErrSnapshotMismatch) || calls != 0 {
				t.Errorf("resume = %v, %d work calls; want ErrSnapshotMismatch and none", err, calls)
			}
		})
	}
}

// Defect: "a state write without a path panics and leaves the caller's
// State write-locked forever".
//
// Before: resuming applied a branch frame's writes in State.apply, which
// locked the state and called statemerge.Apply without a deferred unlock;
// Apply panics on an empty path, so the lock stayed held and every later
// Set or Get on the caller's State hung.
func TestIssue7SnapshotWriteWithoutPath(t *testing.T) {
	work := &tally{name: "work"}
	ex := mustNew(t)
	step := mustBuild(t, caudal.Seq("s", work.step(), caudal.HumanInput("ask", "?")))
	pe := issue7Paused(t, ex, step, "x", caudal.WithState(caudal.NewState(nil)))
	for _, path := range [][]string{nil, {}} {
		snap := viaJSON(t, pe.Snapshot)
		edited := 0
		for i := range snap.Journal {
			for k := range snap.Journal[i].Writes {
				snap.Journal[i].Writes[k].Path = path
				edited++
			}
		}
		if edited == 0 {
			t.Fatalf("snapshot %+v has no state write to edit", snap)
		}
		before := work.calls.Load()
		st := caudal.NewState(map[string]any{"kept": 1})
		_, err := issue7Resume(t, ex, step, snap, "ok", caudal.WithState(st))
		if !errors.Is(err, caudal.ErrSnapshotMismatch) || work.calls.Load() != before {
			t.Errorf("resume with write path %#v = %v, %d work calls; want ErrSnapshotMismatch and none", path, err, work.calls.Load()-before)
		}
		done := make(chan int, 1)
		go func() {
			st.Set("after", 2)
			v, _ := caudal.Get[int](st, "after")
			done <- v
		}()
		select {
		case v := <-done:
			if v != 2 {
				t.Errorf("Get(after) = %d; want 2", v)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the caller's State is still locked after the rejected resume")
		}
	}
}

// Defect: "frames at paths that do not exist are ignored and the whole
// pipeline re-runs".
//
// Before: frames were looked up by path as each construct ran, so a frame
// nobody asked for was never noticed, and a = s/a ran again.
func TestIssue7SnapshotUnknownPaths(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
	}{
		{"no such step", "s/a", "s/ghost"},
		{"no such root", "s/a", "t/a"},
		{"below an agent step", "s/a", "s/a/deeper"},
		{"index on a sequence", "s/a", "s#1/a"},
		{"paused step elsewhere", "s/ask", "s/nowhere"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := &tally{name: "a"}, &tally{name: "b"}
			rec := &caudaltest.Recorder{}
			ex := mustNew(t, caudal.WithSink(rec))
			step := mustBuild(t, caudal.Seq("s", a.step(), caudal.HumanInput("ask", "?"), b.step()))
			pe := issue7Paused(t, ex, step, "x")
			rec.Reset()
			_, err := issue7Resume(t, ex, step, issue7Edit(t, pe.Snapshot, tt.from, tt.to), "ok")
			if !errors.Is(err, caudal.ErrSnapshotMismatch) {
				t.Errorf("resume = %v; want ErrSnapshotMismatch", err)
			}
			if a.calls.Load() != 1 || b.calls.Load() != 0 || len(rec.Events()) != 0 {
				t.Errorf("calls a=%d b=%d, %d events after the resume; want a=1 b=0 and no step run", a.calls.Load(), b.calls.Load(), len(rec.Events()))
			}
		})
	}
}

// Defect: "Snapshot.Frames is an exported field of an unexported type."
//
// Before: Snapshot.Frames was a map[string]*frame (human.go), frame and
// branchFrame unexported: callers could not name, build or inspect what
// they persisted.
func TestIssue7SnapshotTypesAreExported(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[caudal.Snapshot](), reflect.TypeFor[caudal.Record]()} {
		if bad := issue7Unexported(typ); len(bad) > 0 {
			t.Errorf("%s has exported fields of unexported types: %s", typ, strings.Join(bad, ", "))
		}
	}
	// The check can fail: the shape of the old Snapshot.
	type frame struct{ Index int }
	type oldSnapshot struct {
		Version int
		Frames  map[string]*frame
	}
	if bad := issue7Unexported(reflect.TypeFor[oldSnapshot]()); len(bad) != 1 {
		t.Errorf("issue7Unexported(old Snapshot) = %q; want the Frames field", bad)
	}
}

// issue7Unexported lists the exported fields, of typ and of the types
// reachable from its exported fields, whose type — or element, key or
// field type — is a named type that is not exported.
func issue7Unexported(typ reflect.Type) []string {
	var bad []string
	seen := make(map[reflect.Type]bool)
	var walk, visit func(where string, t reflect.Type)
	// visit checks t, the type of the field at where, then walks it.
	visit = func(where string, t reflect.Type) {
		if t.Name() != "" && t.PkgPath() != "" && !token.IsExported(t.Name()) {
			bad = append(bad, fmt.Sprintf("%s (%s)", where, t))
		}
		walk(where, t)
	}
	// walk visits the types t is made of.
	walk = func(where string, t reflect.Type) {
		if seen[t] {
			return
		}
		seen[t] = true
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			visit(where, t.Elem())
		case reflect.Map:
			visit(where, t.Key())
			visit(where, t.Elem())
		case reflect.Struct:
			for i := range t.NumField() {
				if f := t.Field(i); f.IsExported() {
					visit(t.Name()+"."+f.Name, f.Type)
				}
			}
		}
	}
	walk(typ.Name(), typ)
	return bad
}

// issue7Counted is an agent step that counts its calls in n.
func issue7Counted(name string, n *atomic.Int32, opts ...caudal.StepOption) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		n.Add(1)
		return caudal.Reply{Output: in}, nil
	}), opts...)
}

// Defect: "Nothing identifies the pipeline, so a snapshot of pipeline X
// resumes on a different Y with the same step names and runs Y's steps,
// and when Y pauses at its own human step the human's answer is silently
// dropped."
//
// Before: WithResume checked only the version and the path; the frame of
// "s" (index 1, the step in progress) sent Y into its step 1 — in the
// "kinds" row an agent named "ask", which ran — and Y then paused at its
// own s/b: executor.go accepted an undelivered answer whenever the run
// paused again (asPaused(err) != nil).
func TestIssue7SnapshotOfAnotherPipeline(t *testing.T) {
	var xa, xb atomic.Int32
	x := caudal.Seq("s", issue7Counted("a", &xa), caudal.HumanInput("ask", "?"), issue7Counted("b", &xb))
	ex := mustNew(t)
	pe := issue7Paused(t, ex, mustBuild(t, x), "in")
	// The same pipeline, built again, takes the snapshot: the rows below
	// fail for the difference alone.
	if _, err := issue7Resume(t, ex, mustBuild(t, x), viaJSON(t, pe.Snapshot), "yes"); err != nil || xa.Load() != 1 || xb.Load() != 1 {
		t.Fatalf("resume on X rebuilt = %v, calls a=%d b=%d; want success, each once", err, xa.Load(), xb.Load())
	}
	tests := []struct {
		name string
		give func(ya, yb *atomic.Int32) caudal.Step
	}{
		{"an option", func(ya, yb *atomic.Int32) caudal.Step {
			return caudal.Seq("s", issue7Counted("a", ya), caudal.HumanInput("ask", "?"), issue7Counted("b", yb, caudal.WithRetries(2)))
		}},
		{"UpdatesContext", func(ya, yb *atomic.Int32) caudal.Step {
			return caudal.Seq("s", issue7Counted("a", ya, caudal.UpdatesContext()), caudal.HumanInput("ask", "?"), issue7Counted("b", yb))
		}},
		{"kinds", func(ya, yb *atomic.Int32) caudal.Step {
			return caudal.Seq("s", issue7Counted("a", ya), issue7Counted("ask", yb), caudal.HumanInput("b", "?"))
		}},
		{"a step added", func(ya, yb *atomic.Int32) caudal.Step {
			return caudal.Seq("s", issue7Counted("a", ya), caudal.HumanInput("ask", "?"), issue7Counted("b", yb), caudal.HumanInput("confirm", "?"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ya, yb atomic.Int32
			rec := &caudaltest.Recorder{}
			_, err := issue7Resume(t, mustNew(t, caudal.WithSink(rec)), mustBuild(t, tt.give(&ya, &yb)), viaJSON(t, pe.Snapshot), "yes")
			if !errors.Is(err, caudal.ErrSnapshotMismatch) || errors.Is(err, caudal.ErrPaused) {
				t.Errorf("resume on Y = %v; want ErrSnapshotMismatch, not a pause", err)
			}
			if ya.Load() != 0 || yb.Load() != 0 || len(rec.Events()) != 0 {
				t.Errorf("Y's calls a=%d b=%d, %d events; want no step of Y run", ya.Load(), yb.Load(), len(rec.Events()))
			}
		})
	}
}

// Defect: "when Y pauses at its own human step the human's answer is
// silently dropped" — here for a resumed run of the right pipeline that
// takes another way on the replay ("A resumed run that never delivers the
// answer to the paused step is a mismatch, never a fresh pause").
//
// Before: executor.go reported a run that never reached the paused step
// only when it did not pause again (err == nil || asPaused(err) == nil):
// a fresh PausedError elsewhere came back as if nothing were wrong.
func TestIssue7ResumeNeverReachesPausedStep(t *testing.T) {
	t.Run("conditional, decision journaled", func(t *testing.T) {
		// The key func changes its mind, but the journal's decision stands:
		// the replay takes the recorded branch and delivers the answer.
		var flip, keyCalls atomic.Int32
		step := issue7Flipping(t, &flip, &keyCalls)
		ex := mustNew(t)
		pe := issue7Paused(t, ex, step, "in")
		flip.Store(1)
		res, err := issue7Resume(t, ex, step, viaJSON(t, pe.Snapshot), "yes")
		if err != nil || res.Output != "yes" || keyCalls.Load() != 1 {
			t.Errorf("resume = %v, %v, key calls %d; want yes, nil, the key computed once", res.Output, err, keyCalls.Load())
		}
	})
	t.Run("conditional, decision not in the snapshot", func(t *testing.T) {
		// A snapshot assembled without the conditional's decision: the key
		// func is asked again and picks the branch with another human step.
		var flip, keyCalls atomic.Int32
		step := issue7Flipping(t, &flip, &keyCalls)
		ex := mustNew(t)
		pe := issue7Paused(t, ex, step, "in")
		snap := viaJSON(t, pe.Snapshot)
		snap.Journal = slices.DeleteFunc(snap.Journal, func(r caudal.Record) bool { return r.Status == caudal.StatusDecided })
		flip.Store(1)
		_, err := issue7Resume(t, ex, step, snap, "yes")
		if !errors.Is(err, caudal.ErrSnapshotMismatch) || errors.Is(err, caudal.ErrPaused) {
			t.Errorf("resume = %v; want ErrSnapshotMismatch, not a fresh pause", err)
		}
	})
	t.Run("loop exit condition", func(t *testing.T) {
		// Paused in iteration 2; on the replay the exit condition holds
		// after iteration 1, and the run pauses at "final" instead.
		var stop atomic.Bool
		work := &tally{name: "work"}
		step := mustBuild(t, caudal.Seq("s",
			caudal.Loop("loop", caudal.Seq("body", work.step(), caudal.HumanInput("ask", "?")),
				caudal.WithMaxIterations(3),
				caudal.WithExitCondition(func(context.Context, any) (bool, error) { return stop.Load(), nil })),
			caudal.HumanInput("final", "?")))
		ex := mustNew(t)
		pe := issue7Paused(t, ex, step, "in")
		_, err := issue7Resume(t, ex, step, viaJSON(t, pe.Snapshot), "again")
		pe2, ok := errors.AsType[*caudal.PausedError](err)
		if !ok || pe2.Path != "s/loop#2/body/ask" {
			t.Fatalf("first resume = %v; want a pause at s/loop#2/body/ask", err)
		}
		stop.Store(true)
		_, err = issue7Resume(t, ex, step, viaJSON(t, pe2.Snapshot), "done")
		if !errors.Is(err, caudal.ErrSnapshotMismatch) || errors.Is(err, caudal.ErrPaused) {
			t.Errorf("second resume = %v; want ErrSnapshotMismatch, not a fresh pause", err)
		}
	})
}

// issue7Flipping is a built conditional whose key func picks "review"
// while flip is 0 and "other" after; both branches pause.
func issue7Flipping(t *testing.T, flip, keyCalls *atomic.Int32) caudal.Step {
	key := func(context.Context, any) (string, error) {
		keyCalls.Add(1)
		if flip.Load() == 0 {
			return "review", nil
		}
		return "other", nil
	}
	return mustBuild(t, caudal.Conditional("c", key,
		caudal.Branch("review", caudal.Seq("r", caudal.AgentStep("work", echoAgent{}), caudal.HumanInput("ask", "?"))),
		caudal.Branch("other", caudal.HumanInput("elsewhere", "?"))))
}

// Defect: "A state holding a value JSON cannot encode pauses fine and fails
// later, when the snapshot is saved, without naming the key".
//
// Before: the pause returned a PausedError whose Snapshot.State held the
// value; json.Marshal of it failed at the caller with "json: unsupported
// type: func()" and no key.
func TestIssue7SnapshotUnencodableState(t *testing.T) {
	tests := []struct {
		name string
		give any
	}{
		{"func", func() {}},
		{"channel", make(chan int)},
		{"NaN", math.NaN()},
		{"nested +Inf", map[string]any{"x": []any{math.Inf(1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issue7PauseNamesKey(t, "bad_value", tt.give)
		})
	}
}

// Defect: "a state nested beyond the JSON decoder's depth limit makes a
// snapshot that encodes but cannot be decoded".
//
// Before: the snapshot marshalled fine and json.Unmarshal failed, on
// reload, with "exceeded max depth": the run could never be resumed.
func TestIssue7SnapshotTooDeepState(t *testing.T) {
	var deep any = "bottom"
	for range 10_001 {
		deep = map[string]any{"d": deep}
	}
	issue7PauseNamesKey(t, "too_deep", deep)
}

// issue7PauseNamesKey checks that a run pausing with v at state key key —
// in the state it started with, or written by a step — fails at the pause
// with an error naming key.
func issue7PauseNamesKey(t *testing.T, key string, v any) {
	t.Helper()
	setter := caudal.AgentStep("set", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		caudal.StateFrom(ctx).Set(key, v)
		return caudal.Reply{Output: in}, nil
	}))
	ex := mustNew(t)
	ask := mustBuild(t, caudal.Seq("s", caudal.AgentStep("a", echoAgent{}), caudal.HumanInput("ask", "?")))
	_, err := ex.Execute(t.Context(), ask, "in", caudal.WithState(caudal.NewState(map[string]any{key: v})))
	if err == nil || !strings.Contains(err.Error(), strconv.Quote(key)) {
		t.Errorf("pause with %s in the initial state = %v; want an error naming the key", key, err)
	}
	written := mustBuild(t, caudal.Seq("s", setter, caudal.HumanInput("ask", "?")))
	_, err = ex.Execute(t.Context(), written, "in", caudal.WithState(caudal.NewState(nil)))
	if err == nil || !strings.Contains(err.Error(), strconv.Quote(key)) {
		t.Errorf("pause with %s written by a step = %v; want an error naming the key", key, err)
	}
}

// issue7Work is an agent step that counts its calls per input in calls
// and changes, in place, the nested map it gets from the state at "doc".
func issue7Work(mu *sync.Mutex, calls map[any]int) caudal.Step {
	return caudal.AgentStep("work", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		mu.Lock()
		calls[in]++
		mu.Unlock()
		if doc, ok := caudal.Get[map[string]any](caudal.StateFrom(ctx), "doc"); ok {
			doc[fmt.Sprint(in)] = true
		}
		return caudal.Reply{Output: in}, nil
	}))
}

// Defect: "Resume mutates the caller's snapshot: map-item frames are
// deleted from it and restored state is aliased into the live state, so a
// second resume from the same snapshot re-runs finished steps".
//
// Before: resumeState.item shared the snapshot's branchFrame.Frames and
// frame() deleted from them; NewState(bf.State) ran the item on the
// snapshot's own map. The second resume found no frames: item x's work
// ran again, and the snapshot's JSON had changed.
func TestIssue7ResumeLeavesSnapshotUnchanged(t *testing.T) {
	tests := []struct {
		name      string
		give      int    // the map's concurrency
		wantCalls string // work calls per item after the pause and two resumes
	}{
		{"sequential", 1, "map[x:1 y:2]"}, // y was not done at the pause
		{"concurrent", 3, "map[x:1 y:1]"}, // both items were paused after their work
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := make(map[any]int)
			step := mustBuild(t, caudal.Map("m", caudal.Seq("body", issue7Work(&mu, calls), caudal.HumanInput("ask", "?")), caudal.WithConcurrency(tt.give)))
			ex := mustNew(t)
			pe := issue7Paused(t, ex, step, []any{"x", "y"}, caudal.WithState(caudal.NewState(map[string]any{"doc": map[string]any{}})))
			before, err := json.Marshal(pe.Snapshot)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				st := caudal.NewState(nil)
				_, err := issue7Resume(t, ex, step, pe.Snapshot, "A", caudal.WithState(st))
				if p, ok := errors.AsType[*caudal.PausedError](err); !ok || p.Path != "m[1]/body/ask" {
					t.Fatalf("resume %d = %v; want a pause at m[1]/body/ask", i+1, err)
				}
				// The live state is the run's own: changing it leaves the snapshot alone.
				if doc, ok := caudal.Get[map[string]any](st, "doc"); ok {
					doc["live"] = i
				}
				st.Set("extra", i)
			}
			after, err := json.Marshal(pe.Snapshot)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("snapshot changed by resuming it:\nbefore %s\nafter  %s", before, after)
			}
			if got := fmt.Sprint(calls); got != tt.wantCalls {
				t.Errorf("work calls = %s; want %s", got, tt.wantCalls)
			}
		})
	}
}

// issue7ConcurrentEnv makes TestIssue7ConcurrentResumeHelper run.
const issue7ConcurrentEnv = "CAUDAL_ISSUE7_CONCURRENT_RESUME"

// Defect: "two concurrent resumes of one snapshot race (fatal error:
// concurrent map read and map write)".
//
// Before: the resumes deleted frames from the same maps of the snapshot
// and wrote the same aliased state maps; the runtime killed the process
// with "fatal error: concurrent map read and map write", which no recover
// catches — hence a subprocess.
func TestIssue7ConcurrentResume(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestIssue7ConcurrentResumeHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), issue7ConcurrentEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("fatal error")) || bytes.Contains(out, []byte("DATA RACE")) {
		t.Fatalf("concurrent resumes: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestIssue7ConcurrentResumeHelper")) || !bytes.Contains(out, []byte("rounds: 50")) {
		t.Fatalf("the helper did not run its rounds:\n%s", out)
	}
}

// TestIssue7ConcurrentResumeHelper resumes one snapshot of a paused
// concurrent map from several goroutines at once, 50 rounds; it runs only
// in the subprocess TestIssue7ConcurrentResume starts.
func TestIssue7ConcurrentResumeHelper(t *testing.T) {
	if os.Getenv(issue7ConcurrentEnv) == "" {
		return
	}
	const rounds, resumes = 50, 8
	var mu sync.Mutex
	calls := make(map[any]int)
	body := caudal.Seq("body", issue7Work(&mu, calls), caudal.Loop("loop", caudal.HumanInput("ask", "?"), caudal.WithMaxIterations(1)))
	step := mustBuild(t, caudal.Map("m", body, caudal.WithConcurrency(4)))
	ex := mustNew(t)
	items := []any{"a", "b", "c", "d"}
	for round := range rounds {
		pe := issue7Paused(t, ex, step, items, caudal.WithState(caudal.NewState(map[string]any{"doc": map[string]any{"n": 1}})))
		before, err := json.Marshal(pe.Snapshot)
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, resumes)
		var wg sync.WaitGroup
		for i := range resumes {
			wg.Go(func() {
				st := caudal.NewState(nil)
				_, errs[i] = ex.Execute(context.Background(), step, nil, caudal.WithState(st), caudal.WithResume(pe.Snapshot, "A"))
				if doc, ok := caudal.Get[map[string]any](st, "doc"); ok {
					doc["n"] = i
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if p, ok := errors.AsType[*caudal.PausedError](err); !ok || p.Path != "m[1]/body/loop#1/ask" {
				t.Fatalf("round %d, resume %d = %v; want a pause at m[1]/body/loop#1/ask", round, i, err)
			}
		}
		if after, _ := json.Marshal(pe.Snapshot); !bytes.Equal(before, after) {
			t.Fatalf("round %d: the snapshot changed:\nbefore %s\nafter  %s", round, before, after)
		}
	}
	if want := fmt.Sprint(map[any]int{"a": rounds, "b": rounds, "c": rounds, "d": rounds}); fmt.Sprint(calls) != want {
		t.Errorf("work calls = %v; want %s (once per item per round: never on a resume)", calls, want)
	}
	t.Logf("rounds: %d", rounds)
}

// Defect: "Resume re-runs finished work: a failed primary whose fallback
// paused runs (and is charged) again".
//
// Before: the primary's failure was in no frame, so the resumed run called
// the primary again (2 calls) and charged its usage twice (21 tokens).
func TestIssue7ResumeSkipsFailedPrimary(t *testing.T) {
	var primaryCalls atomic.Int32
	primary := caudal.AgentStep("primary", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		primaryCalls.Add(1)
		return caudal.Reply{Usage: caudal.Usage{PromptTokens: 10}}, errors.New("primary down")
	}), caudal.WithFallback(caudal.Seq("backup",
		caudal.HumanInput("ask", "?"),
		caudal.AgentStep("after", costly("done", caudal.Usage{PromptTokens: 1}, nil)))))
	res, _, paths := runToEnd(t, caudal.Seq("s", primary), "in", "yes")
	if primaryCalls.Load() != 1 || res.Output != "done" {
		t.Errorf("primary calls %d, output %v; want 1, done", primaryCalls.Load(), res.Output)
	}
	if res.Usage.PromptTokens != 11 {
		t.Errorf("usage = %d tokens; want 11 (the primary's 10 once, the fallback's 1)", res.Usage.PromptTokens)
	}
	if fmt.Sprint(paths) != "[s/primary/backup/ask]" {
		t.Errorf("paused at %v; want [s/primary/backup/ask]", paths)
	}
}

// Defect: "a branch that failed under Ignore before a sibling paused runs
// again".
//
// Before: the parallel frame kept only finished (succeeded) branches and
// the paused one; the failed branch was re-run on resume.
func TestIssue7ResumeSkipsIgnoredBranch(t *testing.T) {
	var badCalls atomic.Int32
	bad := caudal.AgentStep("bad", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		badCalls.Add(1)
		return caudal.Reply{Usage: caudal.Usage{PromptTokens: 3}}, errors.New("broken")
	}))
	step := caudal.Parallel("p",
		caudal.Branch("bad", bad),
		caudal.Branch("ask", caudal.HumanInput("ask", "?")),
		caudal.WithOnBranchFailure(caudal.Ignore))
	res, _, _ := runToEnd(t, step, "in", "yes")
	if badCalls.Load() != 1 || fmt.Sprint(res.Output) != "map[ask:yes]" {
		t.Errorf("bad calls %d, output %v; want 1, map[ask:yes]", badCalls.Load(), res.Output)
	}
	if res.Usage.PromptTokens != 3 {
		t.Errorf("usage = %d tokens; want the failed branch's 3, once", res.Usage.PromptTokens)
	}
}

// Defect: "a top-level Cached step around a pausing sequence stores the
// resumed result under the nil-input key, and a later Execute(ctx, s,
// nil) gets that answer as a cache hit" ("A resumed result is cached (if
// at all) under the key of the original input").
//
// Before: the resumed Execute passed its nil input to the cache step, which
// keyed on it, missed, ran the resumed sequence and stored its result
// under key(nil); a second resume of the same input then hit that entry and
// returned the first human's answer.
func TestIssue7ResumedCacheKey(t *testing.T) {
	t.Run("work done before the pause", func(t *testing.T) {
		// s/work completed before the pause: the resumed run goes back into
		// the cached step and caches its result under key("in"), the run's
		// input, never key(nil).
		cache := newCache(t, 8)
		work := &tally{name: "work"}
		step := mustBuild(t, caudal.Cached(caudal.Seq("s", work.step(), caudal.HumanInput("ask", "?"), caudal.AgentStep("after", echoAgent{})), cache))
		ex := mustNew(t)
		pe := issue7Paused(t, ex, step, "in")
		res, err := issue7Resume(t, ex, step, viaJSON(t, pe.Snapshot), "yes")
		if err != nil || res.Output != "yes" {
			t.Fatalf("resume = %v, %v; want yes", res.Output, err)
		}
		res, err = ex.Execute(t.Context(), step, nil)
		if hit, _ := res.Metadata[caudal.MetaCacheHit].(bool); hit || !errors.Is(err, caudal.ErrPaused) {
			t.Errorf("Execute(nil) after the resume = %v, %v, metadata %v; want a miss that pauses", res.Output, err, res.Metadata)
		}
		res, err = ex.Execute(t.Context(), step, "in")
		if hit, _ := res.Metadata[caudal.MetaCacheHit].(bool); !hit || err != nil || res.Output != "yes" {
			t.Errorf("Execute(in) after the resume = %v, %v, metadata %v; want the resumed result as a hit", res.Output, err, res.Metadata)
		}
		if work.calls.Load() != 2 {
			t.Errorf("work ran %d times; want twice: for the run of \"in\" and the run of nil, not for the resume or the hit", work.calls.Load())
		}
	})
	t.Run("paused first", func(t *testing.T) {
		// Nothing in the cached step completed before the pause: the
		// resumed result is stored under key("in"), never key(nil).
		cache := newCache(t, 8)
		step := mustBuild(t, caudal.Cached(caudal.Seq("s", caudal.HumanInput("ask", "?"), caudal.AgentStep("after", echoAgent{})), cache))
		ex := mustNew(t)
		pe := issue7Paused(t, ex, step, "in")
		if res, err := issue7Resume(t, ex, step, viaJSON(t, pe.Snapshot), "yes"); err != nil || res.Output != "yes" {
			t.Fatalf("resume = %v, %v; want yes", res.Output, err)
		}
		res, err := ex.Execute(t.Context(), step, nil)
		if hit, _ := res.Metadata[caudal.MetaCacheHit].(bool); hit || !errors.Is(err, caudal.ErrPaused) {
			t.Errorf("Execute(nil) after the resume = %v, %v, metadata %v; want a miss that pauses", res.Output, err, res.Metadata)
		}
		res, err = ex.Execute(t.Context(), step, "in")
		if hit, _ := res.Metadata[caudal.MetaCacheHit].(bool); !hit || err != nil || res.Output != "yes" {
			t.Errorf("Execute(in) after the resume = %v, %v, metadata %v; want the resumed result as a hit", res.Output, err, res.Metadata)
		}
	})
	t.Run("two pauses of one input", func(t *testing.T) {
		// Two runs of "in" pause; resuming the first caches its result under
		// key("in"). Resuming the second must deliver its own answer, not
		// serve the first one's from the cache.
		cache := newCache(t, 8)
		step := mustBuild(t, caudal.Cached(caudal.Seq("s", caudal.HumanInput("ask", "?"), caudal.AgentStep("after", echoAgent{})), cache))
		ex := mustNew(t)
		first, second := issue7Paused(t, ex, step, "in"), issue7Paused(t, ex, step, "in")
		if res, err := issue7Resume(t, ex, step, viaJSON(t, first.Snapshot), "first answer"); err != nil || res.Output != "first answer" {
			t.Fatalf("first resume = %v, %v; want first answer", res.Output, err)
		}
		res, err := issue7Resume(t, ex, step, viaJSON(t, second.Snapshot), "second answer")
		if err != nil || res.Output != "second answer" {
			t.Errorf("second resume = %v, %v, metadata %v; want second answer", res.Output, err, res.Metadata)
		}
	})
}

// Defect: "Quadratic build: every node stores its full path (2.6 GB to
// build a pipeline 40,000 deep)".
//
// Before: build.go's compile stored parent + "/" + segment in every node:
// the sum of 40,000 growing paths, ~2.6 GB allocated for the seq row.
// Memory is measured exactly; time only by a watchdog far above a linear
// build's (a few seconds under -race on a busy 2-core machine), which a
// quadratic one exceeds (the seq row: ~450 s under -race, from
// outType's walk down the nested sequences at every level).
func TestIssue7BuildMemoryLinear(t *testing.T) {
	const (
		depth    = 40_000
		limit    = 100 << 20
		watchdog = 30 * time.Second
	)
	leaf := caudal.AgentStep("leaf", echoAgent{})
	always := func(context.Context, any) (string, error) { return "b", nil }
	tests := []struct {
		name string
		wrap func(level int, s caudal.Step) caudal.Step
	}{
		{"parallel/conditional", func(level int, s caudal.Step) caudal.Step {
			// Alternating, so that one chain covers both kinds.
			if level%2 == 0 {
				return caudal.Parallel("level", caudal.Branch("b", s))
			}
			return caudal.Conditional("level", always, caudal.Branch("b", s))
		}},
		// Last: while outType is quadratic, its Build outlives the watchdog.
		{"seq", func(_ int, s caudal.Step) caudal.Step { return caudal.Seq("level", s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := leaf
			for level := range depth {
				s = tt.wrap(level, s)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				built, err := caudal.Build(s)
				runtime.ReadMemStats(&after)
				if err == nil && !built.Built() {
					err = errors.New("not built")
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Build = %v; want success", err)
				}
			case <-time.After(watchdog):
				// The goroutine is left behind: the process is failing anyway.
				t.Fatalf("Build of %s %d deep still running after %v: build time grows faster than linearly", tt.name, depth, watchdog)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("Build of %s %d deep: %.1f MB allocated in %v", tt.name, depth, float64(alloc)/(1<<20), time.Since(start).Round(time.Millisecond))
			if alloc > limit {
				t.Errorf("Build of %s %d deep allocated %d MB; want < %d MB", tt.name, depth, alloc>>20, limit>>20)
			}
		})
	}
}
