package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/postgres"
	"github.com/caudal-go/caudal/runner/storetest"
)

func TestConformance(t *testing.T) {
	schemas := map[runner.Store]string{} // only touched on the test goroutine
	open := func(t *testing.T) runner.Store {
		s, schema := openStore(t)
		schemas[s] = schema
		return s
	}
	storetest.Run(t, open,
		storetest.WithCorruptRecord(func(t *testing.T, s runner.Store, id string) {
			rawExec(t, `UPDATE `+pgx.Identifier{schemas[s], "records"}.Sanitize()+` SET record = $1 WHERE run_id = $2`, []byte(`{"path": 5`), id)
		}),
		storetest.WithCorruptRun(func(t *testing.T, s runner.Store, id string) {
			rawExec(t, `UPDATE `+pgx.Identifier{schemas[s], "runs"}.Sanitize()+` SET status = 'exploded' WHERE id = $1`, id)
		}),
	)
}

func TestSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	s, schema := openStore(t)
	_ = s.Close()
	rawExec(t, `UPDATE `+pgx.Identifier{schema, "schema_version"}.Sanitize()+` SET version = version + 1`)
	if s, err := postgres.Open(ctx, testDSN(), postgres.WithSchema(schema)); !errors.Is(err, postgres.ErrSchemaTooNew) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("Open of a newer schema = %v; want ErrSchemaTooNew", err)
	}
}

func TestOpenTwiceMigratesOnce(t *testing.T) {
	ctx := context.Background()
	dsn := requireDB(t)
	schema := newSchema(t, dsn)
	errs := make(chan error, 4)
	stores := make(chan *postgres.Store, 4)
	for range 4 {
		go func() {
			defer func() {
				if v := recover(); v != nil {
					errs <- errors.New("panic in Open")
				}
			}()
			s, err := postgres.Open(ctx, dsn, postgres.WithSchema(schema), postgres.WithMaxConns(2))
			if err == nil {
				stores <- s
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open = %v", err)
		}
	}
	close(stores)
	for s := range stores {
		_ = s.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		dsn  string
		opts []postgres.Option
	}{
		{"bad DSN", "postgres://%zz", nil},
		{"nobody listening", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", nil},
		{"empty schema", testDSN(), []postgres.Option{postgres.WithSchema("")}},
		{"negative pool", testDSN(), []postgres.Option{postgres.WithMaxConns(-1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := postgres.Open(ctx, tt.dsn, tt.opts...)
			if err == nil {
				_ = s.Close()
				t.Fatalf("Open(%q) = nil error; want one", tt.dsn)
			}
		})
	}
}
