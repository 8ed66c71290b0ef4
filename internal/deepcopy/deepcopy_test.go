package deepcopy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/quick"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
)

type (
	myInt    int
	myString string
	state    map[string]any
	raw      []byte
	graph    map[string]graph
	nest     []nest
)

type item struct {
	Name  string
	Attrs map[string]any
	Tags  []string
	When  time.Time
}

type outer struct {
	Items []item
	Index map[int][]int
	Ptr   *int
	Any   any
	Arr   [2][]int
}

type withPrivate struct {
	Pub  []int
	priv []int
}

type node struct {
	Next *node
	Val  int
}

// counted is a Cloner with a value receiver that counts its Clone calls.
type counted struct {
	N     []int
	calls *int
}

func (c counted) Clone() any {
	*c.calls++
	return counted{N: append([]int(nil), c.N...), calls: c.calls}
}

// ptrCloner has Clone on its pointer type only.
type ptrCloner struct{ N []int }

func (p *ptrCloner) Clone() any { return &ptrCloner{N: []int{-1}} } // marks the copy

// nilCloner's Clone returns nil.
type nilCloner struct{ N []int }

func (nilCloner) Clone() any { return nil }

// badCloner returns a value of another type.
type badCloner struct{}

func (badCloner) Clone() any { return 42 }

func TestCopyImmutable(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		give any
	}{
		{"nil", nil},
		{"bool", true},
		{"int", 7},
		{"int8", int8(-8)},
		{"uint64", uint64(1 << 63)},
		{"uintptr", uintptr(3)},
		{"float64", 1.5},
		{"complex128", complex(1, 2)},
		{"string", "hello"},
		{"time", now},
		{"duration", time.Second},
		{"json number", json.Number("12.5")},
		{"named int", myInt(3)},
		{"named string", myString("s")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deepcopy.Copy(tt.give); got != tt.give {
				t.Errorf("Copy(%v) = %v; want %v", tt.give, got, tt.give)
			}
		})
	}
}

// TestCopyIndependent copies a value, mutates the copy and checks that the
// original is still equal to a fresh one.
func TestCopyIndependent(t *testing.T) {
	tests := []struct {
		name   string
		give   func() any
		mutate func(copy any)
	}{
		{
			name: "map[string]any",
			give: func() any { return map[string]any{"a": map[string]any{"b": 1.0}, "s": []any{"x"}} },
			mutate: func(c any) {
				m := c.(map[string]any)
				m["a"].(map[string]any)["b"] = 2.0
				m["s"].([]any)[0] = "y"
				m["new"] = true
			},
		},
		{
			name:   "[]any",
			give:   func() any { return []any{map[string]any{"k": []any{1.0}}, "x"} },
			mutate: func(c any) { c.([]any)[0].(map[string]any)["k"].([]any)[0] = 2.0 },
		},
		{
			name:   "[]string",
			give:   func() any { return []string{"a", "b"} },
			mutate: func(c any) { c.([]string)[0] = "z" },
		},
		{
			name:   "[]byte",
			give:   func() any { return []byte("abc") },
			mutate: func(c any) { c.([]byte)[0] = 'z' },
		},
		{
			name:   "map[string]string",
			give:   func() any { return map[string]string{"a": "b"} },
			mutate: func(c any) { c.(map[string]string)["a"] = "z" },
		},
		{
			name:   "map of slices",
			give:   func() any { return map[int][]int{1: {1, 2}} },
			mutate: func(c any) { c.(map[int][]int)[1][0] = 9 },
		},
		{
			name:   "named map",
			give:   func() any { return state{"m": map[string]any{"k": "v"}} },
			mutate: func(c any) { c.(state)["m"].(map[string]any)["k"] = "w" },
		},
		{
			name:   "slice of ints",
			give:   func() any { return []int{1, 2, 3} },
			mutate: func(c any) { c.([]int)[0] = 9 },
		},
		{
			name:   "named byte slice",
			give:   func() any { return raw("abc") },
			mutate: func(c any) { c.(raw)[0] = 'z' },
		},
		{
			name:   "json.RawMessage",
			give:   func() any { return json.RawMessage(`{"a":1}`) },
			mutate: func(c any) { c.(json.RawMessage)[1] = 'X' },
		},
		{
			name:   "array of slices",
			give:   func() any { return [2][]int{{1}, {2}} },
			mutate: func(c any) { c.([2][]int)[1][0] = 9 },
		},
		{
			name:   "pointer",
			give:   func() any { n := 5; return &n },
			mutate: func(c any) { *c.(*int) = 9 },
		},
		{
			name: "maps in slices in structs in pointers",
			give: func() any {
				n := 1
				return &outer{
					Items: []item{{
						Name:  "a",
						Attrs: map[string]any{"tags": []any{map[string]any{"k": "v"}}},
						Tags:  []string{"t"},
						When:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
					}},
					Index: map[int][]int{1: {1}},
					Ptr:   &n,
					Any:   map[string]any{"deep": &item{Tags: []string{"u"}}},
					Arr:   [2][]int{{1}, {2}},
				}
			},
			mutate: func(c any) {
				o := c.(*outer)
				o.Items[0].Attrs["tags"].([]any)[0].(map[string]any)["k"] = "changed"
				o.Items[0].Tags[0] = "changed"
				o.Items[0].Name = "changed"
				o.Index[1][0] = 9
				*o.Ptr = 9
				o.Any.(map[string]any)["deep"].(*item).Tags[0] = "changed"
				o.Arr[0][0] = 9
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.give()
			got := deepcopy.Copy(orig)
			if !reflect.DeepEqual(got, orig) {
				t.Fatalf("Copy(%#v) = %#v; want an equal value", orig, got)
			}
			tt.mutate(got)
			if want := tt.give(); !reflect.DeepEqual(orig, want) {
				t.Errorf("after mutating the copy, original = %#v; want %#v", orig, want)
			}
		})
	}
}

