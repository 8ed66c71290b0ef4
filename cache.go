package caudal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/lru"
)

// Cache stores step results for cache steps ([Cached]). Values are
// [StepResult]s; a backend that serializes them must round-trip them
// through encoding/json. A Get or Set error is not fatal: the step runs
// uncached and [MetaCacheError] records the error. Implementations must be
// safe for concurrent use.
type Cache interface {
	// Get returns the value stored at key, reporting false when there is none
	// or it has expired.
	Get(ctx context.Context, key string) (value any, ok bool, err error)
	// Set stores value at key for ttl; ttl <= 0 means no expiry.
	Set(ctx context.Context, key string, value any, ttl time.Duration) error
}

// MemoryCache is the default [Cache]: an in-memory LRU with per-entry TTL
// behind one mutex. It is safe for concurrent use.
type MemoryCache struct {
	c *lru.Cache
}

var _ Cache = (*MemoryCache)(nil)

// NewMemoryCache returns a [MemoryCache] holding at most capacity entries,
// evicting the least recently used. capacity must be > 0.
func NewMemoryCache(capacity int) (*MemoryCache, error) {
	c, err := lru.New(capacity, nil)
	if err != nil {
		return nil, fmt.Errorf("caudal: NewMemoryCache: %w", err)
	}
	return &MemoryCache{c: c}, nil
}

// Get implements [Cache]; it never fails.
func (m *MemoryCache) Get(_ context.Context, key string) (any, bool, error) {
	v, ok := m.c.Get(key)
	return v, ok, nil
}

// Set implements [Cache]; it never fails.
func (m *MemoryCache) Set(_ context.Context, key string, value any, ttl time.Duration) error {
	m.c.Set(key, value, ttl)
	return nil
}

// Len returns the number of entries, expired ones not yet evicted included.
func (m *MemoryCache) Len() int { return m.c.Len() }

// DefaultCacheTTL is the time a cached result lives without [WithCacheTTL].
const DefaultCacheTTL = time.Hour

// Cached makes a step that serves the results of s from cache. The key is
// the one [WithCacheKey] computes or, by default, the SHA-256 of the JSON
// encoding of s's build-time fingerprint (its name, kind, agent type and
// policies), the input and the state values named by [WithCacheStateKeys].
// Only successful results are stored. A hit returns a copy of the stored
// result with [MetaCacheHit] true and zero usage (it spent nothing); a miss
// runs s and sets [MetaCacheHit] false. The cache step takes s's name and
// path.
func Cached(s Step, cache Cache, opts ...StepOption) Step {
	d := &stepDef{kind: kindCache, name: s.Name(), cache: cache, cacheTTL: DefaultCacheTTL}
	if s.def == nil {
		d.errs = append(d.errs, errors.New("Cached: wrapped step is the zero Step"))
	} else {
		d.wrapped = &s
	}
	if cache == nil {
		d.errs = append(d.errs, errors.New("Cached: nil Cache"))
	}
	d.apply(opts)
	return Step{def: d}
}

// WithCacheKey replaces the canonical cache key by fn's. fn sees the
// execution's context ([StateFrom] works) and the step's input; an error
// makes that execution run uncached.
func WithCacheKey(fn func(ctx context.Context, in any) (string, error)) StepOption {
	return cacheOption("WithCacheKey", func(d *stepDef) error {
		if fn == nil {
			return errors.New("nil key func")
		}
		d.cacheKey = fn
		return nil
	})
}

// WithCacheTTL sets how long a stored result lives (default
// [DefaultCacheTTL]); d <= 0 means no expiry.
func WithCacheTTL(d time.Duration) StepOption {
	return cacheOption("WithCacheTTL", func(s *stepDef) error {
		s.cacheTTL = d
		return nil
	})
}

// WithCacheStateKeys adds the values of these [State] keys to the canonical
// cache key, so results computed under different state are kept apart.
func WithCacheStateKeys(keys ...string) StepOption {
	return cacheOption("WithCacheStateKeys", func(d *stepDef) error {
		d.stateKeys = append(d.stateKeys, keys...)
		return nil
	})
}

// copySharer is the baseline result sharer: a deep copy on the way into the
// cache and another on every hit.
type copySharer struct{}

func (copySharer) Store(r StepResult) StepResult { return copyResult(r) }
func (copySharer) Load(r StepResult) StepResult  { return copyResult(r) }

func copyResult(r StepResult) StepResult {
	r.Output = deepcopy.Copy(r.Output)
	r.Metadata = deepcopy.CopyMap(r.Metadata)
	if r.Children != nil {
		kids := make([]StepResult, len(r.Children))
		for i, c := range r.Children {
			kids[i] = copyResult(c)
		}
		r.Children = kids
	}
	return r
}

// execCache runs a cache step.
func (ex *Executor) execCache(ctx context.Context, r *run, n *node, in any, res *StepResult) error {
	start := monoNow()
	key, cacheErr := ex.cacheKey(ctx, r, n, in)
	if cacheErr == nil {
		v, ok, err := n.cache.Get(ctx, key)
		cached, isResult := v.(StepResult)
		switch {
		case err != nil:
			cacheErr = fmt.Errorf("cache get: %w", err)
		case ok && !isResult:
			cacheErr = fmt.Errorf("cache get: value is a %T, not a StepResult", v)
		case ok:
			*res = ex.sharer.Load(cached)
			res.Path, res.RunID = n.path, r.runID
			res.Usage = Usage{}
			res.Latency = monoNow() - start
			res.setMeta(MetaCacheHit, true)
			if ex.recorder != nil {
				ex.emit(ctx, Event{Kind: EventCacheHit, RunID: r.runID, Path: n.path})
			}
			return nil
		}
	}
	err := ex.exec(ctx, r, n.wrapped, in, res)
	if err == nil && cacheErr == nil {
		if serr := n.cache.Set(ctx, key, ex.sharer.Store(*res), n.cacheTTL); serr != nil {
			cacheErr = fmt.Errorf("cache set: %w", serr)
		}
	}
	res.setMeta(MetaCacheHit, false)
	if cacheErr != nil {
		res.setMeta(MetaCacheError, cacheErr.Error())
	}
	return err
}

func (ex *Executor) cacheKey(ctx context.Context, r *run, n *node, in any) (key string, err error) {
	if n.cacheKey != nil {
		defer func() {
			if v := recover(); v != nil {
				err = newPanicError(v)
			}
		}()
		key, err = n.cacheKey(ctx, in)
	} else {
		key, err = ex.keyer.Key(n.fingerprint, in, r.state.values(n.stateKeys))
	}
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	return key, nil
}
