// Package state holds the representation of a run's state: a store that
// is flat, or an overlay forked in O(1) over frozen layers it shares with
// other stores, that can log its changes for a run's journal, and undo
// those made since a savepoint, for a failed attempt.
package state
