// Command quickstart runs a small Caudal pipeline durably, on the embedded
// default store (a SQLite file): a flaky "planner" agent with retries, a
// validator and a fallback; two research branches in parallel whose
// findings merge into the run's state; a cached summarizer; and a human
// approval that pauses the run, kept in the file, which is then resumed
// with an answer — all under a token budget, with every event logged
// through log/slog: finished steps and failures as text on standard output,
// and every event, debug ones included, as JSON lines to an event log that
// `caudal advise` reads to recommend an optimization config.
//
// Usage:
//
//	go run ./examples/quickstart [-db caudal.db] [-events caudal-events.jsonl]
//	go run ./cmd/caudal advise caudal-events.jsonl
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/sqlite"
)

func main() {
	flag.Parse()
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

// dbPath is the SQLite file runs are kept in; eventsPath the JSON event
// log, next to it unless given.
var (
	dbPath     = flag.String("db", "caudal.db", "the SQLite file the runs are kept in")
	eventsPath = flag.String("events", "", "the JSON event log `file` (default caudal-events.jsonl next to -db); each run is appended")
)

func run(ctx context.Context) error {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	events := *eventsPath
	if events == "" {
		events = filepath.Join(filepath.Dir(*dbPath), "caudal-events.jsonl")
	}
	logFile, err := os.OpenFile(events, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	// Every event, debug ones included, as one JSON object a line: the
	// recorded run `caudal advise` reads.
	eventLog := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ex, err := caudal.New(
		caudal.WithSink(caudal.SlogSink(logger)),
		caudal.WithSink(caudal.SlogSink(eventLog)),
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

	// Runs are durable: each is kept, step by step, in an embedded SQLite
	// file, so a crash or a restart loses no completed step, and a paused
	// run can be resumed by another process, hours later.
	store, err := sqlite.Open(*dbPath)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	runs, err := runner.New(ex, store)
	if err != nil {
		return err
	}
	if err := runs.Register("report", pipeline); err != nil {
		return err
	}

	run, err := runs.Start(ctx, "report", map[string]any{"topic": "solid-state batteries"})
	if err != nil {
		return err
	}
	if run.Status != runner.StatusPaused {
		return fmt.Errorf("expected run %s to pause for approval, it is %s (%s)", run.ID, run.Status, run.Error)
	}
	var state map[string]any
	if err := json.Unmarshal(run.FinalState, &state); err != nil {
		return err
	}
	fmt.Printf("\nrun %s is %s, kept in %s\n", run.ID, run.Status, *dbPath)
	fmt.Printf("found:   web=%v papers=%v\n", state["found_web"], state["found_papers"])
	fmt.Printf("paused:  %s asks %q; answering \"yes\"\n\n", run.Pause.Path, run.Pause.Message)

	run, err = runs.Resume(ctx, run.ID, runner.Answer{Value: "yes", By: "quickstart"})
	if err != nil {
		return err
	}
	var output any
	if err := json.Unmarshal(run.Output, &output); err != nil {
		return err
	}
	fmt.Printf("\nresult:  %v (%s, %d tokens, $%.4f)\n", output, run.Status, run.Usage.Tokens(), run.Usage.CostUSD)
	all, err := runs.List(ctx, runner.Filter{Pipeline: "report"})
	if err != nil {
		return err
	}
	fmt.Printf("%s keeps %d run(s) of this pipeline: go run ./examples/quickstart again adds one\n", *dbPath, len(all))
	fmt.Printf("events:  logged to %s; go run ./cmd/caudal advise %s recommends an optimization config\n", events, events)
	return nil
}
