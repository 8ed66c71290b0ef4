package engine_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caudal-go/caudal/internal/engine"
)

// Types whose JSON encoding loses something.
type (
	hidden struct {
		Name string
		note string
	}
	hiddenTwin struct {
		Name string
		note string
	}
	dashed struct {
		Name   string
		Secret string `json:"-"`
	}
	lossyJSON struct{ N int }
	lossyText struct{ N int }
	// panicky would panic if the keyer called its method.
	panicky   struct{ N int }
	withBytes struct{ B []byte }
	omitted   struct {
		L []int `json:"l,omitempty"`
	}
	quoted struct {
		N int `json:"n,string"`
	}
	stamped     struct{ At time.Time }
	stampedZero struct {
		At time.Time `json:"at,omitzero"`
	}
	counter struct {
		mu sync.Mutex
		n  atomic.Int64
		p  atomic.Pointer[string]
		v  atomic.Value
	}
	callback struct {
		Name string
		Fn   func()
	}
	node struct {
		Name string
		Next *node
	}
	doublePtr  struct{ p **int }
	onceHolder struct {
		once sync.Once
		N    int
	}
	byteArray struct{ a [2]byte }
	// Faithful: embedded structs are flattened as encoding/json does.
	Base  struct{ ID string }
	outer struct {
		Base
		Qty int `json:"qty"`
	}
	// Two fields named ID: encoding/json keeps the shallower.
	shadowed struct {
		Base
		ID string
	}
)

func (lossyJSON) MarshalJSON() ([]byte, error) { return []byte(`"same"`), nil }
func (lossyText) MarshalText() ([]byte, error) { return []byte("same"), nil }
func (panicky) MarshalJSON() ([]byte, error)   { panic("MarshalJSON called") }

func key(t *testing.T, fp string, input any, state map[string]any) string {
	t.Helper()
	k, err := engine.CanonicalKeyer{}.Key(fp, input, state)
	if err != nil {
		t.Fatalf("Key(%q, %#v, %#v) = %v", fp, input, state, err)
	}
	return k
}

