package optimize

import (
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

// Near is the cache optimization's in-process cache.
type Near interface {
	engine.Near[caudal.StepResult]
	Len() int
}

type nearLen struct{ *near }

func (n nearLen) Len() int { return n.len() }

// NewNear returns an in-process cache configured by cfg.
func NewNear(cfg CacheConfig) Near { return nearLen{newNear(cfg)} }

// NewFlight returns a flight group.
func NewFlight() engine.Flight { return newFlight() }
