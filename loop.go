package caudal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// DefaultMaxIterations is a [Loop]'s iteration cap without
// [WithMaxIterations].
const DefaultMaxIterations = 5

// MetaIterations is the number of iterations a loop ran.
const MetaIterations = "iterations"

// Loop makes a step that runs body repeatedly. Each iteration runs on an
// isolated deep copy of the state, merged back when the iteration succeeds
// (or pauses). After each iteration the exit condition ([WithExitCondition])
// sees the output and the merged state; when it holds, the loop succeeds
// with the output ([WithOutputMapper] applied). The next iteration's input
// is the output ([WithIterationMapper] applied). A loop without an exit
// condition runs exactly its maximum number of iterations
// ([WithMaxIterations], default [DefaultMaxIterations]) and succeeds; with
// one, running out of iterations fails with [ErrMaxIterations]. A failed
// iteration fails the loop. Attempts counts the iterations.
func Loop(name string, body Step, opts ...StepOption) Step {
	d := &stepDef{kind: kindLoop, name: name, flowConfig: flowConfig{maxIterations: DefaultMaxIterations}}
	if body.def == nil {
		d.errs = append(d.errs, errors.New("loop body is the zero Step"))
	} else {
		d.body = &body
	}
	d.apply(opts)
	return Step{def: d}
}

// WithExitCondition sets when a [Loop] stops: after an iteration, fn gets
// its output and a context carrying the merged state ([StateFrom]).
func WithExitCondition(fn func(ctx context.Context, out any) (bool, error)) StepOption {
	return kindsOption("WithExitCondition", []stepKind{kindLoop}, func(d *stepDef) error {
		if fn == nil {
			return errors.New("nil exit condition")
		}
		d.exitCond = fn
		return nil
	})
}

// WithMaxIterations caps a [Loop]'s iterations; n must be >= 1.
func WithMaxIterations(n int) StepOption {
	return kindsOption("WithMaxIterations", []stepKind{kindLoop}, func(d *stepDef) error {
		if n < 1 {
			return fmt.Errorf("max iterations must be >= 1, got %d", n)
		}
		d.maxIterations = n
		return nil
	})
}

// WithIterationMapper computes a [Loop]'s next input from the output of
// iteration i (1-based).
func WithIterationMapper(fn func(ctx context.Context, out any, i int) (any, error)) StepOption {
	return kindsOption("WithIterationMapper", []stepKind{kindLoop}, func(d *stepDef) error {
		if fn == nil {
			return errors.New("nil mapper")
		}
		d.iterMapper = fn
		return nil
	})
}

