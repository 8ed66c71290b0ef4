package state

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// Store is the value store of one run, or of one isolated part of it (a
// parallel branch, a loop iteration, a map item, an attempt). It is a
// map[string]any safe for concurrent use, in one of two representations:
//
//   - flat: one map, which Get hands values of by reference;
//   - overlay: a private top layer over frozen layers shared with other
//     stores. [Store.Fork] makes one in O(1); values read from a shared
//     layer are copied into the top layer first (copy on read), so nothing
//     a store hands out can change what another store sees.
//
// A store may also log every change it makes ([Store.StartLog]), including
// in-place changes to values it handed out, for a run's journal, and undo
// every change an owner made since a savepoint ([Store.Savepoint]), for a
// failed attempt: the calls tagged with an owner (GetAs, SetAs, …) are
// that owner's, the others (Get, Set, …) owner nil's.
//
// A caller may change a mutable value [Store.Get] or [Store.Entries] handed
// out in place until the store is next forked or its log read
// ([Store.Fork], [Store.LogLen], [Store.LogSince]), and not concurrently
// with any of them: from then on the value may be shared with other stores
// or no longer watched, and must only be read. The values a store is given
// (by [New], [Store.Set], [Store.Apply], [Store.Merge], [Store.Replace])
// belong to it from then on, and one mutable value must not be stored at two
// keys: a fork or the log may then treat them as two values. A change in
// place is undone by a rollback only if the value was handed out to the
// savepoint's owner after the savepoint started ([Store.Savepoint]).
//
// A Store is safe for concurrent use, and releases its lock when user code
// it runs panics (a value's Clone, View's callback). The zero Store is not
// valid: use [New]. BenchmarkFork and BenchmarkLoopIteration measure a
// fork, and a loop iteration's fork and merge, against a deep copy's;
// BenchmarkSavepoint measures an attempt's savepoint and rollback.
type Store struct {
	mu    sync.RWMutex        // protects every field below
	top   map[string]any      // the store's own layer
	gone  map[string]struct{} // keys removed in this layer that a frozen layer may hold
	below *layer              // frozen layers under top; nil for a flat store

	// origin is the layer Fork made this store from, nil for a store that
	// was not forked; touched holds the keys changed, removed or handed out
	// since, whose writes [Store.Written] reports.
	origin  *layer
	touched map[string]struct{}

	// Logging ([Store.StartLog]): every change, in order. before holds,
	// for each key whose mutable value was handed out since the last
	// flush, the value the log gives it: its value when handed out, with
	// the writes logged since applied. A flush logs the diff from it to
	// the value now, that is, what changed in place.
	logging bool
	// logStarts counts the StartLog calls not yet undone by StopLog (an
	// int32, next to logging, keeps a Store, which Fork allocates, the size
	// it was before sp).
	logStarts int32
	log       []statemerge.Write
	before    map[string]before

	// sp lists the active savepoints ([Store.Savepoint]), one entry per
	// owner with any; nil when none is active: the store then neither
	// copies nor records anything for them.
	sp *savepoints
}

// before is a noted value as the log gives it.
type before struct {
	v   any
	ok  bool // false: the log gives the key no value
	own bool // v is the note's own copy, which record may change
}

// layer is a frozen map: it is never written again once made, so stores
// share it without locks.
type layer struct {
	vals  map[string]any
	gone  map[string]struct{} // keys a layer below may hold that this one removed
	below *layer
}

func (l *layer) lookup(key string) (any, bool) {
	for ; l != nil; l = l.below {
		if v, ok := l.vals[key]; ok {
			return v, true
		}
		if _, ok := l.gone[key]; ok {
			return nil, false
		}
	}
	return nil, false
}

func (l *layer) size() int { return len(l.vals) + len(l.gone) }

// view fills m with the merged contents of l and the layers below it.
func (l *layer) view(m map[string]any) {
	var chain []*layer
	for ; l != nil; l = l.below {
		chain = append(chain, l)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		for k := range chain[i].gone {
			delete(m, k)
		}
		maps.Copy(m, chain[i].vals)
	}
}

// New returns a flat store holding m, which it owns from then on (nil is
// an empty store).
func New(m map[string]any) *Store {
	if m == nil {
		m = make(map[string]any)
	}
	return &Store{top: m}
}