// useNumber returns v as encoding/json gives it back with UseNumber.
func useNumber(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	if err := d.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// TestCanonicalKeyerAgrees lists values that must key alike: a value and
// what JSON gives back of it (else a resumed run misses the cache), and
// equal values built differently, as the input and as a state value. The
// JSON-encoding keyer failed the json.Number rows (it compared numbers by
// their text) and the nil-func row (an error); a keyer that skips the
// normalization of numbers fails the json.Number rows too.
func TestCanonicalKeyerAgrees(t *testing.T) {
	n := 1
	var nilInt *int
	paris := time.FixedZone("CET", 3600)
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	tests := []struct {
		name     string
		in1, in2 any
	}{
		{"struct and its decoded map", order{Zeta: "z", Alpha: 1}, map[string]any{"zeta": "z", "alpha": float64(1)}},
		{"untagged struct and its decoded map", struct {
			Zeta  string
			Alpha int
		}{"z", 1}, map[string]any{"Zeta": "z", "Alpha": float64(1)}},
		{"ints and their decoded floats", map[string]any{"n": 1, "list": []any{"a", 2}}, map[string]any{"list": []any{"a", 2.0}, "n": 1.0}},
		{"int and float64", 7, 7.0},
		{"int8 and uint64", int8(-3) + 3, uint64(0)},
		{"2^53 as int64 and float64", int64(1 << 53), float64(1 << 53)},
		{"int and json.Number", 100, json.Number("1e2")},
		{"float and json.Number", 0.5, json.Number("5.000e-1")},
		{"-0 and json.Number -0", math.Copysign(0, -1), json.Number("-0.0")},
		{"float32 and float64 of a dyadic value", float32(2.75), 2.75},
		{"big json.Numbers", json.Number("123456789012345678901234567890"), json.Number("12345678901234567890123456789.0e1")},
		{"map and the same map typed", map[string]any{"b": "x"}, map[string]string{"b": "x"}},
		{"typed map and decoded map", map[string]int{"a": 1, "b": 2}, map[string]any{"b": 2.0, "a": 1.0}},
		{"pointer and its value", &n, 1},
		{"pointer to pointer and its value", ptr(&n), 1.0},
		{"nil pointer and nil", nilInt, nil},
		{"nil pointer to pointer and nil", ptr(nilInt), nil},
		{"array and slice", [3]int{1, 2, 3}, []any{1.0, 2.0, 3.0}},
		{"byte array and numbers", [2]byte{1, 2}, []any{1.0, 2.0}},
		{"nil slice omitted", omitted{}, map[string]any{}},
		{"UTC time and its text", stamped{At: at}, map[string]any{"At": "2024-05-06T07:08:09.123456789Z"}},
		{"zero time omitted", stampedZero{}, map[string]any{}},
		{"embedded struct flattened", outer{Base{"o-1"}, 2}, map[string]any{"ID": "o-1", "qty": 2.0}},
		{"equal hidden fields", hidden{"a", "x"}, hidden{"a", "x"}},
		{"Go map in any order", map[int]string{1: "a", 2: "b", 3: "c"}, map[int]string{3: "c", 2: "b", 1: "a"}},
		{"equal times in a zone", at.In(paris), at.In(paris)},
		{"lock state is not data", &counter{}, func() *counter { c := &counter{}; c.mu.Lock(); return c }()},
		{"nil func is nil", callback{Name: "a"}, callback{Name: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k1, k2 := key(t, "fp", tt.in1, nil), key(t, "fp", tt.in2, nil); k1 != k2 {
				t.Errorf("Key(%#v) = %s, Key(%#v) = %s; want the same key", tt.in1, k1, tt.in2, k2)
			}
			if k1, k2 := key(t, "fp", "q", map[string]any{"s": tt.in1}), key(t, "fp", "q", map[string]any{"s": tt.in2}); k1 != k2 {
				t.Errorf("as a state value: Key(%#v) = %s, Key(%#v) = %s; want the same key", tt.in1, k1, tt.in2, k2)
			}
		})
	}
}

// TestCanonicalKeyerSurvivesUseNumber: a snapshot decoded with UseNumber
// keeps every digit of an int, and the key agrees. The JSON-encoding
// keyer failed the rows beyond 2^53: it sent every number through float64.
func TestCanonicalKeyerSurvivesUseNumber(t *testing.T) {
	tests := []struct {
		name string
		give any
	}{
		{"small ints", map[string]any{"n": 1, "list": []any{"a", 2}}},
		{"int beyond 2^53", int64(1<<62 + 1)},
		{"min int64", int64(math.MinInt64)},
		{"max uint64", uint64(math.MaxUint64)},
		{"dyadic float", 0.375},
		{"struct", order{Zeta: "z", Alpha: -40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k1, k2 := key(t, "fp", tt.give, nil), key(t, "fp", useNumber(t, tt.give), nil); k1 != k2 {
				t.Errorf("Key(%#v) = %s, Key(its UseNumber trip) = %s; want the same key", tt.give, k1, k2)
			}
		})
	}
}

// TestCanonicalKeyerDiffers lists different values that must key apart.
// The JSON-encoding keyer gave one key to most of these pairs (and ran
// the panicking MarshalJSON); a keyer that writes strings without their
// length fails the two framing rows; a draft that walked into sync.Once's
// noCopy field refused the Once row.
func TestCanonicalKeyerDiffers(t *testing.T) {
	one, two := 1, 2
	var nilInt *int
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name     string
		in1, in2 any
	}{
		{"unexported field", hidden{"a", "x"}, hidden{"a", "y"}},
		{"unexported field vs decoded map", hidden{"a", "x"}, map[string]any{"Name": "a"}},
		{"same fields, other type, Go encoding", hidden{"a", "x"}, hiddenTwin{"a", "x"}},
		{`json:"-"`, dashed{"a", "1"}, dashed{"a", "2"}},
		{"lossy MarshalJSON", lossyJSON{1}, lossyJSON{2}},
		{"lossy MarshalJSON vs its output", lossyJSON{1}, "same"},
		{"lossy MarshalText", lossyText{1}, lossyText{2}},
		{"panicking MarshalJSON is never called", panicky{1}, panicky{2}},
		{"bytes vs their base64", []byte("hi"), "aGk="},
		{"bytes vs string", []byte("hi"), "hi"},
		{"bytes in a struct", withBytes{[]byte{1}}, withBytes{[]byte{2}}},
		{"nil vs empty bytes", []byte(nil), []byte{}},
		{"2^53+1 vs 2^53", int64(1<<53 + 1), int64(1 << 53)},
		{"2^53+1 vs float64 2^53", int64(1<<53 + 1), float64(1 << 53)},
		{"2^60 vs its float64's JSON digits", float64(1 << 60), int64(1152921504606847000)},
		{"max uint64 vs 2^64 float", uint64(math.MaxUint64), float64(1 << 64)},
		{"0.1 vs json.Number 0.1: exact values differ", 0.1, json.Number("0.1")},
		{"-0 vs 0", math.Copysign(0, -1), 0.0},
		{"float32 0.1 vs float64 0.1", float32(0.1), 0.1},
		{"map[int] vs map[string] with the same text keys", map[int]string{1: "a"}, map[string]string{"1": "a"}},
		{"Go map entries swapped", map[int]string{1: "a", 2: "b"}, map[int]string{1: "b", 2: "a"}},
		{"nested pointers", ptr(&one), ptr(&two)},
		{"nil pointer inside vs nil outside, Go encoding", doublePtr{p: ptr(nilInt)}, doublePtr{}},
		{"nil pointer vs zero", nilInt, 0},
		{"string vs number", "1", 1},
		{"json.Number vs its text", json.Number("1"), "1"},
		{"bool vs number", true, 1},
		{"null vs empty string", nil, ""},
		{"empty array vs empty object", []any{}, map[string]any{}},
		{"nil slice vs empty slice", []int(nil), []int{}},
		{"empty non-nil slice omitted vs nil", omitted{L: []int{}}, omitted{}},
		{",string option", quoted{1}, map[string]any{"n": "1"}},
		{"invalid UTF-8", "\xff", "\xfe"},
		{"invalid UTF-8 vs replacement", "\xff", "\ufffd"},
		{"invalid UTF-8 key", map[string]int{"\xff": 1}, map[string]int{"\xfe": 1}},
		{"split strings", []string{"a", "b"}, []string{"ab"}},
		{"a string holding a split's framing", []string{"a", "b"}, []string{"asb"}},
		{"a key holding a member's framing", map[string]string{"a": "b", "c": "d"}, map[string]string{"a": "bkcsd"}},
		{"empty string moved", []string{"a", ""}, []string{"", "a"}},
		{"map key and value boundary", map[string]string{"a": "bc"}, map[string]string{"ab": "c"}},
		{"quote in a key", map[string]any{"a": "b", "c": "d"}, map[string]any{`a":"b","c`: "d"}},
		{"struct vs map missing a field", order{Zeta: "x"}, map[string]any{"zeta": "x"}},
		{"same instant, other zone", at, at.In(time.FixedZone("X", 0))},
		{"time vs a later one", at, at.Add(time.Nanosecond)},
		{"shadowed field", shadowed{Base{"inner"}, "outer"}, shadowed{Base{"other"}, "outer"}},
		{"NaN vs Inf", math.NaN(), math.Inf(1)},
		{"Inf vs -Inf", math.Inf(1), math.Inf(-1)},
		{"any(1) vs any(1.0) inside a Go value", struct{ x any }{1}, struct{ x any }{1.0}},
		{"atomic counter", func() *counter { c := &counter{}; c.n.Store(1); return c }(), func() *counter { c := &counter{}; c.n.Store(2); return c }()},
		{"atomic pointer", func() *counter { c := &counter{}; c.p.Store(ptr("a")); return c }(), func() *counter { c := &counter{}; c.p.Store(ptr("b")); return c }()},
		{"atomic value", func() *counter { c := &counter{}; c.v.Store(1); return c }(), func() *counter { c := &counter{}; c.v.Store(2); return c }()},
		{"sync.Once done or not", &onceHolder{N: 1}, func() *onceHolder { o := &onceHolder{N: 1}; o.once.Do(func() {}); return o }()},
		{"byte arrays", byteArray{[2]byte{0x80, 1}}, byteArray{[2]byte{0x80, 2}}},
		{"linked list", &node{"a", &node{"b", nil}}, &node{"a", &node{"c", nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k1, k2 := key(t, "fp", tt.in1, nil), key(t, "fp", tt.in2, nil); k1 == k2 {
				t.Errorf("Key(%#v) = Key(%#v) = %s; want different keys", tt.in1, tt.in2, k1)
			}
		})
	}
}

// TestCanonicalKeyerPlacement: the fingerprint, the input and the state
// are apart in the encoding. The JSON-encoding keyer passed these too:
// they guard the framing of the three parts.
func TestCanonicalKeyerPlacement(t *testing.T) {
	tests := []struct {
		name     string
		fp1, fp2 string
		in1, in2 any
		st1, st2 map[string]any
	}{
		{"fingerprint", "a", "b", "x", "x", nil, nil},
		{"fingerprint vs input boundary", "ab", "a", "", "b", nil, nil},
		{"state vs input", "fp", "fp", map[string]any{"k": 1}, nil, nil, map[string]any{"k": 1}},
		{"value in input vs in state", "fp", "fp", 1, nil, nil, map[string]any{"": 1}},
		{"state key", "fp", "fp", "q", "q", map[string]any{"a": 1}, map[string]any{"b": 1}},
		{"state value", "fp", "fp", "q", "q", map[string]any{"a": 1}, map[string]any{"a": 2}},
		{"state split", "fp", "fp", "q", "q", map[string]any{"a": "b"}, map[string]any{"ab": ""}},
		{"state nil value vs none", "fp", "fp", "q", "q", map[string]any{"a": nil}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k1, k2 := key(t, tt.fp1, tt.in1, tt.st1), key(t, tt.fp2, tt.in2, tt.st2); k1 == k2 {
				t.Errorf("Key(%q, %#v, %#v) = Key(%q, %#v, %#v); want different keys", tt.fp1, tt.in1, tt.st1, tt.fp2, tt.in2, tt.st2)
			}
		})
	}
	same1 := key(t, "fp", "q", map[string]any{"a": 1, "b": "x", "c": []any{1}})
	same2 := key(t, "fp", "q", map[string]any{"c": []any{1.0}, "b": "x", "a": 1.0})
	if same1 != same2 {
		t.Errorf("state keys in another order, ints as floats: %s vs %s; want the same key", same1, same2)
	}
	if none, empty := key(t, "fp", "q", nil), key(t, "fp", "q", map[string]any{}); none != empty {
		t.Errorf("nil state %s vs empty state %s; want the same key", none, empty)
	}
}