// execLoop runs a loop.
func (ex *Executor) execLoop(ctx context.Context, r *run, n *node, in any, res *StepResult) (err error) {
	start := monoNow()
	res.Path, res.RunID = n.path, r.runID
	defer func() {
		res.Latency = monoNow() - start
		if err != nil {
			res.Success = false
			res.Feedback = err.Error()
		}
	}()
	parent := StateFrom(ctx)
	first, cur := 1, in
	if fr := r.resume.frame(n.path); fr != nil {
		first, cur = fr.Index, fr.Input
		for _, c := range fr.Results {
			res.Children = append(res.Children, c)
			res.Usage = res.Usage.Add(c.Usage)
		}
	} else if n.inputMapper != nil {
		if cur, err = guard2(ctx, in, n.inputMapper); err != nil {
			return fmt.Errorf("caudal: step %q: input mapper: %w", n.path, err)
		}
	}
	for i := first; i <= n.maxIterations; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("caudal: step %q: iteration %d: %w", n.path, i, context.Cause(ctx))
		}
		res.Attempts = i
		ictx, ist := ctx, (*State)(nil)
		if parent != nil {
			ist = parent.fork(ex.isolate)
			ictx = withState(ctx, ist)
		}
		res.Children = append(res.Children, StepResult{})
		child := &res.Children[len(res.Children)-1]
		berr := ex.exec(ictx, r, n.body, cur, child)
		res.Usage = res.Usage.Add(child.Usage)
		res.Output = child.Output
		if berr != nil {
			if pe := asPaused(berr); pe != nil {
				if ist != nil {
					parent.mergeFrom(ex.isolate, ist)
				}
				pe.addFrame(n.path, &frame{Index: i, Input: cur, Results: cloneResults(res.Children[:len(res.Children)-1])})
				return berr
			}
			if isControlFlow(berr) {
				return berr
			}
			return fmt.Errorf("caudal: step %q: iteration %d: %w", n.path, i, berr)
		}
		if ist != nil {
			parent.mergeFrom(ex.isolate, ist)
		}
		if n.exitCond != nil {
			done, cerr := guard2(ctx, child.Output, n.exitCond)
			if cerr != nil {
				return fmt.Errorf("caudal: step %q: exit condition: %w", n.path, cerr)
			}
			if done {
				out := child.Output
				if n.outputMapper != nil {
					if out, err = guard2(ctx, out, n.outputMapper); err != nil {
						return fmt.Errorf("caudal: step %q: output mapper: %w", n.path, err)
					}
				}
				res.Output, res.Success = out, true
				res.setMeta(MetaIterations, i)
				return nil
			}
		}
		cur = child.Output
		if n.iterMapper != nil && i < n.maxIterations {
			if cur, err = guard3(ctx, child.Output, i, n.iterMapper); err != nil {
				return fmt.Errorf("caudal: step %q: iteration mapper: %w", n.path, err)
			}
		}
	}
	res.setMeta(MetaIterations, n.maxIterations)
	if n.exitCond != nil {
		return fmt.Errorf("caudal: step %q: %w (%d) without meeting the exit condition", n.path, ErrMaxIterations, n.maxIterations)
	}
	res.Success = true
	return nil
}

func cloneResults(rs []StepResult) []StepResult { return append([]StepResult(nil), rs...) }

func guard3[T, U any](ctx context.Context, v T, i int, fn func(context.Context, T, int) (U, error)) (out U, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx, v, i)
}

// Map makes a step that runs body once per item of a collection — the
// input (a slice or array), or the state value at [WithItemsFrom] — and
// outputs the body's outputs as a []any in item order. Items run one at a
// time by default, each on an isolated copy of the state merged back when it
// succeeds, so item i+1 sees item i's changes; with [WithConcurrency](n) up
// to n items run at once and their state changes merge in item order when
// all are done (later items win). The first failed item, in item order,
// fails the step.
func Map(name string, body Step, opts ...StepOption) Step {
	d := &stepDef{kind: kindMap, name: name, flowConfig: flowConfig{concurrency: 1}}
	if body.def == nil {
		d.errs = append(d.errs, errors.New("map body is the zero Step"))
	} else {
		d.body = &body
	}
	d.apply(opts)
	return Step{def: d}
}

// WithItemsFrom makes a [Map] iterate over the state value at key (a
// slice) instead of its input.
func WithItemsFrom(key string) StepOption {
	return kindsOption("WithItemsFrom", []stepKind{kindMap}, func(d *stepDef) error {
		if key == "" {
			return errors.New("empty state key")
		}
		d.itemsKey = key
		return nil
	})
}

// items returns the collection a map step iterates over.
func (n *node) items(ctx context.Context, in any) ([]any, error) {
	src := in
	if n.itemsKey != "" {
		st := StateFrom(ctx)
		if st == nil {
			return nil, fmt.Errorf("items from state key %q, but the run has no State (WithState)", n.itemsKey)
		}
		v, ok := st.get(n.itemsKey)
		if !ok {
			return nil, fmt.Errorf("state has no key %q", n.itemsKey)
		}
		src = v
	}
	if s, ok := src.([]any); ok {
		return s, nil
	}
	v := reflect.ValueOf(src)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return nil, fmt.Errorf("items of type %T are not a slice or an array", src)
	}
	out := make([]any, v.Len())
	for i := range out {
		out[i] = v.Index(i).Interface()
	}
	return out, nil
}

