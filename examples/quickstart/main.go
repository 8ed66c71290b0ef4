// Command quickstart runs a small Caudal pipeline on the in-process executor:
// a flaky "planner" agent with retries, a validator and a cheaper fallback,
// then a cached "summarizer", all under a token budget, with every event
// logged through log/slog.
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
	plan, err := caudal.Build(caudal.AgentStep("plan", caudal.AgentFunc(overloaded),
		caudal.WithRetries(1), caudal.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		caudal.WithFallback(caudal.AgentStep("plan_validated", caudal.AgentFunc(planner),
			caudal.WithRetries(2), caudal.WithBackoff(0, 0), caudal.WithTimeout(5*time.Second),
			caudal.WithValidators(hasSteps))),
	))
	if err != nil {
		return err
	}
	summarize, err := caudal.Build(caudal.Cached(caudal.AgentStep("summarize", caudal.AgentFunc(summarizer)), cache))
	if err != nil {
		return err
	}

	var spent caudal.Usage
	for _, t := range []string{"solid-state batteries", "solid-state batteries"} {
		res, err := ex.Execute(ctx, plan, map[string]any{"topic": t}, caudal.WithRunID("quickstart"))
		if err != nil {
			return err
		}
		spent = spent.Add(res.Usage)
		sum, err := ex.Execute(ctx, summarize, res.Output, caudal.WithRunID("quickstart"))
		if err != nil {
			return err
		}
		spent = spent.Add(sum.Usage)
		fmt.Printf("plan:    %v\n  attempts=%d fallback=%v tokens=%d\n", res.Output, res.Attempts,
			res.Metadata[caudal.MetaFallbackTriggered], res.Usage.Tokens())
		fmt.Printf("summary: %v\n  cache_hit=%v\n", sum.Output, sum.Metadata[caudal.MetaCacheHit])
	}
	fmt.Printf("total: %d tokens, $%.4f\n", spent.Tokens(), spent.CostUSD)
	return nil
}
