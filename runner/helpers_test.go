package runner_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// ledger counts the side effects of agents: the calls, by what each
// produced (its name and input), as an external system would see them.
type ledger struct {
	mu    sync.Mutex // protects calls
	calls map[string]int
}

func newLedger() *ledger { return &ledger{calls: make(map[string]int)} }

func (l *ledger) add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[key]++
}

func (l *ledger) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.calls)
}

// agent is a step whose output is its name applied to its input, counted
// in l; it also writes its output to the state under its name.
func agent(l *ledger, name string) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		out := fmt.Sprintf("%s(%v)", name, in)
		l.add(out)
		if st := caudal.StateFrom(ctx); st != nil {
			st.Set(name, out)
		}
		return caudal.Reply{Output: out, Usage: caudal.Usage{PromptTokens: 1, CompletionTokens: 2}}, nil
	}))
}

// split is a counted step that outputs three items.
func split(l *ledger) caudal.Step {
	return caudal.AgentStep("split", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		l.add(fmt.Sprintf("split(%v)", in))
		return caudal.Reply{Output: []any{fmt.Sprint(in, "/i0"), fmt.Sprint(in, "/i1"), fmt.Sprint(in, "/i2")}}, nil
	}))
}

// ask is a human-input step, or, when answered, a counted step giving the
// answer at once: the same pipeline without the pause, for comparisons.
func ask(l *ledger, name string, answered bool, opts ...caudal.StepOption) caudal.Step {
	if !answered {
		return caudal.HumanInput(name, "what about "+name+"?", opts...)
	}
	return caudal.AgentStep(name, caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{Output: answerFor(name)}, nil
	}))
}

// answerFor is the test's answer to the human-input step name.
func answerFor(name string) any { return map[string]any{"ok": true, "by": name} }

// branchKey picks a conditional branch by the number of items.
func branchKey(_ context.Context, in any) (string, error) {
	if l, ok := in.([]any); ok && len(l) == 3 {
		return "three", nil
	}
	return "other", nil
}

// fullPipeline is a sequence, a parallel step, a loop, a map and a
// conditional, made of counted agents.
func fullPipeline(l *ledger) caudal.Step {
	return caudal.Seq("p",
		agent(l, "prep"),
		caudal.Parallel("fan", caudal.Branch("a", agent(l, "a")), caudal.Branch("b", caudal.Seq("bs", agent(l, "b1"), agent(l, "b2")))),
		caudal.Loop("loop", agent(l, "iter"), caudal.WithMaxIterations(3)),
		split(l),
		caudal.Map("each", agent(l, "item"), caudal.WithConcurrency(2)),
		caudal.Conditional("route", branchKey, caudal.Branch("three", agent(l, "x")), caudal.WithDefault(agent(l, "y"))),
		agent(l, "last"),
	)
}

// pausingPipelines are pipelines pausing inside each construct; answered
// gives the same pipeline without the pauses.
func pausingPipelines(l *ledger, answered bool) map[string]caudal.Step {
	return map[string]caudal.Step{
		"seq": caudal.Seq("p", agent(l, "first"), ask(l, "ask", answered), agent(l, "after")),
		"loop": caudal.Seq("p", agent(l, "first"),
			caudal.Loop("loop", caudal.Seq("body", agent(l, "iter"), ask(l, "ask", answered)), caudal.WithMaxIterations(2)),
			agent(l, "after")),
		"map": caudal.Seq("p", split(l),
			caudal.Map("each", caudal.Seq("body", agent(l, "item"), ask(l, "ask", answered))),
			agent(l, "after")),
		"map-concurrent": caudal.Seq("p", split(l),
			caudal.Map("each", caudal.Seq("body", agent(l, "item"), ask(l, "ask", answered)), caudal.WithConcurrency(3)),
			agent(l, "after")),
		"conditional": caudal.Seq("p", split(l),
			caudal.Conditional("route", branchKey,
				caudal.Branch("three", caudal.Seq("t", agent(l, "x"), ask(l, "ask", answered))),
				caudal.WithDefault(agent(l, "y"))),
			agent(l, "after")),
		"parallel-two-pauses": caudal.Seq("p", agent(l, "first"),
			caudal.Parallel("fan",
				caudal.Branch("a", caudal.Seq("as", agent(l, "a1"), ask(l, "aska", answered), agent(l, "a2"))),
				caudal.Branch("b", caudal.Seq("bs", agent(l, "b1"), ask(l, "askb", answered), agent(l, "b2"))),
				caudal.Branch("c", agent(l, "c"))),
			agent(l, "after")),
	}
}

