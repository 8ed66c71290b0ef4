package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// Option configures [Run].
type Option interface {
	apply(*options)
}

type options struct {
	corruptRecord func(t *testing.T, s runner.Store, id string)
	corruptRun    func(t *testing.T, s runner.Store, id string)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithCorruptRecord gives the suite a way to make s hold a record of run
// id's journal that cannot be read back (bytes that are not a record, say).
// The suite then checks that [runner.Store.Journal] fails with
// [runner.ErrCorrupt] rather than returning a wrong record. Without it the
// check is skipped: a store that cannot be made to hold one has nothing to
// show.
func WithCorruptRecord(f func(t *testing.T, s runner.Store, id string)) Option {
	return optionFunc(func(o *options) { o.corruptRecord = f })
}

// WithCorruptRun gives the suite a way to make s hold run id in a form that
// cannot be read back (an unknown status, say). The suite then checks that
// [runner.Store.Get] and [runner.Store.List] fail with [runner.ErrCorrupt].
func WithCorruptRun(f func(t *testing.T, s runner.Store, id string)) Option {
	return optionFunc(func(o *options) { o.corruptRun = f })
}

// Run runs the conformance suite: each subtest calls open for a store of
// its own, empty, and closes it when done. open reports its own failures
// with t.Fatal, and may register cleanups (a schema to drop) with
// t.Cleanup: they run after the store is closed.
func Run(t *testing.T, open func(t *testing.T) runner.Store, opts ...Option) {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s runner.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateDuplicate", testCreateDuplicate},
		{"NotFound", testNotFound},
		{"AppendOrder", testAppendOrder},
		{"RecordRoundTrip", testRecordRoundTrip},
		{"AppendLeaseLost", testAppendLeaseLost},
		{"Update", testUpdate},
		{"UpdateLeaseLost", testUpdateLeaseLost},
		{"Claim", testClaim},
		{"ClaimConcurrent", testClaimConcurrent},
		{"LeaseExpiry", testLeaseExpiry},
		{"Heartbeat", testHeartbeat},
		{"Release", testRelease},
		{"Orphans", testOrphans},
		{"List", testList},
		{"Delete", testDelete},
		{"DeleteBefore", testDeleteBefore},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Corrupt", func(t *testing.T, s runner.Store) { testCorrupt(t, s, o) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close() = %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// base is a time on a millisecond, in UTC, an hour ago: runs made with it
// have times in the past, which a store's clock is not tempted to round.
func base() time.Time { return time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond) }

const (
	owner = "worker-a"
	other = "worker-b"
	// longTTL outlives any subtest.
	longTTL = time.Hour
	// shortTTL is a lease tests wait out, by polling.
	shortTTL = 40 * time.Millisecond
)

// newRun returns a running run held by owner for an hour.
func newRun(id string, created time.Time) *runner.Run {
	return &runner.Run{
		ID: id, Pipeline: "report", Fingerprint: "fp-1", Status: runner.StatusRunning,
		Input: []byte(`{"topic":"tides"}`), State: []byte(`{"n":1}`),
		CreatedAt: created, UpdatedAt: created,
		Owner: owner, LeaseUntil: time.Now().Add(longTTL).UTC().Truncate(time.Millisecond),
	}
}

func create(t *testing.T, s runner.Store, runs ...*runner.Run) {
	t.Helper()
	for _, r := range runs {
		if err := s.Create(context.Background(), r); err != nil {
			t.Fatalf("Create(%q) = %v", r.ID, err)
		}
	}
}

func get(t *testing.T, s runner.Store, id string) *runner.Run {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q) = %v", id, err)
	}
	return r
}

// typicalRecord has every field of a record set.
func typicalRecord(path string) caudal.Record {
	return caudal.Record{
		Path: path, Status: caudal.StatusSucceeded,
		Output: map[string]any{"summary": "three findings", "scores": []any{0.5, 1.0, 2.25}},
		Writes: []caudal.Write{
			{Path: []string{"draft"}, Value: "v2"},
			{Path: []string{"meta", "pages"}, Value: 12.0},
			{Path: []string{"tmp"}, Deleted: true},
		},
		Usage:    caudal.Usage{PromptTokens: 1200, CompletionTokens: 350, CostUSD: 0.0125},
		Attempts: 2, Latency: 1500 * time.Millisecond, Feedback: "retried once",
		Metadata: map[string]any{"model": "m-large", "cache": false},
		Children: []caudal.StepResult{{
			Path: path + "/fallback", RunID: "r", Output: "partial", Success: false, Attempts: 1,
			Latency: time.Millisecond, Usage: caudal.Usage{PromptTokens: 10}, Feedback: "timeout",
			Metadata: map[string]any{"k": "v"}, Children: []caudal.StepResult{{Path: path + "/fallback/inner", Success: true}},
		}},
	}
}

// viaJSON returns rec as its trip through encoding/json gives it back.
func viaJSON(t *testing.T, rec caudal.Record) caudal.Record {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatalf("json.Marshal(record %q) = %v", rec.Path, err)
	}
	var back caudal.Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("json.Unmarshal(record %q) = %v", rec.Path, err)
	}
	return back
}

