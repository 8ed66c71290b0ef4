package caudal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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

// loopNode is a compiled loop (and a refine-until loop).
type loopNode struct {
	nodeBase
	body          node
	paths         indexPaths
	exitCond      func(ctx context.Context, out any) (bool, error)
	maxIterations int
	inMap         func(ctx context.Context, v any) (any, error)
	iterMap       func(ctx context.Context, out any, iteration int) (any, error)
	outMap        func(ctx context.Context, v any) (any, error)
}

func (l *loopNode) kids() []node { return []node{l.body} }

// exec runs a loop. Iteration i's body runs at instance path p#i/body.
func (l *loopNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) (err error) {
	start := r.rt.mono()
	res.Path, res.RunID = p, r.runID
	defer func() {
		res.Latency = r.rt.mono() - start
		if err != nil {
			res.Success = false
			res.Feedback = err.Error()
		}
	}()
	parent := StateFrom(ctx)
	strat := r.strategy(&l.nodeBase)
	cur := in
	if l.inMap != nil {
		if cur, err = guard2(ctx, p, in, l.inMap); err != nil {
			return stepError(p, "input mapper", err)
		}
	}
	for i := 1; i <= l.maxIterations; i++ {
		if err := ctx.Err(); err != nil {
			return stepError(p, fmt.Sprintf("iteration %d", i), context.Cause(ctx))
		}
		res.Attempts = i
		bp := l.paths.get(&l.nodeBase, p, '#', i, l.body.base())
		ictx, ist := ctx, (*State)(nil)
		if parent != nil {
			ist = parent.fork(strat.Isolation)
			ictx = withState(ctx, ist)
		}
		res.Children = append(res.Children, StepResult{})
		child := &res.Children[len(res.Children)-1]
		berr := r.step(ictx, l.body, bp, cur, child)
		res.Usage = res.Usage.Add(child.Usage)
		res.Output = child.Output
		if berr != nil {
			if errors.Is(berr, ErrPaused) && ist != nil {
				// The caller's state shows what the paused iteration did.
				_ = parent.mergeFrom(strat.Isolation, ist)
			}
			if isControlFlow(berr) {
				return berr
			}
			return stepError(p, fmt.Sprintf("iteration %d", i), berr)
		}
		if ist != nil {
			if err := parent.mergeFrom(strat.Isolation, ist); err != nil {
				return stepError(p, fmt.Sprintf("iteration %d", i), err)
			}
		}
		if l.exitCond != nil {
			done, cerr := guard2(ctx, p, child.Output, l.exitCond)
			if cerr != nil {
				return stepError(p, "exit condition", cerr)
			}
			if done {
				out := child.Output
				if l.outMap != nil {
					if out, err = guard2(ctx, p, out, l.outMap); err != nil {
						return stepError(p, "output mapper", err)
					}
				}
				res.Output, res.Success = out, true
				res.setMeta(MetaIterations, i)
				return nil
			}
		}
		cur = child.Output
		if l.iterMap != nil && i < l.maxIterations {
			if cur, err = guard3(ctx, p, child.Output, i, l.iterMap); err != nil {
				return stepError(p, "iteration mapper", err)
			}
		}
	}
	res.setMeta(MetaIterations, l.maxIterations)
	if l.exitCond != nil {
		return fmt.Errorf("caudal: step %q: %w (%d) without meeting the exit condition", p, ErrMaxIterations, l.maxIterations)
	}
	res.Success = true
	return nil
}

