package benchmarks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudwego/eino/compose"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/sony/gobreaker/v2"

	"github.com/caudal-go/caudal"
)

// work is the unit of work every library wraps: it returns its input. It is
// not inlined, so that no library's call site is optimised away.
//
//go:noinline
func work(n int) int { return n }

// incr is one step of the chain and parallel benchmarks: work plus one.
func incr(_ context.Context, n int) (int, error) { return work(n) + 1, nil }

// sum is the join of the parallel benchmarks: the sum of the branch outputs.
func sum(_ context.Context, m map[string]any) (int, error) {
	total := 0
	for k, v := range m {
		n, ok := v.(int)
		if !ok {
			return 0, fmt.Errorf("branch %s: output %T, want int", k, v)
		}
		total += n
	}
	return total, nil
}

// Sinks keep the results alive so that the compiler cannot drop the calls.
var (
	sinkInt int
	sinkAny any
	sinkErr error
)

const (
	policyRetries = 3
	policyTimeout = time.Second
	branches      = 5
)

func newCaudal(b *testing.B) *caudal.Executor {
	b.Helper()
	ex, err := caudal.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ex.Close() })
	return ex
}

func build(b *testing.B, s caudal.Step) caudal.Step {
	b.Helper()
	built, err := caudal.Build(s)
	if err != nil {
		b.Fatal(err)
	}
	return built
}

// benchCaudal checks that step maps in to want once, then times Execute.
func benchCaudal(b *testing.B, step caudal.Step, in, want int) {
	b.Helper()
	ex := newCaudal(b)
	ctx := context.Background()
	res, err := ex.Execute(ctx, step, in)
	if err != nil || res.Output != any(want) {
		b.Fatalf("caudal: got (%v, %v), want (%d, nil)", res.Output, err, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, sinkErr = ex.Execute(ctx, step, in)
		sinkAny = res.Output
	}
	if sinkErr != nil {
		b.Fatal(sinkErr)
	}
}

// benchEino checks that r maps in to want once, then times Invoke.
func benchEino(b *testing.B, r compose.Runnable[int, int], in, want int) {
	b.Helper()
	ctx := context.Background()
	got, err := r.Invoke(ctx, in)
	if err != nil || got != want {
		b.Fatalf("eino: got (%d, %v), want (%d, nil)", got, err, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkInt, sinkErr = r.Invoke(ctx, in)
	}
	if sinkErr != nil {
		b.Fatal(sinkErr)
	}
}

// benchGet checks that get returns want once, then times it. It serves the
// failsafe and gobreaker rows, whose executions are func() (int, error).
func benchGet(b *testing.B, name string, get func() (int, error), want int) {
	b.Helper()
	got, err := get()
	if err != nil || got != want {
		b.Fatalf("%s: got (%d, %v), want (%d, nil)", name, got, err, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkInt, sinkErr = get()
	}
	if sinkErr != nil {
		b.Fatal(sinkErr)
	}
}

// BenchmarkPolicies measures one call wrapped in retry (3 retries), a 1s
// timeout and a fallback, on the success path. The input is 1 and every
// fallback returns 0, so a fallback that fired would fail the check.
//
// Not like-for-like: Caudal has no circuit breaker yet, so lib=caudal runs
// retry + timeout + fallback while lib=failsafe adds failsafe's count-based
// breaker (circuitbreaker.NewWithDefaults). lib=failsafe-no-cb is the same
// failsafe stack without the breaker: the like-for-like row.
func BenchmarkPolicies(b *testing.B) {
	const in = 1
	b.Run("lib=caudal", func(b *testing.B) {
		step := build(b, caudal.Func("work", call,
			caudal.WithRetries(policyRetries),
			caudal.WithTimeout(policyTimeout),
			caudal.WithFallback(caudal.Func("fallback", zero)),
		))
		benchCaudal(b, step, in, in)
	})
	get := func() (int, error) { return work(in), nil }
	b.Run("lib=failsafe", func(b *testing.B) {
		ex := failsafe.With[int](
			fallback.NewWithResult(0),
			retrypolicy.NewBuilder[int]().WithMaxRetries(policyRetries).Build(),
			circuitbreaker.NewWithDefaults[int](),
			timeout.New[int](policyTimeout),
		)
		benchGet(b, "failsafe", func() (int, error) { return ex.Get(get) }, in)
	})
	b.Run("lib=failsafe-no-cb", func(b *testing.B) {
		ex := failsafe.With[int](
			fallback.NewWithResult(0),
			retrypolicy.NewBuilder[int]().WithMaxRetries(policyRetries).Build(),
			timeout.New[int](policyTimeout),
		)
		benchGet(b, "failsafe-no-cb", func() (int, error) { return ex.Get(get) }, in)
	})
}

// call is the policies benchmark's step for Caudal: work on the input.
func call(_ context.Context, n int) (int, error) { return work(n), nil }

// zero is the fallback: it returns 0.
func zero(context.Context, int) (int, error) { return 0, nil }

// BenchmarkBreaker measures a closed circuit breaker around one call.
//
// Caudal has no circuit breaker yet (ErrCircuitOpen is reserved for it), so
// this dimension has a peer row only.
func BenchmarkBreaker(b *testing.B) {
	const in = 1
	b.Run("lib=gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench"})
		get := func() (int, error) { return work(in), nil }
		benchGet(b, "gobreaker", func() (int, error) { return cb.Execute(get) }, in)
	})
}