// diffRun describes how got differs from want ("" when it does not).
// Times compare to the millisecond.
func diffRun(got, want *runner.Run) string {
	var d []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s = %v; want %v", field, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("Pipeline", got.Pipeline == want.Pipeline, got.Pipeline, want.Pipeline)
	check("Fingerprint", got.Fingerprint == want.Fingerprint, got.Fingerprint, want.Fingerprint)
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("Input", sameBytes(got.Input, want.Input), string(got.Input), string(want.Input))
	check("State", sameBytes(got.State, want.State), string(got.State), string(want.State))
	check("FinalState", sameBytes(got.FinalState, want.FinalState), string(got.FinalState), string(want.FinalState))
	check("Output", sameBytes(got.Output, want.Output), string(got.Output), string(want.Output))
	check("Usage", got.Usage == want.Usage, got.Usage, want.Usage)
	check("Error", got.Error == want.Error, got.Error, want.Error)
	check("Pause", samePause(got.Pause, want.Pause), fmtPause(got.Pause), fmtPause(want.Pause))
	check("CreatedAt", sameTime(got.CreatedAt, want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("UpdatedAt", sameTime(got.UpdatedAt, want.UpdatedAt), got.UpdatedAt, want.UpdatedAt)
	check("Owner", got.Owner == want.Owner, got.Owner, want.Owner)
	check("LeaseUntil", sameTime(got.LeaseUntil, want.LeaseUntil), got.LeaseUntil, want.LeaseUntil)
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprint(d)
}

// sameBytes tells nil from a document.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func sameTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func samePause(a, b *runner.Pause) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Path == b.Path && a.Message == b.Message && sameBytes(a.Schema, b.Schema) && sameBytes(a.Snapshot, b.Snapshot)
}

func fmtPause(p *runner.Pause) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("{%q %q %s %s}", p.Path, p.Message, p.Schema, p.Snapshot)
}

// goAll runs fns on goroutines of their own and waits for them; a panic
// on one is returned as its error.
func goAll(fns ...func() error) []error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					errs[i] = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
				}
			}()
			errs[i] = fn()
		})
	}
	wg.Wait()
	return errs
}

// eventually polls cond every few milliseconds until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testCreateGet(t *testing.T, s runner.Store) {
	b := base()
	full := newRun("full", b)
	full.Status = runner.StatusPaused
	full.FinalState = []byte(`{"n":2,"draft":"v1"}`)
	full.Output = []byte(`"waiting"`)
	full.Usage = caudal.Usage{PromptTokens: 1 << 40, CompletionTokens: 7, CostUSD: 1.0625}
	full.Error = "approve the plan?"
	full.Pause = &runner.Pause{
		Path: "report/approve", Message: "approve the plan?",
		Schema: []byte(`{"type":"boolean"}`), Snapshot: []byte(`{"version":2,"journal":[]}`),
	}
	full.UpdatedAt = b.Add(1500 * time.Millisecond)
	pauseNoSchema := newRun("pause-no-schema", b)
	pauseNoSchema.Status = runner.StatusPaused
	pauseNoSchema.Pause = &runner.Pause{Path: "p", Snapshot: []byte(`{}`)}
	released := newRun("released", b)
	released.Owner, released.LeaseUntil = "", time.Time{}
	minimal := &runner.Run{ID: "minimal", Status: runner.StatusCompleted, CreatedAt: b, UpdatedAt: b}
	unicode := newRun("ünï/cödé 'id\"", b)
	unicode.Pipeline = "pipe line ✓"
	unicode.Input = []byte(`"\u00e9 \u0000"`)

	tests := []struct {
		name string
		give *runner.Run
	}{
		{"every field", full},
		{"pause without schema", pauseNoSchema},
		{"nobody holds it", released},
		{"minimal", minimal},
		{"unusual characters", unicode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			create(t, s, tt.give)
			got := get(t, s, tt.give.ID)
			if d := diffRun(got, tt.give); d != "" {
				t.Errorf("Get(%q) after Create: %s", tt.give.ID, d)
			}
		})
	}
}

func testCreateDuplicate(t *testing.T, s runner.Store) {
	first := newRun("dup", base())
	create(t, s, first)
	second := newRun("dup", base())
	second.Pipeline = "other"
	if err := s.Create(context.Background(), second); err == nil {
		t.Fatalf("Create of an existing ID = nil; want an error")
	}
	if d := diffRun(get(t, s, "dup"), first); d != "" {
		t.Errorf("the run after a refused duplicate Create: %s", d)
	}
}

func testNotFound(t *testing.T, s runner.Store) {
	ctx := context.Background()
	const id = "no-such-run"
	create(t, s, newRun("another", base()))
	tests := []struct {
		name string
		give func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, id); return err }},
		{"Append", func() error { _, err := s.Append(ctx, id, owner, typicalRecord("a")); return err }},
		{"Journal", func() error { _, err := s.Journal(ctx, id); return err }},
		{"Update", func() error { return s.Update(ctx, &runner.Run{ID: id, Status: runner.StatusFailed}, owner) }},
		{"Claim", func() error { _, err := s.Claim(ctx, id, owner, longTTL, runner.StatusRunning); return err }},
		{"Heartbeat", func() error { return s.Heartbeat(ctx, id, owner, longTTL) }},
		{"Delete", func() error { return s.Delete(ctx, id) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give(); !errors.Is(err, runner.ErrNotFound) {
				t.Errorf("%s(%q) = %v; want ErrNotFound", tt.name, id, err)
			}
		})
	}
}

