package caudal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caudal-go/caudal"
)

// tally is a step that counts its calls, writes its name into the state
// and outputs "<name>(<input>)".
type tally struct {
	name  string
	calls atomic.Int32
}

func (c *tally) step() caudal.Step {
	return caudal.AgentStep(c.name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		c.calls.Add(1)
		if st := caudal.StateFrom(ctx); st != nil {
			st.Set(c.name, true)
		}
		return caudal.Reply{Output: fmt.Sprintf("%s(%v)", c.name, in), Usage: caudal.Usage{PromptTokens: 1}}, nil
	}))
}

// viaJSON sends a snapshot through encoding/json, as a runner persisting it would.
func viaJSON(t *testing.T, s *caudal.Snapshot) *caudal.Snapshot {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("Marshal(snapshot): %v", err)
	}
	var back caudal.Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(snapshot): %v", err)
	}
	return &back
}

// runToEnd executes step, answering every pause with answers in turn.
func runToEnd(t *testing.T, step caudal.Step, in any, answers ...any) (caudal.StepResult, *caudal.State, []string) {
	t.Helper()
	ex := mustNew(t)
	built := mustBuild(t, step)
	st := caudal.NewState(nil)
	res, err := ex.Execute(t.Context(), built, in, caudal.WithState(st))
	var paths []string
	for _, a := range answers {
		var pe *caudal.PausedError
		if !errors.As(err, &pe) || !errors.Is(err, caudal.ErrPaused) {
			t.Fatalf("Execute = %+v, %v; want a pause before answering %v", res, err, a)
		}
		paths = append(paths, pe.Path)
		st = caudal.NewState(nil)
		res, err = ex.Execute(t.Context(), built, nil, caudal.WithState(st), caudal.WithResume(viaJSON(t, pe.Snapshot), a))
	}
	if err != nil {
		t.Fatalf("final Execute = %+v, %v; want success", res, err)
	}
	return res, st, paths
}

func TestPauseTopLevel(t *testing.T) {
	step := caudal.HumanInput("approve", "Approve the draft?", caudal.WithSchema(map[string]any{"type": "string"}))
	ex := mustNew(t)
	built := mustBuild(t, step)
	res, err := ex.Execute(t.Context(), built, "draft", caudal.WithRunID("r1"))
	var pe *caudal.PausedError
	if !errors.As(err, &pe) || pe.Message != "Approve the draft?" || pe.Path != "approve" || fmt.Sprint(pe.Schema) != "map[type:string]" {
		t.Fatalf("Execute = %v; want a PausedError with message, path and schema", err)
	}
	if res.Success || pe.Snapshot.RunID != "r1" {
		t.Errorf("result %+v, snapshot run ID %q; want a failed result and r1", res, pe.Snapshot.RunID)
	}
	res, err = ex.Execute(t.Context(), built, nil, caudal.WithResume(viaJSON(t, pe.Snapshot), "yes"))
	if err != nil || res.Output != "yes" {
		t.Errorf("resumed Execute = %v, %v; want the human's answer", res.Output, err)
	}
}

func TestPauseMessageDefaultsToInput(t *testing.T) {
	_, err := execute(t, mustNew(t), caudal.HumanInput("ask", ""), "what now?")
	if pe := new(caudal.PausedError); !errors.As(err, &pe) || pe.Message != "what now?" {
		t.Errorf("err = %v; want the input as the message", err)
	}
}

func TestPauseResumeInSequence(t *testing.T) {
	a, b := &tally{name: "a"}, &tally{name: "b"}
	step := caudal.Seq("s", a.step(), caudal.HumanInput("ask", "ok?"), b.step())
	res, st, paths := runToEnd(t, step, "x", "yes")
	if res.Output != "b(yes)" || a.calls.Load() != 1 || b.calls.Load() != 1 {
		t.Errorf("output %v, calls a=%d b=%d; want b(yes), each once", res.Output, a.calls.Load(), b.calls.Load())
	}
	if len(res.Children) != 3 || res.Children[0].Output != "a(x)" || res.Usage.PromptTokens != 2 {
		t.Errorf("children %+v usage %+v; want a's finished result kept and both usages", res.Children, res.Usage)
	}
	if _, ok := caudal.Get[bool](st, "a"); !ok {
		t.Error("state lost a's write across the pause")
	}
	if fmt.Sprint(paths) != "[s/ask]" {
		t.Errorf("paused at %v; want [s/ask]", paths)
	}
}

