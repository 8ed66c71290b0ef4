package statemerge

import (
	"reflect"
	"testing"
)

// branch returns a named branch with writes.
func branch(name string, writes ...Write) BranchWrites {
	return BranchWrites{Branch: name, Writes: writes}
}

func conflict(p string, branches ...string) Conflict {
	return Conflict{Path: path(p), Branches: branches}
}

func TestConflicts(t *testing.T) {
	tests := []struct {
		name string
		give []BranchWrites
		want []Conflict
	}{
		{
			name: "no branches",
			give: nil,
			want: nil,
		},
		{
			name: "one branch",
			give: []BranchWrites{branch("a", set("x", 1.0), set("y", 2.0))},
			want: nil,
		},
		{
			name: "disjoint keys",
			give: []BranchWrites{
				branch("a", set("x", 1.0)),
				branch("b", set("y", 1.0), del("z")),
			},
			want: nil,
		},
		{
			name: "disjoint nested siblings",
			give: []BranchWrites{
				branch("a", set("m.x", 1.0)),
				branch("b", set("m.y", 2.0)),
			},
			want: nil,
		},
		{
			name: "sibling keys sharing a string prefix",
			give: []BranchWrites{
				branch("a", set("x", 1.0)),
				branch("b", set("xy", 2.0)),
			},
			want: nil,
		},
		{
			name: "same key same value",
			give: []BranchWrites{
				branch("a", set("x", map[string]any{"k": []any{1.0}})),
				branch("b", set("x", map[string]any{"k": []any{1.0}})),
			},
			want: nil,
		},
		{
			name: "same key both deleted",
			give: []BranchWrites{
				branch("a", del("x")),
				branch("b", del("x")),
			},
			want: nil,
		},
		{
			name: "same key different values",
			give: []BranchWrites{
				branch("a", set("x", 1.0)),
				branch("b", set("x", 2.0)),
			},
			want: []Conflict{conflict("x", "a", "b")},
		},
		{
			name: "same number different types",
			give: []BranchWrites{
				branch("a", set("x", 1)),
				branch("b", set("x", 1.0)),
			},
			want: []Conflict{conflict("x", "a", "b")},
		},
		{
			name: "set nil and deleted",
			give: []BranchWrites{
				branch("a", set("x", nil)),
				branch("b", del("x")),
			},
			want: []Conflict{conflict("x", "a", "b")},
		},
		{
			name: "same nested key different values",
			give: []BranchWrites{
				branch("a", set("m.n.x", 1.0)),
				branch("b", set("m.n.x", 2.0)),
			},
			want: []Conflict{conflict("m.n.x", "a", "b")},
		},
		{
			name: "prefix overlap",
			give: []BranchWrites{
				branch("a", set("m", "flat")),
				branch("b", set("m.x", 1.0)),
			},
			want: []Conflict{conflict("m", "a", "b")},
		},
		{
			name: "prefix overlap with the shorter path later",
			give: []BranchWrites{
				branch("a", set("m.x", 1.0)),
				branch("b", del("m")),
			},
			want: []Conflict{conflict("m", "a", "b")},
		},
		{
			name: "prefix overlap with consistent values",
			give: []BranchWrites{
				branch("a", set("m", map[string]any{"x": 1.0})),
				branch("b", set("m.x", 1.0)),
			},
			want: []Conflict{conflict("m", "a", "b")},
		},
		{
			name: "three branches keep declaration order",
			give: []BranchWrites{
				branch("zeta", set("x", 1.0)),
				branch("alpha", set("x", 2.0)),
				branch("mu", set("x", 3.0)),
			},
			want: []Conflict{conflict("x", "zeta", "alpha", "mu")},
		},
		{
			name: "three branches two agree",
			give: []BranchWrites{
				branch("c", set("x", 1.0)),
				branch("b", set("x", 2.0)),
				branch("a", set("x", 1.0)),
			},
			want: []Conflict{conflict("x", "c", "b", "a")},
		},
		{
			name: "branch without overlapping writes not listed",
			give: []BranchWrites{
				branch("a", set("x", 1.0)),
				branch("b", set("y", 1.0)),
				branch("c", set("x", 2.0)),
			},
			want: []Conflict{conflict("x", "a", "c")},
		},
		{
			name: "nested conflicts reported once at shortest path",
			give: []BranchWrites{
				branch("a", set("m.x.y", 1.0)),
				branch("b", set("m", 0.0)),
				branch("c", set("m.x.y", 2.0), set("m.z", 1.0)),
			},
			want: []Conflict{conflict("m", "a", "b", "c")},
		},
		{
			name: "branch listed once",
			give: []BranchWrites{
				branch("a", set("m.x", 1.0), set("m.y", 1.0)),
				branch("b", set("m", 0.0)),
			},
			want: []Conflict{conflict("m", "a", "b")},
		},
		{
			name: "overlapping writes within one branch",
			give: []BranchWrites{
				branch("a", set("m", 1.0), set("m.x", 1.0), set("m.x", 2.0)),
				branch("b", set("n", 1.0)),
			},
			want: nil,
		},
		{
			name: "several conflicts sorted by key sequence",
			give: []BranchWrites{
				branch("a", set("z", 1.0), set("m-", 1.0), set("m.x", 1.0), set("k", 1.0)),
				branch("b", set("z", 2.0), set("m-", 2.0), set("m.x", 2.0), set("k", 1.0)),
			},
			want: []Conflict{conflict("m.x", "a", "b"), conflict("m-", "a", "b"), conflict("z", "a", "b")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Conflicts(tt.give); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Conflicts(%v) = %v; want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestConflictsCopiesPaths(t *testing.T) {
	give := []BranchWrites{branch("a", set("x.y", 1.0)), branch("b", set("x.y", 2.0))}
	got := Conflicts(give)
	if len(got) != 1 {
		t.Fatalf("Conflicts(%v) = %v; want 1 conflict", give, got)
	}
	got[0].Path[0] = "changed"
	if give[0].Writes[0].Path[0] != "x" || give[1].Writes[0].Path[0] != "x" {
		t.Errorf("changing Conflicts(...)[0].Path changed the writes: %v", give)
	}
}

func TestConflictKey(t *testing.T) {
	tests := []struct {
		give Conflict
		want string
	}{
		{Conflict{Path: []string{"a"}}, "a"},
		{Conflict{Path: []string{"a", "b", "c"}}, "a.b.c"},
		{Conflict{}, ""},
	}
	for _, tt := range tests {
		if got := tt.give.Key(); got != tt.want {
			t.Errorf("Conflict{Path: %q}.Key() = %q; want %q", tt.give.Path, got, tt.want)
		}
	}
}
