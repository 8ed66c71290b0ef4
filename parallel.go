package caudal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// MergeStrategy says how the state changes of a [Parallel] step's successful
// branches reach the parent state. Failed branches never merge. Branches
// merge in declaration order, never completion order.
type MergeStrategy uint8

// The merge strategies.
const (
	// NoMerge leaves the parent state as it was (the default).
	NoMerge MergeStrategy = iota
	// ContextUpdate deep-merges every successful branch's changes; when
	// siblings wrote the same key, the later-declared branch wins and the
	// conflict is listed in [MetaMergeConflicts] and an [EventMergeConflict].
	ContextUpdate
	// Overwrite makes the last successful branch's state the parent state.
	Overwrite
	// KeepFirst makes the first successful branch's state the parent state.
	KeepFirst
	// ErrorOnConflict merges like ContextUpdate but fails the step with a
	// [*MergeConflictError], merging nothing, when siblings wrote the same key
	// with different values.
	ErrorOnConflict
)

var mergeStrategyNames = [...]string{"NoMerge", "ContextUpdate", "Overwrite", "KeepFirst", "ErrorOnConflict"}

// String returns the strategy's name.
func (m MergeStrategy) String() string {
	if int(m) < len(mergeStrategyNames) {
		return mergeStrategyNames[m]
	}
	return "MergeStrategy(" + strconv.Itoa(int(m)) + ")"
}

// FailurePolicy says what a failed branch does to a [Parallel] step.
type FailurePolicy uint8

// The failure policies.
const (
	// Propagate fails the step when any branch fails (the default).
	Propagate FailurePolicy = iota
	// Ignore fails the step only when every branch fails.
	Ignore
)

// MetaMergeConflicts lists the state keys sibling branches both wrote.
const MetaMergeConflicts = "merge_conflicts"

// The built-in reducers, for [WithReducer].
var (
	// ReduceAppend concatenates lists: the parent's, then what each branch
	// appended to it.
	ReduceAppend = statemerge.Append
	// ReduceSum adds what each branch added to the parent's number.
	ReduceSum = statemerge.Sum
	// ReduceMax keeps the largest number.
	ReduceMax = statemerge.Max
)

// reducer is a [WithReducer] function.
type reducer = func(parent any, parentOK bool, branches []any) (any, error)

// BranchState is one branch of a [Parallel] step as a [WithMergeFunc]
// function sees it: its result and its isolated state at the end.
type BranchState struct {
	Name   string
	Result StepResult
	State  *State
}

// MergeConflictError reports sibling branches that wrote the same state key
// under [ErrorOnConflict].
type MergeConflictError struct {
	Step     string   // the parallel step
	Key      string   // the first conflicting key, dotted for nested keys
	Branches []string // the branches that wrote it, in declaration order
}

func (e *MergeConflictError) Error() string {
	return fmt.Sprintf("caudal: step %q: branches %s wrote state key %q", e.Step, strings.Join(e.Branches, ", "), e.Key)
}

func (e *MergeConflictError) instancePath() string { return e.Step }

type mergeConfig struct {
	strategy MergeStrategy
	failure  FailurePolicy
	reducers map[string]reducer
	fn       func(ctx context.Context, parent *State, branches []BranchState) error
}

var parallelKinds = []stepKind{kindParallel, kindRouter}

// Parallel makes a step that runs its branches ([Branch]) concurrently on
// the same input, each on an isolated deep copy of the run's state. Its
// output is a map from branch name to output (successful branches only);
// its usage is the sum of the branches'. The run's usage limits are split
// evenly across the branches, and a breach in one cancels its siblings
// through their context. Options: [WithMerge], [WithReducer],
// [WithMergeFunc], [WithOnBranchFailure], [WithConcurrency],
// [UpdatesContext].
func Parallel(name string, opts ...StepOption) Step {
	d := &stepDef{kind: kindParallel, name: name}
	d.apply(opts)
	if len(d.children) == 0 {
		d.errs = append(d.errs, errors.New("parallel step has no branches"))
	}
	return Step{def: d}
}

