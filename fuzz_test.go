package caudal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

// updateFuzzCorpus rewrites testdata/fuzz/FuzzResume from real runs of the
// fuzz pipeline: go test -run TestFuzzResumeCorpus -update-fuzz-corpus .
var updateFuzzCorpus = flag.Bool("update-fuzz-corpus", false, "rewrite testdata/fuzz/FuzzResume from real runs")

// fzCorpusDir holds FuzzResume's committed seed corpus.
var fzCorpusDir = filepath.Join("testdata", "fuzz", "FuzzResume")

// fzCalls counts the agent calls of one execution of the fuzz pipeline.
type fzCalls struct {
	mu sync.Mutex // protects n
	n  map[string]int
}

// add counts a call of agent name and returns its number in this
// execution, from 1.
func (c *fzCalls) add(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[name]++
	return c.n[name]
}

// snapshot returns a copy of the counts.
func (c *fzCalls) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// fzBound is how many times each agent of the fuzz pipeline can be called
// in one execution, whatever path the run takes: 1 for a step that runs
// once, 1+retries for a retried one, times the iterations of its loop
// (3) or the items of its map (at most 3: the conditional's input mapper
// truncates them, and it runs on every replay). Router and conditional
// branches each count as if chosen. A fresh run stays below it (checked by
// fzSeeds), so no resume, however tampered its snapshot, may exceed it.
var fzBound = map[string]int{
	"load": 1, "note": 1, // the cached prep sequence
	"lefty": 1, "righty": 1, "bad": 1, // the parallel with ask1
	"flaky":  3,                      // 1 + 2 retries
	"polish": 3,                      // 3 iterations
	"each":   3, "all": 3, "none": 1, // the conditional's branches: two maps or one step
	"router": 1, "fast": 1, "slow": 1, "rare": 1,
	"primary": 2, "backup": 1, // 1 + 1 retry, then the fallback with ask2
	"finish": 1,
}

// fzMaxItems is the number of map items the fuzz pipeline runs at most.
const fzMaxItems = 3

// fzItems returns the state's "items" as a list of at most fzMaxItems, or
// nil when it is not a list.
func fzItems(ctx context.Context) []any {
	st := caudal.StateFrom(ctx)
	if st == nil {
		return nil
	}
	items, _ := caudal.Get[[]any](st, "items")
	return items[:min(len(items), fzMaxItems)]
}

// fzNumber reads a counter from the state: an int in a live run, a
// float64 once it went through a snapshot.
func fzNumber(st *caudal.State, key string) int {
	v, _ := caudal.Get[any](st, key)
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}

