package deepcopy_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
)

// holder is a struct value through which a cycle may pass: Copy does not
// track struct values, only the maps, slices and pointers around them.
type holder struct {
	V   any
	Arr [1]any
}

// TestCopyCyclesUntracked checks cycles that pass only through values Copy
// does not track on its first attempt (struct values, arrays, the
// map[string]any and []any fast paths, a ring longer than the untracked
// depth limit): Copy must notice the nesting, start over tracking them,
// and return an equal copy rather than recurse without end. Copy handled
// them already: the test verifies, as the issue asked, and guards that;
// each case has a deadline, so that a loop fails rather than hangs.
func TestCopyCyclesUntracked(t *testing.T) {
	tests := []struct {
		name string
		give func() any
	}{
		{"map through a struct value", func() any {
			m := map[string]any{}
			m["h"] = holder{V: m}
			return m
		}},
		{"slice through an array in a struct value", func() any {
			s := []any{nil}
			var h holder
			h.Arr[0] = s
			s[0] = h
			return s
		}},
		{"ring of 1,000 maps", func() any {
			first := map[string]any{}
			m := first
			for range 999 {
				next := map[string]any{}
				m["n"] = next
				m = next
			}
			m["n"] = first
			return first
		}},
		{"ring of 1,000 slices", func() any {
			first := []any{nil}
			s := first
			for range 999 {
				next := []any{nil}
				s[0] = next
				s = next
			}
			s[0] = first
			return first
		}},
		{"map in a reflected map in a []any", func() any {
			m := map[string]any{}
			m["l"] = []any{map[string]map[string]any{"back": m}}
			return m
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.give()
			done := make(chan any, 1)
			go func() { done <- deepcopy.Copy(orig) }()
			select {
			case got := <-done:
				if !reflect.DeepEqual(got, orig) {
					t.Errorf("Copy(cyclic %T) is not equal to the original", orig)
				}
				if same(got, orig) {
					t.Errorf("Copy(cyclic %T) returned the original", orig)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Copy(cyclic %T) did not return within 10s", orig)
			}
			if deepcopy.Immutable(orig) {
				t.Errorf("Immutable(cyclic %T) = true; want false", orig)
			}
		})
	}
}
