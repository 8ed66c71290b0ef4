package optimize_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/optimize"
)

// equivN is how many random pipelines TestEquivalence compares per
// configuration; equivSeed, the first seed.
var (
	equivN    = flag.Int("equiv.n", 300, "random pipelines TestEquivalence compares per configuration")
	equivSeed = flag.Uint64("equiv.seed", 1, "first seed of TestEquivalence's pipelines")
)

// equivConfigs are the configurations compared with the baseline: each
// component alone, and every one together.
func equivConfigs() []struct {
	name string
	cfg  optimize.Config
} {
	var out []struct {
		name string
		cfg  optimize.Config
	}
	for _, name := range []string{"object-pool", "context-manager", "telemetry", "adaptive-resource-manager", "cache-optimization"} {
		cfg, ok := optimize.Component(name)
		if !ok {
			panic("no component " + name)
		}
		out = append(out, struct {
			name string
			cfg  optimize.Config
		}{name, cfg})
	}
	// A breaker that trips changes the outcome by design (a fast failure
	// instead of a call): with 1000 consecutive failures to open, no random
	// pipeline trips it, and what is compared is its closed path.
	untripped := optimize.CircuitBreakerConfig{Enabled: true, ConsecutiveFailures: 1000}
	eh, _ := optimize.Component("error-handling")
	out = append(out, struct {
		name string
		cfg  optimize.Config
	}{"error-handling", eh}, struct {
		name string
		cfg  optimize.Config
	}{"circuit-breaker", optimize.Config{CircuitBreaker: untripped}})
	all := optimize.All()
	all.CircuitBreaker = untripped
	// A telemetry ring and near cache small enough to wrap and evict
	// within one pipeline: the equivalence must not depend on room.
	small := all
	small.Telemetry.BufferSize = 1 << 14
	small.CacheOptimization.Capacity, small.CacheOptimization.Shards = 4, 2
	small.AdaptiveResourceManager.InitialLimit, small.AdaptiveResourceManager.MaxLimit = 1, 64
	// The automatic optimization, at its period and at one short enough
	// to switch components while the pipelines run.
	fast := optimize.Auto()
	fast.AutomaticOptimization.Interval, fast.AutomaticOptimization.Hold = time.Millisecond, 2
	return append(out, struct {
		name string
		cfg  optimize.Config
	}{"all", all}, struct {
		name string
		cfg  optimize.Config
	}{"all-small", small}, struct {
		name string
		cfg  optimize.Config
	}{"auto", optimize.Auto()}, struct {
		name string
		cfg  optimize.Config
	}{"auto-fast", fast})
}

// TestEquivalence runs the same random pipelines — agents that fail and
// retry, fall back, pause for a human and are resumed, spend against
// limits and breach them, write state; sequences, parallel steps with
// every merge strategy and failure policy, loops, sequential and
// concurrent maps, conditionals, cache steps run twice — on the baseline
// executor and on an executor with each component (and with all), and
// requires the same outcome: outputs, errors, results (latencies aside),
// final state, usage, and the events, in order per step instance and, for
// a pipeline without concurrency, in order overall.
func TestEquivalence(t *testing.T) {
	compared := 0
	covered := map[string]int{} // what the baseline runs went through, by event kind and outcome
	for _, c := range equivConfigs() {
		t.Run(c.name, func(t *testing.T) {
			for i := range *equivN {
				seed := *equivSeed + uint64(i)
				p := genPipeline(seed)
				want := p.run(t, nil)
				got := p.run(t, &c.cfg)
				if diff := want.diff(got); diff != "" {
					t.Fatalf("seed %d (%s): with %s differs from the baseline:\n%s", seed, p.desc, c.name, diff)
				}
				compared++
				if c.name == "all" {
					want.tally(covered)
				}
			}
		})
	}
	t.Logf("compared %d pipeline runs with the baseline's; the baseline's runs went through (per configuration): %v", compared, covered)
	for _, k := range []string{"attempt_failed", "retry", "fallback", "cache_hit", "paused", "usage_breach", "merge_conflict", "failed"} {
		if covered[k] == 0 && *equivN >= 100 {
			t.Errorf("no pipeline went through %s: the generator misses a case", k)
		}
	}
}

