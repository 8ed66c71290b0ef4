// Package statemerge computes and merges the state changes of parallel
// branches.
//
// A run's state is a map[string]any whose values are JSON-shaped (nested
// map[string]any, []any, strings, numbers, bools, nil) or arbitrary Go
// values. Each parallel branch runs on a deep copy of its parent's state
// taken at the fork. When the branches finish, [Diff] turns each successful
// branch's state into a list of [Write]s relative to the fork, [Conflicts]
// finds the paths that several branches wrote with different outcomes, and
// [Apply] applies writes to the parent, branch by branch in declaration
// order. [Reducer]s such as [Append], [Sum] and [Max] combine the values
// that branches left at one key instead.
//
// It is the deliberately plain baseline: Diff walks both trees completely,
// and Conflicts sorts every write of every branch.
package statemerge
