package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// ErrSchemaTooNew is returned by [Open] for a file whose schema a newer
// version of this package wrote: it is left untouched.
var ErrSchemaTooNew = errors.New("sqlite store: the database's schema is newer than this version supports")

// Option configures [Open].
type Option interface {
	apply(*config)
}

type config struct {
	busyTimeout time.Duration
	syncFull    bool
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithBusyTimeout sets how long a statement waits for another connection's
// write lock before failing (5s by default).
func WithBusyTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.busyTimeout = d })
}

// WithSynchronousFull fsyncs every commit (synchronous=FULL): a commit
// survives a power loss too, at several times the cost of the default
// synchronous=NORMAL (see the package doc).
func WithSynchronousFull() Option {
	return optionFunc(func(c *config) { c.syncFull = true })
}

// Store is a [runner.Store] in a SQLite file. Make one with [Open]; it is
// safe for concurrent use by goroutines and by processes sharing the file.
type Store struct {
	db   *sql.DB
	path string
	now  func() time.Time
}

var _ runner.Store = (*Store)(nil)

// Open opens the SQLite database at path, creating the file if there is
// none, and brings its schema up to date. It fails with
// [ErrSchemaTooNew] when the file's schema is newer than this package's,
// and with an error naming path when the file cannot be opened or is not
// a database.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := config{busyTimeout: 5 * time.Second}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	switch {
	case path == "":
		return nil, errors.New("sqlite store: empty path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return nil, fmt.Errorf("sqlite store: path %q: want a file name (each connection would see its own database)", path)
	case strings.ContainsRune(path, '?'):
		return nil, fmt.Errorf("sqlite store: path %q: a file name with '?' is not supported", path)
	case cfg.busyTimeout < 0:
		return nil, fmt.Errorf("sqlite store: negative busy timeout %v", cfg.busyTimeout)
	}
	syncMode := "NORMAL"
	if cfg.syncFull {
		syncMode = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+syncMode+")")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite store: open %q: %w", path, err)
	}
	s := &Store{db: db, path: path, now: time.Now}
	if err := s.migrate(context.Background()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite store: open %q: %w", path, err)
	}
	return s, nil
}

// migrations are the schema's versions: migrations[i] takes it from
// version i to i+1.
var migrations = []string{
	`CREATE TABLE runs (
		id                TEXT PRIMARY KEY,
		pipeline          TEXT NOT NULL,
		fingerprint       TEXT NOT NULL,
		status            TEXT NOT NULL,
		input             BLOB,
		state             BLOB,
		final_state       BLOB,
		output            BLOB,
		prompt_tokens     INTEGER NOT NULL DEFAULT 0,
		completion_tokens INTEGER NOT NULL DEFAULT 0,
		cost_usd          REAL    NOT NULL DEFAULT 0,
		error             TEXT    NOT NULL DEFAULT '',
		pause_path        TEXT,   -- NULL: not paused
		pause_message     TEXT,
		pause_schema      BLOB,
		pause_snapshot    BLOB,
		created_at        INTEGER NOT NULL, -- Unix microseconds
		updated_at        INTEGER NOT NULL,
		owner             TEXT    NOT NULL DEFAULT '',
		lease_until       INTEGER NOT NULL DEFAULT 0, -- 0: none
		last_seq          INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX runs_created ON runs (created_at, id);
	CREATE INDEX runs_updated ON runs (updated_at);
	CREATE INDEX runs_orphans ON runs (status, lease_until);
	CREATE TABLE records (
		run_id TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
		seq    INTEGER NOT NULL,
		record BLOB    NOT NULL, -- the caudal.Record's JSON
		PRIMARY KEY (run_id, seq)
	) WITHOUT ROWID;`,
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil) // IMMEDIATE (_txlock): one migrator at a time
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	var v sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	have := int(v.Int64)
	if have > len(migrations) {
		return fmt.Errorf("%w: version %d, this package knows up to %d", ErrSchemaTooNew, have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration to version %d: %w", i+1, err)
		}
	}
	if have < len(migrations) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, len(migrations)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// micros is t in Unix microseconds; 0 for the zero time.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func notFound(id string) error { return fmt.Errorf("sqlite store: run %q: %w", id, runner.ErrNotFound) }

func leaseLost(id, owner string) error {
	return fmt.Errorf("sqlite store: run %q, owner %q: %w", id, owner, runner.ErrLeaseLost)
}

func checkTTL(id string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("sqlite store: run %q: lease TTL %v is not positive", id, ttl)
	}
	return nil
}

