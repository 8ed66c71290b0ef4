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
	// A branch whose share of the budget was already spent at the fork.
	return fmt.Sprintf("usage %+v exceeds a branch's share of the budget, exhausted at the fork", u)
}

// quota is the one place usage limits are enforced. Before an agent call the
// step reserves its estimate ([WithUsageEstimate]); after it, the estimate
// is replaced by the actual usage. It is safe for concurrent use: parallel
// branches share their run's quota.
type quota struct {
	limits Limits
	parent *quota // a parallel branch's share reports its usage up
	// Caps of a branch's share: the split of what remained at the fork.
	capCost   float64
	capTokens int64
	capped    bool

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
	if q.over(wouldBe) {
		return wouldBe, false
	}
	q.reserved = q.reserved.Add(est)
	return wouldBe, true
}

// over reports whether u breaches q: the run's limits, or a branch's share.
func (q *quota) over(u Usage) bool {
	if !q.capped {
		return q.limits.exceeds(u)
	}
	return (q.limits.MaxCostUSD > 0 && u.CostUSD > q.capCost+costEpsilon) ||
		(q.limits.MaxTokens > 0 && u.Tokens() > q.capTokens)
}

// split divides what remains of q evenly among n parallel branches: tokens
// with the remainder to the first branches, cost in equal parts. Each share
// reports its usage up to q. A nil quota splits into nil shares.
func (q *quota) split(n int) []*quota {
	shares := make([]*quota, n)
	if q == nil || n == 0 {
		return shares
	}
	q.mu.Lock()
	used := q.used.Add(q.reserved)
	cost, tokens := q.remaining(used)
	q.mu.Unlock()
	for i := range shares {
		t := tokens / int64(n)
		if int64(i) < tokens%int64(n) {
			t++
		}
		shares[i] = &quota{limits: q.limits, parent: q, capped: true, capCost: cost / float64(n), capTokens: t}
	}
	return shares
}

// breach returns the error of step p breaching q with usage used; the step
// completes it with its result (run.finishBreach).
func (q *quota) breach(p string, used Usage) *UsageLimitError {
	return &UsageLimitError{Step: p, Limits: q.effectiveLimits(), Used: used}
}

// effectiveLimits returns the limits q enforces: the run's, or a parallel
// branch's share of what remained at the fork.
func (q *quota) effectiveLimits() Limits {
	if !q.capped {
		return q.limits
	}
	l := Limits{}
	if q.limits.MaxCostUSD > 0 {
		l.MaxCostUSD = q.capCost
	}
	if q.limits.MaxTokens > 0 {
		l.MaxTokens = q.capTokens
	}
	return l
}

// remaining returns what the caps leave after used.
func (q *quota) remaining(used Usage) (float64, int64) {
	cost, tokens := q.limits.MaxCostUSD-used.CostUSD, q.limits.MaxTokens-used.Tokens()
	if q.capped {
		cost, tokens = q.capCost-used.CostUSD, q.capTokens-used.Tokens()
	}
	return max(cost, 0), max(tokens, 0)
}

// reconcile releases the reservation est and records the actual usage. It
// reports false, with the run's usage, when the actual usage breaches.
func (q *quota) reconcile(est, actual Usage) (Usage, bool) {
	if q.parent != nil {
		q.parent.record(actual)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reserved = q.reserved.sub(est)
	q.used = q.used.Add(actual)
	return q.used, !q.over(q.used)
}

// record adds usage spent by a branch's share to q and its ancestors.
func (q *quota) record(u Usage) {
	for ; q != nil; q = q.parent {
		q.mu.Lock()
		q.used = q.used.Add(u)
		q.mu.Unlock()
	}
}
