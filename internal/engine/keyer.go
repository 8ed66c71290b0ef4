package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"go/token"
	"math"
	"math/bits"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Keyer derives the cache key of a step execution from the step's
// build-time fingerprint, its input and the selected state values. Keys of
// different values must differ. A value and what it becomes after a trip
// through encoding/json must give the same key when that trip is faithful
// (see [CanonicalKeyer]): a resumed run's input and state come from a
// snapshot.
type Keyer interface {
	Key(fingerprint string, input any, state map[string]any) (string, error)
}

// CanonicalKeyer is the baseline [Keyer]: the hex-encoded SHA-256 of an
// unambiguous encoding of {fingerprint, input, state}. Every part is
// length-prefixed or tagged, so no two different inputs (or state maps, or
// fingerprints) share an encoding, and no concatenation of parts can pass
// for another. The input and each state value are encoded on their own, in
// one of two ways.
//
// A JSON-faithful value — one encoding/json writes without losing anything
// — is encoded as the JSON data it stands for, so that it keys alike with
// what it becomes after a trip through encoding/json (decoded into any,
// with or without UseNumber): object members sorted by name, numbers by
// their exact value (1, int64(1), 1.0 and json.Number("1e0") alike; -0.0
// apart from 0; an int beyond 2^53 keeps every digit, so it keys apart
// from the float64 it rounds to). A value is faithful when each of its
// parts is: nil; a bool; an int, uint or finite float of any size; a string
// of valid UTF-8; a json.Number of valid JSON syntax; a time.Time in UTC
// with a year in [0, 9999] (its RFC 3339 text, as encoding/json writes
// it); a slice or array of faithful values other than bytes; a map with
// string keys of valid UTF-8 and faithful values; a pointer or interface
// holding a faithful value, or nil (JSON null); and a struct whose every
// field, embedded structs flattened, is exported, has a distinct JSON
// name, carries neither `json:"-"` nor the ",string" option, is not an
// embedded pointer, and is not an empty non-nil slice or map marked
// omitempty, nor (with omitzero) of a type with an IsZero method other
// than time.Time. No part's type, nor its pointer, may implement
// [json.Marshaler] or [encoding.TextMarshaler]. Struct fields are named
// and omitted (omitempty, omitzero) as encoding/json names and omits
// them, so a struct keys alike with the map it decodes into. Two faithful
// values key alike exactly when their JSON documents hold the same data.
//
// Any other value is encoded as the Go value it is: its dynamic type
// (package path and name), then every part in full — unexported fields,
// bytes, map entries (sorted by their encoding), the type of every
// interface's content, nil apart from empty — with pointers followed. Such
// an encoding is tagged apart from every faithful one; two such values key
// alike when they have the same type and deeply equal contents (pointers
// compared by what they point to). Exceptions, documented: a time's
// *time.Location is encoded as UTC, Local or its zone rules; a
// sync.Mutex or sync.RWMutex holds no data and encodes as nothing; values
// of package sync/atomic are read atomically when they are shared; other
// types of package sync (Cond, Map, Pool, WaitGroup), and a non-nil func,
// chan or unsafe.Pointer, cannot be keyed.
//
// Key calls no method of the values it keys. It fails on a value it cannot
// key, on a cycle (a value that contains itself: a pointer, map or slice
// reached again inside itself) and on values nested more than 10000 levels
// deep; the error names the path to the offending part. Safe for concurrent
// use. BenchmarkCanonicalKey measures it.
type CanonicalKeyer struct{}

// keyVersion opens every encoding, so that keys of another encoding scheme
// never meet these.
const keyVersion = "caudal-cache-key/2\x00"

// EncodingVersion is what opens every encoding [EncodeKey] hands its
// finish func: a keyer that versions its keys otherwise may drop it.
const EncodingVersion = keyVersion

// Tags of the encodings. A top-level value starts with tagJSON or tagGo;
// the JSON encoding tags each datum.
const (
	tagJSON   = 'J'
	tagGo     = 'G'
	tagNull   = 'n'
	tagFalse  = 'f'
	tagTrue   = 't'
	tagNumber = '#'
	tagString = 's'
	tagArray  = '['
	endArray  = ']'
	tagObject = '{'
	tagMember = 'k'
	endObject = '}'
)

// Number forms after tagNumber.
const (
	numZero     = 0 // +0
	numNegZero  = 1 // -0
	numPos      = 2 // N·2^a·5^b, N coprime to 10: uvarint N, varint a, varint b
	numNeg      = 3
	numPosDigit = 4 // a decimal whose digits overflow uint64: uvarint len, digits, varint exponent
	numNegDigit = 5
)

const (
	// maxDepth bounds nesting, as encoding/json's decoder does: a snapshot
	// holds nothing deeper.
	maxDepth = 10000
	// cycleDepth is the nesting past which the encoders record the
	// pointers, maps and slices they are inside, to detect a cycle: a
	// cyclic value reaches any depth, a shallow one pays nothing.
	cycleDepth = 100
	// maxExponent bounds a json.Number's exponent; one beyond is keyed as
	// a Go string.
	maxExponent = 1_000_000_000
)

