package perf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
)

// runBatches builds sc's workload on v and runs two batches of n
// iterations, as the sampler does: Prepare(n), then Run 0..n-1.
func runBatches(t *testing.T, sc Scenario, v Variant, n int) error {
	t.Helper()
	w, err := sc.NewWorkload(v)
	if err != nil {
		return err
	}
	defer w.Close()
	for range 2 {
		if w.Prepare != nil {
			w.Prepare(n)
		}
		for i := range n {
			if err := w.Run(t.Context(), i); err != nil {
				return fmt.Errorf("iteration %d: %w", i, err)
			}
		}
		if w.Verify != nil {
			if err := w.Verify(); err != nil {
				return fmt.Errorf("batch: %w", err)
			}
		}
	}
	return nil
}

func TestScenariosRunOnTheBaseline(t *testing.T) {
	for _, suite := range []string{SuiteSeed, SuiteDesigned} {
		scenarios, err := Suites(suite)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range scenarios {
			t.Run(suite+"/"+sc.ID, func(t *testing.T) {
				if err := runBatches(t, sc, Baseline(), 3); err != nil {
					t.Fatalf("baseline: %v", err)
				}
			})
		}
	}
}

func TestScenarioDescriptions(t *testing.T) {
	designed, err := Suites(SuiteDesigned)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := Suites(SuiteSeed)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sc := range slices.Concat(designed, seed) {
		if _, ok := Info(sc.ID); !ok {
			t.Errorf("%s/%s: no ScenarioInfo", sc.Suite, sc.ID)
		}
		if sc.Workload == "" || sc.Name == "" || sc.Executes < 1 {
			t.Errorf("%s/%s: Workload %q, Name %q, Executes %d; want all set", sc.Suite, sc.ID, sc.Workload, sc.Name, sc.Executes)
		}
		if (sc.Setup == nil) == (sc.Configure == nil) {
			t.Errorf("%s/%s: want exactly one of Setup and Configure", sc.Suite, sc.ID)
		}
		if sc.Suite == SuiteDesigned {
			ids = append(ids, sc.ID)
		}
	}
	for _, s := range Infos() {
		if !slices.Contains(ids, s.ID) {
			t.Errorf("scenario %s is in no designed workload", s.ID)
		}
		if !slices.Contains(componentNames, s.Component) || !s.HasTarget() || s.TargetMetric == "" || s.Workload == "" {
			t.Errorf("scenario %s: Component %q, target %v on %q, Workload %q; want a known component's target on a metric, described", s.ID, s.Component, s.HasTarget(), s.TargetMetric, s.Workload)
		}
	}
	if slices.Sort(ids); len(slices.Compact(ids)) != len(designed) {
		t.Errorf("designed scenario IDs repeat: %v", ids)
	}
}

// wrapped is a variant whose executor is the baseline's seen through wrap.
func wrapped(name string, wrap func(*caudal.Executor) Executor) Variant {
	return Variant{Name: name, New: func(opts ...caudal.Option) (Executor, error) {
		ex, err := caudal.New(opts...)
		if err != nil {
			return nil, err
		}
		return wrap(ex), nil
	}}
}

// funcExecutor is an executor whose Execute is a function.
type funcExecutor struct {
	*caudal.Executor
	exec func(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error)
	also Executor // closed with it, when set
}

func (f funcExecutor) Close() error {
	if f.also != nil {
		_ = f.also.Close()
	}
	return f.Executor.Close()
}

func (f funcExecutor) Execute(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
	return f.exec(ctx, step, in, opts...)
}

// canned is a variant that answers every execute with out and metadata
// meta, never running the step.
func canned(out any, meta map[string]any) Variant {
	return wrapped("canned", func(ex *caudal.Executor) Executor {
		return funcExecutor{Executor: ex, exec: func(context.Context, caudal.Step, any, ...caudal.Option) (caudal.StepResult, error) {
			return caudal.StepResult{Success: true, Output: out, Metadata: meta}, nil
		}}
	})
}

