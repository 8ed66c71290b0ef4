// Package caudaltest helps users test code built on caudal: a [Recorder]
// sink that keeps every event for assertions, and a [Script] agent that
// replays canned replies and counts its calls.
package caudaltest
