//go:build race

package optimize_test

// raceEnabled reports a build with the race detector, under which
// allocation counts are not exact.
const raceEnabled = true
