package state

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// savepoints are the active savepoints of one owner of a store: a list
// of them, one per owner with any active, hangs from [Store].sp.
type savepoints struct {
	owner any         // never nil
	next  *savepoints // another owner's; nil at the end of the list
	// saves holds, for each active savepoint, outermost first, the length
	// of undo when it started: an entry belongs to the innermost savepoint
	// that started at or before it.
	saves []int
	// undo holds, in order, what restores each key the owner changed or
	// got a mutable value of since its outermost savepoint to its value
	// before.
	undo []undoEntry
	// saved holds, for each key in undo, 1 + the index of its latest
	// entry.
	saved map[string]int
	// lastReplace is 1 + the index of the owner's latest Replace entry in
	// undo, 0 when there is none.
	lastReplace int
}

// savedNow reports whether the innermost savepoint saved key already, in
// an entry that still holds (not stale).
func (sp *savepoints) savedNow(key string) bool {
	i := sp.saved[key] - 1
	return i >= sp.saves[len(sp.saves)-1] && !sp.undo[i].stale
}

// drop marks stale the entries of key that another owner's write just
// superseded: those that only got a value of key since the owner last
// wrote it (or replaced the store). A rollback leaves such a key as the
// other owner left it: the value the owner got, which its rollback would
// have restored to undo its in-place changes, is gone already.
func (sp *savepoints) drop(key string) {
	for i := sp.saved[key] - 1; i >= sp.lastReplace; {
		e := &sp.undo[i]
		if e.write || e.stale { // the entries before a stale one are done already
			return
		}
		e.stale = true
		i = e.prev - 1
	}
}

// unsave forgets e, the latest entry of its key, as it is rolled back.
func (sp *savepoints) unsave(e *undoEntry) {
	if e.replaced != nil {
		sp.lastReplace = e.prev
		return
	}
	if e.prev == 0 {
		delete(sp.saved, e.key)
	} else {
		sp.saved[e.key] = e.prev
	}
}

// savepointsPool keeps the buffers of ended savepoints for the next ones,
// of any store: a savepoint with few entries allocates nothing.
var savepointsPool = sync.Pool{New: func() any { return new(savepoints) }}

// undoEntry restores one key to its value when the entry was made, or,
// for a [Store.Replace], the whole store to its contents then.
type undoEntry struct {
	key string
	v   any
	ok  bool // false: the key had no value
	// own: v is no value of a frozen layer (it was s's own, or a copy of
	// it), and goes back into the top layer as it is. Otherwise v is the
	// value the frozen layers below gave the key.
	own     bool
	below   *layer // s.below when the entry was made
	touched bool   // the key was in s.touched
	// write: the owner wrote the key (or replaced the store) since the
	// entry, rather than only got a value of it.
	write bool
	// stale: the owner only got a value of the key, and another owner
	// wrote it since ([savepoints.drop]): the rollback skips the entry.
	stale bool
	// prev is 1 + the index of the key's previous entry (0: none); for a
	// Replace, that of the previous Replace.
	prev int

	replaced *replaced // non-nil for a Replace
}

// replaced is the representation of a store before a Replace.
type replaced struct {
	top     map[string]any
	gone    map[string]struct{}
	below   *layer
	touched map[string]struct{}
}

