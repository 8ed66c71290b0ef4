package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/postgres"
	"github.com/caudal-go/caudal/runner/sqlite"
)

// typicalRecord is the record of an agent step as a run checkpoints it:
// an output of a few hundred bytes, two state writes, usage (the same as
// the sqlite and postgres packages' benchmarks append).
func typicalRecord() caudal.Record {
	return caudal.Record{
		Path: "report/research[2]/summarize", Status: caudal.StatusSucceeded,
		Output: map[string]any{
			"summary": "The tide tables for the estuary show two high waters a day, with a range of 4.2 m at springs and 1.9 m at neaps; the ebb runs longer than the flood.",
			"sources": []any{"admiralty-2024", "port-authority", "survey-1998"},
		},
		Writes:   []caudal.Write{{Path: []string{"summary"}, Value: "two high waters a day"}, {Path: []string{"meta", "sources"}, Value: 3.0}},
		Usage:    caudal.Usage{PromptTokens: 1830, CompletionTokens: 412, CostUSD: 0.0061},
		Attempts: 1, Latency: 840 * time.Millisecond,
	}
}

// benchStores are the stores the benchmarks measure, by the name of their
// dimension: memory, sqlite (a file in a temporary directory; WAL,
// synchronous=NORMAL) and postgres (a schema of its own on the tests'
// server, dropped afterwards; see pgDSN).
var benchStores = []string{"memory", "sqlite", "postgres"}

// benchStore opens a store of kind for b, closed when b ends.
func benchStore(b *testing.B, kind string) runner.Store {
	b.Helper()
	var (
		s   runner.Store
		err error
	)
	switch kind {
	case "memory":
		s = runner.NewMemoryStore()
	case "sqlite":
		s, err = sqlite.Open(filepath.Join(b.TempDir(), "caudal.db"))
	case "postgres":
		dsn := pgDSN(b)
		s, err = postgres.Open(context.Background(), dsn, postgres.WithSchema(pgSchema(b, dsn)), postgres.WithMaxConns(4))
	default:
		err = fmt.Errorf("unknown store %q", kind)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkCheckpoint measures one Append of a typical record: what a run
// pays per completed step to make it durable, on each store.
func BenchmarkCheckpoint(b *testing.B) {
	for _, kind := range benchStores {
		b.Run("store="+kind, func(b *testing.B) {
			s := benchStore(b, kind)
			ctx := context.Background()
			now := time.Now()
			run := &runner.Run{ID: "bench", Pipeline: "report", Status: runner.StatusRunning, CreatedAt: now, UpdatedAt: now, Owner: "me", LeaseUntil: now.Add(time.Hour)}
			if err := s.Create(ctx, run); err != nil {
				b.Fatal(err)
			}
			rec := typicalRecord()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Append(ctx, "bench", "me", rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
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

// BenchmarkRun measures a ten-step run end to end through Runner.Start on
// each store: created, ten records appended, its end stored. ns/step is
// the time per op over the ten steps.
func BenchmarkRun(b *testing.B) {
	for _, kind := range benchStores {
		b.Run("steps=10/store="+kind, func(b *testing.B) {
			r := benchRunner(b, benchStore(b, kind), map[string]caudal.Step{"ten": tenSteps()})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if run, err := r.Start(ctx, "ten", "in"); err != nil || run.Status != runner.StatusCompleted {
					b.Fatal(run, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10, "ns/step")
		})
	}
}

// BenchmarkResume measures a pause → persist → resume round trip on each
// store: a run of ten steps and a human-input step started, stored paused,
// then resumed with an answer and run to its end (one more step).
func BenchmarkResume(b *testing.B) {
	for _, kind := range benchStores {
		b.Run("store="+kind, func(b *testing.B) {
			p := caudal.Seq("p", tenSteps(), caudal.HumanInput("ask", "ok?"), caudal.AgentStep("after", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
				return caudal.Reply{Output: in}, nil
			})))
			r := benchRunner(b, benchStore(b, kind), map[string]caudal.Step{"p": p})
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
}

func benchRunner(b *testing.B, s runner.Store, pipelines map[string]caudal.Step) *runner.Runner {
	b.Helper()
	ex, err := caudal.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ex.Close() })
	r, err := runner.New(ex, s)
	if err != nil {
		b.Fatal(err)
	}
	for name, p := range pipelines {
		if err := r.Register(name, p); err != nil {
			b.Fatal(err)
		}
	}
	return r
}
