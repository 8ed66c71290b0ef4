package statemerge

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/quick"

	"github.com/caudal-go/caudal/internal/deepcopy"
)

// path splits a dotted path; "" is the path of the key "".
func path(s string) []string { return strings.Split(s, ".") }

func set(p string, v any) Write { return Write{Path: path(p), Value: v} }

func del(p string) Write { return Write{Path: path(p), Deleted: true} }

type point struct{ X, Y int }

var diffTests = []struct {
	name        string
	give, after map[string]any // before and after
	want        []Write
}{
	{
		name:  "both nil",
		give:  nil,
		after: nil,
		want:  nil,
	},
	{
		name:  "nil and empty",
		give:  nil,
		after: map[string]any{},
		want:  nil,
	},
	{
		name:  "equal maps",
		give:  map[string]any{"a": 1.0, "b": "x", "c": map[string]any{"d": []any{true, nil}}},
		after: map[string]any{"a": 1.0, "b": "x", "c": map[string]any{"d": []any{true, nil}}},
		want:  nil,
	},
	{
		name:  "added key",
		give:  map[string]any{"a": 1.0},
		after: map[string]any{"a": 1.0, "b": 2.0},
		want:  []Write{set("b", 2.0)},
	},
	{
		name:  "changed key",
		give:  map[string]any{"a": 1.0, "b": "x"},
		after: map[string]any{"a": 2.0, "b": "x"},
		want:  []Write{set("a", 2.0)},
	},
	{
		name:  "deleted key",
		give:  map[string]any{"a": 1.0, "b": 2.0},
		after: map[string]any{"b": 2.0},
		want:  []Write{del("a")},
	},
	{
		name:  "everything removed",
		give:  map[string]any{"a": 1.0, "b": map[string]any{"c": 2.0}},
		after: nil,
		want:  []Write{del("a"), del("b")},
	},
	{
		name:  "nested edit gives deep path",
		give:  map[string]any{"a": map[string]any{"b": map[string]any{"c": 1.0, "d": 2.0}}, "e": 3.0},
		after: map[string]any{"a": map[string]any{"b": map[string]any{"c": 1.0, "d": 5.0}}, "e": 3.0},
		want:  []Write{set("a.b.d", 5.0)},
	},
	{
		name:  "nested add and delete",
		give:  map[string]any{"a": map[string]any{"x": 1.0, "y": 2.0}},
		after: map[string]any{"a": map[string]any{"y": 2.0, "z": map[string]any{"q": 1.0}}},
		want:  []Write{del("a.x"), set("a.z", map[string]any{"q": 1.0})},
	},
	{
		name:  "nested map emptied",
		give:  map[string]any{"a": map[string]any{"x": 1.0}},
		after: map[string]any{"a": map[string]any{}},
		want:  []Write{del("a.x")},
	},
	{
		name:  "map replaced by scalar",
		give:  map[string]any{"a": map[string]any{"b": 1.0}},
		after: map[string]any{"a": "flat"},
		want:  []Write{set("a", "flat")},
	},
	{
		name:  "scalar replaced by map",
		give:  map[string]any{"a": "flat"},
		after: map[string]any{"a": map[string]any{"b": 1.0}},
		want:  []Write{set("a", map[string]any{"b": 1.0})},
	},
	{
		name:  "map replaced by other map type",
		give:  map[string]any{"a": map[string]any{"b": "x"}},
		after: map[string]any{"a": map[string]string{"b": "x"}},
		want:  []Write{set("a", map[string]string{"b": "x"})},
	},
	{
		name:  "nil map replaced by empty map",
		give:  map[string]any{"a": map[string]any(nil)},
		after: map[string]any{"a": map[string]any{}},
		want:  []Write{set("a", map[string]any{})},
	},
	{
		name:  "empty map replaced by nil map",
		give:  map[string]any{"a": map[string]any{}},
		after: map[string]any{"a": map[string]any(nil)},
		want:  []Write{set("a", map[string]any(nil))},
	},
	{
		name:  "slice compared whole",
		give:  map[string]any{"l": []any{1.0, map[string]any{"x": 1.0}}, "same": []any{"a"}},
		after: map[string]any{"l": []any{1.0, map[string]any{"x": 2.0}}, "same": []any{"a"}},
		want:  []Write{set("l", []any{1.0, map[string]any{"x": 2.0}})},
	},
	{
		name:  "slice grown",
		give:  map[string]any{"l": []any{1.0}},
		after: map[string]any{"l": []any{1.0, 2.0}},
		want:  []Write{set("l", []any{1.0, 2.0})},
	},
	{
		name:  "structs compared whole",
		give:  map[string]any{"p": point{1, 2}, "q": &point{1, 2}},
		after: map[string]any{"p": point{1, 3}, "q": &point{1, 2}},
		want:  []Write{set("p", point{1, 3})},
	},
	{
		name:  "int and float differ",
		give:  map[string]any{"n": 1},
		after: map[string]any{"n": 1.0},
		want:  []Write{set("n", 1.0)},
	},
	{
		name:  "nil value added",
		give:  map[string]any{},
		after: map[string]any{"a": nil},
		want:  []Write{set("a", nil)},
	},
	{
		name:  "nil value removed",
		give:  map[string]any{"a": nil},
		after: map[string]any{},
		want:  []Write{del("a")},
	},
	{
		name:  "nil value unchanged",
		give:  map[string]any{"a": nil},
		after: map[string]any{"a": nil},
		want:  nil,
	},
	{
		name:  "value set to nil",
		give:  map[string]any{"a": 0.0},
		after: map[string]any{"a": nil},
		want:  []Write{set("a", nil)},
	},
	{
		name: "sorted by key sequence",
		give: map[string]any{
			"b":  1.0,
			"a":  map[string]any{"z": 1.0, "y": 1.0},
			"a-": 1.0,
		},
		after: map[string]any{
			"":   0.0,
			"b":  2.0,
			"a":  map[string]any{"z": 2.0, "y": 2.0},
			"a-": 2.0,
			"A":  1.0,
		},
		// ["a" "y"] sorts before ["a-"] although "a.y" > "a-".
		want: []Write{set("", 0.0), set("A", 1.0), set("a.y", 2.0), set("a.z", 2.0), set("a-", 2.0), set("b", 2.0)},
	},
}

