package caudal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// Write is one change a step made to the run's [State]: the value at Path —
// a key, then the keys of the nested maps under it, len(Path) >= 1 — was set
// to Value, or removed when Deleted. Records of the journal carry the
// writes of their step instance ([Record.Writes]).
type Write = statemerge.Write

// RecordStatus says what a journal [Record] records.
type RecordStatus string

// The statuses of a [Record].
const (
	// StatusSucceeded: the step instance completed successfully.
	StatusSucceeded RecordStatus = "succeeded"
	// StatusFailed: the step instance failed and the run went on without
	// it (a parallel branch under [Ignore]).
	StatusFailed RecordStatus = "failed"
	// StatusDecided: a choice the run made inside a step instance that had
	// not completed — a [Conditional]'s key (Output is the key), a
	// [Router]'s branches (Output lists them; Usage is what the choice
	// cost), a primary whose every attempt failed before its fallback ran
	// (Output, Usage, Attempts and Feedback are the primary's).
	StatusDecided RecordStatus = "decided"
)

// Record is one entry of a run's journal: a step instance that completed,
// or a decision taken inside one. Resuming a run replays its journal: an
// instance found in it returns the recorded outcome and re-applies the
// recorded writes, without running again (see [WithResume]).
//
// A Record is plain data that round-trips through encoding/json (Output,
// Write values and Metadata come back as their JSON forms). Path is an
// instance path; Output through Children are as in [StepResult].
type Record struct {
	Path     string         `json:"path"`
	Status   RecordStatus   `json:"status"`
	Output   any            `json:"output,omitempty"`
	Writes   []Write        `json:"writes,omitempty"` // the instance's changes to its state, in order
	Usage    Usage          `json:"usage"`
	Attempts int            `json:"attempts,omitempty"`
	Latency  time.Duration  `json:"latency_ns,omitempty"`
	Feedback string         `json:"feedback,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
	Children []StepResult   `json:"children,omitempty"`
}

// Checkpointer receives every journal record as its step instance
// completes, on that step's goroutine, before the run goes on: a runner
// persists them so that, after a crash, [WithResume] with a [Snapshot] of
// them runs no completed step again. An error stops the run: the step that
// completed fails with it (progress that cannot be saved is not made).
// rec's values are shared with the run: encode or copy what is kept before
// returning. Implementations must be safe for concurrent use (parallel
// branches complete concurrently).
type Checkpointer interface {
	Checkpoint(ctx context.Context, rec Record) error
}

// CheckpointFunc adapts a function to the [Checkpointer] interface.
type CheckpointFunc func(ctx context.Context, rec Record) error

// Checkpoint calls f(ctx, rec).
func (f CheckpointFunc) Checkpoint(ctx context.Context, rec Record) error { return f(ctx, rec) }

var _ Checkpointer = CheckpointFunc(nil)

// WithCheckpointer sends every journal record of an execution to cp (see
// [Checkpointer]). Passed to [New] it applies to every execution; passed
// to [Executor.Execute] it replaces the executor's for one call.
func WithCheckpointer(cp Checkpointer) Option {
	o := &option{name: "WithCheckpointer", scope: scopeNew | scopeExecute, kind: optCheckpointer, val: settings{checkpointer: cp}}
	if cp == nil {
		o.err = errors.New("nil Checkpointer")
	}
	return o
}

// SnapshotVersion is the version of the [Snapshot] format this package
// writes and reads.
const SnapshotVersion = 2

// Snapshot is where a run stands: the pipeline it runs (its fingerprint),
// the input and the state it started with, its journal of completed step
// instances and decisions, and the human-input step it waits at (Path,
// Message; both "" for a checkpoint). It is plain data that round-trips
// through encoding/json (values held in it come back as their JSON forms),
// so a runner can persist it. Pass it to [WithResume] to continue the run
// without running completed steps again.
type Snapshot struct {
	Version     int            `json:"version"`
	Fingerprint string         `json:"fingerprint"` // the pipeline's [Step.Fingerprint]
	RunID       string         `json:"run_id,omitempty"`
	Path        string         `json:"path,omitempty"`    // the paused step's instance path; "" for a checkpoint
	Message     string         `json:"message,omitempty"` // what the run asks of the human
	Input       any            `json:"input,omitempty"`   // the run's input
	State       map[string]any `json:"state,omitempty"`   // the run's state when it started
	Journal     []Record       `json:"journal,omitempty"` // in the order the records were made
}

// WithResume continues a run from snap: a [PausedError.Snapshot], with
// answer the human's answer, which becomes the output of the paused
// [HumanInput] step; or a checkpoint — a Snapshot a runner assembled from
// the records its [Checkpointer] received, with Path "" — and a nil
// answer. The step given to [Executor.Execute] must be the pipeline that
// made the snapshot, and its input argument is ignored: the run starts
// over from the snapshot's input and state, and replays its journal, so
// that no completed step instance runs again. The snapshot's state is
// loaded into the [WithState] state if one is given, else into a new one.
// snap is only read: it may be resumed many times, concurrently. It applies
// to Execute.
//
// Everything the replay re-runs — key funcs of a conditional aside (their
// choice is journaled), mappers, exit conditions, item sources — must be
// deterministic functions of their input and the state.
//
// A snapshot of another pipeline, of a changed one, or whose records do not
// fit the pipeline, fails before any step runs, with an error matching
// [ErrSnapshotMismatch]; so does a resumed run that never reaches the
// paused step.
func WithResume(snap *Snapshot, answer any) Option {
	o := &option{name: "WithResume", scope: scopeExecute, kind: optResume, val: settings{resume: snap, resumeInput: answer}}
	switch {
	case snap == nil:
		o.err = errors.New("nil Snapshot")
	case snap.Version != SnapshotVersion:
		o.err = fmt.Errorf("%w: snapshot version %d, want %d", ErrSnapshotMismatch, snap.Version, SnapshotVersion)
	case snap.Path == "" && answer != nil:
		o.err = fmt.Errorf("%w: a checkpoint (a snapshot with no paused step) takes no answer", ErrSnapshotMismatch)
	}
	return o
}

// journal is where the records of one execution go.
type journal struct {
	cp   Checkpointer // nil: none
	keep bool         // the pipeline can pause: records are kept for its snapshot

	mu      sync.Mutex // protects records
	records []Record

	input   any            // the run's input, for the snapshot
	initial map[string]any // the run's state when it started, for the snapshot
}

// add makes the record of the instance at p and hands it on.
func (j *journal) add(ctx context.Context, p string, status RecordStatus, res *StepResult, writes []Write) error {
	rec := Record{
		Path: p, Status: status, Output: res.Output, Writes: writes, Usage: res.Usage, Attempts: res.Attempts,
		Latency: res.Latency, Feedback: res.Feedback, Metadata: res.Metadata, Children: res.Children,
	}
	if j.keep {
		kept := rec
		// Later steps may change these values in place: keep them as they
		// are now. (Writes are the state log's own copies already.)
		kept.Output, kept.Metadata = copyValue(rec.Output), deepcopy.CopyMap(rec.Metadata)
		j.mu.Lock()
		j.records = append(j.records, kept)
		j.mu.Unlock()
	}
	if j.cp != nil {
		if err := checkpoint(ctx, j.cp, rec); err != nil {
			return &checkpointError{path: p, err: err}
		}
	}
	return nil
}

// errCheckpoint matches a [checkpointError].
var errCheckpoint error = &controlError{"caudal: checkpoint failed"}

// checkpointError is a Checkpointer's refusal of a record. It ends the run
// as a budget breach does — no retry, no fallback, no branch ignored: the
// run must not go on with progress that was not saved.
type checkpointError struct {
	path string
	err  error
}

func (e *checkpointError) Error() string {
	return fmt.Sprintf("caudal: step %q: checkpoint: %v", e.path, e.err)
}

func (e *checkpointError) Unwrap() error { return e.err }

func (e *checkpointError) instancePath() string { return e.path }

func (e *checkpointError) Is(target error) bool { return target == errCheckpoint }

// checkpoint calls cp under a panic guard.
func checkpoint(ctx context.Context, cp Checkpointer, rec Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(rec.Path, v)
		}
	}()
	return cp.Checkpoint(ctx, rec)
}

func copyValue(v any) any {
	if deepcopy.Immutable(v) {
		return v
	}
	return deepcopy.Copy(v)
}

func copyWrites(ws []Write) []Write {
	if ws == nil {
		return nil
	}
	out := make([]Write, len(ws))
	for i, w := range ws {
		out[i] = Write{Path: slices.Clone(w.Path), Value: copyValue(w.Value), Deleted: w.Deleted}
	}
	return out
}

// snapshot returns the snapshot of a run paused by pe: the kept records,
// without those a completed instance around them makes useless. It fails,
// naming the culprit, when the snapshot would not survive a trip through
// encoding/json.
func (j *journal) snapshot(fingerprint, runID string, pe *PausedError) (*Snapshot, error) {
	j.mu.Lock()
	records := compact(j.records)
	j.mu.Unlock()
	snap := &Snapshot{
		Version: SnapshotVersion, Fingerprint: fingerprint, RunID: runID, Path: pe.Path, Message: pe.Message,
		Input: j.input, State: j.initial, Journal: records,
	}
	if err := checkPersistable(snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// compact drops the records that an ancestor instance's own record
// replaces: a resumed run never looks them up.
func compact(records []Record) []Record {
	done := make(map[string]bool, len(records))
	for i := range records {
		if records[i].Status != StatusDecided {
			done[records[i].Path] = true
		}
	}
	out := make([]Record, 0, len(records))
	for _, rec := range records {
		if !coveredBy(done, rec) {
			out = append(out, rec)
		}
	}
	return out
}

// coveredBy reports whether an instance enclosing rec — or, for a
// decision, the instance itself — has a record in done.
func coveredBy(done map[string]bool, rec Record) bool {
	if rec.Status == StatusDecided && done[rec.Path] {
		return true
	}
	p := rec.Path
	for i := len(p) - 1; i > 0; i-- {
		if (p[i] == '/' || p[i] == '#' || p[i] == '[') && done[p[:i]] {
			return true
		}
	}
	return false
}

// checkPersistable reports what of snap encoding/json cannot encode, or
// cannot decode again (a value nested past the decoder's depth limit).
func checkPersistable(snap *Snapshot) error {
	if roundTrips(snap) == nil {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(snap.State)) {
		if err := roundTrips(snap.State[k]); err != nil {
			return fmt.Errorf("state key %q: %w", k, err)
		}
	}
	if err := roundTrips(snap.Input); err != nil {
		return fmt.Errorf("the run's input: %w", err)
	}
	for _, rec := range snap.Journal {
		if err := roundTrips(rec.Output); err != nil {
			return fmt.Errorf("output of step %q: %w", rec.Path, err)
		}
		for _, w := range rec.Writes {
			if err := roundTrips(w.Value); err != nil {
				return fmt.Errorf("state key %q, written by step %q: %w", strings.Join(w.Path, "."), rec.Path, err)
			}
		}
		if err := roundTrips(rec); err != nil {
			return fmt.Errorf("record of step %q: %w", rec.Path, err)
		}
	}
	return fmt.Errorf("snapshot: %w", roundTrips(snap))
}

// roundTrips encodes v and decodes it again. A MarshalJSON that panics is
// an error.
func roundTrips(v any) (err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("encoding panicked: %v", x)
		}
	}()
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var back any
	if err := json.Unmarshal(b, &back); err != nil {
		return fmt.Errorf("encodes, but does not decode: %w", err)
	}
	return nil
}

// replay drives a resumed execution: step instances and decisions found in
// the journal, and the paused step that takes the answer. It is built from
// the snapshot for each execution and only read, the snapshot never
// changed.
type replay struct {
	steps     map[string]*Record // completed instances (succeeded or failed), by path
	decisions map[string]*Record
	paths     []string // every record's path, sorted, for under

	target    string // the paused step's instance path; "" for a checkpoint
	answer    any
	delivered atomic.Bool
}

// under reports whether the journal has a record at p or inside it.
func (rp *replay) under(p string) bool {
	i, _ := slices.BinarySearch(rp.paths, p)
	for ; i < len(rp.paths) && strings.HasPrefix(rp.paths[i], p); i++ {
		if q := rp.paths[i]; len(q) == len(p) || q[len(p)] == '/' || q[len(p)] == '#' || q[len(p)] == '[' {
			return true
		}
	}
	return false
}

// inside reports whether the resumed run was inside the instance at p when
// it paused or stopped: the journal has records in it, or the paused step
// is in it.
func (rp *replay) inside(p string) bool {
	if t := rp.target; strings.HasPrefix(t, p) && (len(t) == len(p) || strings.ContainsRune("/#[", rune(t[len(p)]))) {
		return true
	}
	return rp.under(p)
}

// restore fills res from the record of a completed instance and re-applies
// its writes to the state.
func (r *run) restore(ctx context.Context, p string, rec *Record, res *StepResult) error {
	*res = StepResult{
		Path: p, RunID: r.runID, Output: copyValue(rec.Output), Success: rec.Status == StatusSucceeded,
		Attempts: rec.Attempts, Latency: rec.Latency, Usage: rec.Usage, Feedback: rec.Feedback,
		Metadata: deepcopy.CopyMap(rec.Metadata), Children: copyResults(rec.Children),
	}
	if err := r.applyRecorded(ctx, p, rec); err != nil {
		return r.failStep(res, err)
	}
	if !res.Success {
		return &replayedError{path: p, text: rec.Feedback}
	}
	return nil
}

// applyRecorded re-applies rec's writes to the state.
func (r *run) applyRecorded(ctx context.Context, p string, rec *Record) error {
	if len(rec.Writes) == 0 {
		return nil
	}
	st := StateFrom(ctx)
	if st == nil {
		return fmt.Errorf("caudal: WithResume: %w: the record of %q writes the state, but the step has none", ErrSnapshotMismatch, p)
	}
	if err := st.apply(copyWrites(rec.Writes)); err != nil {
		return fmt.Errorf("caudal: WithResume: %w: the record of %q: %w", ErrSnapshotMismatch, p, err)
	}
	return nil
}

func copyResults(rs []StepResult) []StepResult {
	if rs == nil {
		return nil
	}
	out := make([]StepResult, len(rs))
	for i, c := range rs {
		out[i] = copyResult(c)
	}
	return out
}

// replayedError is the failure of an instance replayed from the journal:
// its text is all a journal keeps of it.
type replayedError struct {
	path, text string
}

func (e *replayedError) Error() string {
	return fmt.Sprintf("caudal: step %q failed (replayed from the journal): %s", e.path, strings.TrimPrefix(e.text, stepPrefix(e.path)))
}

func (e *replayedError) instancePath() string { return e.path }