// Get returns the value at key. A flat store returns the value it holds;
// an overlay returns a private copy of a mutable value it reads from a
// shared layer, which it keeps, so the caller may change it in place (see
// [Store] for how long).
func (s *Store) Get(key string) (any, bool) { return s.GetAs(nil, key) }

// GetAs is [Store.Get] for owner ([Store.Savepoint]): owner's active
// savepoints, if any, save the value handed out, so that their rollback
// undoes owner's in-place changes to it.
func (s *Store) GetAs(owner any, key string) (any, bool) {
	s.mu.RLock()
	if s.below == nil && !s.logging && s.sp == nil { // the common case: nothing to copy or note
		v, ok := s.top[key]
		s.mu.RUnlock()
		return v, ok
	}
	v, ok, done := s.peek(owner, key)
	s.mu.RUnlock()
	if done {
		return v, ok
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handOut(owner, key)
}

// peek returns the value at key, and done, when handing it out to owner
// needs neither a copy nor a note: the value is immutable, or s's own, s
// does not log, and owner's innermost savepoint, if any, saved it
// already. s.mu is held.
func (s *Store) peek(owner any, key string) (v any, ok, done bool) {
	v, ok = s.lookup(key)
	if !ok || deepcopy.Immutable(v) {
		return v, ok, true
	}
	if s.logging {
		return nil, false, false
	}
	if s.sp != nil {
		if sp := s.spOf(owner); sp != nil && !sp.savedNow(key) {
			return nil, false, false
		}
	}
	_, own := s.top[key]
	return v, true, own
}

// handOut returns the value at key for owner, who may change it in place:
// an overlay copies it from a shared layer, a logging store notes its value
// so that a later flush sees what changed, owner's active savepoint saves
// it. s.mu is held for writing.
func (s *Store) handOut(owner any, key string) (any, bool) {
	var sp *savepoints
	if s.sp != nil {
		sp = s.spOf(owner)
	}
	if v, ok := s.top[key]; ok {
		if !deepcopy.Immutable(v) {
			if s.logging {
				s.noteBefore(key, v, true)
			}
			if sp != nil {
				s.save(sp, key, true, false)
			}
		}
		return v, true
	}
	if s.below == nil {
		return nil, false
	}
	if _, ok := s.gone[key]; ok {
		return nil, false
	}
	v, ok := s.below.lookup(key)
	if !ok || deepcopy.Immutable(v) {
		return v, ok
	}
	if s.logging {
		s.noteBefore(key, v, false) // a frozen value cannot change: no copy needed
	}
	if sp != nil {
		s.save(sp, key, true, false) // nor here
	}
	c := deepcopy.Copy(v)
	s.top[key] = c
	s.touch(key)
	return c, true
}

// noteBefore remembers key's value before the caller may change it in
// place, once per flush; private values are copied, shared ones are frozen.
func (s *Store) noteBefore(key string, v any, private bool) {
	if _, ok := s.before[key]; ok {
		return
	}
	if s.before == nil {
		s.before = make(map[string]before)
	}
	if private {
		v = deepcopy.Copy(v)
	}
	s.before[key] = before{v: v, ok: true, own: private}
}

// record logs a copy of w, a change just made, and applies it to the noted
// value at its key, if any. The log holds copies: a value written may be
// changed in place later, and even be replaced after that by one the flush
// diffs leaf by leaf against the note, which must then be what a replay of
// the log gives. s.mu is held for writing.
func (s *Store) record(w statemerge.Write) {
	s.log = append(s.log, statemerge.Write{Path: slices.Clone(w.Path), Value: deepcopy.Copy(w.Value), Deleted: w.Deleted})
	key := w.Path[0]
	b, ok := s.before[key]
	if !ok {
		return
	}
	if len(w.Path) == 1 {
		s.before[key] = before{v: deepcopy.Copy(w.Value), ok: !w.Deleted, own: true}
		return
	}
	one := make(map[string]any, 1)
	if b.ok {
		if !b.own {
			b.v = deepcopy.Copy(b.v) // a frozen value, never to be changed
		}
		one[key] = b.v
	}
	statemerge.Apply(one, []statemerge.Write{{Path: w.Path, Value: deepcopy.Copy(w.Value), Deleted: w.Deleted}})
	b.v, b.ok = one[key]
	b.own = true
	s.before[key] = b
}

// lookup returns the value at key without copying or noting it.
func (s *Store) lookup(key string) (any, bool) {
	if v, ok := s.top[key]; ok {
		return v, true
	}
	if s.below == nil {
		return nil, false
	}
	if _, ok := s.gone[key]; ok {
		return nil, false
	}
	return s.below.lookup(key)
}

func (s *Store) touch(key string) {
	if s.origin == nil {
		return
	}
	if s.touched == nil {
		s.touched = make(map[string]struct{})
	}
	s.touched[key] = struct{}{}
}

// Set stores v at key; v belongs to the store from then on.
func (s *Store) Set(key string, v any) { s.SetAs(nil, key, v) }

// SetAs is [Store.Set] for owner ([Store.Savepoint]).
func (s *Store) SetAs(owner any, key string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sp != nil {
		s.beforeWrite(owner, key)
	}
	s.set(key, v)
	if s.logging {
		s.record(statemerge.Write{Path: []string{key}, Value: v})
	}
}

func (s *Store) set(key string, v any) {
	s.top[key] = v
	if s.gone != nil {
		delete(s.gone, key)
	}
	s.touch(key)
}

// Delete removes key.
func (s *Store) Delete(key string) { s.DeleteAs(nil, key) }

// DeleteAs is [Store.Delete] for owner ([Store.Savepoint]).
func (s *Store) DeleteAs(owner any, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sp != nil {
		s.beforeWrite(owner, key)
	}
	s.remove(key)
	if s.logging {
		s.record(statemerge.Write{Path: []string{key}, Deleted: true})
	}
}

func (s *Store) remove(key string) {
	delete(s.top, key)
	if s.below != nil {
		if _, ok := s.below.lookup(key); ok {
			if s.gone == nil {
				s.gone = make(map[string]struct{})
			}
			s.gone[key] = struct{}{}
		}
	}
	s.touch(key)
}

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.below == nil {
		return len(s.top)
	}
	return len(s.viewLocked())
}

