package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/caudaltest"
)

// writer makes a step that sets the given keys in its state after sleeping
// d (so completion order differs from declaration order), then outputs out.
func writer(name string, d time.Duration, out any, kv map[string]any) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		time.Sleep(d)
		st := caudal.StateFrom(ctx)
		for k, v := range kv {
			st.Set(k, v)
		}
		return caudal.Reply{Output: out, Usage: caudal.Usage{PromptTokens: 1}}, nil
	}))
}

func failing(name string) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		caudal.StateFrom(ctx).Set("from_failed", name)
		return caudal.Reply{}, errors.New(name + " broke")
	}))
}

func TestParallelMerge(t *testing.T) {
	// Branch a finishes last, c first: merges must follow declaration order.
	branches := func() []caudal.StepOption {
		return []caudal.StepOption{
			caudal.Branch("a", writer("wa", 30*time.Millisecond, "A", map[string]any{"shared": "a", "only_a": 1.0})),
			caudal.Branch("b", writer("wb", 20*time.Millisecond, "B", map[string]any{"shared": "b", "only_b": 2.0})),
			caudal.Branch("c", writer("wc", 10*time.Millisecond, "C", map[string]any{"only_c": 3.0})),
		}
	}
	tests := []struct {
		name          string
		give          []caudal.StepOption
		want          string // the state after the step
		wantConflicts string
		wantErr       bool
	}{
		{"no merge", []caudal.StepOption{caudal.WithMerge(caudal.NoMerge)}, "map[base:0 shared:base]", "<nil>", false},
		{
			"context update: later-declared wins, conflict listed",
			[]caudal.StepOption{caudal.WithMerge(caudal.ContextUpdate)},
			"map[base:0 only_a:1 only_b:2 only_c:3 shared:b]", "[shared]", false,
		},
		{"overwrite: last successful branch", []caudal.StepOption{caudal.WithMerge(caudal.Overwrite)}, "map[base:0 only_c:3 shared:base]", "<nil>", false},
		{"keep first", []caudal.StepOption{caudal.WithMerge(caudal.KeepFirst)}, "map[base:0 only_a:1 shared:a]", "<nil>", false},
		{"error on conflict", []caudal.StepOption{caudal.WithMerge(caudal.ErrorOnConflict)}, "map[base:0 shared:base]", "<nil>", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := caudal.NewState(map[string]any{"shared": "base", "base": 0.0})
				step := caudal.Parallel("p", append(branches(), tt.give...)...)
				res, err := execute(t, mustNew(t), step, nil, caudal.WithState(st))
				if (err != nil) != tt.wantErr {
					t.Fatalf("Execute error = %v; want error %v", err, tt.wantErr)
				}
				if got := fmt.Sprint(stateMap(st)); got != tt.want {
					t.Errorf("state = %s; want %s", got, tt.want)
				}
				if got := fmt.Sprint(res.Metadata[caudal.MetaMergeConflicts]); !tt.wantErr && got != tt.wantConflicts {
					t.Errorf("merge_conflicts = %s; want %s", got, tt.wantConflicts)
				}
				var mc *caudal.MergeConflictError
				if tt.wantErr && (!errors.As(err, &mc) || mc.Key != "shared" || fmt.Sprint(mc.Branches) != "[a b]") {
					t.Errorf("err = %v; want a MergeConflictError on shared by [a b]", err)
				}
			})
		})
	}
}

func stateMap(st *caudal.State) map[string]any {
	m := map[string]any{}
	for k, v := range st.All() {
		m[k] = v
	}
	return m
}

func TestParallelOutputAndIsolation(t *testing.T) {
	// A branch's writes are never visible to a sibling.
	var leaked atomic.Bool
	peek := caudal.AgentStep("peek", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		time.Sleep(time.Millisecond)
		if _, ok := caudal.Get[string](caudal.StateFrom(ctx), "secret"); ok {
			leaked.Store(true)
		}
		return caudal.Reply{Output: "peeked"}, nil
	}))
	synctest.Test(t, func(t *testing.T) {
		st := caudal.NewState(nil)
		step := caudal.Parallel("p", caudal.Branch("w", writer("w", 0, "W", map[string]any{"secret": "x"})), caudal.Branch("r", peek))
		res, err := execute(t, mustNew(t), step, "in", caudal.WithState(st))
		if err != nil || fmt.Sprint(res.Output) != "map[r:peeked w:W]" {
			t.Fatalf("Execute = %v, %v; want the outputs by branch name", res.Output, err)
		}
		if leaked.Load() {
			t.Error("a branch saw its sibling's write")
		}
		if len(res.Children) != 2 || res.Children[0].Path != "p/w" || res.Children[1].Path != "p/r" {
			t.Errorf("children = %+v; want p/w, p/r in declaration order", res.Children)
		}
		if _, ok := caudal.Get[string](st, "secret"); ok {
			t.Error("NoMerge leaked a branch write into the parent")
		}
	})
}

