package state_test

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/state"
	"github.com/caudal-go/caudal/internal/statemerge"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kinds are the representations a store can have, made from the same
// contents: every behaviour of a store must be the same in each.
var kinds = []struct {
	name string
	new  func(m map[string]any) *state.Store
}{
	{name: "flat", new: state.New},
	{name: "forked parent", new: func(m map[string]any) *state.Store {
		s := state.New(m)
		s.Fork()
		return s
	}},
	{name: "overlay", new: func(m map[string]any) *state.Store { return state.New(m).Fork() }},
	{name: "overlay of overlay", new: func(m map[string]any) *state.Store {
		s := state.New(m).Fork()
		s.Set("tmp", 1.0)
		s.Delete("tmp")
		return s.Fork()
	}},
	{name: "logging flat", new: func(m map[string]any) *state.Store {
		s := state.New(m)
		s.StartLog()
		return s
	}},
	{name: "logging overlay", new: func(m map[string]any) *state.Store {
		s := state.New(m)
		s.StartLog()
		return s.Fork()
	}},
}

// sample returns new contents with nested values of every JSON shape.
func sample() map[string]any {
	return map[string]any{
		"a": "x",
		"b": 2.0,
		"m": map[string]any{"x": 1.0, "y": map[string]any{"z": true}},
		"s": []any{1.0, map[string]any{"k": "v"}},
	}
}

func TestStoreOperations(t *testing.T) {
	tests := []struct {
		name string
		give func(s *state.Store) error
		want map[string]any
	}{
		{
			name: "nothing",
			give: func(*state.Store) error { return nil },
			want: sample(),
		},
		{
			name: "set new key",
			give: func(s *state.Store) error { s.Set("c", 3.0); return nil },
			want: with(sample(), "c", 3.0),
		},
		{
			name: "set overwrites",
			give: func(s *state.Store) error { s.Set("m", "gone"); return nil },
			want: with(sample(), "m", "gone"),
		},
		{
			name: "set nil is not delete",
			give: func(s *state.Store) error { s.Set("a", nil); return nil },
			want: with(sample(), "a", nil),
		},
		{
			name: "delete",
			give: func(s *state.Store) error { s.Delete("m"); return nil },
			want: without(sample(), "m"),
		},
		{
			name: "delete absent",
			give: func(s *state.Store) error { s.Delete("nope"); return nil },
			want: sample(),
		},
		{
			name: "delete then set",
			give: func(s *state.Store) error { s.Delete("a"); s.Set("a", 5.0); return nil },
			want: with(sample(), "a", 5.0),
		},
		{
			name: "replace",
			give: func(s *state.Store) error { s.Replace(map[string]any{"q": 1.0}); return nil },
			want: map[string]any{"q": 1.0},
		},
		{
			name: "replace nil",
			give: func(s *state.Store) error { s.Replace(nil); return nil },
			want: map[string]any{},
		},
		{
			name: "replace then set",
			give: func(s *state.Store) error { s.Replace(map[string]any{"q": 1.0}); s.Set("r", 2.0); return nil },
			want: map[string]any{"q": 1.0, "r": 2.0},
		},
		{
			name: "apply nested set creates maps",
			give: func(s *state.Store) error {
				return s.Apply([]statemerge.Write{
					{Path: []string{"m", "y", "w"}, Value: 4.0},
					{Path: []string{"n", "o"}, Value: "p"},
					{Path: []string{"a", "b"}, Value: 1.0}, // through a string: replaced by a map
				})
			},
			want: with(with(with(sample(),
				"m", map[string]any{"x": 1.0, "y": map[string]any{"z": true, "w": 4.0}}),
				"n", map[string]any{"o": "p"}),
				"a", map[string]any{"b": 1.0}),
		},
		{
			name: "apply deletes",
			give: func(s *state.Store) error {
				return s.Apply([]statemerge.Write{
					{Path: []string{"m", "y", "z"}, Deleted: true},
					{Path: []string{"b"}, Deleted: true},
					{Path: []string{"nope", "x"}, Deleted: true},
					{Path: []string{"a", "x"}, Deleted: true},
				})
			},
			want: with(without(sample(), "b"), "m", map[string]any{"x": 1.0, "y": map[string]any{}}),
		},
		{
			name: "apply none",
			give: func(s *state.Store) error { return s.Apply(nil) },
			want: sample(),
		},
		{
			name: "merge",
			give: func(s *state.Store) error {
				return s.Merge(map[string]any{
					"m": map[string]any{"y": map[string]any{"w": 1.0}, "x": []any{}},
					"a": map[string]any{"k": 1.0},
					"s": map[string]any{},
					"c": map[string]any{},
				})
			},
			want: with(with(with(with(sample(),
				"m", map[string]any{"x": []any{}, "y": map[string]any{"z": true, "w": 1.0}}),
				"a", map[string]any{"k": 1.0}),
				"s", map[string]any{}),
				"c", map[string]any{}),
		},
		{
			name: "merge empty map into map changes nothing",
			give: func(s *state.Store) error { return s.Merge(map[string]any{"m": map[string]any{}}) },
			want: sample(),
		},
		{
			name: "merge nil",
			give: func(s *state.Store) error { return s.Merge(nil) },
			want: sample(),
		},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				if err := tt.give(s); err != nil {
					t.Fatalf("give: %v", err)
				}
				checkContents(t, s, tt.want)
			})
		}
	}
}

// checkContents checks every way of reading s's contents against want.
func checkContents(t *testing.T, s *state.Store, want map[string]any) {
	t.Helper()
	if got := s.Copy(); !reflect.DeepEqual(got, want) {
		t.Errorf("Copy() = %v; want %v", got, want)
	}
	if got := s.Copy(); !reflect.DeepEqual(got, want) {
		t.Errorf("Copy() = %v; want %v", got, want)
	}
	s.View(func(got map[string]any) {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("View(m): m = %v; want %v", got, want)
		}
	})
	if got := s.Len(); got != len(want) {
		t.Errorf("Len() = %d; want %d", got, len(want))
	}
	keys := slices.Sorted(maps.Keys(want))
	gotKeys, gotVals := s.Entries()
	if !slices.Equal(gotKeys, keys) {
		t.Errorf("Entries() keys = %q; want %q", gotKeys, keys)
	}
	if wantVals := valuesOf(want, keys); !reflect.DeepEqual(gotVals, wantVals) {
		t.Errorf("Entries() values = %v; want %v", gotVals, wantVals)
	}
	for _, k := range append(keys, "absent") {
		v, ok := s.Get(k)
		w, wok := want[k]
		if ok != wok || !reflect.DeepEqual(v, w) {
			t.Errorf("Get(%q) = %v, %t; want %v, %t", k, v, ok, w, wok)
		}
	}
	vals := s.Values(append(keys, "absent"))
	if !reflect.DeepEqual(vals, want) {
		t.Errorf("Values(%q) = %v; want %v", append(keys, "absent"), vals, want)
	}
}

func with(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }

func mustMerge(t *testing.T, s interface{ Merge(map[string]any) error }, m map[string]any) {
	t.Helper()
	if err := s.Merge(m); err != nil {
		t.Fatalf("Merge(%v): %v", m, err)
	}
}

func without(m map[string]any, k string) map[string]any { delete(m, k); return m }

func valuesOf(m map[string]any, keys []string) []any {
	vals := make([]any, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	return vals
}

func TestNewNil(t *testing.T) {
	s := state.New(nil)
	checkContents(t, s, map[string]any{})
	s.Set("a", 1.0)
	checkContents(t, s, map[string]any{"a": 1.0})
}

func TestValuesNoKeys(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.new(sample())
			if got := s.Values(nil); got != nil {
				t.Errorf("Values(nil) = %v; want nil", got)
			}
			if got := s.Values([]string{"absent"}); got == nil || len(got) != 0 {
				t.Errorf("Values([absent]) = %#v; want an empty map", got)
			}
		})
	}
}

func TestFlatGetHandsOutItsValue(t *testing.T) {
	s := state.New(sample())
	v, _ := s.Get("m")
	v.(map[string]any)["x"] = 9.0
	if got, _ := s.Get("m"); got.(map[string]any)["x"] != 9.0 {
		t.Errorf("Get(m) after changing it in place = %v; want x = 9", got)
	}
	if s.Written() != nil {
		t.Errorf("Written() of a store that was not forked = %v; want nil", s.Written())
	}
}

func TestCopyIsDeep(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.new(sample())
			c := s.Copy()
			mutateEverything(c)
			checkContents(t, s, sample())
		})
	}
}

// mutateEverything changes every map and slice reachable from v in place.
func mutateEverything(v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, c := range v {
			mutateEverything(c)
		}
		v["mutated"] = true
	case []any:
		for i, c := range v {
			mutateEverything(c)
			if deepcopy.Immutable(c) {
				v[i] = "mutated"
			}
		}
	}
}

func TestOverlayCopiesOnRead(t *testing.T) {
	parent := state.New(sample())
	child := parent.Fork()
	sibling := parent.Fork()

	v, _ := child.Get("m")
	mutateEverything(v)
	keys, vals := child.Entries()
	for _, v := range vals {
		mutateEverything(v)
	}

	checkContents(t, parent, sample())
	checkContents(t, sibling, sample())
	if again, _ := child.Get("m"); !reflect.DeepEqual(again, v) {
		t.Errorf("child.Get(m) = %v; want the changed copy %v", again, v)
	}
	want := sample()
	mutateEverything(want["m"])
	mutateEverything(want["m"]) // changed twice: by Get, then by Entries
	mutateEverything(want["s"])
	if got := child.Copy(); !reflect.DeepEqual(got, want) {
		t.Errorf("child contents = %v; want %v (keys %q)", got, want, keys)
	}
	checkWritten(t, child, sample())

	// And the other way round: the parent's copies do not reach the child.
	pv, _ := parent.Get("s")
	mutateEverything(pv)
	if got := child.Copy(); !reflect.DeepEqual(got, want) {
		t.Errorf("child contents after the parent changed = %v; want %v", got, want)
	}
	checkContents(t, sibling, sample())
}

// checkWritten checks s.Written against a full diff of origin and s's
// contents, and that applying it to origin gives s's contents.
func checkWritten(t *testing.T, s *state.Store, origin map[string]any) {
	t.Helper()
	now := s.Copy()
	got := s.Written()
	want := statemerge.Diff(origin, now)
	sortWrites(got)
	sortWrites(want)
	if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
		t.Fatalf("Written() = %v; want %v (origin %v, now %v)", got, want, origin, now)
	}
	applied := deepcopy.CopyMap(origin)
	if applied == nil {
		applied = make(map[string]any)
	}
	statemerge.Apply(applied, copyWrites(got))
	if !reflect.DeepEqual(applied, now) {
		t.Fatalf("origin %v with Written() %v applied = %v; want %v", origin, got, applied, now)
	}
}

func sortWrites(ws []statemerge.Write) {
	slices.SortStableFunc(ws, func(a, b statemerge.Write) int { return slices.Compare(a.Path, b.Path) })
}

// copyWrites returns a deep copy of ws, which shares nothing with them.
func copyWrites(ws []statemerge.Write) []statemerge.Write {
	out := make([]statemerge.Write, len(ws))
	for i, w := range ws {
		out[i] = statemerge.Write{Path: slices.Clone(w.Path), Value: deepcopy.Copy(w.Value), Deleted: w.Deleted}
	}
	return out
}

func TestReplaceOnFork(t *testing.T) {
	tests := []struct {
		name string
		give func(s *state.Store)
		want []statemerge.Write
	}{
		{
			name: "replace",
			give: func(s *state.Store) {
				s.Replace(map[string]any{"b": 2.0, "m": map[string]any{"x": 2.0, "y": map[string]any{"z": true}}, "c": 3.0})
			},
			want: []statemerge.Write{
				{Path: []string{"a"}, Deleted: true},
				{Path: []string{"c"}, Value: 3.0},
				{Path: []string{"m", "x"}, Value: 2.0},
				{Path: []string{"s"}, Deleted: true},
			},
		},
		{
			name: "replace with the same contents",
			give: func(s *state.Store) { s.Replace(sample()) },
			want: nil,
		},
		{
			name: "replace with nothing",
			give: func(s *state.Store) { s.Replace(nil) },
			want: []statemerge.Write{
				{Path: []string{"a"}, Deleted: true},
				{Path: []string{"b"}, Deleted: true},
				{Path: []string{"m"}, Deleted: true},
				{Path: []string{"s"}, Deleted: true},
			},
		},
		{
			name: "set, replace, set, delete",
			give: func(s *state.Store) {
				s.Set("t", 1.0)
				s.Replace(map[string]any{"a": "y", "u": 1.0})
				s.Set("v", 2.0)
				s.Delete("u")
			},
			want: []statemerge.Write{
				{Path: []string{"a"}, Value: "y"},
				{Path: []string{"b"}, Deleted: true},
				{Path: []string{"m"}, Deleted: true},
				{Path: []string{"s"}, Deleted: true},
				{Path: []string{"v"}, Value: 2.0},
			},
		},
		{
			name: "replace, fork, change",
			give: func(s *state.Store) {
				s.Replace(map[string]any{"a": "x", "n": map[string]any{"k": 1.0}})
				s.Fork()
				v, _ := s.Get("n")
				v.(map[string]any)["k"] = 2.0
				s.Set("b", 2.0)
			},
			want: []statemerge.Write{
				{Path: []string{"m"}, Deleted: true},
				{Path: []string{"n"}, Value: map[string]any{"k": 2.0}},
				{Path: []string{"s"}, Deleted: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := state.New(sample())
			child := parent.Fork()
			tt.give(child)
			if got := child.Written(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Written() = %v; want %v", got, tt.want)
			}
			checkWritten(t, child, sample())
			checkContents(t, parent, sample())
		})
	}
}

func TestApplyEmptyPath(t *testing.T) {
	tests := []struct {
		name string
		give []statemerge.Write
	}{
		{name: "nil path", give: []statemerge.Write{{Value: 1.0}}},
		{name: "empty path", give: []statemerge.Write{{Path: []string{}, Deleted: true}}},
		{name: "after a good write", give: []statemerge.Write{
			{Path: []string{"c"}, Value: 1.0},
			{Path: []string{"m", "x"}, Deleted: true},
			{Path: nil, Value: 2.0},
		}},
		{name: "before a good write", give: []statemerge.Write{{}, {Path: []string{"c"}, Value: 1.0}}},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				s.StartLog()
				mark := s.LogLen()
				if err := s.Apply(tt.give); err == nil {
					t.Fatalf("Apply(%v) = nil; want an error", tt.give)
				}
				if state.Locked(s) {
					t.Fatal("Apply left the store locked")
				}
				checkContents(t, s, sample())
				if got := s.LogSince(mark); len(got) != 0 {
					t.Errorf("LogSince(mark) after a failed Apply = %v; want nothing", got)
				}
				s.Set("c", 3.0)
				if err := s.Apply([]statemerge.Write{{Path: []string{"d"}, Value: 4.0}}); err != nil {
					t.Fatalf("Apply(d = 4) = %v; want nil", err)
				}
				checkContents(t, s, with(with(sample(), "c", 3.0), "d", 4.0))
			})
		}
	}
}