func TestDiff(t *testing.T) {
	for _, tt := range diffTests {
		t.Run(tt.name, func(t *testing.T) {
			before, after := deepcopy.CopyMap(tt.give), deepcopy.CopyMap(tt.after)
			got := Diff(tt.give, tt.after)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff(%v, %v) = %v; want %v", tt.give, tt.after, got, tt.want)
			}
			if !reflect.DeepEqual(tt.give, before) || !reflect.DeepEqual(tt.after, after) {
				t.Errorf("Diff(%v, %v) modified its arguments", before, after)
			}
		})
	}
}

func TestDiffSharesAfterValues(t *testing.T) {
	l := []any{1.0}
	got := Diff(map[string]any{}, map[string]any{"l": l})
	if len(got) != 1 {
		t.Fatalf("Diff({}, {l: %v}) = %v; want 1 write", l, got)
	}
	gl, ok := got[0].Value.([]any)
	if !ok || &gl[0] != &l[0] {
		t.Errorf("Diff({}, {l: %v}) value %p; want after's slice %p", l, gl, l)
	}
}

func TestDiffCycle(t *testing.T) {
	cyclic := func(x float64) map[string]any {
		m := map[string]any{"x": x}
		m["self"] = m
		return map[string]any{"a": m}
	}
	tests := []struct {
		name        string
		give, after map[string]any
	}{
		{"equal cycles", cyclic(1), cyclic(1)},
		{"different cycles", cyclic(1), cyclic(2)},
		{"cycle replaced", cyclic(1), map[string]any{"a": map[string]any{"x": 1.0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := deepcopy.CopyMap(tt.give)
			Apply(got, Diff(tt.give, tt.after))
			if !reflect.DeepEqual(got, tt.after) {
				t.Errorf("Apply(before, Diff(before, after)) = %v; want %v", got, tt.after)
			}
		})
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name string
		dst  map[string]any
		give []Write
		want map[string]any
	}{
		{
			name: "no writes",
			dst:  map[string]any{"a": 1.0},
			give: nil,
			want: map[string]any{"a": 1.0},
		},
		{
			name: "set top-level",
			dst:  map[string]any{"a": 1.0},
			give: []Write{set("a", 2.0), set("b", "x")},
			want: map[string]any{"a": 2.0, "b": "x"},
		},
		{
			name: "set nested in existing map",
			dst:  map[string]any{"a": map[string]any{"b": 1.0, "c": 1.0}},
			give: []Write{set("a.b", 2.0)},
			want: map[string]any{"a": map[string]any{"b": 2.0, "c": 1.0}},
		},
		{
			name: "creates intermediate maps",
			dst:  map[string]any{},
			give: []Write{set("a.b.c", 1.0)},
			want: map[string]any{"a": map[string]any{"b": map[string]any{"c": 1.0}}},
		},
		{
			name: "replaces scalar intermediate",
			dst:  map[string]any{"a": "flat"},
			give: []Write{set("a.b", 1.0)},
			want: map[string]any{"a": map[string]any{"b": 1.0}},
		},
		{
			name: "replaces other map type intermediate",
			dst:  map[string]any{"a": map[string]string{"b": "x"}},
			give: []Write{set("a.c", 1.0)},
			want: map[string]any{"a": map[string]any{"c": 1.0}},
		},
		{
			name: "replaces nil map intermediate",
			dst:  map[string]any{"a": map[string]any(nil)},
			give: []Write{set("a.b", 1.0)},
			want: map[string]any{"a": map[string]any{"b": 1.0}},
		},
		{
			name: "sets nil",
			dst:  map[string]any{"a": 1.0},
			give: []Write{set("a", nil)},
			want: map[string]any{"a": nil},
		},
		{
			name: "deletes",
			dst:  map[string]any{"a": 1.0, "b": map[string]any{"c": 1.0, "d": 1.0}},
			give: []Write{del("a"), del("b.c")},
			want: map[string]any{"b": map[string]any{"d": 1.0}},
		},
		{
			name: "delete of missing key",
			dst:  map[string]any{"a": map[string]any{}},
			give: []Write{del("b"), del("a.b")},
			want: map[string]any{"a": map[string]any{}},
		},
		{
			name: "delete under missing intermediate creates nothing",
			dst:  map[string]any{},
			give: []Write{del("a.b.c")},
			want: map[string]any{},
		},
		{
			name: "delete under scalar intermediate",
			dst:  map[string]any{"a": "flat", "n": map[string]any(nil)},
			give: []Write{del("a.b"), del("n.b")},
			want: map[string]any{"a": "flat", "n": map[string]any(nil)},
		},
		{
			name: "in order: set then delete",
			dst:  map[string]any{},
			give: []Write{set("a", 1.0), del("a")},
			want: map[string]any{},
		},
		{
			name: "in order: delete then set",
			dst:  map[string]any{"a": 1.0},
			give: []Write{del("a"), set("a", 2.0)},
			want: map[string]any{"a": 2.0},
		},
		{
			name: "in order: subtree then leaf inside",
			dst:  map[string]any{},
			give: []Write{set("a", 1.0), set("a.b", 2.0), set("c.d", 1.0), set("c", 3.0)},
			want: map[string]any{"a": map[string]any{"b": 2.0}, "c": 3.0},
		},
		{
			name: "nil dst with only deletions",
			dst:  nil,
			give: []Write{del("a"), del("a.b")},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := deepcopy.CopyMap(tt.dst)
			Apply(got, tt.give)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Apply(%v, %v) = %v; want %v", tt.dst, tt.give, got, tt.want)
			}
		})
	}
}

