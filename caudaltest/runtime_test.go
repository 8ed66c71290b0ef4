package caudaltest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/caudal-go/caudal/caudaltest"
)

// mark is one entry of a trace: who did what, at which virtual time.
type mark struct {
	who string
	at  time.Duration // since the start of the test
	ev  string
}

// tracer records marks. It has no lock on purpose: only one goroutine of
// a run executes at a time, and the race detector checks that.
type tracer struct {
	rt    *caudaltest.Runtime
	start time.Time
	marks []mark
}

func newTracer(rt *caudaltest.Runtime) *tracer {
	return &tracer{rt: rt, start: rt.Now()}
}

func (tr *tracer) mark(who, ev string) {
	tr.marks = append(tr.marks, mark{who, tr.elapsed(), ev})
}

func (tr *tracer) elapsed() time.Duration { return tr.rt.Now().Sub(tr.start) }

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestRuntimeSleepRoot(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	ctx := context.Background()
	if got := rt.Now(); !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Now() = %v; want 2026-01-01T00:00:00Z", got)
	}
	if err := rt.Sleep(ctx, 42*time.Millisecond); err != nil {
		t.Fatalf("Sleep(42ms) = %v; want nil", err)
	}
	if err := rt.Sleep(ctx, 0); err != nil {
		t.Fatalf("Sleep(0) = %v; want nil", err)
	}
	if err := rt.Sleep(ctx, -time.Second); err != nil {
		t.Fatalf("Sleep(-1s) = %v; want nil", err)
	}
	if got := tr.elapsed(); got != 42*time.Millisecond {
		t.Errorf("clock moved %v; want 42ms", got)
	}

	cause := errors.New("stopped")
	done, cancel := context.WithCancelCause(ctx)
	cancel(cause)
	for _, d := range []time.Duration{0, time.Hour} {
		if err := rt.Sleep(done, d); err != cause {
			t.Errorf("Sleep(done ctx, %v) = %v; want %v", d, err, cause)
		}
	}
	if got := tr.elapsed(); got != 42*time.Millisecond {
		t.Errorf("clock moved %v after sleeps on a done ctx; want 42ms", got)
	}
}

func TestRuntimeSleepInterleaves(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	names := []string{"a", "b", "c"}
	sleeps := []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	rt.Go(context.Background(), 3, func(ctx context.Context, i int) {
		err := rt.Sleep(ctx, sleeps[i])
		tr.mark(names[i], "woke "+errString(err))
	})
	want := []mark{
		{"b", 10 * time.Millisecond, "woke nil"},
		{"c", 20 * time.Millisecond, "woke nil"},
		{"a", 30 * time.Millisecond, "woke nil"},
	}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}
	if got := tr.elapsed(); got != 30*time.Millisecond {
		t.Errorf("Go returned at +%v; want +30ms", got)
	}
}

func TestRuntimeGoOrder(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	rt.Go(context.Background(), 3, func(ctx context.Context, i int) {
		tr.mark(fmt.Sprint(i), "start")
		_ = rt.Sleep(ctx, time.Millisecond) // same wake time: registration order
		tr.mark(fmt.Sprint(i), "end")
	})
	want := []mark{
		{"0", 0, "start"},
		{"1", 0, "start"},
		{"2", 0, "start"},
		{"0", time.Millisecond, "end"},
		{"1", time.Millisecond, "end"},
		{"2", time.Millisecond, "end"},
	}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}

	called := false
	rt.Go(context.Background(), 0, func(context.Context, int) { called = true })
	rt.Go(context.Background(), -1, func(context.Context, int) { called = true })
	if called {
		t.Error("Go(n <= 0) called fn")
	}
}

func TestRuntimeWithTimeoutFires(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	cause := errors.New("too slow")
	rt.Go(context.Background(), 1, func(ctx context.Context, _ int) {
		tctx, cancel := rt.WithTimeout(ctx, 50*time.Millisecond, cause)
		defer cancel()
		if dl, ok := tctx.Deadline(); !ok || !dl.Equal(tr.start.Add(50*time.Millisecond)) {
			t.Errorf("Deadline() = %v, %v; want start+50ms, true", dl, ok)
		}
		derived, cancelDerived := context.WithCancel(tctx)
		defer cancelDerived()
		err := rt.Sleep(tctx, time.Hour)
		tr.mark("w", "slept "+errString(err))
		tr.mark("w", "derived "+errString(context.Cause(derived)))
	})
	want := []mark{
		{"w", 50 * time.Millisecond, "slept too slow"},
		{"w", 50 * time.Millisecond, "derived too slow"},
	}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}

	// At the root, and with d <= 0: cancelled at once.
	now, cancel := rt.WithTimeout(context.Background(), 0, cause)
	defer cancel()
	if err := context.Cause(now); err != cause {
		t.Errorf("Cause(WithTimeout(0)) = %v; want %v", err, cause)
	}
}

