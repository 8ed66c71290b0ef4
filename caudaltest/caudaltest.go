package caudaltest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/caudal-go/caudal"
)

// Recorder is a [caudal.Sink] that keeps a copy of every event it receives.
// The zero Recorder is ready to use; it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex // protects events
	events []caudal.Event
}

var _ caudal.Sink = (*Recorder)(nil)

// Record implements [caudal.Sink]: it stores a copy of e.
func (r *Recorder) Record(_ context.Context, e *caudal.Event) {
	r.mu.Lock()
	r.events = append(r.events, *e)
	r.mu.Unlock()
}

// Events returns a copy of the events recorded so far, in arrival order.
func (r *Recorder) Events() []caudal.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]caudal.Event(nil), r.events...)
}

// Kinds returns the kinds of the events recorded so far, in arrival order.
func (r *Recorder) Kinds() []caudal.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds := make([]caudal.EventKind, len(r.events))
	for i, e := range r.events {
		kinds[i] = e.Kind
	}
	return kinds
}

// Filter returns the recorded events of kind k.
func (r *Recorder) Filter(k caudal.EventKind) []caudal.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []caudal.Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// Reset forgets every recorded event.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}

// Step is one canned answer of a [Script]: the reply and the error to return.
type Step struct {
	Reply caudal.Reply
	Err   error
}

// Script is a [caudal.Agent] that answers call i with Steps[i]; once the
// steps run out it repeats the last one. Calls counts the calls made. A
// Script must not be copied after first use; it is safe for concurrent use.
type Script struct {
	Steps []Step
	calls atomic.Int64
}

var _ caudal.Agent = (*Script)(nil)

// Run implements [caudal.Agent].
func (s *Script) Run(ctx context.Context, _ any) (caudal.Reply, error) {
	i := int(s.calls.Add(1)) - 1
	if err := ctx.Err(); err != nil {
		return caudal.Reply{}, context.Cause(ctx)
	}
	if len(s.Steps) == 0 {
		return caudal.Reply{}, nil
	}
	st := s.Steps[min(i, len(s.Steps)-1)]
	return st.Reply, st.Err
}

// Calls returns how many times Run was called.
func (s *Script) Calls() int { return int(s.calls.Load()) }
