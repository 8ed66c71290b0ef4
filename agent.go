package caudal

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
)

// Agent is the unit of work an agent step runs: an LLM call, a tool, a plain
// function. Run receives the step's input (after prompt processors) and the
// attempt's context, which carries the attempt's deadline when the step has
// a [WithTimeout] and the run's [State]. Run should return promptly once ctx
// is done: timeouts are cooperative. ctx ends when the attempt does, so the
// output must not read lazily from it afterwards (an unread response body,
// a stream): read what the output needs before returning it. [Attempt],
// [PreviousError] and [Feedback] tell a retried attempt, or a fallback,
// what happened before it; [Permanent] and [RetryAfter] tell the step
// whether, and when, to try again.
//
// The usage a Reply reports is checked: a cost that is not finite, a
// negative count, or tokens whose sum overflows int64 fail the attempt
// without retry, and book nothing.
//
// Implementations must be safe for concurrent use when a step runs on
// several goroutines (parallel branches, concurrent Executes).
type Agent interface {
	Run(ctx context.Context, in any) (Reply, error)
}

// StreamAgent is an [Agent] that can also deliver its output in chunks. When
// [Executor.Execute] is given [WithStream], Stream is called instead of Run;
// each chunk passed to emit reaches the caller's callback, and emit returns
// the callback's error, after which Stream should stop. The step's output is
// Reply.Output when it is non-nil, otherwise the chunks joined: strings
// concatenated, byte slices concatenated, anything else as a []any.
type StreamAgent interface {
	Agent
	Stream(ctx context.Context, in any, emit func(chunk any) error) (Reply, error)
}

// Reply is what an agent returns: its output and what producing it cost.
type Reply struct {
	Output any
	Usage  Usage
}

// AgentFunc adapts an ordinary function to the [Agent] interface.
type AgentFunc func(ctx context.Context, in any) (Reply, error)

// Run calls f(ctx, in).
func (f AgentFunc) Run(ctx context.Context, in any) (Reply, error) { return f(ctx, in) }

var _ Agent = AgentFunc(nil)

// funcAgent runs a typed function. It records the function's types so that
// [Build] can check the wiring between typed steps.
type funcAgent[I, O any] struct {
	name string
	fn   func(context.Context, I) (O, error)
}

func (a funcAgent[I, O]) Run(ctx context.Context, in any) (Reply, error) {
	v, ok := in.(I)
	if !ok && in != nil {
		if v, ok = fromJSONValue[I](in); !ok {
			return Reply{}, &typeError{Step: a.name, Want: reflect.TypeFor[I]().String(), Got: reflect.TypeOf(in).String()}
		}
	}
	out, err := a.fn(ctx, v)
	return Reply{Output: out}, err
}

// fromJSONValue converts a decoded JSON value — what a value becomes after a
// snapshot's round trip through encoding/json — into an I, when it encodes
// to JSON that decodes into one.
func fromJSONValue[I any](in any) (I, bool) {
	var v I
	switch in.(type) {
	case map[string]any, []any, float64, string, bool, json.Number:
	default:
		return v, false
	}
	b, err := json.Marshal(in)
	if err != nil {
		return v, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, false
	}
	return v, true
}

// Func makes an agent step from a typed function. A nil input becomes the
// zero I; a decoded JSON value (a map[string]any, []any, float64, string or
// bool, as inputs become after a [Snapshot] went through encoding/json) is
// converted to I through its JSON form when it fits exactly; any other input
// of another type fails the attempt with a [*typeError] (matching
// [ErrTypeMismatch]). The types I and O are recorded so that
// sequences of typed steps are checked by [Build].
//
// Func panics if fn is nil.
func Func[I, O any](name string, fn func(ctx context.Context, in I) (O, error), opts ...StepOption) Step {
	if fn == nil {
		panic("caudal: Func " + name + ": nil func")
	}
	s := AgentStep(name, funcAgent[I, O]{name: name, fn: fn}, opts...)
	s.def.inType = reflect.TypeFor[I]()
	s.def.outType = reflect.TypeFor[O]()
	return s
}
