package statemerge

import (
	"reflect"
	"slices"
	"unsafe"
)

// Write is one change a branch made relative to the fork: the value at Path
// (a path of map keys from the root; len >= 1) was set to Value, or removed.
//
// A Write is plain data: it may be read concurrently, not read and written.
// The JSON tags match the rest of a run snapshot; encoding/json matches
// field names case-insensitively, so untagged encodings still decode.
type Write struct {
	Path    []string `json:"path"`
	Value   any      `json:"value,omitempty"`
	Deleted bool     `json:"deleted,omitempty"`
}

// Diff returns the leaf-level changes that turn before into after, sorted by
// path (lexicographic over the key sequence). It returns nil when there are
// none.
//
// Nested map[string]any values are descended into: a change deep inside a
// map is one Write at the deep path. Anything that is not a non-nil
// map[string]any on both sides (slices, structs, scalars, a map replaced by
// a scalar, a nil map, etc.) is compared with reflect.DeepEqual and reported
// as a Write of the whole value when it differs. A key present in before and
// absent in after is a Deleted write; a key present with a nil value is not
// absent. A map that contains itself (directly or deeper) is compared whole
// where the cycle closes, so cyclic state does not make Diff loop forever.
// The cost is linear in the size of the maps Diff descends into, however
// deep they nest (BenchmarkDiffDeep).
//
// before and after are not modified. Every Write has a Path of its own;
// Values are those of after (not copied), so the writes share memory with
// after. Diff is safe for concurrent use, provided nothing mutates before or
// after meanwhile.
func Diff(before, after map[string]any) []Write {
	var d differ
	d.maps(before, after)
	return d.writes
}

// differ holds the state of one Diff call.
type differ struct {
	writes []Write
	// path is the key sequence of the maps being compared.
	path []string
	// before and after are the maps on the current path, to notice
	// cycles.
	before, after pathSet
}

// maps appends the writes that turn before into after, both found at d.path.
func (d *differ) maps(before, after map[string]any) {
	d.before.push(before)
	d.after.push(after)

	keys := make([]string, 0, len(before)+len(after))
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	// Visiting keys in order at every level yields the writes sorted by
	// path: a depth-first walk in key order is lexicographic order.
	slices.Sort(keys)

	for _, k := range keys {
		b, inBefore := before[k]
		a, inAfter := after[k]
		d.path = append(d.path, k)
		switch {
		case !inAfter:
			d.emit(Write{Deleted: true})
		case !inBefore:
			d.emit(Write{Value: a})
		default:
			bm, bok := b.(map[string]any)
			am, aok := a.(map[string]any)
			if bok && aok && bm != nil && am != nil && !d.before.has(bm) && !d.after.has(am) {
				d.maps(bm, am)
			} else if !reflect.DeepEqual(b, a) {
				d.emit(Write{Value: a})
			}
		}
		d.path = d.path[:len(d.path)-1]
	}

	d.before.pop()
	d.after.pop()
}

// pathSet is the maps on a path, which it tells in O(1) whether a map is
// one of: a scan of the path at each level made Diff quadratic in depth
// (BenchmarkDiffDeep).
type pathSet struct {
	stack []unsafe.Pointer // the maps, outermost first
	// counts counts each map on the path (each is there once, as Diff does
	// not descend into a map on its path; counting keeps that an
	// assumption of nothing). It is made once the path is deeper than
	// scanDepth: up to there a scan of stack is cheaper than a map.
	counts map[unsafe.Pointer]int
}

const scanDepth = 16

func mapPointer(m map[string]any) unsafe.Pointer { return reflect.ValueOf(m).UnsafePointer() }

func (p *pathSet) push(m map[string]any) {
	ptr := mapPointer(m)
	p.stack = append(p.stack, ptr)
	switch {
	case p.counts != nil:
		p.counts[ptr]++
	case len(p.stack) > scanDepth:
		p.counts = make(map[unsafe.Pointer]int, 2*len(p.stack))
		for _, q := range p.stack {
			p.counts[q]++
		}
	}
}

func (p *pathSet) pop() {
	ptr := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	if p.counts == nil {
		return
	}
	if n := p.counts[ptr] - 1; n > 0 {
		p.counts[ptr] = n
	} else {
		delete(p.counts, ptr)
	}
}

// has reports whether m is on the path.
func (p *pathSet) has(m map[string]any) bool {
	ptr := mapPointer(m)
	if p.counts != nil {
		return p.counts[ptr] > 0
	}
	return slices.Contains(p.stack, ptr)
}

// emit appends w at a copy of the current path.
func (d *differ) emit(w Write) {
	w.Path = slices.Clone(d.path)
	d.writes = append(d.writes, w)
}

// Apply applies writes to dst in order.
//
// A write that sets a value creates the intermediate maps its path needs; an
// intermediate that exists but is not a non-nil map[string]any is replaced
// by a new map. A Deleted write removes the key; when an intermediate is
// missing or not a map, there is nothing to remove and it does nothing.
//
// Values are stored as they are, not copied: afterwards dst shares memory
// with the writes, and a later write whose path goes through a map that an
// earlier write stored modifies that map. Apply panics if a write's Path is
// empty, or if dst is nil and a write sets a value. It is not safe for
// concurrent use with anything else that reads or writes dst.
func Apply(dst map[string]any, writes []Write) {
	for _, w := range writes {
		if len(w.Path) == 0 {
			panic("statemerge: Apply: write with an empty path")
		}
		m := dst
		parents, last := w.Path[:len(w.Path)-1], w.Path[len(w.Path)-1]
		for _, k := range parents {
			next, ok := m[k].(map[string]any)
			if !ok || next == nil {
				if w.Deleted {
					m = nil // nothing to delete
					break
				}
				next = make(map[string]any)
				m[k] = next
			}
			m = next
		}
		if w.Deleted {
			delete(m, last) // a no-op on a nil map
			continue
		}
		m[last] = w.Value
	}
}
