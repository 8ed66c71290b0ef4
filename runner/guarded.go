package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/caudal-go/caudal"
)

// guarded is a Store whose panics are errors: a store's bug fails the call
// that met it, never the process.
type guarded struct{ s Store }

// catch turns a panic into *err, naming the store method.
func catch(method string, err *error) {
	if v := recover(); v != nil {
		*err = fmt.Errorf("runner: store %s panicked: %v", method, v)
	}
}

func (g guarded) Create(ctx context.Context, run *Run) (err error) {
	defer catch("Create", &err)
	return g.s.Create(ctx, run)
}

func (g guarded) Get(ctx context.Context, id string) (_ *Run, err error) {
	defer catch("Get", &err)
	return g.s.Get(ctx, id)
}

func (g guarded) Append(ctx context.Context, id, owner string, rec caudal.Record) (_ int64, err error) {
	defer catch("Append", &err)
	return g.s.Append(ctx, id, owner, rec)
}

func (g guarded) Journal(ctx context.Context, id string) (_ []Entry, err error) {
	defer catch("Journal", &err)
	return g.s.Journal(ctx, id)
}

func (g guarded) Update(ctx context.Context, run *Run, owner string) (err error) {
	defer catch("Update", &err)
	return g.s.Update(ctx, run, owner)
}

func (g guarded) Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...Status) (_ *Run, err error) {
	defer catch("Claim", &err)
	return g.s.Claim(ctx, id, owner, ttl, statuses...)
}

func (g guarded) Heartbeat(ctx context.Context, id, owner string, ttl time.Duration) (err error) {
	defer catch("Heartbeat", &err)
	return g.s.Heartbeat(ctx, id, owner, ttl)
}

func (g guarded) Release(ctx context.Context, id, owner string) (err error) {
	defer catch("Release", &err)
	return g.s.Release(ctx, id, owner)
}

func (g guarded) Orphans(ctx context.Context, limit int) (_ []string, err error) {
	defer catch("Orphans", &err)
	return g.s.Orphans(ctx, limit)
}

func (g guarded) List(ctx context.Context, f Filter) (_ []*Run, err error) {
	defer catch("List", &err)
	return g.s.List(ctx, f)
}

func (g guarded) Delete(ctx context.Context, id string) (err error) {
	defer catch("Delete", &err)
	return g.s.Delete(ctx, id)
}

func (g guarded) DeleteBefore(ctx context.Context, t time.Time, statuses ...Status) (_ int, err error) {
	defer catch("DeleteBefore", &err)
	return g.s.DeleteBefore(ctx, t, statuses...)
}

func (g guarded) Close() (err error) {
	defer catch("Close", &err)
	return g.s.Close()
}
