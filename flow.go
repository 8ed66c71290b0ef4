package caudal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/caudal-go/caudal/internal/engine"
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

// seqNode is a compiled sequence.
type seqNode struct {
	nodeBase
	children []node
	bare     []*agentNode // bare[i] is children[i] when it is a bare agent step, else nil
}

func (s *seqNode) kids() []node { return s.children }

// exec runs a sequence.
func (s *seqNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	start := r.rt.mono()
	res.Path, res.RunID, res.Attempts = p, r.runID, 1
	res.Children = make([]StepResult, 0, len(s.children))
	cur := in
	now := start // the clock's last reading
	for i, c := range s.children {
		cp := childPath(p, c.base())
		res.Children = append(res.Children, StepResult{})
		child := &res.Children[len(res.Children)-1]
		var err error
		switch {
		case s.bare[i] != nil && r.plain && r.bareOK:
			now, err = bareOn(ctx, r.rt, r.strategy(&s.bare[i].nodeBase), s.bare[i], cp, cur, r.runID, child, now, r.state(ctx))
		case s.bare[i] != nil && r.bareOK:
			now, err = r.bareStep(ctx, s.bare[i], cp, cur, child, now)
		default:
			err = r.step(ctx, c, cp, cur, child)
			now = r.rt.mono()
		}
		res.Usage = res.Usage.Add(child.Usage)
		if err != nil {
			res.Output, res.Feedback, res.Latency = child.Output, child.Feedback, now-start
			return err
		}
		cur = child.Output
	}
	res.Output, res.Success, res.Latency = cur, true, now-start
	return nil
}

