package optimize_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/optimize"
)

// mapSite is the step the direct tests of the limiter drive.
var mapSite = engine.Site{Node: new(int), Path: "m", ID: engine.NewSiteID()}

// adaptiveOn turns the adaptive resource manager on with the knobs of a.
func adaptiveOn(a optimize.AdaptiveConfig) optimize.Config {
	a.Enabled = true
	return optimize.Config{AdaptiveResourceManager: a}
}

// items returns n map items.
func items(n int) []any {
	in := make([]any, n)
	for i := range in {
		in[i] = i
	}
	return in
}

// sleeper is an agent that waits d, as I/O would, and echoes its input.
func sleeper(d time.Duration) caudal.Agent {
	return caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		select {
		case <-time.After(d):
			return caudal.Reply{Output: in}, nil
		case <-ctx.Done():
			return caudal.Reply{}, context.Cause(ctx)
		}
	})
}

// limitOf returns the limit StatsOf reports for the step at path.
func limitOf(t *testing.T, ex *caudal.Executor, path string) int {
	t.Helper()
	st, ok := optimize.StatsOf(ex)
	if !ok {
		t.Fatal("StatsOf = _, false; want the layer's figures")
	}
	return st.Limits[path]
}

// driver keeps the limit of a full, as a fan-out with more items than
// the limit does, in a synctest bubble.
type driver struct {
	a    *optimize.Adaptive
	cap  int
	held int
}

func newDriver(a *optimize.Adaptive, cap int) *driver {
	a.Workers(mapSite, cap, 1<<20)
	return &driver{a: a, cap: cap}
}

// fill takes every free slot.
func (d *driver) fill(t *testing.T) {
	for d.held < d.a.Limits()["m"] {
		if err := d.a.Acquire(t.Context(), mapSite, d.cap); err != nil {
			t.Fatalf("Acquire under the limit = %v; want nil", err)
		}
		d.held++
	}
}

// round drives one round: lat after the slots held were taken, each is
// released with lat and err, and taken again at once (more items wait).
func (d *driver) round(t *testing.T, lat time.Duration, err error) {
	t.Helper()
	d.fill(t)
	time.Sleep(lat)
	for range d.held {
		d.a.Release(mapSite, lat, err)
		d.held--
		d.fill(t)
	}
}

