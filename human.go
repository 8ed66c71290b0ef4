package caudal

import (
	"context"
	"errors"
	"fmt"
)

// PausedError stops a run at a [HumanInput] step. It matches [ErrPaused].
// Snapshot holds what resuming needs ([WithResume]); Schema is the step's
// declared input schema, if any.
type PausedError struct {
	Path     string    // the human-input step's instance path
	Message  string    // what to ask
	Schema   any       // the expected input's schema, from [WithSchema]
	Snapshot *Snapshot // where the run stands
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("caudal: step %q: paused for human input: %s", e.Path, e.Message)
}

// Is reports whether target is [ErrPaused].
func (e *PausedError) Is(target error) bool { return target == ErrPaused }

func (e *PausedError) instancePath() string { return e.Path }

func asPaused(err error) *PausedError {
	pe, _ := errors.AsType[*PausedError](err)
	return pe
}

// HumanInput makes a step that pauses the run to ask a human: it fails with
// a [*PausedError] carrying message (or, when message is "", the step's
// input as text) and a [Snapshot]. Executing the same pipeline with
// [WithResume] continues the run: this step then succeeds with the human's
// answer as its output. Its option is [WithSchema].
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

// humanNode is a compiled human-input step.
type humanNode struct {
	nodeBase
	message string
	schema  any
}

func (h *humanNode) kids() []node { return nil }

// exec pauses the run, or, when the run resumes at this instance, takes
// the human's answer as its output.
func (h *humanNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	res.Path, res.RunID = p, r.runID
	if r.replay != nil && r.replay.target == p && r.replay.delivered.CompareAndSwap(false, true) {
		res.Output, res.Success, res.Attempts = r.replay.answer, true, 1
		return nil
	}
	msg := h.message
	if msg == "" {
		msg = fmt.Sprint(in)
	}
	pe := &PausedError{Path: p, Message: msg, Schema: h.schema}
	res.Feedback = pe.Error()
	if r.rec != nil {
		r.emit(ctx, Event{Kind: EventPaused, Path: p, Err: pe})
	}
	return pe
}