func TestCopyUnexportedFieldsAreShallow(t *testing.T) {
	orig := withPrivate{Pub: []int{1}, priv: []int{2}}
	got := deepcopy.Copy(orig).(withPrivate)
	got.Pub[0] = 10
	got.priv[0] = 20
	if orig.Pub[0] != 1 {
		t.Errorf("after mutating the copy's exported slice, original = %v; want 1", orig.Pub[0])
	}
	if orig.priv[0] != 20 {
		t.Errorf("after mutating the copy's unexported slice, original = %v; want 20 (shared)", orig.priv[0])
	}
}

func TestCopySharesChansAndFuncs(t *testing.T) {
	type s struct {
		C chan int
		F func() int
	}
	orig := s{C: make(chan int, 1), F: func() int { return 1 }}
	got := deepcopy.Copy(orig).(s)
	if got.C != orig.C {
		t.Errorf("Copy(%v).C = %v; want the same channel %v", orig, got.C, orig.C)
	}
	if got.F == nil || got.F() != 1 {
		t.Errorf("Copy(%v).F is not the original function", orig)
	}
}

func TestCopyNilAndEmpty(t *testing.T) {
	type withNils struct {
		S []int
		M map[string]int
		P *int
		A any
	}
	tests := []struct {
		name string
		give any
	}{
		{"nil []any", []any(nil)},
		{"nil map[string]any", map[string]any(nil)},
		{"nil []string", []string(nil)},
		{"nil []byte", []byte(nil)},
		{"nil map[string]string", map[string]string(nil)},
		{"nil []int", []int(nil)},
		{"nil map[int]int", map[int]int(nil)},
		{"nil named map", state(nil)},
		{"typed nil pointer", (*node)(nil)},
		{"typed nil Cloner pointer", (*ptrCloner)(nil)},
		{"struct of nils", withNils{}},
		{"empty []any", []any{}},
		{"empty map[string]any", map[string]any{}},
		{"empty []byte", []byte{}},
		{"empty []int", []int{}},
		{"empty map[int]int", map[int]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := deepcopy.Copy(tt.give)
			if reflect.TypeOf(got) != reflect.TypeOf(tt.give) {
				t.Fatalf("Copy(%#v) has type %T; want %T", tt.give, got, tt.give)
			}
			// DeepEqual tells nil from empty maps and slices.
			if !reflect.DeepEqual(got, tt.give) {
				t.Errorf("Copy(%#v) = %#v; want %#v", tt.give, got, tt.give)
			}
		})
	}
}