// Savepoint starts recording what undoes the changes owner makes to s
// from now on, and returns a mark for [Store.Rollback] or
// [Store.Release]. owner is any comparable value but nil (Savepoint
// panics on nil, or a value whose type is not comparable): an attempt of
// one execution, say. An owner changes s through the calls tagged with it
// ([Store.GetAs], [Store.SetAs], [Store.DeleteAs], [Store.EntriesAs],
// [Store.ReplaceAs], [Store.ApplyAs], [Store.MergeAs]); the untagged ones
// (Get, Set, …) are owner nil's, which has no savepoints. An owner's
// savepoints nest: ending one ends those it started after it. Different
// owners' savepoints are independent: they start and end in any order.
//
// While a savepoint of owner is active, s saves each key's value the first
// time owner writes the key (SetAs, DeleteAs, ApplyAs, MergeAs) or gets a
// mutable value of it (GetAs, EntriesAs) within that savepoint: a copy
// when the value stays in the store and may change in place (it is handed
// out, or written into by a nested write), the value itself otherwise.
// The cost is thus that of what owner reads and writes, never the size of
// the store; a ReplaceAs saves the whole representation as it was, in O(1)
// beyond what Replace costs anyway. With no savepoint active, a store
// saves and copies nothing; with another owner's savepoints active, a call
// costs in addition a look-up in the list of owners with savepoints, and a
// write a map look-up in each of their saved keys (BenchmarkSavepoint,
// others=1).
//
// A value handed out before a savepoint started, or to another owner,
// must not be changed in place by owner while it is active: Rollback
// would not undo that change.
func (s *Store) Savepoint(owner any) int {
	if owner == nil || !reflect.TypeOf(owner).Comparable() {
		panic(fmt.Sprintf("state: Savepoint(%T): an owner is a comparable value other than nil", owner))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.spOf(owner)
	if sp == nil {
		sp = savepointsPool.Get().(*savepoints)
		sp.owner, sp.next = owner, s.sp
		s.sp = sp
	}
	sp.saves = append(sp.saves, len(sp.undo))
	return len(sp.saves) - 1
}

// spOf returns owner's active savepoints, nil when it has none (owner nil
// never has). s.mu is held.
func (s *Store) spOf(owner any) *savepoints {
	for sp := s.sp; sp != nil; sp = sp.next {
		if sp.owner == owner {
			return sp
		}
	}
	return nil
}

// Rollback undoes the changes owner made since its savepoint mark, and
// ends that savepoint and those owner started after it: it restores every
// key owner changed since to exactly its value then, in-place changes to
// the values handed out to owner since included. The values handed out to
// owner since are no longer the store's (unless another owner's rollback
// puts them back): changing them changes nothing in s.
//
// Only owner's changes are undone: a key owner neither wrote nor got a
// value of keeps what other owners (and untagged calls) made of it. On a
// key both owner and another owner changed, concurrent writers race, and a
// rollback counts as a write of each key it restores:
//   - a key owner wrote (or every key, after a ReplaceAs of owner's) goes
//     back to its value when owner first got or wrote it since mark, even
//     if another owner wrote it since: that write is lost;
//   - a key owner only got values of goes back to its value when owner got
//     it, undoing owner's in-place changes, unless another owner wrote it
//     (or rolled it back) since: that write stays, and in-place changes
//     owner made to the values it got before it are not undone;
//   - in-place changes another owner made meanwhile to a value owner got
//     too are lost with owner's.
//
// A logging store ([Store.StartLog]) logs the restoring writes, so that its
// log replayed in order gives the net effect: one write for each key whose
// value the log gave differs from the restored one (after a Replace since
// the mark, every key, as Replace logs). [Store.Written] reports no write
// for a key that was not touched when owner first changed it: rolled back,
// the store has not touched it. Rollback panics when mark is not that of an
// active savepoint of owner.
func (s *Store) Rollback(owner any, mark int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.checkMark(owner, "Rollback", mark)
	entries := sp.undo[sp.saves[mark]:]

	// Everything that may run user code (Clone) comes before the first
	// change: restoring itself only moves values.
	values := s.restoredValues(entries)
	var logView map[string]logged
	replacedAny := slices.ContainsFunc(entries, func(e undoEntry) bool { return e.replaced != nil })
	if s.logging {
		if replacedAny {
			s.flush()
		} else {
			logView = make(map[string]logged, len(entries))
			for _, e := range entries {
				if _, ok := logView[e.key]; !ok && !e.stale {
					v, ok := s.logValue(e.key)
					logView[e.key] = logged{v, ok}
				}
			}
		}
	}
	var old map[string]any
	if s.logging && replacedAny {
		old = maps.Clone(s.viewLocked())
	}

	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if e.stale {
			sp.unsave(e)
			continue
		}
		var c any
		if values != nil {
			c = values[i]
		}
		s.restore(sp, e, c)
	}
	if s.sp != sp || sp.next != nil { // other owners: the restoring writes supersede what they only got
		if replacedAny {
			s.wroteAll(owner)
		} else {
			for i := range entries {
				if !entries[i].stale {
					s.wrote(owner, entries[i].key)
				}
			}
		}
	}
	clear(entries) // drop the values
	sp.undo = sp.undo[:sp.saves[mark]]
	s.endSaves(sp, mark)

	switch {
	case !s.logging:
	case replacedAny:
		ws := replaceWrites(old, s.viewLocked())
		s.log = append(s.log, ws...)
		// The Replace stopped watching the values it replaced, which may
		// have been handed out: back in the store, they are watched again,
		// from the copies just logged (shared with the log: not own).
		for _, w := range ws {
			if !w.Deleted && !deepcopy.Immutable(w.Value) {
				if s.before == nil {
					s.before = make(map[string]before)
				}
				s.before[w.Path[0]] = before{v: w.Value, ok: true}
			}
		}
	default:
		for _, k := range slices.Sorted(maps.Keys(logView)) {
			was := logView[k]
			v, ok := s.lookup(k)
			changed := ok != was.ok || !reflect.DeepEqual(v, was.v)
			if changed {
				s.record(statemerge.Write{Path: []string{k}, Value: v, Deleted: !ok})
			}
			if _, noted := s.before[k]; noted || !ok || deepcopy.Immutable(v) {
				continue
			}
			// A value put back as it was may have been handed out, and
			// no longer be watched (a Replace, say, stopped watching it):
			// it is watched again, from the copy just logged if any.
			if s.before == nil {
				s.before = make(map[string]before)
			}
			if changed {
				s.before[k] = before{v: s.log[len(s.log)-1].Value, ok: true}
			} else {
				s.before[k] = before{v: deepcopy.Copy(v), ok: true, own: true}
			}
		}
	}
}

