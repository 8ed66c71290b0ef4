package caudal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caudal-go/caudal"
)

// A research pipeline: plan, research in parallel with the findings merged
// into the state, draft, then pause for a human's approval and resume.
func Example_pipeline() {
	plan := caudal.Func("plan", func(_ context.Context, topic string) (map[string]any, error) {
		return map[string]any{"topic": topic, "questions": []any{"cost", "safety"}}, nil
	}, caudal.UpdatesContext())
	search := func(source string) caudal.Step {
		return caudal.AgentStep(source, caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
			st := caudal.StateFrom(ctx)
			topic, _ := caudal.Get[string](st, "topic")
			st.Set("found_"+source, fmt.Sprintf("%s on %s", source, topic))
			return caudal.Reply{Output: source + " done", Usage: caudal.Usage{PromptTokens: 100}}, nil
		}))
	}
	research := caudal.Parallel("research",
		caudal.Branch("web", search("web")),
		caudal.Branch("papers", search("papers")),
		caudal.WithMerge(caudal.ContextUpdate))
	draft := caudal.AgentStep("draft", caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		st := caudal.StateFrom(ctx)
		web, _ := caudal.Get[string](st, "found_web")
		papers, _ := caudal.Get[string](st, "found_papers")
		return caudal.Reply{Output: "draft: " + web + "; " + papers}, nil
	}))
	publish := caudal.Func("publish", func(_ context.Context, verdict string) (string, error) {
		return "published (" + verdict + ")", nil
	})
	pipeline, err := caudal.Build(caudal.Seq("report", plan, research, draft,
		caudal.HumanInput("approve", "Publish this draft?"), publish))
	if err != nil {
		fmt.Println(err)
		return
	}
	ex, _ := caudal.New()
	defer func() { _ = ex.Close() }()

	_, err = ex.Execute(context.Background(), pipeline, "solid-state batteries", caudal.WithState(caudal.NewState(nil)))
	var paused *caudal.PausedError
	if !errors.As(err, &paused) {
		fmt.Println("expected a pause:", err)
		return
	}
	fmt.Println("paused at", paused.Path+":", paused.Message)

	// A runner would store the snapshot as JSON and resume later.
	saved, _ := json.Marshal(paused.Snapshot)
	var snap caudal.Snapshot
	_ = json.Unmarshal(saved, &snap)

	res, err := ex.Execute(context.Background(), pipeline, nil, caudal.WithResume(&snap, "approved"))
	fmt.Println(res.Output, err)
	fmt.Println("tokens:", res.Usage.Tokens())
	// Output:
	// paused at report/approve: Publish this draft?
	// published (approved) <nil>
	// tokens: 200
}

// A loop refines its output until the exit condition holds.
func ExampleLoop() {
	grow := caudal.Func("grow", func(_ context.Context, s string) (string, error) { return s + "!", nil })
	loud := caudal.Loop("shout", grow,
		caudal.WithExitCondition(func(_ context.Context, out any) (bool, error) {
			return strings.Count(out.(string), "!") >= 3, nil
		}),
		caudal.WithMaxIterations(10))
	step, _ := caudal.Build(loud)
	ex, _ := caudal.New()
	res, err := ex.Execute(context.Background(), step, "hey")
	fmt.Println(res.Output, res.Attempts, err)
	// Output: hey!!! 3 <nil>
}

// A map runs its body over every item, here three at a time, and keeps the
// input order.
func ExampleMap() {
	square := caudal.Func("square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	step, _ := caudal.Build(caudal.Map("squares", square, caudal.WithConcurrency(3)))
	ex, _ := caudal.New()
	res, err := ex.Execute(context.Background(), step, []int{1, 2, 3, 4, 5})
	fmt.Println(res.Output, err)
	// Output: [1 4 9 16 25] <nil>
}

// A conditional step routes on a key computed from the input.
func ExampleConditional() {
	byLength := func(_ context.Context, in any) (string, error) {
		if len(in.(string)) > 10 {
			return "long", nil
		}
		return "short", nil
	}
	summarize := caudal.Func("summarize", func(_ context.Context, s string) (string, error) { return s[:10] + "…", nil })
	keep := caudal.Func("keep", func(_ context.Context, s string) (string, error) { return s, nil })
	step, _ := caudal.Build(caudal.Conditional("fit", byLength,
		caudal.Branch("long", summarize), caudal.Branch("short", keep)))
	ex, _ := caudal.New()
	for _, in := range []string{"brief", "a rather long sentence"} {
		res, _ := ex.Execute(context.Background(), step, in)
		fmt.Println(res.Metadata[caudal.MetaBranchKey], res.Output)
	}
	// Output:
	// short brief
	// long a rather l…
}
