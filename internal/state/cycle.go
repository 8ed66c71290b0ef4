package state

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unsafe"
)

// ErrCycle is the error [Store.Merge] wraps for a value that contains
// itself.
var ErrCycle = errors.New("state: value contains itself")

// checkAcyclic returns an error wrapping [ErrCycle], naming where the cycle
// closes, when m, or a map[string]any or []any in it at any depth, contains
// itself; nil otherwise. It looks through map[string]any and []any only,
// the values [Store.Merge] descends into (and all encoding/json decodes
// into). Its cost is linear in the size of m, however much of it is shared.
func checkAcyclic(m map[string]any) error {
	if !holdsContainer(m) {
		return nil // the common case: nothing to walk, nothing to allocate
	}
	w := cycleWalk{seen: make(map[container]bool)}
	if !w.mapAny(m) {
		return nil
	}
	// Found: walk again in key order, so that the message names the same
	// place every time.
	w = cycleWalk{seen: make(map[container]bool), sorted: true}
	w.mapAny(m)
	return fmt.Errorf("%w: the value at %s refers back to one that holds it", ErrCycle, w.where())
}

// holdsContainer reports whether a value of m is a map[string]any or an
// []any.
func holdsContainer(m map[string]any) bool {
	for _, v := range m {
		switch v.(type) {
		case map[string]any, []any:
			return true
		}
	}
	return false
}

// container identifies a map[string]any (n < 0) or a []any of length n.
type container struct {
	p unsafe.Pointer
	n int
}

// cycleWalk is a depth-first walk looking for a cycle.
type cycleWalk struct {
	// seen holds the containers on the path (true) and those found to
	// hold no cycle (false), which are not walked again.
	seen   map[container]bool
	path   []step // the keys and indices from the root
	sorted bool   // walk map keys in order
}

// enter reports whether c closes a cycle, and marks it on the path
// otherwise; done reports whether c was walked already.
func (w *cycleWalk) enter(c container) (cycle, done bool) {
	onPath, ok := w.seen[c]
	if ok {
		return onPath, !onPath
	}
	w.seen[c] = true
	return false, false
}

// mapAny reports whether m closes or contains a cycle, leaving w.path at
// the place where it closes.
func (w *cycleWalk) mapAny(m map[string]any) bool {
	if m == nil {
		return false
	}
	c := container{p: reflect.ValueOf(m).UnsafePointer(), n: -1}
	if cycle, done := w.enter(c); cycle || done {
		return cycle
	}
	if w.sorted {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if w.entry(k, m[k]) {
				return true
			}
		}
	} else {
		for k, v := range m {
			if w.entry(k, v) {
				return true
			}
		}
	}
	w.seen[c] = false
	return false
}

// entry reports whether v, at key k of the map being walked, closes or
// contains a cycle.
func (w *cycleWalk) entry(k string, v any) bool {
	w.path = append(w.path, step{key: k})
	if w.value(v) {
		return true
	}
	w.path = w.path[:len(w.path)-1]
	return false
}

func (w *cycleWalk) sliceAny(s []any) bool {
	if len(s) == 0 {
		return false
	}
	c := container{p: unsafe.Pointer(unsafe.SliceData(s)), n: len(s)}
	if cycle, done := w.enter(c); cycle || done {
		return cycle
	}
	for i, v := range s {
		w.path = append(w.path, step{index: i, isIndex: true})
		if w.value(v) {
			return true
		}
		w.path = w.path[:len(w.path)-1]
	}
	w.seen[c] = false
	return false
}

func (w *cycleWalk) value(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		return w.mapAny(v)
	case []any:
		return w.sliceAny(v)
	}
	return false
}

// step is one step of a path: a map key or a slice index.
type step struct {
	key     string
	index   int
	isIndex bool
}

// where returns w.path as keys joined by dots, indices in brackets, keys
// quoted when they could be misread.
func (w *cycleWalk) where() string {
	var b strings.Builder
	for i, st := range w.path {
		switch {
		case st.isIndex:
			fmt.Fprintf(&b, "[%d]", st.index)
		case st.key == "" || strings.ContainsAny(st.key, ".[]\" \t\n"):
			if i > 0 {
				b.WriteByte('.')
			}
			fmt.Fprintf(&b, "%q", st.key)
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(st.key)
		}
	}
	return b.String()
}
