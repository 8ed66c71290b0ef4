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
)

// counter increments the state's "n" and outputs its input + 1.
var counter = caudal.AgentStep("inc", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
	st := caudal.StateFrom(ctx)
	n, _ := caudal.Get[int](st, "n")
	st.Set("n", n+1)
	x, _ := in.(int)
	return caudal.Reply{Output: x + 1, Usage: caudal.Usage{PromptTokens: 1}}, nil
}))

func TestLoop(t *testing.T) {
	atLeast := func(k int) func(context.Context, any) (bool, error) {
		return func(_ context.Context, out any) (bool, error) { return out.(int) >= k, nil }
	}
	stateAt := func(k int) func(context.Context, any) (bool, error) {
		return func(ctx context.Context, _ any) (bool, error) {
			n, _ := caudal.Get[int](caudal.StateFrom(ctx), "n")
			return n >= k, nil
		}
	}
	tests := []struct {
		name      string
		give      []caudal.StepOption
		want      any
		wantIters int
		wantState int
		wantErr   error
	}{
		{"exit on output", []caudal.StepOption{caudal.WithExitCondition(atLeast(3))}, 3, 3, 3, nil},
		{"exit on state", []caudal.StepOption{caudal.WithExitCondition(stateAt(2))}, 2, 2, 2, nil},
		{"no exit condition runs max", []caudal.StepOption{caudal.WithMaxIterations(4)}, 4, 4, 4, nil},
		{"max iterations", []caudal.StepOption{caudal.WithExitCondition(atLeast(100)), caudal.WithMaxIterations(3)}, 3, 3, 3, caudal.ErrMaxIterations},
		{"mappers", []caudal.StepOption{
			caudal.WithExitCondition(atLeast(25)),
			caudal.WithInputMapper(func(_ context.Context, in any) (any, error) { return in.(int) * 10, nil }),
			caudal.WithIterationMapper(func(_ context.Context, out any, i int) (any, error) { return out.(int) + 10*i, nil }),
			caudal.WithOutputMapper(func(_ context.Context, out any) (any, error) { return fmt.Sprint("got ", out), nil }),
		}, "got 32", 2, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := caudal.NewState(nil)
			in := 0
			if strings.HasPrefix(tt.name, "mappers") {
				in = 2
			}
			res, err := execute(t, mustNew(t), caudal.Loop("loop", counter, tt.give...), in, caudal.WithState(st))
			if !errors.Is(err, tt.wantErr) || (err == nil && res.Output != tt.want) {
				t.Fatalf("Execute = %v, %v; want %v, %v", res.Output, err, tt.want, tt.wantErr)
			}
			n, _ := caudal.Get[int](st, "n")
			if res.Attempts != tt.wantIters || n != tt.wantState || len(res.Children) != tt.wantIters {
				t.Errorf("iterations %d (children %d), state n=%d; want %d, n=%d", res.Attempts, len(res.Children), n, tt.wantIters, tt.wantState)
			}
			if res.Usage.PromptTokens != int64(tt.wantIters) {
				t.Errorf("usage = %+v; want one token per iteration", res.Usage)
			}
		})
	}
}

func TestLoopFailedIterationDoesNotMerge(t *testing.T) {
	calls := 0
	body := caudal.AgentStep("b", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		calls++
		caudal.StateFrom(ctx).Set(fmt.Sprint("k", calls), true)
		if calls == 2 {
			return caudal.Reply{}, errors.New("second iteration broke")
		}
		return caudal.Reply{Output: calls}, nil
	}))
	st := caudal.NewState(nil)
	_, err := execute(t, mustNew(t), caudal.Loop("l", body, caudal.WithMaxIterations(5)), nil, caudal.WithState(st))
	if err == nil || !strings.Contains(err.Error(), `"l#2/b"`) {
		t.Fatalf("err = %v; want iteration 2's failure", err)
	}
	if _, ok := caudal.Get[bool](st, "k1"); !ok {
		t.Error("iteration 1's write was not merged")
	}
	if _, ok := caudal.Get[bool](st, "k2"); ok {
		t.Error("failed iteration 2's write was merged")
	}
}

