package optimize_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
	"github.com/caudal-go/caudal/optimize"
)

// cacheOn is the configuration of the cache optimization alone.
var cacheOn = optimize.Config{CacheOptimization: optimize.CacheConfig{Enabled: true}}

func memoryCache(tb testing.TB) *caudal.MemoryCache {
	tb.Helper()
	c, err := caudal.NewMemoryCache(1024)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// executors are the executors a differential test compares.
var executors = []struct {
	name string
	opts []caudal.Option
}{
	{"baseline", nil},
	{"optimized", []caudal.Option{optimize.Use(cacheOn)}},
}

// answering answers {"answer": in, "tokens": [...], "call": n}, writes
// its input to the state and counts its calls.
type answering struct{ calls atomic.Int32 }

func (a *answering) Run(ctx context.Context, in any) (caudal.Reply, error) {
	n := a.calls.Add(1)
	if st := caudal.StateFrom(ctx); st != nil {
		st.Set("seen", fmt.Sprint(in))
	}
	return caudal.Reply{
		Output: map[string]any{"answer": in, "tokens": []any{1.0, "two", map[string]any{"three": 3.0}}, "call": float64(n)},
		Usage:  caudal.Usage{CostUSD: 0.25},
	}, nil
}

// kindLog records the kinds and paths of the events.
type kindLog struct {
	mu     sync.Mutex
	events []string
}

func (l *kindLog) Record(_ context.Context, e *caudal.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("%v %s %v", e.Kind, e.Path, e.Success))
}

// unkeyable is a value no keyer can key.
var unkeyable = make(chan int)

// cacheOutcome is what a differential test compares of an execute.
type cacheOutcome struct {
	Output   any
	Hit      any
	CacheErr any
	Usage    caudal.Usage
	Attempts int
	State    map[string]any
	Err      string
}

