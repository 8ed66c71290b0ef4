package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/caudal-go/caudal"
)

// Status is where a run stands.
type Status string

// The statuses of a [Run].
const (
	StatusRunning   Status = "running"   // executing, or left so by a process that died (see [Runner.Recover])
	StatusPaused    Status = "paused"    // waiting at a human-input step (see [Runner.Resume])
	StatusCompleted Status = "completed" // succeeded
	StatusFailed    Status = "failed"    // ended in an error
	StatusCancelled Status = "cancelled" // its context was cancelled
)

// Valid reports whether st is one of the statuses above.
func (st Status) Valid() bool {
	switch st {
	case StatusRunning, StatusPaused, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// DecodeRecord reads a journal record a store kept as JSON, and checks
// what a resumed run would trust: it names its step instance and a known
// status, and its usage is finite and not negative (a tampered record must
// not let a run spend past its limits). A store reports its error wrapped
// with [ErrCorrupt].
func DecodeRecord(b []byte) (caudal.Record, error) {
	var rec caudal.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return caudal.Record{}, err
	}
	switch {
	case rec.Path == "":
		return caudal.Record{}, errors.New("a record with no path")
	case rec.Status != caudal.StatusSucceeded && rec.Status != caudal.StatusFailed && rec.Status != caudal.StatusDecided:
		return caudal.Record{}, fmt.Errorf("record %q: unknown status %q", rec.Path, rec.Status)
	case rec.Usage.PromptTokens < 0 || rec.Usage.CompletionTokens < 0 ||
		math.IsNaN(rec.Usage.CostUSD) || math.IsInf(rec.Usage.CostUSD, 0) || rec.Usage.CostUSD < 0:
		return caudal.Record{}, fmt.Errorf("record %q: invalid usage %+v", rec.Path, rec.Usage)
	}
	return rec, nil
}

// Run is a stored run: everything a store keeps of it but its journal.
// Input, Output and State are JSON documents (a run must round-trip
// through encoding/json: the core's snapshots do).
type Run struct {
	ID          string
	Pipeline    string // the registered pipeline's name
	Fingerprint string // the pipeline's caudal.Step.Fingerprint when the run started
	Status      Status
	Input       []byte       // JSON
	State       []byte       // JSON: the run's state when it started (what a resume starts from)
	FinalState  []byte       // JSON: the state when the run last stopped (completed, failed, paused); nil before
	Output      []byte       // JSON: the run's output once it stopped; nil before
	Usage       caudal.Usage // spent so far (the journal's records' usage once it stopped)
	Error       string       // why it failed, or what it waits for when paused
	Pause       *Pause       // where it waits; nil unless paused
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Owner and LeaseUntil say which process works on the run, and until
	// when its lease holds unless renewed ("" and zero when nobody does).
	Owner      string
	LeaseUntil time.Time
}

// Pause is where a paused run waits.
type Pause struct {
	Path     string // the human-input step's instance path
	Message  string
	Schema   []byte // JSON: the answer's schema, if the step declared one
	Snapshot []byte // JSON: the caudal.Snapshot that resumes the run
}

// Entry is one record of a run's journal as stored: its position (from 1,
// in the order the records were made) and the record.
type Entry struct {
	Seq    int64
	Record caudal.Record
}

// Filter selects runs for [Store.List]: every set field must match.
type Filter struct {
	Status   []Status  // any of these; none: any status
	Pipeline string    // this pipeline's runs; "": any
	After    time.Time // created at or after; zero: no bound
	Before   time.Time // created before; zero: no bound
	Limit    int       // at most this many, newest first; 0: no limit
}

// Errors of the stores and the runner.
var (
	// ErrNotFound: no run has the ID.
	ErrNotFound = errors.New("runner: run not found")
	// ErrRunLocked: another process holds the run's lease.
	ErrRunLocked = errors.New("runner: run is locked by another process")
	// ErrLeaseLost: the caller no longer holds the run's lease (it
	// expired and another process took the run over): what it was about to
	// write is not written.
	ErrLeaseLost = errors.New("runner: lease lost")
	// ErrWrongStatus: the run is not in a status the operation accepts (a
	// resume of a run that is not paused, say).
	ErrWrongStatus = errors.New("runner: run is not in the required status")
	// ErrCorrupt: a stored run or record cannot be read back.
	ErrCorrupt = errors.New("runner: stored run is corrupt")
)

// Store keeps runs and their journals. Every method is safe for concurrent
// use, by goroutines and by processes sharing the store's backing (a
// SQLite file on one machine, a PostgreSQL database anywhere). Writes that
// need a lease check it and the write in one atomic step, against the
// store's clock. A conformance suite (runner/storetest) states the
// contract in tests; every store passes it.
type Store interface {
	// Create inserts run (its ID new) with its lease held by run.Owner
	// until run.LeaseUntil.
	Create(ctx context.Context, run *Run) error
	// Get returns the run with the ID, or ErrNotFound.
	Get(ctx context.Context, id string) (*Run, error)
	// Append adds rec to run id's journal, after the records already
	// there, if owner holds the run's lease (ErrLeaseLost otherwise), and
	// returns its Seq.
	Append(ctx context.Context, id, owner string, rec caudal.Record) (int64, error)
	// Journal returns run id's records in Seq order.
	Journal(ctx context.Context, id string) ([]Entry, error)
	// Update writes run's Status, FinalState, Output, Usage, Error, Pause
	// and UpdatedAt, if owner holds the lease (ErrLeaseLost otherwise).
	Update(ctx context.Context, run *Run, owner string) error
	// Claim gives owner run id's lease for ttl when the run's status is
	// one of statuses (any status when none is given) and nobody else
	// holds a live lease on it, and returns the run: ErrNotFound, then
	// ErrRunLocked when another owner's lease is live, then ErrWrongStatus
	// when the status is not one of statuses. Claiming a lease one holds
	// renews it. Of two processes claiming at once, exactly one wins.
	Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...Status) (*Run, error)
	// Heartbeat extends owner's lease on run id by ttl from now
	// (ErrLeaseLost when owner does not hold it).
	Heartbeat(ctx context.Context, id, owner string, ttl time.Duration) error
	// Release gives up owner's lease on run id (a no-op when owner does
	// not hold it).
	Release(ctx context.Context, id, owner string) error
	// Orphans returns the IDs of runs still running whose lease expired,
	// oldest first, at most limit (0: all).
	Orphans(ctx context.Context, limit int) ([]string, error)
	// List returns the runs f selects.
	List(ctx context.Context, f Filter) ([]*Run, error)
	// Delete removes run id and its journal (ErrNotFound when none).
	Delete(ctx context.Context, id string) error
	// DeleteBefore removes the runs in one of statuses (none: every
	// status but running) last updated before t, with their journals, and
	// returns how many.
	DeleteBefore(ctx context.Context, t time.Time, statuses ...Status) (int, error)
	// Close releases the store's resources.
	Close() error
}
