// Package durable compares Caudal's durable runs (package runner on its
// SQLite store, runner/sqlite) with github.com/cschleiden/go-workflows
// v1.2.0 on its SQLite backend (backend/sqlite), on the same pipeline, on
// the same machine, in the same run. It holds benchmarks and no API.
//
// The benchmarks, with the library and the SQLite synchronous setting as
// sub-benchmark keys so that benchstat puts them side by side:
//
//   - BenchmarkDurableRun/steps=10/lib=caudal|go-workflows/sync=normal|full:
//     a sequence of ten steps, each passing its input on, run end to end —
//     Caudal: Runner.Start, which returns when the run is stored completed;
//     go-workflows: CreateWorkflowInstance of a workflow running ten
//     activities one after the other, then waiting for the instance to
//     finish. ns/step is the time per run over ten.
//   - BenchmarkDurableResume/lib=…/sync=…: the ten steps, a pause for a
//     human's answer, persisted, then resumed with the answer and one more
//     step — Caudal: Start (stored paused at a HumanInput step), then
//     Resume; go-workflows: the workflow waits on a signal channel after
//     its ten activities; the answer is sent with SignalWorkflow (persisted
//     as an event) once the tenth activity ran, and the run is waited for.
//
// # Like for like, and not
//
// Caudal runs a step on the caller's goroutine and appends its journal
// record as it completes; go-workflows hands each activity from a workflow
// task to an activity worker and back through its database queue, polled
// by the worker (here every millisecond, not the default 200 ms, and in
// its single-worker mode), and the client polls the instance's state (here
// every 100 µs, not its exponential backoff). Both files are in WAL mode;
// go-workflows' backend leaves synchronous at SQLite's default (FULL),
// Caudal's store sets NORMAL (see runner/sqlite): sync=full runs Caudal's
// store with sqlite.WithSynchronousFull, sync=normal opens go-workflows'
// file with synchronous(NORMAL), so that both settings are compared.
//
// Run them, and regenerate DURABLE.md, with ./durable.sh in the benchmarks
// directory (or make bench-durable from the repository root).
package durable
