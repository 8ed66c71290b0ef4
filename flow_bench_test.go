package caudal_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/caudal-go/caudal"
)

// identity is the bare Func the control-flow benchmarks chain.
func identity(name string) caudal.Step {
	return caudal.Func(name, func(_ context.Context, in any) (any, error) { return in, nil })
}

func benchStep(b *testing.B, step caudal.Step, in any, opts ...caudal.Option) {
	b.Helper()
	ex := mustNew(b)
	built := mustBuild(b, step)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := ex.Execute(ctx, built, in, opts...)
		if err != nil {
			b.Fatal(err)
		}
		sinkOut = res.Output
	}
}

// BenchmarkSeq measures a sequence of bare steps: startup plus per step.
func BenchmarkSeq(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprint("steps=", n), func(b *testing.B) {
			steps := make([]caudal.Step, n)
			for i := range steps {
				steps[i] = identity(fmt.Sprint("s", i))
			}
			benchStep(b, caudal.Seq("seq", steps...), "input")
		})
	}
}

// BenchmarkJournal measures journaling: BenchmarkSeq/steps=10 with a
// checkpointer that does nothing, so every step instance makes a record.
func BenchmarkJournal(b *testing.B) {
	b.Run("steps=10", func(b *testing.B) {
		steps := make([]caudal.Step, 10)
		for i := range steps {
			steps[i] = identity(fmt.Sprint("s", i))
		}
		noop := caudal.CheckpointFunc(func(context.Context, caudal.Record) error { return nil })
		ex := mustNew(b, caudal.WithCheckpointer(noop))
		built := mustBuild(b, caudal.Seq("seq", steps...))
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			res, err := ex.Execute(ctx, built, "input")
			if err != nil {
				b.Fatal(err)
			}
			sinkOut = res.Output
		}
	})
}

// BenchmarkParallel measures a fan-out of bare branches and the join.
func BenchmarkParallel(b *testing.B) {
	b.Run("branches=5", func(b *testing.B) {
		opts := make([]caudal.StepOption, 5)
		for i := range opts {
			opts[i] = caudal.Branch(fmt.Sprint("b", i), identity("id"))
		}
		benchStep(b, caudal.Parallel("par", opts...), "input")
	})
}

// BenchmarkLoop measures a loop of bare iterations.
func BenchmarkLoop(b *testing.B) {
	b.Run("iters=10", func(b *testing.B) {
		benchStep(b, caudal.Loop("loop", identity("body"), caudal.WithMaxIterations(10)), "input")
	})
}

// BenchmarkMap measures a sequential map of bare items.
func BenchmarkMap(b *testing.B) {
	b.Run("items=100", func(b *testing.B) {
		items := make([]any, 100)
		for i := range items {
			items[i] = i
		}
		benchStep(b, caudal.Map("map", identity("body")), items)
	})
}

// BenchmarkIsolation measures the baseline state isolation: a parallel step
// of two bare branches over a state of N keys, each branch deep-copying the
// state and the join diffing it back (ContextUpdate).
func BenchmarkIsolation(b *testing.B) {
	for _, n := range []int{8, 64, 1024} {
		b.Run(fmt.Sprint("keys=", n), func(b *testing.B) {
			initial := make(map[string]any, n)
			for i := range n {
				initial[fmt.Sprint("key", i)] = map[string]any{"n": float64(i), "tags": []any{"a", "b"}}
			}
			st := caudal.NewState(initial)
			step := caudal.Parallel("par", caudal.Branch("a", identity("id")), caudal.Branch("b", identity("id")),
				caudal.WithMerge(caudal.ContextUpdate))
			benchStep(b, step, "input", caudal.WithState(st))
		})
	}
}