// WithMerge sets how successful branches' state changes merge back
// (default [NoMerge]).
func WithMerge(m MergeStrategy) StepOption {
	return kindsOption("WithMerge", parallelKinds, func(d *stepDef) error {
		if m > ErrorOnConflict {
			return fmt.Errorf("unknown merge strategy %v", m)
		}
		d.merge.strategy = m
		return nil
	})
}

// WithReducer merges the top-level state key with r instead of the
// strategy; sibling writes to that key are then not conflicts. r gets the
// parent's value at the fork (parentOK false when absent) and each
// successful branch's value, in declaration order (branches that removed
// the key are left out), and returns the merged value; an error or a panic
// fails the step. See [ReduceAppend], [ReduceSum], [ReduceMax].
func WithReducer(key string, r func(parent any, parentOK bool, branches []any) (any, error)) StepOption {
	return kindsOption("WithReducer", parallelKinds, func(d *stepDef) error {
		if r == nil {
			return fmt.Errorf("nil reducer for key %q", key)
		}
		if d.merge.reducers == nil {
			d.merge.reducers = make(map[string]reducer)
		}
		d.merge.reducers[key] = r
		return nil
	})
}

// WithMergeFunc replaces the merge strategy and reducers by fn, which gets
// the parent state and every branch, failed ones included, in declaration
// order. An error fails the step.
func WithMergeFunc(fn func(ctx context.Context, parent *State, branches []BranchState) error) StepOption {
	return kindsOption("WithMergeFunc", parallelKinds, func(d *stepDef) error {
		if fn == nil {
			return errors.New("nil merge func")
		}
		d.merge.fn = fn
		return nil
	})
}

// WithOnBranchFailure sets what a failed branch does (default [Propagate]).
func WithOnBranchFailure(p FailurePolicy) StepOption {
	return kindsOption("WithOnBranchFailure", parallelKinds, func(d *stepDef) error {
		if p > Ignore {
			return fmt.Errorf("unknown failure policy %d", p)
		}
		d.merge.failure = p
		return nil
	})
}

// WithConcurrency caps how many branches (or map items) run at once. By
// default a [Parallel] or [Router] step runs all its (chosen) branches at
// once, as declared branches are few and usually wait on I/O; a [Map] runs
// one item at a time, as a collection can be huge. n must be >= 1.
func WithConcurrency(n int) StepOption {
	return kindsOption("WithConcurrency", []stepKind{kindParallel, kindRouter, kindMap}, func(d *stepDef) error {
		if n < 1 {
			return fmt.Errorf("concurrency must be >= 1, got %d", n)
		}
		d.concurrency = n
		return nil
	})
}

// parallelNode is a compiled parallel step (and the fan-out of a router).
type parallelNode struct {
	nodeBase
	branches    []node
	names       []string
	all         []int // 0..len(branches)-1
	merge       mergeConfig
	concurrency int
	// together: no WithConcurrency, so every (chosen) branch runs at once
	// and no limiter is consulted — branches may wait on one another.
	together bool
}

func (n *parallelNode) kids() []node { return n.branches }

// exec runs a parallel step.
func (n *parallelNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	start := r.rt.mono()
	res.Path, res.RunID, res.Attempts = p, r.runID, 1
	return n.runBranches(ctx, r, p, in, res, n.all, start)
}

// branchRun is one branch's execution inside runBranches, or one item's
// inside a map.
type branchRun struct {
	r      *run // the branch's frame: the parent's, or a copy with the branch's share of the budget
	path   string
	res    StepResult
	err    error
	state  *State
	writes []Write
}

