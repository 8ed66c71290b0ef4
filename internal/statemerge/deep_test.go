package statemerge

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// nested returns a map nested depth levels deep under key "n", with leaf
// at the bottom.
func nested(depth int, leaf any) map[string]any {
	m := map[string]any{"leaf": leaf}
	for range depth - 1 {
		m = map[string]any{"n": m}
	}
	return m
}

// TestDiffDeep diffs two values nested 20,000 deep that differ at the
// bottom. It caught Diff scanning every ancestor at each level to notice
// cycles, O(depth²): 8.5 s for this depth (the issue), 66 s under -race.
// The bound is generous: the linear walk takes milliseconds.
func TestDiffDeep(t *testing.T) {
	const depth = 20_000
	before, after := nested(depth, 1.0), nested(depth, 2.0)
	start := time.Now()
	got := Diff(before, after)
	elapsed := time.Since(start)
	t.Logf("Diff of two maps nested %d deep: %v", depth, elapsed)
	if len(got) != 1 || len(got[0].Path) != depth || got[0].Value != 2.0 {
		t.Fatalf("Diff(nested 1, nested 2) = %d writes; want 1 at depth %d", len(got), depth)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Diff of maps nested %d deep took %v; want well under 2s (linear in depth)", depth, elapsed)
	}
}

// TestDiffDeepCycle checks that cycles are still noticed once the path is
// deep enough for Diff to track it in a set rather than scan it: a cycle
// closing 100 levels down, a map on the path of before only, and a map
// shared by two siblings (not a cycle: both are diffed). It caught nothing
// before the set; it guards the set's bookkeeping (a map left in it after
// its level would hide a later sibling's changes).
func TestDiffDeepCycle(t *testing.T) {
	ring := func(n int, x float64) map[string]any {
		first := map[string]any{"x": x}
		m := first
		for range n - 1 {
			next := map[string]any{"x": x}
			m["n"] = next
			m = next
		}
		m["n"] = first
		return first
	}
	shared := nested(100, 1.0)
	sharedAfter := nested(100, 2.0)
	tests := []struct {
		name        string
		give, after map[string]any
		want        int // writes
	}{
		{"equal rings", map[string]any{"r": ring(100, 1)}, map[string]any{"r": ring(100, 1)}, 0},
		{"different rings", map[string]any{"r": ring(100, 1)}, map[string]any{"r": ring(100, 2)}, 101}, // each x, and the ring where it closes
		{"ring replaced by a chain", map[string]any{"r": ring(100, 1)}, map[string]any{"r": nested(200, 1.0)}, -1},
		{"shared by siblings", map[string]any{"a": shared, "b": shared}, map[string]any{"a": sharedAfter, "b": sharedAfter}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.give, tt.after)
			if tt.want >= 0 && len(got) != tt.want {
				t.Errorf("Diff = %d writes; want %d", len(got), tt.want)
			}
			dst := copyCyclic(tt.give)
			Apply(dst, got)
			if !reflect.DeepEqual(dst, tt.after) {
				t.Errorf("Apply(before, Diff(before, after)) differs from after")
			}
		})
	}
}

// copyCyclic returns a copy of m's top level: Apply then replaces, rather
// than changes, what Diff's writes reach.
func copyCyclic(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// BenchmarkDiffDeep diffs two maps nested depth deep that differ at the
// bottom: the time per op grows linearly with depth.
func BenchmarkDiffDeep(b *testing.B) {
	for _, depth := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			before, after := nested(depth, 1.0), nested(depth, 2.0)
			b.ReportAllocs()
			for b.Loop() {
				Diff(before, after)
			}
		})
	}
}

// TestCyclicValues runs the functions of this package that look inside
// values (Diff, Conflicts, the reducers) on values that contain
// themselves: each must return, with a deadline so that a loop fails
// rather than hangs. They compare with reflect.DeepEqual, which notices
// cycles, and recurse only through maps Diff tracks: they returned
// already; the test verifies, as the issue asked, and guards that.
func TestCyclicValues(t *testing.T) {
	list := func() []any { l := []any{1.0, nil}; l[1] = l; return l }
	self := func() map[string]any { m := map[string]any{"x": 1.0}; m["self"] = m; return m }
	tests := []struct {
		name string
		run  func() error
	}{
		{"Diff", func() error {
			got := Diff(map[string]any{"m": self(), "l": list()}, map[string]any{"m": self(), "l": list()})
			if len(got) != 0 {
				return fmt.Errorf("Diff(equal cyclic values) = %v; want none", got)
			}
			return nil
		}},
		{"Conflicts", func() error {
			got := Conflicts([]BranchWrites{
				{Branch: "a", Writes: []Write{{Path: []string{"k"}, Value: list()}}},
				{Branch: "b", Writes: []Write{{Path: []string{"k"}, Value: list()}}},
				{Branch: "c", Writes: []Write{{Path: []string{"m"}, Value: self()}}},
				{Branch: "d", Writes: []Write{{Path: []string{"m"}, Value: self()}}},
			})
			if len(got) != 0 {
				return fmt.Errorf("Conflicts(equal cyclic values) = %v; want none", got)
			}
			return nil
		}},
		{"Append", func() error {
			parent := list()
			got, err := Append(parent, true, []any{append(list(), "new"), list()})
			if err != nil || len(got.([]any)) != 3 {
				return fmt.Errorf("Append(cyclic lists) = %v, %v; want the parent and one new element", got, err)
			}
			return nil
		}},
		{"Sum", func() error {
			if _, err := Sum(self(), true, []any{self()}); err == nil {
				return fmt.Errorf("Sum(cyclic maps) = nil error; want one (not numbers)")
			}
			return nil
		}},
		{"Max", func() error {
			if _, err := Max(list(), true, nil); err == nil {
				return fmt.Errorf("Max(cyclic list) = nil error; want one (not a number)")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- tt.run() }()
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s on cyclic values did not return within 10s", tt.name)
			}
		})
	}
}