// tally counts, once per pipeline, the kinds of event its executions
// emitted, and "failed" when one ended in an error.
func (o outcome) tally(into map[string]int) {
	seen := map[string]bool{}
	for _, e := range o.execs {
		if e.err != "" {
			seen["failed"] = true
		}
		for _, ev := range e.events {
			kind := strings.Fields(ev)[1]
			seen[kind] = true
		}
	}
	for k := range seen {
		into[k]++
	}
}

// FuzzEquivalence varies the pipelines and their inputs: every component
// on must give the baseline's outcome.
func FuzzEquivalence(f *testing.F) {
	for _, s := range []uint64{1, 7, 42, 1001, 31337} {
		f.Add(s, "input")
	}
	all := optimize.All()
	all.CircuitBreaker.ConsecutiveFailures = 1000 // never tripped: see equivConfigs
	f.Fuzz(func(t *testing.T, seed uint64, in string) {
		p := genPipeline(seed)
		p.input = in
		want := p.run(t, nil)
		got := p.run(t, &all)
		if diff := want.diff(got); diff != "" {
			t.Fatalf("seed %d input %q (%s): differs from the baseline:\n%s", seed, in, p.desc, diff)
		}
	})
}

// genNode is a generated step: how to build it afresh (cache steps get
// the cache of the executor they run on) and whether it may end in a
// failure (steps that may are kept out of concurrent constructs, where
// which sibling fails first would depend on timing, on any executor).
type genNode struct {
	build      func(env *genEnv) caudal.Step
	mayFail    bool
	concurrent bool // it, or a step inside it, runs steps at once
	desc       string
}

// genEnv is what one run of a pipeline builds its steps with.
type genEnv struct {
	cache caudal.Cache
}

// gen draws a pipeline.
type gen struct {
	r     *rand.Rand
	names int
	pause bool // a human-input step was drawn
}

func (g *gen) name(prefix string) string {
	g.names++
	return fmt.Sprintf("%s%d", prefix, g.names)
}

// node draws a step of at most depth levels; inConcurrent forbids steps
// that may fail.
func (g *gen) node(depth int, inConcurrent bool) genNode {
	k := g.r.IntN(10)
	if depth <= 0 {
		k = 0
	}
	switch k {
	case 0, 1, 2:
		return g.agent(inConcurrent)
	case 3:
		n := 1 + g.r.IntN(3)
		kids := make([]genNode, n)
		for i := range kids {
			kids[i] = g.node(depth-1, inConcurrent)
		}
		name := g.name("seq")
		return genNode{
			build: func(env *genEnv) caudal.Step {
				steps := make([]caudal.Step, len(kids))
				for i, k := range kids {
					steps[i] = k.build(env)
				}
				return caudal.Seq(name, steps...)
			},
			mayFail:    slices.ContainsFunc(kids, func(k genNode) bool { return k.mayFail }),
			concurrent: slices.ContainsFunc(kids, func(k genNode) bool { return k.concurrent }),
			desc:       name,
		}
	case 4, 5:
		return g.parallel(depth, inConcurrent)
	case 6:
		return g.loop(depth, inConcurrent)
	case 7:
		return g.mapStep(depth, inConcurrent)
	case 8:
		return g.conditional(depth, inConcurrent)
	default:
		if !g.pause && !inConcurrent && g.r.IntN(2) == 0 {
			g.pause = true
			name := g.name("ask")
			return genNode{build: func(*genEnv) caudal.Step { return caudal.HumanInput(name, "") }, desc: name}
		}
		return g.cached(inConcurrent)
	}
}

