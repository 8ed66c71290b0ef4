// Package sqlite is a [runner.Store] in one SQLite file, such as
// ./caudal.db: the embedded default for durable runs. It uses
// modernc.org/sqlite, a pure-Go SQLite, so it needs no C compiler.
//
//	s, err := sqlite.Open("caudal.db")
//	if err != nil { … }
//	defer s.Close()
//
// # Settings, and why
//
// Every connection runs with these pragmas:
//
//   - journal_mode=WAL: readers never block the writer nor the writer
//     readers, and a commit is one append to the log.
//   - busy_timeout (5s; [WithBusyTimeout]): a writer waits for another
//     rather than failing with SQLITE_BUSY. Every write is one statement,
//     or a transaction begun IMMEDIATE, so waiting always ends.
//   - synchronous=NORMAL: in WAL mode a commit is not fsynced, the log is
//     at the next checkpoint. A process that crashes or is killed loses
//     nothing (the log is in the operating system's hands); a power loss
//     or a kernel crash may lose the last commits, never the database's
//     consistency. For a runner that means at worst a step instance that
//     completed just before the power went out runs again: the
//     at-least-once edge a durable engine has anyway. It makes a
//     checkpoint several times cheaper than FULL; [WithSynchronousFull]
//     fsyncs every commit for those who want power-loss durability too.
//   - foreign_keys=ON: a run's journal goes with it.
//
// # Several processes
//
// The file may be shared by processes on one machine (not over a network
// file system: SQLite's locks do not hold there). A lease is taken by a
// conditional UPDATE — owner free, own or expired, status one of those
// asked — which SQLite runs under its single write lock, so of two claims
// exactly one wins. Lease times come from the clock of the machine, which
// the processes share.
//
// # Schema
//
// Tables runs, records (the journals) and schema_version. Open applies the
// migrations the file lacks, in one transaction; a file whose schema is
// newer than this package knows is refused with [ErrSchemaTooNew], never
// written. Records are stored as their JSON; times as Unix microseconds.
//
// Its checkpoint cost is measured by BenchmarkCheckpoint/store=sqlite.
package sqlite
