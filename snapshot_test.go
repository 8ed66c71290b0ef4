package caudal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/caudal-go/caudal"
)

// snapLog counts agent calls by agent name (fzCalls, of the fuzz test) and
// makes the agents that count. It is safe for concurrent use.
type snapLog struct{ fzCalls }

func (c *snapLog) agent(name string, fn func(ctx context.Context, in any, call int) (any, error), opts ...caudal.StepOption) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		out, err := fn(ctx, in, c.add(name))
		return caudal.Reply{Output: out, Usage: caudal.Usage{PromptTokens: 1}}, err
	}), opts...)
}

// work makes a counted step that records its input in the state, under
// "name:input", and outputs "name(input)".
func (c *snapLog) work(name string) caudal.Step {
	return c.agent(name, func(ctx context.Context, in any, _ int) (any, error) {
		if st := caudal.StateFrom(ctx); st != nil {
			st.Set(fmt.Sprintf("%s:%v", name, in), true)
		}
		return fmt.Sprintf("%s(%v)", name, in), nil
	})
}

// pass makes a counted step that sets name in the state and outputs its
// input unchanged.
func (c *snapLog) pass(name string) caudal.Step {
	return c.agent(name, func(ctx context.Context, in any, _ int) (any, error) {
		if st := caudal.StateFrom(ctx); st != nil {
			st.Set(name, true)
		}
		return in, nil
	})
}

// broken makes a counted step that always fails.
func (c *snapLog) broken(name string) caudal.Step {
	return c.agent(name, func(context.Context, any, int) (any, error) { return nil, errors.New(name + " down") })
}

// snapAnswer is the answer a human gives at the human-input step named
// name, in a resumed run and in the reference run alike.
func snapAnswer(name string) string { return "ans-" + name }

// snapHuman makes a human-input step.
func snapHuman(name string) caudal.Step { return caudal.HumanInput(name, "?") }

// snapFakeHuman makes an agent step standing in for the human-input step name:
// it outputs the answer the human would give.
func snapFakeHuman(name string) caudal.Step {
	return caudal.AgentStep(name, costly(snapAnswer(name), caudal.Usage{}, nil))
}

// snapJSON returns v's JSON encoding, so that values compare whether or
// not they went through a snapshot (1 and 1.0 alike).
func snapJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%v): %v", v, err)
	}
	return string(b)
}

// snapAnswerAll executes step from a state holding initial and, while the
// run pauses, resumes it from its snapshot, sent through JSON, with the
// answer of the paused step (snapAnswer). It returns the final result,
// the final state, the paths paused at and the final error.
func snapAnswerAll(t *testing.T, ex *caudal.Executor, step caudal.Step, in any, initial map[string]any) (caudal.StepResult, *caudal.State, []string, error) {
	t.Helper()
	st := caudal.NewState(maps.Clone(initial))
	res, err := ex.Execute(t.Context(), step, in, caudal.WithState(st))
	var pauses []string
	for pe, ok := errors.AsType[*caudal.PausedError](err); ok; pe, ok = errors.AsType[*caudal.PausedError](err) {
		if len(pauses) == 10 {
			t.Fatalf("still pausing after %v", pauses)
		}
		pauses = append(pauses, pe.Path)
		name := pe.Path[strings.LastIndexByte(pe.Path, '/')+1:]
		st = caudal.NewState(nil)
		res, err = ex.Execute(t.Context(), step, nil, caudal.WithState(st), caudal.WithResume(viaJSON(t, pe.Snapshot), snapAnswer(name)))
	}
	return res, st, pauses, err
}

// snapRoundsDone is a loop exit condition: the state's "rounds" reached 2.
func snapRoundsDone(ctx context.Context, _ any) (bool, error) {
	return fzNumber(caudal.StateFrom(ctx), "rounds") >= 2, nil
}

