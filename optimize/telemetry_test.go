package optimize_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// seen is what a test sink keeps of an event: its fields but the timings.
type seen struct {
	Kind    caudal.EventKind
	RunID   string
	Path    string
	Attempt int
	Success bool
	Err     string
	Reason  string
	Dropped int64
	Value   any // the value of ctxKey in the ctx the sink got
}

type ctxKey struct{}

// recSink keeps every event it receives, in order. block, when set, is
// received from before each event; panicOn makes it panic on a kind.
type recSink struct {
	mu      sync.Mutex // protects evs
	evs     []seen
	block   chan struct{}
	panicOn caudal.EventKind
}

func (s *recSink) Record(ctx context.Context, e *caudal.Event) {
	if s.block != nil {
		<-s.block
	}
	if e.Kind == s.panicOn {
		panic("sink: " + e.Kind.String())
	}
	v := seen{Kind: e.Kind, RunID: e.RunID, Path: e.Path, Attempt: e.Attempt, Success: e.Success, Reason: e.Reason, Dropped: e.Dropped, Value: ctx.Value(ctxKey{})}
	if e.Err != nil {
		v.Err = e.Err.Error()
	}
	s.mu.Lock()
	s.evs = append(s.evs, v)
	s.mu.Unlock()
}

func (s *recSink) events() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.evs)
}

// flaky fails its first attempt.
var flaky = caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
	if caudal.Attempt(ctx) == 1 {
		return caudal.Reply{}, errors.New("transient")
	}
	return caudal.Reply{Output: in}, nil
})

var (
	down = caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) { return caudal.Reply{}, errors.New("down") })
	echo = caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) { return caudal.Reply{Output: in}, nil })
)

// retriesAndFallback is a sequence with a retried step and a step whose
// fallback answers.
func retriesAndFallback() caudal.Step {
	return caudal.Seq("seq",
		caudal.AgentStep("draft", echo),
		caudal.AgentStep("refine", flaky, caudal.WithRetries(2), caudal.WithBackoff(0, 0)),
		caudal.AgentStep("publish", down, caudal.WithRetries(1), caudal.WithBackoff(0, 0),
			caudal.WithFallback(caudal.AgentStep("backup", echo))),
	)
}

// fanOut runs three branches, each with retries or a fallback.
func fanOut() caudal.Step {
	return caudal.Parallel("fan",
		caudal.Branch("a", caudal.AgentStep("x", flaky, caudal.WithRetries(2), caudal.WithBackoff(0, 0))),
		caudal.Branch("b", caudal.Seq("s", caudal.AgentStep("y", flaky, caudal.WithRetries(1), caudal.WithBackoff(0, 0)), caudal.AgentStep("z", echo))),
		caudal.Branch("c", caudal.AgentStep("w", down, caudal.WithFallback(caudal.AgentStep("v", echo)))),
	)
}

// runAll executes step runs times, concurrently, each with its run ID and
// ctx value, on an executor with sink and opts; then flushes and closes.
func runAll(t *testing.T, step caudal.Step, runs int, sink caudal.Sink, opts ...caudal.Option) {
	t.Helper()
	ex, err := caudal.New(append([]caudal.Option{caudal.WithSink(sink)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b, err := caudal.Build(step)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			id := fmt.Sprintf("run-%d", i)
			ctx := context.WithValue(context.Background(), ctxKey{}, id)
			if _, err := ex.Execute(ctx, b, "in", caudal.WithRunID(id)); err != nil {
				t.Errorf("Execute: %v", err)
			}
		})
	}
	wg.Wait()
	if err := ex.Flush(context.Background()); err != nil {
		t.Errorf("Flush: %v", err)
	}
	if err := ex.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// streams splits evs by run and, within a run, by branch: the first two
// segments of the path (events of a parallel step's branches may
// interleave; the events of one branch may not).
func streams(evs []seen) map[string][]seen {
	m := map[string][]seen{}
	for _, e := range evs {
		seg := strings.SplitN(e.Path, "/", 3)
		key := e.RunID + " " + strings.Join(seg[:min(len(seg), 2)], "/")
		m[key] = append(m[key], e)
	}
	return m
}

// firstAndLast returns each run's first and last events.
func firstAndLast(evs []seen) map[string][2]seen {
	m := map[string][2]seen{}
	for _, e := range evs {
		fl, ok := m[e.RunID]
		if !ok {
			fl[0] = e
		}
		fl[1] = e
		m[e.RunID] = fl
	}
	return m
}

func TestTelemetryDeliversTheBaselinesEvents(t *testing.T) {
	tests := []struct {
		name string
		give caudal.Step
		mode string
	}{
		{"retries and fallback/ring", retriesAndFallback(), "ring"},
		{"retries and fallback/adaptive", retriesAndFallback(), "adaptive"},
		{"parallel branches/ring", fanOut(), "ring"},
		{"parallel branches/adaptive", fanOut(), "adaptive"},
	}
	modes := map[string]func() func(){
		"ring":     func() func() { return optimize.SetTelemetryDelivery(optimize.DeliveryRing) },
		"adaptive": func() func() { return optimize.SetTelemetryDelivery(optimize.DeliveryAdaptive) },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer modes[tt.mode]()()
			const runs = 8
			base, opt := &recSink{}, &recSink{}
			runAll(t, tt.give, runs, base)
			runAll(t, tt.give, runs, opt, optimize.Use(optimize.Config{Telemetry: optimize.TelemetryConfig{Enabled: true}}))
			got, want := opt.events(), base.events()
			if len(got) != len(want) {
				t.Fatalf("%d events delivered; want %d", len(got), len(want))
			}
			if g, w := streams(got), streams(want); !reflect.DeepEqual(g, w) {
				t.Errorf("events per run and branch:\n got %v\nwant %v", g, w)
			}
			if g, w := firstAndLast(got), firstAndLast(want); !reflect.DeepEqual(g, w) {
				t.Errorf("first and last events per run:\n got %v\nwant %v", g, w)
			}
			for _, e := range got {
				if e.Value != e.RunID {
					t.Fatalf("event %v: ctx value %v; want the run's ctx (%v)", e, e.Value, e.RunID)
				}
			}
		})
	}
}

