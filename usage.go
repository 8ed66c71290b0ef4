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

// Tokens returns PromptTokens + CompletionTokens, saturating at
// math.MaxInt64.
func (u Usage) Tokens() int64 { return addTokens(u.PromptTokens, u.CompletionTokens) }

// Add returns the sum of u and v. Token counts saturate at math.MaxInt64
// rather than wrap around, so a sum never falls back under a limit.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		PromptTokens:     addTokens(u.PromptTokens, v.PromptTokens),
		CompletionTokens: addTokens(u.CompletionTokens, v.CompletionTokens),
		CostUSD:          u.CostUSD + v.CostUSD,
	}
}

// addTokens adds two token counts, saturating at the int64 bounds.
func addTokens(a, b int64) int64 {
	s := a + b
	if (s^a)&(s^b) < 0 {
		// Overflow: a and b share a sign that s lacks. Saturate toward it:
		// MaxInt64 for a >= 0, MinInt64 (its complement) for a < 0.
		return math.MaxInt64 ^ (a >> 63)
	}
	return s
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
	if u.PromptTokens > math.MaxInt64-u.CompletionTokens {
		return fmt.Errorf("usage tokens overflow int64, got %+v", u)
	}
	return nil
}

// sane reports whether an agent's usage report can be booked: both counts
// non-negative (no sign bit in either), their sum in range, the cost finite
// and non-negative (NaN fails the comparisons).
func (u Usage) sane() bool {
	return u.PromptTokens|u.CompletionTokens >= 0 && u.PromptTokens <= math.MaxInt64-u.CompletionTokens &&
		u.CostUSD >= 0 && u.CostUSD <= math.MaxFloat64
}

// checkReported validates the usage an agent reported for step instance
// p: a report that is not sane is an error — a permanent one: asking again
// cannot mend a broken meter. (A call, not inlined: inlined into the bare
// path, it measured slower.)
func checkReported(p string, u Usage) error {
	if u.sane() {
		return nil
	}
	return Permanent(fmt.Errorf("caudal: step %q: agent reported invalid usage: %w", p, u.validate()))
}

// Limits caps what one run may spend. A zero field means no limit on that
// dimension; a negative one is an error from [New] or [Executor.Execute].
// A limit is breached when usage goes strictly past it.
//
// How far a run can go past a limit: each agent call (a router's picker
// included) reserves its estimate ([WithUsageEstimate]; none reserves
// nothing) before it starts and is refused when the budget cannot cover
// it; its actual usage replaces the estimate when it returns. A parallel
// branch spends from its share of what remained at the fork, and every
// share also books against the run's limits, however the branches and the
// items of concurrent maps nest. So a run whose calls never spend more than
// their estimates never goes past a limit; otherwise it goes past by at
// most the sum, over the calls already running when the budget ran out, of
// what each spent beyond its estimate. Once a breach is seen, no further
// call starts and the run fails with a [*UsageLimitError].
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
// is replaced by the actual usage. It is safe for concurrent use.
//
// The quotas of one run form a tree: the run's at the root, and a share
// for each parallel branch, split from what its parent had left at the
// fork. Every reservation and every actual usage is booked at every level
// from the share up to the root, under the run's one lock, and must fit
// each: a share never spends past its own cap nor past the run's limits,
// however many shares were split concurrently (the items of a concurrent
// map that each fork a parallel step, say).
type quota struct {
	limits Limits
	parent *quota // nil for the run's quota
	mu     *sync.Mutex
	// Caps of a branch's share: the split of what remained at the fork.
	capCost   float64
	capTokens int64
	capped    bool

	used     Usage // protected by mu
	reserved Usage // protected by mu
}

func newQuota(l Limits) *quota { return &quota{limits: l, mu: new(sync.Mutex)} }

// reserve books est against the remaining budget of q and each of its
// ancestors. It reports false, with the breached quota and the usage the
// booking would have reached there, when one of them cannot cover it.
func (q *quota) reserve(est Usage) (*quota, Usage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for l := q; l != nil; l = l.parent {
		if wouldBe := l.used.Add(l.reserved).Add(est); l.over(wouldBe) {
			return l, wouldBe, false
		}
	}
	for l := q; l != nil; l = l.parent {
		l.reserved = l.reserved.Add(est)
	}
	return q, Usage{}, true
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
// books its usage up to q and q's ancestors. A nil quota splits into nil
// shares.
func (q *quota) split(n int) []*quota {
	shares := make([]*quota, n)
	if q == nil || n == 0 {
		return shares
	}
	q.mu.Lock()
	cost, tokens := q.remaining(q.used.Add(q.reserved))
	q.mu.Unlock()
	for i := range shares {
		t := tokens / int64(n)
		if int64(i) < tokens%int64(n) {
			t++
		}
		shares[i] = &quota{limits: q.limits, parent: q, mu: q.mu, capped: true, capCost: cost / float64(n), capTokens: t}
	}
	return shares
}

// breach returns the error of step p breaching quota at with usage used;
// the step completes it with its result (run.finishBreach).
func (q *quota) breach(p string, at *quota, used Usage) *UsageLimitError {
	return &UsageLimitError{Step: p, Limits: at.effectiveLimits(), Used: used}
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

// reconcile releases the reservation est and books the actual usage at q
// and each of its ancestors. It reports false, with the first quota
// breached (from q up) and its usage, when the actual usage breaches one.
func (q *quota) reconcile(est, actual Usage) (*quota, Usage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var at *quota
	var atUsed Usage
	for l := q; l != nil; l = l.parent {
		l.reserved = l.reserved.sub(est)
		l.used = l.used.Add(actual)
		if at == nil && l.over(l.used) {
			at, atUsed = l, l.used
		}
	}
	if at != nil {
		return at, atUsed, false
	}
	return q, q.used, true
}