func TestCopyCallsClone(t *testing.T) {
	calls := 0
	c := counted{N: []int{1}, calls: &calls}
	p := &ptrCloner{N: []int{1}}
	tests := []struct {
		name      string
		give      any
		wantCalls int
		check     func(got any) bool
	}{
		{"top level", c, 1, func(got any) bool { return reflect.DeepEqual(got, c) }},
		{"in map[string]any", map[string]any{"a": c, "b": c}, 2, nil},
		{"in []any", []any{c}, 1, nil},
		{"in typed slice", []counted{c, c, c}, 3, nil},
		{"in typed map", map[string]counted{"a": c}, 1, nil},
		{"in struct field", struct{ C counted }{c}, 1, nil},
		{"in interface field", struct{ C any }{c}, 1, nil},
		{"behind pointer", &struct{ C *counted }{&c}, 1, func(got any) bool {
			// *counted has the promoted Clone of counted: a new pointer to a clone.
			return got.(*struct{ C *counted }).C != &c
		}},
		{"top-level pointer to value receiver", &c, 1, func(got any) bool {
			p, ok := got.(*counted)
			return ok && p != &c && reflect.DeepEqual(*p, c)
		}},
		{"pointer receiver", p, 0, func(got any) bool { return got.(*ptrCloner).N[0] == -1 }},
		{"pointer receiver nested", map[string]*ptrCloner{"p": p}, 0, func(got any) bool {
			return got.(map[string]*ptrCloner)["p"].N[0] == -1
		}},
		{"nil pointer nested", []*ptrCloner{nil}, 0, func(got any) bool {
			s := got.([]*ptrCloner)
			return len(s) == 1 && s[0] == nil
		}},
		{"nil result stores the zero value", []nilCloner{{N: []int{1}}}, 0, func(got any) bool {
			return reflect.DeepEqual(got, []nilCloner{{}})
		}},
		{"value of pointer-receiver type", ptrCloner{N: []int{1}}, 0, func(got any) bool {
			return got.(ptrCloner).N[0] == 1 // copied by reflection, not Clone
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = 0
			got := deepcopy.Copy(tt.give)
			if tt.wantCalls > 0 && calls != tt.wantCalls {
				t.Errorf("Copy(%v) called Clone %d times; want %d", tt.give, calls, tt.wantCalls)
			}
			if tt.check != nil && !tt.check(got) {
				t.Errorf("Copy(%v) = %v; not copied by Clone as expected", tt.give, got)
			}
		})
	}
}

func TestCopyPanicsOnMistypedClone(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Clone returned a int") {
			t.Errorf("Copy([]badCloner{{}}) panicked with %v; want a Clone type error", r)
		}
	}()
	deepcopy.Copy([]badCloner{{}})
}

func TestCopyTopLevelCloneResultIsReturnedAsIs(t *testing.T) {
	if got := deepcopy.Copy(badCloner{}); got != 42 {
		t.Errorf("Copy(badCloner{}) = %v; want 42", got)
	}
}

// same reports whether two maps or slices share their storage.
func same(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Type() == vb.Type() && va.UnsafePointer() == vb.UnsafePointer()
}

