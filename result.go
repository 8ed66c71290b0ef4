package caudal

import "time"

// Metadata keys set by the executor on [StepResult.Metadata].
const (
	// MetaCacheHit is true when a cache step served the result from its
	// cache, false when it ran the wrapped step.
	MetaCacheHit = "cache_hit"
	// MetaFallbackTriggered is true when the step's own attempts failed and
	// its fallback ran.
	MetaFallbackTriggered = "fallback_triggered"
	// MetaOriginalError is the text of the primary error when the fallback ran.
	MetaOriginalError = "original_error"
	// MetaCacheError is the text of a cache key or backend error; the step
	// then ran uncached.
	MetaCacheError = "cache_error"
)

// StepResult is the outcome of one step. [Executor.Execute] always returns
// one, also on failure, pause or budget breach, when it holds what had been
// done so far. It round-trips through encoding/json (Output and Metadata as
// their JSON forms), so the runner can checkpoint it.
type StepResult struct {
	Path     string         `json:"path"`               // step path: names from the root step, joined by "/"
	RunID    string         `json:"run_id,omitempty"`   // the run's ID, from [WithRunID]
	Output   any            `json:"output,omitempty"`   // the step's output; on failure, the last attempt's output if it produced one
	Success  bool           `json:"success"`            // whether the step succeeded; false exactly when Execute returned an error
	Attempts int            `json:"attempts"`           // attempts made by the step itself (not its fallback)
	Latency  time.Duration  `json:"latency_ns"`         // wall time of the step, fallback included
	Usage    Usage          `json:"usage"`              // everything the step spent: every attempt and the fallback
	Feedback string         `json:"feedback,omitempty"` // on failure, what went wrong, in words
	Metadata map[string]any `json:"metadata,omitempty"` // see the Meta* keys
	Children []StepResult   `json:"children,omitempty"` // results of nested steps, e.g. the fallback
}

func (r *StepResult) setMeta(key string, v any) {
	if r.Metadata == nil {
		r.Metadata = make(map[string]any, 2)
	}
	r.Metadata[key] = v
}