func TestPauseResumeInLoop(t *testing.T) {
	work := &tally{name: "work"}
	body := caudal.Seq("body", work.step(), caudal.HumanInput("review", "again?"))
	step := caudal.Loop("loop", body, caudal.WithExitCondition(func(_ context.Context, out any) (bool, error) {
		return out == "stop", nil
	}), caudal.WithMaxIterations(5))
	res, st, paths := runToEnd(t, step, "start", "go on", "stop")
	if res.Output != "stop" || work.calls.Load() != 2 || res.Attempts != 2 {
		t.Errorf("output %v, work calls %d, iterations %d; want stop, 2, 2", res.Output, work.calls.Load(), res.Attempts)
	}
	if _, ok := caudal.Get[bool](st, "work"); !ok {
		t.Error("the iteration's write was lost across the pause")
	}
	if fmt.Sprint(paths) != "[loop#1/body/review loop#2/body/review]" {
		t.Errorf("paused at %v", paths)
	}
}

func TestPauseResumeInConditional(t *testing.T) {
	var keyCalls atomic.Int32
	after := &tally{name: "after"}
	step := caudal.Conditional("c", func(context.Context, any) (string, error) {
		keyCalls.Add(1)
		return "review", nil
	}, caudal.Branch("review", caudal.Seq("r", caudal.HumanInput("ask", "?"), after.step())), caudal.Branch("skip", constant("S")))
	res, _, _ := runToEnd(t, step, "x", "fine")
	if res.Output != "after(fine)" || keyCalls.Load() != 1 {
		t.Errorf("output %v, key calls %d; want after(fine), the key computed once", res.Output, keyCalls.Load())
	}
}

func TestPauseResumeInParallel(t *testing.T) {
	fast, slow := &tally{name: "fast"}, &tally{name: "slow"}
	step := caudal.Parallel("p",
		caudal.Branch("fast", fast.step()),
		caudal.Branch("ask", caudal.Seq("s", slow.step(), caudal.HumanInput("approve", "?"))),
		caudal.WithMerge(caudal.ContextUpdate))
	res, st, paths := runToEnd(t, step, "in", "approved")
	if fast.calls.Load() != 1 || slow.calls.Load() != 1 {
		t.Errorf("calls fast=%d slow=%d; want each once", fast.calls.Load(), slow.calls.Load())
	}
	if fmt.Sprint(res.Output) != "map[ask:approved fast:fast(in)]" {
		t.Errorf("output = %v; want both branches", res.Output)
	}
	for _, k := range []string{"fast", "slow"} {
		if _, ok := caudal.Get[bool](st, k); !ok {
			t.Errorf("state lacks %s's write after the merge", k)
		}
	}
	if fmt.Sprint(paths) != "[p/ask/approve]" {
		t.Errorf("paused at %v", paths)
	}
}

func TestPauseResumeInMap(t *testing.T) {
	work := &tally{name: "work"}
	body := caudal.Seq("item", work.step(), caudal.HumanInput("check", "?"))
	for _, conc := range []int{1, 3} {
		t.Run(fmt.Sprint("concurrency=", conc), func(t *testing.T) {
			work.calls.Store(0)
			res, _, paths := runToEnd(t, caudal.Map("m", body, caudal.WithConcurrency(conc)), []any{"x", "y"}, "A", "B")
			if fmt.Sprint(res.Output) != "[A B]" || work.calls.Load() != 2 {
				t.Errorf("output %v, work calls %d; want [A B], one call per item", res.Output, work.calls.Load())
			}
			if len(paths) != 2 {
				t.Errorf("pauses = %v; want one per item", paths)
			}
		})
	}
}

