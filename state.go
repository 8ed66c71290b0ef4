package caudal

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/internal/state"
)

// State is the value store of one run — the study's "context": what steps
// share besides their inputs and outputs. Keys are strings; values must
// round-trip through encoding/json so the run can be checkpointed
// ([State.MarshalJSON] fails naming the first key that cannot).
//
// Each parallel branch, loop iteration, map item and retried attempt runs
// on its own State, isolated from its parent's: nothing it does, nor any
// change to a value it got from [Get], reaches the parent until it is
// merged back.
//
// When a state is isolated for a parallel branch, a loop iteration or a map
// item, its values are deep-copied: a value with a method Clone() any by
// that method (a panic in it fails the step with a [*PanicError]),
// immutable values (numbers, strings, bools, times) not at all, other
// values by reflection (exported struct fields deeply, unexported ones
// shallowly).
//
// A State is safe for concurrent use. The zero State is not valid: use
// [NewState].
type State struct {
	s *state.Store
	// users counts the executions running on the state (WithState): each
	// after the first gets a handle of its own (attach).
	users atomic.Int32
}

// NewState returns a state holding a copy of initial (nil is an empty state).
// The values themselves are not copied.
func NewState(initial map[string]any) *State {
	m := make(map[string]any, len(initial))
	maps.Copy(m, initial)
	return &State{s: state.New(m)}
}

// Get returns the value at key as a T. It reports false when the key is
// absent or holds a value of another type, or s is nil (an execution
// without a state: [StateFrom] returns nil then).
func Get[T any](s *State, key string) (T, bool) {
	if s == nil || s.s == nil {
		var zero T
		return zero, false
	}
	v, ok := s.s.GetAs(s, key)
	t, isT := v.(T)
	return t, ok && isT
}

// Set stores v at key.
func (s *State) Set(key string, v any) { s.s.SetAs(s, key, v) }

// Delete removes key.
func (s *State) Delete(key string) { s.s.DeleteAs(s, key) }

// Len returns the number of keys.
func (s *State) Len() int { return s.s.Len() }

// All iterates over a snapshot of the state in key order; the state may be
// changed during the iteration.
func (s *State) All() iter.Seq2[string, any] {
	keys, vals := s.s.EntriesAs(s)
	return func(yield func(string, any) bool) {
		for i, k := range keys {
			if !yield(k, vals[i]) {
				return
			}
		}
	}
}

// MarshalJSON encodes the state as a JSON object. A value that cannot be
// encoded is an error naming its key.
func (s *State) MarshalJSON() (b []byte, err error) {
	s.s.View(func(m map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if _, err = json.Marshal(m[k]); err != nil {
				err = fmt.Errorf("caudal: state key %q: %w", k, err)
				return
			}
		}
		b, err = json.Marshal(m)
	})
	return b, err
}

// UnmarshalJSON replaces the state's contents with a JSON object.
func (s *State) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("caudal: state: %w", err)
	}
	if s.s == nil {
		s.s = state.New(m)
		return nil
	}
	s.s.ReplaceAs(s, m)
	return nil
}

// scope keeps one attempt's state writes apart, so that a failed
// attempt's can be discarded: a savepoint of the store's undo log, owned by
// the *State the attempt writes through — each execution's own, so that
// concurrent executions on one store undo only their own writes.
type scope struct {
	st   *State // the step's state; nil: none
	mark int
}

// beginScope starts the scope of an attempt on st (nil: none).
func beginScope(st *State) scope {
	if st == nil {
		return scope{}
	}
	return scope{st: st, mark: st.s.Savepoint(st)}
}

// end ends the scope, keeping the attempt's writes or discarding them.
func (sc scope) end(keep bool) {
	if sc.st != nil {
		sc.finish(keep)
	}
}

func (sc scope) finish(keep bool) {
	if keep {
		sc.st.s.Release(sc.st, sc.mark)
	} else {
		sc.st.s.Rollback(sc.st, sc.mark)
	}
}

// attach returns the State an execution runs on, given the caller's s:
// s itself, unless another execution is running on s — then a handle of
// its own on the same store, so that the two executions' attempts keep
// apart undo logs. detach must be called with the same s when the
// execution ends.
func (s *State) attach() *State {
	if s.users.Add(1) > 1 {
		return &State{s: s.s}
	}
	return s
}

func (s *State) detach() { s.users.Add(-1) }

// lookup returns the value at key, for reading only.
func (s *State) lookup(key string) (any, bool) { return s.s.Get(key) }

// fork returns an isolated child of s, made by iso; the child of a state
// that logs its changes for the journal logs its own.
func (s *State) fork(iso engine.Isolation) *State {
	child := iso.Fork(s.s)
	if s.s.Logging() && !child.Logging() {
		child.StartLog()
	}
	return &State{s: child}
}

// writesOf returns what child changed relative to s, its fork parent.
func (s *State) writesOf(iso engine.Isolation, child *State) []Write {
	return iso.Writes(s.s, child.s)
}

// apply applies writes to s.
func (s *State) apply(writes []Write) error { return s.s.Apply(writes) }

// mergeFrom applies what child changed relative to s.
func (s *State) mergeFrom(iso engine.Isolation, child *State) error {
	return s.apply(s.writesOf(iso, child))
}

// writesSince returns the changes logged since mark, nil for a nil state.
func (s *State) writesSince(mark int) []Write {
	if s == nil {
		return nil
	}
	return s.s.LogSince(mark)
}

// mergeOutput deep-merges a step's output into s ([UpdatesContext]).
func (s *State) mergeOutput(out any) error {
	m, err := outputMap(out)
	if err != nil {
		return err
	}
	if err := s.s.Merge(m); err != nil {
		return fmt.Errorf("UpdatesContext: %w", err)
	}
	return nil
}

// outputMap returns out as a map: as is, or a struct through its JSON form.
func outputMap(out any) (map[string]any, error) {
	if m, ok := out.(map[string]any); ok {
		return deepcopy.CopyMap(m), nil // the state must not alias the output
	}
	v := reflect.ValueOf(out)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct && v.Kind() != reflect.Map {
		return nil, fmt.Errorf("UpdatesContext: output of type %T is not a map or a struct", out)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("UpdatesContext: output of type %T: %w", out, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("UpdatesContext: output of type %T is not a JSON object: %w", out, err)
	}
	return m, nil
}

func withState(ctx context.Context, s *State) context.Context {
	return context.WithValue(ctx, stateKey{}, s)
}

type stateKey struct{}

// StateFrom returns the run's [State] from an agent's context, or nil when
// the execution has none ([WithState]).
func StateFrom(ctx context.Context) *State {
	s, _ := ctx.Value(stateKey{}).(*State)
	return s
}

// withFeedback returns the input of a retry after a failed validation.
func withFeedback(in any, feedback string) any {
	switch v := in.(type) {
	case map[string]any:
		m := make(map[string]any, len(v)+1)
		maps.Copy(m, v)
		if prev, ok := v["feedback"].(string); ok && prev != "" {
			feedback = prev + "\n" + feedback
		}
		m["feedback"] = feedback
		return m
	case string:
		return v + "\n" + feedback
	}
	return in
}