// TestCanonicalKeyerErrors: values that cannot be keyed fail, naming the
// path to the offending part; a cycle fails rather than hanging. The
// JSON-encoding keyer overflowed the stack on the map[string]any and []any
// cycles (its shape check recursed without bound), named no path, and
// keyed a WaitGroup.
func TestCanonicalKeyerErrors(t *testing.T) {
	loop := &node{Name: "a"}
	loop.Next = &node{Name: "b", Next: loop}
	selfMap := map[string]any{}
	selfMap["me"] = selfMap
	selfSlice := []any{nil}
	selfSlice[0] = selfSlice
	goMap := map[int]any{}
	goMap[1] = goMap
	deep := any(nil)
	for range 10_050 {
		deep = []any{deep}
	}
	tests := []struct {
		name  string
		give  any
		state map[string]any
		want  string
	}{
		{"func", map[string]any{"f": func() {}}, nil, `input["f"]: cannot key a value of type func()`},
		{"func field", callback{Name: "a", Fn: func() {}}, nil, "input.Fn: cannot key a value of type func()"},
		{"chan in state", "q", map[string]any{"c": make(chan int)}, `state "c": cannot key a value of type chan int`},
		{"wait group", &struct{ wg sync.WaitGroup }{}, nil, "input.wg: cannot key a value of type sync.WaitGroup"},
		{"pointer cycle", loop, nil, "a cycle: a value of type *engine_test.node contains itself"},
		{"map cycle", selfMap, nil, "a cycle: a value of type map[string]interface {} contains itself"},
		{"slice cycle", selfSlice, nil, "a cycle: a value of type []interface {} contains itself"},
		{"Go map cycle", goMap, nil, "a cycle: a value of type map[int]interface {} contains itself"},
		{"too deep", deep, nil, "nested more than 10000 levels deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := engine.CanonicalKeyer{}.Key("fp", tt.give, tt.state)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Key = %q, %v; want an error containing %q", k, err, tt.want)
			}
		})
	}
}