func TestCopyCycles(t *testing.T) {
	tests := []struct {
		name string
		give func() any
		// loop returns the value the cycle leads back to from the root.
		loop func(root any) any
	}{
		{
			name: "pointer cycle",
			give: func() any {
				a, b := &node{Val: 1}, &node{Val: 2}
				a.Next, b.Next = b, a
				return a
			},
			loop: func(root any) any { return root.(*node).Next.Next },
		},
		{
			name: "self pointer",
			give: func() any { a := &node{}; a.Next = a; return a },
			loop: func(root any) any { return root.(*node).Next },
		},
		{
			name: "map[string]any containing itself",
			give: func() any { m := map[string]any{"x": 1.0}; m["self"] = m; return m },
			loop: func(root any) any { return root.(map[string]any)["self"] },
		},
		{
			name: "[]any containing itself",
			give: func() any { s := []any{nil, "x"}; s[0] = s; return s },
			loop: func(root any) any { return root.([]any)[0] },
		},
		{
			name: "map[string]any cycle through []any",
			give: func() any {
				m := map[string]any{}
				m["list"] = []any{"a", m}
				return m
			},
			loop: func(root any) any { return root.(map[string]any)["list"].([]any)[1] },
		},
		{
			name: "reflected map cycle",
			give: func() any { g := graph{}; g["self"] = g; return g },
			loop: func(root any) any { return root.(graph)["self"] },
		},
		{
			name: "reflected slice cycle",
			give: func() any { s := nest{nil}; s[0] = s; return s },
			loop: func(root any) any { return root.(nest)[0] },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.give()
			got := deepcopy.Copy(orig)
			if same(got, orig) {
				t.Fatalf("Copy(%T) returned the original", orig)
			}
			if back := tt.loop(got); !same(back, got) {
				t.Errorf("Copy(%T): the cycle leads to %p; want the copy %p", orig, back, got)
			}
			if !reflect.DeepEqual(got, orig) {
				t.Errorf("Copy(%T) is not equal to the original", orig)
			}
		})
	}
}

func TestCopyKeepsSharedPointersShared(t *testing.T) {
	n := 1
	m := map[int]int{1: 1}
	type pair struct{ A, B *int }
	tests := []struct {
		name string
		give any
		pick func(got any) (a, b any)
	}{
		{"slice of pointers", []*int{&n, &n}, func(got any) (any, any) { s := got.([]*int); return s[0], s[1] }},
		{"struct fields", pair{&n, &n}, func(got any) (any, any) { p := got.(pair); return p.A, p.B }},
		{"pointers in []any", []any{&n, &n}, func(got any) (any, any) { s := got.([]any); return s[0], s[1] }},
		{"maps in slice", []map[int]int{m, m}, func(got any) (any, any) { s := got.([]map[int]int); return s[0], s[1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.pick(deepcopy.Copy(tt.give))
			if !same(a, b) {
				t.Errorf("Copy(%v): shared value copied twice (%p, %p); want one copy", tt.give, a, b)
			}
			if orig, _ := tt.pick(tt.give); same(a, orig) {
				t.Errorf("Copy(%v) shares %p with the original", tt.give, a)
			}
		})
	}
}

func TestCopyDeepAcyclic(t *testing.T) {
	// Deeper than the untracked limit: Copy starts over tracking everything
	// and must still return an equal, independent copy.
	const depth = 2000
	root := map[string]any{}
	m := root
	for i := range depth {
		next := map[string]any{"i": float64(i)}
		m["next"] = []any{next}
		m = next
	}
	got := deepcopy.Copy(root).(map[string]any)
	if !reflect.DeepEqual(got, root) {
		t.Fatalf("Copy(%d-deep map) is not equal to the original", depth)
	}
	got["next"].([]any)[0].(map[string]any)["i"] = "changed"
	if root["next"].([]any)[0].(map[string]any)["i"] != 0.0 {
		t.Errorf("after mutating the copy, original changed")
	}
}

func TestCopyMap(t *testing.T) {
	if got := deepcopy.CopyMap(nil); got != nil {
		t.Errorf("CopyMap(nil) = %v; want nil", got)
	}
	orig := map[string]any{"a": []any{map[string]any{"b": "c"}}}
	got := deepcopy.CopyMap(orig)
	if !reflect.DeepEqual(got, orig) {
		t.Fatalf("CopyMap(%v) = %v; want an equal map", orig, got)
	}
	got["a"].([]any)[0].(map[string]any)["b"] = "changed"
	if v := orig["a"].([]any)[0].(map[string]any)["b"]; v != "c" {
		t.Errorf("after mutating the copy, original value = %v; want c", v)
	}
	self := map[string]any{}
	self["self"] = self
	if got := deepcopy.CopyMap(self); !same(got["self"], got) {
		t.Errorf("CopyMap(self-referencing map) did not reproduce the cycle")
	}
}

func TestCopyConcurrent(t *testing.T) {
	orig := map[string]any{"a": []any{map[string]any{"b": 1.0}}, "p": &item{Tags: []string{"x"}}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				got := deepcopy.Copy(orig).(map[string]any)
				got["a"].([]any)[0].(map[string]any)["b"] = 2.0
				got["p"].(*item).Tags[0] = "y"
			}
		})
	}
	wg.Wait()
}

