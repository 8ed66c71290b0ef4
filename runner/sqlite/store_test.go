package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/sqlite"
	"github.com/caudal-go/caudal/runner/storetest"
)

func open(t *testing.T) runner.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "caudal.db"))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return s
}

// rawExec runs a statement on the store's file behind its back.
func rawExec(t *testing.T, s runner.Store, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", s.(*sqlite.Store).Path())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open,
		storetest.WithCorruptRecord(func(t *testing.T, s runner.Store, id string) {
			rawExec(t, s, `UPDATE records SET record = ? WHERE run_id = ?`, []byte(`{"path": 5`), id)
		}),
		storetest.WithCorruptRun(func(t *testing.T, s runner.Store, id string) {
			rawExec(t, s, `UPDATE runs SET status = 'exploded' WHERE id = ?`, id)
		}),
	)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		give string
	}{
		{"empty path", ""},
		{"memory", ":memory:"},
		{"URI", "file:x.db"},
		{"question mark", filepath.Join(dir, "a?b.db")},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "x.db")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlite.Open(tt.give)
			if err == nil {
				_ = s.Close()
				t.Fatalf("Open(%q) = nil error; want one", tt.give)
			}
		})
	}
}

func TestOpenNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := writeFile(path, []byte("this is not a SQLite database, not even close; padding padding padding padding padding padding")); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.Open(path); err == nil {
		_ = s.Close()
		t.Fatalf("Open of a file that is not a database = nil error; want one")
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caudal.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE schema_version SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if s, err := sqlite.Open(path); !errors.Is(err, sqlite.ErrSchemaTooNew) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("Open of a newer schema = %v; want ErrSchemaTooNew", err)
	}
}

func TestReopenKeepsRuns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "caudal.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	run := &runner.Run{ID: "r", Pipeline: "p", Status: runner.StatusRunning, CreatedAt: now, UpdatedAt: now, Owner: "me", LeaseUntil: now.Add(time.Hour)}
	if err := s.Create(ctx, run); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "r", "me", caudal.Record{Path: "a", Status: caudal.StatusSucceeded}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err = sqlite.Open(path, sqlite.WithBusyTimeout(time.Second), sqlite.WithSynchronousFull())
	if err != nil {
		t.Fatalf("reopen = %v", err)
	}
	defer func() { _ = s.Close() }()
	entries, err := s.Journal(ctx, "r")
	if err != nil || len(entries) != 1 {
		t.Fatalf("Journal after reopen = %v, %v; want 1 entry", entries, err)
	}
}

// TestTwoStoresOneFile has two stores on one file — as two processes
// would — race for the same runs: exactly one claim of each wins.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "caudal.db")
	a, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	b, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	for i := range 20 {
		id := fmt.Sprint("r", i)
		now := time.Now()
		if err := a.Create(ctx, &runner.Run{ID: id, Status: runner.StatusRunning, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		for _, s := range []*sqlite.Store{a, b} {
			go func() {
				defer func() {
					if v := recover(); v != nil {
						errs <- fmt.Errorf("panic: %v", v)
					}
				}()
				_, err := s.Claim(ctx, id, fmt.Sprintf("%p", s), time.Minute, runner.StatusRunning)
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		won := 0
		for _, err := range []error{e1, e2} {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, runner.ErrRunLocked):
				t.Errorf("claim of %s = %v; want nil or ErrRunLocked", id, err)
			}
		}
		if won != 1 {
			t.Errorf("claims of %s: %d won; want 1", id, won)
		}
	}
}
