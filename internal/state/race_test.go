//go:build race

package state_test

// raceEnabled reports whether the tests run with the race detector, under
// which sync.Pool drops items at random: allocation counts then vary.
const raceEnabled = true