// Key implements [Keyer].
func (CanonicalKeyer) Key(fingerprint string, input any, state map[string]any) (string, error) {
	return EncodeKey(fingerprint, input, state, sha256Hex)
}

// sha256Hex is the baseline's key of an encoding.
func sha256Hex(enc []byte) string {
	sum := sha256.Sum256(enc)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// EncodeKey encodes {fingerprint, input, state} as [CanonicalKeyer] does
// and returns finish(encoding): another [Keyer] may derive its key from
// the same unambiguous encoding. The encoding is valid only during the
// call to finish, which must not retain it. The errors are Key's.
func EncodeKey(fingerprint string, input any, state map[string]any, finish func(enc []byte) string) (string, error) {
	e := encoders.Get().(*encoder)
	defer e.release()
	e.buf = append(e.buf, keyVersion...)
	e.str(fingerprint)
	if err := e.top(input); err != nil {
		err.root = "input"
		return "", err
	}
	e.buf = binary.AppendUvarint(e.buf, uint64(len(state)))
	if len(state) > 0 {
		names := e.names[:0]
		for k := range state {
			names = append(names, k)
		}
		slices.Sort(names)
		e.names = names
		for _, k := range names {
			e.str(k)
			if err := e.top(state[k]); err != nil {
				err.root = "state " + strconv.Quote(k)
				return "", err
			}
		}
	}
	return finish(e.buf), nil
}

// encoder holds one Key call's buffer and scratch.
type encoder struct {
	buf   []byte
	names []string // the state's keys
	keys  []string // JSON: map keys being sorted, a stack
	kvs   []kv     // JSON: reflected map entries being sorted, a stack
	spans []span   // Go: map entries being sorted, a stack
	tmp   []byte   // Go: a map's entries while they are reordered
	depth int
	path  map[ref]struct{} // pointers, maps and slices being encoded, past cycleDepth
}

type kv struct {
	k string
	v reflect.Value
}

type span struct{ lo, hi int }

// ref identifies a pointer, map or slice being encoded.
type ref struct {
	p unsafe.Pointer
	t reflect.Type
	n int
}

var encoders = sync.Pool{New: func() any { return new(encoder) }}

// release clears what e references and pools it, unless it grew large.
func (e *encoder) release() {
	if cap(e.buf) > 64<<10 || cap(e.tmp) > 64<<10 {
		return
	}
	clear(e.names[:cap(e.names)])
	clear(e.keys[:cap(e.keys)])
	clear(e.kvs[:cap(e.kvs)])
	e.buf, e.names, e.keys, e.kvs, e.spans, e.tmp = e.buf[:0], e.names[:0], e.keys[:0], e.kvs[:0], e.spans[:0], e.tmp[:0]
	e.reset()
	encoders.Put(e)
}

// reset forgets a walk left unfinished.
func (e *encoder) reset() {
	e.depth = 0
	clear(e.path)
	e.keys, e.kvs, e.spans = e.keys[:0], e.kvs[:0], e.spans[:0]
}

// top encodes a top-level value: as JSON data if it is faithful, else as
// the Go value.
func (e *encoder) top(x any) *keyError {
	mark := len(e.buf)
	e.buf = append(e.buf, tagJSON)
	if e.json(x) {
		return nil
	}
	e.buf = append(e.buf[:mark], tagGo)
	e.reset()
	return e.goAny(x)
}

// str appends s, length first.
func (e *encoder) str(s string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// deeper descends one level, reporting false past maxDepth.
func (e *encoder) deeper() bool {
	e.depth++
	return e.depth <= maxDepth
}

// track records that r is being encoded, once deeper than cycleDepth (the
// caller checks), reporting false past maxDepth or, with cycle, when r is
// being encoded already. The caller deletes r from e.path when done.
func (e *encoder) track(r ref) (ok, cycle bool) {
	if e.depth > maxDepth {
		return false, false
	}
	if _, dup := e.path[r]; dup {
		return false, true
	}
	if e.path == nil {
		e.path = make(map[ref]struct{})
	}
	e.path[r] = struct{}{}
	return true, false
}

// Types the encoders single out.
var (
	numberType    = reflect.TypeFor[json.Number]()
	timeType      = reflect.TypeFor[time.Time]()
	locationPtr   = reflect.TypeFor[*time.Location]()
	mapAnyType    = reflect.TypeFor[map[string]any]()
	mapStringType = reflect.TypeFor[map[string]string]()
	sliceAnyType  = reflect.TypeFor[[]any]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
	isZeroerType  = reflect.TypeFor[interface{ IsZero() bool }]()
)

// ---- JSON data ----

// json appends x as JSON data, reporting false (leaving e.buf to be cut
// back) when x is not JSON-faithful.
func (e *encoder) json(x any) bool {
	switch x := x.(type) {
	case nil:
		e.buf = append(e.buf, tagNull)
		return true
	case string:
		return e.jsonString(x)
	case bool:
		e.jsonBool(x)
		return true
	case float64:
		return e.jsonFloat64(x)
	case int:
		e.jsonInt(int64(x))
		return true
	case int64:
		e.jsonInt(x)
		return true
	case json.Number:
		return e.jsonNumber(string(x))
	case map[string]any:
		return e.jsonMap(x)
	case []any:
		return e.jsonSlice(x)
	}
	return e.jsonValue(reflect.ValueOf(x))
}

func (e *encoder) jsonString(s string) bool {
	if !utf8.ValidString(s) {
		return false // encoding/json writes every invalid byte as U+FFFD
	}
	e.buf = append(e.buf, tagString)
	e.str(s)
	return true
}

func (e *encoder) jsonBool(b bool) {
	if b {
		e.buf = append(e.buf, tagTrue)
	} else {
		e.buf = append(e.buf, tagFalse)
	}
}

func (e *encoder) jsonInt(i int64) {
	u := uint64(i)
	if i < 0 {
		u = -u
	}
	e.number(i < 0, u, 0, 0)
}

func (e *encoder) jsonFloat64(f float64) bool {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return false
	}
	b := math.Float64bits(f)
	exp, mant := int64(b>>52)&0x7ff, b&(1<<52-1)
	if exp == 0 {
		exp = 1 // subnormal
	} else {
		mant |= 1 << 52
	}
	e.number(b>>63 != 0, mant, exp-1075, 0)
	return true
}

func (e *encoder) jsonFloat32(f float32) bool {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return false
	}
	b := math.Float32bits(f)
	exp, mant := int64(b>>23)&0xff, uint64(b&(1<<23-1))
	if exp == 0 {
		exp = 1
	} else {
		mant |= 1 << 23
	}
	e.number(b>>31 != 0, mant, exp-150, 0)
	return true
}