const runColumns = `id, pipeline, fingerprint, status, input, state, final_state, output,
	prompt_tokens, completion_tokens, cost_usd, error,
	pause_path, pause_message, pause_schema, pause_snapshot,
	created_at, updated_at, owner, lease_until`

type scanner interface{ Scan(dest ...any) error }

// scanRun reads a row of runColumns.
func scanRun(sc scanner) (*runner.Run, error) {
	var (
		r                  runner.Run
		status             string
		pausePath, pauseMs sql.NullString
		pauseSchema, snap  []byte
		created, updated   int64
		lease              int64
	)
	err := sc.Scan(&r.ID, &r.Pipeline, &r.Fingerprint, &status, &r.Input, &r.State, &r.FinalState, &r.Output,
		&r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.CostUSD, &r.Error,
		&pausePath, &pauseMs, &pauseSchema, &snap, &created, &updated, &r.Owner, &lease)
	if err != nil {
		return nil, err
	}
	r.Status = runner.Status(status)
	if !r.Status.Valid() {
		return nil, fmt.Errorf("sqlite store: run %q: unknown status %q: %w", r.ID, status, runner.ErrCorrupt)
	}
	if pausePath.Valid {
		r.Pause = &runner.Pause{Path: pausePath.String, Message: pauseMs.String, Schema: pauseSchema, Snapshot: snap}
	}
	r.CreatedAt, r.UpdatedAt, r.LeaseUntil = fromMicros(created), fromMicros(updated), fromMicros(lease)
	return &r, nil
}

// pauseArgs are the pause columns' values.
func pauseArgs(p *runner.Pause) []any {
	if p == nil {
		return []any{nil, nil, nil, nil}
	}
	return []any{p.Path, p.Message, p.Schema, p.Snapshot}
}

// Create inserts run; a zero CreatedAt is stored as now, a zero UpdatedAt
// as CreatedAt. It fails when a run with its ID exists (leaving that one
// alone), or when run.Status is not a [runner.Status].
func (s *Store) Create(ctx context.Context, run *runner.Run) error {
	if run == nil {
		return errors.New("sqlite store: Create: nil run")
	}
	if !run.Status.Valid() {
		return fmt.Errorf("sqlite store: create run %q: unknown status %q", run.ID, run.Status)
	}
	args := []any{
		run.ID, run.Pipeline, run.Fingerprint, string(run.Status), run.Input, run.State, run.FinalState, run.Output,
		run.Usage.PromptTokens, run.Usage.CompletionTokens, run.Usage.CostUSD, run.Error,
	}
	args = append(args, pauseArgs(run.Pause)...)
	created, updated := run.CreatedAt, run.UpdatedAt
	if created.IsZero() {
		created = s.now()
	}
	if updated.IsZero() {
		updated = created
	}
	args = append(args, micros(created), micros(updated), run.Owner, micros(run.LeaseUntil))
	_, err := s.db.ExecContext(ctx, `INSERT INTO runs (`+runColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, args...)
	if err != nil {
		return fmt.Errorf("sqlite store: create run %q: %w", run.ID, err)
	}
	return nil
}

// Get returns run id: [runner.ErrNotFound] when there is none,
// [runner.ErrCorrupt] when it cannot be read back.
func (s *Store) Get(ctx context.Context, id string) (*runner.Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite store: get run %q: %w", id, err)
	}
	return r, nil
}

// exists tells ErrNotFound from ErrLeaseLost after a conditional write
// changed nothing.
func (s *Store) exists(ctx context.Context, id string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM runs WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlite store: run %q: %w", id, err)
	}
	return true, nil
}

// refused is the error of a conditional write to run id that changed
// nothing: ErrNotFound or ErrLeaseLost.
func (s *Store) refused(ctx context.Context, id, owner string) error {
	ok, err := s.exists(ctx, id)
	switch {
	case err != nil:
		return err
	case !ok:
		return notFound(id)
	}
	return leaseLost(id, owner)
}

