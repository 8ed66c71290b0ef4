package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/caudal-go/caudal"
)

// Default lease settings (see [WithLease]).
const (
	DefaultLeaseTTL = 30 * time.Second
)

// Metadata keys the runner sets on the journal record of a human-input
// step it resumed (see [Answer]).
const (
	MetaAnsweredBy = "answered_by" // who answered, when given
	MetaAnsweredAt = "answered_at" // when, RFC 3339 with nanoseconds
)

// Runner runs registered pipelines durably on an executor and a [Store]
// (see the package doc). Make one with [New]; the zero value is not
// usable. It is safe for concurrent use: many runs, resumes and recoveries
// may go on at once.
type Runner struct {
	ex    *caudal.Executor
	store Store // guarded: a panic in it is an error
	owner string
	ttl   time.Duration // lease length
	beat  time.Duration // heartbeat period
	// recoverers is how many orphaned runs Recover continues at once.
	recoverers int

	mu        sync.RWMutex // protects pipelines
	pipelines map[string]caudal.Step
}

// Option configures a [Runner] in [New].
type Option interface{ apply(*Runner) error }

type optionFunc func(*Runner) error

func (f optionFunc) apply(r *Runner) error { return f(r) }

// WithOwner names the process in the leases it takes (default: host name,
// process ID and a random suffix). Two runners sharing a store must have
// different owners.
func WithOwner(owner string) Option {
	return optionFunc(func(r *Runner) error {
		if owner == "" {
			return errors.New("runner: WithOwner: empty owner")
		}
		r.owner = owner
		return nil
	})
}

// WithLease sets how long a lease holds without renewal (default
// [DefaultLeaseTTL]). A running execution renews it every ttl/3; a
// process that dies leaves its runs to [Runner.Recover] once ttl has
// passed.
func WithLease(ttl time.Duration) Option {
	return optionFunc(func(r *Runner) error {
		if ttl < 3*time.Millisecond {
			return fmt.Errorf("runner: WithLease: lease %v, want at least 3ms", ttl)
		}
		r.ttl, r.beat = ttl, ttl/3
		return nil
	})
}

// WithRecoverConcurrency sets how many orphaned runs [Runner.Recover]
// continues at once (default 8).
func WithRecoverConcurrency(n int) Option {
	return optionFunc(func(r *Runner) error {
		if n < 1 {
			return fmt.Errorf("runner: WithRecoverConcurrency: %d, want at least 1", n)
		}
		r.recoverers = n
		return nil
	})
}