// runBranches runs the branches selected (indexes into n.branches, in
// declaration order) and merges them.
func (n *parallelNode) runBranches(ctx context.Context, r *run, p string, in any, res *StepResult, selected []int, start time.Duration) error {
	parent := StateFrom(ctx)
	strat := r.strategy(&n.nodeBase)
	runs := make([]branchRun, len(selected))
	var frames []run // the branches' own frames, when they split a budget
	if r.quota != nil {
		frames = make([]run, len(selected))
	}
	quotas := r.quota.split(len(selected))
	for pos, b := range selected {
		br := &runs[pos]
		br.r = r
		if frames != nil {
			frames[pos] = *r
			frames[pos].quota = quotas[pos]
			br.r = &frames[pos]
		}
		br.path = childPath(p, n.branches[b].base())
		if parent != nil {
			br.state = parent.fork(strat.Isolation)
		}
	}
	// A failed branch under Propagate fails the step: what its other
	// branches would do is wasted, and they are stopped.
	lim := strat.Limiter
	if n.together {
		lim = nil
	}
	stoppedBy, stopCause := fanOut(ctx, r, lim, &n.nodeBase, n.concurrency, runs, n.merge.failure == Propagate, func(wctx context.Context, pos int) error {
		br := &runs[pos]
		cctx := wctx
		if br.state != nil {
			cctx = withState(wctx, br.state)
		}
		br.err = br.r.step(cctx, n.branches[selected[pos]], br.path, in, &br.res)
		_, replayed := br.err.(*replayedError)
		switch {
		case br.err == nil:
		case n.merge.failure == Ignore && br.r.journal != nil && !isControlFlow(br.err) && !replayed && ctx.Err() == nil:
			// The run goes on without the branch: a resumed run must not
			// run it again.
			if jerr := br.r.journal.add(cctx, br.path, StatusFailed, &br.res, nil); jerr != nil {
				br.err = jerr
			}
		}
		return br.err
	})

	res.Children = make([]StepResult, 0, len(runs))
	output := make(map[string]any, len(runs))
	var firstFail, breach, pause error
	failed := 0
	for pos := range runs {
		br := &runs[pos]
		res.Children = append(res.Children, br.res)
		res.Usage = res.Usage.Add(br.res.Usage)
		switch {
		case br.err == nil:
			output[n.names[selected[pos]]] = br.res.Output
			if br.state != nil {
				br.writes = parent.writesOf(strat.Isolation, br.state)
			}
		case (errors.Is(br.err, ErrUsageLimitExceeded) || errors.Is(br.err, errCheckpoint)) && breach == nil:
			breach = br.err // ends the step whatever the failure policy
		case errors.Is(br.err, ErrPaused):
			if pause == nil {
				pause = br.err
			}
		default:
			failed++
			// The first failure in declaration order, not counting the
			// cancellations the failure that stopped the others caused.
			if firstFail == nil && (pos == stoppedBy || stoppedBy < 0 || !errors.Is(br.err, stopCause)) {
				firstFail = stepError(p, "branch "+strconv.Quote(n.names[selected[pos]]), br.err)
			}
		}
	}
	res.Output = output
	res.Latency = r.rt.mono() - start
	switch {
	case breach != nil:
		if ue, ok := errors.AsType[*UsageLimitError](breach); ok {
			return r.failStep(res, ue)
		}
		return r.failStep(res, breach)
	case firstFail != nil && (n.merge.failure == Propagate || failed == len(runs)):
		return r.failStep(res, firstFail)
	case pause != nil:
		res.Feedback = pause.Error()
		return pause
	}
	if err := n.mergeBranches(ctx, r, p, parent, strat, runs, selected, res); err != nil {
		return r.failStep(res, err)
	}
	res.Success = true
	return nil
}

