package runner_test

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/postgres"
	"github.com/caudal-go/caudal/runner/sqlite"
)

// The crash tests' child processes are this test binary, re-executed to
// run TestCrashChild alone, with crashModeEnv naming what to do and these
// variables saying on what.
const (
	crashModeEnv   = "CAUDAL_CRASH_CHILD"  // "start" or "recover"
	crashStoreEnv  = "CAUDAL_CRASH_STORE"  // "sqlite" or "postgres"
	crashWhereEnv  = "CAUDAL_CRASH_WHERE"  // the SQLite file, or the PostgreSQL DSN
	crashSchemaEnv = "CAUDAL_CRASH_SCHEMA" // the PostgreSQL schema
	crashRunEnv    = "CAUDAL_CRASH_RUN"    // the run's ID
	crashGenEnv    = "CAUDAL_CRASH_GEN"    // the child's generation: 0 starts the run, later ones recover it
	crashLedgerEnv = "CAUDAL_CRASH_LEDGER" // the ledger file
)

// crashLease is the children's lease: a killed child's run is recovered
// once it expired, and a live child renews it every crashLease/3.
const crashLease = 300 * time.Millisecond

// The PostgreSQL server of the tests: CAUDAL_TEST_POSTGRES, or the local
// server CI starts. When it cannot be reached the tests fail, unless
// CAUDAL_TEST_POSTGRES_SKIP=1 says to skip them.
const (
	pgDSNEnv     = "CAUDAL_TEST_POSTGRES"
	pgSkipEnv    = "CAUDAL_TEST_POSTGRES_SKIP"
	pgDefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// pgDSN returns the tests' DSN once the server answers, and fails (or
// skips, when told to) the test or benchmark when it does not.
func pgDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(pgDSNEnv)
	if dsn == "" {
		dsn = pgDefaultDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		err = conn.Ping(ctx)
		_ = conn.Close(ctx)
	}
	if err != nil {
		if os.Getenv(pgSkipEnv) == "1" {
			tb.Skipf("PostgreSQL at %s unreachable (%v); skipped because %s=1", dsn, err, pgSkipEnv)
		}
		tb.Fatalf("PostgreSQL at %s is unreachable: %v\n"+
			"Start it (CI: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), "+
			"point %s at another server, or set %s=1 to skip these tests.", dsn, err, pgDSNEnv, pgSkipEnv)
	}
	return dsn
}

// pgSchema returns a fresh schema name, dropped (with everything in it)
// when the test or benchmark ends.
func pgSchema(tb testing.TB, dsn string) string {
	tb.Helper()
	var b [6]byte
	_, _ = crand.Read(b[:])
	name := "caudal_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openCrashStore opens the store kind names at where (and schema); app
// names the PostgreSQL connections (their application_name).
func openCrashStore(ctx context.Context, kind, where, schema, app string) (runner.Store, error) {
	switch kind {
	case "sqlite":
		return sqlite.Open(where)
	case "postgres":
		if app != "" {
			where = withAppName(where, app)
		}
		return postgres.Open(ctx, where, postgres.WithSchema(schema), postgres.WithMaxConns(4))
	}
	return nil, fmt.Errorf("unknown store %q", kind)
}

// withAppName returns dsn (a URL or key=value string) setting the
// connections' application_name to app.
func withAppName(dsn, app string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " application_name=" + app
}

// crashAppName is the application_name of a child's PostgreSQL
// connections, by which the parent waits for a killed child's backends to
// finish (see crashSetup.settle).
func crashAppName(run, gen string) string { return "caudal-crash-" + run + "-" + gen }

// crashAgent is an agent step whose output is its name and a digest of
// its input — the same for the same input in any process — and which
// makes one side effect: a line "<run> <generation> <output>" appended to
// the ledger, between two short sleeps (the model's latency, so that kills
// land mid-run, before and after the side effect). It writes its output to the state under its name. A
// completed instance's output is in its journal record, so a ledger line
// is traced to its instance path through the journal (see crashCheck).
func crashAgent(led *os.File, run, gen, name string, fanOut int) caudal.Step {
	return caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
		sum := sha256.Sum256([]byte(fmt.Sprint(in)))
		out := name + "<" + hex.EncodeToString(sum[:6]) + ">"
		if err := sleepCtx(ctx, time.Duration(2+rand.IntN(10))*time.Millisecond); err != nil {
			return caudal.Reply{}, err
		}
		// One write(2) with O_APPEND: the line is in the file, whole, or
		// not at all, whenever a SIGKILL lands.
		if _, err := led.WriteString(run + " " + gen + " " + out + "\n"); err != nil {
			return caudal.Reply{}, fmt.Errorf("ledger: %w", err)
		}
		// The side effect is made, the instance not yet recorded: a kill
		// now makes the instance run again (the at-least-once edge).
		if err := sleepCtx(ctx, time.Duration(3+rand.IntN(10))*time.Millisecond); err != nil {
			return caudal.Reply{}, err
		}
		caudal.StateFrom(ctx).Set(name, out)
		reply := caudal.Reply{Output: any(out), Usage: caudal.Usage{PromptTokens: 10, CompletionTokens: 3, CostUSD: 0.001}}
		if fanOut > 0 {
			items := make([]any, fanOut)
			for i := range items {
				items[i] = out + "/" + strconv.Itoa(i)
			}
			reply.Output = items
		}
		return reply, nil
	}))
}

