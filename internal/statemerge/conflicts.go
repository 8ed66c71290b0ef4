package statemerge

import (
	"reflect"
	"slices"
	"strings"
)

// Conflict is a path written by more than one branch with different
// outcomes. Like [Write], it is plain data.
type Conflict struct {
	Path     []string // the conflicting path (the shorter one when one path is a prefix of another)
	Branches []string // the branches that wrote it, in declaration order
}

// Key returns the path joined with "." (for messages and metadata). Keys
// that contain "." make it ambiguous; use Path to tell paths apart. Key is
// safe for concurrent use.
func (c Conflict) Key() string { return strings.Join(c.Path, ".") }

// BranchWrites is one successful branch's changes, named. Like [Write], it
// is plain data.
type BranchWrites struct {
	Branch string
	Writes []Write
}

// Conflicts returns the paths written by two or more branches with
// different outcomes, sorted by path, or nil when there are none.
//
// Two writes of different branches overlap when their paths are equal or
// one is a prefix of the other. Writes to equal paths agree, and are not a
// conflict, when both are Deleted or both set reflect.DeepEqual values. A
// prefix overlap is always a conflict: one branch replaced a subtree the
// other edited inside. Writes of one branch never conflict with each other.
//
// Overlapping conflicts are reported once, at the shortest written path
// they fall under, so the returned paths never overlap. For example, when
// branch a sets "x", b sets "x.y" and c sets "x.y" to another value, there
// is one Conflict, at "x", naming a, b and c. Conflict.Branches lists every
// branch that wrote at or under Path, in declaration order (the order of
// branches), each once; branches are told apart by position, so names are
// expected to be unique.
//
// branches and their writes are not modified; the returned Paths are copies.
// Conflicts is safe for concurrent use, provided nothing mutates branches
// meanwhile.
func Conflicts(branches []BranchWrites) []Conflict {
	var all []branchWrite
	for i, b := range branches {
		for j := range b.Writes {
			all = append(all, branchWrite{branch: i, w: &b.Writes[j]})
		}
	}
	// Sorted by path, all writes at or under a path follow it directly, so
	// each group of overlapping writes is one run of all: the first write
	// of the run has the shortest path, and the run goes on while the paths
	// start with it.
	slices.SortStableFunc(all, func(a, b branchWrite) int { return slices.Compare(a.w.Path, b.w.Path) })

	var conflicts []Conflict
	for start := 0; start < len(all); {
		root := all[start].w.Path
		end := start + 1
		for end < len(all) && hasPrefix(all[end].w.Path, root) {
			end++
		}
		if group := all[start:end]; conflicting(group) {
			conflicts = append(conflicts, Conflict{Path: slices.Clone(root), Branches: names(branches, group)})
		}
		start = end
	}
	return conflicts
}

// branchWrite is one write of the branch at index branch.
type branchWrite struct {
	branch int
	w      *Write
}

// conflicting reports whether two writes of group, from different
// branches, overlap without agreeing.
func conflicting(group []branchWrite) bool {
	for i, a := range group {
		for _, b := range group[i+1:] {
			if a.branch != b.branch && overlap(a.w.Path, b.w.Path) && !agree(a.w, b.w) {
				return true
			}
		}
	}
	return false
}

// overlap reports whether one of a and b is a prefix of the other (or they
// are equal).
func overlap(a, b []string) bool {
	return hasPrefix(a, b) || hasPrefix(b, a)
}

// hasPrefix reports whether path starts with prefix.
func hasPrefix(path, prefix []string) bool {
	return len(path) >= len(prefix) && slices.Equal(path[:len(prefix)], prefix)
}

// agree reports whether a and b, two overlapping writes, have the same
// outcome: equal paths, and both delete or both set equal values.
func agree(a, b *Write) bool {
	switch {
	case len(a.Path) != len(b.Path): // a prefix overlap
		return false
	case a.Deleted || b.Deleted:
		return a.Deleted && b.Deleted
	default:
		return reflect.DeepEqual(a.Value, b.Value)
	}
}

// names returns the names of the branches that wrote in group, in
// declaration order, each once.
func names(branches []BranchWrites, group []branchWrite) []string {
	idx := make([]int, 0, len(group))
	for _, bw := range group {
		idx = append(idx, bw.branch)
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	out := make([]string, len(idx))
	for i, b := range idx {
		out[i] = branches[b].Branch
	}
	return out
}