func TestAdaptiveKnobs(t *testing.T) {
	const ms = time.Millisecond
	errItem := errors.New("item failed")
	good := func(t *testing.T, d *driver, rounds int) {
		for range rounds {
			d.round(t, 10*ms, nil)
		}
	}
	tests := []struct {
		name string
		give optimize.AdaptiveConfig
		cap  int
		run  func(t *testing.T, d *driver)
		want int // the limit in force after run
	}{
		{"InitialLimit: default, the step's cap", optimize.AdaptiveConfig{}, 8, func(*testing.T, *driver) {}, 8},
		{"InitialLimit: set", optimize.AdaptiveConfig{InitialLimit: 3}, 8, func(*testing.T, *driver) {}, 3},
		{"InitialLimit: the default within MaxLimit", optimize.AdaptiveConfig{MaxLimit: 5}, 8, func(*testing.T, *driver) {}, 5},
		{"MaxLimit: default 64", optimize.AdaptiveConfig{}, 4, func(t *testing.T, d *driver) { good(t, d, 12) }, 64},
		{"MaxLimit: set", optimize.AdaptiveConfig{MaxLimit: 20}, 4, func(t *testing.T, d *driver) { good(t, d, 12) }, 20},
		{"RespectStepLimits: the cap is the ceiling", optimize.AdaptiveConfig{RespectStepLimits: true}, 4, func(t *testing.T, d *driver) { good(t, d, 12) }, 4},
		{"slow start doubles per round", optimize.AdaptiveConfig{}, 8, func(t *testing.T, d *driver) { good(t, d, 2) }, 32},
		{
			"MinLimit: default 1",
			optimize.AdaptiveConfig{},
			16,
			func(t *testing.T, d *driver) {
				for range 30 {
					d.round(t, 10*ms, errItem)
				}
			}, 1,
		},
		{
			"MinLimit: set",
			optimize.AdaptiveConfig{MinLimit: 6},
			16,
			func(t *testing.T, d *driver) {
				for range 30 {
					d.round(t, 10*ms, errItem)
				}
			}, 6,
		},
		{
			"Backoff: default 0.9, the first cut halves",
			optimize.AdaptiveConfig{},
			20,
			func(t *testing.T, d *driver) {
				d.round(t, 10*ms, errItem) // 20 → 10
				d.round(t, 10*ms, nil)     // the items taken at the cut tell nothing
				d.round(t, 10*ms, errItem) // 10 → 9
			}, 9,
		},
		{
			"Backoff: set",
			optimize.AdaptiveConfig{Backoff: 0.3},
			20,
			func(t *testing.T, d *driver) {
				d.round(t, 10*ms, errItem) // 20 → 6
				d.round(t, 10*ms, nil)
				d.round(t, 10*ms, errItem) // 6 → 1
			}, 1,
		},
		{
			"a cancelled item does not cut",
			optimize.AdaptiveConfig{MaxLimit: 8},
			8,
			func(t *testing.T, d *driver) {
				d.round(t, 10*ms, fmt.Errorf("item: %w", context.Canceled))
			}, 8,
		},
		{
			"Tolerance: default 1.5, 1.4× the minimum is within",
			optimize.AdaptiveConfig{},
			8,
			func(t *testing.T, d *driver) {
				d.round(t, 10*ms, nil) // 8 → 16
				d.round(t, 14*ms, nil) // 16 → 32
			}, 32,
		},
		{
			"Tolerance: set, 1.4× the minimum cuts",
			optimize.AdaptiveConfig{Tolerance: 1.2},
			8,
			func(t *testing.T, d *driver) {
				d.round(t, 10*ms, nil) // 8 → 16
				d.round(t, 14*ms, nil) // 16 → 8
			}, 8,
		},
		{
			"Tolerance: default 1.5, 1.6× the minimum cuts",
			optimize.AdaptiveConfig{},
			8,
			func(t *testing.T, d *driver) {
				d.round(t, 10*ms, nil) // 8 → 16
				d.round(t, 16*ms, nil) // 16 → 8
			}, 8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := optimize.NewAdaptive(tt.give)
				tt.run(t, newDriver(a, tt.cap))
				if got := a.Limits()["m"]; got != tt.want {
					t.Errorf("limit = %d; want %d", got, tt.want)
				}
			})
		})
	}
}

// TestAdaptiveUnsaturated checks the in-flight check: a limit that holds
// nothing back is neither raised nor cut for latency.
func TestAdaptiveUnsaturated(t *testing.T) {
	tests := []struct {
		name string
		give []time.Duration // latencies, one item in flight at a time
		want int
	}{
		{"good latencies do not raise it", []time.Duration{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, 4},
		{"bad latencies do not cut it", []time.Duration{10, 100, 100, 100, 100, 100, 100, 100, 100}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := optimize.NewAdaptive(optimize.AdaptiveConfig{})
				for _, lat := range tt.give {
					if err := a.Acquire(t.Context(), mapSite, 4); err != nil {
						t.Fatalf("Acquire = %v", err)
					}
					time.Sleep(lat * time.Millisecond)
					a.Release(mapSite, lat*time.Millisecond, nil)
				}
				if got := a.Limits()["m"]; got != tt.want {
					t.Errorf("limit = %d; want %d", got, tt.want)
				}
			})
		})
	}
}

