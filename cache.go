package caudal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/internal/lru"
)

// Cache stores step results for cache steps ([Cached]). Values are
// [StepResult]s; a backend that serializes them must round-trip them
// through encoding/json. A Get or Set error — or panic, which becomes a
// [*PanicError] — is not fatal: the step runs uncached and
// [MetaCacheError] records the error. Implementations must be safe for
// concurrent use.
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
// the one [WithCacheKey] computes or, by default, a SHA-256 over:
//
//   - which step it is: the structure of s and of everything in it (kinds,
//     names, agent types, policies), the fingerprint of the pipeline it was
//     built in ([Step.Fingerprint]) and its position there — so two
//     different steps, or one step in two different pipelines, never share
//     entries; the same pipeline built twice does (its agents are told
//     apart by type, not by their configuration: a pipeline whose agents'
//     configuration changes what they answer should say so in a step name
//     or use [WithCacheKey]);
//   - the input, and the state values named by [WithCacheStateKeys], read
//     from the state the step sees (its branch's, iteration's or item's).
//     Values equal in their JSON form key alike, so a run resumed from a
//     snapshot finds its entries; a value JSON does not represent
//     faithfully (unexported fields, say) is keyed by its whole Go value.
//
// Only successful results are stored, with the state writes the step made.
// A hit returns a copy of the stored result with [MetaCacheHit] true, zero
// usage and zero attempts (it spent and tried nothing), and re-applies
// those writes, so the state after a hit is the state after a miss; a miss
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
	if near := strat.Near; near != nil && cacheErr == nil {
		if loaded, ok := near.Get(c.site, key, start); ok {
			if writes, werr := storedWrites(loaded); werr == nil {
				return c.served(ctx, r, p, strat, loaded, true, writes, res, start)
			}
		}
	}
	if cacheErr == nil {
		v, ok, err := c.get(ctx, p, key)
		cached, isResult := v.(StepResult)
		switch {
		case err != nil:
			cacheErr = fmt.Errorf("cache get: %w", err)
		case ok && !isResult:
			cacheErr = fmt.Errorf("cache get: value is a %T, not a StepResult", v)
		case ok:
			writes, werr := storedWrites(cached)
			if werr != nil {
				cacheErr = fmt.Errorf("cache get: %w", werr)
				break
			}
			if near := strat.Near; near != nil {
				near.Set(c.site, key, cached, c.ttl, start)
			}
			return c.served(ctx, r, p, strat, cached, false, writes, res, start)
		}
	}
	return c.miss(ctx, r, p, in, res, strat, key, cacheErr, true)
}

// served answers an execution with a stored result (loaded: already
// prepared for this caller by the near cache).
func (c *cacheNode) served(ctx context.Context, r *run, p string, strat *engine.Strategy[StepResult], cached StepResult, loaded bool, writes []Write, res *StepResult, start time.Duration) error {
	if loaded {
		*res = cached
	} else {
		*res = strat.Sharer.Load(cached)
	}
	if err := c.hit(ctx, r, p, writes, res); err != nil {
		return err
	}
	res.Latency = r.rt.mono() - start
	if r.rec != nil {
		r.emit(ctx, Event{Kind: EventCacheHit, Path: p})
	}
	return nil
}

// hit completes res, a stored result prepared for this caller, and
// re-applies the state writes the step made when it ran: a hit has the
// effects of a miss, but spends nothing and makes no attempt.
func (c *cacheNode) hit(ctx context.Context, r *run, p string, writes []Write, res *StepResult) error {
	delete(res.Metadata, metaStateWrites)
	res.Path, res.RunID, res.Usage, res.Attempts = p, r.runID, Usage{}, 0
	res.setMeta(MetaCacheHit, true)
	if st := StateFrom(ctx); st != nil && len(writes) > 0 {
		if err := st.apply(copyWrites(writes)); err != nil {
			return r.failStep(res, stepError(p, "cache hit: state writes", err))
		}
	}
	return nil
}

// get calls the cache's Get; a panic in it is an error like any other of
// the backend's.
func (c *cacheNode) get(ctx context.Context, p, key string) (v any, ok bool, err error) {
	defer func() {
		if x := recover(); x != nil {
			v, ok, err = nil, false, newPanicError(p, x)
		}
	}()
	return c.cache.Get(ctx, key)
}

