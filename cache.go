package caudal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
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

// cacheNode is a compiled cache step: a policy around the step it wraps,
// which it stands in for (same name, same instance path).
type cacheNode struct {
	nodeBase
	inner       node
	cache       Cache
	key         func(ctx context.Context, in any) (string, error)
	ttl         time.Duration
	stateKeys   []string
	fingerprint string // the wrapped step's, for canonical keys
}

func (c *cacheNode) kids() []node { return c.inner.kids() }

// exec serves the result from the cache, or runs the wrapped step and
// stores its result when it succeeds.
func (c *cacheNode) exec(ctx context.Context, r *run, p string, in any, res *StepResult) error {
	strat := r.strategy(&c.nodeBase)
	start := r.rt.mono()
	key, cacheErr := c.cacheKey(ctx, p, strat, in)
	if r.replay != nil && r.replay.inside(p) {
		// The run was inside this step when it paused or stopped: go back in,
		// whatever the cache holds now — alone, not through a flight group,
		// for another resumed run carries another answer — and store the
		// result under the key of the run's input (a resumed run starts from
		// the snapshot's).
		return c.miss(ctx, r, p, in, res, strat, key, cacheErr, false)
	}
	if cacheErr == nil {
		v, ok, err := c.cache.Get(ctx, key)
		cached, isResult := v.(StepResult)
		switch {
		case err != nil:
			cacheErr = fmt.Errorf("cache get: %w", err)
		case ok && !isResult:
			cacheErr = fmt.Errorf("cache get: value is a %T, not a StepResult", v)
		case ok:
			*res = strat.Sharer.Load(cached)
			res.Path, res.RunID = p, r.runID
			res.Usage = Usage{}
			res.Latency = r.rt.mono() - start
			res.setMeta(MetaCacheHit, true)
			if r.rec != nil {
				r.emit(ctx, Event{Kind: EventCacheHit, Path: p})
			}
			return nil
		}
	}
	return c.miss(ctx, r, p, in, res, strat, key, cacheErr, true)
}

// miss runs the wrapped step — once for concurrent misses on one key when
// share is set and the strategy has a flight group — and stores a success
// under key.
func (c *cacheNode) miss(ctx context.Context, r *run, p string, in any, res *StepResult, strat *engine.Strategy[StepResult], key string, cacheErr error, share bool) error {
	var (
		err    error
		stored any // the result as the cache keeps it, once made
	)
	if fg := strat.Flight; fg != nil && cacheErr == nil && share {
		var v any
		var shared bool
		v, err, shared = fg.Do(ctx, c.site, key, func() (any, error) {
			if err := c.inner.exec(ctx, r, p, in, res); err != nil {
				return nil, err
			}
			return strat.Sharer.Store(*res), nil
		})
		if shared {
			if got, ok := v.(StepResult); ok && err == nil {
				*res = strat.Sharer.Load(got)
				res.Path, res.RunID, res.Usage = p, r.runID, Usage{}
				res.setMeta(MetaCacheHit, true)
				return nil
			}
			res.Path, res.RunID, res.Success = p, r.runID, false
			if err == nil {
				err = fmt.Errorf("caudal: step %q: flight group shared a %T, not a StepResult", p, v)
			}
			res.Feedback = err.Error()
			return err
		}
		stored = v // the leader's result, already prepared for sharing
	} else {
		err = c.inner.exec(ctx, r, p, in, res)
	}
	if err == nil && cacheErr == nil {
		if stored == nil {
			stored = strat.Sharer.Store(*res)
		}
		if serr := c.cache.Set(ctx, key, stored, c.ttl); serr != nil {
			cacheErr = fmt.Errorf("cache set: %w", serr)
		}
	}
	res.setMeta(MetaCacheHit, false)
	if cacheErr != nil {
		res.setMeta(MetaCacheError, cacheErr.Error())
	}
	return err
}

// cacheKey computes the execution's key: the key func's, or the strategy's
// keyer's over the fingerprint, the input and the selected state values.
func (c *cacheNode) cacheKey(ctx context.Context, p string, strat *engine.Strategy[StepResult], in any) (key string, err error) {
	if c.key != nil {
		key, err = guard2(ctx, p, in, c.key)
	} else {
		var values map[string]any
		if len(c.stateKeys) > 0 {
			if st := StateFrom(ctx); st != nil {
				values = st.s.Values(c.stateKeys)
			}
		}
		key, err = strat.Keyer.Key(c.fingerprint, in, values)
	}
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	return key, nil
}
