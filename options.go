package caudal

import (
	"errors"
	"fmt"

	"github.com/caudal-go/caudal/internal/engine"
)

// Option configures an [Executor] when passed to [New], or one execution when
// passed to [Executor.Execute]. Each option documents where it applies;
// passing it elsewhere is an error from New or Execute naming the option.
type Option interface {
	option() *option
}

type optionScope uint8

const (
	scopeNew optionScope = 1 << iota
	scopeExecute
)

type optionKind uint8

const (
	optSink optionKind = iota + 1
	optLimits
	optRunID
	optStream
	optState
	optResume
	optRuntime
	optCheckpointer
	optSeams
)

// option is plain data: applying it is a switch, not a func call, so the
// settings of an Execute call stay on its stack.
type option struct {
	name  string
	scope optionScope
	kind  optionKind
	err   error    // the option's value is invalid
	val   settings // the field the option sets
}

func (o *option) option() *option { return o }

// settings collects the options of one New or Execute call.
type settings struct {
	sinks     []Sink
	limits    Limits
	hasLimits bool
	runID     string
	stream    streamFunc
	state     *State

	resume      *Snapshot
	resumeInput any

	runtime      Runtime
	checkpointer Checkpointer
	seams        []func(*engine.Seams[Event, StepResult])
}

// quiet reports whether the settings of an Execute leave a root step's
// fast path open: no limits, checkpointer or resume.
func (s *settings) quiet() bool {
	return !s.hasLimits && s.checkpointer == nil && s.resume == nil
}

func (s *settings) apply(opts []Option, scope optionScope, where string) error {
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("caudal: %s: nil Option", where))
			continue
		}
		op := o.option()
		if op.scope&scope == 0 {
			errs = append(errs, fmt.Errorf("caudal: %s: option %s does not apply here", where, op.name))
			continue
		}
		if op.err != nil {
			errs = append(errs, fmt.Errorf("caudal: %s: option %s: %w", where, op.name, op.err))
			continue
		}
		switch op.kind {
		case optSink:
			s.sinks = append(s.sinks, op.val.sinks...)
		case optLimits:
			s.limits, s.hasLimits = op.val.limits, true
		case optRunID:
			s.runID = op.val.runID
		case optStream:
			s.stream = op.val.stream
		case optState:
			s.state = op.val.state
		case optResume:
			s.resume, s.resumeInput = op.val.resume, op.val.resumeInput
		case optRuntime:
			s.runtime = op.val.runtime
		case optCheckpointer:
			s.checkpointer = op.val.checkpointer
		case optSeams:
			s.seams = append(s.seams, op.val.seams...)
		}
	}
	return errors.Join(errs...)
}

// WithSink attaches a [Sink] that receives every event of the executor's
// steps. It applies to [New]; several sinks are called in the order given.
// With no sink attached, no event is built at all.
func WithSink(s Sink) Option {
	o := &option{name: "WithSink", scope: scopeNew, kind: optSink, val: settings{sinks: []Sink{s}}}
	if s == nil {
		o.err = errors.New("nil Sink")
	}
	return o
}

// WithLimits caps what one execution may spend (see [Limits] and
// [WithUsageEstimate]). Passed to [New] it is the default of every
// execution; passed to [Executor.Execute] it replaces that default for one
// call. Limits apply to one Execute call: a caller spanning several calls
// passes what remains of its budget.
func WithLimits(l Limits) Option {
	return &option{name: "WithLimits", scope: scopeNew | scopeExecute, kind: optLimits, err: l.validate(), val: settings{limits: l}}
}

// WithRunID sets the run ID carried by every [StepResult] and [Event] of one
// execution. It applies to [Executor.Execute]. Without it the ID is empty.
func WithRunID(id string) Option {
	return &option{name: "WithRunID", scope: scopeExecute, kind: optRunID, val: settings{runID: id}}
}

// WithStream asks for streaming: agents that implement [StreamAgent] send
// their chunks to fn as they produce them, with the instance path of the
// step that produced each (branches of a [Parallel] step stream at the
// same time; the path tells their chunks apart). Calls to fn are
// serialized: it never runs twice at once. Its error stops the stream and
// fails the attempt. Chunks of a failed attempt that were already
// delivered are not taken back. It applies to [Executor.Execute].
//
// A streamed output, like any output, must not read lazily from the
// attempt's context — a response body, an open stream — once the step has
// returned: that context ends with the attempt (and with [WithTimeout]'s
// deadline), so read what the output needs before returning it.
func WithStream(fn func(path string, chunk any) error) Option {
	o := &option{name: "WithStream", scope: scopeExecute, kind: optStream}
	if fn == nil {
		o.err = errors.New("nil stream callback")
	} else {
		o.val.stream = serialized(fn)
	}
	return o
}

// WithState attaches the run's [State]: agents read it with [StateFrom] and
// cache steps may key on its values ([WithCacheStateKeys]). It applies to
// [Executor.Execute].
func WithState(s *State) Option {
	o := &option{name: "WithState", scope: scopeExecute, kind: optState, val: settings{state: s}}
	if s == nil {
		o.err = errors.New("nil State")
	}
	return o
}
