package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// Recorder receives the executor's events. E is the event type of the
// caller (the engine cannot import it). Implementations must be safe for
// concurrent use and must not retain e.
type Recorder[E any] interface {
	Record(ctx context.Context, e *E)
}

// Fanout is the baseline [Recorder]: it calls every sink synchronously, in
// order, on the calling goroutine.
type Fanout[E any] []Recorder[E]

// Record passes e to every sink in turn.
func (f Fanout[E]) Record(ctx context.Context, e *E) {
	for _, s := range f {
		s.Record(ctx, e)
	}
}

// Keyer derives the cache key of a step execution from the step's
// build-time fingerprint, its input and the selected state values.
type Keyer interface {
	Key(fingerprint string, input any, state map[string]any) (string, error)
}

// CanonicalKeyer is the baseline [Keyer]: the SHA-256 of the JSON encoding
// of {fingerprint, input, state}, hex-encoded. encoding/json sorts map keys,
// so equal values give equal keys whatever their insertion order.
type CanonicalKeyer struct{}

type keyRecord struct {
	Step  string         `json:"step"`
	Input any            `json:"input"`
	State map[string]any `json:"state,omitempty"`
}

// Key implements [Keyer]. It fails when the input or a state value cannot be
// encoded as JSON.
func (CanonicalKeyer) Key(fingerprint string, input any, state map[string]any) (string, error) {
	b, err := json.Marshal(keyRecord{Step: fingerprint, Input: input, State: state})
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Sharer decides how a cached result crosses the cache boundary: Store
// prepares a result for the cache, Load prepares a cached result for a
// caller. The baseline deep-copies both ways so no caller can mutate what
// another will read.
type Sharer[R any] interface {
	Store(r R) R
	Load(r R) R
}

// Allocator makes the per-execution containers of a result.
type Allocator[R any] interface {
	Metadata(hint int) map[string]any
	Children(n int) []R
}

// Fresh is the baseline [Allocator]: every container is a new allocation.
type Fresh[R any] struct{}

// Metadata returns a new map with room for hint entries.
func (Fresh[R]) Metadata(hint int) map[string]any { return make(map[string]any, hint) }

// Children returns a new slice of length 0 and capacity n.
func (Fresh[R]) Children(n int) []R { return make([]R, 0, n) }

// Isolation gives parallel branches, loop iterations, map items and retried
// attempts their own state, and finds what each changed.
type Isolation interface {
	// Fork returns a state for a child that the child may change without the
	// parent seeing it.
	Fork(parent map[string]any) map[string]any
	// Writes returns what child changed relative to parent, its fork origin.
	Writes(parent, child map[string]any) []statemerge.Write
}

// DeepCopy is the baseline [Isolation]: a deep copy per fork and a
// full-tree diff per merge.
type DeepCopy struct{}

// Fork deep-copies parent.
func (DeepCopy) Fork(parent map[string]any) map[string]any { return deepcopy.CopyMap(parent) }

// Writes diffs the whole trees.
func (DeepCopy) Writes(parent, child map[string]any) []statemerge.Write {
	return statemerge.Diff(parent, child)
}

// FanOut decides how many branches of a parallel step (or items of a
// parallel map) run at once.
type FanOut interface {
	// Workers returns the number of workers for pending branches under the
	// step's configured limit.
	Workers(limit, pending int) int
}

// Fixed is the baseline [FanOut]: the configured limit, always.
type Fixed struct{}

// Workers returns min(limit, pending).
func (Fixed) Workers(limit, pending int) int { return min(limit, pending) }