// TestCacheEquivalence runs the baseline's cache semantics (the root's
// cache and issue 8 tests, condensed) on the baseline and on the
// optimized executor: every execute's output, cache hit, usage, attempts,
// state and events must be equal.
func TestCacheEquivalence(t *testing.T) {
	constructs := map[string]func(caudal.Step) caudal.Step{
		"root":     func(s caudal.Step) caudal.Step { return s },
		"sequence": func(s caudal.Step) caudal.Step { return caudal.Seq("seq", s) },
		"parallel branch": func(s caudal.Step) caudal.Step {
			return caudal.Parallel("par", caudal.Branch("b", s), caudal.WithMerge(caudal.ContextUpdate))
		},
		"loop iteration": func(s caudal.Step) caudal.Step { return caudal.Loop("loop", s, caudal.WithMaxIterations(1)) },
		"map item":       func(s caudal.Step) caudal.Step { return caudal.Map("m", s) },
	}
	tests := []struct {
		name      string
		construct string
		opts      []caudal.StepOption
		give      []any
		users     []string
	}{
		{name: "repeat hits", construct: "root", give: []any{"a", "a", "a"}},
		{name: "distinct inputs", construct: "root", give: []any{"a", "b", "a", "b"}},
		{name: "map key order", construct: "root", give: []any{map[string]any{"x": 1, "y": 2}, map[string]any{"y": 2.0, "x": 1.0}}},
		{name: "json round trip", construct: "root", give: []any{struct{ A []int }{[]int{1, 2}}, map[string]any{"A": []any{1.0, 2.0}}}},
		{name: "unexported fields", construct: "root", give: []any{struct{ a string }{"x"}, struct{ a string }{"y"}, struct{ a string }{"x"}}},
		{name: "state keys", construct: "root", opts: []caudal.StepOption{caudal.WithCacheStateKeys("user")}, give: []any{"q", "q", "q"}, users: []string{"ann", "bob", "ann"}},
		{name: "key func", construct: "root", opts: []caudal.StepOption{caudal.WithCacheKey(func(context.Context, any) (string, error) { return "one", nil })}, give: []any{"a", "b"}},
		{name: "unkeyable input", construct: "root", give: []any{map[string]any{"c": unkeyable}, map[string]any{"c": unkeyable}}},
		{name: "sequence", construct: "sequence", give: []any{"a", "a"}},
		{name: "parallel branch", construct: "parallel branch", give: []any{"a", "a"}},
		{name: "loop iteration", construct: "loop iteration", give: []any{"a", "a"}},
		{name: "map item", construct: "map item", give: []any{[]any{"a", "b", "a"}, []any{"b", "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [2][]cacheOutcome
			var events [2][]string
			for i, exe := range executors {
				agent := &answering{}
				log := &kindLog{}
				ex := newExecutor(t, append([]caudal.Option{caudal.WithSink(log)}, exe.opts...)...)
				step := build(t, constructs[tt.construct](caudal.Cached(caudal.AgentStep("w", agent, caudal.UpdatesContext()), memoryCache(t), tt.opts...)))
				for j, in := range tt.give {
					st := caudal.NewState(map[string]any{"user": "nobody"})
					if tt.users != nil {
						st = caudal.NewState(map[string]any{"user": tt.users[j]})
					}
					res, err := ex.Execute(t.Context(), step, in, caudal.WithState(st))
					o := cacheOutcome{Output: res.Output, Hit: res.Metadata[caudal.MetaCacheHit], CacheErr: res.Metadata[caudal.MetaCacheError], Usage: res.Usage, Attempts: res.Attempts, State: maps.Collect(st.All())}
					if err != nil {
						o.Err = err.Error()
					}
					got[i] = append(got[i], o)
				}
				events[i] = log.events
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("outcomes differ:\nbaseline  %+v\noptimized %+v", got[0], got[1])
			}
			if !reflect.DeepEqual(events[0], events[1]) {
				t.Errorf("events differ:\nbaseline  %v\noptimized %v", events[0], events[1])
			}
		})
	}
}

// TestCacheKeyCollision injects a hash that maps every encoding to one
// value: the keys still differ, and no input is served another's result,
// by the near cache, the flight group or the backend.
func TestCacheKeyCollision(t *testing.T) {
	defer optimize.SetKeyHash(func([]byte) uint64 { return 42 })()
	echo := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: fmt.Sprint("echo ", in)}, nil
	})
	ex := newExecutor(t, optimize.Use(cacheOn))
	step := build(t, caudal.Cached(caudal.AgentStep("echo", echo), memoryCache(t)))
	inputs := []any{"a", "b", 1.0, map[string]any{"x": "a"}, []any{"a"}, nil}
	for round := range 3 {
		var wg sync.WaitGroup
		for _, in := range inputs {
			wg.Go(func() {
				res, err := ex.Execute(t.Context(), step, in)
				if want := fmt.Sprint("echo ", in); err != nil || res.Output != want {
					t.Errorf("round %d: Execute(%v) = %v, %v; want %q", round, in, res.Output, err, want)
				}
			})
		}
		wg.Wait()
	}
	k1, _ := optimize.FastKeyer.Key("fp", "a", nil)
	k2, _ := optimize.FastKeyer.Key("fp", "b", nil)
	if k1 == k2 || optimize.HashOfKey(k1) != optimize.HashOfKey(k2) {
		t.Errorf("keys %q and %q; want different keys with the same hash", k1, k2)
	}
}

// TestFastKey checks that keys are deterministic across processes (a
// fixed value), printable ASCII, apart for different inputs and alike for
// a value and its JSON round trip.
func TestFastKey(t *testing.T) {
	type query struct {
		Model  string `json:"model"`
		Prompt string `json:"prompt"`
	}
	roundTrip := func(v any) any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name      string
		give      any
		giveState map[string]any
		alike     any // keys alike with give
		apart     any // keys apart from give
	}{
		{name: "string", give: "hello", alike: "hello", apart: "hellp"},
		{name: "struct and its json", give: query{"m", "p"}, alike: roundTrip(query{"m", "p"}), apart: query{"m", "q"}},
		{name: "numbers", give: map[string]any{"n": 1}, alike: map[string]any{"n": 1.0}, apart: map[string]any{"n": 2}},
		{name: "binary", give: []byte{0, '%', 0xff}, alike: []byte{0, '%', 0xff}, apart: []byte{0, '%', 0xfe}},
		{name: "state", give: "q", giveState: map[string]any{"u": "ann"}, alike: "q", apart: "q"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := func(v any, st map[string]any) string {
				k, err := optimize.FastKeyer.Key("fingerprint", v, st)
				if err != nil {
					t.Fatal(err)
				}
				return k
			}
			k := key(tt.give, tt.giveState)
			if got := key(tt.alike, tt.giveState); got != k {
				t.Errorf("Key(%v) = %q; want %q, Key(%v)'s", tt.alike, got, k, tt.give)
			}
			if got := key(tt.apart, nil); got == k {
				t.Errorf("Key(%v) = Key(%v) = %q; want them apart", tt.apart, tt.give, k)
			}
			if strings.IndexFunc(k, func(r rune) bool { return r < 0x20 || r >= 0x7f }) >= 0 {
				t.Errorf("Key(%v) = %q; want printable ASCII", tt.give, k)
			}
		})
	}
	// A fixed value: another process, or a resumed run, computes the same.
	const want = "ck4:C2ZpbmdlcnByaW50SnMFaGVsbG8A"
	if got, _ := optimize.FastKeyer.Key("fingerprint", "hello", nil); got != want {
		t.Errorf("Key(hello) = %q; want %q", got, want)
	}
}

