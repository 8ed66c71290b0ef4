package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caudal-go/caudal/runner/postgres"
)

// The tests' database: CAUDAL_TEST_POSTGRES, or the local server CI
// starts. When it cannot be reached the tests fail, unless
// CAUDAL_TEST_POSTGRES_SKIP=1 says to skip them.
const (
	dsnEnv     = "CAUDAL_TEST_POSTGRES"
	skipEnv    = "CAUDAL_TEST_POSTGRES_SKIP"
	defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

func testDSN() string {
	if dsn := os.Getenv(dsnEnv); dsn != "" {
		return dsn
	}
	return defaultDSN
}

// requireDB returns the tests' DSN once the server answers, and fails (or
// skips, when told to) the test when it does not.
func requireDB(tb testing.TB) string {
	tb.Helper()
	dsn := testDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		err = conn.Ping(ctx)
		_ = conn.Close(ctx)
	}
	if err != nil {
		if os.Getenv(skipEnv) == "1" {
			tb.Skipf("PostgreSQL at %s unreachable (%v); skipped because %s=1", dsn, err, skipEnv)
		}
		tb.Fatalf("PostgreSQL at %s is unreachable: %v\n"+
			"Start it (CI: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), "+
			"point %s at another server, or set %s=1 to skip these tests.", dsn, err, dsnEnv, skipEnv)
	}
	return dsn
}

// newSchema returns a fresh schema name, dropped (with everything in it)
// when the test ends.
func newSchema(tb testing.TB, dsn string) string {
	tb.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
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

// openStore opens a store on a schema of its own.
func openStore(tb testing.TB) (*postgres.Store, string) {
	tb.Helper()
	dsn := requireDB(tb)
	schema := newSchema(tb, dsn)
	s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(schema), postgres.WithMaxConns(8))
	if err != nil {
		tb.Fatalf("Open = %v", err)
	}
	return s, schema
}

// rawExec runs a statement on the tests' database, behind the store's back.
func rawExec(tb testing.TB, query string, args ...any) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, query, args...); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}
