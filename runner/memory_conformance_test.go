package runner_test

import (
	"testing"

	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/storetest"
)

// TestMemoryConformance runs the Store contract's suite on the in-memory
// store, as every store's package does on its own.
func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) runner.Store { return runner.NewMemoryStore() })
}