// TestSharerIsolates checks that no holder of a result the sharer handed
// out can change what another reads: neither the result stored from a
// caller's own, nor any hit, at any depth, nor the metadata.
func TestSharerIsolates(t *testing.T) {
	type point struct{ X, Y float64 }
	type withSlice struct{ S []string }
	tests := []struct {
		name   string
		give   func() any
		mutate func(any)
	}{
		{"nested map", func() any { return map[string]any{"m": map[string]any{"k": "v"}} }, func(v any) { v.(map[string]any)["m"].(map[string]any)["k"] = "x" }},
		{"flat slice", func() any { return map[string]any{"s": []any{1.0, "a"}} }, func(v any) { v.(map[string]any)["s"].([]any)[0] = "x" }},
		{"slice of maps", func() any { return []any{1.0, map[string]any{"k": "v"}} }, func(v any) { v.([]any)[1].(map[string]any)["k"] = "x" }},
		{"strings", func() any { return []string{"a"} }, func(v any) { v.([]string)[0] = "x" }},
		{"bytes", func() any { return []byte("a") }, func(v any) { v.([]byte)[0] = 'x' }},
		{"pointer", func() any { return &point{1, 2} }, func(v any) { v.(*point).X = 9 }},
		{"struct with a slice", func() any { return map[string]any{"w": withSlice{[]string{"a"}}} }, func(v any) { v.(map[string]any)["w"].(withSlice).S[0] = "x" }},
		{"immutable struct in a slice", func() any { return []any{point{1, 2}} }, func(v any) { v.([]any)[0] = point{9, 9} }},
	}
	// Hits come from the sharer's Load (a backend's entry) or from the
	// near cache, which copies by the plan it made when it took the entry.
	n := optimize.NewNear(optimize.CacheConfig{})
	loaders := map[string]func(stored caudal.StepResult) func() caudal.StepResult{
		"sharer": func(stored caudal.StepResult) func() caudal.StepResult {
			return func() caudal.StepResult { return optimize.Sharer.Load(stored) }
		},
		"near": func(stored caudal.StepResult) func() caudal.StepResult {
			n.Set(site, "k", stored, 0)
			return func() caudal.StepResult {
				hit, ok := n.Get(site, "k")
				if !ok {
					t.Fatal("near cache miss")
				}
				return hit
			}
		},
	}
	for _, tt := range tests {
		for via, loader := range loaders {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				orig := caudal.StepResult{Output: tt.give(), Metadata: map[string]any{"note": map[string]any{"k": "v"}}}
				stored := optimize.Sharer.Store(orig)
				tt.mutate(orig.Output) // the caller changes its own result
				orig.Metadata["note"].(map[string]any)["k"] = "x"
				load := loader(stored)
				hit := load()
				tt.mutate(hit.Output) // a caller changes its hit
				hit.Metadata["note"].(map[string]any)["k"] = "x"
				hit.Metadata["extra"] = true
				again := load()
				if want := tt.give(); !reflect.DeepEqual(again.Output, want) || !reflect.DeepEqual(stored.Output, want) {
					t.Errorf("after mutations, stored %#v, hit %#v; want %#v", stored.Output, again.Output, want)
				}
				if want := map[string]any{"note": map[string]any{"k": "v"}}; !reflect.DeepEqual(again.Metadata, want) {
					t.Errorf("metadata %v; want %v", again.Metadata, want)
				}
			})
		}
	}
}

