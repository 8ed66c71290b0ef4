package runner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// typicalRecord is the record of an agent step that answered with a short
// text and wrote it to the state.
func typicalRecord(i int) caudal.Record {
	out := fmt.Sprintf("a short answer from the model, number %d", i)
	return caudal.Record{
		Path: "pipeline/step", Status: caudal.StatusSucceeded, Output: out, Attempts: 1, Latency: 120 * time.Millisecond,
		Usage:  caudal.Usage{PromptTokens: 420, CompletionTokens: 64, CostUSD: 0.0012},
		Writes: []caudal.Write{{Path: []string{"answer"}, Value: out}},
	}
}

// BenchmarkCheckpoint measures one Append of a typical record.
func BenchmarkCheckpoint(b *testing.B) {
	b.Run("store=memory", func(b *testing.B) {
		s := runner.NewMemoryStore()
		defer func() { _ = s.Close() }()
		ctx := context.Background()
		if err := s.Create(ctx, &runner.Run{ID: "r", Status: runner.StatusRunning, Owner: "o", LeaseUntil: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		rec := typicalRecord(1)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Append(ctx, "r", "o", rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// tenSteps is a sequence of ten agent steps, each writing the state.
func tenSteps() caudal.Step {
	steps := make([]caudal.Step, 10)
	for i := range steps {
		name := fmt.Sprint("s", i)
		steps[i] = caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			caudal.StateFrom(ctx).Set(name, "done")
			return caudal.Reply{Output: in, Usage: caudal.Usage{PromptTokens: 10, CompletionTokens: 5}}, nil
		}))
	}
	return caudal.Seq("ten", steps...)
}

// BenchmarkRun measures a ten-step run end to end: created, ten records
// appended, its end stored.
func BenchmarkRun(b *testing.B) {
	b.Run("steps=10/store=memory", func(b *testing.B) {
		r, done := benchRunner(b, map[string]caudal.Step{"ten": tenSteps()})
		defer done()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if run, err := r.Start(ctx, "ten", "in"); err != nil || run.Status != runner.StatusCompleted {
				b.Fatal(run, err)
			}
		}
	})
}

// BenchmarkResume measures a pause, stored, then resumed to the end.
func BenchmarkResume(b *testing.B) {
	b.Run("store=memory", func(b *testing.B) {
		p := caudal.Seq("p", tenSteps(), caudal.HumanInput("ask", "ok?"), caudal.AgentStep("after", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			return caudal.Reply{Output: in}, nil
		})))
		r, done := benchRunner(b, map[string]caudal.Step{"p": p})
		defer done()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			run, err := r.Start(ctx, "p", "in")
			if err != nil || run.Status != runner.StatusPaused {
				b.Fatal(run, err)
			}
			if run, err = r.Resume(ctx, run.ID, runner.Answer{Value: "yes"}); err != nil || run.Status != runner.StatusCompleted {
				b.Fatal(run, err)
			}
		}
	})
}

func benchRunner(b *testing.B, pipelines map[string]caudal.Step) (*runner.Runner, func()) {
	ex, err := caudal.New()
	if err != nil {
		b.Fatal(err)
	}
	s := runner.NewMemoryStore()
	r, err := runner.New(ex, s)
	if err != nil {
		b.Fatal(err)
	}
	for name, p := range pipelines {
		if err := r.Register(name, p); err != nil {
			b.Fatal(err)
		}
	}
	return r, func() { _ = s.Close(); _ = ex.Close() }
}