// execBareSeq runs a sequence of bare agent steps when nothing observes,
// meters or journals the execution: the fast path of such a sequence, which
// behaves exactly as exec does.
func execBareSeq(ctx context.Context, c *rtime, base *engine.Strategy[StepResult], slots []*engine.Slot[StepResult], s *seqNode, p string, in any, runID string, res *StepResult, st *State) error {
	start := c.mono()
	res.Path, res.RunID, res.Attempts = p, runID, 1
	res.Children = make([]StepResult, len(s.bare))
	cur, now := in, start
	for i, a := range s.bare {
		child := &res.Children[i]
		var err error
		if st == nil {
			now, err = execBareFrom(ctx, c, strategyOf(base, slots, &a.nodeBase), a, childPath(p, &a.nodeBase), cur, runID, child, now)
		} else {
			now, err = bareOn(ctx, c, strategyOf(base, slots, &a.nodeBase), a, childPath(p, &a.nodeBase), cur, runID, child, now, st)
		}
		res.Usage = res.Usage.Add(child.Usage)
		if err != nil {
			res.Children = res.Children[:i+1]
			res.Output, res.Latency, res.Success, res.Feedback = child.Output, now-start, false, err.Error()
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

// condNode is a compiled conditional step.
type condNode struct {
	nodeBase
	branches []node
	names    []string
	deflt    node // nil: none
	key      func(ctx context.Context, in any) (string, error)
	inMap    func(ctx context.Context, in any) (any, error)
	outMap   func(ctx context.Context, out any) (any, error)
}

func (c *condNode) kids() []node {
	if c.deflt == nil {
		return c.branches
	}
	return append(c.branches[:len(c.branches):len(c.branches)], c.deflt)
}

// exec runs a conditional step. The key it computes is a decision of the
// journal: a resumed run takes the branch the key chose then.
func (c *condNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) (err error) {
	start := r.rt.mono()
	res.Path, res.RunID, res.Attempts = p, r.runID, 1
	defer func() { res.Latency = r.rt.mono() - start }()
	key, err := c.decide(ctx, r, p, in, res)
	if err != nil {
		return r.failStep(res, err)
	}
	branch := c.branchByKey(key)
	if branch == nil {
		return r.failStep(res, fmt.Errorf("caudal: step %q: %w for key %q (branches: %s)", p, ErrNoBranch, key, strings.Join(c.names, ", ")))
	}
	res.setMeta(MetaBranchKey, key)
	bin := in
	if c.inMap != nil {
		if bin, err = guard2(ctx, p, in, c.inMap); err != nil {
			return r.failStep(res, stepError(p, "input mapper", err))
		}
	}
	res.Children = make([]StepResult, 1)
	child := &res.Children[0]
	err = r.step(ctx, branch, childPath(p, branch.base()), bin, child)
	res.Usage = child.Usage
	if err != nil {
		res.Output, res.Feedback = child.Output, child.Feedback
		return err
	}
	out := child.Output
	if c.outMap != nil {
		if out, err = guard2(ctx, p, out, c.outMap); err != nil {
			return r.failStep(res, stepError(p, "output mapper", err))
		}
	}
	res.Output, res.Success = out, true
	return nil
}

// decide returns the branch key: the journal's when resuming, else the key
// func's, journaled.
func (c *condNode) decide(ctx context.Context, r *run, p string, in any, res *StepResult) (string, error) {
	if r.replay != nil {
		if d := r.replay.decisions[p]; d != nil {
			key, ok := d.Output.(string)
			if !ok {
				return "", fmt.Errorf("caudal: WithResume: %w: the decision of conditional %q is a %T, not a branch key", ErrSnapshotMismatch, p, d.Output)
			}
			return key, nil
		}
	}
	key, err := guard2(ctx, p, in, c.key)
	if err != nil {
		return "", stepError(p, "branch key", err)
	}
	if r.journal != nil {
		if err := r.journal.add(ctx, p, StatusDecided, &StepResult{Output: key, Attempts: 1}, nil); err != nil {
			return "", err
		}
	}
	return key, nil
}

// branchByKey returns the branch named key, or the default branch, or nil.
func (c *condNode) branchByKey(key string) node {
	if i := slices.Index(c.names, key); i >= 0 {
		return c.branches[i]
	}
	return c.deflt
}

// routerNode is a compiled router step: its agent picks branches, which then
// run as a parallel step's do.
type routerNode struct {
	parallelNode
	agent Agent
}

// exec runs a router step. The agent's choice is a decision of the
// journal: a resumed run takes the branches it chose then, and pays for
// the choice once.
func (n *routerNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	start := r.rt.mono()
	res.Path, res.RunID, res.Attempts = p, r.runID, 1
	names, err := n.choose(ctx, r, p, in, res)
	if err != nil {
		res.Latency = r.rt.mono() - start
		return r.failStep(res, err)
	}
	selected := make([]int, 0, len(names))
	for _, name := range names {
		i := slices.Index(n.names, name)
		if i < 0 {
			res.Latency = r.rt.mono() - start
			return r.failStep(res, fmt.Errorf("caudal: step %q: router chose unknown branch %q (branches: %s)", p, name, strings.Join(n.names, ", ")))
		}
		if !slices.Contains(selected, i) {
			selected = append(selected, i)
		}
	}
	slices.Sort(selected)
	chosen := make([]any, len(selected))
	for i, b := range selected {
		chosen[i] = n.names[b]
	}
	res.setMeta(MetaExecutedBranches, chosen)
	return n.runBranches(ctx, r, p, in, res, selected, start) // adds the branches' usage to the router's
}

// choose returns the branches the agent picks: the journal's when
// resuming, else the agent's, journaled with what the choice cost.
func (n *routerNode) choose(ctx context.Context, r *run, p string, in any, res *StepResult) ([]string, error) {
	if r.replay != nil {
		if d := r.replay.decisions[p]; d != nil {
			res.Usage = d.Usage
			names, err := branchNames(d.Output)
			if err != nil {
				return nil, fmt.Errorf("caudal: WithResume: %w: the decision of router %q: %w", ErrSnapshotMismatch, p, err)
			}
			return names, nil
		}
	}
	if ctx.Err() != nil {
		// No picker starts on an ended context: it would be charged for
		// a choice nothing can act on.
		return nil, stepError(p, "router", context.Cause(ctx))
	}
	if r.quota != nil {
		// The picker is admitted as any agent call is: not once the budget
		// is spent. It has no estimate: it reserves nothing.
		if at, used, ok := r.quota.reserve(Usage{}); !ok {
			ue := r.quota.breach(p, at, used)
			res.Feedback = ue.Error()
			r.finishBreach(ctx, ue, res)
			return nil, ue
		}
	}
	var reply Reply
	var err error
	if strat := r.strategy(&n.nodeBase); strat.Guard != nil {
		reply, err = guarded(ctx, env{quota: r.quota, rt: r.rt, strat: strat, stream: r.stream}, strat.Guard, &n.site, n.agent, nil, p, in)
	} else {
		reply, err = invoke(ctx, r.stream, n.agent, nil, p, in)
	}
	res.Usage = reply.Usage
	if r.quota != nil {
		if at, used, ok := r.quota.reconcile(Usage{}, reply.Usage); !ok {
			ue := r.quota.breach(p, at, used)
			res.Feedback = ue.Error()
			r.finishBreach(ctx, ue, res)
			return nil, ue
		}
	}
	var names []string
	if err == nil {
		names, err = branchNames(reply.Output)
	}
	if err != nil {
		return nil, stepError(p, "router", err)
	}
	if r.journal != nil {
		if err := r.journal.add(ctx, p, StatusDecided, &StepResult{Output: names, Usage: reply.Usage, Attempts: 1}, nil); err != nil {
			return nil, err
		}
	}
	return names, nil
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

// guard2 calls a user func of one value under a panic guard; a panic
// becomes a *PanicError of step p.
func guard2[T, U any](ctx context.Context, p string, v T, fn func(context.Context, T) (U, error)) (out U, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = newPanicError(p, x)
		}
	}()
	return fn(ctx, v)
}