// Append adds rec to run id's journal if owner holds its lease, and
// returns its Seq: [runner.ErrLeaseLost] when owner does not,
// [runner.ErrNotFound] when there is no such run, an error naming the
// step when rec does not encode to JSON.
func (s *Store) Append(ctx context.Context, id, owner string, rec caudal.Record) (int64, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("sqlite store: run %q: record of step %q: %w", id, rec.Path, err)
	}
	if owner == "" {
		return 0, s.refused(ctx, id, owner)
	}
	tx, err := s.db.BeginTx(ctx, nil) // IMMEDIATE: the write lock from the start
	if err != nil {
		return 0, fmt.Errorf("sqlite store: append to run %q: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	var seq int64
	err = tx.QueryRowContext(ctx, `UPDATE runs SET last_seq = last_seq + 1 WHERE id = ? AND owner = ? RETURNING last_seq`, id, owner).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		_ = tx.Rollback()
		return 0, s.refused(ctx, id, owner)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite store: append to run %q: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO records (run_id, seq, record) VALUES (?, ?, ?)`, id, seq, b); err != nil {
		return 0, fmt.Errorf("sqlite store: append to run %q: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite store: append to run %q: %w", id, err)
	}
	return seq, nil
}

// Journal returns run id's records in Seq order: [runner.ErrNotFound]
// when there is no such run, [runner.ErrCorrupt] when a record cannot be
// read back.
func (s *Store) Journal(ctx context.Context, id string) ([]runner.Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, record FROM records WHERE run_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: journal of run %q: %w", id, err)
	}
	defer func() { _ = rows.Close() }()
	entries := []runner.Entry{}
	for rows.Next() {
		var (
			e runner.Entry
			b []byte
		)
		if err := rows.Scan(&e.Seq, &b); err != nil {
			return nil, fmt.Errorf("sqlite store: journal of run %q: %w", id, err)
		}
		rec, err := runner.DecodeRecord(b)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: run %q, record %d: %w: %w", id, e.Seq, runner.ErrCorrupt, err)
		}
		e.Record = rec
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: journal of run %q: %w", id, err)
	}
	if len(entries) == 0 { // no records, or no run?
		if ok, err := s.exists(ctx, id); err != nil {
			return nil, err
		} else if !ok {
			return nil, notFound(id)
		}
	}
	return entries, nil
}

// Update writes run's Status, FinalState, Output, Usage, Error, Pause and
// UpdatedAt if owner holds its lease: [runner.ErrLeaseLost] when owner
// does not, [runner.ErrNotFound] when there is no such run.
func (s *Store) Update(ctx context.Context, run *runner.Run, owner string) error {
	if run == nil {
		return errors.New("sqlite store: Update: nil run")
	}
	if !run.Status.Valid() {
		return fmt.Errorf("sqlite store: update run %q: unknown status %q", run.ID, run.Status)
	}
	if owner == "" {
		return s.refused(ctx, run.ID, owner)
	}
	updated := run.UpdatedAt
	if updated.IsZero() {
		updated = s.now()
	}
	args := []any{string(run.Status), run.FinalState, run.Output, run.Usage.PromptTokens, run.Usage.CompletionTokens, run.Usage.CostUSD, run.Error}
	args = append(args, pauseArgs(run.Pause)...)
	args = append(args, micros(updated), run.ID, owner)
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET status = ?, final_state = ?, output = ?,
		prompt_tokens = ?, completion_tokens = ?, cost_usd = ?, error = ?,
		pause_path = ?, pause_message = ?, pause_schema = ?, pause_snapshot = ?, updated_at = ?
		WHERE id = ? AND owner = ?`, args...)
	if err != nil {
		return fmt.Errorf("sqlite store: update run %q: %w", run.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite store: update run %q: %w", run.ID, err)
	} else if n == 0 {
		return s.refused(ctx, run.ID, owner)
	}
	return nil
}

// Claim gives owner run id's lease for ttl, when its status is one of
// statuses (any, when none is given) and nobody else holds a live lease,
// and returns the run. It fails with [runner.ErrNotFound],
// [runner.ErrRunLocked] (checked first) or [runner.ErrWrongStatus].
func (s *Store) Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...runner.Status) (*runner.Run, error) {
	if err := checkTTL(id, ttl); err != nil {
		return nil, err
	}
	if owner == "" {
		return nil, fmt.Errorf("sqlite store: claim run %q: empty owner", id)
	}
	for range 3 {
		now := s.now()
		q := `UPDATE runs SET owner = ?, lease_until = ? WHERE id = ? AND (owner = '' OR owner = ? OR lease_until < ?)`
		args := []any{owner, micros(now.Add(ttl)), id, owner, micros(now)}
		if len(statuses) > 0 {
			q += ` AND status IN (?` + strings.Repeat(`,?`, len(statuses)-1) + `)`
			for _, st := range statuses {
				args = append(args, string(st))
			}
		}
		r, err := scanRun(s.db.QueryRowContext(ctx, q+` RETURNING `+runColumns, args...))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("sqlite store: claim run %q: %w", id, err)
		}
		// Nothing changed: say why.
		var (
			status, holder string
			until          int64
		)
		err = s.db.QueryRowContext(ctx, `SELECT status, owner, lease_until FROM runs WHERE id = ?`, id).Scan(&status, &holder, &until)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, notFound(id)
		case err != nil:
			return nil, fmt.Errorf("sqlite store: claim run %q: %w", id, err)
		case holder != "" && holder != owner && until >= micros(s.now()):
			return nil, fmt.Errorf("sqlite store: claim run %q: held by %q until %v: %w", id, holder, fromMicros(until), runner.ErrRunLocked)
		case len(statuses) > 0 && !slices.Contains(statuses, runner.Status(status)):
			return nil, fmt.Errorf("sqlite store: claim run %q: status %s, want one of %v: %w", id, status, statuses, runner.ErrWrongStatus)
		}
		// The run changed between the two statements: try again.
	}
	return nil, fmt.Errorf("sqlite store: claim run %q: contended: %w", id, runner.ErrRunLocked)
}