func testAppendOrder(t *testing.T, s runner.Store) {
	ctx := context.Background()
	create(t, s, newRun("r1", base()), newRun("r2", base()))
	var want []string
	for i := range 25 {
		for _, id := range []string{"r1", "r2"} {
			p := fmt.Sprintf("seq/step%02d", i)
			seq, err := s.Append(ctx, id, owner, caudal.Record{Path: p, Status: caudal.StatusSucceeded, Output: i})
			if err != nil {
				t.Fatalf("Append(%q, %q) = %v", id, p, err)
			}
			if seq != int64(i+1) {
				t.Errorf("Append(%q, %q) seq = %d; want %d", id, p, seq, i+1)
			}
		}
		want = append(want, fmt.Sprintf("seq/step%02d", i))
	}
	for _, id := range []string{"r1", "r2"} {
		entries, err := s.Journal(ctx, id)
		if err != nil {
			t.Fatalf("Journal(%q) = %v", id, err)
		}
		var got []string
		for i, e := range entries {
			got = append(got, e.Record.Path)
			if e.Seq != int64(i+1) {
				t.Errorf("Journal(%q)[%d].Seq = %d; want %d", id, i, e.Seq, i+1)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Journal(%q) paths = %v; want %v", id, got, want)
		}
	}
	empty := newRun("empty", base())
	create(t, s, empty)
	if entries, err := s.Journal(ctx, "empty"); err != nil || len(entries) != 0 {
		t.Errorf("Journal of a run with no records = %v, %v; want none, nil", entries, err)
	}
}

func testRecordRoundTrip(t *testing.T, s runner.Store) {
	ctx := context.Background()
	create(t, s, newRun("rt", base()))
	deep := map[string]any{"a": map[string]any{"b": map[string]any{"c": []any{map[string]any{"d": "e"}}}}}
	tests := []struct {
		name string
		give caudal.Record
	}{
		{"every field", typicalRecord("report/research[0]/fetch")},
		{"bare", caudal.Record{Path: "x", Status: caudal.StatusSucceeded}},
		{"failed", caudal.Record{Path: "p/branch", Status: caudal.StatusFailed, Feedback: "boom: \"quoted\"\nnewline"}},
		{"decided", caudal.Record{Path: "route", Status: caudal.StatusDecided, Output: []any{"a", "b"}, Usage: caudal.Usage{CostUSD: 0.5}}},
		{"nested output", caudal.Record{Path: "deep", Status: caudal.StatusSucceeded, Output: deep}},
		{"unicode and nul", caudal.Record{Path: "ünï#3/ç", Status: caudal.StatusSucceeded, Output: "a\x00b ✓", Metadata: map[string]any{"ß": nil}}},
		{"large numbers", caudal.Record{Path: "n", Status: caudal.StatusSucceeded, Output: 1e300, Usage: caudal.Usage{PromptTokens: 1<<62 + 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, err := s.Append(ctx, "rt", owner, tt.give)
			if err != nil {
				t.Fatalf("Append(%q) = %v", tt.give.Path, err)
			}
			entries, err := s.Journal(ctx, "rt")
			if err != nil {
				t.Fatalf("Journal = %v", err)
			}
			i := slices.IndexFunc(entries, func(e runner.Entry) bool { return e.Seq == seq })
			if i < 0 {
				t.Fatalf("Journal has no entry with Seq %d: %v", seq, entries)
			}
			if got, want := entries[i].Record, viaJSON(t, tt.give); !reflect.DeepEqual(got, want) {
				t.Errorf("record read back = %#v; want %#v", got, want)
			}
		})
	}
}

// takenOver makes run id's lease, held by owner, expire, and has other
// claim the run.
func takenOver(t *testing.T, s runner.Store, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Claim(ctx, id, owner, shortTTL, runner.StatusRunning); err != nil {
		t.Fatalf("Claim(%q, %q) = %v", id, owner, err)
	}
	eventually(t, "another owner's claim after the lease expired", func() bool {
		_, err := s.Claim(ctx, id, other, longTTL, runner.StatusRunning)
		return err == nil
	})
}

func testAppendLeaseLost(t *testing.T, s runner.Store) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, id string)
		as    string
	}{
		{"another owner", func(*testing.T, string) {}, other},
		{"empty owner", func(*testing.T, string) {}, ""},
		{"released", func(t *testing.T, id string) {
			if err := s.Release(ctx, id, owner); err != nil {
				t.Fatalf("Release = %v", err)
			}
		}, owner},
		{"expired and taken over", func(t *testing.T, id string) { takenOver(t, s, id) }, owner},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("lease-%d", i)
			create(t, s, newRun(id, base()))
			if _, err := s.Append(ctx, id, owner, caudal.Record{Path: "first", Status: caudal.StatusSucceeded}); err != nil {
				t.Fatalf("Append by the owner = %v", err)
			}
			tt.setup(t, id)
			if _, err := s.Append(ctx, id, tt.as, typicalRecord("second")); !errors.Is(err, runner.ErrLeaseLost) {
				t.Errorf("Append as %q = %v; want ErrLeaseLost", tt.as, err)
			}
			entries, err := s.Journal(ctx, id)
			if err != nil || len(entries) != 1 {
				t.Errorf("Journal after a refused Append = %d entries, %v; want 1, nil", len(entries), err)
			}
		})
	}
}

