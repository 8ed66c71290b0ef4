// Package lru provides [Cache], a fixed-capacity least-recently-used cache
// whose entries expire after a per-entry TTL.
//
// It is the deliberately plain baseline: one map and one doubly linked list
// behind one mutex, every operation O(1). Expired entries are removed lazily,
// when a Get finds them, or when they become the least recently used and
// are evicted.
package lru