// fzPipeline builds the fuzz pipeline, whose agents count their calls in
// c: every construct — a cached sequence, a parallel step merging with
// ContextUpdate and ignoring a failed branch, a retried step, a loop with
// an exit condition, a conditional whose branch holds a sequential and a
// concurrent map, a router, a retried primary with a fallback —, writes
// through UpdatesContext and through State.Set, and two human-input steps:
// root/fan/right/ask1 in a parallel branch, root/primary/backup/ask2 in a
// fallback.
func fzPipeline(c *fzCalls, cache caudal.Cache) caudal.Step {
	agent := func(name string, fn func(ctx context.Context, in any, call int) (any, error)) caudal.Agent {
		return caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			out, err := fn(ctx, in, c.add(name))
			return caudal.Reply{Output: out, Usage: caudal.Usage{PromptTokens: 1}}, err
		})
	}
	step := func(name string, fn func(ctx context.Context, in any, call int) (any, error), opts ...caudal.StepOption) caudal.Step {
		return caudal.AgentStep(name, agent(name, fn), opts...)
	}
	// setter sets key in the state and outputs "name(in)".
	setter := func(name, key string) caudal.Step {
		return step(name, func(ctx context.Context, in any, _ int) (any, error) {
			caudal.StateFrom(ctx).Set(key, name)
			return fmt.Sprintf("%s(%v)", name, in), nil
		})
	}
	// updater outputs {key: in}, merged into the state.
	updater := func(name, key string) caudal.Step {
		return step(name, func(_ context.Context, in any, _ int) (any, error) {
			return map[string]any{key: in}, nil
		}, caudal.UpdatesContext())
	}
	noBackoff := caudal.WithBackoff(0, 0)

	prep := caudal.Cached(caudal.Seq("prep", updater("load", "items"), setter("note", "noted")), cache)
	fan := caudal.Parallel("fan",
		caudal.Branch("left", setter("lefty", "left")),
		caudal.Branch("right", caudal.Seq("rs", setter("righty", "right"), caudal.HumanInput("ask1", "first?"))),
		caudal.Branch("bad", step("bad", func(context.Context, any, int) (any, error) { return nil, errors.New("bad down") })),
		caudal.WithMerge(caudal.ContextUpdate), caudal.WithOnBranchFailure(caudal.Ignore))
	flaky := step("flaky", func(_ context.Context, in any, call int) (any, error) {
		if call == 1 {
			return nil, errors.New("flaky down")
		}
		return in, nil
	}, caudal.WithRetries(2), noBackoff)
	loop := caudal.Loop("loop", caudal.Seq("body", step("polish", func(ctx context.Context, _ any, _ int) (any, error) {
		st := caudal.StateFrom(ctx)
		n := fzNumber(st, "rounds") + 1
		st.Set("rounds", n)
		if n >= 2 {
			return "done", nil
		}
		return "again", nil
	})), caudal.WithExitCondition(func(_ context.Context, out any) (bool, error) {
		return out == "done", nil
	}), caudal.WithMaxIterations(3))
	pick := caudal.Conditional("pick", func(ctx context.Context, _ any) (string, error) {
		if len(fzItems(ctx)) > 0 {
			return "many", nil
		}
		return "none", nil
	},
		caudal.Branch("many", caudal.Parallel("maps",
			caudal.Branch("seq", caudal.Map("eachmap", updater("each", "last_each"))),
			caudal.Branch("conc", caudal.Map("allmap", updater("all", "last_all"), caudal.WithConcurrency(3))),
			caudal.WithMerge(caudal.ContextUpdate))),
		caudal.Branch("none", setter("none", "none")),
		// The maps' items come from here, re-run on every replay, never from
		// a recorded output: no snapshot can make them run more than
		// fzMaxItems items.
		caudal.WithInputMapper(func(ctx context.Context, _ any) (any, error) { return fzItems(ctx), nil }))
	route := caudal.Router("route", agent("router", func(context.Context, any, int) (any, error) {
		return []string{"fast", "slow"}, nil
	}), caudal.Branch("fast", setter("fast", "fast")), caudal.Branch("slow", setter("slow", "slow")), caudal.Branch("rare", setter("rare", "rare")))
	primary := step("primary", func(context.Context, any, int) (any, error) { return nil, errors.New("primary down") },
		caudal.WithRetries(1), noBackoff,
		caudal.WithFallback(caudal.Seq("backup", setter("backup", "backup"), caudal.HumanInput("ask2", "second?"))))
	finish := step("finish", func(ctx context.Context, in any, _ int) (any, error) {
		return fmt.Sprintf("finish(%v, rounds=%d)", in, fzNumber(caudal.StateFrom(ctx), "rounds")), nil
	})
	return caudal.Seq("root", prep, fan, flaky, loop, pick, route, primary, finish)
}

// fzOutcome is what one execution of the fuzz pipeline did.
type fzOutcome struct {
	res      caudal.StepResult
	err      error
	calls    map[string]int
	started  []string // instance paths of the steps that started, in order
	records  []caudal.Record
	timedOut bool
	panicked string // the value and stack of a panic out of Execute
}

// fzExecute runs the fuzz pipeline once, on a fresh executor and cache,
// under a 5s deadline and a watchdog, with opts; a checkpointer collects
// JSON copies of the records.
func fzExecute(tb testing.TB, in any, opts ...caudal.Option) fzOutcome {
	tb.Helper()
	var (
		calls   fzCalls
		mu      sync.Mutex // protects started
		started []string
		cp      snapRecords
	)
	sink := sinkFunc(func(_ context.Context, e *caudal.Event) {
		if e.Kind == caudal.EventStepStarted {
			mu.Lock()
			started = append(started, e.Path)
			mu.Unlock()
		}
	})
	cache, err := caudal.NewMemoryCache(8)
	if err != nil {
		tb.Fatal(err)
	}
	built, err := caudal.Build(fzPipeline(&calls, cache))
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	ex, err := caudal.New(caudal.WithSink(sink))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	defer func() { _ = ex.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var out fzOutcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				out.panicked = fmt.Sprintf("%v\n%s", v, debug.Stack())
			}
		}()
		out.res, out.err = ex.Execute(ctx, built, in, append([]caudal.Option{caudal.WithCheckpointer(&cp)}, opts...)...)
	}()
	watchdog := time.NewTimer(10 * time.Second)
	defer watchdog.Stop()
	select {
	case <-done:
	case <-watchdog.C:
		tb.Fatalf("Execute did not return 5s after its deadline")
	}
	out.timedOut = ctx.Err() != nil
	out.calls = calls.snapshot()
	mu.Lock()
	out.started = started
	mu.Unlock()
	cp.mu.Lock()
	out.records = cp.records
	cp.mu.Unlock()
	return out
}