func TestResumeWrongStep(t *testing.T) {
	ex := mustNew(t)
	_, err := ex.Execute(t.Context(), mustBuild(t, caudal.Seq("s", caudal.HumanInput("ask", "?"))), nil)
	pe := new(caudal.PausedError)
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	_, err = ex.Execute(t.Context(), mustBuild(t, constant("other")), nil, caudal.WithResume(pe.Snapshot, "x"))
	if !errors.Is(err, caudal.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "another pipeline") {
		t.Errorf("resume on another step = %v; want ErrSnapshotMismatch", err)
	}
	_, err = ex.Execute(t.Context(), mustBuild(t, constant("other")), nil, caudal.WithResume(&caudal.Snapshot{Version: 99, Path: "x"}, "x"))
	if !errors.Is(err, caudal.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "snapshot version 99") {
		t.Errorf("resume with a bad version = %v; want ErrSnapshotMismatch naming the version", err)
	}
}

func TestPauseIsNotRetriedOrFallenBack(t *testing.T) {
	backup := &tally{name: "backup"}
	step := caudal.Seq("s", caudal.HumanInput("ask", "?"))
	_, err := execute(t, mustNew(t), caudal.Seq("outer", step, backup.step()), nil)
	if !errors.Is(err, caudal.ErrPaused) || backup.calls.Load() != 0 {
		t.Errorf("err = %v, backup calls %d; want the pause and nothing after it", err, backup.calls.Load())
	}
}

func TestPauseResumeInRouter(t *testing.T) {
	var picks atomic.Int32
	pick := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		picks.Add(1)
		return caudal.Reply{Output: []string{"auto", "manual"}}, nil
	})
	auto := &tally{name: "auto"}
	step := caudal.Router("route", pick,
		caudal.Branch("auto", auto.step()),
		caudal.Branch("manual", caudal.HumanInput("ask", "?")),
		caudal.Branch("unused", constant("U")))
	res, _, _ := runToEnd(t, step, "in", "by hand")
	if fmt.Sprint(res.Output) != "map[auto:auto(in) manual:by hand]" || picks.Load() != 1 || auto.calls.Load() != 1 {
		t.Errorf("output %v, picks %d, auto calls %d; want both branches, the router and auto run once", res.Output, picks.Load(), auto.calls.Load())
	}
}

// order is a typed payload that goes through a snapshot as JSON.
type order struct {
	ID    string `json:"id"`
	Items int    `json:"items"`
}

func TestPauseResumeTypedInput(t *testing.T) {
	// The human's answer arrives as decoded JSON (a map), as it would from a
	// web form; the typed step converts it to an order.
	var seen []order
	check := caudal.Func("check", func(_ context.Context, o order) (order, error) {
		seen = append(seen, o)
		o.Items++
		return o, nil
	})
	step := caudal.Loop("l", caudal.Seq("body", caudal.HumanInput("ok", "continue?"), check), caudal.WithMaxIterations(1))
	res, _, _ := runToEnd(t, step, order{ID: "A-1", Items: 2}, map[string]any{"id": "A-1", "items": 2.0})
	if fmt.Sprint(seen) != "[{A-1 2}]" || res.Output != (order{ID: "A-1", Items: 3}) {
		t.Errorf("seen %v, output %v; want the typed order converted back", seen, res.Output)
	}
}

func TestResumeKeepsConstructInputs(t *testing.T) {
	// Top-level constructs get no input on resume: they must take it from
	// their frame.
	echo := func(name string) caudal.Step { return caudal.AgentStep(name, echoAgent{}) }
	tests := []struct {
		name string
		give caudal.Step
		want string
	}{
		{
			"parallel", caudal.Parallel("p", caudal.Branch("ask", caudal.HumanInput("ask", "?")), caudal.Branch("echo", caudal.Seq("s", caudal.HumanInput("wait", "?"), echo("e")))),
			"map[ask:first echo:second]",
		},
		{
			"conditional", caudal.Conditional("c", func(context.Context, any) (string, error) { return "x", nil },
				caudal.Branch("x", caudal.Parallel("p", caudal.Branch("ask", caudal.HumanInput("ask", "?")), caudal.Branch("echo", echo("e"))))),
			"map[ask:first echo:orig]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answers := []any{"first", "second"}
			if tt.name == "conditional" {
				answers = answers[:1]
			}
			res, _, _ := runToEnd(t, tt.give, "orig", answers...)
			if fmt.Sprint(res.Output) != tt.want {
				t.Errorf("output = %v; want %s", res.Output, tt.want)
			}
		})
	}
}