func testUpdate(t *testing.T, s runner.Store) {
	ctx := context.Background()
	b := base()
	paused := &runner.Run{
		Status: runner.StatusPaused, FinalState: []byte(`{"n":3}`), Output: []byte(`null`),
		Usage: caudal.Usage{PromptTokens: 10, CompletionTokens: 20, CostUSD: 0.25}, Error: "waiting for approval",
		Pause:     &runner.Pause{Path: "a/b", Message: "ok?", Schema: []byte(`{"type":"string"}`), Snapshot: []byte(`{"v":1}`)},
		UpdatedAt: b.Add(time.Minute),
	}
	completed := &runner.Run{
		Status: runner.StatusCompleted, FinalState: []byte(`{"n":4}`), Output: []byte(`{"done":true}`),
		Usage: caudal.Usage{PromptTokens: 11}, UpdatedAt: b.Add(2 * time.Minute),
	}
	failed := &runner.Run{Status: runner.StatusFailed, Error: "step \"x\": boom", UpdatedAt: b.Add(3 * time.Minute)}
	tests := []struct {
		name string
		give []*runner.Run // updates in turn
	}{
		{"paused", []*runner.Run{paused}},
		{"completed", []*runner.Run{completed}},
		{"failed", []*runner.Run{failed}},
		{"paused then completed (pause cleared)", []*runner.Run{paused, completed}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := newRun(fmt.Sprintf("upd-%d", i), b)
			create(t, s, orig)
			want := *orig
			for _, u := range tt.give {
				upd := *u
				upd.ID = orig.ID
				// Fields Update does not write: these values must be ignored.
				upd.Pipeline, upd.Input, upd.State, upd.CreatedAt = "ignored", []byte(`"ignored"`), []byte(`"ignored"`), b.Add(time.Hour)
				if err := s.Update(ctx, &upd, owner); err != nil {
					t.Fatalf("Update(%s) = %v", u.Status, err)
				}
				want.Status, want.FinalState, want.Output, want.Usage = u.Status, u.FinalState, u.Output, u.Usage
				want.Error, want.Pause, want.UpdatedAt = u.Error, u.Pause, u.UpdatedAt
			}
			if d := diffRun(get(t, s, orig.ID), &want); d != "" {
				t.Errorf("Get after Update: %s", d)
			}
		})
	}
}

func testUpdateLeaseLost(t *testing.T, s runner.Store) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, id string)
		as    string
	}{
		{"another owner", func(*testing.T, string) {}, other},
		{"empty owner", func(*testing.T, string) {}, ""},
		{"expired and taken over", func(t *testing.T, id string) { takenOver(t, s, id) }, owner},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("ul-%d", i)
			create(t, s, newRun(id, base()))
			tt.setup(t, id)
			before := get(t, s, id)
			upd := &runner.Run{ID: id, Status: runner.StatusCompleted, Output: []byte(`1`), UpdatedAt: time.Now()}
			if err := s.Update(ctx, upd, tt.as); !errors.Is(err, runner.ErrLeaseLost) {
				t.Errorf("Update as %q = %v; want ErrLeaseLost", tt.as, err)
			}
			if d := diffRun(get(t, s, id), before); d != "" {
				t.Errorf("the run after a refused Update changed: %s", d)
			}
		})
	}
}