// set calls the cache's Set; a panic in it is an error like any other of
// the backend's.
func (c *cacheNode) set(ctx context.Context, p, key string, v any) (err error) {
	defer func() {
		if x := recover(); x != nil {
			err = newPanicError(p, x)
		}
	}()
	return c.cache.Set(ctx, key, v, c.ttl)
}

// metaStateWrites is the metadata key under which a stored result keeps
// the state writes the step made ([]Write), which a hit re-applies. It
// never reaches a caller's result.
const metaStateWrites = "caudal.state_writes"

// storedWrites returns the state writes kept with a stored result, also in
// the form a backend that serializes through encoding/json gives back.
func storedWrites(cached StepResult) ([]Write, error) {
	v, ok := cached.Metadata[metaStateWrites]
	if !ok || v == nil {
		return nil, nil
	}
	if ws, ok := v.([]Write); ok {
		return ws, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("stored state writes: %w", err)
	}
	var ws []Write
	if err := json.Unmarshal(b, &ws); err != nil {
		return nil, fmt.Errorf("stored state writes: %w", err)
	}
	for _, w := range ws {
		if len(w.Path) == 0 {
			return nil, errors.New("stored state writes: a write without a path")
		}
	}
	return ws, nil
}

// miss runs the wrapped step — once for concurrent misses on one key when
// share is set and the strategy has a flight group — and stores a success
// under key, with the state writes it made.
func (c *cacheNode) miss(ctx context.Context, r *run, p string, in any, res *StepResult, strat *engine.Strategy[StepResult], key string, cacheErr error, share bool) error {
	var (
		err    error
		stored any // the result as the cache keeps it, once made
	)
	st := StateFrom(ctx)
	run := func() (StepResult, error) {
		// The writes the step makes are kept with its result, for hits.
		var mark int
		if st != nil {
			st.s.StartLog()
			defer st.s.StopLog()
			mark = st.s.LogLen()
		}
		if err := c.inner.exec(ctx, r, p, in, res); err != nil {
			return StepResult{}, err
		}
		keep := strat.Sharer.Store(*res)
		if st != nil {
			if ws := st.s.LogSince(mark); len(ws) > 0 {
				meta := make(map[string]any, len(keep.Metadata)+1)
				maps.Copy(meta, keep.Metadata)
				meta[metaStateWrites] = ws
				keep.Metadata = meta
			}
		}
		return keep, nil
	}
	if fg := strat.Flight; fg != nil && cacheErr == nil && share {
		var v any
		var shared bool
		v, err, shared = fg.Do(ctx, c.site, key, func() (any, error) { return run() })
		if shared {
			if got, ok := v.(StepResult); ok && err == nil {
				writes, werr := storedWrites(got)
				if werr == nil {
					*res = strat.Sharer.Load(got)
					return c.hit(ctx, r, p, writes, res)
				}
				err = werr
			}
			res.Path, res.RunID, res.Success = p, r.runID, false
			if err == nil {
				err = stepError(p, "", fmt.Errorf("flight group shared a %T, not a StepResult", v))
			}
			res.Feedback = err.Error()
			return err
		}
		stored = v // the leader's result, already prepared for sharing
	} else {
		var keep StepResult
		if keep, err = run(); err == nil {
			stored = keep
		}
	}
	if err == nil && cacheErr == nil {
		if serr := c.set(ctx, p, key, stored); serr != nil {
			cacheErr = fmt.Errorf("cache set: %w", serr)
		}
	}
	res.setMeta(MetaCacheHit, false)
	if cacheErr != nil {
		res.setMeta(MetaCacheError, cacheErr.Error())
	}
	return err
}

// keyOf calls keyer; a panic in it (a value's MarshalJSON, say) is an
// error, which makes the execution run uncached.
func (c *cacheNode) keyOf(keyer engine.Keyer, p string, in any, values map[string]any) (key string, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = newPanicError(p, x)
		}
	}()
	return keyer.Key(c.fingerprint, in, values)
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
		key, err = c.keyOf(strat.Keyer, p, in, values)
	}
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	return key, nil
}