// BenchmarkChain measures a sequence of N steps, each incrementing an int:
// caudal.Seq of caudal.Func[int, int] against an eino chain of
// InvokableLambdas, each built or compiled once, the run timed.
func BenchmarkChain(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("lib=caudal/steps=%d", n), func(b *testing.B) {
			steps := make([]caudal.Step, n)
			for i := range steps {
				steps[i] = caudal.Func(fmt.Sprint("s", i), incr)
			}
			benchCaudal(b, build(b, caudal.Seq("chain", steps...)), 0, n)
		})
		b.Run(fmt.Sprintf("lib=eino/steps=%d", n), func(b *testing.B) {
			chain := compose.NewChain[int, int]()
			for range n {
				chain.AppendLambda(compose.InvokableLambda(incr))
			}
			r, err := chain.Compile(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			benchEino(b, r, 0, n)
		})
	}
}

// BenchmarkParallel measures a fan-out of one int to five incrementing
// branches and a join step summing their outputs (input 1, result 10).
// Caudal: a caudal.Parallel of five Branches (its output is the map from
// branch name to output) followed by a typed join Func, in a caudal.Seq.
// Eino: a chain of compose.NewParallel with five lambdas followed by a join
// lambda over map[string]any.
func BenchmarkParallel(b *testing.B) {
	const in, want = 1, branches * 2
	b.Run(fmt.Sprintf("lib=caudal/branches=%d", branches), func(b *testing.B) {
		opts := make([]caudal.StepOption, branches)
		for i := range opts {
			opts[i] = caudal.Branch(fmt.Sprint("b", i), caudal.Func("incr", incr))
		}
		step := caudal.Seq("fanout",
			caudal.Parallel("parallel", opts...),
			caudal.Func("join", sum),
		)
		benchCaudal(b, build(b, step), in, want)
	})
	b.Run(fmt.Sprintf("lib=eino/branches=%d", branches), func(b *testing.B) {
		par := compose.NewParallel()
		for i := range branches {
			par.AddLambda(fmt.Sprint("b", i), compose.InvokableLambda(incr))
		}
		chain := compose.NewChain[int, int]()
		chain.AppendParallel(par)
		chain.AppendLambda(compose.InvokableLambda(sum))
		r, err := chain.Compile(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		benchEino(b, r, in, want)
	})
}
