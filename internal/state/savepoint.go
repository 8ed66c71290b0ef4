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

// savepoints are the active savepoints of a store.
type savepoints struct {
	// saves holds, for each active savepoint, outermost first, the length
	// of undo when it started.
	saves []int
	// undo holds, in order, what restores each key changed or handed out
	// since the outermost savepoint to its value before.
	undo []undoEntry
	// saved holds, for each key in undo, the depth (from 1) of the
	// savepoint its latest entry belongs to.
	saved map[string]int
}

// savedNow reports whether the innermost savepoint saved key already.
func (sp *savepoints) savedNow(key string) bool { return sp.saved[key] == len(sp.saves) }

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
	prev    int    // saved[key] before the entry (0: none)

	replaced *replaced // non-nil for a Replace
}

// replaced is the representation of a store before a Replace.
type replaced struct {
	top     map[string]any
	gone    map[string]struct{}
	below   *layer
	touched map[string]struct{}
}

// Savepoint starts recording what undoes the changes made to s from now
// on, by anyone, and returns a mark for [Store.Rollback] or
// [Store.Release]. Savepoints nest: ending one ends those started after
// it.
//
// While a savepoint is active, s saves each key's value the first time the
// key is written (Set, Delete, Apply, Merge) or a mutable value of it is
// handed out (Get, Entries) within that savepoint: a copy when the value
// stays in the store and may change in place (it is handed out, or written
// into by a nested write), the value itself otherwise. The cost is thus
// that of what is read or written, never the size of the store; a Replace
// saves the whole representation as it was, in O(1) beyond what Replace
// costs anyway. With no savepoint active, a store saves and copies
// nothing.
//
// A value handed out before a savepoint started must not be changed in
// place while it is active: Rollback would not undo that change.
func (s *Store) Savepoint() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sp == nil {
		s.sp = savepointsPool.Get().(*savepoints)
	}
	sp := s.sp
	sp.saves = append(sp.saves, len(sp.undo))
	return len(sp.saves) - 1
}

// Rollback restores every key changed since the savepoint mark to exactly
// its value then, in-place changes to the values it handed out since
// included, and ends that savepoint and those started after it. The values
// handed out since are no longer the store's: changing them changes
// nothing in s.
//
// A logging store ([Store.StartLog]) logs the restoring writes, so that its
// log replayed in order gives the net effect: one write for each key whose
// value the log gave differs from the restored one (after a Replace since
// the mark, every key, as Replace logs). [Store.Written] reports no write
// for a key that was not touched at the mark: rolled back, the store has
// not touched it. Rollback panics when mark is not that of an active
// savepoint.
func (s *Store) Rollback(mark int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.checkMark("Rollback", mark)
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
				if _, ok := logView[e.key]; !ok {
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
		var c any
		if values != nil {
			c = values[i]
		}
		s.restore(&entries[i], c)
	}
	clear(entries) // drop the values
	sp.undo = sp.undo[:sp.saves[mark]]
	s.endSaves(mark)

	switch {
	case !s.logging:
	case replacedAny:
		s.log = append(s.log, replaceWrites(old, s.viewLocked())...)
	default:
		for _, k := range slices.Sorted(maps.Keys(logView)) {
			was := logView[k]
			v, ok := s.lookup(k)
			if ok != was.ok || !reflect.DeepEqual(v, was.v) {
				s.record(statemerge.Write{Path: []string{k}, Value: v, Deleted: !ok})
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
// the one it came from since (by a Fork), nil otherwise; nil when all are.
func (s *Store) restoredValues(entries []undoEntry) []any {
	var values []any
	below := s.below // s.below when entries[i] is restored, walking back
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if e.replaced != nil {
			below = e.replaced.below
			continue
		}
		if e.ok && !e.own && below != e.below && !deepcopy.Immutable(e.v) {
			if values == nil {
				values = make([]any, len(entries))
			}
			values[i] = deepcopy.Copy(e.v)
		}
	}
	return values
}

// restore puts back what e saved; c is its value from restoredValues.
func (s *Store) restore(e *undoEntry, c any) {
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
	if e.prev == 0 {
		delete(s.sp.saved, k)
	} else {
		s.sp.saved[k] = e.prev
	}
}

// Release keeps the changes made since the savepoint mark and ends it and
// those started after it. Within an enclosing savepoint, what they saved
// stays saved: the enclosing savepoint's Rollback undoes their changes
// too. Release panics when mark is not that of an active savepoint.
func (s *Store) Release(mark int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.checkMark("Release", mark)
	if mark > 0 { // hand the entries to the enclosing savepoint, at depth mark
		for i := sp.saves[mark]; i < len(sp.undo); i++ {
			e := &sp.undo[i]
			if e.replaced != nil {
				continue
			}
			sp.saved[e.key] = mark
			e.prev = min(e.prev, mark)
		}
	}
	s.endSaves(mark)
}

// endSaves ends the savepoint mark and those started after it, dropping
// their entries, unless an enclosing savepoint keeps them.
func (s *Store) endSaves(mark int) {
	sp := s.sp
	if mark > 0 {
		sp.saves = sp.saves[:mark]
		return
	}
	// The outermost ended: forget everything, and pool small buffers for
	// the next savepoints (large ones would stay large).
	s.sp = nil
	if len(sp.undo) > 64 || len(sp.saves) > 64 {
		return
	}
	for _, e := range sp.undo {
		delete(sp.saved, e.key)
	}
	clear(sp.undo) // drop the values
	sp.undo, sp.saves = sp.undo[:0], sp.saves[:0]
	savepointsPool.Put(sp)
}

// checkMark returns s.sp, and panics unless mark is that of an active
// savepoint.
func (s *Store) checkMark(method string, mark int) *savepoints {
	n := 0
	if s.sp != nil {
		n = len(s.sp.saves)
	}
	if mark < 0 || mark >= n {
		panic(fmt.Sprintf("state: %s(%d): no such active savepoint (%d active)", method, mark, n))
	}
	return s.sp
}

// save records what restores key to its value now, unless the innermost
// savepoint saved it already. keep: the value stays in the store and may
// change in place (it is handed out, or written into), so s's own value
// is copied; otherwise it is about to be replaced or removed, and is kept
// as it is. s.mu is held for writing; a savepoint is active.
func (s *Store) save(key string, keep bool) {
	sp := s.sp
	depth := len(sp.saves)
	prev := sp.saved[key]
	if prev == depth {
		return
	}
	e := undoEntry{key: key, prev: prev, below: s.below}
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
	sp.saved[key] = depth
	sp.undo = append(sp.undo, e)
}