// logged is a key's value as the log gives it.
type logged struct {
	v  any
	ok bool
}

// logValue returns the value the log gives key: its noted value if it has
// one, else its value (which changed in place only if noted).
func (s *Store) logValue(key string) (any, bool) {
	if b, ok := s.before[key]; ok {
		return b.v, b.ok
	}
	return s.lookup(key)
}

// restoredValues returns, for each of entries, the value restoring it puts
// in the top layer: a copy of a frozen value when a layer was frozen over
// the one it came from since (by a Fork, or another owner's Replace), nil
// otherwise; nil when all are.
func (s *Store) restoredValues(entries []undoEntry) []any {
	var values []any
	below := s.below // s.below when entries[i] is restored, walking back
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if e.replaced != nil {
			below = e.replaced.below
			continue
		}
		if e.ok && !e.own && !e.stale && below != e.below && !deepcopy.Immutable(e.v) {
			if values == nil {
				values = make([]any, len(entries))
			}
			values[i] = deepcopy.Copy(e.v)
		}
	}
	return values
}

// restore puts back what e, an entry of sp, saved; c is its value from
// restoredValues.
func (s *Store) restore(sp *savepoints, e *undoEntry, c any) {
	sp.unsave(e)
	if r := e.replaced; r != nil {
		s.top, s.gone, s.below, s.touched = r.top, r.gone, r.below, r.touched
		return
	}
	k := e.key
	switch {
	case !e.ok:
		delete(s.top, k)
		if s.below != nil {
			if _, ok := s.below.lookup(k); ok {
				if s.gone == nil {
					s.gone = make(map[string]struct{})
				}
				s.gone[k] = struct{}{}
			} else {
				delete(s.gone, k)
			}
		}
	case e.own:
		s.top[k] = e.v
		delete(s.gone, k)
	case s.below == e.below: // the frozen layers still give e.v
		delete(s.top, k)
		delete(s.gone, k)
	default:
		if c == nil {
			c = e.v // immutable
		}
		s.top[k] = c
		delete(s.gone, k)
	}
	if s.origin != nil {
		// A key in the top layer stays touched: Get hands such a value
		// out without touching it.
		if _, inTop := s.top[k]; inTop || e.touched {
			s.touch(k)
		} else {
			delete(s.touched, k)
		}
	}
}