// total returns the number of agent calls of an execution.
func (o *fzOutcome) total() int {
	n := 0
	for _, v := range o.calls {
		n += v
	}
	return n
}

// fzMidRun are the phrases of the ErrSnapshotMismatch errors a resumed run
// raises after steps ran (flow.go, journal.go, executor.go): an unusable
// decision, writes that do not apply, a paused step never reached. Every
// other mismatch, journal order included, comes from the checks made
// before any step runs (snapshot.go).
var fzMidRun = []string{"never reached", "the decision of", "the record of"}

// fzPreRun reports whether err is a mismatch found before any step ran.
func fzPreRun(err error) bool {
	if !errors.Is(err, caudal.ErrSnapshotMismatch) {
		return false
	}
	for _, p := range fzMidRun {
		if strings.Contains(err.Error(), p) {
			return false
		}
	}
	return true
}

// problems lists what is wrong with an execution that resumed a snapshot,
// whatever the snapshot held.
func (o *fzOutcome) problems() []string {
	var out []string
	if o.panicked != "" {
		return []string{"Execute panicked: " + o.panicked}
	}
	if o.timedOut {
		out = append(out, fmt.Sprintf("Execute ran into its 5s deadline (a hang?): %v", o.err))
	}
	for _, name := range slices.Sorted(maps.Keys(o.calls)) {
		if n := o.calls[name]; n > fzBound[name] {
			out = append(out, fmt.Sprintf("agent %s called %d times; a run can call it at most %d times", name, n, fzBound[name]))
		}
	}
	if fzPreRun(o.err) && (o.total() > 0 || len(o.started) > 0) {
		out = append(out, fmt.Sprintf("Execute = %v, a mismatch of the checks before any step runs, after %d agent calls and steps %v started", o.err, o.total(), o.started))
	}
	if u := o.res.Usage; u.PromptTokens < 0 || u.CompletionTokens < 0 || !(u.CostUSD >= 0 && u.CostUSD <= math.MaxFloat64) {
		out = append(out, fmt.Sprintf("Execute = %v with usage %+v; want finite and non-negative", o.err, u))
	}
	if _, err := json.Marshal(o.res); err != nil {
		out = append(out, fmt.Sprintf("Execute's result does not encode: %v", err))
	}
	seen := map[string]bool{}
	for _, p := range o.started {
		if seen[p] {
			out = append(out, fmt.Sprintf("step instance %q started twice in one execution", p))
		}
		seen[p] = true
	}
	return out
}

// resumeProblems resumes the fuzz pipeline from snap — with an answer, or
// nil for a checkpoint — and, when that run pauses, from the snapshot of
// its pause, and lists what is wrong with either execution: a panic, a
// hang, an agent called more often than a run can, a step instance started
// twice, a mismatch of the checks before any step runs raised after steps
// ran, a changed snapshot, a pause whose snapshot is refused.
func resumeProblems(tb testing.TB, snap *caudal.Snapshot) []string {
	tb.Helper()
	before, err := json.Marshal(snap)
	if err != nil {
		return nil // only a decoded snapshot is of interest: its values encode
	}
	var answer any = "answer"
	if snap.Path == "" {
		answer = nil
	}
	o := fzExecute(tb, "ignored", caudal.WithResume(snap, answer))
	out := o.problems()
	if after, _ := json.Marshal(snap); !bytes.Equal(before, after) {
		out = append(out, fmt.Sprintf("WithResume changed its snapshot:\nbefore %s\nafter  %s", before, after))
	}
	pe, ok := errors.AsType[*caudal.PausedError](o.err)
	if !ok {
		return out
	}
	if pe.Snapshot == nil {
		return append(out, fmt.Sprintf("Execute = %v with no snapshot", o.err))
	}
	next := fzExecute(tb, nil, caudal.WithResume(fzViaJSON(tb, pe.Snapshot), "answer"))
	for _, p := range next.problems() {
		out = append(out, "resuming its pause: "+p)
	}
	if fzPreRun(next.err) {
		out = append(out, fmt.Sprintf("resuming the snapshot of its pause at %s = %v; want it accepted", pe.Path, next.err))
	}
	return out
}

