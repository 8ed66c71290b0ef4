package deepcopy

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
	"unsafe"
)

// Cloner is implemented by user types that know how to copy themselves.
//
// Copy calls Clone instead of copying a Cloner, also when it is nested in a
// map, slice, array, struct field, pointer or interface. Only the value's
// own method set counts: a T whose Clone has a pointer receiver is copied by
// reflection, a *T by Clone. When Clone has a value receiver, a *T is copied
// as a new pointer to the Clone of its pointee. Where the copy goes into a
// typed place (a struct field, a slice element, a map value, a pointee),
// Clone's result must be assignable to that place's type, normally by being
// of the receiver's type; Copy panics otherwise. A nil result stores the
// type's zero value.
//
// Copy calls Clone on the goroutine that called Copy; when the same value may
// be copied by several goroutines at once, Clone must be safe for concurrent
// use.
type Cloner interface {
	// Clone returns a deep copy of the receiver.
	Clone() any
}

// Copy returns a deep copy of v: mutating the copy, at any depth, never
// changes v, and mutating v never changes the copy.
//
//   - nil is returned as nil.
//   - A value implementing [Cloner] is replaced by its Clone result, wherever
//     it occurs; a nil pointer is returned as is, without calling Clone.
//   - Immutable values are returned as is, not copied: booleans, numbers (all
//     int, uint, float and complex kinds, named or not), strings (named or
//     not), time.Time, time.Duration and json.Number.
//   - map[string]any, []any, []string, []byte and map[string]string, the
//     shapes encoding/json decodes into, are copied without reflection.
//   - Other maps become new maps with the same keys (keys are not copied)
//     and copied values. Slices get new backing arrays. Arrays are copied
//     element by element, pointers get a new, copied pointee and interfaces
//     hold a copy of their dynamic value.
//   - Structs are copied as a whole, then each exported field is replaced by
//     its deep copy. Unexported fields (embedded unexported types included)
//     are copied shallowly: the copy shares whatever they point to.
//   - Channels, functions and unsafe pointers are shared, not copied.
//
// Nil maps, slices and pointers stay nil, keeping their type; empty ones
// stay empty and non-nil.
//
// Sharing and cycles: pointers and maps that Copy reaches through reflection
// are tracked, so a value the original reaches twice is reached twice in the
// copy, and cycles through them are reproduced rather than followed forever.
// A pointer into the middle of another copied value gets a pointee of its
// own. Slices, and the values of the shapes copied without reflection, are
// not tracked: each reference gets its own copy. As a cycle through those
// would nest without end, Copy starts over when they nest more than 512
// levels deep, this time tracking every map and slice, which reproduces such
// cycles too (and copies deep acyclic values correctly, only slower).
//
// Copy is safe for concurrent use, provided nothing mutates v meanwhile.
func Copy(v any) any {
	var c copier
	out := c.any(v)
	if c.tooDeep {
		c = copier{trackAll: true}
		out = c.any(v)
	}
	return out
}

// CopyMap returns a deep copy of m, following the rules of [Copy]; nil
// returns nil. It is safe for concurrent use, provided nothing mutates m
// meanwhile.
func CopyMap(m map[string]any) map[string]any {
	var c copier
	out := c.mapAny(m)
	if c.tooDeep {
		c = copier{trackAll: true}
		out = c.mapAny(m)
	}
	return out
}

// maxUntrackedDepth is how deeply untracked values (slices and the
// fast-path shapes) may nest before Copy assumes a cycle and starts over
// with every map and slice tracked.
const maxUntrackedDepth = 512

var (
	clonerType   = reflect.TypeFor[Cloner]()
	timeType     = reflect.TypeFor[time.Time]()
	mapAnyType   = reflect.TypeFor[map[string]any]()
	sliceAnyType = reflect.TypeFor[[]any]()
)

// copier holds the state of one Copy call.
type copier struct {
	// visited maps each tracked original to its copy. It is made on first
	// use, so values without pointers or reflected maps never allocate it.
	visited map[visitKey]reflect.Value
	// depth is the current nesting of untracked containers.
	depth int
	// trackAll tracks slices and fast-path maps too (the second attempt).
	trackAll bool
	// tooDeep aborts the first attempt: every loop stops at once and Copy
	// starts over with trackAll.
	tooDeep bool
}

