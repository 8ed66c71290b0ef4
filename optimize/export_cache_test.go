package optimize

import (
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// SetKeyHash replaces the hash of cache keys until the returned func
// restores it: a test injects a colliding hash.
func SetKeyHash(h func([]byte) uint64) (restore func()) {
	old := keyHash
	keyHash = h
	return func() { keyHash = old }
}

// FastKeyer is the cache optimization's keyer.
var FastKeyer engine.Keyer = newFastKeyer()

// Sharer is the cache optimization's sharer.
var Sharer engine.Sharer[caudal.StepResult] = immutableSharer{}

// Near is the cache optimization's in-process cache, on the process's
// clock.
type Near interface {
	Get(site engine.Site, key string) (caudal.StepResult, bool)
	Set(site engine.Site, key string, r caudal.StepResult, ttl time.Duration)
	Len() int
}

type nearClock struct {
	n     *near
	epoch time.Time
	once  bool // Set offers once, as the core does; else twice, to pass the doorkeeper
}

func (c nearClock) Get(site engine.Site, key string) (caudal.StepResult, bool) {
	return c.n.Get(site, key, time.Since(c.epoch))
}

func (c nearClock) Set(site engine.Site, key string, r caudal.StepResult, ttl time.Duration) {
	c.n.Set(site, key, r, ttl, time.Since(c.epoch))
	if c.once {
		return
	}
	c.n.Set(site, key, r, ttl, time.Since(c.epoch)) // past the doorkeeper
}

func (c nearClock) Len() int { return c.n.len() }

// NewNear returns an in-process cache configured by cfg, whose Set stores
// (past the doorkeeper).
func NewNear(cfg CacheConfig) Near { return nearClock{n: newNear(cfg), epoch: time.Now()} }

// NewNearRaw returns an in-process cache configured by cfg, whose Set
// offers once, as the core does.
func NewNearRaw(cfg CacheConfig) Near {
	return nearClock{n: newNear(cfg), epoch: time.Now(), once: true}
}

// NewFlight returns a flight group.
func NewFlight() engine.Flight { return newFlight() }

// HashOfKey is the hash by which the near cache and the flight group
// place a key.
func HashOfKey(key string) uint64 { return hashOfKey(key) }