// number appends the number of magnitude mant·2^a·5^b, normalized so that
// every value has one encoding.
func (e *encoder) number(neg bool, mant uint64, a, b int64) {
	e.buf = append(e.buf, tagNumber)
	if mant == 0 {
		if neg {
			e.buf = append(e.buf, numNegZero)
		} else {
			e.buf = append(e.buf, numZero)
		}
		return
	}
	tz := bits.TrailingZeros64(mant)
	mant >>= tz
	a += int64(tz)
	for mant%5 == 0 {
		mant /= 5
		b++
	}
	if neg {
		e.buf = append(e.buf, numNeg)
	} else {
		e.buf = append(e.buf, numPos)
	}
	e.buf = binary.AppendUvarint(e.buf, mant)
	e.buf = binary.AppendVarint(e.buf, a)
	e.buf = binary.AppendVarint(e.buf, b)
}

// jsonNumber appends the exact value of the JSON number s, reporting false
// when s is not one (encoding/json refuses it, or writes "" as 0) or its
// exponent is beyond maxExponent.
func (e *encoder) jsonNumber(s string) bool {
	i, neg := 0, false
	if i < len(s) && s[i] == '-' {
		neg, i = true, 1
	}
	intStart := i
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	intEnd, fracStart, fracEnd := i, i, i
	if i < len(s) && s[i] == '.' {
		i++
		fracStart = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == fracStart {
			return false
		}
		fracEnd = i
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			if exp = exp*10 + int64(s[i]-'0'); exp > maxExponent {
				return false
			}
			i++
		}
		if i == start {
			return false
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(s) {
		return false
	}
	// The digits are s[intStart:intEnd] followed by s[fracStart:fracEnd];
	// digit(j) is the j-th of them.
	nInt, n := intEnd-intStart, intEnd-intStart+fracEnd-fracStart
	digit := func(j int) byte {
		if j < nInt {
			return s[intStart+j]
		}
		return s[fracStart+j-nInt]
	}
	first, last := 0, n
	for first < n && digit(first) == '0' {
		first++
	}
	for last > first && digit(last-1) == '0' {
		last--
	}
	exp += int64(n-last) - int64(fracEnd-fracStart)
	var mant uint64
	fits := true
	for j := first; j < last && fits; j++ {
		d := uint64(digit(j) - '0')
		fits = mant <= (math.MaxUint64-d)/10
		mant = mant*10 + d
	}
	if fits {
		e.number(neg, mant, exp, exp)
		return true
	}
	e.buf = append(e.buf, tagNumber)
	if neg {
		e.buf = append(e.buf, numNegDigit)
	} else {
		e.buf = append(e.buf, numPosDigit)
	}
	e.buf = binary.AppendUvarint(e.buf, uint64(last-first))
	for j := first; j < last; j++ {
		e.buf = append(e.buf, digit(j))
	}
	e.buf = binary.AppendVarint(e.buf, exp)
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (e *encoder) jsonMap(m map[string]any) bool {
	if m == nil {
		e.buf = append(e.buf, tagNull)
		return true
	}
	e.depth++
	if e.depth > cycleDepth {
		r := ref{p: reflect.ValueOf(m).UnsafePointer(), t: mapAnyType}
		if ok, _ := e.track(r); !ok {
			return false
		}
		defer delete(e.path, r)
	}
	base := len(e.keys)
	for k := range m {
		e.keys = append(e.keys, k)
	}
	keys := e.keys[base:]
	slices.Sort(keys)
	e.buf = append(e.buf, tagObject)
	for i := range keys {
		k := e.keys[base+i]
		if !e.jsonMember(k) || !e.json(m[k]) {
			return false
		}
	}
	e.keys = e.keys[:base]
	e.buf = append(e.buf, endObject)
	e.depth--
	return true
}

// jsonMember appends an object member's name.
func (e *encoder) jsonMember(k string) bool {
	if !utf8.ValidString(k) {
		return false
	}
	e.buf = append(e.buf, tagMember)
	e.str(k)
	return true
}

func (e *encoder) jsonSlice(s []any) bool {
	if s == nil {
		e.buf = append(e.buf, tagNull)
		return true
	}
	e.depth++
	if e.depth > cycleDepth {
		r := ref{p: unsafe.Pointer(unsafe.SliceData(s)), t: sliceAnyType, n: len(s)}
		if ok, _ := e.track(r); !ok {
			return false
		}
		defer delete(e.path, r)
	}
	e.buf = append(e.buf, tagArray)
	for _, x := range s {
		if !e.json(x) {
			return false
		}
	}
	e.buf = append(e.buf, endArray)
	e.depth--
	return true
}

// jsonValue is json for a reflected value.
func (e *encoder) jsonValue(v reflect.Value) bool {
	t := v.Type()
	k := v.Kind()
	if k == reflect.Interface {
		if v.IsNil() {
			e.buf = append(e.buf, tagNull)
			return true
		}
		if v.CanInterface() {
			return e.json(v.Elem().Interface())
		}
		return e.jsonValue(v.Elem())
	}
	var ti *typeInfo
	if t.PkgPath() != "" || k == reflect.Struct {
		switch t {
		case numberType:
			return e.jsonNumber(v.String())
		case timeType:
			return e.jsonTime(v)
		}
		if ti = infoOf(t); ti.marshals {
			return false
		}
	}
	switch k {
	case reflect.Bool:
		e.jsonBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.jsonInt(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.number(false, v.Uint(), 0, 0)
	case reflect.Float32:
		return e.jsonFloat32(float32(v.Float()))
	case reflect.Float64:
		return e.jsonFloat64(v.Float())
	case reflect.String:
		return e.jsonString(v.String())
	case reflect.Pointer:
		if v.IsNil() {
			e.buf = append(e.buf, tagNull)
			return true
		}
		return e.jsonRef(ref{p: v.UnsafePointer(), t: t}, func() bool { return e.jsonValue(v.Elem()) })
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return false // base64
		}
		if v.IsNil() {
			e.buf = append(e.buf, tagNull)
			return true
		}
		return e.jsonRef(ref{p: v.UnsafePointer(), t: t, n: v.Len()}, func() bool { return e.jsonElems(v) })
	case reflect.Array:
		if !e.deeper() || !e.jsonElems(v) {
			return false
		}
		e.depth--
	case reflect.Map:
		return e.jsonReflectMap(v)
	case reflect.Struct:
		return e.jsonStruct(v, ti)
	default: // complex, func, chan, unsafe.Pointer
		return false
	}
	return true
}

func (e *encoder) jsonElems(v reflect.Value) bool {
	e.buf = append(e.buf, tagArray)
	for i := range v.Len() {
		if !e.jsonValue(v.Index(i)) {
			return false
		}
	}
	e.buf = append(e.buf, endArray)
	return true
}

func (e *encoder) jsonReflectMap(v reflect.Value) bool {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		return false // encoding/json writes other keys as text
	}
	if t == mapStringType && v.CanInterface() {
		return e.jsonStringMap(v.Interface().(map[string]string))
	}
	if v.IsNil() {
		e.buf = append(e.buf, tagNull)
		return true
	}
	e.depth++
	if e.depth > cycleDepth {
		r := ref{p: v.UnsafePointer(), t: t}
		if ok, _ := e.track(r); !ok {
			return false
		}
		defer delete(e.path, r)
	}
	base := len(e.kvs)
	for it := v.MapRange(); it.Next(); {
		e.kvs = append(e.kvs, kv{it.Key().String(), it.Value()})
	}
	kvs := e.kvs[base:]
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	e.buf = append(e.buf, tagObject)
	for i := range kvs {
		m := e.kvs[base+i]
		if !e.jsonMember(m.k) || !e.jsonValue(m.v) {
			return false
		}
	}
	clear(e.kvs[base:])
	e.kvs = e.kvs[:base]
	e.buf = append(e.buf, endObject)
	e.depth--
	return true
}

// jsonStringMap is jsonMap for a map[string]string, without reflection.
func (e *encoder) jsonStringMap(m map[string]string) bool {
	if m == nil {
		e.buf = append(e.buf, tagNull)
		return true
	}
	base := len(e.keys)
	for k := range m {
		e.keys = append(e.keys, k)
	}
	keys := e.keys[base:]
	slices.Sort(keys)
	e.buf = append(e.buf, tagObject)
	for _, k := range keys {
		if !e.jsonMember(k) || !e.jsonString(m[k]) {
			return false
		}
	}
	e.keys = e.keys[:base]
	e.buf = append(e.buf, endObject)
	return true
}

// jsonTime appends a UTC time as the text encoding/json writes for it.
func (e *encoder) jsonTime(v reflect.Value) bool {
	if !v.CanInterface() {
		return false
	}
	t := v.Interface().(time.Time)
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		return false // the zone's name would be lost, or encoding/json fails
	}
	var text [64]byte
	b := t.AppendFormat(text[:0], time.RFC3339Nano)
	e.buf = append(e.buf, tagString)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(b)))
	e.buf = append(e.buf, b...)
	return true
}

