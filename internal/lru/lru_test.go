package lru_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal/internal/lru"
)

// fakeClock is a manual clock for single-goroutine tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func mustNew(t testing.TB, capacity int, now func() time.Time) *lru.Cache {
	t.Helper()
	c, err := lru.New(capacity, now)
	if err != nil {
		t.Fatalf("New(%d) error: %v", capacity, err)
	}
	return c
}

// wantGet checks that Get(key) returns want, or a miss when want is nil.
func wantGet(t *testing.T, c *lru.Cache, key string, want any) {
	t.Helper()
	got, ok := c.Get(key)
	if want == nil && ok {
		t.Errorf("Get(%q) = %v, true; want a miss", key, got)
	}
	if want != nil && (!ok || got != want) {
		t.Errorf("Get(%q) = %v, %v; want %v, true", key, got, ok, want)
	}
}

func wantLen(t *testing.T, c *lru.Cache, want int) {
	t.Helper()
	if got := c.Len(); got != want {
		t.Errorf("Len() = %d; want %d", got, want)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		give    int
		wantErr bool
	}{
		{"zero", 0, true},
		{"negative", -1, true},
		{"one", 1, false},
		{"large", 1 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := lru.New(tt.give, nil)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("New(%d) error = %v; want error %v", tt.give, err, tt.wantErr)
			}
			if (c == nil) != tt.wantErr {
				t.Errorf("New(%d) = %v; want a cache only without error", tt.give, c)
			}
		})
	}
}

func TestGetSet(t *testing.T) {
	c := mustNew(t, 4, nil)
	wantGet(t, c, "a", nil)
	c.Set("a", 1, time.Hour)
	c.Set("b", "two", 0)
	wantGet(t, c, "a", 1)
	wantGet(t, c, "b", "two")
	wantGet(t, c, "c", nil)
	wantLen(t, c, 2)

	c.Set("n", nil, 0)
	if v, ok := c.Get("n"); !ok || v != nil {
		t.Errorf("Get(%q) = %v, %v; want <nil>, true", "n", v, ok)
	}

	c.Delete("a")
	c.Delete("absent")
	wantGet(t, c, "a", nil)
	wantLen(t, c, 2)
}

func TestTTL(t *testing.T) {
	clock := newClock()
	c := mustNew(t, 8, clock.now)
	c.Set("ttl", 1, 10*time.Second)
	c.Set("zero", 2, 0)
	c.Set("negative", 3, -time.Second)

	clock.advance(10*time.Second - 1)
	wantGet(t, c, "ttl", 1)

	clock.advance(1) // exactly at expiry
	wantGet(t, c, "ttl", nil)
	wantLen(t, c, 2) // the expired entry was removed

	clock.advance(1000 * time.Hour)
	wantGet(t, c, "zero", 2)
	wantGet(t, c, "negative", 3)
}

func TestEvictionOrder(t *testing.T) {
	c := mustNew(t, 3, nil)
	c.Set("a", 1, 0)
	c.Set("b", 2, 0)
	c.Set("c", 3, 0)
	wantGet(t, c, "a", 1) // a is now the most recently used; b the least

	c.Set("d", 4, 0)
	wantLen(t, c, 3)
	wantGet(t, c, "b", nil)

	// From least recent, the order is now c, a, d: the miss on b left it
	// as it was.
	c.Set("e", 5, 0)
	wantGet(t, c, "c", nil)
	c.Set("f", 6, 0)
	wantGet(t, c, "a", nil)
	for _, k := range []string{"d", "e", "f"} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("Get(%q) missed; want a hit", k)
		}
	}
}

func TestEvictionOfExpiredEntry(t *testing.T) {
	clock := newClock()
	c := mustNew(t, 1, clock.now)
	c.Set("a", 1, time.Second)
	clock.advance(time.Hour)
	c.Set("b", 2, 0)
	wantLen(t, c, 1)
	wantGet(t, c, "b", 2)
}

func TestOverwrite(t *testing.T) {
	t.Run("refreshes value and ttl", func(t *testing.T) {
		clock := newClock()
		c := mustNew(t, 2, clock.now)
		c.Set("a", 1, 10*time.Second)
		clock.advance(8 * time.Second)
		c.Set("a", 2, 10*time.Second)
		clock.advance(8 * time.Second) // 16s after the first Set
		wantGet(t, c, "a", 2)
		wantLen(t, c, 1)

		c.Set("a", 3, 0) // from a TTL to none
		clock.advance(1000 * time.Hour)
		wantGet(t, c, "a", 3)

		c.Set("a", 4, time.Second) // from none to a TTL
		clock.advance(time.Second)
		wantGet(t, c, "a", nil)
	})
	t.Run("refreshes recency", func(t *testing.T) {
		c := mustNew(t, 2, nil)
		c.Set("a", 1, 0)
		c.Set("b", 2, 0)
		c.Set("a", 10, 0) // b is now the least recently used
		c.Set("c", 3, 0)
		wantGet(t, c, "b", nil)
		wantGet(t, c, "a", 10)
		wantGet(t, c, "c", 3)
	})
}