// TestAdaptiveSettlesAfterCut checks the rounds after cuts: slow start
// ends halving the limit, which then probes upward by 1, 2, 4…; after a
// later cut it comes back halfway to the limit of the cut, holds one
// below it for 8 rounds, then probes it again; a probe that fails where
// the last one did doubles the plateau.
func TestAdaptiveSettlesAfterCut(t *testing.T) {
	const ms = time.Millisecond
	errItem := errors.New("failed")
	synctest.Test(t, func(t *testing.T) {
		a := optimize.NewAdaptive(optimize.AdaptiveConfig{InitialLimit: 20})
		d := newDriver(a, 20)
		var got []int
		step := func(err error) {
			d.round(t, 10*ms, err)
			got = append(got, a.Limits()["m"])
		}
		step(nil)     // slow start: 20 → 40
		step(errItem) // 40 → 20, which slow start knows good
		for range 5 {
			step(nil) // 20 (the items taken at the cut tell nothing), then 21, 23, 27, 35
		}
		step(errItem) // 35 → 31
		for range 11 {
			step(nil) // halfway to 34: 32, 33, 34, then 8 rounds at 34, then 35
		}
		step(errItem) // the probe fails where the last cut was: 31
		for range 19 {
			step(nil) // 32, 33, 34, then 16 rounds at 34, then 35
		}
		want := []int{40, 20, 20, 21, 23, 27, 35, 31, 32, 33, 34, 34, 34, 34, 34, 34, 34, 34, 35, 31, 32, 33, 34}
		for range 15 {
			want = append(want, 34)
		}
		want = append(want, 35)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("limits, round by round =\n%v; want\n%v", got, want)
		}
	})
}

func TestAdaptiveAcquireHonoursCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := optimize.NewAdaptive(optimize.AdaptiveConfig{InitialLimit: 1, RespectStepLimits: true})
		if err := a.Acquire(t.Context(), mapSite, 1); err != nil {
			t.Fatalf("first Acquire = %v; want nil", err)
		}
		errCause := errors.New("gave up")
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(errCause)
		if err := a.Acquire(ctx, mapSite, 1); !errors.Is(err, errCause) {
			t.Errorf("Acquire over the limit, ctx cancelled = %v; want the cause %v", err, errCause)
		}
		tctx, tcancel := context.WithTimeoutCause(t.Context(), time.Second, errCause)
		defer tcancel()
		start := time.Now()
		if err := a.Acquire(tctx, mapSite, 1); !errors.Is(err, errCause) || time.Since(start) != time.Second {
			t.Errorf("Acquire over the limit = %v after %v; want the cause after 1s", err, time.Since(start))
		}
		// A waiter is admitted by a release.
		done := make(chan error)
		go func() { done <- a.Acquire(t.Context(), mapSite, 1) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Acquire over the limit returned %v; want it to wait", err)
		default:
		}
		a.Release(mapSite, time.Millisecond, nil)
		if err := <-done; err != nil {
			t.Errorf("Acquire after a release = %v; want nil", err)
		}
		a.Release(mapSite, time.Millisecond, nil)
	})
}

func TestAdaptiveGrowsForIO(t *testing.T) {
	tests := []struct {
		name      string
		give      optimize.AdaptiveConfig
		wantLimit func(int) bool
		wantDesc  string
	}{
		{"past the step's cap", optimize.AdaptiveConfig{}, func(l int) bool { return l >= 16 }, ">= 16"},
		{"RespectStepLimits: at the cap", optimize.AdaptiveConfig{RespectStepLimits: true}, func(l int) bool { return l == 4 }, "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ex := newExecutor(t, optimize.Use(adaptiveOn(tt.give)))
				step := build(t, caudal.Map("fetch", caudal.AgentStep("io", sleeper(2*time.Millisecond)), caudal.WithConcurrency(4)))
				for range 4 {
					if _, err := ex.Execute(t.Context(), step, items(128)); err != nil {
						t.Fatalf("Execute = %v", err)
					}
				}
				start := time.Now()
				if _, err := ex.Execute(t.Context(), step, items(128)); err != nil {
					t.Fatalf("Execute = %v", err)
				}
				took := time.Since(start)
				if l := limitOf(t, ex, "fetch"); !tt.wantLimit(l) {
					t.Errorf("limit = %d; want %s", l, tt.wantDesc)
				}
				t.Logf("128 items of 2ms at cap 4: %v (the cap alone: 64ms)", took)
			})
		})
	}
}

// downstream is a service of limited capacity: a call that finds a free
// slot takes 2ms; past capacity a call queues, then takes 3ms.
type downstream struct{ slots chan struct{} }