// agent draws an agent step: deterministic in its input and attempt, it
// may fail its first attempts, fail for good, spend, and write the state.
func (g *gen) agent(inConcurrent bool) genNode {
	name := g.name("a")
	failFirst := g.r.IntN(3)
	retries := g.r.IntN(3)
	permanent := !inConcurrent && g.r.IntN(8) == 0
	tokens := int64(1 + g.r.IntN(20))
	writes := g.r.IntN(3) > 0
	fallback := g.r.IntN(3) == 0
	if inConcurrent && failFirst > retries && !fallback {
		failFirst = retries // it must end well
	}
	mayFail := permanent || (failFirst > retries && !fallback)
	run := func(ctx context.Context, in any) (caudal.Reply, error) {
		u := caudal.Usage{PromptTokens: tokens, CompletionTokens: 1, CostUSD: float64(tokens) / 1000}
		if permanent {
			return caudal.Reply{Usage: u}, caudal.Permanent(fmt.Errorf("%s: refused %v", name, in))
		}
		if caudal.Attempt(ctx) <= failFirst {
			return caudal.Reply{Usage: u}, fmt.Errorf("%s: attempt %d failed", name, caudal.Attempt(ctx))
		}
		if st := caudal.StateFrom(ctx); st != nil && writes {
			prev, _ := caudal.Get[string](st, "last")
			st.Set("last", name)
			st.Set(name, map[string]any{"in": fmt.Sprint(in), "after": prev, "tags": []any{name, "x"}})
		}
		return caudal.Reply{Output: fmt.Sprintf("%s(%v)", name, in), Usage: u}, nil
	}
	desc := fmt.Sprintf("%s[fail %d/%d retries, perm %v, fb %v]", name, failFirst, retries, permanent, fallback)
	return genNode{
		build: func(*genEnv) caudal.Step {
			opts := []caudal.StepOption{caudal.WithRetries(retries), caudal.WithBackoff(0, 0)}
			if fallback {
				opts = append(opts, caudal.WithFallback(caudal.AgentStep(name+"_fb", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
					return caudal.Reply{Output: fmt.Sprintf("%s_fb(%v)", name, in), Usage: caudal.Usage{PromptTokens: 2}}, nil
				}))))
			}
			return caudal.AgentStep(name, caudal.AgentFunc(run), opts...)
		},
		mayFail: mayFail,
		desc:    desc,
	}
}

var merges = []caudal.MergeStrategy{caudal.NoMerge, caudal.ContextUpdate, caudal.Overwrite, caudal.KeepFirst, caudal.ErrorOnConflict}

func (g *gen) parallel(depth int, inConcurrent bool) genNode {
	name := g.name("par")
	n := 2 + g.r.IntN(3)
	kids := make([]genNode, n)
	for i := range kids {
		kids[i] = g.node(depth-1, true)
	}
	merge := merges[g.r.IntN(len(merges))]
	if inConcurrent && merge == caudal.ErrorOnConflict {
		merge = caudal.ContextUpdate // a conflict fails the step: not among siblings
	}
	policy := caudal.Propagate
	if g.r.IntN(2) == 0 {
		policy = caudal.Ignore
	}
	conc := g.r.IntN(3) // 0: all at once
	return genNode{
		build: func(env *genEnv) caudal.Step {
			opts := []caudal.StepOption{caudal.WithMerge(merge), caudal.WithOnBranchFailure(policy)}
			if conc > 0 {
				opts = append(opts, caudal.WithConcurrency(conc))
			}
			for i, k := range kids {
				opts = append(opts, caudal.Branch(fmt.Sprint("b", i), k.build(env)))
			}
			return caudal.Parallel(name, opts...)
		},
		mayFail:    merge == caudal.ErrorOnConflict,
		concurrent: true,
		desc:       fmt.Sprintf("%s[%v, %d branches]", name, merge, n),
	}
}

func (g *gen) loop(depth int, inConcurrent bool) genNode {
	name := g.name("loop")
	body := g.node(depth-1, inConcurrent)
	iters := 1 + g.r.IntN(3)
	return genNode{
		build: func(env *genEnv) caudal.Step {
			return caudal.Loop(name, body.build(env), caudal.WithMaxIterations(iters))
		},
		mayFail:    body.mayFail,
		concurrent: body.concurrent,
		desc:       fmt.Sprintf("%s[%d × %s]", name, iters, body.desc),
	}
}

func (g *gen) mapStep(depth int, inConcurrent bool) genNode {
	name := g.name("map")
	conc := 1 + g.r.IntN(4)
	body := g.node(depth-1, inConcurrent || conc > 1)
	items := 1 + g.r.IntN(5)
	return genNode{
		build: func(env *genEnv) caudal.Step {
			split := caudal.Func(name+"_items", func(_ context.Context, in any) ([]any, error) {
				out := make([]any, items)
				for i := range out {
					out[i] = fmt.Sprintf("%v#%d", in, i) // distinct: no two items miss on one key at once
				}
				return out, nil
			})
			var opts []caudal.StepOption
			if conc > 1 {
				opts = append(opts, caudal.WithConcurrency(conc))
			}
			return caudal.Seq(name+"_seq", split, caudal.Map(name, body.build(env), opts...))
		},
		mayFail:    body.mayFail,
		concurrent: conc > 1 || body.concurrent,
		desc:       fmt.Sprintf("%s[%d items, conc %d, %s]", name, items, conc, body.desc),
	}
}

