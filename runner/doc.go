// Package runner runs pipelines durably: every run has an ID and a record
// in a [Store], every completed step instance is persisted as it
// completes, a paused run is resumed with a human's answer, and a run left
// behind by a process that died is recovered by another, without running a
// completed step instance again.
package runner