// execMap runs a map step.
func (ex *Executor) execMap(ctx context.Context, r *run, n *node, in any, res *StepResult) (err error) {
	start := monoNow()
	res.Path, res.RunID, res.Attempts = n.path, r.runID, 1
	defer func() {
		res.Latency = monoNow() - start
		if err != nil {
			res.Success = false
			res.Feedback = err.Error()
		}
	}()
	fr := r.resume.frame(n.path)
	var items []any
	if fr != nil { // resuming: the items are in the frame
		items, _ = fr.Input.([]any)
	} else if items, err = n.items(ctx, in); err != nil {
		return fmt.Errorf("caudal: step %q: %w", n.path, err)
	}
	parent := StateFrom(ctx)
	runs := make([]branchRun, len(items))
	var todo []int
	for i := range items {
		var bf *branchFrame
		if fr != nil {
			bf = fr.Branches[strconv.Itoa(i)]
		}
		if bf != nil && bf.Result != nil {
			runs[i] = branchRun{res: *bf.Result, writes: bf.Writes, done: true}
			continue
		}
		todo = append(todo, i)
	}
	sequential := n.concurrency == 1
	base := *r // the closure must not capture r, or every Execute's run escapes to the heap
	runItem := func(i int) {
		br := &runs[i]
		br.ran = true
		child := base
		var bf *branchFrame
		if fr != nil {
			bf = fr.Branches[strconv.Itoa(i)]
		}
		if bf != nil {
			child.resume = base.resume.item(bf)
		} else if base.resume != nil {
			child.resume = &resumeState{delivered: base.resume.delivered}
		}
		ictx := ctx
		if parent != nil {
			switch {
			case bf != nil:
				br.state = NewState(bf.State)
			default:
				br.state = parent.fork(ex.isolate)
			}
			ictx = withState(ctx, br.state)
		}
		br.err = ex.exec(ictx, &child, n.body, items[i], &br.res)
		if br.state != nil && (br.err == nil || errors.Is(br.err, ErrPaused)) {
			br.writes = parent.writesSince(ex.isolate, br.state)
			if sequential {
				parent.apply(br.writes)
			}
		}
	}
	if sequential {
		for _, i := range todo {
			runItem(i)
			if runs[i].err != nil {
				break
			}
		}
	} else {
		ex.forEach(n.concurrency, todo, runItem)
	}

	outputs := make([]any, len(items))
	res.Children = ex.alloc.Children(len(items))
	var firstErr error
	var pause *PausedError
	for i := range runs {
		br := &runs[i]
		res.Children = append(res.Children, br.res)
		res.Usage = res.Usage.Add(br.res.Usage)
		outputs[i] = br.res.Output
		switch {
		case br.err == nil:
		case errors.Is(br.err, ErrPaused):
			if pause == nil {
				pause = asPaused(br.err)
			}
		case firstErr == nil:
			firstErr = br.err
		}
	}
	res.Output = outputs
	if firstErr != nil {
		if isControlFlow(firstErr) {
			return firstErr
		}
		return fmt.Errorf("caudal: step %q: %w", n.path, firstErr)
	}
	if pause != nil {
		return ex.pauseItems(n, items, runs, pause)
	}
	if !sequential && parent != nil {
		for i := range runs {
			parent.apply(runs[i].writes)
		}
	}
	res.Success = true
	return nil
}

