package runner_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// tree renders nodes as path → children paths, and records per path.
func tree(ns []*runner.StepNode, kids map[string][]string, recs map[string]int) {
	for _, n := range ns {
		recs[n.Path] = len(n.Entries)
		for _, c := range n.Children {
			kids[n.Path] = append(kids[n.Path], c.Path)
		}
		tree(n.Children, kids, recs)
	}
}

func TestInspect(t *testing.T) {
	s, _ := memStore(t)
	l := newLedger()
	p := caudal.Seq("p",
		caudal.Loop("loop", caudal.Seq("body", agent(l, "iter")), caudal.WithMaxIterations(2)),
		split(l),
		caudal.Map("each", agent(l, "item")),
		caudal.Conditional("route", branchKey, caudal.Branch("three", agent(l, "x"))),
	)
	r := newRunner(t, s, map[string]caudal.Step{"p": p})
	run, err := r.Start(t.Context(), "p", "in")
	if err != nil {
		t.Fatal(err)
	}
	in, err := r.Inspect(t.Context(), run.ID)
	if err != nil || in.Run.ID != run.ID || len(in.Steps) != 1 {
		t.Fatalf("Inspect = %+v, %v", in, err)
	}
	kids, recs := map[string][]string{}, map[string]int{}
	tree(in.Steps, kids, recs)
	wantKids := map[string][]string{
		"p":             {"p/loop", "p/split", "p/each", "p/route"},
		"p/loop":        {"p/loop#1", "p/loop#2"},
		"p/loop#1":      {"p/loop#1/body"},
		"p/loop#2":      {"p/loop#2/body"},
		"p/loop#1/body": {"p/loop#1/body/iter"},
		"p/loop#2/body": {"p/loop#2/body/iter"},
		"p/each":        {"p/each[0]", "p/each[1]", "p/each[2]"},
		"p/each[0]":     {"p/each[0]/item"},
		"p/each[1]":     {"p/each[1]/item"},
		"p/each[2]":     {"p/each[2]/item"},
		"p/route":       {"p/route/three"},
	}
	if !reflect.DeepEqual(kids, wantKids) {
		t.Errorf("tree %v\nwant %v", kids, wantKids)
	}
	if recs["p/route"] != 2 || recs["p/loop#1"] != 0 || recs["p"] != 1 {
		t.Errorf("records per node %v; want the conditional's decision and completion, none for an iteration", recs)
	}
	if _, err := r.Inspect(t.Context(), "nope"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Inspect(unknown) = %v; want ErrNotFound", err)
	}
}

func TestDeleteAndRetain(t *testing.T) {
	s, _ := memStore(t)
	l := newLedger()
	r := newRunner(t, s, map[string]caudal.Step{"p": caudal.Seq("p", agent(l, "a")), "ask": schemaPipeline(l)})
	for _, id := range []string{"a", "b"} {
		if _, err := r.Start(t.Context(), "p", id, runner.WithRunID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Start(t.Context(), "ask", "c", runner.WithRunID("c")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(t.Context(), "b", "other", time.Hour, runner.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(t.Context(), "b"); !errors.Is(err, runner.ErrRunLocked) {
		t.Errorf("Delete of a run another holds = %v; want ErrRunLocked", err)
	}
	if err := r.Delete(t.Context(), "a"); err != nil {
		t.Errorf("Delete = %v", err)
	}
	if err := r.Delete(t.Context(), "a"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Delete twice = %v; want ErrNotFound", err)
	}
	if n, err := r.Retain(t.Context(), time.Hour); n != 0 || err != nil {
		t.Errorf("Retain(1h) = %d, %v; want nothing old enough", n, err)
	}
	if n, err := r.Retain(t.Context(), -time.Hour); n != 1 || err != nil {
		t.Errorf("Retain(everything) = %d, %v; want b, the paused run kept", n, err)
	}
	if runs, _ := r.List(t.Context(), runner.Filter{}); len(runs) != 1 || runs[0].ID != "c" {
		t.Errorf("left %v; want the paused run", ids(runs))
	}
}