func (d *downstream) call(ctx context.Context, in any) (caudal.Reply, error) {
	service := 2 * time.Millisecond
	select {
	case d.slots <- struct{}{}:
	default:
		select {
		case d.slots <- struct{}{}:
			service += time.Millisecond
		case <-ctx.Done():
			return caudal.Reply{}, context.Cause(ctx)
		}
	}
	defer func() { <-d.slots }()
	time.Sleep(service)
	return caudal.Reply{Output: in}, nil
}

func TestAdaptiveSettlesNearCapacity(t *testing.T) {
	const capacity = 8
	synctest.Test(t, func(t *testing.T) {
		d := &downstream{slots: make(chan struct{}, capacity)}
		fixed := build(t, caudal.Map("call", caudal.AgentStep("api", caudal.AgentFunc(d.call)), caudal.WithConcurrency(capacity)))
		learning := build(t, caudal.Map("call", caudal.AgentStep("api", caudal.AgentFunc(d.call)), caudal.WithConcurrency(2)))
		run := func(ex *caudal.Executor, step caudal.Step, executions int) time.Duration {
			start := time.Now()
			for range executions {
				if _, err := ex.Execute(t.Context(), step, items(256)); err != nil {
					t.Fatalf("Execute = %v", err)
				}
			}
			return time.Since(start)
		}
		best := run(newExecutor(t), fixed, 10)
		ex := newExecutor(t, optimize.Use(adaptiveOn(optimize.AdaptiveConfig{})))
		run(ex, learning, 10) // learning, from a cap of 2
		var limits []int
		for range 10 {
			run(ex, learning, 1)
			limits = append(limits, limitOf(t, ex, "call"))
		}
		took := run(ex, learning, 10)
		for _, l := range limits {
			if l < capacity-2 || l > capacity+1 {
				t.Errorf("limits over 10 executions = %v; want each within [%d, %d]", limits, capacity-2, capacity+1)
				break
			}
		}
		if took > best*5/4 {
			t.Errorf("10 executions took %v; want within 25%% of the best fixed limit's %v", took, best)
		}
		t.Logf("limits %v; 10 executions %v, best fixed %v", limits, took, best)
	})
}

// spin computes for about d without blocking.
func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

func TestAdaptiveCPUBoundDoesNotInflate(t *testing.T) {
	cap := runtime.GOMAXPROCS(0) + 2
	ex := newExecutor(t, optimize.Use(adaptiveOn(optimize.AdaptiveConfig{})))
	cpu := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		spin(20 * time.Microsecond)
		return caudal.Reply{Output: in}, nil
	})
	step := build(t, caudal.Map("compute", caudal.AgentStep("cpu", cpu), caudal.WithConcurrency(cap)))
	// 64 items: each worker runs well under the scheduler's 10ms time
	// slice even under the race detector. Past it, the scheduler preempts
	// goroutines holding a slot and runs others, which then find the limit
	// full: time-slicing makes a CPU-bound map look limited.
	for range 20 {
		if _, err := ex.Execute(t.Context(), step, items(64)); err != nil {
			t.Fatalf("Execute = %v", err)
		}
	}
	if l := limitOf(t, ex, "compute"); l > cap+2 {
		t.Errorf("limit after 20 CPU-bound maps = %d; want about the cap %d (no more items run than cores)", l, cap)
	}
}

// heap is a memory reading the test sets.
type heap struct{ v atomic.Uint64 }

func (h *heap) read() uint64 { return h.v.Load() }