func TestRuntimeWithTimeoutCancelled(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	cause := errors.New("too slow")
	rt.Go(context.Background(), 1, func(ctx context.Context, _ int) {
		tctx, cancel := rt.WithTimeout(ctx, 50*time.Millisecond, cause)
		err := rt.Sleep(tctx, 10*time.Millisecond)
		tr.mark("w", "slept "+errString(err))
		cancel()
		tr.mark("w", "cancelled "+errString(context.Cause(tctx)))
	})
	rt.Go(context.Background(), 1, func(ctx context.Context, _ int) {
		err := rt.Sleep(ctx, 100*time.Millisecond)
		tr.mark("w", "slept "+errString(err))
	})
	want := []mark{
		{"w", 10 * time.Millisecond, "slept nil"},
		{"w", 10 * time.Millisecond, "cancelled context canceled"},
		{"w", 110 * time.Millisecond, "slept nil"},
	}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}
}

func TestRuntimeSiblingCancels(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	cause := errors.New("sibling failed")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	rt.Go(ctx, 2, func(wctx context.Context, i int) {
		if i == 0 {
			_ = rt.Sleep(wctx, 10*time.Millisecond)
			tr.mark("A", "cancel")
			cancel(cause)
			return
		}
		err := rt.Sleep(wctx, time.Hour)
		tr.mark("B", "slept "+errString(err))
	})
	want := []mark{
		{"A", 10 * time.Millisecond, "cancel"},
		{"B", 10 * time.Millisecond, "slept sibling failed"},
	}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}
	if got := tr.elapsed(); got != 10*time.Millisecond {
		t.Errorf("Go returned at +%v; want +10ms", got)
	}
}

func TestRuntimeNestedGo(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	rt.Go(context.Background(), 2, func(ctx context.Context, i int) {
		if i == 1 {
			_ = rt.Sleep(ctx, 10*time.Millisecond)
			tr.mark("outer1", "done")
			return
		}
		rt.Go(ctx, 2, func(ctx context.Context, j int) {
			_ = rt.Sleep(ctx, time.Duration(5+10*j)*time.Millisecond)
			tr.mark(fmt.Sprint("inner", j), "done")
			rt.Go(ctx, 1, func(ctx context.Context, _ int) {
				_ = rt.Sleep(ctx, time.Millisecond)
			})
			tr.mark(fmt.Sprint("inner", j), "joined")
		})
		tr.mark("outer0", "joined")
	})
	want := []mark{
		{"inner0", 5 * time.Millisecond, "done"},
		{"inner0", 6 * time.Millisecond, "joined"},
		{"outer1", 10 * time.Millisecond, "done"},
		{"inner1", 15 * time.Millisecond, "done"},
		{"inner1", 16 * time.Millisecond, "joined"},
		{"outer0", 16 * time.Millisecond, "joined"},
	}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}
	if got := tr.elapsed(); got != 16*time.Millisecond {
		t.Errorf("Go returned at +%v; want +16ms", got)
	}
}

func TestRuntimeWorkerPanic(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	rt.Go(context.Background(), 2, func(ctx context.Context, i int) {
		_ = rt.Sleep(ctx, time.Duration(i+1)*time.Millisecond)
		if i == 0 {
			panic("boom")
		}
		tr.mark("w1", "done")
	})
	want := []mark{{"w1", 2 * time.Millisecond, "done"}}
	if !slices.Equal(tr.marks, want) {
		t.Errorf("trace = %v; want %v", tr.marks, want)
	}
}

