package caudal

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// Cloner is implemented by state values that copy themselves. When a state
// is isolated for a parallel branch, a loop iteration or a retry, values are
// deep-copied — a Cloner by its Clone method, immutable values (numbers,
// strings, bools, times) not at all, other values by reflection (exported
// struct fields deeply, unexported ones shallowly).
type Cloner interface {
	Clone() any
}

var _ deepcopy.Cloner = Cloner(nil)

// State is the value store of one run — the study's "context": what steps
// share besides their inputs and outputs. Keys are strings; values must
// round-trip through encoding/json so the run can be checkpointed
// ([State.MarshalJSON] fails naming the first key that cannot).
//
// A State is safe for concurrent use. The zero State is not valid: use
// [NewState].
type State struct {
	mu sync.RWMutex // protects m
	m  map[string]any
}

// NewState returns a state holding a copy of initial (nil is an empty state).
// The values themselves are not copied.
func NewState(initial map[string]any) *State {
	m := make(map[string]any, len(initial))
	maps.Copy(m, initial)
	return &State{m: m}
}

// Get returns the value at key as a T. It reports false when the key is
// absent or holds a value of another type.
func Get[T any](s *State, key string) (T, bool) {
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	t, isT := v.(T)
	return t, ok && isT
}

// Set stores v at key.
func (s *State) Set(key string, v any) {
	s.mu.Lock()
	s.m[key] = v
	s.mu.Unlock()
}

// Delete removes key.
func (s *State) Delete(key string) {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// Len returns the number of keys.
func (s *State) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// All iterates over a snapshot of the state in key order; the state may be
// changed during the iteration.
func (s *State) All() iter.Seq2[string, any] {
	s.mu.RLock()
	snap := maps.Clone(s.m)
	s.mu.RUnlock()
	return func(yield func(string, any) bool) {
		for _, k := range slices.Sorted(maps.Keys(snap)) {
			if !yield(k, snap[k]) {
				return
			}
		}
	}
}

// MarshalJSON encodes the state as a JSON object. A value that cannot be
// encoded is an error naming its key.
func (s *State) MarshalJSON() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range slices.Sorted(maps.Keys(s.m)) {
		if _, err := json.Marshal(s.m[k]); err != nil {
			return nil, fmt.Errorf("caudal: state key %q: %w", k, err)
		}
	}
	return json.Marshal(s.m)
}

// UnmarshalJSON replaces the state's contents with a JSON object.
func (s *State) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("caudal: state: %w", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	return nil
}

// values returns the values of keys that are present, or nil.
func (s *State) values(keys []string) map[string]any {
	if s == nil || len(keys) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		if v, ok := s.m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// get returns the value at key.
func (s *State) get(key string) (any, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[key]
	return v, ok
}

// fork returns an isolated copy of s, made by iso.
func (s *State) fork(iso engine.Isolation) *State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &State{m: iso.Fork(s.m)}
}

// writesSince returns what child changed relative to s, its fork parent.
func (s *State) writesSince(iso engine.Isolation, child *State) []statemerge.Write {
	s.mu.RLock()
	defer s.mu.RUnlock()
	child.mu.RLock()
	defer child.mu.RUnlock()
	return iso.Writes(s.m, child.m)
}

// apply applies writes to s.
func (s *State) apply(writes []statemerge.Write) {
	if len(writes) == 0 {
		return
	}
	s.mu.Lock()
	statemerge.Apply(s.m, writes)
	s.mu.Unlock()
}

// mergeFrom applies what child changed relative to s.
func (s *State) mergeFrom(iso engine.Isolation, child *State) { s.apply(s.writesSince(iso, child)) }

// snapshot returns a deep copy of the contents.
func (s *State) snapshot() map[string]any {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return deepcopy.CopyMap(s.m)
}

// replace sets the contents to m.
func (s *State) replace(m map[string]any) {
	if m == nil {
		m = map[string]any{}
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

// mergeOutput deep-merges a step's output into s ([UpdatesContext]).
func (s *State) mergeOutput(out any) error {
	m, err := outputMap(out)
	if err != nil {
		return err
	}
	s.mu.Lock()
	deepMerge(s.m, m)
	s.mu.Unlock()
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

// deepMerge merges src into dst: nested maps merged, other values replaced.
func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		sm, srcIsMap := v.(map[string]any)
		dm, dstIsMap := dst[k].(map[string]any)
		if srcIsMap && dstIsMap {
			deepMerge(dm, sm)
			continue
		}
		dst[k] = v
	}
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

type feedbackKey struct{}

// Feedback returns, inside an agent, processor or validator, the feedback
// of the previous attempt's failed validation, or "" on a first attempt or
// after a failure of another kind. The attempt's input carries it too: a
// map[string]any input is copied with the text at key "feedback", a string
// input gets it appended on a new line; the caller's value is never changed.
func Feedback(ctx context.Context) string {
	s, _ := ctx.Value(feedbackKey{}).(string)
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