func TestApplyPanics(t *testing.T) {
	tests := []struct {
		name string
		dst  map[string]any
		give []Write
	}{
		{"empty path", map[string]any{}, []Write{{Value: 1.0}}},
		{"empty deleted path", map[string]any{}, []Write{{Deleted: true}}},
		{"set into nil dst", nil, []Write{set("a", 1.0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Apply(%v, %v) did not panic", tt.dst, tt.give)
				}
			}()
			Apply(tt.dst, tt.give)
		})
	}
}

// TestDiffApplyRoundTrip checks Apply(copy(before), Diff(before, after)) ==
// after for the Diff cases.
func TestDiffApplyRoundTrip(t *testing.T) {
	for _, tt := range diffTests {
		t.Run(tt.name, func(t *testing.T) {
			checkRoundTrip(t, tt.give, tt.after)
		})
	}
}

// TestDiffApplyRandomJSON checks the round trip, and the shape of Diff's
// result, on random JSON-decoded states: after is before with random
// edits, so that the two share structure to descend into.
func TestDiffApplyRandomJSON(t *testing.T) {
	f := func(seed1, seed2 uint64) bool {
		r := rand.New(rand.NewPCG(seed1, seed2))
		before := randMap(r, 4)
		after := deepcopy.CopyMap(before)
		mutate(r, after, 4)
		before, after = jsonRoundTrip(t, before), jsonRoundTrip(t, after)
		return checkRoundTrip(t, before, after)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 1000}); err != nil {
		t.Error(err)
	}
}

