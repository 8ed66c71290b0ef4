// Command quickstart runs a small Caudal pipeline on the in-process executor:
// a flaky "planner" agent with retries, a validator and a fallback; two
// research branches in parallel whose findings merge into the run's state; a
// cached summarizer; and a human approval that pauses the run, which is then
// resumed with an answer — all under a token budget, with every event logged
// through log/slog.
//
// Usage:
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/caudal-go/caudal"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// planner stands in for an LLM: its first answer is too vague, so the
// validator rejects it and the retry sees the feedback.
func planner(ctx context.Context, in any) (caudal.Reply, error) {
	usage := caudal.Usage{PromptTokens: 120, CompletionTokens: 40, CostUSD: 0.0016}
	if fb := caudal.Feedback(ctx); fb != "" {
		return caudal.Reply{Output: fmt.Sprintf("plan for %q: 1) research 2) draft 3) review", topic(in)), Usage: usage}, nil
	}
	return caudal.Reply{Output: "plan: do it", Usage: usage}, nil
}

// overloaded stands in for a model that is down.
func overloaded(context.Context, any) (caudal.Reply, error) {
	return caudal.Reply{}, errors.New("503 model overloaded")
}

// summarizer stands in for a cheaper model.
func summarizer(_ context.Context, in any) (caudal.Reply, error) {
	words := strings.Fields(fmt.Sprint(in))
	return caudal.Reply{
		Output: fmt.Sprintf("summary (%d words): %s …", len(words), strings.Join(words[:min(4, len(words))], " ")),
		Usage:  caudal.Usage{PromptTokens: 60, CompletionTokens: 20, CostUSD: 0.0002},
	}, nil
}

func topic(in any) string {
	if m, ok := in.(map[string]any); ok {
		return fmt.Sprint(m["topic"])
	}
	return strings.SplitN(fmt.Sprint(in), "\n", 2)[0]
}

func hasSteps(_ context.Context, out any) error {
	if !strings.Contains(fmt.Sprint(out), "1)") {
		return errors.New("the plan must list numbered steps")
	}
	return nil
}

// research stands in for a search tool; it records its finding in the
// branch's state, which the parallel step merges back.
func research(source string) caudal.Agent {
	return caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		caudal.StateFrom(ctx).Set("found_"+source, fmt.Sprintf("3 %s results", source))
		return caudal.Reply{Output: in, Usage: caudal.Usage{PromptTokens: 30, CostUSD: 0.0001}}, nil
	})
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ex, err := caudal.New(
		caudal.WithSink(caudal.SlogSink(logger)),
		caudal.WithLimits(caudal.Limits{MaxTokens: 2_000, MaxCostUSD: 0.05}),
	)
	if err != nil {
		return err
	}
	defer func() { _ = ex.Close() }() // Close never fails; it only marks the executor closed

	cache, err := caudal.NewMemoryCache(256)
	if err != nil {
		return err
	}
	pipeline, err := caudal.Build(caudal.Seq("report",
		caudal.AgentStep("plan", caudal.AgentFunc(overloaded),
			caudal.WithRetries(1), caudal.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
			caudal.WithFallback(caudal.AgentStep("plan_validated", caudal.AgentFunc(planner),
				caudal.WithRetries(2), caudal.WithBackoff(0, 0), caudal.WithTimeout(5*time.Second),
				caudal.WithValidators(hasSteps)))),
		caudal.Parallel("research",
			caudal.Branch("web", caudal.AgentStep("search", research("web"))),
			caudal.Branch("papers", caudal.AgentStep("search", research("papers"))),
			caudal.WithMerge(caudal.ContextUpdate)),
		caudal.Func("pick", func(_ context.Context, found map[string]any) (string, error) {
			return fmt.Sprint(found["web"]), nil
		}),
		caudal.Cached(caudal.AgentStep("summarize", caudal.AgentFunc(summarizer)), cache),
		caudal.HumanInput("approve", "Publish this summary?"),
	))
	if err != nil {
		return err
	}

	state := caudal.NewState(nil)
	res, err := ex.Execute(ctx, pipeline, map[string]any{"topic": "solid-state batteries"},
		caudal.WithRunID("quickstart"), caudal.WithState(state))
	var paused *caudal.PausedError
	if !errors.As(err, &paused) {
		return fmt.Errorf("expected the run to pause for approval, got %v", err)
	}
	fmt.Printf("\nplan:    %v\n", res.Children[0].Output)
	fmt.Printf("found:   web=%v papers=%v\n", must(caudal.Get[string](state, "found_web")), must(caudal.Get[string](state, "found_papers")))
	fmt.Printf("summary: %v\n", res.Children[3].Output)
	fmt.Printf("paused:  %s asks %q; answering \"yes\"\n\n", paused.Path, paused.Message)

	res, err = ex.Execute(ctx, pipeline, nil, caudal.WithRunID("quickstart"), caudal.WithResume(paused.Snapshot, "yes"))
	if err != nil {
		return err
	}
	fmt.Printf("\nresult:  %v (success=%v, %d tokens, $%.4f)\n", res.Output, res.Success, res.Usage.Tokens(), res.Usage.CostUSD)
	return nil
}

func must[T any](v T, _ bool) T { return v }