// TestSnapshotRoundTrip pauses inside every construct, resumes through a
// JSON round trip until the run completes, and compares with a reference
// run in which the human-input steps are agents giving the same answers:
// the same output, the same state, and the same number of calls of every
// agent — no completed step ran twice.
func TestSnapshotRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		give       func(c *snapLog, human func(name string) caudal.Step) caudal.Step
		wantPauses string
	}{
		{
			name: "loop",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				round := c.agent("round", func(ctx context.Context, in any, _ int) (any, error) {
					st := caudal.StateFrom(ctx)
					st.Set("rounds", fzNumber(st, "rounds")+1)
					return fmt.Sprintf("round(%v)", in), nil
				})
				return caudal.Loop("loop", caudal.Seq("body", round, human("review")),
					caudal.WithExitCondition(snapRoundsDone), caudal.WithMaxIterations(3))
			},
			wantPauses: "[root/loop#1/body/review root/loop#2/body/review]",
		},
		{
			name: "sequential map",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				return caudal.Map("m", caudal.Seq("item", c.work("w"), human("check")))
			},
			wantPauses: "[root/m[0]/item/check root/m[1]/item/check]",
		},
		{
			name: "concurrent map, two items paused",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				return caudal.Map("m", caudal.Seq("item", c.work("w"), human("check")), caudal.WithConcurrency(2))
			},
			wantPauses: "[root/m[0]/item/check root/m[1]/item/check]",
		},
		{
			name: "conditional branch",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				key := func(context.Context, any) (string, error) {
					c.add("key")
					return "ask", nil
				}
				return caudal.Conditional("c", key,
					caudal.Branch("ask", caudal.Seq("s", c.work("w"), human("confirm"))),
					caudal.Branch("skip", c.work("skip")))
			},
			wantPauses: "[root/c/ask/confirm]",
		},
		{
			name: "parallel, two branches paused",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				return caudal.Parallel("p",
					caudal.Branch("x", caudal.Seq("sx", c.work("wx"), human("hx"))),
					caudal.Branch("y", caudal.Seq("sy", c.work("wy"), human("hy"))),
					caudal.Branch("z", c.work("wz")),
					caudal.WithMerge(caudal.ContextUpdate))
			},
			wantPauses: "[root/p/x/hx root/p/y/hy]",
		},
		{
			name: "parallel ignoring a failed branch, two pauses in a branch",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				return caudal.Parallel("p",
					caudal.Branch("bad", c.broken("bad")),
					caudal.Branch("h", caudal.Seq("s", human("h1"), c.work("w"), human("h2"))),
					caudal.WithMerge(caudal.ContextUpdate), caudal.WithOnBranchFailure(caudal.Ignore))
			},
			wantPauses: "[root/p/h/h1 root/p/h/h2]",
		},
		{
			name: "router branch",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				pick := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
					c.add("pick")
					return caudal.Reply{Output: []string{"auto", "manual"}}, nil
				})
				return caudal.Router("r", pick,
					caudal.Branch("auto", c.work("auto")),
					caudal.Branch("manual", caudal.Seq("s", c.work("prep"), human("ask"))),
					caudal.Branch("unused", c.work("unused")),
					caudal.WithMerge(caudal.ContextUpdate))
			},
			wantPauses: "[root/r/manual/ask]",
		},
		{
			name: "fallback",
			give: func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				return c.agent("primary", func(context.Context, any, int) (any, error) { return nil, errors.New("primary down") },
					caudal.WithRetries(1), caudal.WithBackoff(0, 0),
					caudal.WithFallback(caudal.Seq("fb", c.work("backup"), human("confirm"))))
			},
			wantPauses: "[root/primary/fb/confirm]",
		},
	}
	initial := map[string]any{"base": "v"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pipeline := func(c *snapLog, human func(string) caudal.Step) caudal.Step {
				return caudal.Seq("root", c.pass("before"), tt.give(c, human), c.work("after"))
			}
			var refLog snapLog
			refState := caudal.NewState(maps.Clone(initial))
			ref, err := mustNew(t).Execute(t.Context(), mustBuild(t, pipeline(&refLog, snapFakeHuman)), []any{"x", "y"}, caudal.WithState(refState))
			if err != nil {
				t.Fatalf("reference Execute = %v", err)
			}

			var log snapLog
			res, st, pauses, err := snapAnswerAll(t, mustNew(t), mustBuild(t, pipeline(&log, snapHuman)), []any{"x", "y"}, initial)
			if err != nil {
				t.Fatalf("Execute after pauses %v = %v; want success", pauses, err)
			}
			if got := fmt.Sprint(pauses); got != tt.wantPauses {
				t.Errorf("paused at %s; want %s", got, tt.wantPauses)
			}
			if got, want := snapJSON(t, res.Output), snapJSON(t, ref.Output); got != want {
				t.Errorf("output = %s; want the reference's %s", got, want)
			}
			if got, want := snapJSON(t, stateMap(st)), snapJSON(t, stateMap(refState)); got != want {
				t.Errorf("state = %s; want the reference's %s", got, want)
			}
			if got, want := fmt.Sprint(log.snapshot()), fmt.Sprint(refLog.snapshot()); got != want {
				t.Errorf("agent calls = %s; want the reference's %s", got, want)
			}
		})
	}
}

