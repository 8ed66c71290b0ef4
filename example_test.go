package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/caudal-go/caudal"
)

// A typed function becomes a step; Build checks it once, Execute runs it.
func Example() {
	upper := caudal.Func("upper", func(_ context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	})
	step, err := caudal.Build(upper)
	if err != nil {
		fmt.Println(err)
		return
	}
	ex, err := caudal.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ex.Close() }()

	res, err := ex.Execute(context.Background(), step, "hello, caudal")
	fmt.Println(res.Output, res.Success, err)
	// Output: HELLO, CAUDAL true <nil>
}

// A validator's rejection is fed back to the next attempt.
func ExampleWithValidators() {
	calls := 0
	writer := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		calls++
		if caudal.Feedback(ctx) != "" {
			return caudal.Reply{Output: "a short answer"}, nil
		}
		return caudal.Reply{Output: "a very, very, very long answer"}, nil
	})
	short := func(_ context.Context, out any) error {
		if len(out.(string)) > 20 {
			return errors.New("answer longer than 20 characters")
		}
		return nil
	}
	step, _ := caudal.Build(caudal.AgentStep("write", writer,
		caudal.WithRetries(2), caudal.WithBackoff(0, 0), caudal.WithValidators(short)))
	ex, _ := caudal.New()
	res, err := ex.Execute(context.Background(), step, "question")
	fmt.Println(res.Output, res.Attempts, calls, err)
	// Output: a short answer 2 2 <nil>
}

// When every attempt fails, the fallback runs and both usages are counted.
func ExampleWithFallback() {
	expensive := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{Usage: caudal.Usage{PromptTokens: 100, CostUSD: 0.01}}, errors.New("model overloaded")
	})
	cheap := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: "cheap answer", Usage: caudal.Usage{PromptTokens: 100, CostUSD: 0.001}}, nil
	})
	step, _ := caudal.Build(caudal.AgentStep("plan", expensive,
		caudal.WithFallback(caudal.AgentStep("plan_cheap", cheap))))
	ex, _ := caudal.New()
	res, err := ex.Execute(context.Background(), step, "plan a trip")
	fmt.Println(res.Output, err)
	fmt.Println(res.Metadata[caudal.MetaFallbackTriggered], res.Metadata[caudal.MetaOriginalError])
	fmt.Printf("tokens=%d cost=$%.3f\n", res.Usage.Tokens(), res.Usage.CostUSD)
	// Output:
	// cheap answer <nil>
	// true model overloaded
	// tokens=200 cost=$0.011
}

// A budget breach stops the run with the partial result.
func ExampleWithLimits() {
	agent := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{Output: "draft", Usage: caudal.Usage{CompletionTokens: 800}}, nil
	})
	step, _ := caudal.Build(caudal.AgentStep("draft", agent))
	ex, _ := caudal.New()
	res, err := ex.Execute(context.Background(), step, "write", caudal.WithLimits(caudal.Limits{MaxTokens: 500}))
	fmt.Println(errors.Is(err, caudal.ErrUsageLimitExceeded), res.Output, res.Usage.Tokens())
	fmt.Println(err)
	// Output:
	// true draft 800
	// caudal: step "draft": usage limit exceeded: tokens 800 > limit 500
}

// Build reports every problem of a graph at once, each with its step path.
func ExampleBuild() {
	bad := caudal.AgentStep("a", nil, caudal.WithRetries(-1),
		caudal.WithFallback(caudal.AgentStep("b", nil)))
	_, err := caudal.Build(bad)
	fmt.Println(err)
	// Output:
	// caudal: step "a": option WithRetries: retries must be >= 0, got -1
	// caudal: step "a": missing agent
	// caudal: step "a/b": missing agent
}

// A cache step serves repeated inputs without running the agent again.
func ExampleCached() {
	calls := 0
	agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		calls++
		return caudal.Reply{Output: fmt.Sprint("answer to ", in)}, nil
	})
	cache, _ := caudal.NewMemoryCache(128)
	step, _ := caudal.Build(caudal.Cached(caudal.AgentStep("ask", agent), cache))
	ex, _ := caudal.New()
	for range 3 {
		res, _ := ex.Execute(context.Background(), step, "life")
		fmt.Println(res.Output, res.Metadata[caudal.MetaCacheHit])
	}
	fmt.Println("agent calls:", calls)
	// Output:
	// answer to life false
	// answer to life true
	// answer to life true
	// agent calls: 1
}