func (e *encoder) jsonStruct(v reflect.Value, ti *typeInfo) bool {
	if !ti.faithful {
		return false
	}
	if !e.deeper() {
		return false
	}
	e.buf = append(e.buf, tagObject)
	for i := range ti.fields {
		f := &ti.fields[i]
		fv := v.FieldByIndex(f.index)
		if f.omitEmpty && isEmptyValue(fv) {
			if k := fv.Kind(); (k == reflect.Slice || k == reflect.Map) && !fv.IsNil() {
				return false // omitted like nil: the two would key alike
			}
			continue
		}
		if f.omitZero {
			zero := fv.IsZero()
			if !zero && f.isTime && fv.Interface().(time.Time).IsZero() {
				return false // omitted like the zero time
			}
			if zero {
				continue
			}
		}
		e.buf = append(e.buf, tagMember)
		e.str(f.name)
		if !e.jsonValue(fv) {
			return false
		}
	}
	e.buf = append(e.buf, endObject)
	e.depth--
	return true
}

// isEmptyValue is encoding/json's test for omitempty.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64,
		reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// ---- Go values ----

// goAny appends x as a Go value of interface type: nil, or its dynamic
// type and the value.
func (e *encoder) goAny(x any) *keyError {
	if x == nil {
		e.buf = append(e.buf, 0)
		return nil
	}
	v := reflect.ValueOf(x)
	e.buf = append(e.buf, 1)
	e.str(typeName(v.Type()))
	return e.goValue(v)
}

