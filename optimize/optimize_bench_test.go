package optimize_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// benchExecute measures executes of step with opts on an executor built
// with newOpts and, unless nil, the layer cfg chooses.
func benchExecute(b *testing.B, cfg *optimize.Config, step caudal.Step, opts []caudal.Option, newOpts ...caudal.Option) {
	if cfg != nil {
		newOpts = append(newOpts, optimize.Use(*cfg))
	}
	ex, err := caudal.New(newOpts...)
	if err != nil {
		b.Fatal(err)
	}
	defer mustClose(b, ex)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ex.Execute(ctx, step, "in", opts...); err != nil {
			b.Fatal(err)
		}
	}
}

func autoConfig() *optimize.Config {
	cfg := optimize.Auto()
	return &cfg
}

func component(name string) *optimize.Config {
	cfg, ok := optimize.Component(name)
	if !ok {
		panic(name)
	}
	return &cfg
}

// BenchmarkObjectPool is the memory workload (8 retried steps, fallbacks,
// a sink) on the baseline and with the object pool.
func BenchmarkObjectPool(b *testing.B) {
	step := memoryPipeline(b)
	for _, c := range []struct {
		name string
		cfg  *optimize.Config
	}{{"baseline", nil}, {"object-pool", component("object-pool")}} {
		b.Run("impl="+c.name, func(b *testing.B) {
			benchExecute(b, c.cfg, step, nil, caudal.WithSink(discard{}))
		})
	}
}

// BenchmarkContextManager is the context workload (an 8-way fan-out over
// a state of 1,000 nested keys, 2 writes per branch), and a retried step
// on states of 8 and 1,024 keys, on the baseline and with the context
// manager.
func BenchmarkContextManager(b *testing.B) {
	fan := fanOut8(b)
	retried, err := caudal.Build(caudal.AgentStep("retried", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: in}, nil
	}), caudal.WithRetries(3)))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  *optimize.Config
	}{{"baseline", nil}, {"context-manager", component("context-manager")}} {
		b.Run("fanout=8/keys=1000/impl="+c.name, func(b *testing.B) {
			benchExecute(b, c.cfg, fan, []caudal.Option{caudal.WithState(wideState(1000))})
		})
		for _, n := range []int{8, 1024} {
			b.Run(fmt.Sprintf("retries+state=%d/impl=%s", n, c.name), func(b *testing.B) {
				benchExecute(b, c.cfg, retried, []caudal.Option{caudal.WithState(wideState(n))})
			})
		}
	}
}

// BenchmarkTelemetryCheapSink is the memory workload, whose sink only
// counts, on the baseline and with the telemetry: what the component costs
// where its workload (a slow sink) is absent.
func BenchmarkTelemetryCheapSink(b *testing.B) {
	step := memoryPipeline(b)
	for _, c := range []struct {
		name string
		cfg  *optimize.Config
	}{{"baseline", nil}, {"telemetry", component("telemetry")}} {
		b.Run("impl="+c.name, func(b *testing.B) {
			benchExecute(b, c.cfg, step, nil, caudal.WithSink(discard{}))
		})
	}
}