// fanOut runs run(ctx, i) for every branch or item i of runs — which sets
// runs[i].err and returns it — on up to limit workers of the runtime (or
// as many as the step's limiter asks for), each admitted by the limiter
// first, and returns when all have run.
//
// A failure stops the others — the branches or items not yet started are
// refused at once, the running ones are cancelled — when it is a budget
// breach or a refused checkpoint, or any failure but a pause when
// stopOnFailure is set; so does the end of ctx, without starting (or
// forking state for) any more. fanOut returns the index whose failure
// stopped the others and that failure (-1, nil when none did: the others
// ran, or ctx ended). A refusal, by the limiter or after a stop, is the
// branch's or item's error; a panic in run its *PanicError.
func fanOut(ctx context.Context, r *run, lim engine.Limiter, b *nodeBase, limit int, runs []branchRun, stopOnFailure bool,
	run func(ctx context.Context, i int) error,
) (stoppedBy int, cause error) {
	f := &fan{r: r, b: b, limit: limit, runs: runs, run: run, stopOnFailure: stopOnFailure, lim: lim}
	if _, fixed := f.lim.(engine.Fixed); fixed {
		f.lim = nil
	}
	workers := min(limit, len(runs))
	if f.lim != nil {
		w, metered := f.lim.Workers(b.site, limit, len(runs))
		workers = min(max(w, 1), len(runs))
		if !metered {
			f.lim = nil // the workers are the bound, as on the baseline
		}
	}
	var wctx context.Context
	wctx, f.cancel = context.WithCancelCause(ctx)
	defer f.cancel(nil)
	r.rt.fork(wctx, workers, f.work)
	if i := int(f.first.Load()) - 1; i >= 0 && ctx.Err() == nil {
		return i, context.Cause(wctx)
	}
	return -1, nil
}

// fan is one fanOut: its workers share it.
type fan struct {
	r             *run
	b             *nodeBase
	lim           engine.Limiter // nil: the baseline's fixed limit
	limit         int
	runs          []branchRun
	run           func(ctx context.Context, i int) error
	stopOnFailure bool
	cancel        context.CancelCauseFunc
	next          atomic.Int64 // the next index to hand out
	first         atomic.Int64 // 1 + the index whose failure stopped the others; 0: none
}

// work is one worker: it runs branches or items until none is left.
func (f *fan) work(ctx context.Context, _ int) {
	for {
		i := int(f.next.Add(1)) - 1
		if i >= len(f.runs) {
			return
		}
		f.one(ctx, i)
	}
}

// one runs branch or item i.
func (f *fan) one(ctx context.Context, i int) {
	br := &f.runs[i]
	admitted := false // by the limiter, which must hear of the end even after a panic
	var start time.Duration
	defer func() {
		if v := recover(); v != nil {
			err := newPanicError(br.path, v)
			if admitted {
				f.lim.Release(f.b.site, f.r.rt.mono()-start, err)
			}
			f.failed(i, err)
		}
	}()
	if ctx.Err() != nil {
		f.refused(i, context.Cause(ctx)) // not started
		return
	}
	if f.lim == nil {
		f.done(i, f.run(ctx, i))
		return
	}
	if err := f.lim.Acquire(ctx, f.b.site, f.limit); err != nil {
		f.refused(i, err)
		return
	}
	admitted, start = true, f.r.rt.mono()
	err := f.run(ctx, i)
	admitted = false
	f.lim.Release(f.b.site, f.r.rt.mono()-start, err)
	f.done(i, err)
}

// refused records that branch or item i did not start, for err.
func (f *fan) refused(i int, err error) {
	br := &f.runs[i]
	br.res.Path, br.res.RunID = br.path, f.r.runID
	br.err = stepError(br.path, "", err)
	br.res.Feedback = br.err.Error()
}

// failed records that branch or item i failed with err, and stops the
// others.
func (f *fan) failed(i int, err error) {
	br := &f.runs[i]
	br.res.Path, br.res.Success, br.res.Feedback = br.path, false, err.Error()
	br.err = err
	f.done(i, err)
}

// done stops the others when branch or item i's failure err calls for it.
func (f *fan) done(i int, err error) {
	if err == nil || errors.Is(err, ErrPaused) || !f.stopOnFailure && !isControlFlow(err) {
		return
	}
	if f.first.CompareAndSwap(0, int64(i)+1) {
		f.cancel(err)
	}
}

