// Package advise recommends an [optimize.Config] from a recorded run: the
// logic of `caudal advise`.
//
// # Inputs
//
// [Read] takes either kind of file, told apart by its content:
//
//   - an event log: one JSON object a line, as
//     caudal.SlogSink(slog.New(slog.NewJSONHandler(w,
//     &slog.HandlerOptions{Level: slog.LevelDebug}))) writes it — msg
//     "caudal.<kind>", the attributes of [caudal.SlogSink] (path, run_id,
//     attempt, success, latency, delay, retry_stopped, error_class, state,
//     decision, error). Lines of other messages are skipped; a line that is
//     not a JSON object is an error naming file:line.
//   - a bench report: the JSON of [perf.Report] (`caudal bench --json`).
//
// # Patterns
//
// From an event log, each finding names the component it
// recommends and the data that triggered it — counts, step paths, an
// example error:
//
//   - failed attempts repeating one error until retries are exhausted, or
//     errors whose text shows a 4xx status other than 408 and 429: error
//     handling (retry only what can succeed) — unless the repeated error
//     says the agent is down (a 5xx, 408 or 429 status, a timeout, an
//     outage): then the circuit breaker, which stops calling it;
//   - timeouts in a row on one step path: the circuit breaker;
//   - cache hits: the cache optimization;
//   - many events per run: the object pool (each event and attempt is an
//     allocation it recycles) and telemetry (each is a synchronous write to
//     a log like this one, which telemetry moves off the executing
//     goroutine);
//   - fan-out — map items ("[i]" in paths) or parallel branches (sibling
//     steps running at once): the adaptive resource manager when the
//     items or branches wait (a median latency of 1 ms or more), the
//     context manager on merge conflicts or a fan-out of 8 or more;
//   - tuned events of an automatic optimization run: the components it
//     switched on.
//
// From a bench report: every component whose comparison on a workload's
// target metric met an improvement target or was significantly better
// (meeting a bound — no worse than −20 %, at most 20 ns added — is no
// win), unless it regressed or broke a bound somewhere in the same report
// (then it is set aside, in [Advice].Notes).
//
// No pattern: the advice is to keep the baseline, with the reason.
//
// [Analyze] applies both to every input read.
//
// # Output
//
// [Advice.Config] is the recommended Config; [GoSource] prints it as a Go
// composite literal of its non-zero fields only (gofmt'ed, compilable),
// and the Config's own JSON form is its JSON.
package advise
