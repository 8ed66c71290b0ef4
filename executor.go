package caudal

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
)

// Executor runs built steps: the ExecutorCore. Make one with [New] and share
// it; it is safe for concurrent use. Its overhead per agent step is measured
// by BenchmarkExecute/bare (no policies) and BenchmarkExecute/policies.
type Executor struct {
	seams        engine.Seams[Event, StepResult] // chosen once in New
	rt           rtime
	limits       Limits       // default limits of every execution
	checkpointer Checkpointer // default checkpointer of every execution
	// quiet: no sink, limits or checkpointer, so a root step with a fast
	// path may take it (its guard and switch go with it).
	quiet bool
	// simple: no limits or checkpointer (a sink allowed), so a root agent
	// step may run on a stack frame.
	simple   bool
	quietRun run // the frame of a quiet execution (executeQuiet, executeAgent)
	closed   atomic.Bool
	// closeOnce runs Close's work once; closeErr is its outcome.
	closeOnce sync.Once
	closeErr  error
	graphs    sync.Map   // weak.Pointer[graph] → *tunedGraph: the per-step switches, with a tuner only
	attachMu  sync.Mutex // serializes attaching a graph to the tuner
	// tunerBase is the Base the tuner is given: a copy of seams.Strategy,
	// made at the first attach (under attachMu).
	tunerBase *engine.Strategy[StepResult]
	id        uint64 // unique in the process, for graph.tuned
}

// executorIDs hands out Executor.id.
var executorIDs atomic.Uint64

func init() {
	engine.ErrCircuitOpen = ErrCircuitOpen
	engine.Install = installSeams
	engine.Refuse = refuse
}

// refuse returns an option that fails New with err, naming the option
// name (see engine.Refuse).
func refuse(name string, err error) Option {
	return &option{name: name, scope: scopeNew, kind: optSeams, err: err}
}

// installSeams returns the option that lets fn change an executor's seams
// (see engine.Install).
func installSeams(fn func(*engine.Seams[Event, StepResult])) Option {
	o := &option{name: "seams", scope: scopeNew, kind: optSeams, val: settings{seams: []func(*engine.Seams[Event, StepResult]){fn}}}
	if fn == nil {
		o.err = errors.New("nil seams func")
	}
	return o
}

// New returns an executor configured by opts. An invalid option — a nil
// sink, negative limits, an option that applies only to Execute — is an
// error naming it.
func New(opts ...Option) (*Executor, error) {
	var s settings
	if err := s.apply(opts, scopeNew, "New"); err != nil {
		return nil, err
	}
	ex := &Executor{limits: s.limits, checkpointer: s.checkpointer, id: executorIDs.Add(1)}
	ex.seams = engine.Seams[Event, StepResult]{
		Owner: ex,
		Alloc: engine.Fresh{},
		Strategy: engine.Strategy[StepResult]{
			Isolation:  engine.DeepCopy{},
			Limiter:    engine.Fixed{},
			Classifier: engine.Rules{},
			Keyer:      engine.CanonicalKeyer{},
			Sharer:     copySharer{},
		},
	}
	if len(s.sinks) > 0 {
		fan := make(engine.Fanout[Event], len(s.sinks))
		for i, sink := range s.sinks {
			fan[i] = sink
		}
		ex.seams.Recorder = fan
	}
	for _, fn := range s.seams {
		fn(&ex.seams)
	}
	ex.seams.Owner = nil // read by installing functions only
	if err := checkSeams(&ex.seams); err != nil {
		return nil, err
	}
	for _, svc := range ex.seams.Services {
		if svc == nil {
			return nil, errors.New("caudal: New: an installed seam added a nil service")
		}
	}
	for _, svc := range ex.seams.Services {
		svc.Start()
	}
	if s.runtime != nil {
		ex.rt = rtime{rt: s.runtime, epoch: s.runtime.Now()}
	}
	ex.simple = ex.limits.isZero() && ex.checkpointer == nil
	ex.quiet = ex.simple && ex.seams.Recorder == nil
	// A quiet execution has no state: it has no options, and needs none.
	ex.quietRun = run{rt: &ex.rt, alloc: ex.seams.Alloc, strat: &ex.seams.Strategy, plain: true, bareOK: true, stateless: true}
	return ex, nil
}