func TestMap(t *testing.T) {
	square := caudal.Func("sq", func(_ context.Context, x int) (int, error) { return x * x, nil })
	tests := []struct {
		name string
		give []caudal.StepOption
		in   any
		st   map[string]any
		want string
	}{
		{"input slice", nil, []int{1, 2, 3}, nil, "[1 4 9]"},
		{"any slice", nil, []any{4, 5}, nil, "[16 25]"},
		{"from state", []caudal.StepOption{caudal.WithItemsFrom("xs")}, nil, map[string]any{"xs": []int{6}}, "[36]"},
		{"parallel keeps order", []caudal.StepOption{caudal.WithConcurrency(4)}, []int{1, 2, 3, 4, 5, 6, 7, 8}, nil, "[1 4 9 16 25 36 49 64]"},
		{"empty", nil, []int{}, nil, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := execute(t, mustNew(t), caudal.Map("m", square, tt.give...), tt.in, caudal.WithState(caudal.NewState(tt.st)))
			if err != nil || fmt.Sprint(res.Output) != tt.want {
				t.Errorf("Execute = %v, %v; want %s", res.Output, err, tt.want)
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	square := caudal.Func("sq", func(_ context.Context, x int) (int, error) {
		if x < 0 {
			return 0, fmt.Errorf("negative %d", x)
		}
		return x * x, nil
	})
	tests := []struct {
		name string
		give caudal.Step
		in   any
		want string
	}{
		{"not a collection", caudal.Map("m", square), 7, "items of type int are not a slice"},
		{"missing key", caudal.Map("m", square, caudal.WithItemsFrom("nope")), nil, `state has no key "nope"`},
		{"first failure by item order", caudal.Map("m", square, caudal.WithConcurrency(3)), []int{1, -2, -3}, "negative -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(t, mustNew(t), tt.give, tt.in, caudal.WithState(caudal.NewState(nil)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want %q", err, tt.want)
			}
		})
	}
}

func TestMapState(t *testing.T) {
	// Sequential items see earlier items' writes; parallel items merge in
	// item order once all are done.
	appendItem := caudal.AgentStep("add", caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		st := caudal.StateFrom(ctx)
		seen, _ := caudal.Get[string](st, "seen")
		st.Set("seen", seen+fmt.Sprint(in))
		st.Set("last", in)
		return caudal.Reply{Output: seen}, nil
	}))
	tests := []struct {
		name       string
		give       []caudal.StepOption
		wantOutput string
		wantSeen   string
	}{
		{"sequential", nil, "[ a ab]", "abc"},
		{"parallel", []caudal.StepOption{caudal.WithConcurrency(3)}, "[  ]", "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := caudal.NewState(nil)
			res, err := execute(t, mustNew(t), caudal.Map("m", appendItem, tt.give...), []string{"a", "b", "c"}, caudal.WithState(st))
			seen, _ := caudal.Get[string](st, "seen")
			last, _ := caudal.Get[string](st, "last")
			if err != nil || fmt.Sprint(res.Output) != tt.wantOutput || seen != tt.wantSeen || last != "c" {
				t.Errorf("Execute = %q, %v; state seen=%q last=%q; want %s, seen=%s last=c", res.Output, err, seen, last, tt.wantOutput, tt.wantSeen)
			}
		})
	}
}

func TestRefineUntil(t *testing.T) {
	var drafts atomic.Int32
	writer := caudal.AgentStep("write", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		n := drafts.Add(1)
		return caudal.Reply{Output: fmt.Sprintf("draft %d (%v)", n, in)}, nil
	}))
	critic := caudal.AgentStep("critic", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		if strings.HasPrefix(in.(string), "draft 3") {
			return caudal.Reply{Output: caudal.Critique{Done: true}}, nil
		}
		return caudal.Reply{Output: caudal.Critique{Feedback: "more detail"}}, nil
	}))
	res, err := execute(t, mustNew(t), caudal.RefineUntil("refine", writer, critic, 5), "topic")
	if err != nil || !strings.HasPrefix(fmt.Sprint(res.Output), "draft 3 (map[feedback:more detail input:topic])") {
		t.Errorf("Execute = %v, %v; want draft 3 built from the feedback", res.Output, err)
	}
	if res.Attempts != 3 {
		t.Errorf("rounds = %d; want 3", res.Attempts)
	}
	if first := res.Children[0].Children[0].Output; first != "draft 1 (topic)" {
		t.Errorf("first draft = %v; want it made from the original input", first)
	}
}

func TestLoopCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		slow := caudal.AgentStep("slow", caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			time.Sleep(10 * time.Millisecond)
			return caudal.Reply{Output: 1}, nil
		}))
		time.AfterFunc(25*time.Millisecond, cancel)
		res, err := mustNew(t).Execute(ctx, mustBuild(t, caudal.Loop("l", slow, caudal.WithMaxIterations(100))), nil)
		if !errors.Is(err, context.Canceled) || res.Attempts != 3 {
			t.Errorf("Execute = %d iterations, %v; want 3 iterations then context.Canceled", res.Attempts, err)
		}
	})
}