func TestExecutionScenarioChecksTelemetry(t *testing.T) {
	sc := executionScenario(SuiteDesigned)
	tests := []struct {
		name string
		give Variant
		want string // in the batch's error
	}{
		{"sink dropped", Variant{Name: "drops-sink", New: func(...caudal.Option) (Executor, error) { return caudal.New() }}, "0 events delivered"},
		{"events delivered twice", Variant{Name: "twice", New: func(opts ...caudal.Option) (Executor, error) {
			return caudal.New(slices.Concat(opts, opts)...)
		}}, "28 events delivered for 1 executes; want 14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runBatches(t, sc, tt.give, 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func TestTelemetryContent(t *testing.T) {
	tel := newTelemetry()
	ex, err := caudal.New(caudal.WithSink(tel.fan))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ex.Close() }()
	step, err := build(telemetryPipeline())
	if err != nil {
		t.Fatal(err)
	}
	m := tel.mark()
	if _, err := ex.Execute(t.Context(), step, "q"); err != nil {
		t.Fatal(err)
	}
	got := tel.since(m)
	want := telemetryRecord{
		events:   14,
		logLines: 8,
		spans:    []string{"answer/draft", "answer/refine", "answer/publish/backup", "answer/publish", "answer"},
		rootOK:   true,
	}
	want.byKind[caudal.EventStepStarted] = 5
	want.byKind[caudal.EventStepFinished] = 5
	want.byKind[caudal.EventAttemptFailed] = 2
	want.byKind[caudal.EventRetry] = 1
	want.byKind[caudal.EventFallback] = 1
	if !slices.Equal(got.spans, want.spans) || got.events != want.events || got.byKind != want.byKind || got.logLines != want.logLines || got.rootOK != want.rootOK || got.orphans != 0 {
		t.Errorf("telemetry of one execute = %+v; want %+v", got, want)
	}
	for _, line := range tel.log.lines() {
		var rec struct{ Msg, Path string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || !strings.HasPrefix(rec.Msg, "caudal.") || !strings.HasPrefix(rec.Path, "answer") {
			t.Errorf("log line %s: msg %q, path %q, err %v; want a caudal event of the pipeline", line, rec.Msg, rec.Path, err)
		}
	}
	if err := tel.checkBatch(m, 1, want); err != nil {
		t.Errorf("checkBatch against its own record: %v", err)
	}
	if err := tel.checkBatch(m, 2, want); err == nil {
		t.Error("checkBatch of one execute's telemetry for two executes = nil; want an error")
	}
	tel.reset()
	if n := len(tel.log.lines()); n != 0 || len(tel.spans.done) != 0 {
		t.Errorf("after reset: %d log lines, %d spans; want none", n, len(tel.spans.done))
	}
}

func TestCacheScenariosCheckTheAgent(t *testing.T) {
	// extraMiss also executes a key no one asked for: one more agent call
	// per execute, 17 or more for 16 concurrent misses.
	var extra atomic.Int64
	extraMiss := wrapped("extra-miss", func(ex *caudal.Executor) Executor {
		return funcExecutor{Executor: ex, exec: func(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
			if _, err := ex.Execute(ctx, step, map[string]any{"extra": extra.Add(1)}, opts...); err != nil {
				return caudal.StepResult{}, err
			}
			return ex.Execute(ctx, step, in, opts...)
		}}
	})
	tests := []struct {
		name string
		sc   Scenario
		give Variant
		want string
	}{
		{"miss never calls", cacheMissScenario(SuiteDesigned), canned(cachePayload, nil), "called the agent 0 times"},
		{"miss calls too often", cacheMissScenario(SuiteDesigned), extraMiss, "want 1 to 16"},
		{"hit is not a hit", cacheScenario(SuiteDesigned), afterWarming(canned(cachePayload, nil)), "not a cache hit"},
		{"hit calls the agent", cacheScenario(SuiteDesigned), afterWarming(extraMiss), "cache hits called the agent 16 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runBatches(t, tt.sc, tt.give, 2)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// afterWarming is v with its executor's first cacheHotKeys executes (the
// cache scenario's warming) left to the baseline.
func afterWarming(v Variant) Variant {
	return Variant{Name: v.Name, New: func(opts ...caudal.Option) (Executor, error) {
		base, err := caudal.New(opts...)
		if err != nil {
			return nil, err
		}
		then, err := v.New(opts...)
		if err != nil {
			return nil, err
		}
		var n atomic.Int64
		return funcExecutor{base, func(ctx context.Context, step caudal.Step, in any, opts ...caudal.Option) (caudal.StepResult, error) {
			if n.Add(1) <= cacheHotKeys {
				return base.Execute(ctx, step, in, opts...)
			}
			return then.Execute(ctx, step, in, opts...)
		}, then}, nil
	}}
}

func TestOutageScenarioChecksRecovery(t *testing.T) {
	sc := outageScenario(SuiteDesigned)
	if err := runBatches(t, sc, Baseline(), 1); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	// A breaker that never closes again: the fallback answers every call.
	stuck := canned(outageBackupAnswer, map[string]any{caudal.MetaFallbackTriggered: true})
	want := fmt.Sprintf("healthy call %d after the outage answered %s", outageRecoveryCalls, outageBackupAnswer)
	if err := runBatches(t, sc, stuck, 1); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("stuck-open variant: Run = %v; want an error with %q", err, want)
	}
}

// downstreamSweep runs the downstream scenario's map once per fixed limit,
// each on a fresh baseline executor and service, and returns the time each
// took.
func downstreamSweep(ctx context.Context, limits []int) (map[int]time.Duration, error) {
	items := mapInput()
	times := make(map[int]time.Duration, len(limits))
	for _, limit := range limits {
		ex, err := caudal.New()
		if err != nil {
			return nil, err
		}
		step, err := downstreamStep(newDownstream(downstreamCapacity), limit)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		_, err = ex.Execute(ctx, step, items)
		times[limit] = time.Since(start)
		_ = ex.Close()
		if err != nil {
			return nil, fmt.Errorf("limit %d: %w", limit, err)
		}
	}
	return times, nil
}

// TestDownstreamBestLimit sweeps the fixed limits in a synctest bubble,
// where the service's waits take virtual time: the times are exact, and
// the scenario's limit must be the best.
func TestDownstreamBestLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := []int{4, 8, downstreamBestLimit, 32, 64}
		times, err := downstreamSweep(t.Context(), limits)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("downstream map time by fixed limit: %v", times)
		best := downstreamBestLimit
		for _, l := range limits {
			if times[l] < times[best] {
				best = l
			}
		}
		if best != downstreamBestLimit {
			t.Errorf("best fixed limit = %d (%v); want %d (%v)", best, times[best], downstreamBestLimit, times[downstreamBestLimit])
		}
		waves := (mapItems + downstreamCapacity - 1) / downstreamCapacity
		if want := time.Duration(waves) * downstreamService; times[downstreamBestLimit] != want {
			t.Errorf("at the capacity: %v; want %d waves of %v, %v", times[downstreamBestLimit], waves, downstreamService, want)
		}
	})
}

func TestDownstreamQueuesPastCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDownstream(2)
		start := time.Now()
		if err := fanOut(3, func() error { return d.call(t.Context()) }); err != nil {
			t.Fatal(err)
		}
		// Two served at once; the third queues, then takes the throttle longer.
		if got, want := time.Since(start), 2*downstreamService+downstreamThrottle; got != want {
			t.Errorf("3 calls at capacity 2 took %v; want %v", got, want)
		}
		if n := d.queued.Load(); n != 1 {
			t.Errorf("%d calls queued; want 1", n)
		}
	})
}

