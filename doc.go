// Package caudal is a step-execution engine for AI-agent and workflow
// pipelines: the ExecutorCore. It runs steps — agent calls and, around them,
// policies — with an engine overhead measured in nanoseconds.
//
// # Define, build, execute
//
// A pipeline is made of [Step] values from constructors: [AgentStep] around
// an [Agent] (or an [AgentFunc]), [Func] around a typed function, [Cached]
// around another step, and the control flow — [Seq], [Parallel], [Loop],
// [Map], [RefineUntil], [Conditional], [Router], [HumanInput]. [Build]
// checks the whole graph once — missing agents, invalid or inapplicable
// options, fallback cycles, duplicate sibling names, type mismatches between
// typed steps — and compiles it; an [Executor] made by [New] then runs the
// built step with [Executor.Execute] as often as needed, from any number of
// goroutines.
//
//	ex, err := caudal.New()
//	step, err := caudal.Build(caudal.AgentStep("summarize", agent,
//		caudal.WithRetries(2), caudal.WithTimeout(30*time.Second)))
//	res, err := ex.Execute(ctx, step, "text to summarize")
//
// Execute returns a [StepResult] always and an error exactly when the step
// failed.
//
// # How the policies wrap a step
//
// From the outside in:
//
//  1. Cache ([Cached]): a hit returns the stored result; nothing below runs.
//  2. Fallback ([WithFallback]): runs, with the same input, once every
//     attempt has failed. A pause, a budget breach or a cancelled context
//     never triggers it.
//  3. Retry ([WithRetries], [WithBackoff]): up to 1+retries attempts, with
//     an exponential, jittered, capped delay between them. Any error is
//     retried except a [Permanent] one (a type mismatch, an invalid usage
//     report), an open circuit ([ErrCircuitOpen]), a pause, a budget breach
//     and a cancelled context; [WithRetryIf] narrows that,
//     [WithMaxRetryDuration] bounds the time spent trying, and [RetryAfter]
//     sets the next delay. [MetaRetryStopped] says why the attempts
//     stopped; [Attempt] and [PreviousError] tell an attempt, or a
//     fallback, what came before it. A failed attempt's state writes are
//     rolled back, whatever the retry count.
//  4. Usage ([WithLimits], [WithUsageEstimate]): before each agent call the
//     estimate is reserved against the run's budget; after it, the actual
//     usage replaces the estimate. A breach ends the step with
//     [ErrUsageLimitExceeded] — no retry, no fallback.
//  5. Timeout ([WithTimeout]): each attempt runs under its own deadline. It
//     is cooperative: the agent runs on the caller's goroutine and must
//     honour its context.
//  6. The attempt: prompt processors, the agent ([StreamAgent.Stream] under
//     [WithStream], else [Agent.Run]), output processors, validators. A
//     validator's rejection becomes the next attempt's [Feedback].
//
// A panic anywhere a step runs user code or a user's backend — agents,
// processors, validators, mappers, conditions, key functions, caches,
// sinks, merge functions, reducers, a state value's Clone, a MarshalJSON,
// checkpointers, on any goroutine the executor starts — becomes a
// [*PanicError] naming the step instance; sibling branches are cancelled
// and waited for, and the executor stays usable. An error names its step
// instance once: caudal: step "report/refine#3/critic": ….
//
// These are layers composed once, at [Build]; a step without a policy has
// no layer for it.
//
// # Control flow and the run state
//
// A run may carry a [State] ([WithState]): a JSON-encodable value store the
// steps share, read in agents with [StateFrom] and [Get]. A step marked
// [UpdatesContext] merges its output into it. Parallel branches, loop
// iterations and map items each run on an isolated deep copy (a value with a
// Clone method copies itself); successful ones are merged back — parallel branches
// by [MergeStrategy], in declaration order, never completion order. An
// attempt runs on its step's state, and a failed one's writes are undone
// (in-place changes to values it read included): a step leaves the state
// as its successful attempt made it, or as it found it.
//
// A [Parallel] or [Router] step runs all its branches at once (cap them
// with [WithConcurrency]); a [Map] runs one item at a time unless given a
// concurrency. A failed branch (under [Propagate]) or map item cancels the
// others, and once the context ends no branch or item starts.
//
// A [HumanInput] step stops the run with a [*PausedError] whose [Snapshot]
// records where the run stands; [WithResume] continues from there without
// re-running finished work.
//
// # Step instances
//
// Every execution of a step is a step instance with a unique, deterministic
// instance path: the step names from the root joined by "/" (a branch by its
// branch name, a fallback under its primary), with a loop's iteration i
// (from 1) as "#i" and a map's item i (from 0) as "[i]" on the paths of their
// bodies — "report/refine#3/critic", "enrich[7]/fetch", "research/web". The
// same pipeline on the same input gives the same paths. Results, events and
// errors carry them. Step and branch names may not contain '/', '#', '[' or
// ']'.
//
// # The journal: pause, checkpoints and replay
//
// When a step instance completes, the executor makes a [Record] of it: its
// output, the state writes it made, its usage, attempts and status. Choices
// a run makes inside an unfinished instance are recorded too: a conditional's
// key, a router's branches, a fallback taken. A [Checkpointer]
// ([WithCheckpointer]) receives every record as it is made; a pipeline that
// can pause keeps them for its [Snapshot]: the journal, the pause point, the
// run's input and starting state, and the pipeline's [Step.Fingerprint].
// Resuming ([WithResume]) — after a pause, or after a crash from the records
// a checkpointer persisted — replays the tree: an instance found in the
// journal returns its recorded outcome and re-applies its writes without
// running. A snapshot that does not fit the pipeline is refused before any
// step runs ([ErrSnapshotMismatch]). With no human-input step and no
// checkpointer, nothing is journaled and journaling costs nothing.
//
// # The runtime
//
// The interpreter reaches the clock, timers, goroutines and random numbers
// only through a [Runtime]: the process by default, or a deterministic one
// ([WithRuntime]) — a test's fake with a manual clock, or a durable-workflow
// engine — that drives the same interpreter reproducibly.
//
// # Usage and money
//
// Every attempt's usage is counted, failed ones included, and a fallback's
// usage is added to its step's: money spent is money spent. A parallel step
// splits what remains of the budget evenly across its branches, and every
// share also books against the run's limits ([Limits] says by how much a
// run can go past one); a breach in one branch cancels its siblings. An
// agent's reported usage is checked: a cost that is not finite, a negative
// count or an overflowing one fails the attempt.
//
// # Events
//
// Attach a [Sink] with [WithSink] (for example [SlogSink]) to receive
// [Event]s: step started and finished (for every step instance, a cache hit
// included), attempt failed, retry, fallback, cache hit, usage breach,
// pause, merge conflict. They are delivered synchronously; with no sink,
// none is built.
//
// # Concurrency
//
// [Executor], built [Step]s, [State] and [MemoryCache] are safe for
// concurrent use, and so is a [Snapshot] being resumed: [WithResume] only
// reads it. Every goroutine the executor starts is waited for before
// Execute returns.
package caudal
