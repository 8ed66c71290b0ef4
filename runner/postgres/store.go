package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// ErrSchemaTooNew is returned by [Open] for a schema that a newer version
// of this package wrote: it is left untouched.
var ErrSchemaTooNew = errors.New("postgres store: the database's schema is newer than this version supports")

// Option configures [Open].
type Option interface {
	apply(*config)
}

type config struct {
	schema   string
	maxConns int32
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithSchema keeps the store's tables in schema name ("public" by
// default), which Open creates when it is missing.
func WithSchema(name string) Option {
	return optionFunc(func(c *config) { c.schema = name })
}

// WithMaxConns bounds the store's connection pool (pgxpool's default: the
// larger of 4 and the number of CPUs; or pool_max_conns in the DSN).
func WithMaxConns(n int32) Option {
	return optionFunc(func(c *config) { c.maxConns = n })
}

// Store is a [runner.Store] in a PostgreSQL database. Make one with
// [Open]; it is safe for concurrent use by goroutines and by processes on
// any machine sharing the database.
type Store struct {
	pool *pgxpool.Pool
	q    queries
}

var _ runner.Store = (*Store)(nil)

// Open connects to the database at dsn (a URL or key=value string, as
// pgx takes it), checks that it answers, and brings the store's schema up
// to date. It fails with [ErrSchemaTooNew] when the schema is newer than
// this package's, and with an error naming the host when the database
// cannot be reached.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{schema: "public"}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.schema == "" {
		return nil, errors.New("postgres store: empty schema name")
	}
	if cfg.maxConns < 0 {
		return nil, fmt.Errorf("postgres store: WithMaxConns(%d): negative", cfg.maxConns)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: DSN: %w", err)
	}
	if cfg.maxConns > 0 {
		pcfg.MaxConns = cfg.maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	where := fmt.Sprintf("%s:%d/%s", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database)
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: %s unreachable: %w", where, err)
	}
	s := &Store{pool: pool, q: newQueries(cfg.schema)}
	if err := s.migrate(ctx, cfg.schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: %s, schema %q: %w", where, cfg.schema, err)
	}
	return s, nil
}

// migrations are the schema's versions: migrations[i] takes it from
// version i to i+1. %[1]s is the schema's quoted name.
var migrations = []string{
	`CREATE TABLE %[1]s.runs (
		id                text PRIMARY KEY,
		pipeline          text NOT NULL,
		fingerprint       text NOT NULL,
		status            text NOT NULL,
		input             bytea,
		state             bytea,
		final_state       bytea,
		output            bytea,
		prompt_tokens     bigint NOT NULL DEFAULT 0,
		completion_tokens bigint NOT NULL DEFAULT 0,
		cost_usd          double precision NOT NULL DEFAULT 0,
		error             text NOT NULL DEFAULT '',
		pause_path        text, -- NULL: not paused
		pause_message     text,
		pause_schema      bytea,
		pause_snapshot    bytea,
		created_at        timestamptz NOT NULL,
		updated_at        timestamptz NOT NULL,
		owner             text NOT NULL DEFAULT '',
		lease_until       timestamptz, -- NULL: none
		last_seq          bigint NOT NULL DEFAULT 0
	);
	CREATE INDEX runs_created ON %[1]s.runs (created_at, id);
	CREATE INDEX runs_updated ON %[1]s.runs (updated_at);
	CREATE INDEX runs_orphans ON %[1]s.runs (lease_until) WHERE status = 'running';
	CREATE TABLE %[1]s.records (
		run_id text   NOT NULL REFERENCES %[1]s.runs (id) ON DELETE CASCADE,
		seq    bigint NOT NULL,
		record bytea  NOT NULL, -- the caudal.Record's JSON
		PRIMARY KEY (run_id, seq)
	);`,
}