// TestCanonicalKeyerReadsAtomically keys a value whose lock and atomic
// counter another goroutine changes meanwhile: under -race, a plain read
// is reported. A draft that read atomic.Pointer's field before checking
// that it was shared failed it, as does a keyer that reads atomic.Int64
// plainly.
func TestCanonicalKeyerReadsAtomically(t *testing.T) {
	c := &counter{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.mu.Lock()
			c.n.Add(1)
			c.p.Store(ptr("x"))
			c.v.Store(1)
			c.mu.Unlock()
		}
	})
	for range 200 {
		key(t, "fp", c, nil)
	}
	close(stop)
	wg.Wait()
}

// TestCanonicalKeyerIsHex pins the form of a key: 64 lowercase hex digits.
func TestCanonicalKeyerIsHex(t *testing.T) {
	k := key(t, "fp", "x", nil)
	if len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		t.Errorf("Key = %q; want 64 lowercase hex digits", k)
	}
}

// fuzzBuild makes a small value of shape b from s and i, with an identity:
// two builds key alike exactly when their identities are equal. A JSON
// identity spells out the JSON data (numbers by exact value); a Go one
// names the builder, whose Go types differ from every other builder's.
func fuzzBuild(b uint8, s string, i int64) (v any, id string) {
	num := func(x any) string {
		r := new(big.Rat)
		switch x := x.(type) {
		case int64:
			r.SetInt64(x)
		case float64:
			r.SetFloat64(x)
		}
		return "n" + r.RatString()
	}
	str := strconv.Quote
	valid := utf8.ValidString(s)
	goID := func(parts ...string) string { return "G" + strconv.Itoa(int(b%14)) + ":" + strings.Join(parts, "|") }
	switch b % 14 {
	case 0:
		return s, str(s)
	case 1:
		return i, num(i)
	case 2:
		return float64(i), num(float64(i))
	case 3, 13:
		if b%14 == 13 {
			v = &[]any{s, &i}
		} else {
			v = []any{s, i}
		}
		if !valid {
			return v, goID(str(s), strconv.FormatInt(i, 10))
		}
		return v, "[" + str(s) + "," + num(i) + "]"
	case 4:
		if !valid {
			return [2]any{s, float64(i)}, goID(str(s), strconv.FormatFloat(float64(i), 'g', -1, 64))
		}
		return [2]any{s, float64(i)}, "[" + str(s) + "," + num(float64(i)) + "]"
	case 5, 6:
		if b%14 == 5 {
			v = map[string]any{s: i}
		} else {
			v = map[string]int64{s: i}
		}
		if !valid {
			return v, goID(str(s), strconv.FormatInt(i, 10))
		}
		return v, "{" + str(s) + ":" + num(i) + "}"
	case 7:
		v = order{Zeta: s, Alpha: int(i)}
		if !valid {
			return v, goID(str(s), strconv.FormatInt(i, 10))
		}
		return v, `{"alpha":` + num(i) + `,"zeta":` + str(s) + "}"
	case 8:
		return hidden{Name: s, note: strconv.FormatInt(i, 10)}, goID(str(s), strconv.FormatInt(i, 10))
	case 9:
		return withBytes{B: append([]byte(s), byte(i))}, goID(str(s + string([]byte{byte(i)})))
	case 10:
		return map[int64]string{i: s}, goID(str(s), strconv.FormatInt(i, 10))
	case 11:
		n := len(s)
		if n > 0 {
			n = int(uint64(i) % uint64(n+1))
		}
		a, c := s[:n], s[n:]
		if !utf8.ValidString(a) || !utf8.ValidString(c) {
			return []string{a, c}, goID(str(a), str(c))
		}
		return []string{a, c}, "[" + str(a) + "," + str(c) + "]"
	default: // 12
		t := s + strconv.FormatInt(i, 10)
		if !utf8.ValidString(t) {
			return []any{t}, goID(str(t))
		}
		return []any{t}, "[" + str(t) + "]"
	}
}

