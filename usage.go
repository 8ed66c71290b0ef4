package caudal

import (
	"fmt"
	"math"
	"sync"
)

// Usage is what an agent call consumed: tokens and money.
type Usage struct {
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CostUSD          float64 `json:"cost_usd"`
}

// Tokens returns PromptTokens + CompletionTokens.
func (u Usage) Tokens() int64 { return u.PromptTokens + u.CompletionTokens }

// Add returns the sum of u and v.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + v.PromptTokens,
		CompletionTokens: u.CompletionTokens + v.CompletionTokens,
		CostUSD:          u.CostUSD + v.CostUSD,
	}
}

func (u Usage) sub(v Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens - v.PromptTokens,
		CompletionTokens: u.CompletionTokens - v.CompletionTokens,
		CostUSD:          u.CostUSD - v.CostUSD,
	}
}

func (u Usage) validate() error {
	if u.PromptTokens < 0 || u.CompletionTokens < 0 || u.CostUSD < 0 || math.IsNaN(u.CostUSD) || math.IsInf(u.CostUSD, 0) {
		return fmt.Errorf("usage must be finite and non-negative, got %+v", u)
	}
	return nil
}

// Limits caps what one run may spend. A zero field means no limit on that
// dimension; a negative one is an error from [New] or [Executor.Execute].
// A limit is breached when usage goes strictly past it.
type Limits struct {
	MaxCostUSD float64 `json:"max_cost_usd,omitempty"`
	MaxTokens  int64   `json:"max_tokens,omitempty"`
}

func (l Limits) validate() error {
	if l.MaxCostUSD < 0 || math.IsNaN(l.MaxCostUSD) || math.IsInf(l.MaxCostUSD, 0) {
		return fmt.Errorf("caudal: WithLimits: MaxCostUSD must be finite and >= 0, got %v", l.MaxCostUSD)
	}
	if l.MaxTokens < 0 {
		return fmt.Errorf("caudal: WithLimits: MaxTokens must be >= 0, got %d", l.MaxTokens)
	}
	return nil
}

func (l Limits) isZero() bool { return l == Limits{} }

// costEpsilon absorbs float rounding when summing many small costs.
const costEpsilon = 1e-12

// exceeds reports whether u goes past the limits.
func (l Limits) exceeds(u Usage) bool {
	return (l.MaxCostUSD > 0 && u.CostUSD > l.MaxCostUSD+costEpsilon) ||
		(l.MaxTokens > 0 && u.Tokens() > l.MaxTokens)
}

func (l Limits) describeBreach(u Usage) string {
	switch {
	case l.MaxCostUSD > 0 && u.CostUSD > l.MaxCostUSD+costEpsilon:
		return fmt.Sprintf("cost $%.6f > limit $%.6f", u.CostUSD, l.MaxCostUSD)
	case l.MaxTokens > 0 && u.Tokens() > l.MaxTokens:
		return fmt.Sprintf("tokens %d > limit %d", u.Tokens(), l.MaxTokens)
	}
	return fmt.Sprintf("usage %+v within %+v", u, l)
}

// quota is the one place usage limits are enforced. Before an agent call the
// step reserves its estimate ([WithUsageEstimate]); after it, the estimate
// is replaced by the actual usage. It is safe for concurrent use: parallel
// branches share their run's quota.
type quota struct {
	limits Limits

	mu       sync.Mutex // protects used and reserved
	used     Usage
	reserved Usage
}

func newQuota(l Limits) *quota { return &quota{limits: l} }

// reserve books est against the remaining budget. It reports false, with
// the usage the booking would have reached, when the budget cannot cover it.
func (q *quota) reserve(est Usage) (Usage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	wouldBe := q.used.Add(q.reserved).Add(est)
	if q.limits.exceeds(wouldBe) {
		return wouldBe, false
	}
	q.reserved = q.reserved.Add(est)
	return wouldBe, true
}

// reconcile releases the reservation est and records the actual usage. It
// reports false, with the run's usage, when the actual usage breaches.
func (q *quota) reconcile(est, actual Usage) (Usage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reserved = q.reserved.sub(est)
	q.used = q.used.Add(actual)
	return q.used, !q.limits.exceeds(q.used)
}