// newTel returns a started telemetry of cfg in ring mode, stopped at the
// end of the test.
func newTel(t *testing.T, cfg optimize.TelemetryConfig, sink caudal.Sink) *optimize.Telemetry {
	t.Helper()
	tel := optimize.NewTelemetry(cfg, sink, optimize.DeliveryRing)
	tel.Start()
	t.Cleanup(func() { _ = tel.Stop() })
	return tel
}

func TestTelemetryKeepsEachGoroutinesOrder(t *testing.T) {
	const producers, each = 8, 2000
	sink := &recSink{}
	tel := newTel(t, optimize.TelemetryConfig{BufferSize: 64}, sink)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			ctx := context.WithValue(context.Background(), ctxKey{}, p)
			for i := range each {
				tel.Record(ctx, &caudal.Event{Kind: caudal.EventStepStarted, Path: fmt.Sprint(p), Attempt: i})
			}
		})
	}
	wg.Wait()
	if err := tel.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	next := make([]int, producers)
	for _, e := range sink.events() {
		var p int
		if _, err := fmt.Sscan(e.Path, &p); err != nil {
			t.Fatalf("event path %q: %v", e.Path, err)
		}
		if e.Attempt != next[p] || e.Value != p {
			t.Fatalf("producer %d: event %d (ctx value %v) delivered; want %d (%d)", p, e.Attempt, e.Value, next[p], p)
		}
		next[p]++
	}
	st := tel.Stats()
	want := optimize.TelemetryStats{Recorded: producers * each, Delivered: producers * each}
	if st.Recorded != want.Recorded || st.Delivered != want.Delivered || st.Dropped != 0 || slices.Max(next) != each {
		t.Errorf("Stats() = %+v, per producer %v; want %+v, %d each", st, next, want, each)
	}
}

func TestTelemetryFlushAndCloseDeliverEverything(t *testing.T) {
	tests := []struct {
		name string
		give func(ex *caudal.Executor) error
	}{
		{"Flush", func(ex *caudal.Executor) error { return ex.Flush(context.Background()) }},
		{"Close", func(ex *caudal.Executor) error { return ex.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer optimize.SetTelemetryDelivery(optimize.DeliveryRing)()
			sink := &recSink{block: make(chan struct{})}
			ex, err := caudal.New(caudal.WithSink(sink), optimize.Use(optimize.Config{Telemetry: optimize.TelemetryConfig{Enabled: true}}))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer mustClose(t, ex)
			b, _ := caudal.Build(retriesAndFallback())
			const runs = 20
			for range runs {
				if _, err := ex.Execute(context.Background(), b, "in"); err != nil {
					t.Fatalf("Execute: %v", err)
				}
			}
			if n := len(sink.events()); n != 0 {
				t.Fatalf("%d events delivered while the sink blocks; want 0", n)
			}
			close(sink.block)
			if err := tt.give(ex); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			st, _ := optimize.StatsOf(ex)
			if n := len(sink.events()); n != runs*16 || st.Telemetry.Delivered != runs*16 {
				t.Errorf("after %s: %d events delivered, Stats.Delivered %d; want %d", tt.name, n, st.Telemetry.Delivered, runs*16)
			}
		})
	}
}