func guard3[T, U any](ctx context.Context, p string, v T, i int, fn func(context.Context, T, int) (U, error)) (out U, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = newPanicError(p, x)
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

// mapNode is a compiled map step.
type mapNode struct {
	nodeBase
	body        node
	paths       indexPaths
	itemsKey    string
	concurrency int
}

func (m *mapNode) kids() []node { return []node{m.body} }

// items returns the collection a map step iterates over.
func (m *mapNode) items(ctx context.Context, in any) ([]any, error) {
	src := in
	if m.itemsKey != "" {
		st := StateFrom(ctx)
		if st == nil {
			return nil, fmt.Errorf("items from state key %q, but the run has no State (WithState)", m.itemsKey)
		}
		v, ok := st.lookup(m.itemsKey)
		if !ok {
			return nil, fmt.Errorf("state has no key %q", m.itemsKey)
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

// exec runs a map step. Item i's body runs at instance path p[i]/body.
func (m *mapNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) (err error) {
	start := r.rt.mono()
	res.Path, res.RunID, res.Attempts = p, r.runID, 1
	defer func() {
		res.Latency = r.rt.mono() - start
		if err != nil {
			res.Success = false
			res.Feedback = err.Error()
		}
	}()
	items, err := m.items(ctx, in)
	if err != nil {
		return fmt.Errorf("caudal: step %q: %w", p, err)
	}
	parent := StateFrom(ctx)
	strat := r.strategy(&m.nodeBase)
	runs := make([]branchRun, len(items))
	sequential := m.concurrency == 1
	stoppedBy, stopCause := -1, error(nil) // the item whose failure stopped the others, and that failure
	runItem := func(ctx context.Context, i int) error {
		br := &runs[i]
		ictx := ctx
		if parent != nil {
			br.state = parent.fork(strat.Isolation)
			ictx = withState(ctx, br.state)
		}
		br.err = r.step(ictx, m.body, br.path, items[i], &br.res)
		if br.state != nil && (br.err == nil || errors.Is(br.err, ErrPaused)) {
			br.writes = parent.writesOf(strat.Isolation, br.state)
			if sequential {
				if aerr := parent.apply(br.writes); aerr != nil && br.err == nil {
					br.err = aerr
				}
			}
		}
		return br.err
	}
	for i := range runs {
		runs[i].path = m.paths.get(&m.nodeBase, p, '[', i, m.body.base())
	}
	if sequential {
		for i := range runs {
			if parent != nil && ctx.Err() != nil {
				// Before forking for it: the item would fail on the ended
				// context anyway, but a fork costs the state's size.
				runs[i].err = stepError(runs[i].path, "", context.Cause(ctx))
				runs[i].res.Path, runs[i].res.Feedback = runs[i].path, runs[i].err.Error()
				break
			}
			if runItem(ctx, i) != nil {
				break
			}
		}
	} else {
		// The first failed item fails the step: the items not yet started
		// are not started, the running ones are cancelled.
		stoppedBy, stopCause = fanOut(ctx, r, strat.Limiter, &m.nodeBase, m.concurrency, runs, true, runItem)
	}

	outputs := make([]any, len(items))
	res.Children = make([]StepResult, 0, len(items))
	var firstErr error
	var pause error
	for i := range runs {
		br := &runs[i]
		res.Children = append(res.Children, br.res)
		res.Usage = res.Usage.Add(br.res.Usage)
		outputs[i] = br.res.Output
		switch {
		case br.err == nil:
		case errors.Is(br.err, ErrPaused):
			if pause == nil {
				pause = br.err
			}
		case firstErr == nil && (i == stoppedBy || stoppedBy < 0 || !errors.Is(br.err, stopCause)):
			// The first failure in item order, not counting the
			// cancellations the failure that stopped the others caused.
			firstErr = br.err
		}
	}
	res.Output = outputs
	if firstErr != nil {
		if isControlFlow(firstErr) {
			return firstErr
		}
		return stepError(p, "", firstErr)
	}
	if pause != nil {
		return pause
	}
	if !sequential && parent != nil {
		for i := range runs {
			if err := parent.apply(runs[i].writes); err != nil {
				return stepError(p, fmt.Sprintf("item %d", i), err)
			}
		}
	}
	res.Success = true
	return nil
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

// asRefinement reads a refine round's output, also in the form a journal
// gives it back after a trip through JSON.
func asRefinement(out any) (refinement, error) {
	switch v := out.(type) {
	case refinement:
		return v, nil
	case map[string]any:
		c, err := asCritique(v["critique"])
		return refinement{Input: v["input"], Artifact: v["artifact"], Critique: c}, err
	}
	return refinement{}, fmt.Errorf("refine round output is a %T, not a refinement", out)
}

// asCritique reads a critic's output.
func asCritique(out any) (Critique, error) {
	switch v := out.(type) {
	case Critique:
		return v, nil
	case *Critique:
		if v != nil {
			return *v, nil
		}
	case map[string]any:
		done, dok := v["done"].(bool)
		feedback, fok := v["feedback"].(string)
		if (dok || v["done"] == nil) && (fok || v["feedback"] == nil) {
			return Critique{Done: done, Feedback: feedback}, nil
		}
	}
	return Critique{}, fmt.Errorf("critic output is a %T, want caudal.Critique", out)
}

// roundNode is one round of a refine-until loop: generator, then critic.
// It is transparent: its instance path is its iteration's, p#i.
type roundNode struct {
	nodeBase
	generator, critic node
}

func (n *roundNode) kids() []node { return []node{n.generator, n.critic} }

// exec runs generator then critic.
func (n *roundNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	start := r.rt.mono()
	res.Path, res.RunID, res.Attempts = p, r.runID, 1
	defer func() { res.Latency = r.rt.mono() - start }()
	m, _ := in.(map[string]any)
	res.Children = make([]StepResult, 2)
	gin := in
	if fb, _ := m["feedback"].(string); fb == "" {
		gin = m["input"]
	}
	if err := r.step(ctx, n.generator, childPath(p, n.generator.base()), gin, &res.Children[0]); err != nil {
		res.Children = res.Children[:1]
		res.Usage = res.Children[0].Usage
		return r.failStep(res, err)
	}
	artifact := res.Children[0].Output
	err := r.step(ctx, n.critic, childPath(p, n.critic.base()), artifact, &res.Children[1])
	res.Usage = res.Children[0].Usage.Add(res.Children[1].Usage)
	if err != nil {
		return r.failStep(res, err)
	}
	c, err := asCritique(res.Children[1].Output)
	if err != nil {
		return r.failStep(res, stepError(p, "", err))
	}
	res.Output = refinement{Input: m["input"], Artifact: artifact, Critique: c}
	res.Success = true
	return nil
}