// fzRun is a run of the fuzz pipeline from start to end, through its two
// pauses.
type fzRun struct {
	pauses  []*caudal.Snapshot // at ask1, at ask2
	records []caudal.Record    // what the Checkpointer received, in order
	counts  []int              // how many records each of the three executions made
	final   fzOutcome
	state   *caudal.State // the state at the end
}

// fzRealRun runs the fuzz pipeline on in from a state holding initial,
// answering its pauses with fzAnswers. It fails tb if the pipeline does
// not behave as fzBound and the seeds assume.
func fzRealRun(tb testing.TB, in any, initial map[string]any) fzRun {
	tb.Helper()
	var run fzRun
	o := fzExecute(tb, in, caudal.WithState(caudal.NewState(maps.Clone(initial))))
	for _, want := range []string{"root/fan/right/ask1", "root/primary/backup/ask2"} {
		pe, ok := errors.AsType[*caudal.PausedError](o.err)
		if !ok || pe.Path != want || pe.Snapshot == nil {
			tb.Fatalf("Execute = %v; want a pause at %s", o.err, want)
		}
		for name, n := range o.calls {
			if n > fzBound[name] {
				tb.Fatalf("a fresh run called %s %d times; fzBound says %d", name, n, fzBound[name])
			}
		}
		run.pauses = append(run.pauses, pe.Snapshot)
		run.records = append(run.records, o.records...)
		run.counts = append(run.counts, len(o.records))
		run.state = caudal.NewState(nil)
		o = fzExecute(tb, nil, caudal.WithState(run.state), caudal.WithResume(pe.Snapshot, fzAnswers[want]))
	}
	if o.err != nil {
		tb.Fatalf("Execute after the answers = %v; want success", o.err)
	}
	run.records = append(run.records, o.records...)
	run.counts = append(run.counts, len(o.records))
	run.final = o
	return run
}

// fzSeed is a named input of FuzzResume.
type fzSeed struct {
	name string
	data []byte
	file bool // one of the curated corpus committed in testdata
}

