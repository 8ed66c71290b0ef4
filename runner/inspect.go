package runner

import (
	"context"
	"fmt"
	"strings"
)

// Inspection is a stored run and its journal as a tree of step instances.
type Inspection struct {
	Run   *Run
	Steps []*StepNode // the root instances (one, the pipeline's, once it has records)
}

// StepNode is a step instance of an [Inspection], with its journal
// entries and the instances inside it. An instance path's parent is the
// path before its last "/" — through the iteration or item it belongs to:
// "p/loop#2/body" is under "p/loop#2", which is under "p/loop". A node may
// have no entries: an instance that had not completed, or an iteration.
type StepNode struct {
	Path     string
	Entries  []Entry // its records: a decision, its completion; in Seq order
	Children []*StepNode
}

// Inspect returns run id and its journal as a step tree, children in the
// order they first recorded something. Errors: [ErrNotFound], [ErrCorrupt]
// when a record cannot be read back, a store error.
func (r *Runner) Inspect(ctx context.Context, id string) (*Inspection, error) {
	run, err := r.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("runner: Inspect: %w", err)
	}
	entries, err := r.store.Journal(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("runner: Inspect: %w", err)
	}
	return &Inspection{Run: run, Steps: stepTree(entries)}, nil
}

// stepTree nests entries by instance path.
func stepTree(entries []Entry) []*StepNode {
	byPath := make(map[string]*StepNode)
	var roots []*StepNode
	var node func(p string) *StepNode
	node = func(p string) *StepNode {
		if n := byPath[p]; n != nil {
			return n
		}
		n := &StepNode{Path: p}
		byPath[p] = n
		if parent, ok := parentPath(p); ok {
			pn := node(parent)
			pn.Children = append(pn.Children, n)
		} else {
			roots = append(roots, n)
		}
		return n
	}
	for _, e := range entries {
		n := node(e.Record.Path)
		n.Entries = append(n.Entries, e)
	}
	return roots
}

// parentPath returns the path of the instance (or iteration, or item) p is
// in.
func parentPath(p string) (string, bool) {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i > 0 {
			return p[:i], true
		}
	}
	if i := strings.LastIndexAny(p, "/#"); i > 0 {
		return p[:i], true
	}
	return "", false
}
