package caudal

import (
	"errors"
	"fmt"
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

type option struct {
	name  string
	scope optionScope
	apply func(*settings) error
}

func (o *option) option() *option { return o }

// settings collects the options of one New or Execute call.
type settings struct {
	sinks     []Sink
	limits    Limits
	hasLimits bool
	runID     string
	stream    func(chunk any) error
	state     *State

	resume      *Snapshot
	resumeInput any
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
		if err := op.apply(s); err != nil {
			errs = append(errs, fmt.Errorf("caudal: %s: option %s: %w", where, op.name, err))
		}
	}
	return errors.Join(errs...)
}

// WithSink attaches a [Sink] that receives every event of the executor's
// steps. It applies to [New]; several sinks are called in the order given.
// With no sink attached, no event is built at all.
func WithSink(s Sink) Option {
	return &option{name: "WithSink", scope: scopeNew, apply: func(st *settings) error {
		if s == nil {
			return errors.New("nil Sink")
		}
		st.sinks = append(st.sinks, s)
		return nil
	}}
}

// WithLimits caps what one execution may spend (see [Limits] and
// [WithUsageEstimate]). Passed to [New] it is the default of every
// execution; passed to [Executor.Execute] it replaces that default for one
// call. Limits apply to one Execute call: a caller spanning several calls
// passes what remains of its budget.
func WithLimits(l Limits) Option {
	return &option{name: "WithLimits", scope: scopeNew | scopeExecute, apply: func(st *settings) error {
		if err := l.validate(); err != nil {
			return err
		}
		st.limits, st.hasLimits = l, true
		return nil
	}}
}

// WithRunID sets the run ID carried by every [StepResult] and [Event] of one
// execution. It applies to [Executor.Execute]. Without it the ID is empty.
func WithRunID(id string) Option {
	return &option{name: "WithRunID", scope: scopeExecute, apply: func(st *settings) error {
		st.runID = id
		return nil
	}}
}

// WithStream asks for streaming: agents that implement [StreamAgent] send
// their chunks to fn as they produce them. fn runs on the step's goroutine;
// its error stops the stream and fails the attempt. Chunks of a failed
// attempt that were already delivered are not taken back. It applies to
// [Executor.Execute].
func WithStream(fn func(chunk any) error) Option {
	return &option{name: "WithStream", scope: scopeExecute, apply: func(st *settings) error {
		if fn == nil {
			return errors.New("nil stream callback")
		}
		st.stream = fn
		return nil
	}}
}

// WithState attaches the run's [State]: agents read it with [StateFrom] and
// cache steps may key on its values ([WithCacheStateKeys]). It applies to
// [Executor.Execute].
func WithState(s *State) Option {
	return &option{name: "WithState", scope: scopeExecute, apply: func(st *settings) error {
		if s == nil {
			return errors.New("nil State")
		}
		st.state = s
		return nil
	}}
}
