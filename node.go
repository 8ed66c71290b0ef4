package caudal

import (
	"context"
	"crypto/sha256"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal/internal/engine"
)

// node is a compiled step. Each step kind has its own node type and exec;
// the policies of an agent step are layers composed inside its node at
// Build. Nodes are immutable once built, but for the caches of instance
// paths they fill.
type node interface {
	base() *nodeBase
	// exec runs one instance of the step, at instance path p, into res.
	// It does not do the instance's bookkeeping (events, journal, replay,
	// UpdatesContext): [run.step] does, around it.
	exec(ctx context.Context, r *run, p string, in any, res *StepResult) error
	// kids returns the steps nested directly in this one, for walks over
	// the graph (snapshot validation).
	kids() []node
}

// nodeBase is what every compiled step has.
type nodeBase struct {
	kind stepKind
	name string
	// seg is the step's segment of an instance path: its name, or its
	// branch name; "" for a transparent step (a refine round), whose path is
	// its parent's.
	seg string
	// path is the step's path in names only — no iteration or item index —
	// when it is at most maxStaticPath bytes long, else "". fixed reports
	// that it is also the instance path of every execution of the step: the
	// step is in no loop or map body.
	path  string
	fixed bool
	// id is the step's index in its graph (its per-step switch).
	id int
	// in and out are the types a typed step ([Func]), or a sequence or cache
	// step around typed steps, declares; nil when unknown.
	in, out      reflect.Type
	updatesState bool
	digest       [sha256.Size]byte // fingerprint of the step and everything in it
	site         engine.Site
}

func (b *nodeBase) base() *nodeBase { return b }

// maxStaticPath bounds the paths Build stores, so that memory grows
// linearly with a pipeline's size however deep it nests: deeper steps
// compute their instance paths when they run.
const maxStaticPath = 512

// join returns the path of segment seg under p.
func join(p, seg string) string {
	switch {
	case seg == "":
		return p
	case p == "":
		return seg
	}
	return p + "/" + seg
}

// childPath returns the instance path of step c run under the instance at p.
func childPath(p string, c *nodeBase) string {
	if c.fixed {
		return c.path
	}
	return join(p, c.seg)
}

// maxCachedIndex is how many iteration or item paths a loop or map outside
// any other loop or map keeps, so that running it again builds none.
const maxCachedIndex = 1024

// indexPaths caches the instance paths of a loop's or map's body, by
// iteration or item index.
type indexPaths struct {
	paths atomic.Pointer[[]string]
}

// get returns the instance path of body for index i of the construct at p:
// p#i/body for a loop (sep '#'), p[i]/body for a map (sep '[').
func (c *indexPaths) get(construct *nodeBase, p string, sep byte, i int, body *nodeBase) string {
	if construct.fixed && i >= 0 && i < maxCachedIndex {
		if s := c.paths.Load(); s != nil && i < len(*s) {
			return (*s)[i]
		}
		n := min(maxCachedIndex, max(i+1, 16))
		if s := c.paths.Load(); s != nil {
			n = min(maxCachedIndex, max(n, 2*len(*s)))
		}
		paths := make([]string, n)
		for k := range paths {
			paths[k] = indexPath(p, sep, k, body.seg)
		}
		c.paths.Store(&paths)
		return paths[i]
	}
	return indexPath(p, sep, i, body.seg)
}

func indexPath(p string, sep byte, i int, seg string) string {
	b := make([]byte, 0, len(p)+len(seg)+12)
	b = append(b, p...)
	b = append(b, sep)
	b = strconv.AppendInt(b, int64(i), 10)
	if sep == '[' {
		b = append(b, ']')
	}
	if seg != "" {
		b = append(b, '/')
		b = append(b, seg...)
	}
	return string(b)
}

// run is the frame of one Execute, shared by every step it runs; a parallel
// branch or map item gets a copy with its own share of the budget.
type run struct {
	rt     *rtime
	rec    engine.Recorder[Event] // nil: no sink
	alloc  engine.Allocator
	strat  *engine.Strategy[StepResult]
	slots  []*engine.Slot[StepResult] // nil: no tuner
	runID  string
	quota  *quota     // nil: no limits
	stream streamFunc // nil: no streaming

	journal *journal // nil: nothing journals
	replay  *replay  // nil: not resuming

	// plain: no sink, journal or replay, so a step runs without its
	// instance's bookkeeping.
	plain bool
	// bareOK: no sink or budget, so a bare agent step may run as
	// execBareFrom (its instance's bookkeeping around it).
	bareOK bool
	// stateless: the execution has no state, so neither has any step of it
	// (a branch's or item's state is forked from its parent's).
	stateless bool

	res StepResult // the root step's result
}

// runPool recycles execution frames: every execution outside the fast
// paths needs one, and it escapes to the heap through the nodes' interface.
var runPool = sync.Pool{New: func() any { return new(run) }}

// state returns the state of the step running in ctx, nil for none.
func (r *run) state(ctx context.Context) *State {
	if r.stateless {
		return nil
	}
	return StateFrom(ctx)
}

// strategy returns the seams of step b: its switch's, or the executor's.
func (r *run) strategy(b *nodeBase) *engine.Strategy[StepResult] {
	return strategyOf(r.strat, r.slots, b)
}

// strategyOf returns the seams of step b: its switch's in slots (nil: no
// tuner), or base.
func strategyOf(base *engine.Strategy[StepResult], slots []*engine.Slot[StepResult], b *nodeBase) *engine.Strategy[StepResult] {
	if slots != nil {
		if sl := slots[b.id]; sl != nil {
			if s := sl.Strategy.Load(); s != nil {
				return s
			}
		}
	}
	return base
}

