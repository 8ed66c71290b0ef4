package runner

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/caudal-go/caudal"
)

// MemoryStore is a [Store] that keeps runs in memory, for tests and for
// processes that need no durability beyond their own life. Records are
// kept as their JSON encodings, as a database keeps them: what Journal
// returns is what a persistent store would return (values as their JSON
// forms). Make one with [NewMemoryStore]; the zero value is not usable. It
// is safe for concurrent use. Its cost per record is measured by
// BenchmarkCheckpoint/store=memory.
type MemoryStore struct {
	now func() time.Time // the store's clock

	mu     sync.Mutex // protects runs and closed
	runs   map[string]*memRun
	closed bool
}

// memRun is a stored run: a private copy and its journal's encoded records.
type memRun struct {
	run     Run
	journal [][]byte
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{now: time.Now, runs: make(map[string]*memRun)}
}

// errClosed is the error of a closed store's methods.
var errClosed = fmt.Errorf("runner: memory store is closed")

// lock locks the store, or reports that it is closed or ctx is done.
func (s *MemoryStore) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	return nil
}

// Create inserts run, which must have an ID no stored run has
// ([ErrRunExists] otherwise).
func (s *MemoryStore) Create(ctx context.Context, run *Run) error {
	if run == nil || run.ID == "" {
		return fmt.Errorf("runner: Create: a run needs an ID")
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.runs[run.ID]; ok {
		return fmt.Errorf("runner: Create: run %q: %w", run.ID, ErrRunExists)
	}
	c := cloneRun(run)
	now := s.now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	s.runs[run.ID] = &memRun{run: *c}
	return nil
}

// Get returns a copy of the run with the ID, or [ErrNotFound].
func (s *MemoryStore) Get(ctx context.Context, id string) (*Run, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	m, ok := s.runs[id]
	if !ok {
		return nil, fmt.Errorf("runner: run %q: %w", id, ErrNotFound)
	}
	return cloneRun(&m.run), nil
}

// holds reports whether owner holds m's lease. A lease that expired is
// still held until another owner claims the run.
func holds(m *memRun, owner string) bool {
	return owner != "" && m.run.Owner == owner
}

// Append adds rec, encoded as JSON, to run id's journal.
func (s *MemoryStore) Append(ctx context.Context, id, owner string, rec caudal.Record) (int64, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("runner: run %q: the record of step %q does not encode: %w", id, rec.Path, err)
	}
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	m, ok := s.runs[id]
	switch {
	case !ok:
		return 0, fmt.Errorf("runner: run %q: %w", id, ErrNotFound)
	case !holds(m, owner):
		return 0, fmt.Errorf("runner: run %q: append by %q: %w", id, owner, ErrLeaseLost)
	}
	m.journal = append(m.journal, b)
	return int64(len(m.journal)), nil
}

// Journal returns run id's records in Seq order; a record that does not
// decode is [ErrCorrupt].
func (s *MemoryStore) Journal(ctx context.Context, id string) ([]Entry, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	m, ok := s.runs[id]
	var raw [][]byte
	if ok {
		raw = slices.Clone(m.journal)
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("runner: run %q: %w", id, ErrNotFound)
	}
	out := make([]Entry, len(raw))
	for i, b := range raw {
		out[i].Seq = int64(i + 1)
		rec, err := DecodeRecord(b)
		if err != nil {
			return nil, fmt.Errorf("runner: run %q: record %d: %w: %w", id, i+1, ErrCorrupt, err)
		}
		out[i].Record = rec
	}
	return out, nil
}