func (g *gen) conditional(depth int, inConcurrent bool) genNode {
	name := g.name("cond")
	a, b := g.node(depth-1, inConcurrent), g.node(depth-1, inConcurrent)
	return genNode{
		build: func(env *genEnv) caudal.Step {
			key := func(_ context.Context, in any) (string, error) {
				if len(fmt.Sprint(in))%2 == 0 {
					return "even", nil
				}
				return "odd", nil
			}
			return caudal.Conditional(name, key, caudal.Branch("even", a.build(env)), caudal.Branch("odd", b.build(env)))
		},
		mayFail:    a.mayFail || b.mayFail,
		concurrent: a.concurrent || b.concurrent,
		desc:       fmt.Sprintf("%s[%s | %s]", name, a.desc, b.desc),
	}
}

func (g *gen) cached(inConcurrent bool) genNode {
	inner := g.agent(inConcurrent)
	stateKeys := g.r.IntN(2) == 0
	return genNode{
		build: func(env *genEnv) caudal.Step {
			var opts []caudal.StepOption
			if stateKeys {
				opts = append(opts, caudal.WithCacheStateKeys("seed"))
			}
			return caudal.Cached(inner.build(env), env.cache, opts...)
		},
		mayFail: inner.mayFail,
		desc:    "cached " + inner.desc,
	}
}

// genPipelineT is a generated pipeline and how to run it.
type genPipelineT struct {
	root   genNode
	input  string
	state  map[string]any
	limits *caudal.Limits
	desc   string
}

func genPipeline(seed uint64) *genPipelineT {
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	root := g.node(3, false)
	p := &genPipelineT{root: root, input: fmt.Sprint("in", seed%7), desc: root.desc}
	if g.r.IntN(2) == 0 {
		p.state = map[string]any{"seed": float64(seed % 3)}
		for i := range g.r.IntN(40) {
			p.state[fmt.Sprint("k", i)] = map[string]any{"n": float64(i), "list": []any{"a", float64(i)}}
		}
	}
	if !root.concurrent && g.r.IntN(3) == 0 {
		// Limits only where no two calls run at once: which of two
		// concurrent calls breaches first is up to the scheduler.
		p.limits = &caudal.Limits{MaxTokens: int64(10 + g.r.IntN(80))}
	}
	return p
}

// outcome is what one run of a pipeline gave: per execution (the
// pipeline runs twice on one executor, so that cache steps hit), its
// result, error and events, and the final state.
type outcome struct {
	execs      []execOutcome
	state      string
	concurrent bool
}

type execOutcome struct {
	result string
	err    string
	events []string
}

// run executes the pipeline twice on a fresh executor with cfg (nil: the
// baseline), resuming every pause with an answer.
func (p *genPipelineT) run(t testing.TB, cfg *optimize.Config) outcome {
	t.Helper()
	cache, err := caudal.NewMemoryCache(64)
	if err != nil {
		t.Fatal(err)
	}
	rec := &eventLog{}
	opts := []caudal.Option{caudal.WithSink(rec)}
	if p.limits != nil {
		opts = append(opts, caudal.WithLimits(*p.limits))
	}
	if cfg != nil {
		opts = append(opts, optimize.Use(*cfg))
	}
	ex, err := caudal.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}()
	step, err := caudal.Build(p.root.build(&genEnv{cache: cache}))
	if err != nil {
		t.Fatalf("Build(%s) = %v", p.desc, err)
	}
	var st *caudal.State
	if p.state != nil {
		st = caudal.NewState(deepCopyJSON(p.state))
	}
	out := outcome{concurrent: p.root.concurrent}
	for exec := range 2 {
		runOpts := []caudal.Option{caudal.WithRunID(fmt.Sprint("run", exec))}
		if st != nil {
			runOpts = append(runOpts, caudal.WithState(st))
		}
		res, err := ex.Execute(context.Background(), step, p.input, runOpts...)
		for resumes := 0; errors.Is(err, caudal.ErrPaused) && resumes < 5; resumes++ {
			var pe *caudal.PausedError
			if !errors.As(err, &pe) {
				t.Fatalf("a pause that is not a *PausedError: %v", err)
			}
			res, err = ex.Execute(context.Background(), step, p.input, append(runOpts, caudal.WithResume(pe.Snapshot, "answer"))...)
		}
		if err := ex.Flush(context.Background()); err != nil {
			t.Fatalf("Flush = %v", err)
		}
		eo := execOutcome{result: resultJSON(t, res), events: rec.take()}
		if err != nil {
			eo.err = err.Error()
		}
		out.execs = append(out.execs, eo)
	}
	if st != nil {
		b, err := st.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		out.state = string(b)
	}
	return out
}

