package optimize_test

import (
	"context"
	"fmt"
	"testing"

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
	const batch = 256
	inputs := make([]any, batch)
	for i := range inputs {
		inputs[i] = map[string]any{"test": "cache", "value": i + 1}
	}
	for _, c := range []struct {
		name string
		cfg  *optimize.Config
	}{{"baseline", nil}, {"cache-optimization", component("cache-optimization")}} {
		b.Run("impl="+c.name, func(b *testing.B) {
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
