package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/sqlite"
)

// A run's life in the store: created under a lease, a record appended as
// a step completes, the run finished, its journal read back.
func Example() {
	dir, err := os.MkdirTemp("", "caudal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := sqlite.Open(filepath.Join(dir, "caudal.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = s.Close() }()

	ctx := context.Background()
	now := time.Now()
	run := &runner.Run{
		ID: "run-1", Pipeline: "report", Status: runner.StatusRunning, Input: []byte(`"tides"`),
		CreatedAt: now, UpdatedAt: now, Owner: "worker-1", LeaseUntil: now.Add(time.Minute),
	}
	if err := s.Create(ctx, run); err != nil {
		log.Fatal(err)
	}
	seq, err := s.Append(ctx, "run-1", "worker-1", caudal.Record{Path: "report/plan", Status: caudal.StatusSucceeded, Output: "3 steps"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("appended record", seq)

	run.Status, run.Output, run.UpdatedAt = runner.StatusCompleted, []byte(`"done"`), time.Now()
	if err := s.Update(ctx, run, "worker-1"); err != nil {
		log.Fatal(err)
	}
	if err := s.Release(ctx, "run-1", "worker-1"); err != nil {
		log.Fatal(err)
	}

	entries, err := s.Journal(ctx, "run-1")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.Seq, e.Record.Path, e.Record.Output)
	}
	got, err := s.Get(ctx, "run-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s owner=%q\n", got.Status, got.Output, got.Owner)
	// Output:
	// appended record 1
	// 1 report/plan 3 steps
	// completed "done" owner=""
}