// New returns a runner executing on ex and keeping its runs in store. A
// nil executor or store, or an invalid option, is an error.
func New(ex *caudal.Executor, store Store, opts ...Option) (*Runner, error) {
	if ex == nil || store == nil {
		return nil, errors.New("runner: New: nil executor or store")
	}
	r := &Runner{
		ex: ex, store: guarded{store}, ttl: DefaultLeaseTTL, beat: DefaultLeaseTTL / 3, recoverers: 8,
		pipelines: make(map[string]caudal.Step),
	}
	host, _ := os.Hostname()
	r.owner = host + "-" + strconv.Itoa(os.Getpid()) + "-" + randomHex(4)
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("runner: New: nil option")
		}
		if err := o.apply(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Owner returns the name the runner takes leases under.
func (r *Runner) Owner() string { return r.owner }

// Register makes step available under name to [Runner.Start] and to the
// resumes and recoveries of its runs; it is built if it is not. Every
// process that may resume or recover a run must register the same
// pipeline under the same name: a changed one fails them with
// [ErrPipelineChanged]. An empty or taken name, or a step that does not
// build, is an error.
func (r *Runner) Register(name string, step caudal.Step) error {
	if name == "" {
		return errors.New("runner: Register: empty pipeline name")
	}
	if !step.Built() {
		var err error
		if step, err = caudal.Build(step); err != nil {
			return fmt.Errorf("runner: Register: pipeline %q: %w", name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pipelines[name]; ok {
		return fmt.Errorf("runner: Register: pipeline %q is registered already", name)
	}
	r.pipelines[name] = step
	return nil
}

// pipeline returns the pipeline run runs, checking its fingerprint.
func (r *Runner) pipeline(run *Run) (caudal.Step, error) {
	r.mu.RLock()
	step, ok := r.pipelines[run.Pipeline]
	r.mu.RUnlock()
	if !ok {
		return step, fmt.Errorf("run %q: pipeline %q: %w", run.ID, run.Pipeline, ErrUnknownPipeline)
	}
	if fp := step.Fingerprint(); fp != run.Fingerprint {
		return step, fmt.Errorf("run %q: pipeline %q is %.12s…, the run started on %.12s…: %w",
			run.ID, run.Pipeline, fp, run.Fingerprint, ErrPipelineChanged)
	}
	return step, nil
}

// StartOption configures one [Runner.Start].
type StartOption interface{ applyStart(*startConfig) error }

type startConfig struct {
	id    string
	state map[string]any
}

type startFunc func(*startConfig) error

func (f startFunc) applyStart(c *startConfig) error { return f(c) }

// WithRunID gives the run its ID (default: a new random one, ordered by
// time). A run with the ID in the store already is [ErrRunExists].
func WithRunID(id string) StartOption {
	return startFunc(func(c *startConfig) error {
		if id == "" {
			return errors.New("runner: WithRunID: empty ID")
		}
		c.id = id
		return nil
	})
}

// WithState starts the run with state (a [caudal.State] holding its JSON
// forms).
func WithState(state map[string]any) StartOption {
	return startFunc(func(c *startConfig) error {
		c.state = state
		return nil
	})
}

// Start runs the pipeline registered under pipeline with input, as a new
// run in the store, and returns the run as stored when the execution
// stopped: completed, paused (see [Runner.Resume]), failed or cancelled
// (its ctx was cancelled). Start blocks until then.
//
// The run's input and state are kept as JSON, and the pipeline receives
// their JSON forms (what encoding/json decodes into an any) — as a resumed
// or recovered run does — so that a run behaves the same however often it
// is interrupted.
//
// Errors: [ErrUnknownPipeline]; an input or state that is not JSON; a
// store error (the run, if created, is left for [Runner.Recover]); the
// execution's own error when the run failed or was cancelled (with the
// run); [ErrLeaseLost] when another process took the run over.
func (r *Runner) Start(ctx context.Context, pipeline string, input any, opts ...StartOption) (*Run, error) {
	var c startConfig
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("runner: Start: nil option")
		}
		if err := o.applyStart(&c); err != nil {
			return nil, err
		}
	}
	r.mu.RLock()
	step, ok := r.pipelines[pipeline]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("runner: Start: pipeline %q: %w", pipeline, ErrUnknownPipeline)
	}
	if c.id == "" {
		c.id = newID()
	}
	in, inJSON, err := jsonForm(input)
	if err != nil {
		return nil, fmt.Errorf("runner: Start: run %q: input: %w", c.id, err)
	}
	stAny, stJSON, err := jsonForm(c.state)
	if err != nil {
		return nil, fmt.Errorf("runner: Start: run %q: state: %w", c.id, err)
	}
	st, _ := stAny.(map[string]any)
	now := time.Now()
	run := &Run{
		ID: c.id, Pipeline: pipeline, Fingerprint: step.Fingerprint(), Status: StatusRunning,
		Input: inJSON, State: stJSON, CreatedAt: now, UpdatedAt: now, Owner: r.owner, LeaseUntil: now.Add(r.ttl),
	}
	if err := r.store.Create(ctx, run); err != nil {
		return nil, fmt.Errorf("runner: Start: %w", err)
	}
	x := &execution{r: r, run: run, step: step, input: in, state: st}
	return x.do(ctx)
}

// Answer is a human's answer to a paused run.
type Answer struct {
	Value any       // the answer: the paused step's output; it must be a JSON value
	By    string    // who answered; optional
	At    time.Time // when; zero: when Resume is called
}

// Resume continues paused run id with ans, and returns the run as stored
// when the execution stopped again (see [Runner.Start]): the answer
// becomes the output of the human-input step the run waits at, recorded in
// the journal with [MetaAnsweredBy] and [MetaAnsweredAt]; the steps that
// had completed are not run again. The run may pause again, at another
// human-input step or at another paused branch of a parallel step or a
// map: each Resume answers one pause.
//
// Errors, all leaving the run as it was: [ErrNotFound]; [ErrWrongStatus]
// when the run is not paused; [ErrRunLocked] when another process holds
// it; an [*AnswerError] ([ErrInvalidAnswer]) when the answer fails the
// pause's schema; [ErrUnknownPipeline]; [ErrPipelineChanged]; [ErrCorrupt]
// when the stored pause cannot be read back; a store error. Once the run
// goes on, the errors of [Runner.Start].
func (r *Runner) Resume(ctx context.Context, id string, ans Answer) (*Run, error) {
	run, err := r.store.Claim(ctx, id, r.owner, r.ttl, StatusPaused)
	if err != nil {
		return nil, fmt.Errorf("runner: Resume: %w", err)
	}
	snap, value, err := r.checkResume(run, ans)
	if ae, ok := errors.AsType[*AnswerError](err); ok {
		r.release(ctx, id)
		return nil, ae
	}
	if err != nil {
		r.release(ctx, id)
		return nil, fmt.Errorf("runner: Resume: %w", err)
	}
	step, _ := r.pipeline(run) // checked
	pause := run.Pause
	run.Status, run.Pause, run.Error, run.UpdatedAt = StatusRunning, nil, "", time.Now()
	if err := r.store.Update(ctx, run, r.owner); err != nil {
		r.release(ctx, id)
		return nil, fmt.Errorf("runner: Resume: %w", err)
	}
	at := ans.At
	if at.IsZero() {
		at = time.Now()
	}
	meta := map[string]any{MetaAnsweredAt: at.UTC().Format(time.RFC3339Nano)}
	if ans.By != "" {
		meta[MetaAnsweredBy] = ans.By
	}
	x := &execution{r: r, run: run, step: step, resume: snap, answer: value, answerMeta: meta}
	out, err := x.do(ctx)
	if x.mismatch {
		// The snapshot does not fit the pipeline: nothing ran; the run
		// waits as it did.
		run.Status, run.Pause, run.Error, run.UpdatedAt = StatusPaused, pause, pause.Message, time.Now()
		if uerr := r.store.Update(ctx, run, r.owner); uerr != nil {
			err = errors.Join(err, uerr)
		}
		r.release(ctx, id)
		return nil, fmt.Errorf("runner: Resume: run %q: the stored pause does not fit the pipeline: %w: %w", id, ErrCorrupt, err)
	}
	return out, err
}

// checkResume checks that paused run can take ans, and returns the
// snapshot to resume from and the answer's JSON form.
func (r *Runner) checkResume(run *Run, ans Answer) (*caudal.Snapshot, any, error) {
	if _, err := r.pipeline(run); err != nil {
		return nil, nil, err
	}
	if run.Pause == nil {
		return nil, nil, fmt.Errorf("run %q: paused, but no pause is stored: %w", run.ID, ErrCorrupt)
	}
	snap := new(caudal.Snapshot)
	if err := json.Unmarshal(run.Pause.Snapshot, snap); err != nil {
		return nil, nil, fmt.Errorf("run %q: the pause's snapshot: %w: %w", run.ID, ErrCorrupt, err)
	}
	if snap.Fingerprint != run.Fingerprint || snap.Path != run.Pause.Path || snap.Version != caudal.SnapshotVersion {
		return nil, nil, fmt.Errorf("run %q: the pause's snapshot is not of this run's pipeline and pause: %w", run.ID, ErrCorrupt)
	}
	value, _, err := jsonForm(ans.Value)
	if err != nil {
		return nil, nil, &AnswerError{RunID: run.ID, Path: run.Pause.Path, Problems: []string{"$: " + err.Error()}}
	}
	if len(run.Pause.Schema) > 0 {
		s, err := parseSchema(run.Pause.Schema)
		if err != nil {
			return nil, nil, fmt.Errorf("run %q: step %q: %w", run.ID, run.Pause.Path, err)
		}
		if problems := s.validate(value, "$", nil); len(problems) > 0 {
			return nil, nil, &AnswerError{RunID: run.ID, Path: run.Pause.Path, Problems: problems}
		}
	}
	return snap, value, nil
}

// Recover continues the runs that processes which died (or lost the
// store) left running, from the checkpoints their journals hold: a step
// instance with a record is not executed again; the instance that was in
// flight when its process died runs again (at most once per recovery: the
// at-least-once edge every durable engine has). It claims each orphan
// ([Store.Orphans]) before continuing it, so that of processes recovering
// at once exactly one continues each run, and skips runs of pipelines not
// registered here (another process's). It continues up to
// [WithRecoverConcurrency] runs at once, blocks until each stopped, and
// returns them as stored then.
//
// Errors, joined, one per run that could not be continued (it stays
// running, for a later Recover once the cause is gone):
// [ErrPipelineChanged], [ErrCorrupt], a store error; and the errors of
// runs that failed as in [Runner.Start].
func (r *Runner) Recover(ctx context.Context) ([]*Run, error) {
	ids, err := r.store.Orphans(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("runner: Recover: %w", err)
	}
	var (
		mu   sync.Mutex // protects runs and errs
		runs []*Run
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan string)
	for range min(r.recoverers, len(ids)) {
		wg.Go(func() {
			for id := range next {
				run, err := r.recoverOne(ctx, id)
				mu.Lock()
				if run != nil {
					runs = append(runs, run)
				}
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		next <- id
	}
	close(next)
	wg.Wait()
	return runs, errors.Join(errs...)
}

// recoverOne claims orphan id and continues it; a run another process
// claimed first, or of a pipeline not registered here, is skipped.
func (r *Runner) recoverOne(ctx context.Context, id string) (out *Run, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("runner: Recover: run %q: panic: %v", id, v)
		}
	}()
	run, err := r.store.Get(ctx, id)
	if err != nil {
		return nil, skipTaken(err)
	}
	r.mu.RLock()
	_, ok := r.pipelines[run.Pipeline]
	r.mu.RUnlock()
	if !ok {
		return nil, nil
	}
	if run, err = r.store.Claim(ctx, id, r.owner, r.ttl, StatusRunning); err != nil {
		return nil, skipTaken(err)
	}
	x, err := r.checkpointed(ctx, run)
	if err != nil {
		r.release(ctx, id)
		return nil, fmt.Errorf("runner: Recover: %w", err)
	}
	out, err = x.do(ctx)
	if x.mismatch {
		r.release(ctx, id)
		return nil, fmt.Errorf("runner: Recover: run %q: the journal does not fit the pipeline: %w: %w", id, ErrCorrupt, err)
	}
	return out, err
}

// skipTaken drops the errors that say another process has the run.
func skipTaken(err error) error {
	if errors.Is(err, ErrRunLocked) || errors.Is(err, ErrWrongStatus) || errors.Is(err, ErrNotFound) {
		return nil
	}
	return fmt.Errorf("runner: Recover: %w", err)
}

// checkpointed returns the execution that continues claimed run from the
// checkpoint its journal holds.
func (r *Runner) checkpointed(ctx context.Context, run *Run) (*execution, error) {
	step, err := r.pipeline(run)
	if err != nil {
		return nil, err
	}
	entries, err := r.store.Journal(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	snap := &caudal.Snapshot{
		Version: caudal.SnapshotVersion, Fingerprint: run.Fingerprint, RunID: run.ID,
		Journal: make([]caudal.Record, len(entries)),
	}
	for i, e := range entries {
		snap.Journal[i] = e.Record
	}
	if err := unmarshalOpt(run.Input, &snap.Input); err != nil {
		return nil, fmt.Errorf("run %q: input: %w: %w", run.ID, ErrCorrupt, err)
	}
	if err := unmarshalOpt(run.State, &snap.State); err != nil {
		return nil, fmt.Errorf("run %q: state: %w: %w", run.ID, ErrCorrupt, err)
	}
	return &execution{r: r, run: run, step: step, resume: snap}, nil
}

// List returns the stored runs f selects (see [Store.List]).
func (r *Runner) List(ctx context.Context, f Filter) ([]*Run, error) {
	runs, err := r.store.List(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("runner: List: %w", err)
	}
	return runs, nil
}

// Delete removes run id and its journal. A run another process holds is
// [ErrRunLocked]; one not stored, [ErrNotFound].
func (r *Runner) Delete(ctx context.Context, id string) error {
	if _, err := r.store.Claim(ctx, id, r.owner, r.ttl, StatusRunning, StatusPaused, StatusCompleted, StatusFailed, StatusCancelled); err != nil {
		return fmt.Errorf("runner: Delete: %w", err)
	}
	if err := r.store.Delete(ctx, id); err != nil {
		r.release(ctx, id)
		return fmt.Errorf("runner: Delete: %w", err)
	}
	return nil
}

// Retain deletes the runs in one of statuses (none: completed, failed and
// cancelled) last updated more than olderThan ago, with their journals,
// and returns how many. Paused runs are kept unless named: they wait for
// someone.
func (r *Runner) Retain(ctx context.Context, olderThan time.Duration, statuses ...Status) (int, error) {
	if len(statuses) == 0 {
		statuses = []Status{StatusCompleted, StatusFailed, StatusCancelled}
	}
	n, err := r.store.DeleteBefore(ctx, time.Now().Add(-olderThan), statuses...)
	if err != nil {
		return n, fmt.Errorf("runner: Retain: %w", err)
	}
	return n, nil
}

// release gives up the runner's lease on id, best effort: a lease that
// stays expires.
func (r *Runner) release(ctx context.Context, id string) {
	_ = r.store.Release(context.WithoutCancel(ctx), id, r.owner)
}

// jsonForm returns v's JSON encoding and what it decodes back into.
func jsonForm(v any) (any, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("not a JSON value: %w", err)
	}
	var back any
	if err := json.Unmarshal(b, &back); err != nil {
		return nil, nil, fmt.Errorf("not a JSON value: %w", err)
	}
	return back, b, nil
}

// unmarshalOpt decodes b into v, leaving v alone when b is empty.
func unmarshalOpt(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// newID returns a new run ID: the time in hex, then random bits, so that
// IDs sort roughly by creation.
func newID() string {
	return strconv.FormatInt(time.Now().UnixNano(), 16) + "-" + randomHex(8)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