// step runs one instance of n at path p: the instance's bookkeeping —
// replay from the journal, events, the UpdatesContext merge, the journal
// record — around n.exec. A panic that nothing closer to it contained — in
// a sink, a state value's Clone, a value's MarshalJSON — fails the
// instance with a *PanicError.
func (r *run) step(ctx context.Context, n node, p string, in any, res *StepResult) error {
	if !r.plain {
		return r.instance(ctx, n, p, in, res)
	}
	if b := n.base(); b.kind == kindAgent && !b.updatesState {
		// An agent step guards every call of user code it makes itself:
		// the hot path pays for no second guard.
		return n.exec(ctx, r, p, in, res)
	}
	return r.plainStep(ctx, n, p, in, res)
}

// plainStep is step when nothing observes, journals or replays the run.
func (r *run) plainStep(ctx context.Context, n node, p string, in any, res *StepResult) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = contained(p, res, v)
		}
	}()
	err = n.exec(ctx, r, p, in, res)
	if err == nil && n.base().updatesState {
		err = r.updateState(ctx, p, res)
	}
	return err
}

// contained turns panic value v, raised while step instance p ran, into
// its *PanicError, and res into a failed result.
func contained(p string, res *StepResult, v any) error {
	pe := newPanicError(p, v)
	if res.Path == "" {
		res.Path = p
	}
	res.Success, res.Feedback = false, pe.Error()
	return pe
}

// instance is step when something observes, journals or replays the run.
func (r *run) instance(ctx context.Context, n node, p string, in any, res *StepResult) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = contained(p, res, v)
		}
	}()
	b := n.base()
	if r.replay != nil {
		if rec := r.replay.steps[p]; rec != nil {
			return r.restore(ctx, p, rec, res)
		}
	}
	if r.rec != nil {
		r.emit(ctx, Event{Kind: EventStepStarted, Path: p})
		defer func() {
			r.emit(ctx, Event{
				Kind: EventStepFinished, Path: p, Attempt: res.Attempts, Latency: res.Latency,
				Success: res.Success, Usage: res.Usage, Err: err,
			})
		}()
	}
	mark, st := r.mark(ctx)
	err = n.exec(ctx, r, p, in, res)
	if err == nil && b.updatesState {
		err = r.updateState(ctx, p, res)
	}
	if err == nil {
		err = r.completed(ctx, p, res, st, mark)
	}
	return err
}

// completed journals the success of the instance at p, whose state writes
// are st's since mark; a refused record fails it.
func (r *run) completed(ctx context.Context, p string, res *StepResult, st *State, mark int) error {
	if r.journal == nil {
		return nil
	}
	err := r.journal.add(ctx, p, StatusSucceeded, res, st.writesSince(mark))
	if err != nil {
		res.Success, res.Feedback = false, err.Error()
	}
	return err
}

// bareStep is instance for a bare agent step of a sequence when nothing
// observes the run but it journals or replays: the step's bookkeeping
// around execBareFrom, so that the sequence keeps reading the clock once
// per step. start is the clock's last reading; it returns the next.
func (r *run) bareStep(ctx context.Context, a *agentNode, p string, in any, res *StepResult, start time.Duration) (time.Duration, error) {
	if r.replay != nil {
		if rec := r.replay.steps[p]; rec != nil {
			err := r.restore(ctx, p, rec, res)
			return r.rt.mono(), err
		}
	}
	mark, st := r.mark(ctx) // st: the state the step runs on, as r.state(ctx) when the run journals
	if r.journal == nil {
		st = r.state(ctx)
	}
	var end time.Duration
	var err error
	if st == nil {
		end, err = execBareFrom(ctx, r.rt, r.strategy(&a.nodeBase), a, p, in, r.runID, res, start) // bareOn's call costs a journaling step ~2 %
	} else {
		end, err = bareOn(ctx, r.rt, r.strategy(&a.nodeBase), a, p, in, r.runID, res, start, st)
	}
	if err == nil {
		err = r.completed(ctx, p, res, st, mark)
	}
	return end, err
}

// mark returns, when the run journals, the state its steps see and the
// position of that state's log.
func (r *run) mark(ctx context.Context) (int, *State) {
	if r.journal == nil || r.stateless {
		return 0, nil
	}
	st := StateFrom(ctx)
	if st == nil {
		return 0, nil
	}
	return st.s.LogLen(), st
}

// updateState merges a succeeded step's output into the state.
func (r *run) updateState(ctx context.Context, p string, res *StepResult) error {
	st := StateFrom(ctx)
	if st == nil {
		return nil
	}
	if err := st.mergeOutput(res.Output); err != nil {
		res.Success = false
		err = stepError(p, "", err)
		res.Feedback = err.Error()
		return err
	}
	return nil
}

// emitFresh is emit with the baseline allocator: the event itself, moved
// to the heap here (not in emit, where it would be for every allocator),
// is the fresh object.
func (r *run) emitFresh(ctx context.Context, e Event) {
	e.RunID, e.Time = r.runID, r.rt.now()
	r.rec.Record(ctx, &e)
}

var eventClass = engine.Class{Name: "event", New: func() any { return new(Event) }}

// emit stamps e and hands it to the recorder. Callers check r.rec != nil
// first, so no event is built without a sink.
func (r *run) emit(ctx context.Context, e Event) {
	if _, fresh := r.alloc.(engine.Fresh); fresh {
		r.emitFresh(ctx, e)
		return
	}
	ev := r.alloc.Get(&eventClass).(*Event)
	*ev = e
	ev.RunID, ev.Time = r.runID, r.rt.now()
	r.rec.Record(ctx, ev)
	*ev = Event{}
	r.alloc.Put(&eventClass, ev)
}
