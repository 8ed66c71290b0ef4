// Package runner runs pipelines durably: every run has an ID and a record
// in a [Store], every completed step instance is persisted as it
// completes, a paused run is resumed with a human's answer, and a run left
// behind by a process that died is recovered by another, without running a
// completed step instance again.
//
// # Runs
//
// A [Runner] ([New]) executes pipelines registered by name
// ([Runner.Register]) on a [caudal.Executor]. [Runner.Start] creates the
// run in the store (status running, a lease held by the runner), executes
// it with a [caudal.Checkpointer] that appends every journal record to the
// store ([Store.Append]) before the run goes on — a record the store
// refuses fails the run's step: no progress is made that is not saved —
// and stores where it stopped: completed (output, final state, usage),
// paused (the [Pause] and its snapshot), failed, or cancelled (its ctx was
// cancelled). The run's input and initial state are stored as JSON and the
// pipeline always receives their JSON forms, as a resumed run does.
//
// While a run executes, its lease is renewed every third of its length
// ([WithLease]); a lease lost — another process took the run over after
// the lease expired, or it could not be renewed for a whole lease —
// cancels the execution, and nothing more of it is written
// ([ErrLeaseLost]).
//
// # Pauses and answers
//
// A run that reaches a [caudal.HumanInput] step is stored paused.
// [Runner.Resume] claims it, checks the answer against the step's schema
// ([caudal.WithSchema]), and continues it from the pause's snapshot: the
// answer becomes the step's output, recorded in the journal with who gave
// it and when ([MetaAnsweredBy], [MetaAnsweredAt]). Pauses inside loops,
// maps, conditionals and parallel branches work alike; when several
// branches pause, each Resume answers one, and the run pauses again at the
// next. A refused Resume leaves the run as it was.
//
// Two edges of a resume: the answer is recorded by the step that takes it,
// so a process that dies after Resume set the run running but before that
// record was made leaves a run that [Runner.Recover] brings back to the
// same pause — the answer must be given again; and a pipeline whose steps
// are not deterministic functions of their input and state (see
// [caudal.WithResume]) may not reach its paused step again, when the run
// is stored failed.
//
// The answer schema is a JSON document in a subset of JSON Schema: type
// (object, array, string, number, integer, boolean, null, or a list of
// them), properties, required, enum, minimum, maximum (inclusive),
// minLength, maxLength (in Unicode characters) and items (one schema for
// every element). The annotations title, description, default, examples,
// $schema, $id and $comment are allowed and ignored. Any other keyword
// ($ref, pattern, oneOf, additionalProperties, …) is refused
// ([ErrInvalidSchema]) — the run fails at the pause — so that no rule is
// silently left unchecked. The schema may be given as a Go value (encoded
// to JSON), or as JSON text in a string, []byte or json.RawMessage.
//
// # Recovery, and the at-least-once edge
//
// [Runner.Recover] finds runs still running whose lease expired
// ([Store.Orphans]) — their process died, or lost the store — claims each
// (of processes recovering at once, exactly one gets a run) and continues
// it from a checkpoint assembled from its journal: a step instance with a
// record is never executed again; its recorded output and state writes are
// replayed. The instance that was executing when the process died had no
// record yet: it runs again. It ran at most once before, so its side
// effects happen at most twice — the at-least-once edge every durable
// engine has (a Temporal activity retried after a worker crash, likewise).
// Agents with side effects outside the run should make them idempotent,
// for example keyed by the run ID ([caudal.WithRunID] is set to it).
//
// A run whose pipeline changed since it started (its fingerprint) is not
// resumed nor recovered ([ErrPipelineChanged]); one whose stored pause or
// journal cannot be read back, or does not fit the pipeline, is refused
// with [ErrCorrupt]. Either stays as it is, for a later attempt once the
// cause is gone, and so does a run whose store failed mid-way: it is left
// running, its lease released, for Recover.
//
// # Inspection and retention
//
// [Runner.List] selects runs by status, pipeline and time;
// [Runner.Inspect] returns a run with its journal as a tree of step
// instances; [Runner.Delete] removes one run; [Runner.Retain] removes the
// finished runs older than an age.
//
// # Stores
//
// [Store] is the small interface every store implements, and
// runner/storetest its conformance suite. [NewMemoryStore] keeps runs in
// memory; runner/sqlite (embedded, a single file) and runner/postgres
// (shared by processes on several machines) persist them.
package runner