// TestSharerSharesImmutable checks that an output no caller can change is
// handed out as is: loading it allocates nothing but the metadata.
func TestSharerSharesImmutable(t *testing.T) {
	type answer struct {
		Text  string
		Score float64
		At    time.Time
	}
	tests := []struct {
		name string
		give any
	}{
		{"string", "the answer"},
		{"struct", answer{"the answer", 0.9, time.Unix(0, 0).UTC()}},
		{"array", [3]int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored := optimize.Sharer.Store(caudal.StepResult{Output: tt.give})
			allocs := testing.AllocsPerRun(100, func() { _ = optimize.Sharer.Load(stored) })
			if allocs != 0 {
				t.Errorf("Load(%T) allocates %v times; want 0", tt.give, allocs)
			}
		})
	}
}

// TestCacheHitsConcurrentlyMutated has concurrent callers mutate their
// hits, all of them, at every depth: under -race, any sharing of a
// mutable part is reported; and every caller reads the cached answer.
func TestCacheHitsConcurrentlyMutated(t *testing.T) {
	agent := &answering{}
	ex := newExecutor(t, optimize.Use(cacheOn))
	step := build(t, caudal.Cached(caudal.AgentStep("w", agent), memoryCache(t)))
	first, err := ex.Execute(t.Context(), step, "q")
	if err != nil {
		t.Fatal(err)
	}
	want := deepcopy.Copy(first.Output)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				res, err := ex.Execute(t.Context(), step, "q")
				if err != nil || !reflect.DeepEqual(res.Output, want) {
					t.Errorf("hit = %v, %v; want %v", res.Output, err, want)
					return
				}
				out := res.Output.(map[string]any)
				out["answer"] = "tampered"
				out["tokens"].([]any)[0] = "tampered"
				out["tokens"].([]any)[2].(map[string]any)["three"] = "tampered"
				res.Metadata["x"] = 1
			}
		})
	}
	wg.Wait()
	first.Output.(map[string]any)["tokens"].([]any)[0] = "tampered"
	if agent.calls.Load() != 1 {
		t.Errorf("agent calls = %d; want 1", agent.calls.Load())
	}
}

// blocking is an agent that counts its calls and waits for release.
type blocking struct {
	calls   atomic.Int32
	release chan struct{}
}

func (b *blocking) Run(ctx context.Context, in any) (caudal.Reply, error) {
	b.calls.Add(1)
	select {
	case <-b.release:
		return caudal.Reply{Output: map[string]any{"answer": in}}, nil
	case <-ctx.Done():
		return caudal.Reply{}, context.Cause(ctx)
	}
}

// TestCacheConcurrentMisses checks the flight group through an executor:
// 16 concurrent identical misses call the agent once, all get its answer
// (one a miss, the others hits); WithoutFlight lets each call it.
func TestCacheConcurrentMisses(t *testing.T) {
	tests := []struct {
		name      string
		give      optimize.CacheConfig
		wantCalls int32
	}{
		{"flight", optimize.CacheConfig{Enabled: true}, 1},
		{"without flight", optimize.CacheConfig{Enabled: true, WithoutFlight: true}, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				agent := &blocking{release: make(chan struct{})}
				ex := newExecutor(t, optimize.Use(optimize.Config{CacheOptimization: tt.give}))
				step := build(t, caudal.Cached(caudal.AgentStep("slow", agent), memoryCache(t)))
				var wg sync.WaitGroup
				var misses atomic.Int32
				for range 16 {
					wg.Go(func() {
						res, err := ex.Execute(t.Context(), step, "q")
						if err != nil || res.Output.(map[string]any)["answer"] != "q" {
							t.Errorf("Execute = %v, %v; want the answer", res.Output, err)
						}
						if res.Metadata[caudal.MetaCacheHit] == false {
							misses.Add(1)
						}
					})
				}
				synctest.Wait() // all 16 have missed: in the agent, or waiting for it
				close(agent.release)
				wg.Wait()
				if got := agent.calls.Load(); got != tt.wantCalls {
					t.Errorf("agent calls = %d; want %d", got, tt.wantCalls)
				}
				if got := misses.Load(); got != tt.wantCalls {
					t.Errorf("misses = %d; want %d", got, tt.wantCalls)
				}
			})
		})
	}
}