// goValue appends v, whose type the context fixes.
func (e *encoder) goValue(v reflect.Value) *keyError {
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			e.buf = append(e.buf, 1)
		} else {
			e.buf = append(e.buf, 0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.buf = binary.AppendVarint(e.buf, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.buf = binary.AppendUvarint(e.buf, v.Uint())
	case reflect.Float32:
		e.buf = binary.LittleEndian.AppendUint32(e.buf, math.Float32bits(float32(v.Float())))
	case reflect.Float64:
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(v.Float()))
	case reflect.Complex64:
		c := v.Complex()
		e.buf = binary.LittleEndian.AppendUint32(e.buf, math.Float32bits(float32(real(c))))
		e.buf = binary.LittleEndian.AppendUint32(e.buf, math.Float32bits(float32(imag(c))))
	case reflect.Complex128:
		c := v.Complex()
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(real(c)))
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(imag(c)))
	case reflect.String:
		e.str(v.String())
	case reflect.Interface:
		if v.IsNil() {
			e.buf = append(e.buf, 0)
			return nil
		}
		elem := v.Elem()
		e.buf = append(e.buf, 1)
		e.str(typeName(elem.Type()))
		if !e.deeper() {
			return tooDeep()
		}
		if err := e.goValue(elem); err != nil {
			return err
		}
		e.depth--
	case reflect.Pointer:
		return e.goPointer(v)
	case reflect.Slice:
		return e.goSlice(v)
	case reflect.Array:
		return e.goArray(v)
	case reflect.Map:
		return e.goMap(v)
	case reflect.Struct:
		return e.goStruct(v)
	default: // func, chan, unsafe.Pointer
		if v.IsNil() {
			e.buf = append(e.buf, 0)
			return nil
		}
		return &keyError{msg: "cannot key a value of type " + v.Type().String()}
	}
	return nil
}

func (e *encoder) goPointer(v reflect.Value) *keyError {
	t := v.Type()
	if t == locationPtr {
		return e.goLocation(v)
	}
	if v.IsNil() {
		e.buf = append(e.buf, 0)
		return nil
	}
	e.buf = append(e.buf, 1)
	return e.goRef(ref{p: v.UnsafePointer(), t: t}, func() *keyError {
		return e.goValue(v.Elem())
	})
}