func TestRuntimeForeignContextPanics(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	var got any
	rt.Go(context.Background(), 1, func(ctx context.Context, _ int) {
		defer func() { got = recover() }()
		_ = rt.Sleep(context.Background(), time.Millisecond) // not the worker's ctx
	})
	if s, _ := got.(string); s == "" {
		t.Fatalf("Sleep with a foreign ctx: recovered %v; want a panic message", got)
	}
	// The run is intact.
	if err := rt.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep after the misuse = %v; want nil", err)
	}
}

func TestRuntimeAdvance(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	tr := newTracer(rt)
	early, late := errors.New("early"), errors.New("late")
	lctx, lcancel := rt.WithTimeout(context.Background(), 30*time.Millisecond, late)
	defer lcancel()
	ectx, ecancel := rt.WithTimeout(context.Background(), 10*time.Millisecond, early)
	defer ecancel()

	rt.Advance(9 * time.Millisecond)
	if ectx.Err() != nil || lctx.Err() != nil {
		t.Fatalf("after Advance(9ms): errs %v, %v; want nil, nil", ectx.Err(), lctx.Err())
	}
	rt.Advance(11 * time.Millisecond)
	if context.Cause(ectx) != early || lctx.Err() != nil {
		t.Fatalf("after +20ms: causes %v, %v; want early, nil", context.Cause(ectx), context.Cause(lctx))
	}
	if got := tr.elapsed(); got != 20*time.Millisecond {
		t.Errorf("clock at +%v; want +20ms", got)
	}
	rt.Advance(10 * time.Millisecond)
	if context.Cause(lctx) != late {
		t.Errorf("after +30ms: cause %v; want late", context.Cause(lctx))
	}
}

func TestRuntimeAdvanceDuringRunPanics(t *testing.T) {
	rt := caudaltest.NewRuntime(1)
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		rt.Go(context.Background(), 1, func(context.Context, int) {
			close(started)
			<-release // a misuse under Runtime, harmless here: nothing else runs
		})
	}()
	<-started
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Advance during a run did not panic")
			}
		}()
		rt.Advance(time.Second)
	}()
	close(release)
	<-done
}

// scenario runs workers that sleep for random times, fan out, and time out,
// and returns the trace.
func scenario(seed uint64) []mark {
	rt := caudaltest.NewRuntime(seed)
	tr := newTracer(rt)
	cause := errors.New("timeout")
	random := func() time.Duration { return time.Duration(rt.Float64() * float64(100*time.Millisecond)) }
	rctx, rcancel := rt.WithTimeout(context.Background(), 150*time.Millisecond, cause)
	defer rcancel()
	rt.Go(rctx, 4, func(ctx context.Context, i int) {
		who := fmt.Sprint("w", i)
		if i == 3 {
			var cancel context.CancelFunc
			ctx, cancel = rt.WithTimeout(ctx, random(), cause)
			defer cancel()
		}
		if i == 2 {
			rt.Go(ctx, 2, func(ctx context.Context, j int) {
				runtime.Gosched() // perturb the real scheduler: it must not matter
				err := rt.Sleep(ctx, random())
				tr.mark(fmt.Sprint(who, ".", j), "sleep "+errString(err))
			})
			tr.mark(who, "joined")
		}
		for k := range 3 {
			runtime.Gosched()
			err := rt.Sleep(ctx, random())
			tr.mark(who, fmt.Sprint("sleep ", k, " ", errString(err)))
		}
	})
	tr.mark("root", fmt.Sprint("draw ", rt.Float64()))
	return tr.marks
}

func TestRuntimeReproducible(t *testing.T) {
	first := scenario(7)
	for range 5 {
		if again := scenario(7); !slices.Equal(again, first) {
			t.Fatalf("same seed, different traces:\n%v\n%v", first, again)
		}
	}
	if other := scenario(8); slices.Equal(other, first) {
		t.Errorf("seeds 7 and 8 gave the same trace %v", first)
	}
}

func ExampleRuntime() {
	rt := caudaltest.NewRuntime(1)
	start := rt.Now()
	rt.Go(context.Background(), 2, func(ctx context.Context, i int) {
		_ = rt.Sleep(ctx, time.Duration(2-i)*time.Second) // simulated work
		fmt.Println("worker", i, "done at", rt.Now().Sub(start))
	})
	fmt.Println("all done at", rt.Now().Sub(start))
	// Output:
	// worker 1 done at 1s
	// worker 0 done at 2s
	// all done at 2s
}