// Update writes run's Status, FinalState, Output, Usage, Error, Pause and
// UpdatedAt (the store's clock when zero).
func (s *MemoryStore) Update(ctx context.Context, run *Run, owner string) error {
	if run == nil {
		return fmt.Errorf("runner: Update: nil run")
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	m, ok := s.runs[run.ID]
	switch {
	case !ok:
		return fmt.Errorf("runner: run %q: %w", run.ID, ErrNotFound)
	case !holds(m, owner):
		return fmt.Errorf("runner: run %q: update by %q: %w", run.ID, owner, ErrLeaseLost)
	}
	c := cloneRun(run)
	m.run.Status, m.run.FinalState, m.run.Output = c.Status, c.FinalState, c.Output
	m.run.Usage, m.run.Error, m.run.Pause = c.Usage, c.Error, c.Pause
	m.run.UpdatedAt = c.UpdatedAt
	if m.run.UpdatedAt.IsZero() {
		m.run.UpdatedAt = s.now()
	}
	return nil
}

// Claim gives owner run id's lease for ttl (see [Store.Claim]).
func (s *MemoryStore) Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...Status) (*Run, error) {
	if owner == "" {
		return nil, fmt.Errorf("runner: Claim: run %q: an empty owner", id)
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	m, ok := s.runs[id]
	if !ok {
		return nil, fmt.Errorf("runner: run %q: %w", id, ErrNotFound)
	}
	now := s.now()
	if m.run.Owner != "" && m.run.Owner != owner && now.Before(m.run.LeaseUntil) {
		return nil, fmt.Errorf("runner: run %q: held by %q: %w", id, m.run.Owner, ErrRunLocked)
	}
	if len(statuses) > 0 && !slices.Contains(statuses, m.run.Status) { // none: any status, as the contract says
		return nil, fmt.Errorf("runner: run %q is %s, want one of %v: %w", id, m.run.Status, statuses, ErrWrongStatus)
	}
	m.run.Owner, m.run.LeaseUntil = owner, now.Add(ttl)
	return cloneRun(&m.run), nil
}

// Heartbeat extends owner's lease on run id by ttl from now.
func (s *MemoryStore) Heartbeat(ctx context.Context, id, owner string, ttl time.Duration) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	m, ok := s.runs[id]
	switch {
	case !ok:
		return fmt.Errorf("runner: run %q: %w", id, ErrNotFound)
	case !holds(m, owner):
		return fmt.Errorf("runner: run %q: heartbeat by %q: %w", id, owner, ErrLeaseLost)
	}
	m.run.LeaseUntil = s.now().Add(ttl)
	return nil
}

// Release gives up owner's lease on run id.
func (s *MemoryStore) Release(ctx context.Context, id, owner string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if m, ok := s.runs[id]; ok && holds(m, owner) {
		m.run.Owner, m.run.LeaseUntil = "", time.Time{}
	}
	return nil
}

// Orphans returns the IDs of running runs whose lease expired (or that
// nobody holds), oldest first, at most limit (0: all).
func (s *MemoryStore) Orphans(ctx context.Context, limit int) ([]string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	now := s.now()
	var found []*Run
	for _, m := range s.runs {
		if m.run.Status == StatusRunning && (m.run.Owner == "" || !now.Before(m.run.LeaseUntil)) {
			found = append(found, &m.run)
		}
	}
	slices.SortFunc(found, func(a, b *Run) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(found) > limit {
		found = found[:limit]
	}
	ids := make([]string, len(found))
	for i, r := range found {
		ids[i] = r.ID
	}
	s.mu.Unlock()
	return ids, nil
}

// List returns copies of the runs f selects, newest first.
func (s *MemoryStore) List(ctx context.Context, f Filter) ([]*Run, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	var out []*Run
	for _, m := range s.runs {
		if matches(&m.run, f) {
			out = append(out, cloneRun(&m.run))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *Run) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func matches(r *Run, f Filter) bool {
	return (len(f.Status) == 0 || slices.Contains(f.Status, r.Status)) &&
		(f.Pipeline == "" || f.Pipeline == r.Pipeline) &&
		(f.After.IsZero() || !r.CreatedAt.Before(f.After)) &&
		(f.Before.IsZero() || r.CreatedAt.Before(f.Before))
}

// Delete removes run id and its journal.
func (s *MemoryStore) Delete(ctx context.Context, id string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.runs[id]; !ok {
		return fmt.Errorf("runner: run %q: %w", id, ErrNotFound)
	}
	delete(s.runs, id)
	return nil
}

// DeleteBefore removes the runs in one of statuses (none: every status but
// running) last updated before t, and returns how many.
func (s *MemoryStore) DeleteBefore(ctx context.Context, t time.Time, statuses ...Status) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for id, m := range s.runs {
		ok := slices.Contains(statuses, m.run.Status)
		if len(statuses) == 0 {
			ok = m.run.Status != StatusRunning
		}
		if ok && m.run.UpdatedAt.Before(t) {
			delete(s.runs, id)
			n++
		}
	}
	return n, nil
}

// Close drops every run; the store's methods fail afterwards. It is
// idempotent.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.runs = true, nil
	return nil
}

// cloneRun returns a copy of r that shares nothing with it.
func cloneRun(r *Run) *Run {
	c := *r
	c.Input, c.State, c.FinalState, c.Output = bytes.Clone(r.Input), bytes.Clone(r.State), bytes.Clone(r.FinalState), bytes.Clone(r.Output)
	if r.Pause != nil {
		p := *r.Pause
		p.Schema, p.Snapshot = bytes.Clone(p.Schema), bytes.Clone(p.Snapshot)
		c.Pause = &p
	}
	return &c
}
