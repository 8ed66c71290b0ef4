package runner_test

import (
	"context"
	"fmt"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// A run pauses for a human's approval, and is resumed with the answer,
// validated against the step's schema.
func Example() {
	ctx := context.Background()
	ex, _ := caudal.New()
	defer func() { _ = ex.Close() }()
	store := runner.NewMemoryStore()
	defer func() { _ = store.Close() }()
	r, _ := runner.New(ex, store)

	draft := caudal.Func("draft", func(_ context.Context, topic string) (string, error) {
		return "a post about " + topic, nil
	})
	approve := caudal.HumanInput("approve", "publish it?",
		caudal.WithSchema(`{"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}`))
	publish := caudal.Func("publish", func(_ context.Context, answer map[string]any) (string, error) {
		if answer["ok"] == true {
			return "published", nil
		}
		return "dropped", nil
	})
	if err := r.Register("post", caudal.Seq("post", draft, approve, publish)); err != nil {
		fmt.Println(err)
		return
	}

	run, _ := r.Start(ctx, "post", "durable runs", runner.WithRunID("run-1"))
	fmt.Println(run.Status, "at", run.Pause.Path+":", run.Pause.Message)

	_, err := r.Resume(ctx, "run-1", runner.Answer{Value: map[string]any{"ok": "yes"}, By: "ann"})
	fmt.Println(err)

	run, _ = r.Resume(ctx, "run-1", runner.Answer{Value: map[string]any{"ok": true}, By: "ann"})
	fmt.Println(run.Status, string(run.Output))
	// Output:
	// paused at post/approve: publish it?
	// runner: run "run-1": answer to step "post/approve": $.ok: is string, want boolean
	// completed "published"
}