// viewLocked returns the merged contents: the top map itself for a flat
// store, a new map otherwise. s.mu is held.
func (s *Store) viewLocked() map[string]any {
	if s.below == nil {
		return s.top
	}
	m := make(map[string]any)
	s.below.view(m)
	for k := range s.gone {
		delete(m, k)
	}
	maps.Copy(m, s.top)
	return m
}

// View calls fn with the store's contents, under its read lock: fn must
// neither change m nor keep it, nor any value in it, past its return, nor
// call back into s for writing.
func (s *Store) View(fn func(m map[string]any)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.viewLocked())
}

// Entries returns the keys in order and their values as [Store.Get] hands
// them out.
func (s *Store) Entries() ([]string, []any) { return s.EntriesAs(nil) }

// EntriesAs is [Store.Entries] for owner ([Store.Savepoint]): the values
// are handed out as [Store.GetAs] hands them out.
func (s *Store) EntriesAs(owner any) ([]string, []any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Sorted(maps.Keys(s.viewLocked()))
	vals := make([]any, len(keys))
	for i, k := range keys {
		vals[i], _ = s.handOut(owner, k)
	}
	return keys, vals
}

// Values returns the values at keys that are present, or nil when keys is
// empty, for reading only (a cache key, say): they are not copied.
func (s *Store) Values(keys []string) map[string]any {
	if len(keys) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		if v, ok := s.lookup(k); ok {
			out[k] = v
		}
	}
	return out
}

// Copy returns a deep copy of the contents.
func (s *Store) Copy() map[string]any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return deepcopy.CopyMap(s.viewLocked())
}

// Replace sets the contents to m, which the store owns from then on.
func (s *Store) Replace(m map[string]any) { s.ReplaceAs(nil, m) }