// snapNoMutationPipeline builds a pipeline that pauses at one item of a
// concurrent map while the others complete, whose steps change a nested
// state value in place, from an initial state that holds one.
func snapNoMutationPipeline(c *snapLog) caudal.Step {
	touch := func(name string) caudal.Step {
		return c.agent(name, func(ctx context.Context, in any, _ int) (any, error) {
			doc, _ := caudal.Get[map[string]any](caudal.StateFrom(ctx), "doc")
			doc[fmt.Sprint(name, ":", in)] = in // in place, in the value Get returned
			if name == "first" {
				return in, nil
			}
			return fmt.Sprintf("%s(%v)", name, in), nil
		})
	}
	item := caudal.Conditional("route", func(_ context.Context, in any) (string, error) {
		if in == "y" {
			return "ask", nil
		}
		return "auto", nil
	},
		caudal.Branch("ask", caudal.Seq("s", touch("w"), caudal.HumanInput("check", "?"), touch("after"))),
		caudal.Branch("auto", touch("auto")))
	return caudal.Seq("root", touch("first"), caudal.Map("m", item, caudal.WithConcurrency(3)), c.work("last"))
}

// TestSnapshotResumeDoesNotMutate resumes one snapshot — the one Execute
// returned, not a copy — several times, in turn and concurrently: its JSON
// is the same after as before, every resume gives the same result and
// calls only the agents that had not completed before the pause.
func TestSnapshotResumeDoesNotMutate(t *testing.T) {
	var log snapLog
	ex := mustNew(t)
	step := mustBuild(t, snapNoMutationPipeline(&log))
	initial := func() *caudal.State {
		return caudal.NewState(map[string]any{"doc": map[string]any{"title": "t"}})
	}
	_, err := ex.Execute(t.Context(), step, []any{"x", "y", "z"}, caudal.WithState(initial()))
	pe, ok := errors.AsType[*caudal.PausedError](err)
	if !ok || pe.Path != "root/m[1]/route/ask/check" {
		t.Fatalf("Execute = %v; want a pause at root/m[1]/route/ask/check", err)
	}
	snap := pe.Snapshot
	before := snapJSON(t, snap)
	paused := log.snapshot()

	// resume resumes snap on step, built with log, and returns its output
	// and state, as JSON.
	resume := func(step caudal.Step) (string, error) {
		st := caudal.NewState(nil)
		res, err := ex.Execute(t.Context(), step, nil, caudal.WithState(st), caudal.WithResume(snap, "yes"))
		out, _ := json.Marshal(res.Output)
		state, _ := json.Marshal(stateMap(st))
		return string(out) + " " + string(state), err
	}
	var log1, log2 snapLog
	first, err := resume(mustBuild(t, snapNoMutationPipeline(&log1)))
	if err != nil {
		t.Fatalf("resumed Execute = %v", err)
	}
	calls := fmt.Sprint(log1.snapshot())
	if calls != "map[after:1 last:1]" {
		t.Errorf("a resume called %s (before the pause: %v); want only the steps after the pause, once", calls, paused)
	}
	second, err := resume(mustBuild(t, snapNoMutationPipeline(&log2)))
	if err != nil || second != first || fmt.Sprint(log2.snapshot()) != calls {
		t.Errorf("second resume = %s, %v, calls %v; want the first's %s, calls %v", second, err, log2.snapshot(), first, calls)
	}
	if after := snapJSON(t, snap); after != before {
		t.Errorf("snapshot after two resumes:\n%s\nwant it unchanged:\n%s", after, before)
	}

	const n = 20
	logs := make([]snapLog, n)
	steps := make([]caudal.Step, n)
	for i := range n {
		steps[i] = mustBuild(t, snapNoMutationPipeline(&logs[i]))
	}
	results := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = resume(steps[i]) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || results[i] != first || fmt.Sprint(logs[i].snapshot()) != calls {
			t.Errorf("concurrent resume %d = %s, %v, calls %v; want %s, calls %v", i, results[i], errs[i], logs[i].snapshot(), first, calls)
		}
	}
	if after := snapJSON(t, snap); after != before {
		t.Errorf("snapshot after concurrent resumes:\n%s\nwant it unchanged:\n%s", after, before)
	}
}

