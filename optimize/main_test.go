package optimize_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/caudal-go/caudal"
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

// mustClose closes c when the test ends its use, failing the test on an
// error.
func mustClose(tb testing.TB, c interface{ Close() error }) {
	tb.Helper()
	if err := c.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}

// mustStop stops a component's background work, failing the test on an
// error.
func mustStop(tb testing.TB, s interface{ Stop() error }) {
	tb.Helper()
	if err := s.Stop(); err != nil {
		tb.Errorf("Stop: %v", err)
	}
}