func TestTelemetryFlushEndsWithItsContext(t *testing.T) {
	sink := &recSink{block: make(chan struct{})}
	tel := newTel(t, optimize.TelemetryConfig{}, sink)
	defer close(sink.block)
	tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted})
	cause := errors.New("given up")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := tel.Flush(ctx); !errors.Is(err, cause) {
		t.Errorf("Flush(cancelled) = %v; want %v", err, cause)
	}
}

func TestTelemetryBufferSizeBoundsTheRing(t *testing.T) {
	tests := []struct {
		name        string
		give        int // BufferSize
		wantDropped uint64
	}{
		{"tiny buffer drops", 3, 20 - 4}, // a ring of 4 (3 rounded up): the blocked sink holds one slot
		{"large buffer keeps all", 64, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sink := &recSink{block: make(chan struct{})}
				tel := newTel(t, optimize.TelemetryConfig{BufferSize: tt.give}, sink)
				const burst = 20
				for i := range burst {
					tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted, Attempt: i})
					synctest.Wait() // the drain takes the first event into the blocked sink
				}
				close(sink.block)
				if err := tel.Flush(context.Background()); err != nil {
					t.Fatalf("Flush: %v", err)
				}
				st := tel.Stats()
				if st.Dropped != tt.wantDropped || st.Recorded+st.Dropped != burst || st.Delivered != st.Recorded {
					t.Errorf("Stats() = %+v; want %d dropped of %d, the rest delivered", st, tt.wantDropped, burst)
				}
				var notices []int64
				for _, e := range sink.events() {
					if e.Kind == caudal.EventDropped {
						notices = append(notices, e.Dropped)
					}
				}
				if got := sumOf(notices); got != int64(tt.wantDropped) || len(notices) > 1 {
					t.Errorf("EventDropped events %v; want one with Dropped %d (or none for 0)", notices, tt.wantDropped)
				}
			})
		})
	}
}

func sumOf(v []int64) (s int64) {
	for _, x := range v {
		s += x
	}
	return s
}

func TestTelemetryDropNoticeComesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &recSink{block: make(chan struct{})}
		tel := newTel(t, optimize.TelemetryConfig{BufferSize: 1}, sink)
		for i := range 4 { // a ring of 2 (1 rounded up to the least): 0 in the sink, 1 waits, 2 and 3 dropped
			tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted, Attempt: i})
			synctest.Wait()
		}
		close(sink.block)
		synctest.Wait() // the drain catches up: the ring takes events again
		tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted, Attempt: 4})
		if err := tel.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		var got []string
		for _, e := range sink.events() {
			got = append(got, fmt.Sprintf("%s %d %d", e.Kind, e.Attempt, e.Dropped))
		}
		want := []string{"step_started 0 0", "step_started 1 0", "dropped 0 2", "step_started 4 0"}
		if !slices.Equal(got, want) {
			t.Errorf("delivered %q; want %q", got, want)
		}
	})
}