// Release keeps the changes owner made since its savepoint mark and ends
// it and those owner started after it. Within an enclosing savepoint of
// owner, what they saved stays saved: the enclosing savepoint's Rollback
// undoes their changes too. Release panics when mark is not that of an
// active savepoint of owner.
func (s *Store) Release(owner any, mark int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endSaves(s.checkMark(owner, "Release", mark), mark)
}

// endSaves ends the savepoint mark of sp and those started after it,
// dropping their entries, unless an enclosing savepoint keeps them (they
// belong to it from then on).
func (s *Store) endSaves(sp *savepoints, mark int) {
	if mark > 0 {
		sp.saves = sp.saves[:mark]
		return
	}
	// The outermost ended: forget everything, and pool small buffers for
	// the next savepoints (large ones would stay large).
	for p := &s.sp; ; p = &(*p).next {
		if *p == sp {
			*p = sp.next
			break
		}
	}
	if len(sp.undo) > 64 || len(sp.saves) > 64 {
		return
	}
	for _, e := range sp.undo {
		delete(sp.saved, e.key)
	}
	clear(sp.undo) // drop the values
	sp.undo, sp.saves = sp.undo[:0], sp.saves[:0]
	sp.owner, sp.next, sp.lastReplace = nil, nil, 0
	savepointsPool.Put(sp)
}

// checkMark returns owner's savepoints, and panics unless mark is that of
// one of them that is active.
func (s *Store) checkMark(owner any, method string, mark int) *savepoints {
	sp := s.spOf(owner)
	n := 0
	if sp != nil {
		n = len(sp.saves)
	}
	if mark < 0 || mark >= n {
		panic(fmt.Sprintf("state: %s(%T, %d): no such active savepoint (the owner has %d active)", method, owner, mark, n))
	}
	return sp
}

// save records in sp what restores key to its value now, unless the
// innermost savepoint of sp saved it already (and the entry is not
// stale). keep: the value stays in the store and may change in place (it
// is handed out, or written into), so s's own value is copied; otherwise
// it is about to be replaced or removed, and is kept as it is. write: sp's
// owner is about to write key, not only get it. s.mu is held for writing.
func (s *Store) save(sp *savepoints, key string, keep, write bool) {
	prev := sp.saved[key]
	if i := prev - 1; i >= sp.saves[len(sp.saves)-1] && !sp.undo[i].stale {
		if write {
			sp.undo[i].write = true
		}
		return
	}
	e := undoEntry{key: key, prev: prev, below: s.below, write: write}
	if v, ok := s.top[key]; ok {
		if keep && !deepcopy.Immutable(v) {
			v = deepcopy.Copy(v) // before any change: Clone may panic
		}
		e.v, e.ok, e.own = v, true, true
	} else if s.below != nil {
		if _, hidden := s.gone[key]; !hidden {
			e.v, e.ok = s.below.lookup(key) // frozen: never changes
		}
	}
	_, e.touched = s.touched[key]
	if sp.saved == nil {
		sp.saved = make(map[string]int)
	}
	sp.saved[key] = len(sp.undo) + 1
	sp.undo = append(sp.undo, e)
}

// beforeWrite prepares the replacement or removal of key by owner:
// owner's savepoints, if any, save its value as it is (which runs no user
// code), and the other owners' entries that only got it are superseded.
// s.mu is held for writing; a savepoint is active.
func (s *Store) beforeWrite(owner any, key string) {
	for sp := s.sp; sp != nil; sp = sp.next {
		if sp.owner == owner {
			s.save(sp, key, false, true)
		} else {
			sp.drop(key)
		}
	}
}

// wrote tells every owner but owner that owner wrote key.
func (s *Store) wrote(owner any, key string) {
	for sp := s.sp; sp != nil; sp = sp.next {
		if sp.owner != owner {
			sp.drop(key)
		}
	}
}

// wroteAll tells every owner but owner that owner wrote every key.
func (s *Store) wroteAll(owner any) {
	for sp := s.sp; sp != nil; sp = sp.next {
		if sp.owner != owner {
			for k := range sp.saved {
				sp.drop(k)
			}
		}
	}
}
