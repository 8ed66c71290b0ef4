package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

func addN(name string, n int) caudal.Step {
	return caudal.Func(name, func(_ context.Context, x int) (int, error) { return x + n, nil })
}

func TestSeq(t *testing.T) {
	errStop := errors.New("stop here")
	failing := caudal.Func("fail", func(context.Context, int) (int, error) { return 0, errStop })
	tests := []struct {
		name         string
		give         caudal.Step
		want         any
		wantErr      error
		wantChildren int
		wantPath     string
	}{
		{"output feeds input", caudal.Seq("s", addN("a", 1), addN("b", 10), addN("c", 100)), 111, nil, 3, ""},
		{"stops at first failure", caudal.Seq("s", addN("a", 1), failing, addN("c", 100)), 0, errStop, 2, "s/fail"},
		{"nested sequences", caudal.Seq("outer", addN("a", 1), caudal.Seq("inner", addN("b", 2), addN("c", 3))), 6, nil, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := execute(t, mustNew(t), tt.give, 0)
			if !errors.Is(err, tt.wantErr) || res.Output != tt.want || len(res.Children) != tt.wantChildren {
				t.Fatalf("Execute = %v, %v, %d children; want %v, %v, %d", res.Output, err, len(res.Children), tt.want, tt.wantErr, tt.wantChildren)
			}
			if tt.wantPath != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.wantPath)) {
				t.Errorf("err = %v; want it to name %s", err, tt.wantPath)
			}
		})
	}
}

func TestSeqChildPaths(t *testing.T) {
	res, err := execute(t, mustNew(t), caudal.Seq("outer", addN("a", 1), caudal.Seq("inner", addN("b", 2))), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Children[1].Children[0].Path; got != "outer/inner/b" {
		t.Errorf("nested path = %q; want outer/inner/b", got)
	}
}

func TestSeqLatencies(t *testing.T) {
	// Consecutive bare steps share clock readings: each child's latency is
	// positive and together they never exceed the sequence's.
	res, err := execute(t, mustNew(t), caudal.Seq("s", addN("a", 1), addN("b", 1), addN("c", 1)), 0)
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, c := range res.Children {
		if c.Latency <= 0 {
			t.Errorf("%s latency = %v; want > 0", c.Path, c.Latency)
		}
		sum += c.Latency
	}
	if sum > res.Latency {
		t.Errorf("children took %v in all, more than the sequence's %v", sum, res.Latency)
	}
}

func TestSeqBuildErrors(t *testing.T) {
	toString := caudal.Func("str", func(_ context.Context, x int) (string, error) { return fmt.Sprint(x), nil })
	tests := []struct {
		name string
		give caudal.Step
		want []string
	}{
		{"empty", caudal.Seq("s"), []string{"sequence has no steps"}},
		{"duplicate names", caudal.Seq("s", addN("a", 1), addN("a", 2)), []string{`duplicate step name "a"`}},
		{"type mismatch", caudal.Seq("s", toString, addN("b", 1)), []string{`step "s/b"`, "type mismatch", "int does not accept string"}},
		{
			"every problem reported", caudal.Seq("s", caudal.AgentStep("x", nil), toString, addN("b", 1), caudal.AgentStep("y", echoAgent{}, caudal.WithRetries(-2))),
			[]string{`step "s/x": missing agent`, `step "s/b"`, `step "s/y": option WithRetries`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := caudal.Build(tt.give)
			for _, want := range tt.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Build error = %v; want it to contain %q", err, want)
				}
			}
		})
	}
	if _, err := caudal.Build(caudal.Seq("s", toString, addN("b", 1))); !errors.Is(err, caudal.ErrTypeMismatch) {
		t.Errorf("Build error = %v; want ErrTypeMismatch", err)
	}
}

func TestUpdatesContext(t *testing.T) {
	type profile struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	emit := func(name string, out any, opts ...caudal.StepOption) caudal.Step {
		return caudal.AgentStep(name, caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
			return caudal.Reply{Output: out}, nil
		}), opts...)
	}
	tests := []struct {
		name    string
		give    caudal.Step
		wantKey string
		want    string
		wantErr bool
	}{
		{"map output merged", emit("m", map[string]any{"topic": "go"}, caudal.UpdatesContext()), "topic", "go", false},
		{"nested maps deep-merged", emit("m", map[string]any{"cfg": map[string]any{"b": 2.0}}, caudal.UpdatesContext()), "cfg", "map[a:1 b:2]", false},
		{"struct output merged", emit("p", profile{"Ann", 40}, caudal.UpdatesContext()), "name", "Ann", false},
		{"nested step in a sequence", caudal.Seq("s", emit("inner", map[string]any{"topic": "nested"}, caudal.UpdatesContext())), "topic", "nested", false},
		{"non-map output fails", emit("x", 42, caudal.UpdatesContext()), "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := caudal.NewState(map[string]any{"cfg": map[string]any{"a": 1.0}})
			_, err := execute(t, mustNew(t), tt.give, nil, caudal.WithState(st))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Execute error = %v; want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			v, _ := caudal.Get[any](st, tt.wantKey)
			if fmt.Sprint(v) != tt.want {
				t.Errorf("state[%s] = %v; want %s", tt.wantKey, v, tt.want)
			}
		})
	}
}