// BenchmarkCacheMissThenHit is the seed suite's cache shape: per
// iteration a fresh input misses, then hits once; the cached step is
// rebuilt over an empty cache every 256 iterations (as the suite rebuilds
// its workload). The cache optimization cannot win much here (no input is
// hit twice): what it must not do is cost.
func BenchmarkCacheMissThenHit(b *testing.B) {
	echo := caudal.AgentFunc(func(_ context.Context, _ any) (caudal.Reply, error) { return caudal.Reply{Output: "output"}, nil })
	inputs := make([]any, 256)
	for i := range inputs {
		inputs[i] = map[string]any{"test": "cache", "value": i + 1}
	}
	for _, batch := range []int{10, 256} {
		for _, c := range []struct {
			name string
			cfg  *optimize.Config
		}{{"baseline", nil}, {"cache-optimization", component("cache-optimization")}, {"auto", autoConfig()}} {
			b.Run(fmt.Sprintf("batch=%d/impl=%s", batch, c.name), func(b *testing.B) {
				var opts []caudal.Option
				if c.cfg != nil {
					opts = append(opts, optimize.Use(*c.cfg))
				}
				ex := newExecutor(b, opts...)
				ctx := context.Background()
				var step caudal.Step
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					if i%batch == 0 {
						cache, err := caudal.NewMemoryCache(1 << 16)
						if err != nil {
							b.Fatal(err)
						}
						step = build(b, caudal.Cached(caudal.AgentStep("cached", echo), cache))
					}
					in := inputs[i%batch]
					i++
					for range 2 {
						if _, err := ex.Execute(ctx, step, in); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// benchFailing measures executes of step that fail (as they must: err
// must match want) on an executor with opts.
func benchFailing(b *testing.B, step caudal.Step, want error, opts ...caudal.Option) {
	ex := newExecutor(b, opts...)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ex.Execute(ctx, step, "in"); !errors.Is(err, want) {
			b.Fatalf("Execute = %v; want %v", err, want)
		}
	}
}

// BenchmarkCircuitBreaker is the circuit breaker's cost and win. baseline
// and closed execute one healthy bare agent step without and with the
// breaker: the difference is the closed path's overhead. timeout is the
// outage without a breaker — each call waits out a 1 ms timeout — and
// open the outage with the breaker open: a fast failure.
func BenchmarkCircuitBreaker(b *testing.B) {
	healthy := build(b, caudal.AgentStep("healthy", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: in}, nil
	})))
	var calls atomic.Int64
	down := caudal.AgentFunc(func(ctx context.Context, _ any) (caudal.Reply, error) {
		calls.Add(1)
		<-ctx.Done() // the backend does not answer
		return caudal.Reply{}, ctx.Err()
	})
	dead := build(b, caudal.AgentStep("dead", down, caudal.WithTimeout(time.Millisecond)))
	breaker := optimize.Use(optimize.Config{CircuitBreaker: optimize.CircuitBreakerConfig{Enabled: true, ProbeEvery: -1, ProbeInterval: time.Hour}})
	b.Run("baseline", func(b *testing.B) { benchExecute(b, nil, healthy, nil) })
	b.Run("closed", func(b *testing.B) { benchExecute(b, nil, healthy, nil, breaker) })
	b.Run("timeout", func(b *testing.B) { benchFailing(b, dead, caudal.ErrTimeout) })
	b.Run("open", func(b *testing.B) {
		ex := newExecutor(b, breaker)
		for range 3 { // trip it
			if _, err := ex.Execute(context.Background(), dead, "in"); !errors.Is(err, caudal.ErrTimeout) {
				b.Fatalf("Execute = %v; want a timeout", err)
			}
		}
		if st, _ := optimize.StatsOf(ex); st.Circuits["dead"] != "open" {
			b.Fatalf("after 3 timeouts the circuit is %q; want open", st.Circuits["dead"])
		}
		ctx := context.Background()
		tripped := calls.Load()
		b.ReportAllocs()
		for b.Loop() {
			// A refusal the step's 1ms timeout outlived (the goroutine was
			// descheduled) is reported as the timeout: the core's timeout
			// layer replaces whatever the attempt returned.
			if _, err := ex.Execute(ctx, dead, "in"); !errors.Is(err, caudal.ErrCircuitOpen) && !errors.Is(err, caudal.ErrTimeout) {
				b.Fatalf("Execute = %v; want ErrCircuitOpen", err)
			}
		}
		if n := calls.Load() - tripped; n != 0 {
			st, _ := optimize.StatsOf(ex)
			b.Fatalf("the open circuit (now %q) let %d calls through", st.Circuits["dead"], n)
		}
	})
}

// BenchmarkErrorHandling is the failure-path workload: a step retried 3
// times with a 1 ms backoff whose agent answers 400, without and with
// error handling (which makes one attempt).
func BenchmarkErrorHandling(b *testing.B) {
	var calls atomic.Int32
	step := build(b, errorWorkload(&calls))
	b.Run("impl=baseline", func(b *testing.B) { benchFailing(b, step, errBadRequest) })
	b.Run("impl=error-handling", func(b *testing.B) {
		benchFailing(b, step, errBadRequest, optimize.Use(optimize.Config{ErrorHandling: optimize.ErrorHandlingConfig{Enabled: true}}))
	})
}