// visitKey identifies a tracked original. The type tells apart a struct
// and its first field, which share an address; the length tells apart
// slices of different lengths over the same backing array.
type visitKey struct {
	ptr unsafe.Pointer
	typ reflect.Type
	len int
}

func (c *copier) remember(k visitKey, dup reflect.Value) {
	if c.visited == nil {
		c.visited = make(map[visitKey]reflect.Value)
	}
	c.visited[k] = dup
}

// enter records one more level of untracked nesting. It reports false, and
// sets tooDeep, when the first attempt nests too deeply.
func (c *copier) enter() bool {
	c.depth++
	if c.depth > maxUntrackedDepth && !c.trackAll {
		c.tooDeep = true
		return false
	}
	return true
}

func (c *copier) leave() { c.depth-- }

// any copies a dynamically typed value.
func (c *copier) any(v any) any {
	// None of these types has a Clone method, so matching them before
	// looking for Cloner keeps the rule that Cloner is checked first.
	switch v := v.(type) {
	case nil, bool, string,
		int, int8, int16, int32, int64,
		uint, uint8, uint16, uint32, uint64, uintptr,
		float32, float64, complex64, complex128,
		time.Time, time.Duration, json.Number:
		return v
	case map[string]any:
		return c.mapAny(v)
	case []any:
		return c.sliceAny(v)
	case []string:
		return slices.Clone(v)
	case []byte:
		return slices.Clone(v)
	case map[string]string:
		return maps.Clone(v)
	}
	rv := reflect.ValueOf(v)
	if cl, ok := v.(Cloner); ok {
		switch {
		case rv.Kind() != reflect.Pointer:
			return cl.Clone()
		case rv.IsNil():
			return v
		case ownClone(rv.Type()):
			return cl.Clone()
		}
		// A *T whose Clone is T's: copied below, cloning the pointee.
	}
	if sharedKind(rv.Kind()) {
		return v
	}
	return c.value(rv).Interface()
}

func (c *copier) mapAny(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	var k visitKey
	if c.trackAll {
		k = visitKey{ptr: reflect.ValueOf(m).UnsafePointer(), typ: mapAnyType}
		if dup, ok := c.visited[k]; ok {
			return dup.Interface().(map[string]any)
		}
	}
	out := make(map[string]any, len(m))
	if c.trackAll {
		c.remember(k, reflect.ValueOf(out))
	}
	if !c.enter() {
		return out
	}
	for key, x := range m {
		out[key] = c.any(x)
		if c.tooDeep {
			break
		}
	}
	c.leave()
	return out
}

func (c *copier) sliceAny(s []any) []any {
	if s == nil {
		return nil
	}
	var k visitKey
	if c.trackAll && len(s) > 0 {
		k = visitKey{ptr: unsafe.Pointer(unsafe.SliceData(s)), typ: sliceAnyType, len: len(s)}
		if dup, ok := c.visited[k]; ok {
			return dup.Interface().([]any)
		}
	}
	out := make([]any, len(s))
	if c.trackAll && len(s) > 0 {
		c.remember(k, reflect.ValueOf(out))
	}
	if !c.enter() {
		return out
	}
	for i, x := range s {
		out[i] = c.any(x)
		if c.tooDeep {
			break
		}
	}
	c.leave()
	return out
}

// value copies a value through reflection. The result is assignable to
// v's type but, when that type is an interface, holds the concrete type.
func (c *copier) value(v reflect.Value) reflect.Value {
	t := v.Type()
	k := v.Kind()
	if k == reflect.Interface {
		if v.IsNil() {
			return v
		}
		return assignable(c.any(v.Interface()), t)
	}
	if t.Implements(clonerType) && (k != reflect.Pointer || ownClone(t)) {
		if k == reflect.Pointer && v.IsNil() {
			return v
		}
		return assignable(v.Interface().(Cloner).Clone(), t)
	}
	switch k {
	case reflect.Pointer:
		return c.pointer(v)
	case reflect.Map:
		return c.mapValue(v)
	case reflect.Slice:
		return c.slice(v)
	case reflect.Array:
		out := reflect.New(t).Elem()
		c.fill(out, v)
		return out
	case reflect.Struct:
		return c.structValue(v)
	}
	return v // sharedKind: assigning the value copies it, or shares it by design
}