// crashPipeline is the crash tests' pipeline: a sequence holding a
// parallel step (one branch a sequence), a loop of three iterations, a
// step fanning out to six items and a map over them, three at once.
func crashPipeline(led *os.File, run, gen string) caudal.Step {
	a := func(name string) caudal.Step { return crashAgent(led, run, gen, name, 0) }
	return caudal.Seq("crash",
		a("prep"),
		caudal.Parallel("fan",
			caudal.Branch("a", a("a")),
			caudal.Branch("b", caudal.Seq("bs", a("b1"), a("b2")))),
		caudal.Loop("loop", a("iter"), caudal.WithMaxIterations(3)),
		crashAgent(led, run, gen, "split", 6),
		caudal.Map("each", a("item"), caudal.WithConcurrency(3)),
		a("last"),
	)
}

// sleepCtx sleeps for d, or until ctx is done (its cause).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// TestCrashChild is the crash tests' child process (see crash_test.go);
// it is skipped unless the parent set crashModeEnv. It starts (generation
// 0) or recovers the run, and ends with the run completed; the parent
// kills it with SIGKILL before that, mostly.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashModeEnv)
	if mode == "" {
		t.Skip("the crash tests' child process; run by TestCrash*")
	}
	ctx := t.Context()
	id, gen := os.Getenv(crashRunEnv), os.Getenv(crashGenEnv)
	led, err := os.OpenFile(os.Getenv(crashLedgerEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = led.Close() }()
	s, err := openCrashStore(ctx, os.Getenv(crashStoreEnv), os.Getenv(crashWhereEnv), os.Getenv(crashSchemaEnv), crashAppName(id, gen))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ex, err := caudal.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ex.Close() }()
	r, err := runner.New(ex, s, runner.WithOwner(crashOwner(gen)), runner.WithLease(crashLease))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Register("crash", crashPipeline(led, id, gen)); err != nil {
		t.Fatal(err)
	}
	var run *runner.Run
	switch mode {
	case "start":
		run, err = r.Start(ctx, "crash", "in", runner.WithRunID(id))
	case "recover":
		run, err = recoverRun(ctx, r, s, id)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		t.Fatalf("generation %s, %s: %v", gen, mode, err)
	}
	if run.Status != runner.StatusCompleted {
		t.Fatalf("generation %s, %s: run %s is %s (%s); want completed", gen, mode, id, run.Status, run.Error)
	}
}

// crashOwner is the lease owner of a generation's child.
func crashOwner(gen string) string { return "gen-" + gen }

// recoverRun calls r.Recover until it continued run id — the dead
// child's lease must expire first — and returns the run as it stopped.
func recoverRun(ctx context.Context, r *runner.Runner, s runner.Store, id string) (*runner.Run, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		runs, err := r.Recover(ctx)
		if err != nil {
			return nil, err
		}
		for _, run := range runs {
			if run.ID == id {
				return run, nil
			}
		}
		run, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if run.Status != runner.StatusRunning {
			return nil, fmt.Errorf("run %s is %s, not running: nothing to recover", id, run.Status)
		}
		time.Sleep(crashLease / 10)
	}
	return nil, fmt.Errorf("run %s: not recovered within 30s", id)
}