func TestAdaptivePressure(t *testing.T) {
	tests := []struct {
		name         string
		give         optimize.AdaptiveConfig
		giveHeap     uint64
		wait         time.Duration
		wantPressure bool
		wantLimit    int
	}{
		{"over the default threshold", optimize.AdaptiveConfig{MemoryLimit: 1000}, 900, 150 * time.Millisecond, true, 8},
		{"under the default threshold", optimize.AdaptiveConfig{MemoryLimit: 1000}, 800, 150 * time.Millisecond, false, 16},
		{"MemoryLimit: higher", optimize.AdaptiveConfig{MemoryLimit: 2000}, 900, 150 * time.Millisecond, false, 16},
		{"PressureThreshold: lower", optimize.AdaptiveConfig{MemoryLimit: 1000, PressureThreshold: 0.5}, 600, 150 * time.Millisecond, true, 8},
		{"PressureInterval: before the first reading", optimize.AdaptiveConfig{MemoryLimit: 1000, PressureInterval: time.Second}, 900, 150 * time.Millisecond, false, 16},
		{"PressureInterval: after it", optimize.AdaptiveConfig{MemoryLimit: 1000, PressureInterval: time.Second}, 900, 1050 * time.Millisecond, true, 8},
		{"MinLimit: the floor of a halved limit", optimize.AdaptiveConfig{MemoryLimit: 1000, MinLimit: 12}, 900, 150 * time.Millisecond, true, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := &heap{}
				restore := optimize.SetHeapReader(h.read)
				defer restore()
				tt.give.RespectStepLimits = true
				ex := newExecutor(t, optimize.Use(adaptiveOn(tt.give)))
				var running, most atomic.Int32
				agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
					n := running.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(time.Millisecond)
					running.Add(-1)
					return caudal.Reply{Output: in}, nil
				})
				step := build(t, caudal.Map("fetch", caudal.AgentStep("io", agent), caudal.WithConcurrency(16)))
				if _, err := ex.Execute(t.Context(), step, items(64)); err != nil {
					t.Fatalf("Execute = %v", err)
				}
				h.v.Store(tt.giveHeap)
				time.Sleep(tt.wait)
				most.Store(0)
				if _, err := ex.Execute(t.Context(), step, items(64)); err != nil {
					t.Fatalf("Execute = %v", err)
				}
				st, _ := optimize.StatsOf(ex)
				if st.UnderPressure != tt.wantPressure || st.Limits["fetch"] != tt.wantLimit || int(most.Load()) != tt.wantLimit {
					t.Errorf("pressure, limit, most items at once = %t, %d, %d; want %t, %d, %d",
						st.UnderPressure, st.Limits["fetch"], most.Load(), tt.wantPressure, tt.wantLimit, tt.wantLimit)
				}
				h.v.Store(0) // the pressure goes, the limit comes back
				time.Sleep(time.Second)
				if st, _ := optimize.StatsOf(ex); st.UnderPressure || st.Limits["fetch"] != 16 {
					t.Errorf("after the pressure: pressure, limit = %t, %d; want false, 16", st.UnderPressure, st.Limits["fetch"])
				}
			})
		})
	}
}

func TestAdaptivePressureReleasesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &heap{}
		h.v.Store(1000)
		restore := optimize.SetHeapReader(h.read)
		defer restore()
		a := optimize.NewAdaptive(optimize.AdaptiveConfig{InitialLimit: 2, MemoryLimit: 1000})
		a.Start()
		defer mustStop(t, a)
		time.Sleep(150 * time.Millisecond)
		if !a.UnderPressure() {
			t.Fatal("UnderPressure = false; want true")
		}
		if err := a.Acquire(t.Context(), mapSite, 2); err != nil { // the halved limit: 1
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- a.Acquire(t.Context(), mapSite, 2) }()
		synctest.Wait()
		h.v.Store(0)
		time.Sleep(100 * time.Millisecond)
		if err := <-done; err != nil {
			t.Errorf("Acquire once the pressure went = %v; want nil", err)
		}
	})
}

func TestAdaptiveService(t *testing.T) {
	errRead := errors.New("no reading")
	tests := []struct {
		name    string
		give    optimize.AdaptiveConfig
		read    func() uint64
		wantErr error
	}{
		{"no memory limit: no ticker", optimize.AdaptiveConfig{}, func() uint64 { panic("read without a memory limit") }, nil},
		{"ticker stopped", optimize.AdaptiveConfig{MemoryLimit: 1 << 30}, func() uint64 { return 0 }, nil},
		{"a panicking reading is Stop's error", optimize.AdaptiveConfig{MemoryLimit: 1 << 30}, func() uint64 { panic(errRead) }, errRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				restore := optimize.SetHeapReader(tt.read)
				defer restore()
				a := optimize.NewAdaptive(tt.give)
				a.Start()
				time.Sleep(time.Second) // ten readings, if any
				if err := a.Flush(t.Context()); err != nil {
					t.Errorf("Flush = %v; want nil", err)
				}
				for range 2 {
					if err := a.Stop(); (err == nil) != (tt.wantErr == nil) || err != nil && !errors.Is(err, tt.wantErr) {
						t.Errorf("Stop = %v; want %v", err, tt.wantErr)
					}
				}
				// synctest.Test fails if the ticker's goroutine outlives it.
			})
		})
	}
}