// FuzzCanonicalKeyInjective builds two small values from strings and ints
// and checks that they key alike exactly when they are the same value
// (by JSON data for faithful values, by Go value otherwise), in the input
// or in the state. The JSON-encoding keyer fails it on a seed (2^53+1
// keyed as 2^53).
func FuzzCanonicalKeyInjective(f *testing.F) {
	f.Add(uint8(3), "a", int64(1), uint8(13), "a", int64(1), false)
	f.Add(uint8(1), "", int64(1<<53+1), uint8(2), "", int64(1<<53), false)
	f.Add(uint8(1), "", int64(1<<53), uint8(2), "", int64(1<<53), true)
	f.Add(uint8(11), "ab", int64(1), uint8(11), "ab", int64(2), false)
	f.Add(uint8(5), `a"`, int64(1), uint8(6), `a"`, int64(1), true)
	f.Add(uint8(0), "\xff", int64(0), uint8(0), "\xfe", int64(0), false)
	f.Add(uint8(9), "hi", int64('!'), uint8(0), "hi!", int64(0), false)
	f.Add(uint8(10), "a", int64(1), uint8(5), "1", int64(0), false)
	f.Add(uint8(12), "x", int64(12), uint8(11), "x12", int64(1), false)
	f.Add(uint8(7), "z", int64(1), uint8(5), "zeta", int64(1), false)
	f.Fuzz(func(t *testing.T, b1 uint8, s1 string, i1 int64, b2 uint8, s2 string, i2 int64, inState bool) {
		v1, id1 := fuzzBuild(b1, s1, i1)
		v2, id2 := fuzzBuild(b2, s2, i2)
		place := func(v any) (any, map[string]any) {
			if inState {
				return "q", map[string]any{"k": v}
			}
			return v, nil
		}
		in1, st1 := place(v1)
		in2, st2 := place(v2)
		k1, k2 := key(t, "fp", in1, st1), key(t, "fp", in2, st2)
		if (k1 == k2) != (id1 == id2) {
			t.Errorf("Key(%#v) == Key(%#v) is %v; identities %s and %s", v1, v2, k1 == k2, id1, id2)
		}
		// The input and the state are apart.
		if key(t, "fp", v1, nil) == key(t, "fp", nil, map[string]any{"k": v1}) {
			t.Errorf("Key(%#v) as input = as state", v1)
		}
	})
}
