package runner_test

import (
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// seed creates runs in s: id → status, created a minute apart in order,
// each held by "owner" for a minute.
func seed(t *testing.T, s runner.Store, base time.Time, runs ...runner.Run) {
	t.Helper()
	for i, run := range runs {
		run.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		run.UpdatedAt = run.CreatedAt
		if run.Owner == "" {
			run.Owner, run.LeaseUntil = "owner", time.Now().Add(time.Minute)
		}
		if err := s.Create(t.Context(), &run); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMemoryClaim(t *testing.T) {
	tests := []struct {
		name     string
		owner    string
		advance  time.Duration
		statuses []runner.Status
		want     error
	}{
		{name: "live lease, another owner", owner: "other", statuses: []runner.Status{runner.StatusRunning}, want: runner.ErrRunLocked},
		{name: "live lease, same owner", owner: "owner", statuses: []runner.Status{runner.StatusRunning}},
		{name: "expired lease", owner: "other", advance: 2 * time.Minute, statuses: []runner.Status{runner.StatusRunning}},
		{name: "wrong status", owner: "owner", statuses: []runner.Status{runner.StatusPaused}, want: runner.ErrWrongStatus},
		{name: "no status: any", owner: "owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := memStore(t)
			seed(t, s, time.Now(), runner.Run{ID: "r", Status: runner.StatusRunning})
			clk.advance(tt.advance)
			run, err := s.Claim(t.Context(), "r", tt.owner, time.Minute, tt.statuses...)
			if !errors.Is(err, tt.want) || (err == nil) != (run != nil) {
				t.Errorf("Claim = %+v, %v; want %v", run, err, tt.want)
			}
		})
	}
	s, _ := memStore(t)
	if _, err := s.Claim(t.Context(), "nope", "o", time.Minute, runner.StatusRunning); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Claim(unknown) = %v; want ErrNotFound", err)
	}
}

func TestMemoryClaimOneWinner(t *testing.T) {
	s, clk := memStore(t)
	seed(t, s, time.Now(), runner.Run{ID: "r", Status: runner.StatusRunning})
	clk.advance(time.Hour)
	var wins, locked atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, err := s.Claim(t.Context(), "r", string(rune('a'+i)), time.Minute, runner.StatusRunning)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, runner.ErrRunLocked):
				locked.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || locked.Load() != 49 {
		t.Errorf("%d winners, %d locked out; want 1, 49", wins.Load(), locked.Load())
	}
}

func TestMemoryLeaseWrites(t *testing.T) {
	s, clk := memStore(t)
	seed(t, s, time.Now(), runner.Run{ID: "r", Status: runner.StatusRunning})
	ctx := t.Context()
	if _, err := s.Append(ctx, "r", "other", caudal.Record{Path: "p"}); !errors.Is(err, runner.ErrLeaseLost) {
		t.Errorf("Append by another owner = %v; want ErrLeaseLost", err)
	}
	if err := s.Update(ctx, &runner.Run{ID: "r", Status: runner.StatusFailed}, "other"); !errors.Is(err, runner.ErrLeaseLost) {
		t.Errorf("Update by another owner = %v; want ErrLeaseLost", err)
	}
	if err := s.Heartbeat(ctx, "r", "other", time.Minute); !errors.Is(err, runner.ErrLeaseLost) {
		t.Errorf("Heartbeat by another owner = %v; want ErrLeaseLost", err)
	}
	clk.advance(time.Hour)
	if _, err := s.Claim(ctx, "r", "other", time.Minute, runner.StatusRunning); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "r", "owner", caudal.Record{Path: "p"}); !errors.Is(err, runner.ErrLeaseLost) {
		t.Errorf("Append by the owner taken over = %v; want ErrLeaseLost", err)
	}
	if err := s.Release(ctx, "r", "owner"); err != nil {
		t.Errorf("Release by a non-owner = %v; want a no-op", err)
	}
	if run, _ := s.Get(ctx, "r"); run.Owner != "other" {
		t.Errorf("owner after a non-owner's Release = %q; want other", run.Owner)
	}
	if err := s.Release(ctx, "r", "other"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Orphans(ctx, 0); !reflect.DeepEqual(ids, []string{"r"}) {
		t.Errorf("Orphans after Release = %v; want [r]", ids)
	}
}