// TestLogNestedWriteThenUndo is a regression test: a value handed out, then
// changed by a nested write and changed back in place, must log the change
// back. The log used to diff the value against what it was when handed out,
// which missed the change back, and replaying the log left the nested
// write's value.
func TestLogNestedWriteThenUndo(t *testing.T) {
	tests := []struct {
		name  string
		write func(s *state.Store)
	}{
		{name: "apply", write: func(s *state.Store) {
			if err := s.Apply([]statemerge.Write{{Path: []string{"m", "x"}, Value: 5.0}}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "merge", write: func(s *state.Store) { mustMerge(t, s, map[string]any{"m": map[string]any{"x": 5.0}}) }},
		{name: "apply delete", write: func(s *state.Store) {
			if err := s.Apply([]statemerge.Write{{Path: []string{"m", "x"}, Deleted: true}}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "set same value", write: func(s *state.Store) {
			v, _ := s.Get("m")
			s.Set("m", v)
			if err := s.Apply([]statemerge.Write{{Path: []string{"m", "x"}, Value: 5.0}}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				s.StartLog()
				start, mark := s.Copy(), s.LogLen()
				v, _ := s.Get("m")
				m := v.(map[string]any)
				m["x"] = 2.0
				tt.write(s)
				m["x"] = 1.0 // back to its value at the mark
				checkReplay(t, s, start, s.LogSince(mark))
			})
		}
	}
}

// TestLogValueChangedThenDetached is a regression test: a value a write
// stored, changed in place and then replaced by an equal-shaped one, must
// replay as the replacement. The log used to keep the written value itself,
// which the change in place reached, while the diff of the replacement was
// taken against the value as written.
func TestLogValueChangedThenDetached(t *testing.T) {
	tests := []struct {
		name  string
		write func(s *state.Store)
		get   bool // hand the value out before the write
	}{
		{name: "apply", write: func(s *state.Store) {
			if err := s.Apply([]statemerge.Write{{Path: []string{"m", "y"}, Value: map[string]any{}}}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "apply after get", get: true, write: func(s *state.Store) {
			if err := s.Apply([]statemerge.Write{{Path: []string{"m", "y"}, Value: map[string]any{}}}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "merge after get", get: true, write: func(s *state.Store) {
			mustMerge(t, s, map[string]any{"m": map[string]any{"y": []any{}}})
			mustMerge(t, s, map[string]any{"m": map[string]any{"y": map[string]any{}}})
		}},
		{name: "set", write: func(s *state.Store) { s.Set("m", map[string]any{"y": map[string]any{}}) }},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				s.StartLog()
				start, mark := s.Copy(), s.LogLen()
				if tt.get {
					s.Get("m")
				}
				tt.write(s)
				v, _ := s.Get("m")
				m := v.(map[string]any)
				m["y"].(map[string]any)["c"] = true // the written value, changed
				m["y"] = map[string]any{}           // and replaced
				checkReplay(t, s, start, s.LogSince(mark))
				checkReplay(t, s, start, s.LogSince(0))
			})
		}
	}
}

// checkReplay checks that ws, applied to a copy of start, give s's contents.
func checkReplay(t *testing.T, s *state.Store, start map[string]any, ws []statemerge.Write) {
	t.Helper()
	ws = copyWrites(ws)
	got := deepcopy.CopyMap(start)
	statemerge.Apply(got, ws)
	if want := s.Copy(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%v with the log %v applied = %v; want %v", start, ws, got, want)
	}
}

func TestLogOperations(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.new(sample())
			s.StartLog()
			start, mark := s.Copy(), s.LogLen()
			v, _ := s.Get("m")
			v.(map[string]any)["y"].(map[string]any)["z"] = false
			s.Set("c", []any{1.0})
			c, _ := s.Get("c")
			c.([]any)[0] = 2.0
			s.Delete("a")
			keys, vals := s.Entries()
			if want := []string{"b", "c", "m", "s"}; !slices.Equal(keys, want) {
				t.Fatalf("Entries() keys = %q; want %q", keys, want)
			}
			vals[3].([]any)[1].(map[string]any)["k"] = "w" // s
			if err := s.Apply([]statemerge.Write{{Path: []string{"n", "o"}, Value: 1.0}}); err != nil {
				t.Fatal(err)
			}
			mustMerge(t, s, map[string]any{"m": map[string]any{"x": 3.0}})
			mid := s.Copy()
			checkReplay(t, s, start, s.LogSince(mark))
			logged := copyWrites(s.LogSince(0))

			mark = s.LogLen()
			c, _ = s.Get("c")
			c.([]any)[0] = 9.0 // the value logged by Set, if the log held it
			s.Replace(map[string]any{"r": map[string]any{"x": 1.0}})
			r, _ := s.Get("r")
			r.(map[string]any)["x"] = 2.0
			checkReplay(t, s, mid, s.LogSince(mark))
			checkReplay(t, s, start, s.LogSince(0))
			// The log holds copies: what the store did since left them as
			// they were.
			if got := s.LogSince(0)[:len(logged)]; !reflect.DeepEqual(got, logged) {
				t.Errorf("LogSince(0) = %v, then %v", logged, got)
			}

			if got := s.LogSince(s.LogLen()); len(got) != 0 {
				t.Errorf("LogSince(LogLen()) = %v; want nothing", got)
			}
		})
	}
}

func TestForkOfLoggingStoreLogs(t *testing.T) {
	parent := state.New(sample())
	parent.StartLog()
	parent.Set("p", 1.0)
	child := parent.Fork()
	if got := child.LogLen(); got != 0 {
		t.Errorf("child.LogLen() = %d; want 0", got)
	}
	start := child.Copy()
	v, _ := child.Get("m")
	v.(map[string]any)["x"] = 7.0
	checkReplay(t, child, start, child.LogSince(0))
	if got := len(child.LogSince(0)); got != 1 {
		t.Errorf("child's log = %v; want one write", child.LogSince(0))
	}
	if got := parent.LogSince(0); len(got) != 1 {
		t.Errorf("parent's log = %v; want only its Set", got)
	}
}

func TestLogSinceOutOfRange(t *testing.T) {
	s := state.New(nil)
	s.StartLog()
	s.Set("a", 1.0)
	for _, mark := range []int{-1, 2, 100} {
		if got := s.LogSince(mark); len(got) != 0 {
			t.Errorf("LogSince(%d) = %v; want nothing", mark, got)
		}
	}
}

// TestForkChainStaysShort forks a store the way a loop does, merging each
// iteration's writes back into it, and checks that lookups never walk a
// long chain of layers.
func TestForkChainStaysShort(t *testing.T) {
	t.Parallel()
	const iterations = 10_000
	tests := []struct {
		name   string
		parent func() *state.Store
		keys   func(i int) []string // the keys iteration i sets
	}{
		{
			name:   "new keys",
			parent: func() *state.Store { return state.New(numbered(1000)) },
			keys:   func(i int) []string { return []string{"i", fmt.Sprint("new", i)} },
		},
		{
			name:   "same keys",
			parent: func() *state.Store { return state.New(numbered(1000)) },
			keys:   func(i int) []string { return []string{"i", fmt.Sprint("k", i%2)} },
		},
		{
			name:   "new keys in a fork",
			parent: func() *state.Store { return state.New(numbered(1000)).Fork() },
			keys:   func(i int) []string { return []string{"i", fmt.Sprint("new", i)} },
		},
		{
			name:   "from empty",
			parent: func() *state.Store { return state.New(nil) },
			keys:   func(i int) []string { return []string{"i", fmt.Sprint("new", i)} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := tt.parent()
			model := parent.Copy()
			longest := 0
			for i := range iterations {
				child := parent.Fork()
				for _, k := range tt.keys(i) {
					child.Set(k, float64(i))
					model[k] = float64(i)
				}
				if i%7 == 0 {
					k := fmt.Sprint("k", i%1000)
					child.Delete(k)
					delete(model, k)
				}
				if err := parent.Apply(child.Written()); err != nil {
					t.Fatal(err)
				}
				longest = max(longest, state.ChainLen(parent), state.ChainLen(child))
				if v, _ := parent.Get("i"); v != float64(i) {
					t.Fatalf("iteration %d: Get(i) = %v; want %d", i, v, i)
				}
				if i%2500 == 0 || i == iterations-1 {
					if got := parent.Copy(); !reflect.DeepEqual(got, model) {
						t.Fatalf("iteration %d: contents differ from the model", i)
					}
				}
			}
			if longest > 40 {
				t.Errorf("longest chain of layers = %d; want <= 40", longest)
			}
			t.Logf("longest chain of layers: %d", longest)
		})
	}
}

// numbered returns n keys k0… holding their number.
func numbered(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprint("k", i)] = map[string]any{"n": float64(i)}
	}
	return m
}

