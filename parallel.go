package caudal

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
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

// Reducer combines the values parallel branches left at one state key: the
// parent's value at the fork (parentOK false when absent) and each
// successful branch's value, in declaration order (branches that removed the
// key are left out).
type Reducer func(parent any, parentOK bool, branches []any) (any, error)

// The built-in reducers, for [WithReducer].
var (
	// ReduceAppend concatenates lists: the parent's, then what each branch
	// appended to it.
	ReduceAppend Reducer = statemerge.Append
	// ReduceSum adds what each branch added to the parent's number.
	ReduceSum Reducer = statemerge.Sum
	// ReduceMax keeps the largest number.
	ReduceMax Reducer = statemerge.Max
)

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

type mergeConfig struct {
	strategy MergeStrategy
	failure  FailurePolicy
	reducers map[string]Reducer
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
// strategy; sibling writes to that key are then not conflicts.
func WithReducer(key string, r Reducer) StepOption {
	return kindsOption("WithReducer", parallelKinds, func(d *stepDef) error {
		if r == nil {
			return fmt.Errorf("nil reducer for key %q", key)
		}
		if d.merge.reducers == nil {
			d.merge.reducers = make(map[string]Reducer)
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

// WithConcurrency caps how many branches (or map items) run at once. For
// [Parallel] and [Router] the default is min(10, 2×CPUs); for [Map] it is 1
// (sequential). n must be >= 1.
func WithConcurrency(n int) StepOption {
	return kindsOption("WithConcurrency", []stepKind{kindParallel, kindRouter, kindMap}, func(d *stepDef) error {
		if n < 1 {
			return fmt.Errorf("concurrency must be >= 1, got %d", n)
		}
		d.concurrency = n
		return nil
	})
}

// defaultConcurrency is the fixed fan-out limit of the baseline.
func defaultConcurrency() int { return min(10, 2*runtime.NumCPU()) }

// execParallel runs a parallel step.
func (ex *Executor) execParallel(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	start := monoNow()
	res.Path, res.RunID, res.Attempts = n.path, r.runID, 1
	all := make([]int, len(n.children))
	for i := range all {
		all[i] = i
	}
	fr := r.resume.frame(n.path)
	if fr != nil {
		in = fr.Input // resuming: the input the branches had
	}
	return ex.runBranches(ctx, r, n, in, res, all, fr, start)
}

// branchRun is one branch's execution inside runBranches.
type branchRun struct {
	res    StepResult
	err    error
	state  *State
	writes []statemerge.Write
	done   bool // restored from a snapshot
	ran    bool // executed in this run (map items after a sequential pause are not)
}

// runBranches runs the branches selected (indexes into n.children, in
// declaration order) and merges them. fr is the frame of a resumed run.
func (ex *Executor) runBranches(ctx context.Context, r *run, n *node, in any, res *StepResult, selected []int, fr *frame, start time.Duration) error {
	parent := StateFrom(ctx)
	runs := make([]branchRun, len(selected))
	quotas := r.quota.split(len(selected))
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var todo []int // positions in runs still to execute
	for pos, b := range selected {
		name := n.branchNames[b]
		var bf *branchFrame
		if fr != nil {
			bf = fr.Branches[name]
		}
		br := &runs[pos]
		switch {
		case bf != nil && bf.Result != nil:
			br.res, br.writes, br.done = *bf.Result, bf.Writes, true
		case bf != nil && parent != nil:
			br.state = NewState(bf.State)
			todo = append(todo, pos)
		default:
			if parent != nil {
				br.state = parent.fork(ex.isolate)
			}
			todo = append(todo, pos)
		}
	}

	base := *r // the closure must not capture r, or every Execute's run escapes to the heap
	ex.forEach(n.concurrency, todo, func(pos int) {
		br := &runs[pos]
		child := base
		child.quota = quotas[pos]
		cctx := bctx
		if br.state != nil {
			cctx = withState(bctx, br.state)
		}
		br.err = ex.exec(cctx, &child, n.children[selected[pos]], in, &br.res)
		if errors.Is(br.err, ErrUsageLimitExceeded) {
			cancel(br.err)
		}
	})

	res.Children = ex.alloc.Children(len(runs))
	output := make(map[string]any, len(runs))
	var firstFail, breach, pause error
	failed := 0
	for pos := range runs {
		br := &runs[pos]
		res.Children = append(res.Children, br.res)
		res.Usage = res.Usage.Add(br.res.Usage)
		switch {
		case br.err == nil: // ran and succeeded, or restored from a snapshot (only successes are kept)
			output[n.branchNames[selected[pos]]] = br.res.Output
			if br.state != nil && !br.done {
				br.writes = parent.writesSince(ex.isolate, br.state)
			}
		case errors.Is(br.err, ErrUsageLimitExceeded) && breach == nil:
			breach = br.err
		case errors.Is(br.err, ErrPaused):
			if pause == nil {
				pause = br.err
			}
		default:
			failed++
			if firstFail == nil {
				firstFail = fmt.Errorf("caudal: step %q: branch %q: %w", n.path, n.branchNames[selected[pos]], br.err)
			}
		}
	}
	res.Output = output
	res.Latency = monoNow() - start
	switch {
	case breach != nil:
		if ue, ok := errors.AsType[*UsageLimitError](breach); ok {
			return ex.fail(res, ue)
		}
		return ex.fail(res, breach)
	case firstFail != nil && (n.merge.failure == Propagate || failed == len(runs)):
		return ex.fail(res, firstFail)
	case pause != nil:
		return ex.pauseBranches(n, in, res, runs, selected, pause)
	}
	if err := ex.mergeBranches(ctx, r, n, parent, runs, selected, res); err != nil {
		return ex.fail(res, err)
	}
	res.Success = true
	return nil
}

// forEach calls fn(todo[k]) for every k on up to limit workers (as the
// fan-out seam decides), the caller's goroutine being one of them, and
// returns when all calls have.
func (ex *Executor) forEach(limit int, todo []int, fn func(int)) {
	var next atomic.Int64
	work := func() {
		for {
			k := int(next.Add(1)) - 1
			if k >= len(todo) {
				return
			}
			fn(todo[k])
		}
	}
	var wg sync.WaitGroup
	for range ex.fanOut.Workers(limit, len(todo)) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// pauseBranches records the branches of a paused parallel step: finished
// ones with their result and state changes, paused ones with their state.
func (ex *Executor) pauseBranches(n *node, in any, res *StepResult, runs []branchRun, selected []int, first error) error {
	pe := asPaused(first)
	f := &frame{Input: in, Branches: make(map[string]*branchFrame, len(runs))}
	for pos := range runs {
		br := &runs[pos]
		name := n.branchNames[selected[pos]]
		switch {
		case br.err == nil:
			r := br.res
			f.Branches[name] = &branchFrame{Result: &r, Writes: br.writes}
		case errors.Is(br.err, ErrPaused):
			f.Branches[name] = &branchFrame{State: br.state.snapshot()}
			if other := asPaused(br.err); other != pe {
				for p, fr := range other.Snapshot.Frames {
					pe.addFrame(p, fr)
				}
			}
		}
	}
	pe.addFrame(n.path, f)
	res.Feedback = pe.Error()
	return pe
}

// mergeBranches merges the successful branches' state changes into parent.
func (ex *Executor) mergeBranches(ctx context.Context, r *run, n *node, parent *State, runs []branchRun, selected []int, res *StepResult) error {
	if parent == nil {
		return nil
	}
	if n.merge.fn != nil {
		branches := make([]BranchState, len(runs))
		for pos := range runs {
			br := &runs[pos]
			st := br.state
			if st == nil { // restored from a snapshot: rebuild from the fork
				st = parent.fork(ex.isolate)
				st.apply(br.writes)
			}
			branches[pos] = BranchState{Name: n.branchNames[selected[pos]], Result: br.res, State: st}
		}
		if err := n.merge.fn(ctx, parent, branches); err != nil {
			return fmt.Errorf("caudal: step %q: merge func: %w", n.path, err)
		}
		return nil
	}
	var ok []statemerge.BranchWrites // successful branches, declaration order
	for pos := range runs {
		if br := &runs[pos]; br.err == nil {
			ok = append(ok, statemerge.BranchWrites{Branch: n.branchNames[selected[pos]], Writes: br.writes})
		}
	}
	if len(ok) == 0 {
		return nil
	}
	reduced, err := ex.reduce(n, parent, ok)
	if err != nil {
		return err
	}
	switch n.merge.strategy {
	case Overwrite:
		parent.apply(ok[len(ok)-1].Writes)
	case KeepFirst:
		parent.apply(ok[0].Writes)
	case ContextUpdate, ErrorOnConflict:
		if conflicts := statemerge.Conflicts(ok); len(conflicts) > 0 {
			if n.merge.strategy == ErrorOnConflict {
				return &MergeConflictError{Step: n.path, Key: conflicts[0].Key(), Branches: conflicts[0].Branches}
			}
			keys := make([]any, len(conflicts))
			for i, c := range conflicts {
				keys[i] = c.Key()
				if ex.recorder != nil {
					ex.emit(ctx, Event{
						Kind: EventMergeConflict, RunID: r.runID, Path: n.path,
						Err: &MergeConflictError{Step: n.path, Key: c.Key(), Branches: c.Branches},
					})
				}
			}
			res.setMeta(MetaMergeConflicts, keys)
		}
		for _, b := range ok {
			parent.apply(b.Writes)
		}
	}
	for k, v := range reduced {
		parent.Set(k, v)
	}
	return nil
}

// reduce applies the reducers and removes their keys from the writes.
func (ex *Executor) reduce(n *node, parent *State, ok []statemerge.BranchWrites) (map[string]any, error) {
	if len(n.merge.reducers) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(n.merge.reducers))
	for key, reducer := range n.merge.reducers {
		pv, pok := parent.get(key)
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
		v, err := reducer(pv, pok, vals)
		if err != nil {
			return nil, fmt.Errorf("caudal: step %q: reducer for key %q: %w", n.path, key, err)
		}
		out[key] = v
	}
	return out, nil
}
