package caudal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Seq makes a sequence: each step's output is the next step's input, and
// the sequence's output is the last step's. It stops at the first failure,
// returning that step's error (which names its path). [Build] checks that
// sibling names are unique and that consecutive typed steps ([Func]) fit:
// the output type of one must be assignable to the input type of the next
// ([ErrTypeMismatch]). Its option is [UpdatesContext].
func Seq(name string, steps ...Step) Step {
	d := &stepDef{kind: kindSeq, name: name, children: steps}
	if len(steps) == 0 {
		d.errs = append(d.errs, errors.New("sequence has no steps"))
	}
	return Step{def: d}
}

// Branch names a branch of a [Parallel], [Conditional] or [Router] step.
// Branches run, merge and are reported in the order they are declared. For
// a conditional step, name is the key that selects the branch.
func Branch(name string, s Step) StepOption {
	return kindsOption("Branch", []stepKind{kindParallel, kindConditional, kindRouter}, func(d *stepDef) error {
		if s.def == nil {
			return fmt.Errorf("branch %q is the zero Step", name)
		}
		if name == "" {
			return errors.New("branch has no name")
		}
		d.branchNames = append(d.branchNames, name)
		d.children = append(d.children, s)
		return nil
	})
}

// Conditional makes a step that runs one of its branches: key computes a
// branch name from the (unmapped) input, the branch of that name runs —
// or the [WithDefault] step when no branch has it; with neither the step
// fails with [ErrNoBranch]. The branch shares the run's state (no
// isolation). A pause or budget breach inside the branch propagates.
// [MetaBranchKey] records the key. Its options are [Branch],
// [WithDefault], [WithInputMapper], [WithOutputMapper] and
// [UpdatesContext].
//
// Conditional panics if key is nil.
func Conditional(name string, key func(ctx context.Context, in any) (string, error), opts ...StepOption) Step {
	if key == nil {
		panic("caudal: Conditional " + name + ": nil key func")
	}
	d := &stepDef{kind: kindConditional, name: name, flowConfig: flowConfig{branchKey: key}}
	d.apply(opts)
	return Step{def: d}
}

// WithDefault sets the branch a [Conditional] step runs when no branch has
// the computed key.
func WithDefault(s Step) StepOption {
	return kindsOption("WithDefault", []stepKind{kindConditional}, func(d *stepDef) error {
		if s.def == nil {
			return errors.New("default branch is the zero Step")
		}
		d.defaultStep = &s
		return nil
	})
}

// WithInputMapper transforms the input before a [Conditional] step's branch
// (after the key is computed) or before a [Loop]'s first iteration. The
// context carries the run's state ([StateFrom]).
func WithInputMapper(fn func(ctx context.Context, in any) (any, error)) StepOption {
	return kindsOption("WithInputMapper", []stepKind{kindConditional, kindLoop}, func(d *stepDef) error {
		if fn == nil {
			return errors.New("nil mapper")
		}
		d.inputMapper = fn
		return nil
	})
}

// WithOutputMapper transforms the output of a [Conditional] step's branch
// or of a [Loop] that met its exit condition.
func WithOutputMapper(fn func(ctx context.Context, out any) (any, error)) StepOption {
	return kindsOption("WithOutputMapper", []stepKind{kindConditional, kindLoop}, func(d *stepDef) error {
		if fn == nil {
			return errors.New("nil mapper")
		}
		d.outputMapper = fn
		return nil
	})
}

// Router makes a step whose agent picks which branches run: its output is a
// branch name, a []string or a []any of names. The chosen branches then run
// as a [Parallel] step does, in declaration order, with its options
// ([WithMerge], [WithReducer], [WithMergeFunc], [WithOnBranchFailure],
// [WithConcurrency]). A name that is not a branch fails the step, naming it
// and the known names; choosing none succeeds with an empty output.
// [MetaExecutedBranches] lists the chosen branches.
func Router(name string, pick Agent, opts ...StepOption) Step {
	d := &stepDef{kind: kindRouter, name: name, agent: pick}
	d.apply(opts)
	return Step{def: d}
}

// execSeq runs a sequence.
func (ex *Executor) execSeq(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	start := monoNow()
	res.Path, res.RunID, res.Attempts = n.path, r.runID, 1
	first, cur := 0, in
	res.Children = ex.alloc.Children(len(n.children))
	if fr := r.resume.frame(n.path); fr != nil {
		first, cur = fr.Index, fr.Input
		for _, c := range fr.Results {
			res.Children = append(res.Children, c)
			res.Usage = res.Usage.Add(c.Usage)
		}
	}
	bareOK := r.quota == nil && ex.recorder == nil
	now := start // the clock's last reading
	for i := first; i < len(n.children); i++ {
		res.Children = append(res.Children, StepResult{})
		child := &res.Children[len(res.Children)-1]
		c := n.children[i]
		var err error
		if c.bare && bareOK {
			now, err = execBareFrom(ctx, c, cur, r.runID, child, now)
		} else {
			err = ex.exec(ctx, r, c, cur, child)
			now = monoNow()
		}
		res.Usage = res.Usage.Add(child.Usage)
		if err != nil {
			res.Output, res.Feedback, res.Latency = child.Output, child.Feedback, now-start
			if pe := asPaused(err); pe != nil {
				pe.addFrame(n.path, &frame{Index: i, Input: cur, Results: slices.Clone(res.Children[:len(res.Children)-1])})
			}
			return err
		}
		cur = child.Output
	}
	res.Output, res.Success, res.Latency = cur, true, now-start
	return nil
}