func TestMemoryJournalRoundTrip(t *testing.T) {
	s, _ := memStore(t)
	seed(t, s, time.Now(), runner.Run{ID: "r", Status: runner.StatusRunning})
	give := []caudal.Record{
		{
			Path: "p/a", Status: caudal.StatusSucceeded, Output: map[string]any{"x": 1.5}, Attempts: 2, Latency: time.Millisecond,
			Usage:    caudal.Usage{PromptTokens: 3, CompletionTokens: 4, CostUSD: 0.5},
			Writes:   []caudal.Write{{Path: []string{"k", "sub"}, Value: "v"}, {Path: []string{"gone"}, Deleted: true}},
			Metadata: map[string]any{"m": true}, Children: []caudal.StepResult{{Path: "p/a/b", Output: "c", Success: true}},
		},
		{Path: "p/route", Status: caudal.StatusDecided, Output: "three", Attempts: 1},
		{Path: "p/b", Status: caudal.StatusFailed, Feedback: "it broke"},
	}
	for i, rec := range give {
		if seq, err := s.Append(t.Context(), "r", "owner", rec); err != nil || seq != int64(i+1) {
			t.Fatalf("Append %d = %d, %v", i, seq, err)
		}
	}
	got, err := s.Journal(t.Context(), "r")
	if err != nil || len(got) != len(give) {
		t.Fatalf("Journal = %v, %v", got, err)
	}
	for i, e := range got {
		if e.Seq != int64(i+1) || !reflect.DeepEqual(e.Record, give[i]) {
			t.Errorf("entry %d = %d %+v; want %d %+v", i, e.Seq, e.Record, i+1, give[i])
		}
	}
	if _, err := s.Append(t.Context(), "r", "owner", caudal.Record{Path: "p", Output: make(chan int)}); err == nil {
		t.Error("Append of a record that does not encode = nil error")
	}
	if _, err := s.Journal(t.Context(), "nope"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Journal(unknown) = %v; want ErrNotFound", err)
	}
}

func TestMemoryListOrphansRetention(t *testing.T) {
	s, clk := memStore(t)
	base := time.Now().Add(-time.Hour)
	seed(t, s, base,
		runner.Run{ID: "a", Pipeline: "p", Status: runner.StatusRunning},
		runner.Run{ID: "b", Pipeline: "p", Status: runner.StatusCompleted},
		runner.Run{ID: "c", Pipeline: "q", Status: runner.StatusPaused},
		runner.Run{ID: "d", Pipeline: "q", Status: runner.StatusRunning},
		runner.Run{ID: "e", Pipeline: "p", Status: runner.StatusFailed},
	)
	tests := []struct {
		name string
		give runner.Filter
		want []string
	}{
		{name: "all, newest first", want: []string{"e", "d", "c", "b", "a"}},
		{name: "status", give: runner.Filter{Status: []runner.Status{runner.StatusRunning, runner.StatusPaused}}, want: []string{"d", "c", "a"}},
		{name: "pipeline", give: runner.Filter{Pipeline: "q"}, want: []string{"d", "c"}},
		{name: "after", give: runner.Filter{After: base.Add(3 * time.Minute)}, want: []string{"e", "d"}},
		{name: "before", give: runner.Filter{Before: base.Add(time.Minute)}, want: []string{"a"}},
		{name: "limit", give: runner.Filter{Limit: 2}, want: []string{"e", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs, err := s.List(t.Context(), tt.give)
			if got := ids(runs); err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("List(%+v) = %v, %v; want %v", tt.give, got, err, tt.want)
			}
		})
	}
	if got, _ := s.Orphans(t.Context(), 0); len(got) != 0 {
		t.Errorf("Orphans with live leases = %v; want none", got)
	}
	clk.advance(time.Hour)
	if got, _ := s.Orphans(t.Context(), 0); !reflect.DeepEqual(got, []string{"a", "d"}) {
		t.Errorf("Orphans = %v; want [a d], oldest first", got)
	}
	if got, _ := s.Orphans(t.Context(), 1); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("Orphans(1) = %v; want [a]", got)
	}
	if n, err := s.DeleteBefore(t.Context(), base.Add(3*time.Minute)); n != 2 || err != nil {
		t.Errorf("DeleteBefore = %d, %v; want b and c", n, err)
	}
	if n, err := s.DeleteBefore(t.Context(), time.Now().Add(time.Hour), runner.StatusRunning); n != 2 || err != nil {
		t.Errorf("DeleteBefore(running) = %d, %v; want a and d", n, err)
	}
	if err := s.Delete(t.Context(), "e"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), "e"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Delete twice = %v; want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "a"); err == nil {
		t.Error("Get after Close = nil error")
	}
}

func ids(runs []*runner.Run) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func TestMemoryCopies(t *testing.T) {
	s, _ := memStore(t)
	give := &runner.Run{ID: "r", Status: runner.StatusPaused, Input: []byte(`"in"`), Pause: &runner.Pause{Path: "p", Snapshot: []byte(`{}`)}}
	if err := s.Create(t.Context(), give); err != nil {
		t.Fatal(err)
	}
	give.Input[1], give.Pause.Path = 'X', "changed"
	got, _ := s.Get(t.Context(), "r")
	got.Pause.Snapshot[0] = 'X'
	again, _ := s.Get(t.Context(), "r")
	if string(again.Input) != `"in"` || again.Pause.Path != "p" || string(again.Pause.Snapshot) != "{}" {
		t.Errorf("the stored run shares memory with the caller's: %+v %+v", again, again.Pause)
	}
	if err := s.Create(t.Context(), give); !errors.Is(err, runner.ErrRunExists) {
		t.Errorf("Create twice = %v; want ErrRunExists", err)
	}
}