func TestTelemetryLatencyBuckets(t *testing.T) {
	defaults := optimize.TelemetryConfig{}
	var defaultBounds []time.Duration
	for d := time.Microsecond; d <= 64*time.Second; d *= 2 {
		defaultBounds = append(defaultBounds, d)
	}
	defaultCounts := make([]uint64, len(defaultBounds)+1)
	defaultCounts[11], defaultCounts[12], defaultCounts[13] = 1, 1, 1 // (1.024, 2.048], (2.048, 4.096], (4.096, 8.192] ms
	tests := []struct {
		name string
		give optimize.TelemetryConfig
		want optimize.Histogram
	}{
		{"default buckets", defaults, optimize.Histogram{Bounds: defaultBounds, Counts: defaultCounts}},
		{
			"custom buckets",
			optimize.TelemetryConfig{LatencyBuckets: []time.Duration{2 * time.Millisecond, 5 * time.Millisecond}},
			optimize.Histogram{Bounds: []time.Duration{2 * time.Millisecond, 5 * time.Millisecond}, Counts: []uint64{1, 1, 1}},
		},
		{
			"bound is inclusive",
			optimize.TelemetryConfig{LatencyBuckets: []time.Duration{2 * time.Millisecond, 3 * time.Millisecond}},
			optimize.Histogram{Bounds: []time.Duration{2 * time.Millisecond, 3 * time.Millisecond}, Counts: []uint64{1, 1, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := newTel(t, tt.give, &recSink{})
			for _, d := range []time.Duration{2 * time.Millisecond, 3 * time.Millisecond, 8 * time.Millisecond} {
				tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepFinished, Latency: d})
				tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventRetry, Latency: d}) // not a finished step
			}
			if got := tel.Stats().Latency; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Stats().Latency = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestTelemetryDefaultBucketsAtTheirEdges(t *testing.T) {
	tests := []struct {
		give time.Duration
		want int // bucket
	}{
		{0, 0},
		{time.Microsecond, 0},
		{time.Microsecond + 1, 1},
		{2 * time.Microsecond, 1},
		{3 * time.Microsecond, 2},
		{1024 * time.Microsecond, 10},
		{1024*time.Microsecond + 1, 11},
		{(1 << 25) * time.Microsecond, 25},
		{(1<<25)*time.Microsecond + 1, 26},
		{time.Hour, 26},
	}
	for _, tt := range tests {
		t.Run(tt.give.String(), func(t *testing.T) {
			tel := newTel(t, optimize.TelemetryConfig{}, &recSink{})
			tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepFinished, Latency: tt.give})
			if got := slices.Index(tel.Stats().Latency.Counts, 1); got != tt.want {
				t.Errorf("latency %v counted in bucket %d; want %d", tt.give, got, tt.want)
			}
		})
	}
}

func TestTelemetryLatencyOfAnExecutorsSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sleepy := caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			time.Sleep(3 * time.Millisecond)
			return caudal.Reply{Output: in}, nil
		})
		cfg := optimize.Config{Telemetry: optimize.TelemetryConfig{Enabled: true, LatencyBuckets: []time.Duration{time.Millisecond, 4 * time.Millisecond}}}
		ex, err := caudal.New(caudal.WithSink(&recSink{}), optimize.Use(cfg))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer mustClose(t, ex)
		b, _ := caudal.Build(caudal.Seq("s", caudal.AgentStep("a", sleepy), caudal.AgentStep("b", sleepy)))
		if _, err := ex.Execute(context.Background(), b, "in"); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		st, _ := optimize.StatsOf(ex)
		if want := []uint64{0, 2, 1}; !slices.Equal(st.Telemetry.Latency.Counts, want) { // a and b 3ms, s 6ms
			t.Errorf("latency counts %v; want %v", st.Telemetry.Latency.Counts, want)
		}
	})
}

func TestTelemetryContainsSinkPanics(t *testing.T) {
	defer optimize.SetTelemetryDelivery(optimize.DeliveryRing)()
	sink := &recSink{panicOn: caudal.EventRetry}
	ex, err := caudal.New(caudal.WithSink(sink), optimize.Use(optimize.Config{Telemetry: optimize.TelemetryConfig{Enabled: true}}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer mustClose(t, ex)
	b, _ := caudal.Build(retriesAndFallback())
	if _, err := ex.Execute(context.Background(), b, "in"); err != nil {
		t.Fatalf("Execute = %v; want success: a sink's panic on the drain cannot fail the step", err)
	}
	if err := ex.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st, _ := optimize.StatsOf(ex)
	if n := len(sink.events()); st.Telemetry.SinkPanics != 2 || n != 14 {
		t.Errorf("SinkPanics %d, %d events kept; want 2 panics (the retries), the 14 other events", st.Telemetry.SinkPanics, n)
	}
}

func TestTelemetryRecordAfterStopDeliversAtOnce(t *testing.T) {
	sink := &recSink{}
	tel := newTel(t, optimize.TelemetryConfig{}, sink)
	tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted, Attempt: 1})
	if err := tel.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted, Attempt: 2})
	if got := sink.events(); len(got) != 2 || got[0].Attempt != 1 || got[1].Attempt != 2 {
		t.Errorf("delivered %v; want attempts 1, 2", got)
	}
	if st := tel.Stats(); st.Recorded != 2 || st.Delivered != 2 {
		t.Errorf("Stats() = %+v; want 2 recorded and delivered", st)
	}
}

func TestTelemetryRecordRacingStopLosesNothing(t *testing.T) {
	for range 20 {
		var n atomic.Int64
		sink := countSink{n: &n}
		tel := optimize.NewTelemetry(optimize.TelemetryConfig{BufferSize: 16}, sink, optimize.DeliveryRing)
		tel.Start()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 200 {
					tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepStarted})
				}
			})
		}
		_ = tel.Stop()
		wg.Wait()
		if st := tel.Stats(); n.Load() != 800 || st.Delivered != 800 || st.Dropped != 0 {
			t.Fatalf("%d events delivered, Stats() = %+v; want 800, none dropped", n.Load(), st)
		}
	}
}