func testClaim(t *testing.T, s runner.Store) {
	ctx := context.Background()
	b := base()
	mk := func(id string, st runner.Status, holder string, until time.Time) *runner.Run {
		r := newRun(id, b)
		r.Status, r.Owner, r.LeaseUntil = st, holder, until
		return r
	}
	past := time.Now().Add(-time.Minute)
	future := time.Now().Add(longTTL)
	tests := []struct {
		name     string
		give     *runner.Run
		statuses []runner.Status
		want     error
	}{
		{"free paused run", mk("c1", runner.StatusPaused, "", time.Time{}), []runner.Status{runner.StatusPaused}, nil},
		{"one of several statuses", mk("c2", runner.StatusFailed, "", time.Time{}), []runner.Status{runner.StatusPaused, runner.StatusFailed}, nil},
		{"any status when none given", mk("c3", runner.StatusCompleted, "", time.Time{}), nil, nil},
		{"wrong status", mk("c4", runner.StatusCompleted, "", time.Time{}), []runner.Status{runner.StatusPaused}, runner.ErrWrongStatus},
		{"live lease of another", mk("c5", runner.StatusRunning, other, future), []runner.Status{runner.StatusRunning}, runner.ErrRunLocked},
		{"locked before wrong status", mk("c6", runner.StatusRunning, other, future), []runner.Status{runner.StatusPaused}, runner.ErrRunLocked},
		{"expired lease taken over", mk("c7", runner.StatusRunning, other, past), []runner.Status{runner.StatusRunning}, nil},
		{"own lease renewed", mk("c8", runner.StatusRunning, owner, future), []runner.Status{runner.StatusRunning}, nil},
		{"own expired lease renewed", mk("c9", runner.StatusRunning, owner, past), []runner.Status{runner.StatusRunning}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			create(t, s, tt.give)
			before := time.Now()
			got, err := s.Claim(ctx, tt.give.ID, owner, 10*time.Minute, tt.statuses...)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Claim(%q) = %v; want %v", tt.give.ID, err, tt.want)
			}
			want := *tt.give
			if err == nil {
				want.Owner = owner
				if got == nil || got.LeaseUntil.Before(before.Add(10*time.Minute-time.Second)) || got.LeaseUntil.After(time.Now().Add(10*time.Minute+time.Second)) {
					t.Fatalf("Claim(%q) = %+v; want the run with a lease of 10m from now", tt.give.ID, got)
				}
				want.LeaseUntil = got.LeaseUntil
				if d := diffRun(got, &want); d != "" {
					t.Errorf("Claim(%q) returned: %s", tt.give.ID, d)
				}
			}
			if d := diffRun(get(t, s, tt.give.ID), &want); d != "" {
				t.Errorf("Get(%q) after Claim: %s", tt.give.ID, d)
			}
		})
	}
}

func testClaimConcurrent(t *testing.T, s runner.Store) {
	ctx := context.Background()
	const n = 16
	for round := range 3 {
		id := fmt.Sprintf("race-%d", round)
		r := newRun(id, base())
		r.Owner, r.LeaseUntil = "", time.Time{}
		create(t, s, r)
		var ready sync.WaitGroup // a barrier: every claim starts at once
		ready.Add(n)
		fns := make([]func() error, n)
		for i := range fns {
			fns[i] = func() error {
				ready.Done()
				ready.Wait()
				_, err := s.Claim(ctx, id, fmt.Sprintf("w%d", i), longTTL, runner.StatusRunning)
				return err
			}
		}
		errs := goAll(fns...)
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, runner.ErrRunLocked):
				t.Errorf("round %d: claim by w%d = %v; want nil or ErrRunLocked", round, i, err)
			}
		}
		if won != 1 {
			t.Errorf("round %d: %d of %d concurrent claims won; want exactly 1", round, won, n)
		}
	}
}

func testLeaseExpiry(t *testing.T, s runner.Store) {
	ctx := context.Background()
	create(t, s, newRun("exp", base()))
	if _, err := s.Claim(ctx, "exp", owner, shortTTL, runner.StatusRunning); err != nil {
		t.Fatalf("Claim = %v", err)
	}
	if _, err := s.Claim(ctx, "exp", other, longTTL, runner.StatusRunning); !errors.Is(err, runner.ErrRunLocked) {
		t.Fatalf("Claim by another while the lease is live = %v; want ErrRunLocked", err)
	}
	eventually(t, "takeover of an expired lease", func() bool {
		_, err := s.Claim(ctx, "exp", other, longTTL, runner.StatusRunning)
		return err == nil
	})
	if got := get(t, s, "exp"); got.Owner != other {
		t.Errorf("Owner after takeover = %q; want %q", got.Owner, other)
	}
	tests := []struct {
		name string
		give func() error
	}{
		{"Append", func() error { _, err := s.Append(ctx, "exp", owner, typicalRecord("late")); return err }},
		{"Update", func() error { return s.Update(ctx, &runner.Run{ID: "exp", Status: runner.StatusFailed}, owner) }},
		{"Heartbeat", func() error { return s.Heartbeat(ctx, "exp", owner, longTTL) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give(); !errors.Is(err, runner.ErrLeaseLost) {
				t.Errorf("%s by the former owner = %v; want ErrLeaseLost", tt.name, err)
			}
		})
	}
	if _, err := s.Claim(ctx, "exp", owner, longTTL, runner.StatusRunning); !errors.Is(err, runner.ErrRunLocked) {
		t.Errorf("Claim back by the former owner = %v; want ErrRunLocked", err)
	}
}