// jsonValue is a random value as json.Unmarshal into any produces it.
type jsonValue struct{ V any }

func (jsonValue) Generate(r *rand.Rand, size int) reflect.Value {
	// quick passes size 50; nested four deep that would be 50^4 values.
	b, err := json.Marshal(randomJSON(r, min(size, 6), 4))
	if err != nil {
		panic(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if r.Intn(2) == 0 {
		dec.UseNumber()
	}
	var v any
	if err := dec.Decode(&v); err != nil {
		panic(err)
	}
	return reflect.ValueOf(jsonValue{v})
}

func randomJSON(r *rand.Rand, size, depth int) any {
	kind := r.Intn(7)
	if depth == 0 {
		kind = r.Intn(4)
	}
	switch kind {
	case 0:
		return nil
	case 1:
		return r.Intn(2) == 0
	case 2:
		return r.NormFloat64() * 1000
	case 3:
		return fmt.Sprint(r.Int63())
	case 4, 5:
		m := make(map[string]any)
		for i := range r.Intn(size + 1) {
			m[fmt.Sprint("k", i)] = randomJSON(r, size, depth-1)
		}
		return m
	default:
		s := make([]any, r.Intn(size+1))
		for i := range s {
			s[i] = randomJSON(r, size, depth-1)
		}
		return s
	}
}

// scribble overwrites every map value and slice element reachable from v.
func scribble(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			scribble(x)
			v[k] = "scribbled"
		}
		v["added"] = true
	case []any:
		for i, x := range v {
			scribble(x)
			v[i] = "scribbled"
		}
	}
}

func TestCopyJSONProperty(t *testing.T) {
	prop := func(give jsonValue) bool {
		before, err := json.Marshal(give.V)
		if err != nil {
			t.Fatal(err)
		}
		got := deepcopy.Copy(give.V)
		if !reflect.DeepEqual(got, give.V) {
			t.Logf("Copy(%v) = %v; want an equal value", give.V, got)
			return false
		}
		scribble(got)
		after, err := json.Marshal(give.V)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Logf("after mutating the copy, original = %s; want %s", after, before)
			return false
		}
		return true
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 500}); err != nil {
		t.Error(err)
	}
}

func FuzzCopyJSON(f *testing.F) {
	for _, seed := range []string{`null`, `1`, `"s"`, `[]`, `{}`, `{"a":[1,{"b":null}],"c":true}`, `[[[[]]]]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return
		}
		if got := deepcopy.Copy(v); !reflect.DeepEqual(got, v) {
			t.Errorf("Copy(%v) = %v; want an equal value", v, got)
		}
	})
}

// benchmarkMap returns a map[string]any of n keys, shaped like decoded JSON.
func benchmarkMap(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		k := fmt.Sprint("key", i)
		switch i % 4 {
		case 0:
			m[k] = map[string]any{"id": float64(i), "name": k, "ok": true}
		case 1:
			m[k] = []any{1.0, "two", map[string]any{"three": 3.0}}
		case 2:
			m[k] = k
		default:
			m[k] = float64(i)
		}
	}
	return m
}

func BenchmarkCopy(b *testing.B) {
	for _, n := range []int{8, 64, 1024} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := benchmarkMap(n)
			b.ReportAllocs()
			for b.Loop() {
				deepcopy.Copy(m)
			}
		})
	}
}

func BenchmarkCopyStruct(b *testing.B) {
	n := 1
	v := &outer{
		Items: []item{{Name: "a", Attrs: benchmarkMap(8), Tags: []string{"t"}}},
		Index: map[int][]int{1: {1}},
		Ptr:   &n,
		Any:   benchmarkMap(8),
	}
	b.ReportAllocs()
	for b.Loop() {
		deepcopy.Copy(v)
	}
}