func TestUpdatesContextWithoutStateCreatesOne(t *testing.T) {
	step := caudal.Seq("s",
		caudal.AgentStep("w", costly(map[string]any{"k": "v"}, caudal.Usage{}, nil), caudal.UpdatesContext()),
		caudal.AgentStep("r", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
			v, _ := caudal.Get[string](caudal.StateFrom(ctx), "k")
			return caudal.Reply{Output: v}, nil
		})))
	res, err := execute(t, mustNew(t), step, nil)
	if err != nil || res.Output != "v" {
		t.Errorf("Execute = %v, %v; want v read back from the state", res.Output, err)
	}
}

func TestConditional(t *testing.T) {
	byKind := func(_ context.Context, in any) (string, error) { return in.(map[string]any)["kind"].(string), nil }
	errKey := errors.New("no kind")
	tests := []struct {
		name    string
		give    caudal.Step
		in      string
		want    any
		wantKey any
		wantErr error
	}{
		{"picks branch", caudal.Conditional("c", byKind, caudal.Branch("a", constant("A")), caudal.Branch("b", constant("B"))), "b", "B", "b", nil},
		{"default branch", caudal.Conditional("c", byKind, caudal.Branch("a", constant("A")), caudal.WithDefault(constant("D"))), "z", "D", "z", nil},
		{"no branch", caudal.Conditional("c", byKind, caudal.Branch("a", constant("A"))), "z", nil, "", caudal.ErrNoBranch},
		{"key error", caudal.Conditional("c", func(context.Context, any) (string, error) { return "", errKey }, caudal.Branch("a", constant("A"))), "a", nil, "", errKey},
		{"mappers", caudal.Conditional("c", byKind, caudal.Branch("a", caudal.AgentStep("echo", echoAgent{})),
			caudal.WithInputMapper(func(_ context.Context, in any) (any, error) {
				return "mapped-" + in.(map[string]any)["kind"].(string), nil
			}),
			caudal.WithOutputMapper(func(_ context.Context, out any) (any, error) { return strings.ToUpper(out.(string)), nil })), "a", "MAPPED-A", "a", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := execute(t, mustNew(t), tt.give, map[string]any{"kind": tt.in})
			if !errors.Is(err, tt.wantErr) || res.Output != tt.want {
				t.Fatalf("Execute = %v, %v; want %v, %v", res.Output, err, tt.want, tt.wantErr)
			}
			if tt.wantKey != "" && res.Metadata[caudal.MetaBranchKey] != tt.wantKey {
				t.Errorf("branch key = %v; want %v", res.Metadata[caudal.MetaBranchKey], tt.wantKey)
			}
		})
	}
}

func TestConditionalPropagatesBreach(t *testing.T) {
	step := caudal.Conditional("c", func(context.Context, any) (string, error) { return "a", nil },
		caudal.Branch("a", caudal.AgentStep("spend", costly("x", caudal.Usage{CompletionTokens: 50}, nil))))
	_, err := execute(t, mustNew(t), step, nil, caudal.WithLimits(caudal.Limits{MaxTokens: 10}))
	if !errors.Is(err, caudal.ErrUsageLimitExceeded) {
		t.Errorf("err = %v; want the branch's breach", err)
	}
}

func constant(v any) caudal.Step {
	return caudal.AgentStep(fmt.Sprint("const-", v), costly(v, caudal.Usage{}, nil))
}

func TestRouter(t *testing.T) {
	pick := func(names any) caudal.Agent { return costly(names, caudal.Usage{PromptTokens: 5}, nil) }
	branches := []caudal.StepOption{caudal.Branch("web", constant("W")), caudal.Branch("papers", constant("P")), caudal.Branch("news", constant("N"))}
	tests := []struct {
		name     string
		give     any
		want     string
		wantErr  string
		wantMeta string
	}{
		{"one name", "papers", "map[papers:P]", "", "[papers]"},
		{"several, declaration order", []string{"news", "web"}, "map[news:N web:W]", "", "[web news]"},
		{"any list", []any{"web"}, "map[web:W]", "", "[web]"},
		{"none", []string{}, "map[]", "", "[]"},
		{"unknown name", []string{"web", "blogs"}, "", `unknown branch "blogs" (branches: web, papers, news)`, ""},
		{"bad output", 42, "", "not a branch name", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := execute(t, mustNew(t), caudal.Router("route", pick(tt.give), branches...), "q")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(res.Output) != tt.want || fmt.Sprint(res.Metadata[caudal.MetaExecutedBranches]) != tt.wantMeta {
				t.Errorf("Execute = %v, %v, branches %v; want %s, %s", res.Output, err, res.Metadata[caudal.MetaExecutedBranches], tt.want, tt.wantMeta)
			}
			if res.Usage.PromptTokens != 5 {
				t.Errorf("usage = %+v; want the router's 5 prompt tokens counted", res.Usage)
			}
		})
	}
}