// diff describes how got differs from o, or returns "".
func (o outcome) diff(got outcome) string {
	var b strings.Builder
	if o.state != got.state {
		fmt.Fprintf(&b, "final state:\n  baseline %s\n  got      %s\n", o.state, got.state)
	}
	for i := range o.execs {
		w, g := o.execs[i], got.execs[i]
		if w.err != g.err {
			fmt.Fprintf(&b, "execute %d error:\n  baseline %s\n  got      %s\n", i, w.err, g.err)
		}
		if w.result != g.result {
			fmt.Fprintf(&b, "execute %d result:\n  baseline %s\n  got      %s\n", i, w.result, g.result)
		}
		if d := eventsDiff(w.events, g.events, !o.concurrent); d != "" {
			fmt.Fprintf(&b, "execute %d events: %s\n", i, d)
		}
	}
	return b.String()
}

// eventsDiff compares two event streams: in order per step instance, and
// in order overall when total is set.
func eventsDiff(want, got []string, total bool) string {
	if total {
		if !slices.Equal(want, got) {
			return fmt.Sprintf("\n  baseline %q\n  got      %q", want, got)
		}
		return ""
	}
	per := func(evs []string) map[string][]string {
		m := map[string][]string{}
		for _, e := range evs {
			path, _, _ := strings.Cut(e, " ")
			m[path] = append(m[path], e)
		}
		return m
	}
	w, g := per(want), per(got)
	if !reflect.DeepEqual(w, g) {
		for path := range w {
			if !slices.Equal(w[path], g[path]) {
				return fmt.Sprintf("at %s:\n  baseline %q\n  got      %q", path, w[path], g[path])
			}
		}
		for path := range g {
			if _, ok := w[path]; !ok {
				return fmt.Sprintf("at %s, events the baseline has not: %q", path, g[path])
			}
		}
	}
	return ""
}

// eventLog is a sink that keeps each event as a line: path first, then
// every field but the times. It is safe for concurrent use.
type eventLog struct {
	mu     sync.Mutex // protects events
	events []string
}

func (l *eventLog) Record(_ context.Context, e *caudal.Event) {
	if e.Kind == caudal.EventTuned {
		return // the automatic optimization's own decisions: no baseline has them
	}
	var err string
	if e.Err != nil {
		err = e.Err.Error()
	}
	line := fmt.Sprintf("%s %s run=%s attempt=%d delay=%v success=%v usage=%+v err=%q reason=%q dropped=%d",
		e.Path, e.Kind, e.RunID, e.Attempt, e.Delay, e.Success, e.Usage, err, e.Reason, e.Dropped)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, line)
}

// take returns the events so far and forgets them.
func (l *eventLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.events
	l.events = nil
	return evs
}

// resultJSON is res as JSON with every latency zeroed.
func resultJSON(t testing.TB, res caudal.StepResult) string {
	t.Helper()
	var zero func(r *caudal.StepResult)
	zero = func(r *caudal.StepResult) {
		r.Latency = 0
		delete(r.Metadata, caudal.MetaErrorClass) // error handling's addition (so is Event.Class, which eventLog leaves out)
		for i := range r.Children {
			zero(&r.Children[i])
		}
	}
	zero(&res)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("marshal result: %v", err)
	}
	return string(b)
}

func deepCopyJSON(m map[string]any) map[string]any {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}