func TestForkAllocsIndependentOfSize(t *testing.T) {
	tests := []struct {
		name string
		give func(s *state.Store)
	}{
		{name: "unchanged", give: func(s *state.Store) { s.Fork() }},
		{name: "set between forks", give: func(s *state.Store) { s.Set("i", 1.0); s.Fork() }},
		{name: "loop iteration", give: func(s *state.Store) {
			c := s.Fork()
			c.Set("i", 1.0)
			if err := s.Apply(c.Written()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := func(n int) float64 {
				s := state.New(numbered(n))
				tt.give(s) // the first fork freezes the flat store's map
				return testing.AllocsPerRun(200, func() { tt.give(s) })
			}
			small, large := allocs(10), allocs(1000)
			t.Logf("allocations per fork: %v with 10 keys, %v with 1,000", small, large)
			if small != large || large > 16 {
				t.Errorf("allocations per fork: %v with 10 keys, %v with 1,000; want the same small number", small, large)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	const goroutines, steps = 8, 300
	root := state.New(numbered(50))
	root.Set("doc", map[string]any{"list": []any{1.0, 2.0}})
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			errs <- exercise(root, g, steps)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for g := range goroutines {
		if v, _ := root.Get(fmt.Sprint("g", g)); v != float64(steps-1) {
			t.Errorf("Get(g%d) = %v; want %d", g, v, steps-1)
		}
	}
	if v, _ := root.Get("doc"); !reflect.DeepEqual(v, map[string]any{"list": []any{1.0, 2.0}}) {
		t.Errorf("Get(doc) = %v; want it unchanged", v)
	}
}

// exercise runs concurrent operations for goroutine g on root and on forks
// of it, changing in place only values of stores no other goroutine uses.
func exercise(root *state.Store, g, steps int) error {
	r := rand.New(rand.NewPCG(uint64(g), 1))
	own := fmt.Sprint("g", g)
	for i := range steps {
		root.Set(own, float64(i))
		switch r.IntN(5) {
		case 0:
			if v, ok := root.Get(fmt.Sprint("k", r.IntN(60))); ok {
				if _, isMap := v.(map[string]any); !isMap {
					return fmt.Errorf("Get(k…) = %v; want a map", v)
				}
			}
		case 1:
			child := root.Fork()
			v, _ := child.Get("doc")
			v.(map[string]any)["list"].([]any)[0] = float64(10 + g)
			child.Set("c", float64(i))
			grandchild := child.Fork()
			grandchild.Delete("doc")
			want := []statemerge.Write{
				{Path: []string{"c"}, Value: float64(i)},
				{Path: []string{"doc", "list"}, Value: []any{float64(10 + g), 2.0}},
			}
			if got := child.Written(); !reflect.DeepEqual(got, want) {
				return fmt.Errorf("child.Written() = %v; want %v", got, want)
			}
			if got, _ := child.Get(own); got != float64(i) {
				return fmt.Errorf("child.Get(%s) = %v; want %d", own, got, i)
			}
			if got := grandchild.Written(); !reflect.DeepEqual(got, []statemerge.Write{{Path: []string{"doc"}, Deleted: true}}) {
				return fmt.Errorf("grandchild.Written() = %v; want doc deleted", got)
			}
		case 2:
			if w := root.Written(); w != nil {
				return fmt.Errorf("root.Written() = %v; want nil", w)
			}
			if n := root.Len(); n < 51 {
				return fmt.Errorf("root.Len() = %d; want >= 51", n)
			}
		case 3:
			keys, vals := root.Entries()
			if !slices.IsSorted(keys) || len(keys) != len(vals) || len(keys) < 51 {
				return fmt.Errorf("Entries() = %q, %d values; want >= 51 sorted keys and as many values", keys, len(vals))
			}
		case 4:
			_ = root.Copy()
			_ = root.Values([]string{own, "doc"})
			root.View(func(m map[string]any) {
				if m[own] != float64(i) {
					panic(fmt.Sprintf("View: %s = %v; want %d", own, m[own], i))
				}
			})
		}
	}
	return nil
}

// The property tests below run random operations on a world of stores: a
// root and forks of it, forks of forks, siblings. Each store in the world
// is a replica: the store under test and two references that receive the
// same operations, a flat store forked by deep copy (the engine's baseline
// isolation) and a plain map.

// replica is one store under test and its references.
type replica struct {
	over   *state.Store   // under test: the root (flat until forked) or an overlay
	flat   *state.Store   // reference: a flat store, forked by deep copy
	model  map[string]any // reference: a plain map
	origin map[string]any // over's contents at its fork, nil for the root

	// held are values handed out that the test may still change in place:
	// until the store is forked or its log read.
	held []held

	overLog, flatLog *logCheck // nil when the world does not log

	// owned holds the reference for the savepoints of each owner of the
	// world (world.owners) in over and flat, by index; nil until used.
	owned []*ownerModel
}

// ownerModel is the reference for one owner's savepoints: the accesses the
// owner made since its outermost active savepoint, one per access, in
// order (the stores keep one entry per key and savepoint, and drop stale
// ones as they go). A rollback undoes them, latest first, skipping the
// void ones.
type ownerModel struct {
	frames   []int // for each active savepoint, outermost first, len(accesses) at its start
	accesses []access
	// saves are the model's contents at the start of each active
	// savepoint: with one owner, a rollback must give them back.
	saves []map[string]any
}

// access is one change or get by an owner: what undoes it.
type access struct {
	key   string
	v     any  // the key's value before: a copy when it stayed in place, the value itself when replaced
	ok    bool // the key had a value
	write bool // a write, not a get
	// void: a get that another owner's write (or rollback) of the key
	// superseded before the owner wrote the key again.
	void bool
	// all is the whole contents before a Replace, as they were; non-nil
	// for a Replace only.
	all map[string]any
}

// owner returns the reference for owner oi's savepoints in x.
func (x *replica) owner(oi int) *ownerModel {
	for len(x.owned) <= oi {
		x.owned = append(x.owned, new(ownerModel))
	}
	return x.owned[oi]
}

type held struct{ over, flat, model any }

// logCheck follows one logging store: the contents when it started logging
// and at its last mark, and the copied writes logged up to the mark.
type logCheck struct {
	name        string
	s           *state.Store
	start, base map[string]any
	mark        int
	writes      []statemerge.Write
}

func newLogCheck(name string, s *state.Store) *logCheck {
	c := s.Copy()
	return &logCheck{name: name, s: s, start: c, base: deepcopy.CopyMap(c), mark: s.LogLen()}
}

// world is the state of one property test run.
type world struct {
	t        *testing.T
	r        *rand.Rand
	seed     uint64
	step     int
	replicas []*replica
	logging  bool
	noMarks  bool     // the log is read only at the end
	saving   bool     // the operations include savepoints
	trace    []string // the operations so far, for failure messages
	// owners are the owners operations are tagged with, nil (the untagged
	// calls) among them or not; savepoints are those of the others.
	owners []any
}

var keys = []string{"a", "b", "c", "d", "e"}

func randKey(r *rand.Rand) string { return keys[r.IntN(len(keys))] }

// randValue returns a JSON-shaped value nesting at most depth levels.
func randValue(r *rand.Rand, depth int) any {
	n := 8
	if depth <= 0 {
		n = 4
	}
	switch r.IntN(n) {
	case 0:
		return float64(r.IntN(3))
	case 1:
		return keys[r.IntN(2)]
	case 2:
		return r.IntN(2) == 0
	case 3:
		if r.IntN(4) == 0 {
			return nil
		}
		return float64(r.IntN(3))
	case 4, 5, 6:
		return randMap(r, depth-1)
	default:
		s := make([]any, r.IntN(3))
		for i := range s {
			s[i] = randValue(r, depth-1)
		}
		return s
	}
}

func randMap(r *rand.Rand, depth int) map[string]any {
	m := make(map[string]any)
	for range r.IntN(4) {
		m[randKey(r)] = randValue(r, depth)
	}
	return m
}

func randWrites(r *rand.Rand) []statemerge.Write {
	ws := make([]statemerge.Write, 1+r.IntN(3))
	for i := range ws {
		p := make([]string, 1+r.IntN(3))
		for j := range p {
			p[j] = randKey(r)
		}
		ws[i].Path = p
		if r.IntN(4) == 0 {
			ws[i].Deleted = true
		} else {
			ws[i].Value = randValue(r, 2)
		}
	}
	return ws
}

// mutate changes v in place, if it is a map or a slice, the same way for
// equal values and equal seeds.
func mutate(r *rand.Rand, v any) {
	switch v := v.(type) {
	case map[string]any:
		k := randKey(r)
		switch r.IntN(4) {
		case 0:
			delete(v, k)
		case 1:
			if c, ok := v[k]; ok && !deepcopy.Immutable(c) {
				mutate(r, c)
				return
			}
			v[k] = randValue(r, 1)
		default:
			v[k] = randValue(r, 1)
		}
	case []any:
		if len(v) == 0 {
			return
		}
		i := r.IntN(len(v))
		if c := v[i]; r.IntN(2) == 0 && !deepcopy.Immutable(c) {
			mutate(r, c)
			return
		}
		v[i] = randValue(r, 1)
	}
}

// mutateAll applies the same random change to each of vals.
func mutateAll(seed uint64, vals ...any) {
	for _, v := range vals {
		mutate(rand.New(rand.NewPCG(seed, 0)), v)
	}
}

// mergeModel deep-merges src into dst the way Store.Merge documents it.
func mergeModel(dst, src map[string]any) {
	for k, sv := range src {
		sm, srcIsMap := sv.(map[string]any)
		dm, dstIsMap := dst[k].(map[string]any)
		if srcIsMap && dstIsMap && dm != nil {
			mergeModel(dm, sm)
			continue
		}
		dst[k] = sv
	}
}

func newWorld(t *testing.T, seed uint64, logging bool) *world {
	r := rand.New(rand.NewPCG(seed, 0))
	start := randMap(r, 3)
	for _, k := range keys[:3] {
		if r.IntN(3) > 0 {
			start[k] = randMap(r, 2)
		}
	}
	root := &replica{
		over:  state.New(deepcopy.CopyMap(start)),
		flat:  state.New(deepcopy.CopyMap(start)),
		model: deepcopy.CopyMap(start),
	}
	w := &world{t: t, r: r, seed: seed, logging: logging, replicas: []*replica{root}, owners: []any{nil}}
	if logging {
		root.over.StartLog()
		root.flat.StartLog()
		root.overLog, root.flatLog = newLogCheck("#0", root.over), newLogCheck("#0 flat", root.flat)
	}
	// A loop forks its store many times before the body changes anything.
	for range r.IntN(4) {
		w.fork(root)
	}
	return w
}

func (w *world) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf("%d: ", w.step)+fmt.Sprintf(format, args...))
}

func (w *world) fatalf(format string, args ...any) {
	w.t.Helper()
	tail := w.trace[max(0, len(w.trace)-20):]
	if *traceFlag != "" {
		tail = nil
		for _, l := range w.trace {
			if strings.Contains(l, *traceFlag) {
				tail = append(tail, l)
			}
		}
	}
	w.t.Fatalf("seed %d, step %d: %s\nlast operations:\n%s", w.seed, w.step, fmt.Sprintf(format, args...), joinLines(tail))
}

func joinLines(lines []string) string {
	var s string
	for _, l := range lines {
		s += "\t" + l + "\n"
	}
	return s
}

// fork adds a fork of x to the world.
func (w *world) fork(x *replica) *replica {
	y := &replica{
		over:   x.over.Fork(),
		flat:   state.New(x.flat.Copy()),
		model:  deepcopy.CopyMap(x.model),
		origin: x.over.Copy(),
	}
	x.held = nil // Fork froze x's values: they must not change any more
	if w.logging {
		y.flat.StartLog()
		id := len(w.replicas)
		y.overLog, y.flatLog = newLogCheck(fmt.Sprint("#", id), y.over), newLogCheck(fmt.Sprint("#", id, " flat"), y.flat)
		if y.overLog.mark != 0 {
			w.fatalf("LogLen() of a new fork = %d; want 0", y.overLog.mark)
		}
	}
	w.replicas = append(w.replicas, y)
	return y
}

// run applies n random operations, checking the replica each changed
// after it, and every replica, which nothing else must have changed, every
// few operations and at the end.
func (w *world) run(n int) {
	w.t.Helper()
	for w.step = range n {
		id := w.r.IntN(len(w.replicas))
		w.op(w.replicas[id], id)
		if w.step%8 == 7 || w.step == n-1 {
			for id, x := range w.replicas {
				w.check(id, x)
			}
		} else {
			w.check(id, w.replicas[id])
		}
	}
	if w.logging {
		for _, x := range w.replicas {
			w.checkLog(x)
			w.checkFullLog(x)
		}
	}
}

func (w *world) op(x *replica, id int) {
	r := w.r
	n := 16
	if w.saving {
		n = 20
	}
	oi := 0
	if len(w.owners) > 1 {
		oi = r.IntN(len(w.owners))
	}
	o, on := w.owners[oi], w.ownerName(oi)
	switch r.IntN(n) {
	case 0, 1, 2:
		k, v := randKey(r), randValue(r, 2)
		w.logf("#%d %sSet(%q, %v)", id, on, k, v)
		w.accessWrite(x, oi, k, false)
		w.wrote(x, oi, k)
		x.over.SetAs(o, k, v)
		x.flat.SetAs(o, k, deepcopy.Copy(v))
		x.model[k] = deepcopy.Copy(v)
	case 3:
		k := randKey(r)
		w.logf("#%d %sDelete(%q)", id, on, k)
		w.accessWrite(x, oi, k, false)
		w.wrote(x, oi, k)
		x.over.DeleteAs(o, k)
		x.flat.DeleteAs(o, k)
		delete(x.model, k)
	case 4, 5:
		k := randKey(r)
		w.logf("#%d %sGet(%q) and hold", id, on, k)
		w.get(x, oi, k, true)
	case 6, 7, 8:
		if len(x.held) == 0 {
			return
		}
		i, seed := r.IntN(len(x.held)), r.Uint64()
		h := x.held[i]
		w.logf("#%d change held value %d (%v) with seed %d", id, i, h.model, seed)
		mutateAll(seed, h.over, h.flat, h.model)
	case 9:
		ws := randWrites(r)
		w.logf("#%d %sApply(%v)", id, on, ws)
		for _, wr := range ws { // every save comes before the first write
			w.accessWrite(x, oi, wr.Path[0], len(wr.Path) > 1)
		}
		for _, wr := range ws {
			w.wrote(x, oi, wr.Path[0])
		}
		if err := x.over.ApplyAs(o, ws); err != nil {
			w.fatalf("Apply: %v", err)
		}
		if err := x.flat.ApplyAs(o, copyWrites(ws)); err != nil {
			w.fatalf("Apply: %v", err)
		}
		statemerge.Apply(x.model, copyWrites(ws))
	case 10:
		m := randMap(r, 2)
		w.logf("#%d %sMerge(%v)", id, on, m)
		var touched []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			cur := x.model[k]
			if mergeWrites(cur, m[k]) {
				dm, dstIsMap := cur.(map[string]any)
				_, srcIsMap := m[k].(map[string]any)
				w.accessWrite(x, oi, k, dstIsMap && srcIsMap && dm != nil) // nested writes
				touched = append(touched, k)
			}
		}
		for _, k := range touched {
			w.wrote(x, oi, k)
		}
		if err := x.over.MergeAs(o, m); err != nil {
			w.fatalf("Merge: %v", err)
		}
		if err := x.flat.MergeAs(o, deepcopy.CopyMap(m)); err != nil {
			w.fatalf("Merge: %v", err)
		}
		mergeModel(x.model, deepcopy.CopyMap(m))
	case 11:
		w.logf("#%d %sEntries and hold", id, on)
		w.entries(x, oi)
	case 12:
		if r.IntN(3) > 0 {
			return
		}
		m := randMap(r, 2)
		w.logf("#%d %sReplace(%v)", id, on, m)
		if om := x.owner(oi); len(om.frames) > 0 {
			om.accesses = append(om.accesses, access{all: x.model, write: true})
		}
		w.wroteAll(x, oi)
		x.over.ReplaceAs(o, m)
		x.flat.ReplaceAs(o, deepcopy.CopyMap(m))
		x.model = deepcopy.CopyMap(m)
	case 13:
		if len(w.replicas) >= 8 {
			return
		}
		w.logf("#%d Fork() = #%d", id, len(w.replicas))
		w.fork(x)
	case 14:
		k, seed := randKey(r), r.Uint64()
		w.logf("#%d %sGet(%q) and change it with seed %d", id, on, k, seed)
		if h, ok := w.get(x, oi, k, false); ok {
			mutateAll(seed, h.over, h.flat, h.model)
		}
	case 15:
		if !w.logging || w.noMarks {
			return
		}
		w.logf("#%d mark the log", id)
		w.checkLog(x)
	case 16, 17:
		w.savepoint(x, id)
	case 18:
		w.endSavepoint(x, id, true)
	case 19:
		w.endSavepoint(x, id, false)
	}
}

// mergeWrites reports whether merging src into dst, a key's value, writes
// anything: whether Merge writes the key.
func mergeWrites(dst, src any) bool {
	sm, srcIsMap := src.(map[string]any)
	dm, dstIsMap := dst.(map[string]any)
	if !srcIsMap || !dstIsMap || dm == nil {
		return true
	}
	for k, v := range sm {
		if cur, ok := dm[k]; !ok || mergeWrites(cur, v) {
			return true
		}
	}
	return false
}

// ownerName returns how the trace names owner oi: nothing for nil.
func (w *world) ownerName(oi int) string {
	if w.owners[oi] == nil {
		return ""
	}
	return fmt.Sprintf("%v:", w.owners[oi])
}

// accessGet records owner oi's get of key k, if its savepoints save it:
// a mutable value handed out.
func (w *world) accessGet(x *replica, oi int, k string) {
	om := x.owner(oi)
	v, ok := x.model[k]
	if len(om.frames) == 0 || !ok || deepcopy.Immutable(v) {
		return
	}
	om.accesses = append(om.accesses, access{key: k, v: deepcopy.Copy(v), ok: true})
}

// accessWrite records owner oi's write of key k, before it: nested, the
// value is written into (it stays, so it is copied); otherwise replaced.
func (w *world) accessWrite(x *replica, oi int, k string, nested bool) {
	om := x.owner(oi)
	if len(om.frames) == 0 {
		return
	}
	v, ok := x.model[k]
	if nested {
		v = deepcopy.Copy(v)
	}
	om.accesses = append(om.accesses, access{key: k, v: v, ok: ok, write: true})
}

// wrote voids, for every owner but oi, the gets of k since its last write
// of k or Replace: owner oi wrote k.
func (w *world) wrote(x *replica, oi int, k string) {
	for j, om := range x.owned {
		if j == oi {
			continue
		}
		for i := len(om.accesses) - 1; i >= 0; i-- {
			a := &om.accesses[i]
			if a.all != nil || (a.key == k && a.write) {
				break
			}
			if a.key == k {
				a.void = true
			}
		}
	}
}

// wroteAll is wrote for every key: a Replace.
func (w *world) wroteAll(x *replica, oi int) {
	for j, om := range x.owned {
		if j == oi {
			continue
		}
		seen := make(map[string]bool)
		for _, a := range om.accesses {
			seen[a.key] = true
		}
		for k := range seen {
			w.wrote(x, oi, k)
		}
	}
}

// rollback undoes owner oi's accesses since its savepoint mark in the
// model, latest first.
func (w *world) rollback(x *replica, oi, mark int) {
	om := x.owner(oi)
	start := om.frames[mark]
	restored, all := map[string]bool{}, false
	for i := len(om.accesses) - 1; i >= start; i-- {
		switch a := om.accesses[i]; {
		case a.void:
		case a.all != nil:
			x.model, all = a.all, true
		case a.ok:
			x.model[a.key], restored[a.key] = a.v, true
		default:
			delete(x.model, a.key)
			restored[a.key] = true
		}
	}
	om.accesses, om.frames = om.accesses[:start], om.frames[:mark]
	if all {
		w.wroteAll(x, oi)
	}
	for k := range restored {
		w.wrote(x, oi, k)
	}
}

// savepoint starts a savepoint of an owner in x's stores.
func (w *world) savepoint(x *replica, id int) {
	oi := w.saver()
	om := x.owner(oi)
	if len(om.frames) >= 4 {
		return
	}
	o := w.owners[oi]
	mo, mf := x.over.Savepoint(o), x.flat.Savepoint(o)
	w.logf("#%d %sSavepoint() = %d", id, w.ownerName(oi), mo)
	if mo != len(om.frames) || mf != len(om.frames) {
		w.fatalf("Savepoint() = %d (flat: %d); want %d", mo, mf, len(om.frames))
	}
	om.frames = append(om.frames, len(om.accesses))
	if len(w.owners) == 1 {
		om.saves = append(om.saves, deepcopy.CopyMap(x.model))
		x.held = nil // values handed out before a savepoint must not change while it is active
	}
}

// saver returns the index of a random owner that may have savepoints.
func (w *world) saver() int {
	if w.owners[0] != nil {
		return w.r.IntN(len(w.owners))
	}
	return 1 + w.r.IntN(len(w.owners)-1)
}

// endSavepoint rolls back or releases a random active savepoint of an
// owner in x's stores.
func (w *world) endSavepoint(x *replica, id int, rollback bool) {
	oi := w.saver()
	om := x.owner(oi)
	if len(om.frames) == 0 {
		return
	}
	o, on := w.owners[oi], w.ownerName(oi)
	mark := w.r.IntN(len(om.frames))
	if rollback {
		w.logf("#%d %sRollback(%d)", id, on, mark)
		x.over.Rollback(o, mark)
		x.flat.Rollback(o, mark)
		// The values handed out since are no longer the stores': they stay
		// held, and changing them must change nothing.
		w.rollback(x, oi, mark)
		if len(w.owners) == 1 && !equal(x.model, om.saves[mark]) {
			w.fatalf("the reference's rollback gives %v; want the contents at the savepoint, %v", x.model, om.saves[mark])
		}
	} else {
		w.logf("#%d %sRelease(%d)", id, on, mark)
		x.over.Release(o, mark)
		x.flat.Release(o, mark)
		om.frames = om.frames[:mark]
		if mark == 0 {
			om.accesses = nil
		}
	}
	if len(om.saves) > mark {
		om.saves = om.saves[:mark]
	}
}

// get reads k from x's store and references for owner oi and checks they
// agree.
func (w *world) get(x *replica, oi int, k string, hold bool) (held, bool) {
	w.accessGet(x, oi, k)
	vo, oko := x.over.GetAs(w.owners[oi], k)
	vf, okf := x.flat.GetAs(w.owners[oi], k)
	vm, okm := x.model[k]
	if oko != okm || okf != okm || !equal(vo, vm) || !equal(vf, vm) {
		w.fatalf("Get(%q) = %v, %t (flat: %v, %t); want %v, %t", k, vo, oko, vf, okf, vm, okm)
	}
	h := held{vo, vf, vm}
	if !okm || deepcopy.Immutable(vm) {
		return h, false
	}
	if hold {
		x.held = append(x.held, h)
	}
	return h, true
}

func (w *world) entries(x *replica, oi int) {
	km := slices.Sorted(maps.Keys(x.model))
	for _, k := range km {
		w.accessGet(x, oi, k)
	}
	ko, vo := x.over.EntriesAs(w.owners[oi])
	kf, vf := x.flat.EntriesAs(w.owners[oi])
	vm := valuesOf(x.model, km)
	if !slices.Equal(ko, km) || !slices.Equal(kf, km) || !equal(vo, vm) || !equal(vf, vm) {
		w.fatalf("Entries() = %q, %v (flat: %q, %v); want %q, %v", ko, vo, kf, vf, km, vm)
	}
	for i := range km {
		if !deepcopy.Immutable(vm[i]) && w.r.IntN(2) == 0 {
			x.held = append(x.held, held{vo[i], vf[i], vm[i]})
		}
	}
}

// check checks replica x against its model, and its writes if it is a
// fork.
func (w *world) check(id int, x *replica) {
	w.t.Helper()
	{
		if got := x.over.Copy(); !equal(got, x.model) {
			w.fatalf("#%d contents = %v; want %v", id, got, x.model)
		}
		if got := x.flat.Copy(); !equal(got, x.model) {
			w.fatalf("#%d flat reference contents = %v; want %v", id, got, x.model)
		}
		if got := x.over.Len(); got != len(x.model) {
			w.fatalf("#%d Len() = %d; want %d", id, got, len(x.model))
		}
		got := x.over.Written()
		if x.origin == nil {
			if got != nil {
				w.fatalf("#%d Written() of the root = %v; want nil", id, got)
			}
			return
		}
		want := statemerge.Diff(x.origin, x.model)
		sortWrites(got)
		sortWrites(want)
		if len(got) != len(want) || (len(got) > 0 && !equal(got, want)) {
			w.fatalf("#%d Written() = %v; want %v", id, got, want)
		}
		applied := deepcopy.CopyMap(x.origin)
		statemerge.Apply(applied, copyWrites(got))
		if !equal(applied, x.model) {
			w.fatalf("#%d origin with Written() applied = %v; want %v", id, applied, x.model)
		}
	}
}

// checkLog checks that what x's stores logged since their last mark turns
// their contents then into their contents now, and sets a new mark.
func (w *world) checkLog(x *replica) {
	w.t.Helper()
	for _, c := range []*logCheck{x.overLog, x.flatLog} {
		ws := copyWrites(c.s.LogSince(c.mark))
		got := deepcopy.CopyMap(c.base)
		statemerge.Apply(got, ws)
		if !equal(got, x.model) {
			w.fatalf("%s: contents at the mark %v with LogSince(%d) = %v applied = %v; want %v", c.name, c.base, c.mark, ws, got, x.model)
		}
		c.writes = append(c.writes, ws...)
		c.mark = c.s.LogLen()
		c.base = c.s.Copy()
	}
	x.held = nil // reading the log ends the changes in place
}

// checkFullLog checks that the whole log of x's stores, copied at each mark
// or at once now, turns their starting contents into their contents now.
func (w *world) checkFullLog(x *replica) {
	w.t.Helper()
	for _, c := range []*logCheck{x.overLog, x.flatLog} {
		got := deepcopy.CopyMap(c.start)
		statemerge.Apply(got, copyWrites(c.writes)) // Apply stores the values it is given
		if !equal(got, x.model) {
			w.fatalf("%s: start %v with the log copied at each mark applied = %v; want %v", c.name, c.start, got, x.model)
		}
		all := copyWrites(c.s.LogSince(0))
		got = deepcopy.CopyMap(c.start)
		statemerge.Apply(got, all)
		if !equal(got, x.model) {
			w.fatalf("%s: start %v with LogSince(0) = %v applied = %v; want %v", c.name, c.start, all, got, x.model)
		}
	}
}

func TestOverlayMatchesReference(t *testing.T) {
	t.Parallel()
	forSeeds(t, 1, 160, func(seed uint64) {
		newWorld(t, seed, false).run(200)
	})
}

func TestLogReplays(t *testing.T) {
	t.Parallel()
	forSeeds(t, 1_000_000, 120, func(seed uint64) {
		newWorld(t, seed, true).run(200)
	})
}

// TestSavepointsMatchReference adds savepoints, rolled back or released,
// nested or not, to the operations of TestOverlayMatchesReference, all of
// one owner: a rollback must restore the contents at its savepoint.
func TestSavepointsMatchReference(t *testing.T) {
	t.Parallel()
	forSeeds(t, 3_000_000, 160, func(seed uint64) {
		w := newWorld(t, seed, false)
		w.saving, w.owners = true, []any{"attempt"}
		w.run(200)
	})
}

// TestSavepointsLogReplays adds savepoints to the operations of
// TestLogReplays: a rollback's restoring writes must be logged.
func TestSavepointsLogReplays(t *testing.T) {
	t.Parallel()
	forSeeds(t, 4_000_000, 120, func(seed uint64) {
		w := newWorld(t, seed, true)
		w.saving, w.owners = true, []any{"attempt"}
		w.run(200)
	})
}

// owners are tokens of three types for the owners of the property tests,
// and nil, for the untagged calls: owners compare as interface values.
var owners = []any{nil, 1, "two", &struct{ n int }{3}}

// TestOwnedSavepointsMatchReference runs the operations of
// TestSavepointsMatchReference for two or three owners that interleave
// their savepoints, each operation tagged with one of them or none,
// against a reference that undoes each owner's accesses one by one,
// latest first, skipping the gets another owner's write superseded. Each
// of these changes to the store fails it: a write by another owner (Set,
// Apply, Replace, a rollback) not superseding the gets of the key; the
// supersession walking back past the owner's own Replace; a write after a
// get in the same savepoint not marking the entry a write; a get after a
// superseded one not saving the key again (from about 340 seeds on).
func TestOwnedSavepointsMatchReference(t *testing.T) {
	t.Parallel()
	forSeeds(t, 5_000_000, 400, func(seed uint64) {
		w := newWorld(t, seed, false)
		w.saving, w.owners = true, owners[:2+seed%3]
		w.run(250)
	})
}

// TestOwnedSavepointsLogReplays adds owners to TestSavepointsLogReplays.
func TestOwnedSavepointsLogReplays(t *testing.T) {
	t.Parallel()
	forSeeds(t, 6_000_000, 120, func(seed uint64) {
		w := newWorld(t, seed, true)
		w.saving, w.owners = true, owners[:2+seed%3]
		w.run(250)
	})
}

// TestLogReplaysWithoutMarks logs long runs read once at the end, values
// handed out staying open to change in place throughout.
func TestLogReplaysWithoutMarks(t *testing.T) {
	t.Parallel()
	forSeeds(t, 2_000_000, 100, func(seed uint64) {
		w := newWorld(t, seed, true)
		w.noMarks = true
		w.run(150)
	})
}

var (
	seedFlag  = flag.Uint64("seed", 0, "run the property tests with this seed only (as a failure names it)")
	seedsFlag = flag.Uint64("seeds", 0, "run this many seeds per property test (a longer soak)")
	traceFlag = flag.String("trace", "", "on a property test failure, list every operation containing this (e.g. \"#3 \") instead of the last few")
)

// forSeeds calls run with n seeds from first on (-seeds of them if set,
// fewer with -short), or with the one -seed names if it is in that range.
func forSeeds(t *testing.T, first, n uint64, run func(seed uint64)) {
	t.Helper()
	switch {
	case *seedsFlag != 0:
		n = *seedsFlag
	case testing.Short():
		n /= 8
	}
	if *seedFlag != 0 {
		if *seedFlag >= first && *seedFlag < first+n {
			run(*seedFlag)
		}
		return
	}
	for seed := first; seed < first+n; seed++ {
		run(seed)
	}
}

// equal is reflect.DeepEqual for JSON-shaped values, only faster.
func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || (a == nil) != (b == nil) || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equal(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		return ok && (a == nil) == (b == nil) && slices.EqualFunc(a, b, equal)
	case []statemerge.Write:
		b, ok := b.([]statemerge.Write)
		return ok && (a == nil) == (b == nil) && slices.EqualFunc(a, b, func(x, y statemerge.Write) bool {
			return slices.Equal(x.Path, y.Path) && x.Deleted == y.Deleted && equal(x.Value, y.Value)
		})
	case nil, bool, float64, string:
		return a == b
	}
	return reflect.DeepEqual(a, b)
}