// fzSeeds runs the fuzz pipeline for real and returns snapshots of it, as
// JSON: the pause snapshots at ask1 and at ask2, checkpoints assembled from
// the records a Checkpointer received up to several points, and
// hand-broken variants. It fails tb if the pipeline does not behave as
// fzBound and the seeds assume.
func fzSeeds(tb testing.TB) []fzSeed {
	tb.Helper()
	built := mustBuild(tb, fzPipeline(&fzCalls{}, fzCache(tb)))
	fp := built.Fingerprint()
	var seeds []fzSeed
	add := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatalf("Marshal(%s): %v", name, err)
		}
		seeds = append(seeds, fzSeed{name: name, data: b, file: !strings.HasPrefix(name, "extra-")})
	}
	checkpoint := func(in any, state map[string]any, records []caudal.Record) *caudal.Snapshot {
		return &caudal.Snapshot{Version: caudal.SnapshotVersion, Fingerprint: fp, Input: in, State: state, Journal: slices.Clone(records)}
	}

	var first, last *caudal.Snapshot // the pauses at ask1 and ask2 of the first input
	for i, in := range []any{[]any{"a", "b"}, []any{}, []any{"w", "x", "y", "z"}, "not a list"} {
		state := map[string]any{"seed": float64(i)}
		run := fzRealRun(tb, in, state)
		s1, s2 := run.pauses[0], run.pauses[1]
		tag := fmt.Sprintf("in%d", i)
		if i%2 == 1 {
			tag = "extra-" + tag
		}
		add(tag+"-pause-ask1", s1)
		add(tag+"-pause-ask2", s2)
		if i > 0 {
			continue
		}
		first, last = s1, s2
		// Crashes: checkpoints of the records made up to some point.
		all, n1, n2 := run.records, run.counts[0], run.counts[1]
		for _, k := range []int{n1, n1 + n2/2, n1 + n2, len(all)} {
			add(fmt.Sprintf("%s-checkpoint-%d", tag, k), checkpoint(in, state, all[:k]))
		}
		add("extra-in0-checkpoint-3", checkpoint(in, state, all[:3]))
	}

	// Hand-broken variants of those pauses.
	broken := func(name string, base *caudal.Snapshot, edit func(s *caudal.Snapshot)) {
		s := fzViaJSON(tb, base)
		edit(s)
		if !strings.HasPrefix(name, "extra-") {
			name = "broken-" + name
		}
		add(name, s)
	}
	withRecord := func(rec caudal.Record) func(s *caudal.Snapshot) {
		return func(s *caudal.Snapshot) { s.Journal = append(s.Journal, rec) }
	}
	broken("index-minus-one", last, withRecord(caudal.Record{Path: "root/loop#-1/body", Status: caudal.StatusSucceeded, Output: "done"}))
	broken("extra-item-minus-one", first, withRecord(caudal.Record{Path: "root/pick/many/seq[-1]/each", Status: caudal.StatusSucceeded}))
	broken("huge-iteration", last, withRecord(caudal.Record{Path: "root/loop#99999999999/body", Status: caudal.StatusSucceeded}))
	broken("extra-huge-item", first, withRecord(caudal.Record{Path: "root/pick/many/seq[2147483647]/each", Status: caudal.StatusSucceeded}))
	broken("unknown-path", last, withRecord(caudal.Record{Path: "root/nosuch", Status: caudal.StatusSucceeded}))
	broken("duplicate", last, func(s *caudal.Snapshot) { s.Journal = append(s.Journal, s.Journal[0]) })
	broken("decided-no-fallback", last, withRecord(caudal.Record{Path: "root/flaky", Status: caudal.StatusDecided, Output: "x"}))
	// A decision no run can make, at a step that did not complete.
	undecided := func(path string, decision any) func(s *caudal.Snapshot) {
		return func(s *caudal.Snapshot) {
			i := slices.IndexFunc(s.Journal, func(r caudal.Record) bool { return r.Path == path })
			if i < 0 {
				tb.Fatalf("the pause at ask2 has no record of %s", path)
			}
			s.Journal[i] = caudal.Record{Path: path, Status: caudal.StatusDecided, Output: decision}
		}
	}
	broken("decided-bad-key", last, undecided("root/pick", 42.0))
	broken("decided-bad-route", last, undecided("root/route", []any{"fast", 42.0}))
	broken("empty-write-path", last, withRecord(caudal.Record{Path: "root/flaky", Status: caudal.StatusSucceeded, Writes: []caudal.Write{{Value: 1.0}}}))
	broken("huge-usage", last, func(s *caudal.Snapshot) {
		for i := range s.Journal {
			s.Journal[i].Usage = caudal.Usage{PromptTokens: math.MaxInt64, CostUSD: math.MaxFloat64}
		}
	})
	broken("wrong-fingerprint", last, func(s *caudal.Snapshot) { s.Fingerprint = "deadbeef" })
	broken("pause-at-agent", last, func(s *caudal.Snapshot) { s.Path = "root/flaky" })
	broken("out-of-order", first, withRecord(caudal.Record{Path: "root/loop", Status: caudal.StatusSucceeded, Output: "done"}))
	b, _ := json.Marshal(last)
	seeds = append(seeds, fzSeed{name: "broken-truncated", data: b[:len(b)/2], file: true})
	return seeds
}

// fzCache is newCache for a testing.TB.
func fzCache(tb testing.TB) *caudal.MemoryCache {
	tb.Helper()
	c, err := caudal.NewMemoryCache(8)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// fzViaJSON is viaJSON for a testing.TB.
func fzViaJSON(tb testing.TB, s *caudal.Snapshot) *caudal.Snapshot {
	tb.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		tb.Fatalf("Marshal(snapshot): %v", err)
	}
	var back caudal.Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		tb.Fatalf("Unmarshal(snapshot): %v", err)
	}
	return &back
}

// FuzzResume resumes the fuzz pipeline from arbitrary bytes taken as a
// JSON snapshot: whatever they hold, Execute returns (no panic, no hang),
// never calls an agent more often than a run can, never starts a step
// instance twice, rejects before any step runs what the snapshot checks
// reject, never changes the snapshot, and a pause it reaches gives a
// snapshot that resumes.
func FuzzResume(f *testing.F) {
	for _, s := range fzSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var snap caudal.Snapshot
		if json.Unmarshal(data, &snap) != nil {
			return
		}
		for _, p := range resumeProblems(t, &snap) {
			t.Error(p)
		}
	})
}