var site = engine.Site{Node: new(int), Path: "step", ID: engine.NewSiteID()}

// TestFlight checks the flight group's contract directly.
func TestFlight(t *testing.T) {
	t.Run("waiter's context ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := optimize.NewFlight()
			release := make(chan struct{})
			var leader sync.WaitGroup
			leader.Go(func() {
				v, err, shared := f.Do(t.Context(), site, "k", func() (any, error) { <-release; return "v", nil })
				if v != "v" || err != nil || shared {
					t.Errorf("leader Do = %v, %v, %v; want v, nil, false", v, err, shared)
				}
			})
			synctest.Wait()
			cause := errors.New("waiter gave up")
			ctx, cancel := context.WithCancelCause(t.Context())
			cancel(cause)
			if _, err, shared := f.Do(ctx, site, "k", func() (any, error) { return "other", nil }); !errors.Is(err, cause) || !shared {
				t.Errorf("waiter Do = %v, %v; want its cause, shared", err, shared)
			}
			close(release)
			leader.Wait()
		})
	})
	t.Run("leader's context ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := optimize.NewFlight()
			ctx, cancel := context.WithCancel(t.Context())
			var runs atomic.Int32
			fn := func(ctx context.Context) func() (any, error) {
				return func() (any, error) {
					runs.Add(1)
					<-ctx.Done()
					return nil, ctx.Err()
				}
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if _, err, shared := f.Do(ctx, site, "k", fn(ctx)); !errors.Is(err, context.Canceled) || shared {
					t.Errorf("leader Do = %v, %v; want its own cancellation", err, shared)
				}
			})
			synctest.Wait()
			wctx, wcancel := context.WithTimeout(t.Context(), time.Hour)
			defer wcancel()
			wg.Go(func() {
				v, err, shared := f.Do(wctx, site, "k", func() (any, error) { runs.Add(1); return "mine", nil })
				if v != "mine" || err != nil || shared {
					t.Errorf("waiter Do = %v, %v, %v; want to run fn itself: mine, nil, false", v, err, shared)
				}
			})
			synctest.Wait()
			cancel()
			wg.Wait()
			if runs.Load() != 2 {
				t.Errorf("runs = %d; want 2", runs.Load())
			}
		})
	})
	t.Run("panic", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := optimize.NewFlight()
			release := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					_, err, _ := f.Do(t.Context(), site, "k", func() (any, error) { <-release; panic("boom") })
					if pe, ok := errors.AsType[*caudal.PanicError](err); !ok || pe.Value != "boom" {
						t.Errorf("Do = %v; want a *PanicError of boom", err)
					}
				})
			}
			synctest.Wait()
			close(release)
			wg.Wait()
			if v, err, _ := f.Do(t.Context(), site, "k", func() (any, error) { return "after", nil }); v != "after" || err != nil {
				t.Errorf("Do after a panic = %v, %v; want after", v, err)
			}
		})
	})
	t.Run("sites apart", func(t *testing.T) {
		f := optimize.NewFlight()
		other := engine.Site{Node: new(int), ID: engine.NewSiteID()}
		var got []any
		_, _, _ = f.Do(t.Context(), site, "k", func() (any, error) {
			v, _, _ := f.Do(t.Context(), other, "k", func() (any, error) { return "other", nil })
			got = append(got, v)
			return "first", nil
		})
		if !reflect.DeepEqual(got, []any{"other"}) {
			t.Errorf("inner Do of another site = %v; want its own run", got)
		}
	})
}

// countingCache counts the backend's Gets.
type countingCache struct {
	caudal.Cache
	gets atomic.Int32
}

func (c *countingCache) Get(ctx context.Context, key string) (any, bool, error) {
	c.gets.Add(1)
	return c.Cache.Get(ctx, key)
}

