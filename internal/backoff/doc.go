// Package backoff computes retry delays: exponential growth from an initial
// delay, capped, with "equal jitter" (each delay drawn uniformly from the
// upper half of its exponential value) so that retries of concurrent callers
// spread out instead of arriving together.
package backoff
