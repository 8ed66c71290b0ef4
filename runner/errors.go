package runner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caudal-go/caudal"
)

// Errors of the runner, beside the stores' (see store.go).
var (
	// ErrRunExists: a run with the ID exists already ([Store.Create]).
	ErrRunExists = errors.New("runner: run exists already")
	// ErrUnknownPipeline: no pipeline is registered under the name.
	ErrUnknownPipeline = errors.New("runner: pipeline not registered")
	// ErrPipelineChanged: the pipeline registered under the run's name is
	// not the one the run started with (its fingerprint differs): the run's
	// journal cannot be replayed on it. It matches
	// [caudal.ErrSnapshotMismatch] too.
	ErrPipelineChanged = fmt.Errorf("runner: pipeline changed since the run started (%w)", caudal.ErrSnapshotMismatch)
	// ErrInvalidAnswer: a human's answer does not satisfy the pause's
	// schema, or is not a JSON value. The error is an [*AnswerError].
	ErrInvalidAnswer = errors.New("runner: invalid answer")
	// ErrInvalidSchema: a human-input step's schema is outside the subset
	// the runner validates (see package doc, # Answers).
	ErrInvalidSchema = errors.New("runner: invalid answer schema")
)

// AnswerError is a human's answer that [Runner.Resume] refused: the run is
// left paused as it was. It matches [ErrInvalidAnswer].
type AnswerError struct {
	RunID    string
	Path     string   // the paused step's instance path
	Problems []string // each problem, naming where in the answer ("$" is the answer, "$.a[0]" inside it)
}

func (e *AnswerError) Error() string {
	return fmt.Sprintf("runner: run %q: answer to step %q: %s", e.RunID, e.Path, strings.Join(e.Problems, "; "))
}

// Is reports whether target is [ErrInvalidAnswer].
func (e *AnswerError) Is(target error) bool { return target == ErrInvalidAnswer }
