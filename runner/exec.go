package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caudal-go/caudal"
)

// execution is one execution of a run by a runner, whose lease it holds:
// a start, a resume or a recovery.
type execution struct {
	r    *Runner
	run  *Run // as stored; updated when the execution stops
	step caudal.Step

	input any            // a start's input (JSON form)
	state map[string]any // a start's state (JSON forms)

	resume     *caudal.Snapshot // a resume's or recovery's; nil on a start
	answer     any              // a resume's answer (JSON form)
	answerMeta map[string]any   // what the answer's record gets in its metadata

	appends  atomic.Int64          // records appended
	storeErr atomic.Pointer[error] // the first refused append's error
	// mismatch: the resume snapshot did not fit the pipeline and nothing
	// ran; the run was left as it was, the lease held (do's caller decides).
	mismatch bool
}

// checkpoint appends rec to the run's journal: the executor's
// [caudal.Checkpointer].
func (x *execution) checkpoint(ctx context.Context, rec caudal.Record) error {
	if x.answerMeta != nil && rec.Path == x.resume.Path {
		meta := maps.Clone(rec.Metadata)
		if meta == nil {
			meta = make(map[string]any, len(x.answerMeta))
		}
		maps.Copy(meta, x.answerMeta)
		rec.Metadata = meta
	}
	// A completed step's record is worth keeping even as the run is being
	// cancelled.
	if _, err := x.r.store.Append(context.WithoutCancel(ctx), x.run.ID, x.r.owner, rec); err != nil {
		x.storeErr.CompareAndSwap(nil, &err)
		return err
	}
	x.appends.Add(1)
	return nil
}

// do executes the run, renewing its lease meanwhile, and stores where it
// stopped (see [Runner.Start] for what it returns).
func (x *execution) do(ctx context.Context) (*Run, error) {
	id := x.run.ID
	exctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { x.heartbeat(ctx, cancel, stop) })

	st := caudal.NewState(x.state)
	opts := []caudal.Option{
		caudal.WithRunID(id), caudal.WithState(st), caudal.WithCheckpointer(caudal.CheckpointFunc(x.checkpoint)),
	}
	in := x.input
	if x.resume != nil {
		opts = append(opts, caudal.WithResume(x.resume, x.answer))
	}
	res, err := x.r.ex.Execute(exctx, x.step, in, opts...)
	close(stop)
	wg.Wait()

	lost := context.Cause(exctx)
	if serr := x.storeErr.Load(); serr != nil {
		lost = *serr
	}
	switch {
	case lost != nil && errors.Is(lost, ErrLeaseLost):
		return nil, fmt.Errorf("runner: run %q: %w", id, lost)
	case x.storeErr.Load() != nil:
		// Progress that was not saved was not made: the run stays
		// running, for Recover once the store is back.
		x.r.release(ctx, id)
		return nil, fmt.Errorf("runner: run %q: saving a step: %w", id, *x.storeErr.Load())
	case x.resume != nil && x.appends.Load() == 0 && errors.Is(err, caudal.ErrSnapshotMismatch):
		x.mismatch = true
		return nil, err
	}
	return x.finish(ctx, res, err, st)
}

// finish stores where the execution stopped, and gives up the lease.
func (x *execution) finish(ctx context.Context, res caudal.StepResult, err error, st *caudal.State) (*Run, error) {
	run := x.run
	run.Usage, run.UpdatedAt, run.Error, run.Pause = res.Usage, time.Now(), "", nil
	run.FinalState, _ = json.Marshal(st) // a state holds JSON forms and what steps wrote: a journaled run's writes encode
	runErr := err
	pe, _ := errors.AsType[*caudal.PausedError](err)
	switch {
	case err == nil:
		run.Status = StatusCompleted
		if run.Output, err = json.Marshal(res.Output); err != nil {
			runErr = fmt.Errorf("runner: run %q: output: %w", run.ID, err)
			run.Status, run.Output, run.Error = StatusFailed, nil, runErr.Error()
		}
	case pe != nil:
		run.Status, run.Error, runErr = StatusPaused, pe.Message, nil
		if run.Pause, err = pauseOf(pe); err != nil {
			runErr = fmt.Errorf("runner: run %q: %w", run.ID, err)
			run.Status, run.Pause, run.Error = StatusFailed, nil, runErr.Error()
		}
	case ctx.Err() != nil:
		run.Status, run.Error = StatusCancelled, err.Error()
	default:
		run.Status, run.Error = StatusFailed, err.Error()
	}
	if run.Status != StatusCompleted && res.Output != nil {
		run.Output, _ = json.Marshal(res.Output) // what it had; an output that does not encode is left out
	}
	if uerr := x.r.store.Update(context.WithoutCancel(ctx), run, x.r.owner); uerr != nil {
		if !errors.Is(uerr, ErrLeaseLost) {
			x.r.release(ctx, run.ID) // left running: Recover replays it from its journal
		}
		return nil, fmt.Errorf("runner: run %q: storing its end (%s): %w", run.ID, run.Status, uerr)
	}
	x.r.release(ctx, run.ID)
	run.Owner, run.LeaseUntil = "", time.Time{}
	return run, runErr
}

// pauseOf returns the stored form of a pause.
func pauseOf(pe *caudal.PausedError) (*Pause, error) {
	schema, err := schemaJSON(pe.Schema)
	if err == nil && schema != nil {
		_, err = parseSchema(schema)
	}
	if err != nil {
		return nil, fmt.Errorf("step %q: %w", pe.Path, err)
	}
	if pe.Snapshot == nil {
		return nil, fmt.Errorf("step %q paused without a snapshot", pe.Path)
	}
	snap, err := json.Marshal(pe.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("step %q: its snapshot: %w", pe.Path, err)
	}
	return &Pause{Path: pe.Path, Message: pe.Message, Schema: schema, Snapshot: snap}, nil
}

// heartbeat renews the run's lease every period until stop is closed. A
// lease lost — the store says so, or it could not be renewed for a whole
// lease — cancels the execution: another process may have the run.
func (x *execution) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	r := x.r
	defer func() {
		if v := recover(); v != nil {
			cancel(fmt.Errorf("runner: run %q: heartbeat panicked: %v: %w", x.run.ID, v, ErrLeaseLost))
		}
	}()
	t := time.NewTicker(r.beat)
	defer t.Stop()
	ok := time.Now()
	hctx := context.WithoutCancel(ctx)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := r.store.Heartbeat(hctx, x.run.ID, r.owner, r.ttl)
		switch {
		case err == nil:
			ok = time.Now()
		case errors.Is(err, ErrLeaseLost):
			cancel(fmt.Errorf("runner: run %q: heartbeat: %w", x.run.ID, err))
			return
		case time.Since(ok) >= r.ttl:
			cancel(fmt.Errorf("runner: run %q: lease not renewed for %v (%v): %w", x.run.ID, r.ttl, err, ErrLeaseLost))
			return
		}
	}
}