// TestNearKnobs checks that each knob of the near cache changes what it
// holds and serves.
func TestNearKnobs(t *testing.T) {
	r := func(s string) caudal.StepResult { return caudal.StepResult{Output: s} }
	tests := []struct {
		name      string
		give      optimize.CacheConfig
		collide   bool // every key in one shard
		stepTTL   time.Duration
		wait      time.Duration
		wantLen   int
		wantFound []bool // keys a, b, c after the waits
	}{
		{name: "capacity holds all", give: optimize.CacheConfig{Shards: 1, Capacity: 3}, wantLen: 3, wantFound: []bool{true, true, true}},
		{name: "capacity evicts the least recently used", give: optimize.CacheConfig{Shards: 1, Capacity: 2}, wantLen: 2, wantFound: []bool{true, false, true}},
		{name: "one shard of two is full", give: optimize.CacheConfig{Shards: 2, Capacity: 4}, collide: true, wantLen: 2, wantFound: []bool{true, false, true}},
		{name: "one shard holds all", give: optimize.CacheConfig{Shards: 1, Capacity: 4}, collide: true, wantLen: 3, wantFound: []bool{true, true, true}},
		{name: "ttl not reached", give: optimize.CacheConfig{Shards: 1, TTL: 2 * time.Second}, wait: time.Second, wantLen: 3, wantFound: []bool{true, true, true}},
		{name: "ttl reached", give: optimize.CacheConfig{Shards: 1, TTL: time.Second}, wait: time.Second, wantLen: 3, wantFound: []bool{false, false, false}},
		{name: "step ttl shorter", give: optimize.CacheConfig{Shards: 1, TTL: time.Hour}, stepTTL: time.Second, wait: time.Second, wantLen: 3, wantFound: []bool{false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				if tt.collide {
					defer optimize.SetKeyHash(func([]byte) uint64 { return 7 })()
				}
				n := optimize.NewNear(tt.give)
				key := func(s string) string {
					k, err := optimize.FastKeyer.Key("fp", s, nil)
					if err != nil {
						t.Fatal(err)
					}
					return k
				}
				n.Set(site, key("a"), r("a"), tt.stepTTL)
				n.Set(site, key("b"), r("b"), tt.stepTTL)
				n.Get(site, key("a")) // a is used: c evicts b
				n.Set(site, key("c"), r("c"), tt.stepTTL)
				time.Sleep(tt.wait)
				var found []bool
				for _, s := range []string{"a", "b", "c"} {
					got, ok := n.Get(site, key(s))
					if ok && got.Output != s {
						t.Errorf("Get(%s) = %v; want %s", s, got.Output, s)
					}
					found = append(found, ok)
				}
				if !reflect.DeepEqual(found, tt.wantFound) || n.Len() != tt.wantLen {
					t.Errorf("found %v, len %d; want %v, %d", found, n.Len(), tt.wantFound, tt.wantLen)
				}
			})
		})
	}
}

// TestNearAdmitsOnTheSecondOffer checks the doorkeeper: a result offered
// once is not kept, offered twice it is.
func TestNearAdmitsOnTheSecondOffer(t *testing.T) {
	n := optimize.NewNearRaw(optimize.CacheConfig{})
	r := caudal.StepResult{Output: "x"}
	n.Set(site, "k", r, 0)
	if _, ok := n.Get(site, "k"); ok {
		t.Fatal("a result offered once was kept")
	}
	n.Set(site, "k", r, 0)
	if got, ok := n.Get(site, "k"); !ok || got.Output != "x" {
		t.Fatalf("a result offered twice: Get = %v, %v; want x, true", got.Output, ok)
	}
}

// TestNearInExecutor checks that the near cache stands in front of the
// backend, for its TTL, and that StatsOf counts its entries.
func TestNearInExecutor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		backend := &countingCache{Cache: memoryCache(t)}
		ex := newExecutor(t, optimize.Use(optimize.Config{CacheOptimization: optimize.CacheConfig{Enabled: true, TTL: time.Second}}))
		step := build(t, caudal.Cached(caudal.AgentStep("w", &answering{}), backend))
		for range 6 {
			if _, err := ex.Execute(t.Context(), step, "q"); err != nil {
				t.Fatal(err)
			}
		}
		// The miss, then the first hit (the doorkeeper marks the key) and
		// the second (the near cache takes it) are the backend's; the rest
		// are the near cache's.
		if got := backend.gets.Load(); got != 3 {
			t.Errorf("backend gets = %d; want 3 (the miss and two hits; the near cache serves the rest)", got)
		}
		time.Sleep(time.Second)
		res, err := ex.Execute(t.Context(), step, "q")
		if err != nil || res.Metadata[caudal.MetaCacheHit] != true || backend.gets.Load() != 4 {
			t.Errorf("after the near TTL: hit %v, backend gets %d, %v; want a hit from the backend", res.Metadata[caudal.MetaCacheHit], backend.gets.Load(), err)
		}
		if st, _ := optimize.StatsOf(ex); st.CacheEntries != 1 {
			t.Errorf("CacheEntries = %d; want 1", st.CacheEntries)
		}
	})
}