func testHeartbeat(t *testing.T, s runner.Store) {
	ctx := context.Background()
	create(t, s, newRun("hb", base()))
	if _, err := s.Claim(ctx, "hb", owner, shortTTL, runner.StatusRunning); err != nil {
		t.Fatalf("Claim = %v", err)
	}
	// Renewed every ttl/4 for 5 ttls, the lease never lapses.
	end := time.Now().Add(5 * shortTTL)
	for time.Now().Before(end) {
		if err := s.Heartbeat(ctx, "hb", owner, shortTTL); err != nil {
			t.Fatalf("Heartbeat = %v", err)
		}
		if _, err := s.Claim(ctx, "hb", other, longTTL, runner.StatusRunning); !errors.Is(err, runner.ErrRunLocked) {
			t.Fatalf("Claim by another while heartbeating = %v; want ErrRunLocked", err)
		}
		time.Sleep(shortTTL / 4)
	}
	before := time.Now()
	if err := s.Heartbeat(ctx, "hb", owner, 10*time.Minute); err != nil {
		t.Fatalf("Heartbeat(10m) = %v", err)
	}
	if got := get(t, s, "hb"); got.Owner != owner || got.LeaseUntil.Before(before.Add(10*time.Minute-time.Second)) {
		t.Errorf("after Heartbeat(10m): Owner %q, LeaseUntil %v; want %q, about %v", got.Owner, got.LeaseUntil, owner, before.Add(10*time.Minute))
	}
	tests := []struct {
		name string
		as   string
	}{
		{"another owner", other},
		{"empty owner", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Heartbeat(ctx, "hb", tt.as, longTTL); !errors.Is(err, runner.ErrLeaseLost) {
				t.Errorf("Heartbeat as %q = %v; want ErrLeaseLost", tt.as, err)
			}
		})
	}
	if got := get(t, s, "hb"); got.Owner != owner {
		t.Errorf("Owner after refused heartbeats = %q; want %q", got.Owner, owner)
	}
}

func testRelease(t *testing.T, s runner.Store) {
	ctx := context.Background()
	create(t, s, newRun("rel", base()))
	before := get(t, s, "rel")
	if err := s.Release(ctx, "rel", other); err != nil {
		t.Fatalf("Release by a non-owner = %v; want nil (a no-op)", err)
	}
	if d := diffRun(get(t, s, "rel"), before); d != "" {
		t.Errorf("the run after a non-owner's Release: %s", d)
	}
	if err := s.Release(ctx, "rel", owner); err != nil {
		t.Fatalf("Release = %v", err)
	}
	want := *before
	want.Owner, want.LeaseUntil = "", time.Time{}
	if d := diffRun(get(t, s, "rel"), &want); d != "" {
		t.Errorf("the run after Release: %s", d)
	}
	if err := s.Release(ctx, "rel", owner); err != nil {
		t.Errorf("second Release = %v; want nil", err)
	}
	if _, err := s.Claim(ctx, "rel", other, longTTL, runner.StatusRunning); err != nil {
		t.Errorf("Claim by another after Release = %v", err)
	}
}

func ids(runs []*runner.Run) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func testOrphans(t *testing.T, s runner.Store) {
	ctx := context.Background()
	b := base()
	past := time.Now().Add(-time.Minute)
	mk := func(id string, created time.Duration, st runner.Status, holder string, until time.Time) *runner.Run {
		r := newRun(id, b.Add(created))
		r.Status, r.Owner, r.LeaseUntil = st, holder, until
		return r
	}
	create(t, s,
		mk("o-newest", 3*time.Second, runner.StatusRunning, owner, past),
		mk("o-oldest", 0, runner.StatusRunning, other, past),
		mk("o-middle", time.Second, runner.StatusRunning, "", time.Time{}),
		mk("live", -time.Second, runner.StatusRunning, owner, time.Now().Add(longTTL)),
		mk("paused-expired", -time.Second, runner.StatusPaused, owner, past),
		mk("completed-free", -time.Second, runner.StatusCompleted, "", time.Time{}),
		mk("failed-expired", -time.Second, runner.StatusFailed, owner, past),
	)
	tests := []struct {
		name  string
		limit int
		want  []string
	}{
		{"all", 0, []string{"o-oldest", "o-middle", "o-newest"}},
		{"limit 2", 2, []string{"o-oldest", "o-middle"}},
		{"limit 1", 1, []string{"o-oldest"}},
		{"limit above count", 10, []string{"o-oldest", "o-middle", "o-newest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Orphans(ctx, tt.limit)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("Orphans(%d) = %v, %v; want %v", tt.limit, got, err, tt.want)
			}
		})
	}
	// A lease that expires makes an orphan.
	if _, err := s.Claim(ctx, "live", owner, shortTTL, runner.StatusRunning); err != nil {
		t.Fatalf("Claim = %v", err)
	}
	eventually(t, "an expired lease among the orphans", func() bool {
		got, err := s.Orphans(ctx, 0)
		return err == nil && slices.Contains(got, "live")
	})
}