// errSnapCrash is what a step returns when the process "crashes" during it.
var errSnapCrash = errors.New("crash")

// snapRecords is a Checkpointer keeping JSON copies of the records it
// receives, as a runner persisting them would. It is safe for concurrent
// use.
type snapRecords struct {
	mu      sync.Mutex // protects records
	records []caudal.Record
}

func (s *snapRecords) Checkpoint(_ context.Context, rec caudal.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var back caudal.Record
	if err := json.Unmarshal(b, &back); err != nil {
		return err
	}
	s.mu.Lock()
	s.records = append(s.records, back)
	s.mu.Unlock()
	return nil
}

// TestSnapshotCheckpointCrashRecovery crashes a run at its third step —
// after a pause, in one case — and resumes it from a checkpoint assembled
// from the records its Checkpointer received: the completed steps do not
// run again, the crashed one does, and the result is a clean run's.
func TestSnapshotCheckpointCrashRecovery(t *testing.T) {
	tests := []struct {
		name string
		// give builds the pipeline; crash is its third step.
		give func(c *snapLog, crash caudal.Step) caudal.Step
	}{
		{
			name: "sequence",
			give: func(c *snapLog, crash caudal.Step) caudal.Step {
				return caudal.Seq("job", c.work("s1"), c.work("s2"), crash, c.work("s4"))
			},
		},
		{
			name: "after a pause in a parallel step that ignored a failure",
			give: func(c *snapLog, crash caudal.Step) caudal.Step {
				return caudal.Seq("job", c.work("s1"),
					caudal.Parallel("s2",
						caudal.Branch("bad", c.broken("bad")),
						caudal.Branch("h", caudal.Seq("s", caudal.HumanInput("approve", "?"), c.work("w"))),
						caudal.WithOnBranchFailure(caudal.Ignore), caudal.WithMerge(caudal.ContextUpdate)),
					crash, c.work("s4"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A clean run, for reference.
			clean := func(c *snapLog) caudal.Step {
				return tt.give(c, c.work("s3"))
			}
			wantRes, wantState, _, wantErr := snapAnswerAll(t, mustNew(t), mustBuild(t, clean(&snapLog{})), "in", map[string]any{"base": 1.0})
			if wantErr != nil {
				t.Fatalf("clean run = %v", wantErr)
			}

			var log snapLog
			crash := log.agent("s3", func(ctx context.Context, in any, call int) (any, error) {
				if call == 1 {
					return nil, errSnapCrash
				}
				caudal.StateFrom(ctx).Set(fmt.Sprintf("s3:%v", in), true)
				return fmt.Sprintf("s3(%v)", in), nil
			})
			var cp snapRecords
			ex := mustNew(t, caudal.WithCheckpointer(&cp))
			step := mustBuild(t, tt.give(&log, crash))
			_, _, _, err := snapAnswerAll(t, ex, step, "in", map[string]any{"base": 1.0})
			if !errors.Is(err, errSnapCrash) {
				t.Fatalf("Execute = %v; want the crash", err)
			}
			completed := log.snapshot()
			delete(completed, "s3")

			snap := &caudal.Snapshot{
				Version: caudal.SnapshotVersion, Fingerprint: step.Fingerprint(),
				Input: "in", State: map[string]any{"base": 1.0}, Journal: cp.records,
			}
			st := caudal.NewState(nil)
			res, err := mustNew(t).Execute(t.Context(), step, nil, caudal.WithState(st), caudal.WithResume(viaJSON(t, snap), nil))
			if err != nil {
				t.Fatalf("Execute from the checkpoint = %v; want success", err)
			}
			calls := log.snapshot()
			for name, n := range completed {
				if calls[name] != n {
					t.Errorf("%s called %d times after the recovery, %d before; want no new call", name, calls[name], n)
				}
			}
			if calls["s3"] != 2 || calls["s4"] != 1 {
				t.Errorf("calls s3=%d s4=%d; want 2 (the crash, then the recovery) and 1", calls["s3"], calls["s4"])
			}
			if got, want := snapJSON(t, res.Output), snapJSON(t, wantRes.Output); got != want {
				t.Errorf("output = %s; want a clean run's %s", got, want)
			}
			if got, want := snapJSON(t, stateMap(st)), snapJSON(t, stateMap(wantState)); got != want {
				t.Errorf("state = %s; want a clean run's %s", got, want)
			}
		})
	}
}

// TestSnapshotCheckpointTakesNoAnswer resumes a checkpoint with an answer:
// a mismatch, before any step runs.
func TestSnapshotCheckpointTakesNoAnswer(t *testing.T) {
	var log snapLog
	var cp snapRecords
	step := mustBuild(t, caudal.Seq("job", log.work("s1"), log.broken("s2")))
	if _, err := mustNew(t, caudal.WithCheckpointer(&cp)).Execute(t.Context(), step, "in"); err == nil {
		t.Fatal("Execute succeeded; want s2's failure")
	}
	snap := &caudal.Snapshot{Version: caudal.SnapshotVersion, Fingerprint: step.Fingerprint(), Input: "in", Journal: cp.records}
	before := fmt.Sprint(log.snapshot())
	_, err := mustNew(t).Execute(t.Context(), step, nil, caudal.WithResume(snap, "an answer"))
	if !errors.Is(err, caudal.ErrSnapshotMismatch) {
		t.Errorf("Execute(checkpoint, answer) = %v; want ErrSnapshotMismatch", err)
	}
	if after := fmt.Sprint(log.snapshot()); after != before {
		t.Errorf("calls %s after the refused resume, %s before; want none", after, before)
	}
}

// TestSnapshotSecondPause resumes a run that then pauses at a second
// human-input step: its new snapshot resumes to the end, and every step
// ran once.
func TestSnapshotSecondPause(t *testing.T) {
	var log snapLog
	ex := mustNew(t)
	step := mustBuild(t, caudal.Seq("s", log.work("a"), caudal.HumanInput("h1", "first?"), log.work("b"), caudal.HumanInput("h2", "second?"), log.work("c")))
	_, err := ex.Execute(t.Context(), step, "in")
	pe1, ok := errors.AsType[*caudal.PausedError](err)
	if !ok || pe1.Path != "s/h1" {
		t.Fatalf("Execute = %v; want a pause at s/h1", err)
	}
	first := snapJSON(t, pe1.Snapshot)
	_, err = ex.Execute(t.Context(), step, nil, caudal.WithResume(viaJSON(t, pe1.Snapshot), "one"))
	pe2, ok := errors.AsType[*caudal.PausedError](err)
	if !ok || pe2.Path != "s/h2" || pe2.Snapshot.Path != "s/h2" || pe2.Message != "second?" {
		t.Fatalf("resumed Execute = %v; want a pause at s/h2 with its own snapshot", err)
	}
	if snapJSON(t, pe1.Snapshot) != first {
		t.Error("the second pause changed the first snapshot")
	}
	res, err := ex.Execute(t.Context(), step, nil, caudal.WithResume(viaJSON(t, pe2.Snapshot), "two"))
	if err != nil || res.Output != "c(two)" {
		t.Errorf("second resume = %v, %v; want c(two)", res.Output, err)
	}
	if got := fmt.Sprint(log.snapshot()); got != "map[a:1 b:1 c:1]" {
		t.Errorf("calls = %s; want each step once", got)
	}
	if len(res.Children) != 5 || res.Children[2].Output != "b(one)" {
		t.Errorf("children = %+v; want all five, b with the first answer", res.Children)
	}
}

// snapOrder is an input whose JSON field order is not alphabetical: a
// snapshot's round trip turns it into a map, whose JSON sorts its keys.
type snapOrder struct {
	Zeta  string `json:"zeta"`
	Alpha int    `json:"alpha"`
}

// snapPauseInCache pauses inside a cached step on input in and resumes
// it from the snapshot, sent through JSON: it returns the executor, the
// step and its agent for more executions.
func snapPauseInCache(t *testing.T, in any) (*caudal.Executor, caudal.Step, *counting) {
	t.Helper()
	agent := &counting{}
	ex := mustNew(t)
	step := mustBuild(t, caudal.Cached(caudal.Seq("s", caudal.AgentStep("ask", agent), caudal.HumanInput("h", "?")), newCache(t, 8)))
	_, err := ex.Execute(t.Context(), step, in)
	pe, ok := errors.AsType[*caudal.PausedError](err)
	if !ok {
		t.Fatalf("Execute = %v; want a pause", err)
	}
	res, err := ex.Execute(t.Context(), step, nil, caudal.WithResume(viaJSON(t, pe.Snapshot), "yes"))
	if err != nil || res.Output != "yes" {
		t.Fatalf("resumed Execute = %v, %v; want yes", res.Output, err)
	}
	return ex, step, agent
}

// snapCacheInputs are inputs of a cached step that pauses: one whose JSON
// round trip keeps its encoding, and values a round trip changes the Go
// type of.
var snapCacheInputs = []struct {
	name string
	give any
}{
	{"string input", "orig"},
	{"map input", map[string]any{"n": 1, "list": []any{"a", 2}}},
	{"struct input", snapOrder{Zeta: "z", Alpha: 1}},
}

// TestSnapshotResumedResultNotCachedUnderNilKey pauses inside a cached step
// and resumes it (Execute's input argument is then nil): a later execution
// on a nil input misses, runs the step and pauses.
func TestSnapshotResumedResultNotCachedUnderNilKey(t *testing.T) {
	for _, tt := range snapCacheInputs {
		t.Run(tt.name, func(t *testing.T) {
			ex, step, agent := snapPauseInCache(t, tt.give)
			calls := agent.calls
			res, err := ex.Execute(t.Context(), step, nil)
			if !errors.Is(err, caudal.ErrPaused) || res.Metadata[caudal.MetaCacheHit] != false || agent.calls != calls+1 {
				t.Errorf("Execute(nil) = %v, %v, cache_hit %v, agent calls %d; want a miss that runs the agent and pauses",
					res.Output, err, res.Metadata[caudal.MetaCacheHit], agent.calls)
			}
		})
	}
}

// TestSnapshotResumedResultCachedUnderOriginalKey pauses inside a cached
// step and resumes it from a persisted snapshot: the result is cached under
// the key of the original input, so executing on that input again is a hit
// that calls nothing.
func TestSnapshotResumedResultCachedUnderOriginalKey(t *testing.T) {
	for _, tt := range snapCacheInputs {
		t.Run(tt.name, func(t *testing.T) {
			ex, step, agent := snapPauseInCache(t, tt.give)
			res, err := ex.Execute(t.Context(), step, tt.give)
			if err != nil || res.Metadata[caudal.MetaCacheHit] != true || res.Output != "yes" || agent.calls != 1 {
				t.Errorf("Execute(original input) = %v, %v, cache_hit %v, agent calls %d; want a hit on the resumed result, 1 call",
					res.Output, err, res.Metadata[caudal.MetaCacheHit], agent.calls)
			}
		})
	}
}

// TestSnapshotJournalUsageOverflow resumes a snapshot whose records each
// claim a valid but huge usage: the resume is refused, or reports a usage
// that is finite, non-negative and encodes — never one summed past int64
// into negative tokens, or into an infinite cost.
func TestSnapshotJournalUsageOverflow(t *testing.T) {
	var log snapLog
	ex := mustNew(t)
	step := mustBuild(t, caudal.Seq("s", log.work("a"), log.work("b"), caudal.HumanInput("h", "?")))
	_, err := ex.Execute(t.Context(), step, "in")
	pe, ok := errors.AsType[*caudal.PausedError](err)
	if !ok {
		t.Fatalf("Execute = %v; want a pause", err)
	}
	snap := viaJSON(t, pe.Snapshot)
	for i := range snap.Journal {
		snap.Journal[i].Usage = caudal.Usage{PromptTokens: math.MaxInt64, CostUSD: math.MaxFloat64}
	}
	res, err := ex.Execute(t.Context(), step, nil, caudal.WithResume(snap, "yes"))
	if errors.Is(err, caudal.ErrSnapshotMismatch) {
		return
	}
	u := res.Usage
	if _, jerr := json.Marshal(res); u.PromptTokens < 0 || math.IsInf(u.CostUSD, 0) || jerr != nil {
		t.Errorf("Execute = %v, usage %+v (encodes: %v); want ErrSnapshotMismatch, or a finite, non-negative usage", err, u, jerr)
	}
}