// goRef encodes, with enc, the pointer, map or slice r, one level deeper.
func (e *encoder) goRef(r ref, enc func() *keyError) *keyError {
	e.depth++
	if e.depth > cycleDepth {
		ok, cycle := e.track(r)
		switch {
		case cycle:
			return &keyError{msg: "a cycle: a value of type " + r.t.String() + " contains itself"}
		case !ok:
			return tooDeep()
		}
		defer delete(e.path, r)
	}
	if err := enc(); err != nil {
		return err
	}
	e.depth--
	return nil
}

// jsonRef is goRef for the JSON encoding.
func (e *encoder) jsonRef(r ref, enc func() bool) bool {
	e.depth++
	if e.depth > cycleDepth {
		if ok, _ := e.track(r); !ok {
			return false
		}
		defer delete(e.path, r)
	}
	if !enc() {
		return false
	}
	e.depth--
	return true
}

func tooDeep() *keyError {
	return &keyError{msg: "nested more than " + strconv.Itoa(maxDepth) + " levels deep"}
}

// goLocation appends a time zone: UTC (or nil), Local, or its rules.
func (e *encoder) goLocation(v reflect.Value) *keyError {
	p := v.UnsafePointer()
	switch p {
	case nil, unsafe.Pointer(time.UTC):
		e.buf = append(e.buf, 0)
		return nil
	case unsafe.Pointer(time.Local):
		e.buf = append(e.buf, 1)
		return nil
	}
	e.buf = append(e.buf, 2)
	loc := v.Elem()
	// The name, zones, transitions and extension string; not the cache of
	// the zone in effect when the location was loaded.
	for _, name := range []string{"name", "zone", "tx", "extend"} {
		if f := loc.FieldByName(name); f.IsValid() {
			if err := e.goValue(f); err != nil {
				return err.at("." + name)
			}
		}
	}
	return nil
}

func (e *encoder) goSlice(v reflect.Value) *keyError {
	if v.IsNil() {
		e.buf = append(e.buf, 0)
		return nil
	}
	e.buf = append(e.buf, 1)
	n := v.Len()
	e.buf = binary.AppendUvarint(e.buf, uint64(n))
	t := v.Type()
	if t.Elem().Kind() == reflect.Uint8 {
		e.buf = append(e.buf, v.Bytes()...)
		return nil
	}
	return e.goRef(ref{p: v.UnsafePointer(), t: t, n: n}, func() *keyError {
		for i := range n {
			if err := e.goValue(v.Index(i)); err != nil {
				return err.at("[" + strconv.Itoa(i) + "]")
			}
		}
		return nil
	})
}

func (e *encoder) goArray(v reflect.Value) *keyError {
	if v.Type().Elem().Kind() == reflect.Uint8 {
		if v.CanAddr() {
			e.buf = append(e.buf, v.Bytes()...)
			return nil
		}
		for i := range v.Len() {
			e.buf = append(e.buf, byte(v.Index(i).Uint()))
		}
		return nil
	}
	if !e.deeper() {
		return tooDeep()
	}
	for i := range v.Len() {
		if err := e.goValue(v.Index(i)); err != nil {
			return err.at("[" + strconv.Itoa(i) + "]")
		}
	}
	e.depth--
	return nil
}

// goMap appends the length of v and its entries, each the key's encoding
// then the value's, sorted by their encoding: keys encode apart, so the
// order is the keys' own.
func (e *encoder) goMap(v reflect.Value) *keyError {
	if v.IsNil() {
		e.buf = append(e.buf, 0)
		return nil
	}
	e.buf = append(e.buf, 1)
	e.buf = binary.AppendUvarint(e.buf, uint64(v.Len()))
	return e.goRef(ref{p: v.UnsafePointer(), t: v.Type()}, func() *keyError { return e.goEntries(v) })
}

// goEntries appends v's entries, sorted.
func (e *encoder) goEntries(v reflect.Value) *keyError {
	start, base := len(e.buf), len(e.spans)
	for it := v.MapRange(); it.Next(); {
		lo := len(e.buf)
		k := it.Key()
		if err := e.goValue(k); err != nil {
			return err.at("[key " + keyText(k) + "]")
		}
		if err := e.goValue(it.Value()); err != nil {
			return err.at("[" + keyText(k) + "]")
		}
		e.spans = append(e.spans, span{lo - start, len(e.buf) - start})
	}
	body, entries := e.buf[start:], e.spans[base:]
	slices.SortFunc(entries, func(a, b span) int { return bytes.Compare(body[a.lo:a.hi], body[b.lo:b.hi]) })
	e.tmp = append(e.tmp[:0], body...)
	e.buf = e.buf[:start]
	for _, s := range entries {
		e.buf = append(e.buf, e.tmp[s.lo:s.hi]...)
	}
	e.spans = e.spans[:base]
	return nil
}