func testList(t *testing.T, s runner.Store) {
	ctx := context.Background()
	b := base()
	mk := func(id, pipeline string, st runner.Status, created time.Duration) *runner.Run {
		r := newRun(id, b.Add(created))
		r.Pipeline, r.Status = pipeline, st
		return r
	}
	d := mk("d", "triage", runner.StatusFailed, 3*time.Second)
	create(t, s,
		mk("a", "report", runner.StatusCompleted, 0),
		mk("b", "report", runner.StatusRunning, time.Second),
		mk("c", "triage", runner.StatusPaused, 2*time.Second),
		d,
		mk("e", "report", runner.StatusCancelled, 4*time.Second),
		mk("f", "report", runner.StatusCompleted, 4*time.Second), // same time as e: ties by ID, descending
	)
	tests := []struct {
		name string
		give runner.Filter
		want []string
	}{
		{"everything, newest first", runner.Filter{}, []string{"f", "e", "d", "c", "b", "a"}},
		{"one status", runner.Filter{Status: []runner.Status{runner.StatusCompleted}}, []string{"f", "a"}},
		{"two statuses", runner.Filter{Status: []runner.Status{runner.StatusPaused, runner.StatusRunning}}, []string{"c", "b"}},
		{"pipeline", runner.Filter{Pipeline: "triage"}, []string{"d", "c"}},
		{"unknown pipeline", runner.Filter{Pipeline: "nope"}, nil},
		{"after (inclusive)", runner.Filter{After: b.Add(3 * time.Second)}, []string{"f", "e", "d"}},
		{"before (exclusive)", runner.Filter{Before: b.Add(2 * time.Second)}, []string{"b", "a"}},
		{"between", runner.Filter{After: b.Add(time.Second), Before: b.Add(4 * time.Second)}, []string{"d", "c", "b"}},
		{"limit", runner.Filter{Limit: 2}, []string{"f", "e"}},
		{"everything together", runner.Filter{Status: []runner.Status{runner.StatusCompleted, runner.StatusRunning}, Pipeline: "report", After: b.Add(500 * time.Millisecond), Limit: 1}, []string{"f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(ctx, tt.give)
			if err != nil || !slices.Equal(ids(got), tt.want) {
				t.Errorf("List(%+v) = %v, %v; want %v", tt.give, ids(got), err, tt.want)
			}
		})
	}
	got, err := s.List(ctx, runner.Filter{Pipeline: "triage", Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("List = %v, %v", got, err)
	}
	if diff := diffRun(got[0], d); diff != "" {
		t.Errorf("List returned run d as: %s", diff)
	}
}

func testDelete(t *testing.T, s runner.Store) {
	ctx := context.Background()
	create(t, s, newRun("del", base()), newRun("keep", base()))
	for _, id := range []string{"del", "keep"} {
		for i := range 3 {
			if _, err := s.Append(ctx, id, owner, typicalRecord(fmt.Sprint(i))); err != nil {
				t.Fatalf("Append = %v", err)
			}
		}
	}
	if err := s.Delete(ctx, "del"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := s.Get(ctx, "del"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want ErrNotFound", err)
	}
	if _, err := s.Journal(ctx, "del"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("Journal after Delete = %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "del"); !errors.Is(err, runner.ErrNotFound) {
		t.Errorf("second Delete = %v; want ErrNotFound", err)
	}
	// The journal went with the run: a new run with the ID starts empty.
	create(t, s, newRun("del", base()))
	if entries, err := s.Journal(ctx, "del"); err != nil || len(entries) != 0 {
		t.Errorf("Journal of a new run under a deleted run's ID = %d entries, %v; want 0, nil", len(entries), err)
	}
	if seq, err := s.Append(ctx, "del", owner, typicalRecord("again")); err != nil || seq != 1 {
		t.Errorf("Append to the new run = %d, %v; want 1, nil", seq, err)
	}
	if entries, err := s.Journal(ctx, "keep"); err != nil || len(entries) != 3 {
		t.Errorf("Journal of the other run = %d entries, %v; want 3, nil", len(entries), err)
	}
}

func testDeleteBefore(t *testing.T, s runner.Store) {
	b := base()
	seed := func(t *testing.T) {
		t.Helper()
		mk := func(id string, st runner.Status, updated time.Duration) *runner.Run {
			r := newRun(id, b.Add(-time.Hour))
			r.Status, r.UpdatedAt = st, b.Add(updated)
			return r
		}
		create(t, s,
			mk("old-completed", runner.StatusCompleted, 0),
			mk("old-failed", runner.StatusFailed, time.Second),
			mk("old-running", runner.StatusRunning, 0),
			mk("old-paused", runner.StatusPaused, 0),
			mk("new-completed", runner.StatusCompleted, time.Hour),
		)
		for _, id := range []string{"old-completed", "old-running", "new-completed"} {
			if _, err := s.Append(context.Background(), id, owner, typicalRecord("x")); err != nil {
				t.Fatalf("Append = %v", err)
			}
		}
	}
	all := []string{"new-completed", "old-completed", "old-failed", "old-paused", "old-running"}
	tests := []struct {
		name     string
		cutoff   time.Duration
		statuses []runner.Status
		want     []string // deleted
	}{
		{"default spares running", 30 * time.Minute, nil, []string{"old-completed", "old-failed", "old-paused"}},
		{"one status", 30 * time.Minute, []runner.Status{runner.StatusCompleted}, []string{"old-completed"}},
		{"running when asked", 30 * time.Minute, []runner.Status{runner.StatusRunning}, []string{"old-running"}},
		{"cutoff is exclusive", time.Second, nil, []string{"old-completed", "old-paused"}},
		{"nothing that old", -time.Second, nil, nil},
		{"everything", 2 * time.Hour, []runner.Status{runner.StatusRunning, runner.StatusPaused, runner.StatusCompleted, runner.StatusFailed}, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			for _, id := range all {
				if err := s.Delete(ctx, id); err != nil && !errors.Is(err, runner.ErrNotFound) {
					t.Fatalf("Delete(%q) = %v", id, err)
				}
			}
			seed(t)
			n, err := s.DeleteBefore(ctx, b.Add(tt.cutoff), tt.statuses...)
			if err != nil || n != len(tt.want) {
				t.Errorf("DeleteBefore = %d, %v; want %d, nil", n, err, len(tt.want))
			}
			for _, id := range all {
				_, err := s.Get(ctx, id)
				_, jerr := s.Journal(ctx, id)
				gone := slices.Contains(tt.want, id)
				if gone != errors.Is(err, runner.ErrNotFound) || gone != errors.Is(jerr, runner.ErrNotFound) {
					t.Errorf("run %q after DeleteBefore: Get %v, Journal %v; deleted want %v", id, err, jerr, gone)
				}
			}
		})
	}
}

func testConcurrentAppends(t *testing.T, s runner.Store) {
	ctx := context.Background()
	const runs, perRun = 8, 20
	// Many goroutines, each appending to a run of its own.
	var fns []func() error
	for i := range runs {
		id := fmt.Sprintf("many-%d", i)
		create(t, s, newRun(id, base()))
		fns = append(fns, func() error {
			for j := range perRun {
				seq, err := s.Append(ctx, id, owner, typicalRecord(fmt.Sprintf("%s/s%02d", id, j)))
				if err != nil {
					return fmt.Errorf("Append(%q, #%d): %w", id, j, err)
				}
				if seq != int64(j+1) {
					return fmt.Errorf("Append(%q, #%d) seq = %d; want %d", id, j, seq, j+1)
				}
			}
			return nil
		})
	}
	// Many goroutines appending to one run, as parallel branches do.
	create(t, s, newRun("shared", base()))
	for g := range runs {
		fns = append(fns, func() error {
			for j := range perRun {
				if _, err := s.Append(ctx, "shared", owner, typicalRecord(fmt.Sprintf("shared[%d]/s%02d", g, j))); err != nil {
					return fmt.Errorf("Append(shared, g%d #%d): %w", g, j, err)
				}
			}
			return nil
		})
	}
	if err := errors.Join(goAll(fns...)...); err != nil {
		t.Fatal(err)
	}
	for i := range runs {
		id := fmt.Sprintf("many-%d", i)
		entries, err := s.Journal(ctx, id)
		if err != nil || len(entries) != perRun {
			t.Fatalf("Journal(%q) = %d entries, %v; want %d", id, len(entries), err, perRun)
		}
		for j, e := range entries {
			if want := fmt.Sprintf("%s/s%02d", id, j); e.Record.Path != want || e.Seq != int64(j+1) {
				t.Errorf("Journal(%q)[%d] = %d %q; want %d %q", id, j, e.Seq, e.Record.Path, j+1, want)
			}
		}
	}
	entries, err := s.Journal(ctx, "shared")
	if err != nil || len(entries) != runs*perRun {
		t.Fatalf("Journal(shared) = %d entries, %v; want %d", len(entries), err, runs*perRun)
	}
	last := make(map[string]int) // per goroutine, its records stay in order
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Errorf("Journal(shared)[%d].Seq = %d; want %d", i, e.Seq, i+1)
		}
		var g, j int
		if _, err := fmt.Sscanf(e.Record.Path, "shared[%d]/s%d", &g, &j); err != nil {
			t.Fatalf("unexpected path %q", e.Record.Path)
		}
		key := fmt.Sprint(g)
		if prev, ok := last[key]; ok && j != prev+1 {
			t.Errorf("goroutine %d's records out of order: s%02d after s%02d", g, j, prev)
		}
		last[key] = j
	}
}