// newRunner returns a runner on ex and store, with pipelines registered.
func newRunner(t *testing.T, store runner.Store, pipelines map[string]caudal.Step, opts ...runner.Option) *runner.Runner {
	t.Helper()
	ex, err := caudal.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	r, err := runner.New(ex, store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(pipelines)) {
		if err := r.Register(name, pipelines[name]); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// clock is a memory store's clock that tests move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func memStore(t *testing.T) (*runner.MemoryStore, *clock) {
	s := runner.NewMemoryStore()
	c := new(clock)
	runner.SetClock(s, c.now)
	t.Cleanup(func() { _ = s.Close() })
	return s, c
}

// errInjected is the fault store's error.
var errInjected = errors.New("injected store fault")

// faultStore is a Store that fails calls as its rule says: rule sees the
// method and how many times it was called (this call included).
type faultStore struct {
	runner.Store
	mu    sync.Mutex // protects calls and rule
	calls map[string]int
	rule  func(method string, n int) error
}

func newFaultStore(s runner.Store, rule func(method string, n int) error) *faultStore {
	return &faultStore{Store: s, calls: make(map[string]int), rule: rule}
}

func (f *faultStore) check(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if f.rule == nil {
		return nil
	}
	return f.rule(method, f.calls[method])
}

// heal makes the store work again.
func (f *faultStore) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rule = nil
}

func (f *faultStore) Create(ctx context.Context, run *runner.Run) error {
	if err := f.check("Create"); err != nil {
		return err
	}
	return f.Store.Create(ctx, run)
}

func (f *faultStore) Get(ctx context.Context, id string) (*runner.Run, error) {
	if err := f.check("Get"); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, id)
}

func (f *faultStore) Append(ctx context.Context, id, owner string, rec caudal.Record) (int64, error) {
	if err := f.check("Append"); err != nil {
		return 0, err
	}
	return f.Store.Append(ctx, id, owner, rec)
}

func (f *faultStore) Journal(ctx context.Context, id string) ([]runner.Entry, error) {
	if err := f.check("Journal"); err != nil {
		return nil, err
	}
	return f.Store.Journal(ctx, id)
}

func (f *faultStore) Update(ctx context.Context, run *runner.Run, owner string) error {
	if err := f.check("Update"); err != nil {
		return err
	}
	return f.Store.Update(ctx, run, owner)
}

func (f *faultStore) Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...runner.Status) (*runner.Run, error) {
	if err := f.check("Claim"); err != nil {
		return nil, err
	}
	return f.Store.Claim(ctx, id, owner, ttl, statuses...)
}

func (f *faultStore) Heartbeat(ctx context.Context, id, owner string, ttl time.Duration) error {
	if err := f.check("Heartbeat"); err != nil {
		return err
	}
	return f.Store.Heartbeat(ctx, id, owner, ttl)
}

func (f *faultStore) Release(ctx context.Context, id, owner string) error {
	if err := f.check("Release"); err != nil {
		return err
	}
	return f.Store.Release(ctx, id, owner)
}

// dieAfterAppends is a rule under which the store works for n appends,
// then every call fails: the process lost its store, as one that died.
func dieAfterAppends(n int) func(string, int) error {
	dead := false
	return func(method string, k int) error {
		if method == "Append" && k > n {
			dead = true
		}
		if dead {
			return errInjected
		}
		return nil
	}
}

// resumeAll answers the run's pauses, one Resume each, until it stops
// otherwise, and returns it and how many pauses it answered.
func resumeAll(ctx context.Context, t *testing.T, r *runner.Runner, run *runner.Run) (*runner.Run, int) {
	t.Helper()
	n := 0
	for run.Status == runner.StatusPaused {
		name := run.Pause.Path[lastSlash(run.Pause.Path)+1:]
		var err error
		if run, err = r.Resume(ctx, run.ID, runner.Answer{Value: answerFor(name), By: "tester"}); err != nil {
			t.Fatalf("Resume after %d answers: %v", n, err)
		}
		n++
		if n > 50 {
			t.Fatal("more than 50 pauses")
		}
	}
	return run, n
}

func lastSlash(p string) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return i
		}
	}
	return -1
}
