package caudal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/caudal-go/caudal/internal/statemerge"
)

// SnapshotVersion is the version of the [Snapshot] format this package writes
// and reads.
const SnapshotVersion = 1

// Snapshot is where a paused run stands: the state, and for every construct
// around the paused step how far it got — the step index of a sequence, the
// iteration of a loop, the finished branches of a parallel step with their
// results and state changes, the branch a conditional chose. It is plain
// data that round-trips through encoding/json (values held in it come back
// as their JSON forms), so a runner can persist it. Pass it to
// [WithResume] to continue the run without re-running finished work.
type Snapshot struct {
	Version int               `json:"version"`
	RunID   string            `json:"run_id,omitempty"`
	Path    string            `json:"path"`             // the paused human-input step
	Message string            `json:"message"`          // what the run asks of the human
	State   map[string]any    `json:"state,omitempty"`  // the run's state at the pause
	Frames  map[string]*frame `json:"frames,omitempty"` // progress of the enclosing constructs, by path
}

// frame is the progress of one construct when a run paused inside it.
type frame struct {
	Index    int                     `json:"index,omitempty"`    // sequence: the step in progress; loop: the iteration (1-based)
	Input    any                     `json:"input,omitempty"`    // input of that step or iteration
	Results  []StepResult            `json:"results,omitempty"`  // children that had finished
	Key      string                  `json:"key,omitempty"`      // conditional: the chosen branch
	Selected []string                `json:"selected,omitempty"` // router: the chosen branches
	Branches map[string]*branchFrame `json:"branches,omitempty"` // parallel branches or map items, by name or index
}

// branchFrame is one parallel branch or map item of a paused construct.
type branchFrame struct {
	Result *StepResult        `json:"result,omitempty"` // a branch that had finished
	Writes []statemerge.Write `json:"writes,omitempty"` // its state changes, relative to the fork
	State  map[string]any     `json:"state,omitempty"`  // the state of a branch that paused
	Frames map[string]*frame  `json:"frames,omitempty"` // map items: the frames inside the item
	Target bool               `json:"target,omitempty"` // map items: the item whose step receives the human input
}

// PausedError stops a run at a [HumanInput] step. It matches [ErrPaused].
// Snapshot holds what resuming needs ([WithResume]); Schema is the step's
// declared input schema, if any.
type PausedError struct {
	Path     string    // the human-input step
	Message  string    // what to ask
	Schema   any       // the expected input's schema, from [WithSchema]
	Snapshot *Snapshot // where the run stands
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("caudal: step %q: paused for human input: %s", e.Path, e.Message)
}

// Is reports whether target is [ErrPaused].
func (e *PausedError) Is(target error) bool { return target == ErrPaused }

// addFrame records the progress of the construct at path.
func (e *PausedError) addFrame(path string, f *frame) {
	if e.Snapshot.Frames == nil {
		e.Snapshot.Frames = make(map[string]*frame)
	}
	e.Snapshot.Frames[path] = f
}

func asPaused(err error) *PausedError {
	pe, _ := errors.AsType[*PausedError](err)
	return pe
}

// HumanInput makes a step that pauses the run to ask a human: it fails with
// a [*PausedError] carrying message (or, when message is "", the step's
// input as text) and a [Snapshot]. Executing the same step again with
// [WithResume] continues the run: this step then succeeds with the human's
// input as its output. Its option is [WithSchema].
func HumanInput(name, message string, opts ...StepOption) Step {
	d := &stepDef{kind: kindHuman, name: name, flowConfig: flowConfig{message: message}}
	d.apply(opts)
	return Step{def: d}
}

// WithSchema declares the shape of the input a [HumanInput] step expects
// (for example a JSON Schema document); it is passed on in
// [PausedError.Schema] for the caller to validate the answer against.
func WithSchema(schema any) StepOption {
	return kindsOption("WithSchema", []stepKind{kindHuman}, func(d *stepDef) error {
		d.schema = schema
		return nil
	})
}

// WithResume continues a paused run: the step given to
// [Executor.Execute] must be the one that paused (the input argument is
// then ignored), snap the [PausedError.Snapshot], and input the human's
// answer, which becomes the output of the paused [HumanInput] step.
// Finished work is not run again. The snapshot's state is loaded into the
// [WithState] state if one is given, else into a new one. It applies to
// Execute.
func WithResume(snap *Snapshot, input any) Option {
	o := &option{name: "WithResume", scope: scopeExecute, kind: optResume, val: settings{resume: snap, resumeInput: input}}
	switch {
	case snap == nil:
		o.err = errors.New("nil Snapshot")
	case snap.Version != SnapshotVersion:
		o.err = fmt.Errorf("snapshot version %d, want %d", snap.Version, SnapshotVersion)
	case snap.Path == "":
		o.err = errors.New("snapshot names no paused step")
	}
	return o
}

// resumeState drives a resumed execution: constructs take their frames from
// it, and the paused step its input.
type resumeState struct {
	mu     sync.Mutex // protects frames
	frames map[string]*frame

	target    string // path of the step that receives input; "" in a map item that was not the target
	input     any
	delivered *atomic.Bool // shared by the whole execution
}

func newResume(snap *Snapshot, input any) *resumeState {
	return &resumeState{frames: maps.Clone(snap.Frames), target: snap.Path, input: input, delivered: new(atomic.Bool)}
}

// frame returns, once, the frame recorded for path.
func (rs *resumeState) frame(path string) *frame {
	if rs == nil {
		return nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	f := rs.frames[path]
	delete(rs.frames, path)
	return f
}

// take returns the human input if path is the paused step.
func (rs *resumeState) take(path string) (any, bool) {
	if rs == nil || rs.target != path || !rs.delivered.CompareAndSwap(false, true) {
		return nil, false
	}
	return rs.input, true
}

// item returns the resume state of map item bf.
func (rs *resumeState) item(bf *branchFrame) *resumeState {
	child := &resumeState{frames: bf.Frames, input: rs.input, delivered: rs.delivered}
	if bf.Target {
		child.target = rs.target
	}
	return child
}

// execHuman runs a human-input step.
func (ex *Executor) execHuman(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	res.Path, res.RunID = n.path, r.runID
	if v, ok := r.resume.take(n.path); ok {
		res.Output, res.Success, res.Attempts = v, true, 1
		return nil
	}
	msg := n.message
	if msg == "" {
		msg = fmt.Sprint(in)
	}
	pe := &PausedError{
		Path: n.path, Message: msg, Schema: n.schema,
		Snapshot: &Snapshot{Version: SnapshotVersion, RunID: r.runID, Path: n.path, Message: msg},
	}
	res.Feedback = pe.Error()
	if ex.recorder != nil {
		ex.emit(ctx, Event{Kind: EventPaused, RunID: r.runID, Path: n.path, Err: pe})
	}
	return pe
}