// checkRoundTrip reports whether Diff(before, after) applies to a copy of
// before to give after, is sorted, has no overlapping paths and leaves its
// arguments alone; it reports an error on t when not.
func checkRoundTrip(t *testing.T, before, after map[string]any) bool {
	t.Helper()
	beforeCopy, afterCopy := deepcopy.CopyMap(before), deepcopy.CopyMap(after)
	writes := Diff(before, after)
	ok := true
	for i := 1; i < len(writes); i++ {
		if prev, cur := writes[i-1].Path, writes[i].Path; slices.Compare(prev, cur) >= 0 || hasPrefix(cur, prev) {
			t.Errorf("Diff(%v, %v) = %v; paths %q and %q are unsorted or overlap", before, after, writes, prev, cur)
			ok = false
		}
	}
	got := deepcopy.CopyMap(before)
	if got == nil {
		got = map[string]any{}
	}
	Apply(got, writes)
	want := after
	if want == nil {
		want = map[string]any{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Apply(%v, Diff(%[1]v, %v)) = %v; want %[2]v (writes %[4]v)", before, after, got, writes)
		ok = false
	}
	if !reflect.DeepEqual(before, beforeCopy) || !reflect.DeepEqual(after, afterCopy) {
		t.Errorf("Diff(%v, %v) modified its arguments", beforeCopy, afterCopy)
		ok = false
	}
	if self := Diff(after, after); self != nil {
		t.Errorf("Diff(%v, %[1]v) = %v; want nil", after, self)
		ok = false
	}
	return ok
}

// randKeys is small so that random edits hit existing keys often.
var randKeys = []string{"a", "b", "c", "d", "a.b", ""}

func randKey(r *rand.Rand) string { return randKeys[r.IntN(len(randKeys))] }

func randMap(r *rand.Rand, depth int) map[string]any {
	m := make(map[string]any)
	for range 1 + r.IntN(5) {
		m[randKey(r)] = randValue(r, depth)
	}
	return m
}

func randValue(r *rand.Rand, depth int) any {
	switch n := r.IntN(10); {
	case depth > 0 && n < 3:
		return randMap(r, depth-1)
	case depth > 0 && n < 4:
		l := make([]any, r.IntN(3))
		for i := range l {
			l[i] = randValue(r, depth-1)
		}
		return l
	case n < 5:
		return nil
	case n < 6:
		return r.IntN(2) == 0
	case n < 8:
		return float64(r.IntN(3))
	default:
		return randKey(r)
	}
}

// mutate makes random edits to m: deletions, new values, and, more often
// than not when the key holds a map, edits inside it.
func mutate(r *rand.Rand, m map[string]any, depth int) {
	for range 1 + r.IntN(3) {
		k := randKey(r)
		if sub, ok := m[k].(map[string]any); ok && depth > 0 && r.IntN(3) > 0 {
			mutate(r, sub, depth-1)
			continue
		}
		if r.IntN(2) == 0 {
			delete(m, k)
		} else {
			m[k] = randValue(r, depth)
		}
	}
}

// jsonRoundTrip returns m encoded to JSON and decoded again.
func jsonRoundTrip(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("json.Marshal(%v): %v", m, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	return out
}

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name string
		give []Write
		want string
	}{
		{"set", []Write{set("a.b", 1.0)}, `[{"path":["a","b"],"value":1}]`},
		{"deleted", []Write{del("a")}, `[{"path":["a"],"deleted":true}]`},
		{"set nil", []Write{set("a", nil)}, `[{"path":["a"]}]`},
		{"set zero values", []Write{set("a", 0.0), set("b", false), set("c", "")}, `[{"path":["a"],"value":0},{"path":["b"],"value":false},{"path":["c"],"value":""}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.give)
			if err != nil || string(b) != tt.want {
				t.Fatalf("json.Marshal(%v) = %s, %v; want %s, nil", tt.give, b, err, tt.want)
			}
			var got []Write
			if err := json.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, tt.give) {
				t.Errorf("json.Unmarshal(%s) = %v, %v; want %v, nil", b, got, err, tt.give)
			}
		})
	}
}

// benchState returns a state of n top-level keys, each a small nested
// record.
func benchState(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("key%04d", i)] = map[string]any{
			"id":   float64(i),
			"name": fmt.Sprintf("item %d", i),
			"tags": []any{"a", "b", "c"},
			"meta": map[string]any{"score": 0.5, "ok": true, "owner": map[string]any{"name": "x"}},
		}
	}
	return m
}

func BenchmarkDiff(b *testing.B) {
	for _, n := range []int{8, 64, 1024} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			before := benchState(n)
			after := deepcopy.CopyMap(before)
			after["key0000"].(map[string]any)["meta"].(map[string]any)["score"] = 0.75
			after[fmt.Sprintf("key%04d", n-1)].(map[string]any)["name"] = "renamed"
			if got := len(Diff(before, after)); got != 2 {
				b.Fatalf("len(Diff(before, after)) = %d; want 2", got)
			}
			b.ReportAllocs()
			for b.Loop() {
				Diff(before, after)
			}
		})
	}
}

func BenchmarkApply(b *testing.B) {
	// 16 edits in a 64-key state; applying them again is idempotent, so
	// every iteration does the same work.
	before := benchState(64)
	after := deepcopy.CopyMap(before)
	for i := range 16 {
		rec := after[fmt.Sprintf("key%04d", i*4)].(map[string]any)
		rec["meta"].(map[string]any)["score"] = float64(i)
		rec["new"] = map[string]any{"x": float64(i)}
	}
	writes := Diff(before, after)
	dst := deepcopy.CopyMap(before)
	b.ReportAllocs()
	for b.Loop() {
		Apply(dst, writes)
	}
}