// MetaBranchKey is the key a conditional step computed.
const MetaBranchKey = "executed_branch_key"

// MetaExecutedBranches lists the branches a router step chose.
const MetaExecutedBranches = "executed_branches"

// execConditional runs a conditional step.
func (ex *Executor) execConditional(ctx context.Context, r *run, n *node, in any, res *StepResult) (err error) {
	start := monoNow()
	res.Path, res.RunID, res.Attempts = n.path, r.runID, 1
	defer func() { res.Latency = monoNow() - start }()
	var key string
	fr := r.resume.frame(n.path)
	if fr != nil {
		key = fr.Key
	} else if key, err = guard2(ctx, in, n.branchKey); err != nil {
		return ex.fail(res, fmt.Errorf("caudal: step %q: branch key: %w", n.path, err))
	}
	branch := n.branchByKey(key)
	if branch == nil {
		return ex.fail(res, fmt.Errorf("caudal: step %q: %w for key %q (branches: %s)", n.path, ErrNoBranch, key, strings.Join(n.branchNames, ", ")))
	}
	res.setMeta(MetaBranchKey, key)
	bin := in
	if fr != nil {
		bin = fr.Input // resuming: the branch's (mapped) input
	} else if n.inputMapper != nil {
		if bin, err = guard2(ctx, in, n.inputMapper); err != nil {
			return ex.fail(res, fmt.Errorf("caudal: step %q: input mapper: %w", n.path, err))
		}
	}
	res.Children = append(ex.alloc.Children(1), StepResult{})
	child := &res.Children[0]
	err = ex.exec(ctx, r, branch, bin, child)
	res.Usage = child.Usage
	if err != nil {
		res.Output, res.Feedback = child.Output, child.Feedback
		if pe := asPaused(err); pe != nil {
			pe.addFrame(n.path, &frame{Key: key, Input: bin})
		}
		return err
	}
	out := child.Output
	if n.outputMapper != nil {
		if out, err = guard2(ctx, out, n.outputMapper); err != nil {
			return ex.fail(res, fmt.Errorf("caudal: step %q: output mapper: %w", n.path, err))
		}
	}
	res.Output, res.Success = out, true
	return nil
}

// branchByKey returns the branch named key, or the default branch, or nil.
func (n *node) branchByKey(key string) *node {
	if i := slices.Index(n.branchNames, key); i >= 0 {
		return n.children[i]
	}
	return n.defaultNode
}

// execRouter runs a router step.
func (ex *Executor) execRouter(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	start := monoNow()
	res.Path, res.RunID, res.Attempts = n.path, r.runID, 1
	fr := r.resume.frame(n.path)
	var names []string
	if fr != nil {
		names, in = fr.Selected, fr.Input
	} else {
		reply, err := callAgent(ctx, n.agent, in)
		res.Usage = reply.Usage
		if r.quota != nil {
			if used, ok := r.quota.reconcile(Usage{}, reply.Usage); !ok {
				return ex.breach(ctx, r, n, res, start, used)
			}
		}
		if err == nil {
			names, err = branchNames(reply.Output)
		}
		if err != nil {
			res.Latency = monoNow() - start
			return ex.fail(res, fmt.Errorf("caudal: step %q: router: %w", n.path, err))
		}
	}
	selected := make([]int, 0, len(names))
	for _, name := range names {
		i := slices.Index(n.branchNames, name)
		if i < 0 {
			res.Latency = monoNow() - start
			return ex.fail(res, fmt.Errorf("caudal: step %q: router chose unknown branch %q (branches: %s)", n.path, name, strings.Join(n.branchNames, ", ")))
		}
		if !slices.Contains(selected, i) {
			selected = append(selected, i)
		}
	}
	slices.Sort(selected)
	chosen := make([]any, len(selected))
	for i, b := range selected {
		chosen[i] = n.branchNames[b]
	}
	res.setMeta(MetaExecutedBranches, chosen)
	err := ex.runBranches(ctx, r, n, in, res, selected, fr, start) // adds the branches' usage to the router's
	if pe := asPaused(err); pe != nil {
		pe.Snapshot.Frames[n.path].Selected = names
	}
	return err
}

// branchNames reads a router's choice.
func branchNames(out any) ([]string, error) {
	switch v := out.(type) {
	case string:
		return []string{v}, nil
	case []string:
		return v, nil
	case []any:
		names := make([]string, len(v))
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("choice %d is a %T, not a branch name", i, x)
			}
			names[i] = s
		}
		return names, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("output of type %T is not a branch name or a list of them", out)
}

// fail marks res failed with err and returns err.
func (ex *Executor) fail(res *StepResult, err error) error {
	res.Success = false
	res.Feedback = err.Error()
	return err
}

// guard2 calls a user func of one value under a panic guard.
func guard2[T, U any](ctx context.Context, v T, fn func(context.Context, T) (U, error)) (out U, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx, v)
}