func (s *Store) migrate(ctx context.Context, schema string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// One migrator per schema at a time, across processes.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('caudal.runner.migrate.' || $1))`, schema); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return err
	}
	sch := pgx.Identifier{schema}.Sanitize()
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+sch); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+sch+`.schema_version (version integer NOT NULL)`); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+sch+`.schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("%w: version %d, this package knows up to %d", ErrSchemaTooNew, have, len(migrations))
	}
	if have == len(migrations) {
		return nil
	}
	for i := have; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, fmt.Sprintf(migrations[i], sch)); err != nil {
			return fmt.Errorf("migration to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+sch+`.schema_version`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+sch+`.schema_version (version) VALUES ($1)`, len(migrations)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Close closes the store's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

const runColumns = `id, pipeline, fingerprint, status, input, state, final_state, output,
	prompt_tokens, completion_tokens, cost_usd, error,
	pause_path, pause_message, pause_schema, pause_snapshot,
	created_at, updated_at, owner, lease_until`

// queries are the store's statements, on its schema's tables.
type queries struct {
	runs, records                                        string // quoted table names
	create, get, exists, update, heartbeat, release, del string
	append, journal, claimInfo                           string
}

func newQueries(schema string) queries {
	runs := pgx.Identifier{schema, "runs"}.Sanitize()
	records := pgx.Identifier{schema, "records"}.Sanitize()
	return queries{
		runs: runs, records: records,
		create: `INSERT INTO ` + runs + ` (` + runColumns + `) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`,
		get:    `SELECT ` + runColumns + ` FROM ` + runs + ` WHERE id = $1`,
		exists: `SELECT EXISTS (SELECT 1 FROM ` + runs + ` WHERE id = $1)`,
		update: `UPDATE ` + runs + ` SET status = $1, final_state = $2, output = $3,
			prompt_tokens = $4, completion_tokens = $5, cost_usd = $6, error = $7,
			pause_path = $8, pause_message = $9, pause_schema = $10, pause_snapshot = $11, updated_at = COALESCE($12, now())
			WHERE id = $13 AND owner = $14`,
		heartbeat: `UPDATE ` + runs + ` SET lease_until = now() + $1 * interval '1 microsecond' WHERE id = $2 AND owner = $3`,
		release:   `UPDATE ` + runs + ` SET owner = '', lease_until = NULL WHERE id = $1 AND owner = $2`,
		del:       `DELETE FROM ` + runs + ` WHERE id = $1`,
		// The UPDATE locks the run's row: appends to one run are numbered
		// one after another.
		append: `WITH r AS (UPDATE ` + runs + ` SET last_seq = last_seq + 1 WHERE id = $1 AND owner = $2 RETURNING id, last_seq)
			INSERT INTO ` + records + ` (run_id, seq, record) SELECT id, last_seq, $3 FROM r RETURNING seq`,
		journal:   `SELECT seq, record FROM ` + records + ` WHERE run_id = $1 ORDER BY seq`,
		claimInfo: `SELECT status, owner, lease_until, lease_until >= now() FROM ` + runs + ` WHERE id = $1`,
	}
}

func notFound(id string) error {
	return fmt.Errorf("postgres store: run %q: %w", id, runner.ErrNotFound)
}

func leaseLost(id, owner string) error {
	return fmt.Errorf("postgres store: run %q, owner %q: %w", id, owner, runner.ErrLeaseLost)
}

func checkTTL(id string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("postgres store: run %q: lease TTL %v is not positive", id, ttl)
	}
	return nil
}

func statusStrings(sts []runner.Status) []string {
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = string(st)
	}
	return out
}

// scanRun reads a row of runColumns.
func scanRun(row pgx.Row) (*runner.Run, error) {
	var (
		r                   runner.Run
		status              string
		pausePath, pauseMsg *string
		pauseSchema, snap   []byte
		lease               *time.Time
	)
	err := row.Scan(&r.ID, &r.Pipeline, &r.Fingerprint, &status, &r.Input, &r.State, &r.FinalState, &r.Output,
		&r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.CostUSD, &r.Error,
		&pausePath, &pauseMsg, &pauseSchema, &snap, &r.CreatedAt, &r.UpdatedAt, &r.Owner, &lease)
	if err != nil {
		return nil, err
	}
	r.Status = runner.Status(status)
	if !r.Status.Valid() {
		return nil, fmt.Errorf("postgres store: run %q: unknown status %q: %w", r.ID, status, runner.ErrCorrupt)
	}
	if pausePath != nil {
		r.Pause = &runner.Pause{Path: *pausePath, Schema: pauseSchema, Snapshot: snap}
		if pauseMsg != nil {
			r.Pause.Message = *pauseMsg
		}
	}
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	if lease != nil {
		r.LeaseUntil = lease.UTC()
	}
	return &r, nil
}

// pauseArgs are the pause columns' values.
func pauseArgs(p *runner.Pause) []any {
	if p == nil {
		return []any{nil, nil, nil, nil}
	}
	return []any{p.Path, p.Message, p.Schema, p.Snapshot}
}

// nullTime is t, or NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Create inserts run; a zero CreatedAt is stored as now, a zero UpdatedAt
// as CreatedAt. It fails when a run with its ID exists (leaving that one
// alone), or when run.Status is not a [runner.Status].
func (s *Store) Create(ctx context.Context, run *runner.Run) error {
	if run == nil {
		return errors.New("postgres store: Create: nil run")
	}
	if !run.Status.Valid() {
		return fmt.Errorf("postgres store: create run %q: unknown status %q", run.ID, run.Status)
	}
	args := []any{
		run.ID, run.Pipeline, run.Fingerprint, string(run.Status), run.Input, run.State, run.FinalState, run.Output,
		run.Usage.PromptTokens, run.Usage.CompletionTokens, run.Usage.CostUSD, run.Error,
	}
	args = append(args, pauseArgs(run.Pause)...)
	created, updated := run.CreatedAt, run.UpdatedAt
	if created.IsZero() {
		created = time.Now()
	}
	if updated.IsZero() {
		updated = created
	}
	args = append(args, created, updated, run.Owner, nullTime(run.LeaseUntil))
	if _, err := s.pool.Exec(ctx, s.q.create, args...); err != nil {
		return fmt.Errorf("postgres store: create run %q: %w", run.ID, err)
	}
	return nil
}

// Get returns run id: [runner.ErrNotFound] when there is none,
// [runner.ErrCorrupt] when it cannot be read back.
func (s *Store) Get(ctx context.Context, id string) (*runner.Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, s.q.get, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres store: get run %q: %w", id, err)
	}
	return r, nil
}

// refused is the error of a conditional write to run id that changed
// nothing: ErrNotFound or ErrLeaseLost.
func (s *Store) refused(ctx context.Context, id, owner string) error {
	var ok bool
	if err := s.pool.QueryRow(ctx, s.q.exists, id).Scan(&ok); err != nil {
		return fmt.Errorf("postgres store: run %q: %w", id, err)
	}
	if !ok {
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
		return 0, fmt.Errorf("postgres store: run %q: record of step %q: %w", id, rec.Path, err)
	}
	if owner == "" {
		return 0, s.refused(ctx, id, owner)
	}
	var seq int64
	err = s.pool.QueryRow(ctx, s.q.append, id, owner, b).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, s.refused(ctx, id, owner)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres store: append to run %q: %w", id, err)
	}
	return seq, nil
}

// Journal returns run id's records in Seq order: [runner.ErrNotFound]
// when there is no such run, [runner.ErrCorrupt] when a record cannot be
// read back.
func (s *Store) Journal(ctx context.Context, id string) ([]runner.Entry, error) {
	rows, err := s.pool.Query(ctx, s.q.journal, id)
	if err != nil {
		return nil, fmt.Errorf("postgres store: journal of run %q: %w", id, err)
	}
	defer rows.Close()
	entries := []runner.Entry{}
	for rows.Next() {
		var (
			e runner.Entry
			b []byte
		)
		if err := rows.Scan(&e.Seq, &b); err != nil {
			return nil, fmt.Errorf("postgres store: journal of run %q: %w", id, err)
		}
		rec, err := runner.DecodeRecord(b)
		if err != nil {
			return nil, fmt.Errorf("postgres store: run %q, record %d: %w: %w", id, e.Seq, runner.ErrCorrupt, err)
		}
		e.Record = rec
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store: journal of run %q: %w", id, err)
	}
	if len(entries) == 0 { // no records, or no run?
		var ok bool
		if err := s.pool.QueryRow(ctx, s.q.exists, id).Scan(&ok); err != nil {
			return nil, fmt.Errorf("postgres store: journal of run %q: %w", id, err)
		}
		if !ok {
			return nil, notFound(id)
		}
	}
	return entries, nil
}

// Update writes run's Status, FinalState, Output, Usage, Error, Pause and
// UpdatedAt (the database's now() when zero) if owner holds its lease:
// [runner.ErrLeaseLost] when owner does not, [runner.ErrNotFound] when
// there is no such run.
func (s *Store) Update(ctx context.Context, run *runner.Run, owner string) error {
	if run == nil {
		return errors.New("postgres store: Update: nil run")
	}
	if !run.Status.Valid() {
		return fmt.Errorf("postgres store: update run %q: unknown status %q", run.ID, run.Status)
	}
	if owner == "" {
		return s.refused(ctx, run.ID, owner)
	}
	args := []any{string(run.Status), run.FinalState, run.Output, run.Usage.PromptTokens, run.Usage.CompletionTokens, run.Usage.CostUSD, run.Error}
	args = append(args, pauseArgs(run.Pause)...)
	args = append(args, nullTime(run.UpdatedAt), run.ID, owner)
	tag, err := s.pool.Exec(ctx, s.q.update, args...)
	if err != nil {
		return fmt.Errorf("postgres store: update run %q: %w", run.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return s.refused(ctx, run.ID, owner)
	}
	return nil
}

// Claim gives owner run id's lease for ttl from the database's now(),
// when its status is one of statuses (any, when none is given) and nobody
// else holds a live lease, and returns the run. It fails with
// [runner.ErrNotFound], [runner.ErrRunLocked] (checked first) or
// [runner.ErrWrongStatus].
func (s *Store) Claim(ctx context.Context, id, owner string, ttl time.Duration, statuses ...runner.Status) (*runner.Run, error) {
	if err := checkTTL(id, ttl); err != nil {
		return nil, err
	}
	if owner == "" {
		return nil, fmt.Errorf("postgres store: claim run %q: empty owner", id)
	}
	q := `UPDATE ` + s.q.runs + ` SET owner = $1, lease_until = now() + $2 * interval '1 microsecond'
		WHERE id = $3 AND (owner = '' OR owner = $1 OR lease_until IS NULL OR lease_until < now())`
	args := []any{owner, ttl.Microseconds(), id}
	if len(statuses) > 0 {
		q += ` AND status = ANY($4)`
		args = append(args, statusStrings(statuses))
	}
	for range 3 {
		r, err := scanRun(s.pool.QueryRow(ctx, q+` RETURNING `+runColumns, args...))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("postgres store: claim run %q: %w", id, err)
		}
		// Nothing changed: say why.
		var (
			status, holder string
			until          *time.Time
			live           *bool
		)
		err = s.pool.QueryRow(ctx, s.q.claimInfo, id).Scan(&status, &holder, &until, &live)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil, notFound(id)
		case err != nil:
			return nil, fmt.Errorf("postgres store: claim run %q: %w", id, err)
		case holder != "" && holder != owner && live != nil && *live:
			return nil, fmt.Errorf("postgres store: claim run %q: held by %q until %v: %w", id, holder, until, runner.ErrRunLocked)
		case len(statuses) > 0 && !slices.Contains(statuses, runner.Status(status)):
			return nil, fmt.Errorf("postgres store: claim run %q: status %s, want one of %v: %w", id, status, statuses, runner.ErrWrongStatus)
		}
		// The run changed between the two statements: try again.
	}
	return nil, fmt.Errorf("postgres store: claim run %q: contended: %w", id, runner.ErrRunLocked)
}

// Heartbeat extends owner's lease on run id to ttl from the database's
// now(): [runner.ErrLeaseLost] when owner does not hold it,
// [runner.ErrNotFound] when there is no such run.
func (s *Store) Heartbeat(ctx context.Context, id, owner string, ttl time.Duration) error {
	if err := checkTTL(id, ttl); err != nil {
		return err
	}
	if owner == "" {
		return s.refused(ctx, id, owner)
	}
	tag, err := s.pool.Exec(ctx, s.q.heartbeat, ttl.Microseconds(), id, owner)
	if err != nil {
		return fmt.Errorf("postgres store: heartbeat run %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
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
	if _, err := s.pool.Exec(ctx, s.q.release, id, owner); err != nil {
		return fmt.Errorf("postgres store: release run %q: %w", id, err)
	}
	return nil
}

// Orphans returns the IDs of the running runs whose lease expired (or that
// nobody holds), oldest first, at most limit (0: all).
func (s *Store) Orphans(ctx context.Context, limit int) ([]string, error) {
	q := `SELECT id FROM ` + s.q.runs + ` WHERE status = 'running' AND (lease_until IS NULL OR lease_until < now()) ORDER BY created_at, id`
	var args []any
	if limit > 0 {
		q += ` LIMIT $1`
		args = append(args, limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres store: orphans: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres store: orphans: %w", err)
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
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(f.Status) > 0 {
		where = append(where, `status = ANY(`+arg(statusStrings(f.Status))+`)`)
	}
	if f.Pipeline != "" {
		where = append(where, `pipeline = `+arg(f.Pipeline))
	}
	if !f.After.IsZero() {
		where = append(where, `created_at >= `+arg(f.After))
	}
	if !f.Before.IsZero() {
		where = append(where, `created_at < `+arg(f.Before))
	}
	q := `SELECT ` + runColumns + ` FROM ` + s.q.runs
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY created_at DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres store: list: %w", err)
	}
	defer rows.Close()
	var runs []*runner.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres store: list: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store: list: %w", err)
	}
	return runs, nil
}

// Delete removes run id and its journal: [runner.ErrNotFound] when there
// is no such run.
func (s *Store) Delete(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, s.q.del, id)
	if err != nil {
		return fmt.Errorf("postgres store: delete run %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(id)
	}
	return nil
}

// DeleteBefore removes the runs in one of statuses (none: every status but
// running) last updated before t, with their journals, and returns how
// many.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time, statuses ...runner.Status) (int, error) {
	q := `DELETE FROM ` + s.q.runs + ` WHERE updated_at < $1`
	args := []any{t}
	if len(statuses) == 0 {
		q += ` AND status <> 'running'`
	} else {
		q += ` AND status = ANY($2)`
		args = append(args, statusStrings(statuses))
	}
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("postgres store: delete runs before %v: %w", t, err)
	}
	return int(tag.RowsAffected()), nil
}
