package caudal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caudal-go/caudal"
)

// counting returns {"answer": in} and counts its calls.
type counting struct{ calls int }

func (c *counting) Run(_ context.Context, in any) (caudal.Reply, error) {
	c.calls++
	return caudal.Reply{Output: map[string]any{"answer": in, "call": c.calls}, Usage: caudal.Usage{CostUSD: 0.5}}, nil
}

func newCache(t *testing.T, capacity int) *caudal.MemoryCache {
	t.Helper()
	c, err := caudal.NewMemoryCache(capacity)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCacheHitMiss(t *testing.T) {
	tests := []struct {
		name      string
		give      []any
		wantCalls int
		wantHits  []bool
	}{
		{"repeat hits", []any{"a", "a", "a"}, 1, []bool{false, true, true}},
		{"distinct inputs miss", []any{"a", "b", "a"}, 2, []bool{false, false, true}},
		{"map key order does not matter", []any{map[string]any{"x": 1, "y": 2}, map[string]any{"y": 2, "x": 1}}, 1, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := &counting{}
			ex := mustNew(t)
			step := mustBuild(t, caudal.Cached(caudal.AgentStep("ask", agent), newCache(t, 16)))
			for i, in := range tt.give {
				res, err := ex.Execute(t.Context(), step, in)
				if err != nil {
					t.Fatal(err)
				}
				if res.Metadata[caudal.MetaCacheHit] != tt.wantHits[i] || res.Path != "ask" {
					t.Errorf("Execute #%d: cache_hit %v path %q; want %v, ask", i, res.Metadata[caudal.MetaCacheHit], res.Path, tt.wantHits[i])
				}
				if tt.wantHits[i] && res.Usage != (caudal.Usage{}) {
					t.Errorf("Execute #%d: a hit reports usage %+v; want none", i, res.Usage)
				}
			}
			if agent.calls != tt.wantCalls {
				t.Errorf("agent calls = %d; want %d", agent.calls, tt.wantCalls)
			}
		})
	}
}

func TestCacheStoresOnlySuccesses(t *testing.T) {
	agent := &failN{n: 1, err: errors.New("flaky")}
	ex := mustNew(t)
	step := mustBuild(t, caudal.Cached(caudal.AgentStep("s", agent), newCache(t, 4)))
	if _, err := ex.Execute(t.Context(), step, "x"); err == nil {
		t.Fatal("first Execute succeeded; want the agent's failure")
	}
	res, err := ex.Execute(t.Context(), step, "x")
	if err != nil || res.Metadata[caudal.MetaCacheHit] != false || agent.calls != 2 {
		t.Errorf("second Execute = %+v, %v, calls %d; want a miss that runs the agent", res, err, agent.calls)
	}
}

func TestCacheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agent := &counting{}
		ex := mustNew(t)
		step := mustBuild(t, caudal.Cached(caudal.AgentStep("s", agent), newCache(t, 4), caudal.WithCacheTTL(time.Minute)))
		for _, wait := range []time.Duration{0, 30 * time.Second, 31 * time.Second} {
			time.Sleep(wait)
			if _, err := ex.Execute(t.Context(), step, "x"); err != nil {
				t.Fatal(err)
			}
		}
		// 0s miss, 30s hit, 61s expired → miss.
		if agent.calls != 2 {
			t.Errorf("agent calls = %d; want 2 (the entry expires after a minute)", agent.calls)
		}
	})
}

func TestCacheHitIsACopy(t *testing.T) {
	ex := mustNew(t)
	step := mustBuild(t, caudal.Cached(caudal.AgentStep("s", &counting{}), newCache(t, 4)))
	first, _ := ex.Execute(t.Context(), step, "x")
	first.Output.(map[string]any)["answer"] = "tampered"
	second, _ := ex.Execute(t.Context(), step, "x")
	second.Output.(map[string]any)["answer"] = "tampered again"
	third, _ := ex.Execute(t.Context(), step, "x")
	if got := third.Output.(map[string]any)["answer"]; got != "x" {
		t.Errorf("cached answer = %v; want x (callers must not change the cache)", got)
	}
}

func TestCacheKeys(t *testing.T) {
	byUser := func(ctx context.Context, in any) (string, error) {
		user, _ := caudal.Get[string](caudal.StateFrom(ctx), "user")
		return user + ":" + fmt.Sprint(in), nil
	}
	tests := []struct {
		name      string
		giveOpt   caudal.StepOption
		giveUsers []string
		wantCalls int
	}{
		{"state ignored by default", nil, []string{"ann", "bob"}, 1},
		{"state keys split the cache", caudal.WithCacheStateKeys("user"), []string{"ann", "bob", "ann"}, 2},
		{"explicit key func", caudal.WithCacheKey(byUser), []string{"ann", "bob", "bob"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := &counting{}
			var opts []caudal.StepOption
			if tt.giveOpt != nil {
				opts = append(opts, tt.giveOpt)
			}
			ex := mustNew(t)
			step := mustBuild(t, caudal.Cached(caudal.AgentStep("s", agent), newCache(t, 8), opts...))
			for _, u := range tt.giveUsers {
				st := caudal.NewState(map[string]any{"user": u})
				if _, err := ex.Execute(t.Context(), step, "q", caudal.WithState(st)); err != nil {
					t.Fatal(err)
				}
			}
			if agent.calls != tt.wantCalls {
				t.Errorf("agent calls = %d; want %d", agent.calls, tt.wantCalls)
			}
		})
	}
}

func TestCacheKeyErrorRunsUncached(t *testing.T) {
	agent := &counting{}
	ex := mustNew(t)
	step := mustBuild(t, caudal.Cached(caudal.AgentStep("s", agent), newCache(t, 4)))
	unencodable := map[string]any{"f": func() {}}
	for range 2 {
		res, err := ex.Execute(t.Context(), step, unencodable)
		if err != nil || !strings.Contains(fmt.Sprint(res.Metadata[caudal.MetaCacheError]), "cache key") {
			t.Errorf("Execute = %+v, %v; want success with a cache_error", res.Metadata, err)
		}
	}
	if agent.calls != 2 {
		t.Errorf("agent calls = %d; want 2", agent.calls)
	}
}

// brokenCache fails every call.
type brokenCache struct{}

func (brokenCache) Get(context.Context, string) (any, bool, error) {
	return nil, false, errors.New("connection refused")
}

func (brokenCache) Set(context.Context, string, any, time.Duration) error {
	return errors.New("connection refused")
}

func TestCacheBackendErrorRunsUncached(t *testing.T) {
	res, err := execute(t, mustNew(t), caudal.Cached(caudal.AgentStep("s", echoAgent{}), brokenCache{}), "x")
	if err != nil || res.Output != "x" || !strings.Contains(fmt.Sprint(res.Metadata[caudal.MetaCacheError]), "connection refused") {
		t.Errorf("Execute = %+v, %v; want the output and a cache_error", res, err)
	}
}

func TestMemoryCacheCapacity(t *testing.T) {
	if _, err := caudal.NewMemoryCache(0); err == nil {
		t.Error("NewMemoryCache(0) = nil error; want one")
	}
}