func (c *copier) pointer(v reflect.Value) reflect.Value {
	if v.IsNil() {
		return v
	}
	k := visitKey{ptr: v.UnsafePointer(), typ: v.Type()}
	if dup, ok := c.visited[k]; ok {
		return dup
	}
	out := reflect.New(v.Type().Elem())
	c.remember(k, out)
	out.Elem().Set(c.value(v.Elem()))
	return out
}

func (c *copier) mapValue(v reflect.Value) reflect.Value {
	if v.IsNil() {
		return v
	}
	t := v.Type()
	k := visitKey{ptr: v.UnsafePointer(), typ: t}
	if dup, ok := c.visited[k]; ok {
		return dup
	}
	out := reflect.MakeMapWithSize(t, v.Len())
	c.remember(k, out)
	shallow := sharedType(t.Elem())
	for it := v.MapRange(); it.Next(); {
		if shallow {
			out.SetMapIndex(it.Key(), it.Value())
			continue
		}
		out.SetMapIndex(it.Key(), c.value(it.Value()))
		if c.tooDeep {
			break
		}
	}
	return out
}

func (c *copier) slice(v reflect.Value) reflect.Value {
	if v.IsNil() {
		return v
	}
	t, n := v.Type(), v.Len()
	var k visitKey
	if c.trackAll && n > 0 {
		k = visitKey{ptr: v.UnsafePointer(), typ: t, len: n}
		if dup, ok := c.visited[k]; ok {
			return dup
		}
	}
	out := reflect.MakeSlice(t, n, n)
	if c.trackAll && n > 0 {
		c.remember(k, out)
	}
	if !c.enter() {
		return out
	}
	c.fill(out, v)
	c.leave()
	return out
}

// fill sets the elements of dst, a new slice or settable array as long as
// src, to copies of src's.
func (c *copier) fill(dst, src reflect.Value) {
	if sharedType(src.Type().Elem()) {
		reflect.Copy(dst, src)
		return
	}
	for i := range src.Len() {
		dst.Index(i).Set(c.value(src.Index(i)))
		if c.tooDeep {
			return
		}
	}
}

func (c *copier) structValue(v reflect.Value) reflect.Value {
	t := v.Type()
	if t == timeType {
		return v
	}
	out := reflect.New(t).Elem()
	out.Set(v) // unexported fields stay shallow copies
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanInterface() || sharedType(f.Type()) { // unexported, or nothing to deepen
			continue
		}
		out.Field(i).Set(c.value(f))
		if c.tooDeep {
			break
		}
	}
	return out
}

// ownClone reports whether pointer type t, which implements Cloner, has a
// Clone of its own (a pointer receiver) rather than one promoted from its
// element type. A promoted Clone returns a T, not a *T, so such pointers are
// copied as pointers whose pointee is copied by Clone.
func ownClone(t reflect.Type) bool {
	return !t.Elem().Implements(clonerType)
}

// sharedKind reports whether assigning a value of kind k is a complete
// copy (booleans, numbers, strings) or the sharing Copy documents
// (channels, functions, unsafe pointers).
func sharedKind(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// sharedType reports whether values of type t are copied by assignment
// alone: a sharedKind without a Clone method.
func sharedType(t reflect.Type) bool {
	return sharedKind(t.Kind()) && !t.Implements(clonerType)
}

// assignable returns x, the copy of a value stored in a place of type t, as
// a value assignable to t. Only a Clone method returning another type can
// make it unassignable; assignable panics then.
func assignable(x any, t reflect.Type) reflect.Value {
	if x == nil {
		return reflect.Zero(t)
	}
	xv := reflect.ValueOf(x)
	if xt := xv.Type(); xt != t && !xt.AssignableTo(t) {
		panic(fmt.Sprintf("deepcopy: Clone returned a %v, which cannot be stored in a %v", xt, t))
	}
	return xv
}

// Immutable reports whether [Copy] returns v itself: nil, booleans, numbers,
// strings, time.Time, time.Duration and json.Number, other values of those
// kinds without a Clone method, and the channels, functions and unsafe
// pointers Copy shares. Such values need no copy to be shared.
func Immutable(v any) bool {
	switch v.(type) {
	case nil, bool, string,
		int, int8, int16, int32, int64,
		uint, uint8, uint16, uint32, uint64, uintptr,
		float32, float64, complex64, complex128,
		time.Time, time.Duration, json.Number:
		return true
	case map[string]any, []any, []string, []byte, map[string]string, Cloner:
		return false
	}
	return sharedKind(reflect.TypeOf(v).Kind())
}