// mergeBranches merges the successful branches' state changes into parent.
func (n *parallelNode) mergeBranches(ctx context.Context, r *run, p string, parent *State, strat *engine.Strategy[StepResult], runs []branchRun, selected []int, res *StepResult) error {
	if parent == nil {
		return nil
	}
	if n.merge.fn != nil {
		branches := make([]BranchState, len(runs))
		for pos := range runs {
			br := &runs[pos]
			branches[pos] = BranchState{Name: n.names[selected[pos]], Result: br.res, State: br.state}
		}
		if _, err := guard2(ctx, p, branches, func(ctx context.Context, b []BranchState) (struct{}, error) {
			return struct{}{}, n.merge.fn(ctx, parent, b)
		}); err != nil {
			return stepError(p, "merge func", err)
		}
		return nil
	}
	var ok []statemerge.BranchWrites // successful branches, declaration order
	for pos := range runs {
		if br := &runs[pos]; br.err == nil {
			ok = append(ok, statemerge.BranchWrites{Branch: n.names[selected[pos]], Writes: br.writes})
		}
	}
	if len(ok) == 0 {
		return nil
	}
	reduced, err := n.reduce(p, parent, ok)
	if err != nil {
		return err
	}
	switch n.merge.strategy {
	case Overwrite:
		err = parent.apply(ok[len(ok)-1].Writes)
	case KeepFirst:
		err = parent.apply(ok[0].Writes)
	case ContextUpdate, ErrorOnConflict:
		if conflicts := statemerge.Conflicts(ok); len(conflicts) > 0 {
			if n.merge.strategy == ErrorOnConflict {
				return &MergeConflictError{Step: p, Key: conflicts[0].Key(), Branches: conflicts[0].Branches}
			}
			keys := make([]any, len(conflicts))
			for i, c := range conflicts {
				keys[i] = c.Key()
				if r.rec != nil {
					r.emit(ctx, Event{Kind: EventMergeConflict, Path: p, Err: &MergeConflictError{Step: p, Key: c.Key(), Branches: c.Branches}})
				}
			}
			res.setMeta(MetaMergeConflicts, keys)
		}
		for _, b := range ok {
			if err = parent.apply(b.Writes); err != nil {
				break
			}
		}
	}
	if err != nil {
		return stepError(p, "merge", err)
	}
	for k, v := range reduced {
		parent.Set(k, v)
	}
	return nil
}

// reduce applies the reducers and removes their keys from the writes.
func (n *parallelNode) reduce(p string, parent *State, ok []statemerge.BranchWrites) (map[string]any, error) {
	if len(n.merge.reducers) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(n.merge.reducers))
	for _, key := range slices.Sorted(maps.Keys(n.merge.reducers)) {
		fn := n.merge.reducers[key]
		pv, pok := parent.lookup(key)
		var vals []any
		for i := range ok {
			var mine, rest []statemerge.Write
			for _, w := range ok[i].Writes {
				if w.Path[0] == key {
					mine = append(mine, w)
				} else {
					rest = append(rest, w)
				}
			}
			ok[i].Writes = rest
			if len(mine) == 0 {
				continue
			}
			// The branch's value at key: the fork's value with its writes.
			tmp := map[string]any{}
			if pok {
				tmp[key] = deepcopy.Copy(pv)
			}
			statemerge.Apply(tmp, mine)
			if v, has := tmp[key]; has {
				vals = append(vals, v)
			}
		}
		if vals == nil {
			continue
		}
		v, err := guard2(context.Background(), p, vals, func(_ context.Context, vals []any) (any, error) { return fn(pv, pok, vals) })
		if err != nil {
			return nil, stepError(p, "reducer for key "+strconv.Quote(key), err)
		}
		out[key] = v
	}
	return out, nil
}