// ReplaceAs is [Store.Replace] for owner ([Store.Savepoint]): a write of
// every key.
func (s *Store) ReplaceAs(owner any, m map[string]any) {
	if m == nil {
		m = make(map[string]any)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logging {
		s.flush()
		s.log = append(s.log, replaceWrites(s.viewLocked(), m)...)
	}
	if s.sp != nil {
		if sp := s.spOf(owner); sp != nil {
			r := &replaced{top: s.top, gone: s.gone, below: s.below, touched: maps.Clone(s.touched)}
			sp.undo = append(sp.undo, undoEntry{replaced: r, write: true, prev: sp.lastReplace})
			sp.lastReplace = len(sp.undo)
		}
		s.wroteAll(owner)
	}
	if s.origin != nil {
		was := make(map[string]any)
		s.origin.view(was)
		for k := range was {
			s.touch(k)
		}
		for k := range m {
			s.touch(k)
		}
	}
	s.top, s.gone, s.below = m, nil, nil
}

// replaceWrites returns the writes that turn old into m, key by key: every
// key of old that m lacks is deleted, every key of m is set, to a copy.
// Every copy is made before it returns, so a Clone that panics leaves the
// log as it was.
func replaceWrites(old, m map[string]any) []statemerge.Write {
	var ws []statemerge.Write
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if _, kept := m[k]; !kept {
			ws = append(ws, statemerge.Write{Path: []string{k}, Deleted: true})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ws = append(ws, statemerge.Write{Path: []string{k}, Value: deepcopy.Copy(m[k])})
	}
	return ws
}

// Fork returns an overlay of s in O(1): a store that starts with s's
// contents and changes independently of it. s's own layer is frozen and
// shared by both (s becomes an overlay too): from then on each copies the
// mutable values it reads from the shared layers. A fork of a logging store
// logs.
func (s *Store) Fork() *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.freeze()
	return &Store{top: make(map[string]any), below: s.below, origin: s.below, logging: s.logging}
}

// freeze moves s's own layer, when it holds anything, onto the frozen
// layers, merging it with the layers below while they are no more than
// twice its size (and above s's fork origin, which s does not own): the
// chain stays logarithmic in the number of keys. s.mu is held.
func (s *Store) freeze() {
	if len(s.top) == 0 && len(s.gone) == 0 && s.below != nil {
		return
	}
	l := &layer{vals: s.top, gone: s.gone, below: s.below}
	for l.below != nil && l.below != s.origin && 2*l.size() >= l.below.size() {
		l = merged(l.below, l)
	}
	if l.below == nil {
		l.gone = nil // nothing below to hide
	}
	s.top, s.gone, s.below = make(map[string]any), nil, l
}

// merged returns one layer holding lower with upper on top of it.
func merged(lower, upper *layer) *layer {
	m := &layer{vals: make(map[string]any, len(lower.vals)+len(upper.vals)), below: lower.below}
	maps.Copy(m.vals, lower.vals)
	if len(lower.gone)+len(upper.gone) > 0 {
		m.gone = make(map[string]struct{}, len(lower.gone)+len(upper.gone))
		maps.Copy(m.gone, lower.gone)
	}
	for k := range upper.gone {
		delete(m.vals, k)
		m.gone[k] = struct{}{}
	}
	for k, v := range upper.vals {
		m.vals[k] = v
		delete(m.gone, k)
	}
	return m
}

// Written returns what s changed since [Store.Fork] made it, as leaf-level
// writes relative to the fork origin (the keys it set, removed or handed
// out, diffed against their values at the fork), sorted by path; nil for a
// store that was not forked. It is what a full diff of the two contents
// would return, at the cost of the keys s touched. The writes share their
// values with s. Call it once s is no longer written. A key that a
// rolled-back savepoint changed counts as touched only if it was at the
// savepoint ([Store.Rollback]).
func (s *Store) Written() []statemerge.Write {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.origin == nil || len(s.touched) == 0 {
		return nil
	}
	was := make(map[string]any, len(s.touched))
	now := make(map[string]any, len(s.touched))
	for k := range s.touched {
		if v, ok := s.origin.lookup(k); ok {
			was[k] = v
		}
		if v, ok := s.lookup(k); ok {
			now[k] = v
		}
	}
	return statemerge.Diff(was, now)
}

// Apply applies writes in order (see [statemerge.Apply]). A write with an
// empty path is an error, and then nothing is applied. Values are stored as
// they are, not copied.
func (s *Store) Apply(writes []statemerge.Write) error { return s.ApplyAs(nil, writes) }

// ApplyAs is [Store.Apply] for owner ([Store.Savepoint]).
func (s *Store) ApplyAs(owner any, writes []statemerge.Write) error {
	for i, w := range writes {
		if len(w.Path) == 0 {
			return fmt.Errorf("state write %d has an empty path", i)
		}
	}
	if len(writes) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply(owner, writes)
	return nil
}

