package caudal_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/caudal-go/caudal"
)

func TestLimits(t *testing.T) {
	use := caudal.Usage{PromptTokens: 60, CompletionTokens: 40, CostUSD: 0.10}
	tests := []struct {
		name         string
		give         caudal.Limits
		giveEstimate caudal.Usage
		giveRetries  int
		giveFails    int
		wantCalls    int
		wantBreach   bool
		wantOutput   any
	}{
		{"within limits", caudal.Limits{MaxTokens: 100, MaxCostUSD: 0.10}, caudal.Usage{}, 0, 0, 1, false, "in"},
		{"tokens breached after the call", caudal.Limits{MaxTokens: 99}, caudal.Usage{}, 0, 0, 1, true, "in"},
		{"cost breached after the call", caudal.Limits{MaxCostUSD: 0.09}, caudal.Usage{}, 0, 0, 1, true, "in"},
		{"estimate refused before the call", caudal.Limits{MaxTokens: 100}, caudal.Usage{PromptTokens: 101}, 0, 0, 0, true, nil},
		{"retries stop at the budget", caudal.Limits{MaxTokens: 250}, caudal.Usage{PromptTokens: 100}, 5, 5, 2, true, nil},
		{"zero limits mean none", caudal.Limits{}, caudal.Usage{}, 0, 0, 1, false, "in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			agent := caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
				calls++
				if calls <= tt.giveFails {
					return caudal.Reply{Usage: use}, errors.New("flaky")
				}
				return caudal.Reply{Output: in, Usage: use}, nil
			})
			step := caudal.AgentStep("s", agent, caudal.WithRetries(tt.giveRetries), caudal.WithBackoff(0, 0),
				caudal.WithUsageEstimate(tt.giveEstimate))
			res, err := execute(t, mustNew(t), step, "in", caudal.WithLimits(tt.give))
			if errors.Is(err, caudal.ErrUsageLimitExceeded) != tt.wantBreach || calls != tt.wantCalls {
				t.Fatalf("err = %v, calls %d; want breach %v, %d calls", err, calls, tt.wantBreach, tt.wantCalls)
			}
			if res.Output != tt.wantOutput || res.Success == tt.wantBreach {
				t.Errorf("result = %+v; want output %v, success %v", res, tt.wantOutput, !tt.wantBreach)
			}
			if !tt.wantBreach {
				return
			}
			var ue *caudal.UsageLimitError
			if !errors.As(err, &ue) || ue.Step != "s" || ue.Result.Path != "s" || ue.Result.Usage != res.Usage {
				t.Errorf("UsageLimitError = %+v; want the step and the partial result", ue)
			}
		})
	}
}

func TestLimitsFromNewAreTheDefault(t *testing.T) {
	agent := costly("x", caudal.Usage{CompletionTokens: 10}, nil)
	ex := mustNew(t, caudal.WithLimits(caudal.Limits{MaxTokens: 5}))
	step := mustBuild(t, caudal.AgentStep("s", agent))
	if _, err := ex.Execute(t.Context(), step, nil); !errors.Is(err, caudal.ErrUsageLimitExceeded) {
		t.Errorf("Execute with New's limits: err = %v; want a breach", err)
	}
	if _, err := ex.Execute(t.Context(), step, nil, caudal.WithLimits(caudal.Limits{MaxTokens: 50})); err != nil {
		t.Errorf("Execute with its own limits: err = %v; want nil", err)
	}
}

func TestLimitsConcurrentExecutesAreIndependent(t *testing.T) {
	ex := mustNew(t)
	step := mustBuild(t, caudal.AgentStep("s", costly("x", caudal.Usage{CompletionTokens: 10}, nil)))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := ex.Execute(t.Context(), step, nil, caudal.WithLimits(caudal.Limits{MaxTokens: 10})); err != nil {
				t.Errorf("Execute: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestInvalidLimits(t *testing.T) {
	tests := []struct {
		name string
		give caudal.Limits
	}{
		{"negative cost", caudal.Limits{MaxCostUSD: -1}},
		{"negative tokens", caudal.Limits{MaxTokens: -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := caudal.New(caudal.WithLimits(tt.give)); err == nil {
				t.Errorf("New(WithLimits(%+v)) = nil error; want one", tt.give)
			}
			step := mustBuild(t, caudal.AgentStep("s", echoAgent{}))
			res, err := mustNew(t).Execute(t.Context(), step, nil, caudal.WithLimits(tt.give))
			if err == nil || res.Success {
				t.Errorf("Execute(WithLimits(%+v)) = %+v, %v; want an error", tt.give, res, err)
			}
		})
	}
}