func TestParallelFailurePolicy(t *testing.T) {
	tests := []struct {
		name       string
		give       []caudal.StepOption
		wantErr    string
		wantOutput string
		wantState  string
	}{
		{
			"propagate",
			[]caudal.StepOption{caudal.Branch("ok", constant("OK")), caudal.Branch("bad", failing("bad")), caudal.WithMerge(caudal.ContextUpdate)},
			`"p/bad"`, "map[ok:OK]", "map[]",
		},
		{"ignore one failure", []caudal.StepOption{
			caudal.Branch("ok", writer("ok", 0, "OK", map[string]any{"k": "v"})), caudal.Branch("bad", failing("bad")),
			caudal.WithOnBranchFailure(caudal.Ignore), caudal.WithMerge(caudal.ContextUpdate),
		}, "", "map[ok:OK]", "map[k:v]"},
		{"ignore fails when all fail", []caudal.StepOption{
			caudal.Branch("b1", failing("b1")), caudal.Branch("b2", failing("b2")),
			caudal.WithOnBranchFailure(caudal.Ignore),
		}, `"p/b1"`, "map[]", "map[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := caudal.NewState(nil)
			res, err := execute(t, mustNew(t), caudal.Parallel("p", tt.give...), nil, caudal.WithState(st))
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v; want %q", err, tt.wantErr)
			}
			if fmt.Sprint(res.Output) != tt.wantOutput || fmt.Sprint(stateMap(st)) != tt.wantState {
				t.Errorf("output %v, state %v; want %s, %s (failed branches never merge)", res.Output, stateMap(st), tt.wantOutput, tt.wantState)
			}
		})
	}
}

func TestParallelReducers(t *testing.T) {
	tests := []struct {
		name string
		give func(parent any, parentOK bool, branches []any) (any, error)
		key  string
		base any
		vals []any
		want string
	}{
		{"append", caudal.ReduceAppend, "notes", []any{"base"}, []any{[]any{"base", "a"}, []any{"base", "b1", "b2"}}, "[base a b1 b2]"},
		{"sum", caudal.ReduceSum, "count", 10, []any{12, 15}, "17"},
		{"max", caudal.ReduceMax, "best", 1.0, []any{0.5, 7.0}, "7"},
		{"custom", func(parent any, _ bool, branches []any) (any, error) { return fmt.Sprint(parent, branches), nil }, "log", "p", []any{"x", "y"}, "p[x y]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []caudal.StepOption{caudal.WithMerge(caudal.ErrorOnConflict), caudal.WithReducer(tt.key, tt.give)}
			for i, v := range tt.vals {
				opts = append(opts, caudal.Branch(fmt.Sprint("b", i), writer(fmt.Sprint("w", i), 0, i, map[string]any{tt.key: v})))
			}
			st := caudal.NewState(map[string]any{tt.key: tt.base})
			if _, err := execute(t, mustNew(t), caudal.Parallel("p", opts...), nil, caudal.WithState(st)); err != nil {
				t.Fatalf("Execute: %v (a reduced key is not a conflict)", err)
			}
			got, _ := caudal.Get[any](st, tt.key)
			if fmt.Sprint(got) != tt.want {
				t.Errorf("state[%s] = %v; want %s", tt.key, got, tt.want)
			}
		})
	}
}

func TestParallelMergeFunc(t *testing.T) {
	st := caudal.NewState(nil)
	step := caudal.Parallel("p",
		caudal.Branch("x", writer("x", 0, 1, map[string]any{"v": "from x"})),
		caudal.Branch("y", failing("y")),
		caudal.WithOnBranchFailure(caudal.Ignore),
		caudal.WithMergeFunc(func(_ context.Context, parent *caudal.State, branches []caudal.BranchState) error {
			var names []string
			for _, b := range branches {
				v, _ := caudal.Get[string](b.State, "v")
				names = append(names, fmt.Sprintf("%s:%v:%s", b.Name, b.Result.Success, v))
			}
			parent.Set("summary", strings.Join(names, ","))
			return nil
		}))
	if _, err := execute(t, mustNew(t), step, nil, caudal.WithState(st)); err != nil {
		t.Fatal(err)
	}
	if got, _ := caudal.Get[string](st, "summary"); got != "x:true:from x,y:false:" {
		t.Errorf("summary = %q; want every branch in declaration order", got)
	}
}

func TestParallelConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var running, peak atomic.Int32
		slow := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
			running.Add(-1)
			return caudal.Reply{Output: "ok"}, nil
		})
		opts := []caudal.StepOption{caudal.WithConcurrency(3)}
		for i := range 10 {
			opts = append(opts, caudal.Branch(fmt.Sprint("b", i), caudal.AgentStep("s", slow)))
		}
		start := time.Now()
		if _, err := execute(t, mustNew(t), caudal.Parallel("p", opts...), nil); err != nil {
			t.Fatal(err)
		}
		if peak.Load() != 3 || time.Since(start) != 40*time.Millisecond {
			t.Errorf("peak concurrency %d in %v; want 3 in 40ms (10 branches, 3 at a time)", peak.Load(), time.Since(start))
		}
	})
}

func TestParallelBreachCancelsSiblings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cancelled atomic.Bool
		waiter := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
			select {
			case <-ctx.Done():
				cancelled.Store(true)
				return caudal.Reply{}, context.Cause(ctx)
			case <-time.After(time.Hour):
				return caudal.Reply{Output: "late"}, nil
			}
		})
		spender := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			time.Sleep(time.Millisecond)
			return caudal.Reply{Output: "x", Usage: caudal.Usage{CompletionTokens: 80}}, nil
		})
		rec := &caudaltest.Recorder{}
		step := caudal.Parallel("p", caudal.Branch("spend", caudal.AgentStep("s", spender)), caudal.Branch("wait", caudal.AgentStep("w", waiter)))
		start := time.Now()
		_, err := execute(t, mustNew(t, caudal.WithSink(rec)), step, nil, caudal.WithLimits(caudal.Limits{MaxTokens: 100}))
		var ue *caudal.UsageLimitError
		if !errors.As(err, &ue) || ue.Step != "p/spend" || !strings.Contains(err.Error(), "tokens 80 > limit 50") {
			t.Fatalf("err = %v; want the spend branch's breach of its share, 50 of 100 tokens", err)
		}
		if !cancelled.Load() || time.Since(start) != time.Millisecond {
			t.Errorf("sibling cancelled %v after %v; want cancelled at once", cancelled.Load(), time.Since(start))
		}
		if len(rec.Filter(caudal.EventUsageBreach)) != 1 {
			t.Errorf("breach events = %d; want 1", len(rec.Filter(caudal.EventUsageBreach)))
		}
	})
}

func TestParallelUsageSummed(t *testing.T) {
	step := caudal.Parallel("p",
		caudal.Branch("a", caudal.AgentStep("a", costly(1, caudal.Usage{PromptTokens: 3, CostUSD: 0.5}, nil))),
		caudal.Branch("b", caudal.AgentStep("b", costly(2, caudal.Usage{PromptTokens: 4, CostUSD: 0.25}, nil))))
	res, err := execute(t, mustNew(t), step, nil)
	if err != nil || res.Usage != (caudal.Usage{PromptTokens: 7, CostUSD: 0.75}) {
		t.Errorf("Execute = %+v, %v; want usage summed", res.Usage, err)
	}
}

func TestParallelBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		give caudal.Step
		want string
	}{
		{"no branches", caudal.Parallel("p"), "no branches"},
		{"duplicate branch", caudal.Parallel("p", caudal.Branch("a", constant(1)), caudal.Branch("a", constant(2))), `duplicate branch name "a"`},
		{"zero concurrency", caudal.Parallel("p", caudal.Branch("a", constant(1)), caudal.WithConcurrency(0)), "concurrency must be >= 1"},
		{"bad branch inside", caudal.Parallel("p", caudal.Branch("a", caudal.AgentStep("x", nil))), `step "p/a": missing agent`},
		{"branch option on agent", caudal.AgentStep("x", echoAgent{}, caudal.Branch("a", constant(1))), "option Branch does not apply to agent steps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := caudal.Build(tt.give); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build error = %v; want %q", err, tt.want)
			}
		})
	}
}

func TestParallelCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		errStop := errors.New("caller stopped")
		block := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
			<-ctx.Done()
			return caudal.Reply{}, context.Cause(ctx)
		})
		step := mustBuild(t, caudal.Parallel("p", caudal.Branch("a", caudal.AgentStep("a", block)), caudal.Branch("b", caudal.AgentStep("b", block))))
		time.AfterFunc(time.Second, func() { cancel(errStop) })
		_, err := mustNew(t).Execute(ctx, step, nil)
		if !errors.Is(err, errStop) {
			t.Errorf("err = %v; want the caller's cause", err)
		}
	})
}