// checkSeams rejects installed seams that leave a required one unset.
func checkSeams(s *engine.Seams[Event, StepResult]) error {
	st := &s.Strategy
	if s.Alloc == nil || st.Isolation == nil || st.Limiter == nil || st.Classifier == nil || st.Keyer == nil || st.Sharer == nil {
		return errors.New("caudal: New: an installed seam left the allocator, isolation, limiter, classifier, keyer or sharer unset")
	}
	return nil
}

// Close releases the executor. Executions started after Close fail with
// [ErrClosed]. The background work of installed components (an event
// drain, a ticker) is flushed and stopped, and Close waits for it; call
// Close once the executions in flight are done, or events they record
// afterwards may be lost. Close is idempotent: the first call's error is
// returned again by later ones.
func (ex *Executor) Close() error {
	ex.closeOnce.Do(func() {
		ex.closed.Store(true)
		ex.forgetGraphs()
		var errs []error
		for i := len(ex.seams.Services) - 1; i >= 0; i-- {
			if err := stopService(ex.seams.Services[i]); err != nil {
				errs = append(errs, err)
			}
		}
		ex.closeErr = errors.Join(errs...)
	})
	return ex.closeErr
}

// stopService stops s, containing a panic in it as an error.
func stopService(s engine.Service) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("caudal: Close: a component's background work panicked: %v", v)
		}
	}()
	return s.Stop()
}