func TestNilClockIsTimeNow(t *testing.T) {
	c := mustNew(t, 1, nil)
	c.Set("a", 1, time.Hour)
	wantGet(t, c, "a", 1)
}

// model is an obviously correct, O(n) reference for Cache.
type model struct {
	capacity int
	tick     int // recency counter
	entries  map[string]*modelEntry
}

type modelEntry struct {
	value   int
	expires time.Time
	used    int
}

func (m *model) get(key string, now time.Time) (int, bool) {
	e, ok := m.entries[key]
	if !ok {
		return 0, false
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		delete(m.entries, key)
		return 0, false
	}
	m.tick++
	e.used = m.tick
	return e.value, true
}

func (m *model) set(key string, v int, ttl time.Duration, now time.Time) {
	m.tick++
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	if _, ok := m.entries[key]; !ok && len(m.entries) == m.capacity {
		oldest := ""
		for k, e := range m.entries {
			if oldest == "" || e.used < m.entries[oldest].used {
				oldest = k
			}
		}
		delete(m.entries, oldest)
	}
	m.entries[key] = &modelEntry{value: v, expires: expires, used: m.tick}
}

func TestAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed))
			clock := newClock()
			capacity := 1 + r.IntN(8)
			c := mustNew(t, capacity, clock.now)
			m := &model{capacity: capacity, entries: make(map[string]*modelEntry)}
			for i := range 2000 {
				key := fmt.Sprint("k", r.IntN(12))
				switch op := r.IntN(10); {
				case op < 4:
					got, gotOK := c.Get(key)
					want, wantOK := m.get(key, clock.t)
					if gotOK != wantOK || (wantOK && got != want) {
						t.Fatalf("op %d: Get(%q) = %v, %v; want %v, %v", i, key, got, gotOK, want, wantOK)
					}
				case op < 8:
					ttl := time.Duration(r.IntN(5)-1) * time.Second // -1s to 3s
					c.Set(key, i, ttl)
					m.set(key, i, ttl, clock.t)
				case op < 9:
					c.Delete(key)
					delete(m.entries, key)
				default:
					clock.advance(time.Duration(r.IntN(1500)) * time.Millisecond)
				}
				if got, want := c.Len(), len(m.entries); got != want {
					t.Fatalf("op %d: Len() = %d; want %d", i, got, want)
				}
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	const (
		capacity   = 16
		goroutines = 32
		ops        = 2000
	)
	c := mustNew(t, capacity, nil)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 0))
			for range ops {
				key := fmt.Sprint(r.IntN(64))
				switch r.IntN(4) {
				case 0, 1:
					if v, ok := c.Get(key); ok && v != key {
						t.Errorf("Get(%q) = %v; want %q", key, v, key)
						return
					}
				case 2:
					c.Set(key, key, time.Duration(r.IntN(2))*time.Hour)
				default:
					c.Delete(key)
				}
				if n := c.Len(); n > capacity {
					t.Errorf("Len() = %d; want <= %d", n, capacity)
					return
				}
			}
		})
	}
	wg.Wait()
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("key", i)
	}
	return keys
}

func BenchmarkGetHit(b *testing.B) {
	const n = 1024
	keys := benchKeys(n)
	c := mustNew(b, n, nil)
	for _, k := range keys {
		c.Set(k, k, time.Hour)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Get(keys[i%n]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

// BenchmarkGetHitParallel measures the single mutex under contention, the
// cost a sharded cache removes. b.Loop does not apply inside RunParallel.
func BenchmarkGetHitParallel(b *testing.B) {
	const n = 1024
	keys := benchKeys(n)
	c := mustNew(b, n, nil)
	for _, k := range keys {
		c.Set(k, k, time.Hour)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i%n])
			i++
		}
	})
}

func BenchmarkSet(b *testing.B) {
	const n = 1024
	tests := []struct {
		name string
		keys int
	}{
		{"overwrite", n}, // every key fits: updates in place
		{"evict", 2 * n}, // twice the capacity: every Set evicts
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			keys := benchKeys(tt.keys)
			values := make([]any, len(keys)) // boxed up front: no allocation in the loop
			c := mustNew(b, n, nil)
			for i, k := range keys {
				values[i] = k
				c.Set(k, k, time.Hour)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.Set(keys[i%len(keys)], values[(i+1)%len(keys)], time.Hour)
				i++
			}
		})
	}
}