// TestFuzzResumeCorpus checks that the committed seed corpus is of the
// current pipeline (a changed fingerprint turns every seed into a
// wrong-fingerprint case, and the fuzzer then never gets past the checks),
// and rewrites it with -update-fuzz-corpus.
func TestFuzzResumeCorpus(t *testing.T) {
	if *updateFuzzCorpus {
		if err := os.RemoveAll(fzCorpusDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(fzCorpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range fzSeeds(t) {
			if !s.file {
				continue
			}
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.data)) + ")\n"
			if err := os.WriteFile(filepath.Join(fzCorpusDir, s.name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fp := mustBuild(t, fzPipeline(&fzCalls{}, newCache(t, 8))).Fingerprint()
	files, err := filepath.Glob(filepath.Join(fzCorpusDir, "*"))
	if err != nil || len(files) < 10 {
		t.Fatalf("corpus %s has %d files (%v); want at least 10 (go test -run TestFuzzResumeCorpus -update-fuzz-corpus .)", fzCorpusDir, len(files), err)
	}
	current := 0
	for _, name := range files {
		data := fzReadCorpus(t, name)
		var snap caudal.Snapshot
		if json.Unmarshal(data, &snap) == nil && snap.Fingerprint == fp {
			current++
		}
	}
	if current < len(files)/2 {
		t.Errorf("%d of %d corpus files have the pipeline's fingerprint %s; regenerate them: go test -run TestFuzzResumeCorpus -update-fuzz-corpus .", current, len(files), fp)
	}
}

// fzReadCorpus returns the []byte value of a "go test fuzz v1" file.
func fzReadCorpus(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	header, rest, _ := strings.Cut(string(b), "\n")
	lit, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
	lit, ok2 := strings.CutSuffix(lit, ")")
	if header != "go test fuzz v1" || !ok || !ok2 {
		t.Fatalf("%s is not a go test fuzz v1 file of one []byte", name)
	}
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}

// TestResumeTamperedSnapshots resumes systematic edits of real snapshots —
// every record dropped, duplicated, given another status, output, path,
// writes, usage or attempts; the paused step and the input and state
// changed — under the checks FuzzResume makes: a sweep of the edits a
// byte-level fuzzer rarely reaches.
func TestResumeTamperedSnapshots(t *testing.T) {
	huge := make([]any, 1000)
	for i := range huge {
		huge[i] = float64(i)
	}
	recordEdits := map[string]func(s *caudal.Snapshot, i int){
		"drop":           func(s *caudal.Snapshot, i int) { s.Journal = slices.Delete(s.Journal, i, i+1) },
		"duplicate":      func(s *caudal.Snapshot, i int) { s.Journal = append(s.Journal, s.Journal[i]) },
		"succeeded":      func(s *caudal.Snapshot, i int) { s.Journal[i].Status = caudal.StatusSucceeded },
		"failed":         func(s *caudal.Snapshot, i int) { s.Journal[i].Status = caudal.StatusFailed },
		"decided":        func(s *caudal.Snapshot, i int) { s.Journal[i].Status = caudal.StatusDecided },
		"unknown status": func(s *caudal.Snapshot, i int) { s.Journal[i].Status = "maybe" },
		"nil output":     func(s *caudal.Snapshot, i int) { s.Journal[i].Output = nil },
		"number output":  func(s *caudal.Snapshot, i int) { s.Journal[i].Output = 42.0 },
		"branch output":  func(s *caudal.Snapshot, i int) { s.Journal[i].Output = []any{"rare", "fast", "nosuch"} },
		"huge output":    func(s *caudal.Snapshot, i int) { s.Journal[i].Output = huge },
		"map output":     func(s *caudal.Snapshot, i int) { s.Journal[i].Output = map[string]any{"items": huge} },
		"huge items": func(s *caudal.Snapshot, i int) {
			s.Journal[i].Writes = []caudal.Write{{Path: []string{"items"}, Value: huge}}
		},
		"write into a list": func(s *caudal.Snapshot, i int) {
			s.Journal[i].Writes = []caudal.Write{{Path: []string{"items", "0", "x"}, Value: 1.0}}
		},
		"delete a key": func(s *caudal.Snapshot, i int) {
			s.Journal[i].Writes = []caudal.Write{{Path: []string{"rounds"}, Deleted: true}}
		},
		"rounds negative": func(s *caudal.Snapshot, i int) {
			s.Journal[i].Writes = []caudal.Write{{Path: []string{"rounds"}, Value: -1e9}}
		},
		"empty write path":  func(s *caudal.Snapshot, i int) { s.Journal[i].Writes = []caudal.Write{{Value: 1.0}} },
		"negative usage":    func(s *caudal.Snapshot, i int) { s.Journal[i].Usage.PromptTokens = -1 },
		"negative attempts": func(s *caudal.Snapshot, i int) { s.Journal[i].Attempts = -1 },
		"iteration 1":       func(s *caudal.Snapshot, i int) { s.Journal[i].Path += "#1" },
		"item 0":            func(s *caudal.Snapshot, i int) { s.Journal[i].Path += "[0]" },
		"parent":            func(s *caudal.Snapshot, i int) { s.Journal[i].Path = fzParent(s.Journal[i].Path) },
		"paused here":       func(s *caudal.Snapshot, i int) { s.Path = s.Journal[i].Path },
	}
	// Every path the pipeline can have, to move records to.
	paths := []string{
		"root", "root/prep", "root/prep/load", "root/fan", "root/fan/left", "root/fan/right", "root/fan/right/ask1", "root/fan/bad",
		"root/flaky", "root/loop", "root/loop#1/body", "root/loop#3/body/polish", "root/pick", "root/pick/many", "root/pick/many/seq",
		"root/pick/many/seq[0]/each", "root/pick/many/conc[2]/all", "root/pick/none", "root/route", "root/route/rare",
		"root/primary", "root/primary/backup", "root/primary/backup/ask2", "root/finish",
	}
	snapEdits := map[string]func(s *caudal.Snapshot){
		"checkpoint": func(s *caudal.Snapshot) { s.Path = "" },
		"huge usage": func(s *caudal.Snapshot) {
			for i := range s.Journal {
				s.Journal[i].Usage = caudal.Usage{PromptTokens: math.MaxInt64/2 + 1, CompletionTokens: math.MaxInt64, CostUSD: math.MaxFloat64}
			}
		},
		"no journal":   func(s *caudal.Snapshot) { s.Journal = nil },
		"reversed":     func(s *caudal.Snapshot) { slices.Reverse(s.Journal) },
		"input items":  func(s *caudal.Snapshot) { s.Input = huge },
		"state items":  func(s *caudal.Snapshot) { s.State = map[string]any{"items": huge, "rounds": "many"} },
		"nil state":    func(s *caudal.Snapshot) { s.State = nil },
		"at ask1":      func(s *caudal.Snapshot) { s.Path = "root/fan/right/ask1" },
		"at ask2":      func(s *caudal.Snapshot) { s.Path = "root/primary/backup/ask2" },
		"at a loop":    func(s *caudal.Snapshot) { s.Path = "root/loop#2" },
		"bad path":     func(s *caudal.Snapshot) { s.Path = "root//fan" },
		"other answer": func(s *caudal.Snapshot) { s.Path = "root/fan/right/ask1/x" },
	}
	for _, p := range paths {
		snapEdits["moved to "+p] = func(s *caudal.Snapshot) {
			if len(s.Journal) > 0 {
				s.Journal[len(s.Journal)/2].Path = p
			}
		}
	}

	// The pauses, and a checkpoint taken between them. (Every edit of every
	// record of every seed takes too long under -race: the fuzzer does the
	// rest.)
	var bases, checkpoints []fzSeed
	for _, s := range fzSeeds(t) {
		switch {
		case strings.HasPrefix(s.name, "in0-pause-"):
			bases = append(bases, s)
		case strings.HasPrefix(s.name, "in0-checkpoint-"):
			checkpoints = append(checkpoints, s)
		}
	}
	if len(bases) != 2 || len(checkpoints) != 4 {
		t.Fatalf("fzSeeds made %d pauses and %d checkpoints of the first input; want 2 and 4", len(bases), len(checkpoints))
	}
	bases = append(bases, checkpoints[1]) // halfway between the pauses
	errs := fzErrors{t: t}
	defer errs.done()
	report := func(name string, ps []string) {
		if len(ps) > 0 {
			errs.errorf("%s:\n  %s", name, strings.Join(ps, "\n  "))
		}
	}
	// Each edit on a third of the records (and each move to a third of the
	// paths), a different third for each base.
	edits := slices.Sorted(maps.Keys(recordEdits))
	for b, base := range bases {
		var snap caudal.Snapshot
		if err := json.Unmarshal(base.data, &snap); err != nil {
			t.Fatal(err)
		}
		for e, name := range slices.Sorted(maps.Keys(snapEdits)) {
			if strings.HasPrefix(name, "moved to ") && (b+e)%3 != 0 {
				continue
			}
			s := fzViaJSON(t, &snap)
			snapEdits[name](s)
			report(base.name+", "+name, resumeProblems(t, s))
		}
		for i := range snap.Journal {
			for e, name := range edits {
				if (b+i+e)%3 != 0 {
					continue
				}
				s := fzViaJSON(t, &snap)
				recordEdits[name](s, i)
				report(fmt.Sprintf("%s, record %d (%s): %s", base.name, i, snap.Journal[i].Path, name), resumeProblems(t, s))
			}
		}
	}
}

// fzParent returns the instance path p is in: p without its last
// segment, or p itself at the root.
func fzParent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return p
}

// fzAnswers are the answers to the fuzz pipeline's human-input steps.
var fzAnswers = map[string]any{"root/fan/right/ask1": "yes", "root/primary/backup/ask2": "ok"}

// fzFinish resumes the fuzz pipeline from snap and answers its pauses
// until it ends. It returns the final result and state, the last error,
// and the executions.
func fzFinish(tb testing.TB, snap *caudal.Snapshot, answer any) (caudal.StepResult, *caudal.State, []fzOutcome, error) {
	tb.Helper()
	var runs []fzOutcome
	for range 5 {
		st := caudal.NewState(nil)
		o := fzExecute(tb, nil, caudal.WithState(st), caudal.WithResume(snap, answer))
		runs = append(runs, o)
		pe, ok := errors.AsType[*caudal.PausedError](o.err)
		if !ok {
			return o.res, st, runs, o.err
		}
		snap, answer = fzViaJSON(tb, pe.Snapshot), fzAnswers[pe.Path]
	}
	tb.Fatalf("the fuzz pipeline paused more than 4 times")
	return caudal.StepResult{}, nil, nil, nil
}

// TestResumeFromAnyCheckpoint crashes the fuzz pipeline after each record
// it makes in turn — a checkpoint of the records up to there — and
// recovers: the run ends as the uninterrupted one did (same output, same
// state), and no step instance whose completion was recorded starts again.
// Then it drops each record of the real snapshots in turn: the resume is
// refused as a mismatch, or ends as the uninterrupted run did.
func TestResumeFromAnyCheckpoint(t *testing.T) {
	initial := map[string]any{"seed": 0.0}
	in := []any{"a", "b"}
	run := fzRealRun(t, in, initial)
	fp := mustBuild(t, fzPipeline(&fzCalls{}, newCache(t, 8))).Fingerprint()
	wantOut, wantState := snapJSON(t, run.final.res.Output), snapJSON(t, stateMap(run.state))
	errs := fzErrors{t: t}
	defer errs.done()

	for k := range len(run.records) + 1 {
		snap := &caudal.Snapshot{Version: caudal.SnapshotVersion, Fingerprint: fp, Input: in, State: initial, Journal: run.records[:k]}
		res, st, runs, err := fzFinish(t, viaJSON(t, snap), nil)
		if err != nil {
			errs.errorf("checkpoint of %d records: Execute = %v; want success", k, err)
			continue
		}
		if got := snapJSON(t, res.Output) + " " + snapJSON(t, stateMap(st)); got != wantOut+" "+wantState {
			errs.errorf("checkpoint of %d records: output and state %s; want %s %s", k, got, wantOut, wantState)
		}
		for _, rec := range run.records[:k] {
			if rec.Status != caudal.StatusSucceeded {
				continue
			}
			for _, o := range runs {
				for _, p := range o.started {
					if p == rec.Path || strings.HasPrefix(p, rec.Path+"/") || strings.HasPrefix(p, rec.Path+"#") || strings.HasPrefix(p, rec.Path+"[") {
						errs.errorf("checkpoint of %d records: step %s started, but %s had completed", k, p, rec.Path)
					}
				}
			}
		}
	}

	for n, base := range run.pauses {
		for i := range base.Journal {
			snap := viaJSON(t, base)
			snap.Journal = slices.Delete(snap.Journal, i, i+1)
			res, st, _, err := fzFinish(t, snap, fzAnswers[snap.Path])
			if errors.Is(err, caudal.ErrSnapshotMismatch) {
				continue
			}
			if got := snapJSON(t, res.Output) + " " + snapJSON(t, stateMap(st)); err != nil || got != wantOut+" "+wantState {
				errs.errorf("pause %d without record %d (%s): Execute = %s, %v; want a mismatch, or %s %s", n+1, i, base.Journal[i].Path, got, err, wantOut, wantState)
			}
		}
	}
}

// fzErrors reports the first 10 errors of a test and counts the rest.
type fzErrors struct {
	t *testing.T
	n int
}

func (c *fzErrors) errorf(format string, args ...any) {
	c.t.Helper()
	if c.n++; c.n <= 10 {
		c.t.Errorf(format, args...)
	}
}

// done reports how many errors were not shown.
func (c *fzErrors) done() {
	if c.n > 10 {
		c.t.Errorf("... and %d more", c.n-10)
	}
}