// Flush returns once the background work of installed components has
// handled everything the executions before the call handed it — every
// event recorded before Flush is delivered to the sinks — or ctx ends
// (then ctx's cause). Without such components it returns nil at once.
func (ex *Executor) Flush(ctx context.Context) error {
	var errs []error
	for _, s := range ex.seams.Services {
		if err := s.Flush(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Execute runs step with input in and returns its result. err is non-nil
// exactly when res.Success is false, and res is always filled: on failure,
// pause or budget breach it holds what had been done (path, attempts,
// usage, last output). Nested steps run on the same executor. Every
// execution of a step has a unique instance path (see [StepResult.Path]).
//
// Errors: a step that was not built wraps [ErrNotBuilt]; after Close,
// [ErrClosed]; an invalid option names it; a step whose attempts all failed
// gives a [*StepError] matching [ErrRetriesExhausted] and wrapping the last
// attempt's error ([ErrTimeout], a [*ValidationError], a [*PanicError],
// [ErrTypeMismatch], or the agent's own error); a cancelled ctx gives a
// [*StepError] wrapping [context.Cause]; a budget breach gives a
// [*UsageLimitError] matching [ErrUsageLimitExceeded]; a pause gives a
// [*PausedError] matching [ErrPaused]; a snapshot that does not fit the
// pipeline ([WithResume]) matches [ErrSnapshotMismatch]; a [Checkpointer]'s
// error fails the step whose record it refused. A panic never escapes, on
// any goroutine: in an agent, processor, validator, mapper, condition, key
// function, sink, merge function, reducer, checkpointer, a state value's
// Clone or a value's MarshalJSON it becomes a [*PanicError] naming the step
// instance (in a cache backend or a cache key, a cache error).
func (ex *Executor) Execute(ctx context.Context, step Step, in any, opts ...Option) (StepResult, error) {
	g := step.g
	if g == nil {
		return StepResult{Path: step.Name()}, fmt.Errorf("caudal: step %q: %w", step.Name(), ErrNotBuilt)
	}
	if ex.closed.Load() {
		return StepResult{Path: g.rootPath}, ErrClosed
	}
	if len(opts) == 0 && ex.simple {
		// The fast paths Build chose for the root step, before anything else
		// is set up.
		switch {
		case ex.quiet && g.bare != nil:
			// Called here, not through executeBare: this is the engine's
			// floor (BenchmarkExecute/bare), and the extra call shows in it.
			var res StepResult
			_, err := execBareFrom(ctx, &ex.rt, ex.strategy(g, &g.bare.nodeBase), g.bare, g.rootPath, in, "", &res, ex.rt.mono())
			return res, err
		case ex.quiet && g.bareSeq != nil:
			return ex.executeBare(ctx, g, in, "", nil)
		case g.agent != nil:
			return ex.executeAgent(ctx, g, g.agent, in)
		case ex.quiet && !g.pausable && !g.needsState:
			return ex.executeQuiet(ctx, g, in)
		}
	}
	var s settings
	if len(opts) > 0 {
		if err := s.apply(opts, scopeExecute, "Execute"); err != nil {
			return StepResult{Path: g.rootPath, Feedback: err.Error()}, err
		}
	}
	if ex.quiet && s.quiet() && (g.bare != nil || g.bareSeq != nil) {
		return ex.executeBare(ctx, g, in, s.runID, s.state)
	}
	return ex.execute(ctx, g, in, &s)
}

// executeBare runs the fast path Build chose for a bare root step or a
// sequence of bare steps.
func (ex *Executor) executeBare(ctx context.Context, g *graph, in any, runID string, st *State) (res StepResult, err error) {
	if st != nil {
		return ex.executeBareOn(ctx, g, in, runID, st)
	}
	if a := g.bare; a != nil {
		_, err = execBareFrom(ctx, &ex.rt, ex.strategy(g, &a.nodeBase), a, g.rootPath, in, runID, &res, ex.rt.mono())
		return res, err
	}
	err = execBareSeq(ctx, &ex.rt, &ex.seams.Strategy, ex.slots(g), g.bareSeq, g.rootPath, in, runID, &res, nil)
	return res, err
}

// executeBareOn is executeBare on the caller's state st, kept apart so
// that executeBare without one defers nothing.
func (ex *Executor) executeBareOn(ctx context.Context, g *graph, in any, runID string, st *State) (res StepResult, err error) {
	defer st.detach()
	st = st.attach()
	ctx = withState(ctx, st)
	if a := g.bare; a != nil {
		_, err = bareOn(ctx, &ex.rt, ex.strategy(g, &a.nodeBase), a, g.rootPath, in, runID, &res, ex.rt.mono(), st)
		return res, err
	}
	err = execBareSeq(ctx, &ex.rt, &ex.seams.Strategy, ex.slots(g), g.bareSeq, g.rootPath, in, runID, &res, st)
	return res, err
}

// executeAgent is executeQuiet for a root agent step without fallback or
// UpdatesContext: its attempts run on a frame that stays on the stack.
func (ex *Executor) executeAgent(ctx context.Context, g *graph, a *agentNode, in any) (res StepResult, err error) {
	defer func() {
		if v := recover(); v != nil { // in a sink: the agent's are contained closer
			err = contained(g.rootPath, &res, v)
		}
	}()
	r := ex.quietRun
	r.rec = ex.seams.Recorder
	r.slots = ex.slots(g)
	if r.rec != nil {
		r.plain, r.bareOK = false, false
		r.emit(ctx, Event{Kind: EventStepStarted, Path: g.rootPath})
	}
	start := r.rt.mono()
	res.Path = g.rootPath
	stepErr, err := a.retry(ctx, &r, g.rootPath, in, &res, start)
	if stepErr != nil {
		res.Latency = r.rt.mono() - start
		err = &stepErr.StepError
	}
	if r.rec != nil {
		r.emit(ctx, Event{
			Kind: EventStepFinished, Path: g.rootPath, Attempt: res.Attempts, Latency: res.Latency,
			Success: res.Success, Usage: res.Usage, Err: err,
		})
	}
	return res, err
}

// executeQuiet runs g when nothing observes, meters, journals or guards
// the execution and it needs no state: its frame is the executor's quiet
// template.
func (ex *Executor) executeQuiet(ctx context.Context, g *graph, in any) (StepResult, error) {
	r := runPool.Get().(*run)
	*r = ex.quietRun
	r.slots = ex.slots(g)
	err := r.step(ctx, g.root, g.rootPath, in, &r.res)
	res := r.res
	runPool.Put(r)
	return res, err
}

// execute is Execute's general path.
func (ex *Executor) execute(ctx context.Context, g *graph, in any, s *settings) (StepResult, error) {
	rootPath := g.rootPath
	// A recycled frame is overwritten whole here; what it still holds of an
	// earlier execution lives at most until the pool drops it at a GC.
	r := runPool.Get().(*run)
	defer runPool.Put(r)
	*r = run{
		rt: &ex.rt, rec: ex.seams.Recorder, alloc: ex.seams.Alloc, strat: &ex.seams.Strategy,
		runID: s.runID, stream: s.stream,
	}
	r.slots = ex.slots(g)
	st := s.state
	if st != nil {
		defer st.detach()
		st = st.attach()
	}
	if snap := s.resume; snap != nil {
		var err error
		if r.replay, err = resumeRun(g, snap, s.resumeInput); err != nil {
			return StepResult{Path: rootPath, Feedback: err.Error()}, err
		}
		in = copyValue(snap.Input)
		if st == nil {
			st = NewState(nil)
		}
		st.s.Replace(deepcopy.CopyMap(snap.State))
	}
	if st == nil && g.needsState {
		st = NewState(nil)
	}
	cp := ex.checkpointer
	if s.checkpointer != nil {
		cp = s.checkpointer
	}
	if g.pausable || cp != nil || r.replay != nil {
		r.journal = ex.startJournal(g, cp, s.resume, in, st)
		if st != nil {
			st.s.StartLog()
			defer st.s.StopLog()
		}
	}
	if st != nil {
		ctx = withState(ctx, st)
	}
	limits := ex.limits
	if s.hasLimits {
		limits = s.limits
	}
	if !limits.isZero() {
		r.quota = newQuota(limits)
	}
	r.plain = r.rec == nil && r.journal == nil && r.replay == nil
	r.stateless = st == nil
	r.bareOK = r.rec == nil && r.quota == nil

	// The result lives in the frame: a local would escape through the
	// interface call.
	res := &r.res
	err := r.step(ctx, g.root, rootPath, in, res)

	if rp := r.replay; rp != nil && rp.target != "" && !rp.delivered.Load() {
		res.Success = false
		err = fmt.Errorf("caudal: WithResume: %w: the run never reached the paused step %q (run error: %v)", ErrSnapshotMismatch, rp.target, err)
		res.Feedback = err.Error()
		return *res, err
	}
	if pe := asPaused(err); pe != nil && r.journal != nil && r.journal.keep {
		snap, serr := r.journal.snapshot(g.fingerprint, r.runID, pe)
		if serr != nil {
			err = fmt.Errorf("caudal: step %q paused, but its snapshot cannot be saved: %w", pe.Path, serr)
			res.Success, res.Feedback = false, err.Error()
			return *res, err
		}
		pe.Snapshot = snap
	}
	return *res, err
}

// startJournal returns the journal of an execution: with the checkpointer
// cp, and, for a pipeline that can pause, keeping its records, input and
// initial state for a snapshot — those of snap when resuming.
func (ex *Executor) startJournal(g *graph, cp Checkpointer, snap *Snapshot, in any, st *State) *journal {
	j := &journal{cp: cp, keep: g.pausable}
	switch {
	case !j.keep:
	case snap != nil:
		// The snapshot is only read: the new one shares its values.
		j.input, j.initial, j.records = snap.Input, snap.State, slices.Clone(snap.Journal)
	default:
		j.input = copyValue(in)
		if st != nil {
			j.initial = st.s.Copy()
		}
	}
	return j
}

// slots returns the per-step switches of g in this executor, attaching g to
// the tuner the first time; nil when the executor has no tuner.
func (ex *Executor) slots(g *graph) []*engine.Slot[StepResult] {
	if ex.seams.Tuner == nil {
		return nil
	}
	if t := g.tuned.Load(); t != nil && t.executor == ex.id {
		return t.slots
	}
	return ex.attach(g)
}

// attach finds, or makes and attaches, the per-step switches of g in this
// executor, and remembers them in g when it is the graph's first executor
// with a tuner. Switches the tuner left unset are not consulted at all.
// The graph's first executor keeps them in the graph alone; another keeps
// a record by a weak key, which goes when the graph is collected. (A graph
// attached only from its second execution cost auto its wins on a fresh
// executor's first runs: the first 256-item map at the fixed cap.)
func (ex *Executor) attach(g *graph) []*engine.Slot[StepResult] {
	first := g.firstExec.Load() == ex.id || g.firstExec.CompareAndSwap(0, ex.id)
	var key weak.Pointer[graph] // only other executors keep a record, by a weak key
	if !first {
		key = weak.Make(g)
		if v, ok := ex.graphs.Load(key); ok {
			return v.(*tunedGraph).slots
		}
	}
	ex.attachMu.Lock()
	defer ex.attachMu.Unlock()
	if t := g.tuned.Load(); first && t != nil {
		return t.slots
	}
	if !first {
		if v, ok := ex.graphs.Load(key); ok {
			return v.(*tunedGraph).slots
		}
	}
	if ex.tunerBase == nil {
		// A copy: a tuner keeps it, and a pointer into ex would keep ex
		// (and all it holds) for as long as the tuner's owner lives.
		base := ex.seams.Strategy
		ex.tunerBase = &base
	}
	eg := &engine.Graph[StepResult]{
		Root: g.root, Steps: make([]engine.Site, len(g.nodes)), Slots: make([]*engine.Slot[StepResult], len(g.nodes)),
		Base: ex.tunerBase,
	}
	for i, n := range g.nodes {
		eg.Steps[i] = n.base().site
	}
	ex.seams.Tuner.Attach(eg)
	tg := &tunedGraph{executor: ex.id, slots: eg.Slots}
	if eg.Untuned() {
		tg.slots = nil // the tuner set no switch, and never will
	}
	if first {
		g.tuned.Store(tg) // the graph's first executor: the graph holds them, no record needed
		return tg.slots
	}
	// The cleanup must not hold ex: it lives as long as g, and a graph
	// built once outlives the executors that run it. (A closure over ex
	// kept every executor that had run a long-lived graph, with its
	// components, until the graph went.) Close stops it.
	tg.forget = runtime.AddCleanup(g, forgetGraph, graphRecord{key: key, ex: weak.Make(ex)})
	ex.graphs.Store(key, tg)
	return tg.slots
}

// graphRecord names the record an executor keeps of a graph it is not the
// first executor of, for the cleanup that deletes it when the graph goes.
type graphRecord struct {
	key weak.Pointer[graph]
	ex  weak.Pointer[Executor]
}

// forgetGraph deletes the record of a collected graph from its executor,
// if the executor is still there.
func forgetGraph(r graphRecord) {
	if ex := r.ex.Value(); ex != nil {
		ex.graphs.Delete(r.key)
	}
}

// forgetGraphs drops the executor's records of the graphs it ran and
// stops their cleanups, which would otherwise stay attached to graphs
// that outlive the executor.
func (ex *Executor) forgetGraphs() {
	ex.graphs.Range(func(key, v any) bool {
		v.(*tunedGraph).forget.Stop()
		ex.graphs.Delete(key)
		return true
	})
}

// strategy returns the seams of step b of g in this executor.
func (ex *Executor) strategy(g *graph, b *nodeBase) *engine.Strategy[StepResult] {
	return strategyOf(&ex.seams.Strategy, ex.slots(g), b)
}