// TestNearConcurrent hammers one small near cache from several goroutines
// (under -race): every Get returns what was Set for its key.
func TestNearConcurrent(t *testing.T) {
	n := optimize.NewNear(optimize.CacheConfig{Shards: 2, Capacity: 8})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint("k", (i*7+g)%24)
				if got, ok := n.Get(site, k); ok && got.Output != k {
					t.Errorf("Get(%s) = %v", k, got.Output)
					return
				}
				n.Set(site, k, caudal.StepResult{Output: k}, 0)
			}
		})
	}
	wg.Wait()
	if l := n.Len(); l > 8 {
		t.Errorf("Len = %d; want <= 8", l)
	}
}

// hitPayload is a cached answer of about 2 KB, as the cache workload's.
func hitPayload() map[string]any {
	logprobs := make([]any, 64)
	for i := range logprobs {
		logprobs[i] = -float64(i%17) / 7
	}
	return map[string]any{
		"id": "cmpl", "model": "m", "text": strings.Repeat("The cached answer. ", 64),
		"logprobs": logprobs, "usage": map[string]any{"prompt_tokens": 212.0},
	}
}

func BenchmarkCacheKey(b *testing.B) {
	in := map[string]any{"model": "bench-model", "prompt": "hot question 1"}
	for _, k := range []struct {
		name  string
		keyer engine.Keyer
	}{{"impl=baseline", engine.CanonicalKeyer{}}, {"impl=fast", optimize.FastKeyer}} {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.keyer.Key("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", in, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCacheShare(b *testing.B) {
	stored := caudal.StepResult{Output: hitPayload(), Metadata: map[string]any{"m": "x"}}
	b.Run("impl=baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = deepcopy.Copy(stored.Output)
			_ = deepcopy.CopyMap(stored.Metadata)
		}
	})
	b.Run("impl=fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = optimize.Sharer.Load(stored)
		}
	})
}

func BenchmarkNearGet(b *testing.B) {
	n := optimize.NewNear(optimize.CacheConfig{})
	key, _ := optimize.FastKeyer.Key("fp", map[string]any{"prompt": "q"}, nil)
	n.Set(site, key, caudal.StepResult{Output: "x"}, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := n.Get(site, key); !ok {
				b.Error("miss")
				return
			}
		}
	})
}

// BenchmarkNearMissFull is a lookup that misses in a full near cache
// whose entries are one key's, for many steps gone since (the builds of a
// pipeline rebuilt per request): the common case of a fresh input.
func BenchmarkNearMissFull(b *testing.B) {
	n := optimize.NewNear(optimize.CacheConfig{})
	key, _ := optimize.FastKeyer.Key("fp", map[string]any{"prompt": "q"}, nil)
	for i := range 8192 {
		n.Set(engine.Site{Path: "gone", ID: uint64(1e6 + i)}, key, caudal.StepResult{Output: "x"}, 0)
	}
	live := engine.Site{Path: "live", ID: 42}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := n.Get(live, key); ok {
			b.Fatal("hit")
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	for _, exe := range executors {
		b.Run("impl="+exe.name, func(b *testing.B) {
			agent := caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
				return caudal.Reply{Output: hitPayload()}, nil
			})
			ex := newExecutor(b, exe.opts...)
			step := build(b, caudal.Cached(caudal.AgentStep("lookup", agent), memoryCache(b)))
			in := map[string]any{"model": "bench-model", "prompt": "hot question"}
			if _, err := ex.Execute(b.Context(), step, in); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ex.Execute(b.Context(), step, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