// Heartbeat extends owner's lease on run id to ttl from now:
// [runner.ErrLeaseLost] when owner does not hold it, [runner.ErrNotFound]
// when there is no such run.
func (s *Store) Heartbeat(ctx context.Context, id, owner string, ttl time.Duration) error {
	if err := checkTTL(id, ttl); err != nil {
		return err
	}
	if owner == "" {
		return s.refused(ctx, id, owner)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ?`, micros(s.now().Add(ttl)), id, owner)
	if err != nil {
		return fmt.Errorf("sqlite store: heartbeat run %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite store: heartbeat run %q: %w", id, err)
	} else if n == 0 {
		return s.refused(ctx, id, owner)
	}
	return nil
}

// Release gives up owner's lease on run id; a no-op when owner does not
// hold it, or there is no such run.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	if owner == "" {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE runs SET owner = '', lease_until = 0 WHERE id = ? AND owner = ?`, id, owner); err != nil {
		return fmt.Errorf("sqlite store: release run %q: %w", id, err)
	}
	return nil
}

// Orphans returns the IDs of the running runs whose lease expired (or that
// nobody holds), oldest first, at most limit (0: all).
func (s *Store) Orphans(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM runs WHERE status = ? AND lease_until < ? ORDER BY created_at, id LIMIT ?`,
		string(runner.StatusRunning), micros(s.now()), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: orphans: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite store: orphans: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: orphans: %w", err)
	}
	return ids, nil
}

// List returns the runs f selects, newest first: [runner.ErrCorrupt] when
// one cannot be read back.
func (s *Store) List(ctx context.Context, f runner.Filter) ([]*runner.Run, error) {
	var (
		where []string
		args  []any
	)
	if len(f.Status) > 0 {
		where = append(where, `status IN (?`+strings.Repeat(`,?`, len(f.Status)-1)+`)`)
		for _, st := range f.Status {
			args = append(args, string(st))
		}
	}
	if f.Pipeline != "" {
		where = append(where, `pipeline = ?`)
		args = append(args, f.Pipeline)
	}
	if !f.After.IsZero() {
		where = append(where, `created_at >= ?`)
		args = append(args, micros(f.After))
	}
	if !f.Before.IsZero() {
		where = append(where, `created_at < ?`)
		args = append(args, micros(f.Before))
	}
	q := `SELECT ` + runColumns + ` FROM runs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: list: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var runs []*runner.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: list: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: list: %w", err)
	}
	return runs, nil
}

// Delete removes run id and its journal: [runner.ErrNotFound] when there
// is no such run.
func (s *Store) Delete(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlite store: delete run %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite store: delete run %q: %w", id, err)
	} else if n == 0 {
		return notFound(id)
	}
	return nil
}

// DeleteBefore removes the runs in one of statuses (none: every status but
// running) last updated before t, with their journals, and returns how
// many.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time, statuses ...runner.Status) (int, error) {
	q := `DELETE FROM runs WHERE updated_at < ?`
	args := []any{micros(t)}
	if len(statuses) == 0 {
		q += ` AND status <> ?`
		args = append(args, string(runner.StatusRunning))
	} else {
		q += ` AND status IN (?` + strings.Repeat(`,?`, len(statuses)-1) + `)`
		for _, st := range statuses {
			args = append(args, string(st))
		}
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("sqlite store: delete runs before %v: %w", t, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite store: delete runs before %v: %w", t, err)
	}
	return int(n), nil
}
