package storetest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/sqlite"
	"github.com/caudal-go/caudal/runner/storetest"
)

// The suite is itself tested: each mutant is a correct store (SQLite)
// with one contract broken, and the suite must fail on it, in the subtest
// that states the broken rule.

const mutantEnv = "CAUDAL_STORETEST_MUTANT"

// mutant wraps a store and breaks one rule of the contract.
type mutant struct {
	runner.Store
	bug string
}

func (m *mutant) Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...runner.Status) (*runner.Run, error) {
	r, err := m.Store.Claim(ctx, id, owner, ttl, statuses...)
	if m.bug == "claim ignores live leases" && errors.Is(err, runner.ErrRunLocked) {
		if held, gerr := m.Get(ctx, id); gerr == nil {
			_ = m.Release(ctx, id, held.Owner)
			return m.Store.Claim(ctx, id, owner, ttl, statuses...)
		}
	}
	return r, err
}

func (m *mutant) Append(ctx context.Context, id, owner string, rec caudal.Record) (int64, error) {
	seq, err := m.Store.Append(ctx, id, owner, rec)
	if m.bug == "append ignores the owner" && errors.Is(err, runner.ErrLeaseLost) {
		if held, gerr := m.Get(ctx, id); gerr == nil && held.Owner != "" {
			return m.Store.Append(ctx, id, held.Owner, rec)
		}
	}
	return seq, err
}

func (m *mutant) Journal(ctx context.Context, id string) ([]runner.Entry, error) {
	entries, err := m.Store.Journal(ctx, id)
	if m.bug == "journal out of order" {
		slices.Reverse(entries)
	}
	return entries, err
}

func (m *mutant) List(ctx context.Context, f runner.Filter) ([]*runner.Run, error) {
	if m.bug == "list ignores the limit" {
		f.Limit = 0
	}
	return m.Store.List(ctx, f)
}

func (m *mutant) Orphans(ctx context.Context, limit int) ([]string, error) {
	if m.bug != "orphans include live leases" {
		return m.Store.Orphans(ctx, limit)
	}
	runs, err := m.Store.List(ctx, runner.Filter{Status: []runner.Status{runner.StatusRunning}})
	var ids []string
	for _, r := range slices.Backward(runs) {
		ids = append(ids, r.ID)
	}
	return ids, err
}

func (m *mutant) DeleteBefore(ctx context.Context, t time.Time, statuses ...runner.Status) (int, error) {
	if m.bug == "retention deletes running runs" && len(statuses) == 0 {
		statuses = []runner.Status{runner.StatusRunning, runner.StatusPaused, runner.StatusCompleted, runner.StatusFailed, runner.StatusCancelled}
	}
	return m.Store.DeleteBefore(ctx, t, statuses...)
}

// TestMutantSuite runs the suite on the mutant named by mutantEnv; it is
// run by TestSuiteCatchesMutants, in a child process.
func TestMutantSuite(t *testing.T) {
	bug := os.Getenv(mutantEnv)
	if bug == "" {
		t.Skip("run by TestSuiteCatchesMutants")
	}
	storetest.Run(t, func(t *testing.T) runner.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "caudal.db"))
		if err != nil {
			t.Fatal(err)
		}
		return &mutant{Store: s, bug: bug}
	})
}

func TestSuiteCatchesMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process per mutant")
	}
	tests := []struct {
		give string
		want string // a subtest that must fail
	}{
		{"claim ignores live leases", "TestMutantSuite/ClaimConcurrent"},
		{"append ignores the owner", "TestMutantSuite/AppendLeaseLost/another_owner"},
		{"journal out of order", "TestMutantSuite/AppendOrder"},
		{"list ignores the limit", "TestMutantSuite/List/limit"},
		{"orphans include live leases", "TestMutantSuite/Orphans/all"},
		{"retention deletes running runs", "TestMutantSuite/DeleteBefore/default_spares_running"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutantSuite$", "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+tt.give)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store whose %s", tt.give)
			}
			if !strings.Contains(string(out), "--- FAIL: "+tt.want+" ") {
				t.Errorf("the suite on a store whose %s: no failure of %s in:\n%s", tt.give, tt.want, out)
			}
		})
	}
}