// keyText is a map key for an error's path.
func keyText(k reflect.Value) string {
	switch k.Kind() {
	case reflect.String:
		return strconv.Quote(k.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(k.Uint(), 10)
	}
	return k.Type().String()
}

func (e *encoder) goStruct(v reflect.Value) *keyError {
	t := v.Type()
	if t.PkgPath() != "" {
		if ti := infoOf(t); ti.special != specNone {
			return e.goSpecial(v, ti)
		}
	}
	if !e.deeper() {
		return tooDeep()
	}
	for i := range v.NumField() {
		if err := e.goValue(v.Field(i)); err != nil {
			return err.at("." + t.Field(i).Name)
		}
	}
	e.depth--
	return nil
}

// goSpecial appends a value of package sync or sync/atomic.
func (e *encoder) goSpecial(v reflect.Value, ti *typeInfo) *keyError {
	switch ti.special {
	case specLock:
		return nil
	case specForbidden:
		return &keyError{msg: "cannot key a value of type " + v.Type().String()}
	}
	f := v.Field(ti.field)
	shared := v.CanAddr() // else v is a copy no one else can change
	switch ti.special {
	case specAtomic:
		if !shared {
			return e.goValue(f)
		}
		p := f.Addr().UnsafePointer()
		switch f.Kind() {
		case reflect.Int32:
			e.buf = binary.AppendVarint(e.buf, int64(atomic.LoadInt32((*int32)(p))))
		case reflect.Int64:
			e.buf = binary.AppendVarint(e.buf, atomic.LoadInt64((*int64)(p)))
		case reflect.Uint32:
			e.buf = binary.AppendUvarint(e.buf, uint64(atomic.LoadUint32((*uint32)(p))))
		case reflect.Uint64:
			e.buf = binary.AppendUvarint(e.buf, atomic.LoadUint64((*uint64)(p)))
		case reflect.Uintptr:
			e.buf = binary.AppendUvarint(e.buf, uint64(atomic.LoadUintptr((*uintptr)(p))))
		default:
			return &keyError{msg: "cannot key a value of type " + v.Type().String()}
		}
		return nil
	case specAtomicPointer:
		var p unsafe.Pointer
		if shared {
			p = atomic.LoadPointer((*unsafe.Pointer)(f.Addr().UnsafePointer()))
		} else {
			p = f.UnsafePointer()
		}
		return e.goPointer(reflect.NewAt(ti.elem, p))
	default: // specAtomicValue
		if !shared {
			return e.goValue(f)
		}
		x := (*atomic.Value)(v.Addr().UnsafePointer()).Load()
		if err := e.goAny(x); err != nil {
			return err.at(".Load()")
		}
		return nil
	}
}

// keyError is a value Key cannot key, with the path to it.
type keyError struct {
	root string   // "input" or `state "k"`
	path []string // innermost first
	msg  string
}

func (e *keyError) Error() string {
	var b strings.Builder
	b.WriteString(e.root)
	for i := len(e.path) - 1; i >= 0; i-- {
		b.WriteString(e.path[i])
	}
	b.WriteString(": ")
	b.WriteString(e.msg)
	return b.String()
}

// at prepends a step of the path.
func (e *keyError) at(step string) *keyError {
	e.path = append(e.path, step)
	return e
}

// ---- types ----

// special is how the Go encoding treats a type of package sync or
// sync/atomic.
type special uint8

const (
	specNone          special = iota
	specLock                  // sync.Mutex, sync.RWMutex: no data
	specForbidden             // other types of package sync but Once
	specAtomic                // an atomic integer or Bool: its field v
	specAtomicPointer         // atomic.Pointer[T]: its field v, a *T
	specAtomicValue           // atomic.Value
)

// typeInfo is what the encoders need to know of a named or struct type.
type typeInfo struct {
	marshals bool // the type or its pointer has MarshalJSON or MarshalText
	faithful bool // a struct all of whose fields encoding/json writes faithfully
	fields   []jsonField
	special  special
	field    int          // the value field of an atomic type
	elem     reflect.Type // atomic.Pointer[T]'s T
}

// jsonField is a struct field as encoding/json writes it.
type jsonField struct {
	name      string
	index     []int
	omitEmpty bool
	omitZero  bool
	isTime    bool
}

var typeInfos sync.Map // reflect.Type → *typeInfo

func infoOf(t reflect.Type) *typeInfo {
	if ti, ok := typeInfos.Load(t); ok {
		return ti.(*typeInfo)
	}
	ti := newTypeInfo(t)
	actual, _ := typeInfos.LoadOrStore(t, ti)
	return actual.(*typeInfo)
}

func newTypeInfo(t reflect.Type) *typeInfo {
	ti := &typeInfo{marshals: marshals(t)}
	if t.Kind() == reflect.Struct {
		ti.fields, ti.faithful = jsonFields(t)
		ti.special, ti.field, ti.elem = specialOf(t)
	}
	return ti
}

func marshals(t reflect.Type) bool {
	if t.Implements(marshalerType) || t.Implements(textType) {
		return true
	}
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
		return false
	}
	p := reflect.PointerTo(t)
	return p.Implements(marshalerType) || p.Implements(textType)
}