type countSink struct{ n *atomic.Int64 }

func (s countSink) Record(context.Context, *caudal.Event) { s.n.Add(1) }

func TestTelemetryDeliveryFollowsTheSinksSpeed(t *testing.T) {
	tests := []struct {
		name       string
		give       time.Duration // what the sink costs per event
		wantDirect bool          // all events delivered on the recording goroutine
	}{
		{"fast sinks: direct", 0, true},
		{"slow sinks: the drain", 10 * time.Microsecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sink := sleepSink{d: tt.give, count: new(atomic.Int64)}
				tel := optimize.NewTelemetry(optimize.TelemetryConfig{}, sink, optimize.DeliveryAdaptive)
				tel.Start()
				defer mustStop(t, tel)
				const events = 2000
				for i := range events { // finished steps of varied latency: what the sampling times
					tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepFinished, Latency: time.Duration(i) * time.Microsecond})
				}
				if err := tel.Flush(context.Background()); err != nil {
					t.Fatalf("Flush: %v", err)
				}
				st := tel.Stats()
				// The ring counts what went through it: nothing when every
				// event went to the sinks at once.
				if (st.Recorded == 0) != tt.wantDirect || sink.n() != events {
					t.Errorf("Stats() = %+v, the sink got %d; want all direct: %v, %d delivered", st, sink.n(), tt.wantDirect, events)
				}
			})
		})
	}
}

func TestTelemetrySwitchesKeepTheOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &phaseSink{slowUntil: 1000}
		tel := optimize.NewTelemetry(optimize.TelemetryConfig{BufferSize: 128}, sink, optimize.DeliveryAdaptive)
		tel.Start()
		defer mustStop(t, tel)
		const events = 3000
		for i := range events { // direct, then the drain (slow sink), then direct again
			tel.Record(context.Background(), &caudal.Event{Kind: caudal.EventStepFinished, Attempt: i, Latency: time.Duration(i) * time.Microsecond})
		}
		if err := tel.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		st := tel.Stats()
		if !slices.Equal(sink.got, seq(events)) || st.Recorded == 0 || st.Recorded == events {
			t.Errorf("delivered %d events in order: %v; Stats() = %+v; want %d in order, some direct, some not",
				len(sink.got), slices.Equal(sink.got, seq(events)), st, events)
		}
	})
}

// phaseSink is slow for its first slowUntil events, then fast; it keeps
// the attempts it sees.
type phaseSink struct {
	mu        sync.Mutex // protects got
	got       []int
	slowUntil int
}

func (s *phaseSink) Record(_ context.Context, e *caudal.Event) {
	if e.Attempt < s.slowUntil {
		time.Sleep(10 * time.Microsecond)
	}
	s.mu.Lock()
	s.got = append(s.got, e.Attempt)
	s.mu.Unlock()
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// sleepSink costs d per event; it counts them when count is set.
type sleepSink struct {
	d     time.Duration
	count *atomic.Int64
}

func (s sleepSink) Record(context.Context, *caudal.Event) {
	if s.d > 0 {
		time.Sleep(s.d)
	}
	if s.count != nil {
		s.count.Add(1)
	}
}

// n returns how many events the sink got.
func (s sleepSink) n() uint64 { return uint64(s.count.Load()) }

type nopSink struct{}

func (nopSink) Record(context.Context, *caudal.Event) {}

func BenchmarkTelemetryRecord(b *testing.B) {
	for _, bb := range []struct {
		name string
		make func() *optimize.Telemetry
	}{
		{"delivery=ring", func() *optimize.Telemetry {
			return optimize.NewTelemetry(optimize.TelemetryConfig{}, nopSink{}, optimize.DeliveryRing)
		}},
		{"delivery=direct", func() *optimize.Telemetry {
			return optimize.NewTelemetry(optimize.TelemetryConfig{}, nopSink{}, optimize.DeliveryDirect)
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			tel := bb.make()
			tel.Start()
			defer mustStop(b, tel)
			ctx := context.Background()
			e := &caudal.Event{Kind: caudal.EventStepFinished, Path: "a/b", Latency: 3 * time.Millisecond}
			b.ReportAllocs()
			for b.Loop() {
				tel.Record(ctx, e)
			}
		})
	}
}
