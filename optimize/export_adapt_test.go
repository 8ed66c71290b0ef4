package optimize

// Adaptive is the adaptive resource manager, for tests that drive its
// seams directly.
type Adaptive = adaptive

// NewAdaptive returns an adaptive resource manager configured by cfg.
func NewAdaptive(cfg AdaptiveConfig) *Adaptive { return newAdaptive(cfg) }

// Limits returns the limit in force of every step, by path.
func (a *adaptive) Limits() map[string]int { return a.limits() }

// UnderPressure reports the last memory reading's verdict.
func (a *adaptive) UnderPressure() bool { return a.underPressure() }

// SetHeapReader makes the adaptive managers built from now on read memory
// through f; restore puts the runtime's reading back.
func SetHeapReader(f func() uint64) (restore func()) {
	old := heapReader
	heapReader = f
	return func() { heapReader = old }
}