func testCorrupt(t *testing.T, s runner.Store, o options) {
	ctx := context.Background()
	if o.corruptRecord == nil && o.corruptRun == nil {
		t.Skip("the store gives no way to corrupt what it holds (WithCorruptRecord, WithCorruptRun)")
	}
	if o.corruptRecord != nil {
		t.Run("record", func(t *testing.T) {
			create(t, s, newRun("bad-record", base()))
			if _, err := s.Append(ctx, "bad-record", owner, typicalRecord("good")); err != nil {
				t.Fatalf("Append = %v", err)
			}
			o.corruptRecord(t, s, "bad-record")
			if entries, err := s.Journal(ctx, "bad-record"); !errors.Is(err, runner.ErrCorrupt) {
				t.Errorf("Journal with a corrupt record = %d entries, %v; want ErrCorrupt", len(entries), err)
			}
			if _, err := s.Get(ctx, "bad-record"); err != nil {
				t.Errorf("Get of the run whose record is corrupt = %v; want nil", err)
			}
		})
	}
	if o.corruptRun != nil {
		t.Run("run", func(t *testing.T) {
			create(t, s, newRun("bad-run", base()))
			o.corruptRun(t, s, "bad-run")
			if _, err := s.Get(ctx, "bad-run"); !errors.Is(err, runner.ErrCorrupt) {
				t.Errorf("Get of a corrupt run = %v; want ErrCorrupt", err)
			}
			if _, err := s.List(ctx, runner.Filter{}); !errors.Is(err, runner.ErrCorrupt) {
				t.Errorf("List with a corrupt run = %v; want ErrCorrupt", err)
			}
			if err := s.Delete(ctx, "bad-run"); err != nil {
				t.Errorf("Delete of a corrupt run = %v; want nil (it can be removed)", err)
			}
		})
	}
}
