package optimize_test

import (
	"testing"

	"github.com/caudal-go/caudal"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newExecutor returns an executor built with opts, closed when the test ends.
func newExecutor(tb testing.TB, opts ...caudal.Option) *caudal.Executor {
	tb.Helper()
	ex, err := caudal.New(opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = ex.Close() })
	return ex
}

// build returns s built, failing the test on an error.
func build(tb testing.TB, s caudal.Step) caudal.Step {
	tb.Helper()
	b, err := caudal.Build(s)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return b
}
