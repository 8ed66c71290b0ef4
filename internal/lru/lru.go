package lru

import (
	"fmt"
	"sync"
	"time"
)

// Cache is a fixed-capacity LRU cache whose entries expire after their TTL.
// It is safe for concurrent use. Its zero value is not usable; call [New].
type Cache struct {
	mu       sync.Mutex
	capacity int
	now      func() time.Time
	items    map[string]*entry
	// root is the sentinel of a circular list of entries: root.next is the
	// most recently used, root.prev the least.
	root entry
}

type entry struct {
	key        string
	value      any
	expires    time.Time // zero: never
	prev, next *entry
}

// New returns a cache holding at most capacity entries; capacity must be
// > 0. now is the clock; nil means time.Now. The cache calls now without
// holding its lock, so now must be safe for concurrent use if the cache is
// used concurrently. New itself is safe for concurrent use.
func New(capacity int, now func() time.Time) (*Cache, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("lru: capacity is %d; must be > 0", capacity)
	}
	if now == nil {
		now = time.Now
	}
	c := &Cache{capacity: capacity, now: now, items: make(map[string]*entry)}
	c.root.prev, c.root.next = &c.root, &c.root
	return c, nil
}

// Get returns the value stored at key and true, or nil and false when
// there is none or it has expired; an expired entry is removed. A hit makes
// the entry the most recently used. Get is safe for concurrent use.
func (c *Cache) Get(key string) (any, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	if e.expired(now) {
		c.unlink(e)
		delete(c.items, key)
		return nil, false
	}
	c.moveToFront(e)
	return e.value, true
}

// Set stores v at key for ttl, making it the most recently used entry;
// ttl <= 0 means it never expires. Overwriting an entry replaces its value
// and TTL. When a new key finds the cache full, the least recently used
// entry is evicted, expired or not. Set is safe for concurrent use.
func (c *Cache) Set(key string, v any, ttl time.Duration) {
	var expires time.Time
	if ttl > 0 {
		expires = c.now().Add(ttl)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.value, e.expires = v, expires
		c.moveToFront(e)
		return
	}
	var e *entry
	if len(c.items) >= c.capacity {
		e = c.root.prev // the least recently used; its node is reused
		c.unlink(e)
		delete(c.items, e.key)
	} else {
		e = new(entry)
	}
	e.key, e.value, e.expires = key, v, expires
	c.items[key] = e
	c.pushFront(e)
}

// Delete removes the entry at key, if any. It is safe for concurrent use.
func (c *Cache) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.unlink(e)
		delete(c.items, key)
	}
}

// Len returns the number of entries, expired ones not yet removed
// included. It is safe for concurrent use.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// expired reports whether e has expired at now: an entry stored for ttl at
// time t expires at t+ttl.
func (e *entry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

func (c *Cache) pushFront(e *entry) {
	e.prev, e.next = &c.root, c.root.next
	e.prev.next, e.next.prev = e, e
}

func (c *Cache) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *Cache) moveToFront(e *entry) {
	if c.root.next == e {
		return
	}
	c.unlink(e)
	c.pushFront(e)
}
