package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

// echoAgent returns its input: the cheapest possible agent.
type echoAgent struct{}

func (echoAgent) Run(_ context.Context, in any) (caudal.Reply, error) {
	return caudal.Reply{Output: in}, nil
}

var (
	sinkOut any
	sinkErr error
	sinkDur time.Duration
	errDown = errors.New("agent down")
)

// floorBare is what any step must do, hand-written: an interface call under
// a panic guard, a context check and two clock reads.
//
//go:noinline
func floorBare(ctx context.Context, a caudal.Agent, in any) (out any, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			err = errDown
		}
		sinkDur = time.Since(start)
	}()
	r, err := a.Run(ctx, in)
	return r.Output, err
}

var errFloorTimeout = errors.New("floor timeout")

// floorTimeout is floorBare plus a per-call deadline.
//
//go:noinline
func floorTimeout(ctx context.Context, a caudal.Agent, in any) (out any, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, time.Second, errFloorTimeout)
	defer func() {
		cancel()
		if v := recover(); v != nil {
			err = errDown
		}
		sinkDur = time.Since(start)
	}()
	r, err := a.Run(ctx, in)
	return r.Output, err
}

// BenchmarkFloor measures the hand-written floor the executor is held to.
func BenchmarkFloor(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var a caudal.Agent = echoAgent{}
	in := any("input")
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkOut, sinkErr = floorBare(ctx, a, in)
		}
	})
	b.Run("timeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkOut, sinkErr = floorTimeout(ctx, a, in)
		}
	})
}

func mustBuild(tb testing.TB, s caudal.Step) caudal.Step {
	tb.Helper()
	built, err := caudal.Build(s)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return built
}

func mustNew(tb testing.TB, opts ...caudal.Option) *caudal.Executor {
	tb.Helper()
	ex, err := caudal.New(opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = ex.Close() })
	return ex
}

func acceptAll(context.Context, any) error { return nil }

// BenchmarkExecute measures the executor's agent path: bare, with the
// success-path policies, with a slog sink, through a cache, and falling back.
func BenchmarkExecute(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := any("input")
	var runWith func(b *testing.B, ex *caudal.Executor, step caudal.Step, opts []caudal.Option, inputs ...any)
	policies := []caudal.StepOption{
		caudal.WithRetries(3), caudal.WithTimeout(time.Second), caudal.WithValidators(acceptAll),
	}
	run := func(b *testing.B, ex *caudal.Executor, step caudal.Step, inputs ...any) {
		b.Helper()
		runWith(b, ex, step, nil, inputs...)
	}
	runWith = func(b *testing.B, ex *caudal.Executor, step caudal.Step, opts []caudal.Option, inputs ...any) {
		b.Helper()
		if len(inputs) == 0 {
			inputs = []any{in}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			res, err := ex.Execute(ctx, step, inputs[i%len(inputs)], opts...)
			if err != nil {
				b.Fatal(err)
			}
			sinkOut = res.Output
			i++
		}
	}

	b.Run("bare", func(b *testing.B) {
		run(b, mustNew(b), mustBuild(b, caudal.AgentStep("bare", echoAgent{})))
	})
	b.Run("policies", func(b *testing.B) {
		run(b, mustNew(b), mustBuild(b, caudal.AgentStep("policies", echoAgent{}, policies...)))
	})
	b.Run("policies+slog", func(b *testing.B) {
		logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
		run(b, mustNew(b, caudal.WithSink(caudal.SlogSink(logger))),
			mustBuild(b, caudal.AgentStep("policies", echoAgent{}, policies...)))
	})
	b.Run("cache=hit", func(b *testing.B) {
		cache, err := caudal.NewMemoryCache(1024)
		if err != nil {
			b.Fatal(err)
		}
		step := mustBuild(b, caudal.Cached(caudal.AgentStep("cached", echoAgent{}), cache))
		run(b, mustNew(b), step, map[string]any{"q": "what is caudal?"})
	})
	b.Run("cache=miss", func(b *testing.B) {
		// A one-entry cache fed two alternating inputs never hits.
		cache, err := caudal.NewMemoryCache(1)
		if err != nil {
			b.Fatal(err)
		}
		step := mustBuild(b, caudal.Cached(caudal.AgentStep("cached", echoAgent{}), cache))
		run(b, mustNew(b), step, map[string]any{"q": "a"}, map[string]any{"q": "b"})
	})
	// A step run on a state of n keys, each a small nested value: what
	// keeping a failed attempt's writes out of the state costs when the
	// first attempt succeeds (the undo log costs what the attempt reads
	// and writes, never the state's size).
	withState := func(b *testing.B, step caudal.Step, n int) {
		seed := make(map[string]any, n)
		for k := range n {
			seed[fmt.Sprintf("key%04d", k)] = map[string]any{"n": k, "tags": []any{"a", "b"}}
		}
		st := caudal.NewState(seed)
		runWith(b, mustNew(b), step, []caudal.Option{caudal.WithState(st)})
	}
	b.Run("bare+state=64", func(b *testing.B) {
		withState(b, mustBuild(b, caudal.AgentStep("bare", echoAgent{})), 64)
	})
	for _, n := range []int{8, 64, 1024} {
		b.Run(fmt.Sprintf("retries+state=%d", n), func(b *testing.B) {
			withState(b, mustBuild(b, caudal.AgentStep("retried", echoAgent{}, caudal.WithRetries(3))), n)
		})
	}
	b.Run("fallback", func(b *testing.B) {
		failing := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errDown })
		step := mustBuild(b, caudal.AgentStep("primary", failing,
			caudal.WithFallback(caudal.AgentStep("backup", echoAgent{}))))
		run(b, mustNew(b), step)
	})
}
