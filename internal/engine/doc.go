// Package engine holds the seams of the executor that the optimization layer
// swaps: cache-key derivation, result sharing for cached results, event
// recording, result allocation, state isolation and the fan-out limit. Each seam is a small interface with a
// baseline implementation; the executor picks one implementation per seam
// when it is built, so the hot path never branches on configuration.
//
// The baselines are deliberately plain — they are what the optimization
// components are measured against.
package engine
