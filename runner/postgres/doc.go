// Package postgres is a [runner.Store] in a PostgreSQL database: the store
// for runners in several processes, on several machines, sharing their
// runs. It uses github.com/jackc/pgx/v5 (a pgxpool.Pool).
//
//	s, err := postgres.Open(ctx, "postgres://app@db.internal/app", postgres.WithSchema("caudal"))
//	if err != nil { … }
//	defer s.Close()
//
// # Leases
//
// A run is owned through a lease held in its row: an owner and the time
// its lease runs until. Every write that needs the lease — Append, Update,
// Heartbeat — is one statement that checks the owner and writes, and Claim
// is one UPDATE … WHERE (free, own or expired) … RETURNING. PostgreSQL
// locks the row for the UPDATE and re-checks the condition on the row as
// the first claimant left it, so of two claims at once — from any two
// machines — exactly one wins. Lease times are the database's clock
// (now()), never a client's, so clients' clocks need not agree.
//
// # Schema
//
// Tables runs, records (the journals, each record as its JSON in a bytea)
// and schema_version live in one schema ("public" by default;
// [WithSchema]), created when missing. Open applies the migrations the
// schema lacks in one transaction, under an advisory lock, so that
// processes starting together migrate once; a schema newer than this
// package knows fails with [ErrSchemaTooNew] and is not written.
//
// Its checkpoint cost is measured by BenchmarkCheckpoint/store=postgres.
package postgres