// apply applies checked writes for owner. s.mu is held.
func (s *Store) apply(owner any, writes []statemerge.Write) {
	if s.sp != nil {
		if sp := s.spOf(owner); sp != nil {
			for _, w := range writes {
				s.save(sp, w.Path[0], len(w.Path) > 1, true) // a nested write changes the value in place
			}
		}
		for _, w := range writes { // after every save: a Clone may panic
			s.wrote(owner, w.Path[0])
		}
	}
	if s.below == nil && s.origin == nil {
		statemerge.Apply(s.top, writes)
	} else {
		for _, w := range writes {
			key := w.Path[0]
			if len(w.Path) == 1 {
				if w.Deleted {
					s.remove(key)
				} else {
					s.set(key, w.Value)
				}
				continue
			}
			// A nested write changes the store's own copy of the value.
			one := make(map[string]any, 1)
			if v, ok := s.handOutQuiet(owner, key); ok {
				one[key] = v
			}
			statemerge.Apply(one, []statemerge.Write{w})
			if v, ok := one[key]; ok {
				s.set(key, v)
			}
		}
	}
	if s.logging {
		for _, w := range writes {
			s.record(w)
		}
	}
}

// handOutQuiet is handOut without noting the value for the log: the
// caller logs the change itself.
func (s *Store) handOutQuiet(owner any, key string) (any, bool) {
	logging := s.logging
	s.logging = false
	defer func() { s.logging = logging }()
	return s.handOut(owner, key)
}

// Merge deep-merges m into the store: nested maps are merged key by key,
// other values replaced. m's values are stored as they are. When m, or a
// map[string]any or []any in it at any depth, contains itself, Merge
// returns an error wrapping [ErrCycle] naming where, and changes nothing.
func (s *Store) Merge(m map[string]any) error { return s.MergeAs(nil, m) }

// MergeAs is [Store.Merge] for owner ([Store.Savepoint]).
func (s *Store) MergeAs(owner any, m map[string]any) error {
	if err := checkAcyclic(m); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var writes []statemerge.Write
	for _, k := range slices.Sorted(maps.Keys(m)) {
		cur, _ := s.lookup(k)
		writes = mergeWrites(writes, []string{k}, cur, m[k])
	}
	s.apply(owner, writes)
	return nil
}

// mergeWrites appends the leaf writes that deep-merge src into dst, both
// found at path.
func mergeWrites(writes []statemerge.Write, path []string, dst, src any) []statemerge.Write {
	sm, srcIsMap := src.(map[string]any)
	dm, dstIsMap := dst.(map[string]any)
	if !srcIsMap || !dstIsMap || dm == nil {
		return append(writes, statemerge.Write{Path: path, Value: src})
	}
	for _, k := range slices.Sorted(maps.Keys(sm)) {
		writes = mergeWrites(writes, append(path[:len(path):len(path)], k), dm[k], sm[k])
	}
	return writes
}

// StartLog makes s log every change from now on ([Store.LogLen],
// [Store.LogSince]), and every store forked from it log its own, until as
// many [Store.StopLog] calls undo it.
func (s *Store) StartLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logging = true
	s.logStarts++
}

// LogLen returns the length of the log, a mark for [Store.LogSince].
func (s *Store) LogLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flush()
	return len(s.log)
}

// LogSince returns the changes logged since mark, in order, including
// in-place changes to values handed out. The writes hold copies of the
// values, which the store never changes: they may be kept as they are, but
// only read (apply copies of them: [statemerge.Apply] stores values as they
// are, and a later write may change them in place).
func (s *Store) LogSince(mark int) []statemerge.Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flush()
	if mark < 0 || mark > len(s.log) {
		mark = len(s.log)
	}
	return s.log[mark:len(s.log):len(s.log)]
}

// flush logs what changed in place in the values handed out since the last
// flush. s.mu is held for writing.
func (s *Store) flush() {
	if len(s.before) == 0 {
		return
	}
	was := make(map[string]any, len(s.before))
	now := make(map[string]any, len(s.before))
	for k, b := range s.before {
		if b.ok {
			was[k] = b.v
		}
		if v, ok := s.lookup(k); ok {
			now[k] = v
		}
	}
	ws := statemerge.Diff(was, now)
	for i := range ws {
		ws[i].Value = deepcopy.Copy(ws[i].Value) // before any change: a Clone may panic
	}
	s.log = append(s.log, ws...)
	s.before = nil
}

// StopLog undoes one [Store.StartLog]: once every StartLog is undone, the
// store stops logging and forgets its log.
func (s *Store) StopLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logStarts > 0 {
		s.logStarts--
	}
	if s.logStarts == 0 {
		s.logging, s.log, s.before = false, nil, nil
	}
}

// Logging reports whether s logs its changes.
func (s *Store) Logging() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.logging
}