// pauseItems records the items of a paused map step. Each paused item keeps
// its own frames, since every item runs the same body paths.
func (ex *Executor) pauseItems(n *node, items []any, runs []branchRun, first *PausedError) error {
	f := &frame{Input: items, Branches: make(map[string]*branchFrame, len(runs))}
	out := &PausedError{
		Path: first.Path, Message: first.Message, Schema: first.Schema,
		Snapshot: &Snapshot{Version: SnapshotVersion, RunID: first.Snapshot.RunID, Path: first.Path, Message: first.Message},
	}
	for i := range runs {
		br := &runs[i]
		key := strconv.Itoa(i)
		switch {
		case br.err == nil && (br.done || br.ran):
			f.Branches[key] = &branchFrame{Result: &br.res, Writes: br.writes}
		case errors.Is(br.err, ErrPaused):
			pe := asPaused(br.err)
			f.Branches[key] = &branchFrame{State: br.state.snapshot(), Frames: pe.Snapshot.Frames, Target: pe == first}
		}
	}
	out.addFrame(n.path, f)
	return out
}

// RefineUntil makes a generate-and-critique loop, a [Loop] recipe: each
// round runs generator, then critic on the generated artifact. The critic's
// output must be a [Critique] (or a *Critique); when Done, the loop ends
// with the artifact as its output; otherwise the next round's generator gets
// map[string]any{"input": the original input, "feedback": the critique's
// feedback}. At most maxRounds rounds run ([ErrMaxIterations] after that).
func RefineUntil(name string, generator, critic Step, maxRounds int) Step {
	round := &stepDef{kind: kindRefineRound, name: "round", children: []Step{generator, critic}}
	return Loop(name, Step{def: round},
		WithMaxIterations(maxRounds),
		WithInputMapper(func(_ context.Context, in any) (any, error) {
			return map[string]any{"input": in, "feedback": ""}, nil
		}),
		WithExitCondition(func(_ context.Context, out any) (bool, error) {
			rf, err := asRefinement(out)
			return rf.Critique.Done, err
		}),
		WithIterationMapper(func(_ context.Context, out any, _ int) (any, error) {
			rf, err := asRefinement(out)
			return map[string]any{"input": rf.Input, "feedback": rf.Critique.Feedback}, err
		}),
		WithOutputMapper(func(_ context.Context, out any) (any, error) {
			rf, err := asRefinement(out)
			return rf.Artifact, err
		}),
	)
}

// Critique is a critic's verdict in a [RefineUntil] loop.
type Critique struct {
	Done     bool   `json:"done"`
	Feedback string `json:"feedback,omitempty"`
}

// refinement is the output of one refine round.
type refinement struct {
	Input    any      `json:"input"`
	Artifact any      `json:"artifact"`
	Critique Critique `json:"critique"`
}

// asRefinement reads a refine round's output.
func asRefinement(out any) (refinement, error) {
	rf, ok := out.(refinement)
	if !ok {
		return rf, fmt.Errorf("refine round output is a %T, not a refinement", out)
	}
	return rf, nil
}

// execRefineRound runs generator then critic.
func (ex *Executor) execRefineRound(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	start := monoNow()
	res.Path, res.RunID, res.Attempts = n.path, r.runID, 1
	defer func() { res.Latency = monoNow() - start }()
	m, _ := in.(map[string]any)
	res.Children = make([]StepResult, 2)
	gin := in
	if fb, _ := m["feedback"].(string); fb == "" {
		gin = m["input"]
	}
	if err := ex.exec(ctx, r, n.children[0], gin, &res.Children[0]); err != nil {
		res.Usage = res.Children[0].Usage
		return ex.fail(res, err)
	}
	artifact := res.Children[0].Output
	err := ex.exec(ctx, r, n.children[1], artifact, &res.Children[1])
	res.Usage = res.Children[0].Usage.Add(res.Children[1].Usage)
	if err != nil {
		return ex.fail(res, err)
	}
	var c Critique
	switch v := res.Children[1].Output.(type) {
	case Critique:
		c = v
	case *Critique:
		c = *v
	default:
		return ex.fail(res, fmt.Errorf("caudal: step %q: critic output is a %T, want caudal.Critique", n.path, v))
	}
	res.Output = refinement{Input: m["input"], Artifact: artifact, Critique: c}
	res.Success = true
	return nil
}