// jsonFields returns t's fields as encoding/json writes them, sorted by
// name, and whether it writes them faithfully.
func jsonFields(t reflect.Type) ([]jsonField, bool) {
	var fields []jsonField
	seen := map[reflect.Type]bool{t: true}
	var add func(t reflect.Type, index []int) bool
	add = func(t reflect.Type, index []int) bool {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if !sf.IsExported() || tag == "-" {
				return false // left out
			}
			name, opts, _ := strings.Cut(tag, ",")
			if hasOption(opts, "string") {
				return false // written as a string
			}
			if !isValidTag(name) {
				name = ""
			}
			index := append(index[:len(index):len(index)], i)
			ft := sf.Type
			if sf.Anonymous && name == "" {
				if ft.Kind() == reflect.Pointer && ft.Name() == "" && ft.Elem().Kind() == reflect.Struct {
					return false // nil omits its fields
				}
				if ft.Kind() == reflect.Struct {
					if seen[ft] || marshals(ft) {
						return false // fields dropped, or written by a method
					}
					seen[ft] = true
					if !add(ft, index) {
						return false
					}
					continue
				}
			}
			if name == "" {
				name = sf.Name
			}
			f := jsonField{name: name, index: index, omitEmpty: hasOption(opts, "omitempty"), omitZero: hasOption(opts, "omitzero")}
			if f.omitZero {
				if f.isTime = ft == timeType; !f.isTime && implementsIsZero(ft) {
					return false // omitted as a method decides
				}
			}
			fields = append(fields, f)
		}
		return true
	}
	if !add(t, nil) {
		return nil, false
	}
	slices.SortFunc(fields, func(a, b jsonField) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(fields); i++ {
		if fields[i].name == fields[i-1].name {
			return nil, false // encoding/json keeps one or none
		}
	}
	return fields, true
}

func implementsIsZero(t reflect.Type) bool {
	return t.Implements(isZeroerType) || t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(isZeroerType)
}

func hasOption(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}

// isValidTag is encoding/json's test of a tag's name.
func isValidTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

// specialOf classifies a struct type of package sync or sync/atomic.
func specialOf(t reflect.Type) (special, int, reflect.Type) {
	switch t.PkgPath() {
	case "sync":
		switch t.Name() {
		case "Mutex", "RWMutex":
			return specLock, 0, nil
		case "Cond", "Map", "Pool", "WaitGroup":
			return specForbidden, 0, nil
		}
		return specNone, 0, nil // Once (an atomic flag and a lock), noCopy
	case "sync/atomic":
		name := t.Name()
		if !token.IsExported(name) {
			return specNone, 0, nil // noCopy, align64: nothing
		}
		f, ok := t.FieldByName("v")
		if !ok || len(f.Index) != 1 {
			return specForbidden, 0, nil
		}
		switch {
		case name == "Value":
			return specAtomicValue, f.Index[0], nil
		case strings.HasPrefix(name, "Pointer["):
			// Its first field, [0]*T, names T.
			if t.NumField() == 0 || t.Field(0).Type.Kind() != reflect.Array || t.Field(0).Type.Elem().Kind() != reflect.Pointer {
				return specForbidden, 0, nil
			}
			return specAtomicPointer, f.Index[0], t.Field(0).Type.Elem().Elem()
		}
		return specAtomic, f.Index[0], nil
	}
	return specNone, 0, nil
}

var typeNames sync.Map // reflect.Type → string

// typeName names t unambiguously enough for a key: named types by package
// path and name, others by their structure.
func typeName(t reflect.Type) string {
	if s, ok := typeNames.Load(t); ok {
		return s.(string)
	}
	s := newTypeName(t)
	typeNames.Store(t, s)
	return s
}

func newTypeName(t reflect.Type) string {
	if t.Name() != "" {
		if p := t.PkgPath(); p != "" {
			return p + "." + t.Name()
		}
		return t.Name()
	}
	switch t.Kind() {
	case reflect.Pointer:
		return "*" + typeName(t.Elem())
	case reflect.Slice:
		return "[]" + typeName(t.Elem())
	case reflect.Array:
		return "[" + strconv.Itoa(t.Len()) + "]" + typeName(t.Elem())
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	case reflect.Chan:
		return t.ChanDir().String() + " " + typeName(t.Elem())
	case reflect.Struct:
		var b strings.Builder
		b.WriteString("struct {")
		for i := range t.NumField() {
			f := t.Field(i)
			if i > 0 {
				b.WriteString(";")
			}
			b.WriteString(" ")
			if f.PkgPath != "" {
				b.WriteString(f.PkgPath + ".")
			}
			b.WriteString(f.Name)
			if f.Anonymous {
				b.WriteString(" embedded")
			}
			b.WriteString(" " + typeName(f.Type))
			if f.Tag != "" {
				b.WriteString(" " + strconv.Quote(string(f.Tag)))
			}
		}
		b.WriteString(" }")
		return b.String()
	}
	return t.String() // func, interface
}