// TestAdaptiveResultsMatchBaseline checks that the limiter changes how
// fast a fan-out runs, never what it returns: outputs in item order, the
// same failure.
func TestAdaptiveResultsMatchBaseline(t *testing.T) {
	errItem := errors.New("item 37 failed")
	agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		i := in.(int)
		time.Sleep(time.Duration(i%7) * time.Millisecond)
		return caudal.Reply{Output: fmt.Sprint("out", i)}, nil
	})
	failing := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		if in.(int) == 37 {
			return caudal.Reply{}, errItem
		}
		time.Sleep(time.Millisecond)
		return caudal.Reply{Output: in}, nil
	})
	tests := []struct {
		name string
		give caudal.Step
		in   any
	}{
		{"map", caudal.Map("m", caudal.AgentStep("a", agent), caudal.WithConcurrency(4)), items(100)},
		{"failing map", caudal.Map("m", caudal.AgentStep("a", failing, caudal.WithRetries(0)), caudal.WithConcurrency(4)), items(100)},
		{
			"parallel", caudal.Parallel("p",
				caudal.Branch("x", caudal.AgentStep("x", agent)), caudal.Branch("y", caudal.AgentStep("y", agent)), caudal.Branch("z", caudal.AgentStep("z", agent))),
			5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				step := build(t, tt.give)
				base := newExecutor(t)
				opt := newExecutor(t, optimize.Use(adaptiveOn(optimize.AdaptiveConfig{InitialLimit: 2})))
				for i := range 3 { // the limit changes between executions
					want, wantErr := base.Execute(t.Context(), step, tt.in)
					got, gotErr := opt.Execute(t.Context(), step, tt.in)
					if wantErr == nil && !reflect.DeepEqual(got.Output, want.Output) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
						t.Errorf("execution %d = %v, %v; want the baseline's %v, %v", i, got.Output, gotErr, want.Output, wantErr)
					}
					if wantErr != nil && !errors.Is(gotErr, errItem) {
						t.Errorf("execution %d = %v; want it to match %v", i, gotErr, errItem)
					}
				}
			})
		})
	}
}

// BenchmarkAdaptive measures the limiter's hot path — Acquire and Release
// of a worker under the limit — against the baseline's fixed limit, and a
// map of 64 trivial items with each.
func BenchmarkAdaptive(b *testing.B) {
	lims := []struct {
		name string
		give func() engine.Limiter
	}{
		{"impl=fixed", func() engine.Limiter { return engine.Fixed{} }},
		{"impl=adaptive", func() engine.Limiter { return optimize.NewAdaptive(optimize.AdaptiveConfig{}) }},
	}
	for _, l := range lims {
		b.Run("acquire-release/"+l.name, func(b *testing.B) {
			lim := l.give()
			lim.Workers(mapSite, 1024, 1024)
			ctx := b.Context()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := lim.Acquire(ctx, mapSite, 1024); err != nil {
						b.Fatal(err)
					}
					lim.Release(mapSite, time.Millisecond, nil)
				}
			})
		})
	}
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
	cfgs := []struct {
		name string
		give optimize.Config
	}{
		{"impl=fixed", optimize.Config{}},
		{"impl=adaptive", adaptiveOn(optimize.AdaptiveConfig{})},
	}
	for _, c := range cfgs {
		b.Run("map/items=64/"+c.name, func(b *testing.B) {
			ex := newExecutor(b, optimize.Use(c.give))
			step := build(b, caudal.Map("m", caudal.AgentStep("echo", echo), caudal.WithConcurrency(4)))
			in := items(64)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ex.Execute(ctx, step, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