func TestSpinCalibrated(t *testing.T) {
	if r := spinRounds(); !(r > 0) || math.IsInf(r, 0) {
		t.Fatalf("spinRounds() = %v; want a positive rate", r)
	}
	spinFor(0)
	spinFor(time.Microsecond)
}

// TestMemoryScenarioBytesAreTheExecutors measures where the memory
// scenario's bytes come from (see memoryScenario): -v prints the split.
func TestMemoryScenarioBytesAreTheExecutors(t *testing.T) {
	// Allocation sites, from the heap profile.
	w, err := memoryScenario(SuiteDesigned).NewWorkload(Baseline())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 20 {
		if err := w.Run(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	const n = 200
	byOwner, byFunc := allocSplit(t, w, "memoryScenario.func", n)
	var total int64
	for _, b := range byOwner {
		total += b
	}
	if total == 0 {
		t.Fatal("no allocation profiled")
	}
	t.Logf("memory scenario, baseline: %.0f B/op", float64(total)/n)
	for _, o := range []string{"caudal", "workload", "runtime"} {
		t.Logf("  allocated by %-8s %6.0f B/op  %5.1f %%", o, float64(byOwner[o])/n, 100*float64(byOwner[o])/float64(total))
	}
	fns := make([]string, 0, len(byFunc))
	for f := range byFunc {
		fns = append(fns, f)
	}
	sort.Slice(fns, func(i, j int) bool { return byFunc[fns[i]] > byFunc[fns[j]] })
	for _, f := range fns[:min(8, len(fns))] {
		t.Logf("    %6.0f B/op  %5.1f %%  %s", float64(byFunc[f])/n, 100*float64(byFunc[f])/float64(total), strings.TrimPrefix(f, modulePath+"."))
	}

	// Bytes the caller keeps: the results, held alive across a GC.
	ex, err := caudal.New(caudal.WithSink(&fanoutSink{}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ex.Close() }()
	step, err := build(memoryPipeline())
	if err != nil {
		t.Fatal(err)
	}
	kept := make([]caudal.StepResult, n)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := range kept {
		if kept[i], err = ex.Execute(t.Context(), step, "input"); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	allocated := float64(m1.TotalAlloc-m0.TotalAlloc) / n
	held := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / n
	objects := float64(m1.Mallocs-m0.Mallocs) / n
	heldObjects := (float64(m1.HeapObjects) - float64(m0.HeapObjects)) / n
	runtime.KeepAlive(kept)
	t.Logf("  held by the returned result: %6.0f B/op  %5.1f %% of %.0f B/op allocated; %.1f of %.1f allocs/op", held, 100*held/allocated, allocated, heldObjects, objects)

	if share := float64(byOwner["caudal"]) / float64(total); share < 0.9 {
		t.Errorf("the library allocates %.1f %% of the bytes; want ≥ 90 %%", 100*share)
	}
	if own := 1 - held/allocated; own < 0.7 {
		t.Errorf("the executor's own, dropped bytes are %.1f %% of the bytes; want ≥ 70 %%", 100*own)
	}
}

// allocSite is one allocation stack of the heap profile.
type allocSite struct {
	bytes int64
	funcs []string // innermost first
}

// allocProfile returns the heap profile's allocation stacks by address
// list, read from its debug=1 text form, whose stacks are whole
// (runtime.MemProfile cuts them at 32 frames).
func allocProfile(t *testing.T) map[string]allocSite {
	t.Helper()
	for range 3 { // a record is published up to two cycles late
		runtime.GC()
	}
	var buf bytes.Buffer
	if err := pprof.Lookup("allocs").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	sites := make(map[string]allocSite)
	var key string
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch head, addrs, ok := strings.Cut(line, " @ "); {
		case line == "":
			key = ""
		case ok && strings.Contains(head, "["):
			// "inuse objects: inuse bytes [alloc objects: alloc bytes] @ addrs"
			in := head[strings.Index(head, "[")+1 : strings.Index(head, "]")]
			_, b, _ := strings.Cut(in, ": ")
			n, err := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
			if err != nil {
				t.Fatalf("heap profile line %q: %v", line, err)
			}
			key = addrs
			s := sites[key]
			s.bytes += n
			sites[key] = s
		case key != "" && strings.HasPrefix(line, "#\t"):
			f := strings.Split(line, "\t")
			if len(f) < 3 {
				continue
			}
			name := f[2]
			if i := strings.LastIndex(name, "+0x"); i > 0 {
				name = name[:i]
			}
			s := sites[key]
			s.funcs = append(s.funcs, name)
			sites[key] = s
		}
	}
	return sites
}

const modulePath = "github.com/caudal-go/caudal"

// allocSplit runs n iterations of w with every allocation profiled and
// returns the bytes allocated under a frame whose function name contains
// marker, by owner — "caudal" when the innermost frame of the module is the
// library's (the stdlib work it asked for included), "workload" when it is
// this package's (agents, sinks, inputs), "runtime" with no module frame —
// and by allocating function with that innermost library function.
func allocSplit(t *testing.T, w *Workload, marker string, n int) (byOwner, byFunc map[string]int64) {
	t.Helper()
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	before := allocProfile(t)
	if w.Prepare != nil {
		w.Prepare(n)
	}
	for i := range n {
		if err := w.Run(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	after := allocProfile(t)
	byOwner, byFunc = make(map[string]int64), make(map[string]int64)
	for key, s := range after {
		d := s.bytes - before[key].bytes
		if d == 0 || !slices.ContainsFunc(s.funcs, func(f string) bool { return strings.Contains(f, marker) }) {
			continue
		}
		owner, fn := "runtime", ""
		for _, f := range s.funcs {
			if strings.HasPrefix(f, modulePath+"/perf.") {
				owner, fn = "workload", f
				break
			}
			if strings.HasPrefix(f, modulePath+".") || strings.HasPrefix(f, modulePath+"/internal/") {
				owner, fn = "caudal", f
				break
			}
		}
		byOwner[owner] += d
		if fn != "" {
			site := fn
			if s.funcs[0] != fn {
				site = s.funcs[0] + " ← " + fn
			}
			byFunc[site] += d
		}
	}
	return byOwner, byFunc
}
