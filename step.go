package caudal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Step is a unit of a pipeline: an agent call or a construct around other
// steps. Steps are opaque values made by constructors ([AgentStep], [Func],
// [Cached]) and are immutable once made; the same Step may appear in several
// places of a graph. A Step must go through [Build] before
// [Executor.Execute] runs it. The zero Step is invalid.
//
// A Step is safe for concurrent use.
type Step struct {
	def *stepDef // what the user declared
	g   *graph   // what Build compiled; nil until built
}

// Name returns the step's name, or "" for the zero Step.
func (s Step) Name() string {
	if s.def == nil {
		return ""
	}
	return s.def.name
}

// Built reports whether s is the result of [Build].
func (s Step) Built() bool { return s.g != nil }

// Fingerprint identifies a built step graph: a hash of its structure — the
// kinds, names and branch names of its steps and the options that change
// their behaviour (a function option counts by its presence). A [Snapshot]
// records it, so that resuming on another pipeline, or on a changed one,
// fails ([ErrSnapshotMismatch]). It returns "" for a step that was not
// built.
func (s Step) Fingerprint() string {
	if s.g == nil {
		return ""
	}
	return s.g.fingerprint
}

type stepKind uint8

const (
	kindAgent stepKind = iota + 1
	kindCache
	kindSeq
	kindParallel
	kindLoop
	kindMap
	kindConditional
	kindRouter
	kindHuman
	kindRefineRound
)

var stepKindNames = [...]string{
	kindAgent: "agent", kindCache: "cache", kindSeq: "sequence", kindParallel: "parallel", kindLoop: "loop",
	kindMap: "map", kindConditional: "conditional", kindRouter: "router", kindHuman: "human input",
	kindRefineRound: "refine round",
}

func (k stepKind) String() string { return stepKindNames[k] }

// stepDef is a step as declared: the constructor's arguments after its
// options were applied. Option errors wait in errs until Build reports them
// with the step's path.
type stepDef struct {
	kind  stepKind
	name  string
	agent Agent
	errs  []error

	// Types recorded by Func, for build-time checks of typed sequences.
	inType, outType reflect.Type

	// Agent-step policies.
	retries     int
	backoff     backoffPolicy
	timeout     time.Duration
	promptProcs []processor
	outputProcs []processor
	validators  []validator
	fallback    *Step
	estimate    Usage
	// retryIf and maxRetryDuration narrow which failures are retried.
	retryIf          func(error) bool
	maxRetryDuration time.Duration

	// Every kind.
	updatesState bool

	// Control flow: children of a sequence, branches of a parallel,
	// conditional or router step, the body of a loop or map.
	children    []Step
	branchNames []string
	defaultStep *Step
	body        *Step

	flowConfig

	// Cache step.
	wrapped   *Step
	cache     Cache
	cacheKey  func(ctx context.Context, in any) (string, error)
	cacheTTL  time.Duration
	stateKeys []string
}

// flowConfig configures the control-flow kinds; a compiled node takes it as
// declared.
type flowConfig struct {
	merge         mergeConfig
	concurrency   int
	exitCond      func(ctx context.Context, out any) (bool, error)
	maxIterations int
	inputMapper   func(ctx context.Context, v any) (any, error)
	iterMapper    func(ctx context.Context, out any, iteration int) (any, error)
	outputMapper  func(ctx context.Context, v any) (any, error)
	itemsKey      string
	branchKey     func(ctx context.Context, in any) (string, error)
	message       string
	schema        any
}

// processor transforms a value: prompt processors run on an attempt's input
// before the agent, output processors on the agent's output.
type processor = func(ctx context.Context, v any) (any, error)

// validator checks an attempt's processed output.
type validator = func(ctx context.Context, output any) error

// AgentStep makes a step that calls agent. A nil agent is reported by
// [Build]. Its options are the agent-step policies: [WithRetries],
// [WithBackoff], [WithTimeout], [WithPromptProcessors],
// [WithOutputProcessors], [WithValidators], [WithFallback] and
// [WithUsageEstimate].
func AgentStep(name string, agent Agent, opts ...StepOption) Step {
	d := &stepDef{kind: kindAgent, name: name, agent: agent, backoff: defaultBackoff}
	d.apply(opts)
	return Step{def: d}
}

func (d *stepDef) apply(opts []StepOption) {
	for _, o := range opts {
		if o == nil {
			d.errs = append(d.errs, errors.New("nil StepOption"))
			continue
		}
		so := o.stepOption()
		if so.kinds&(1<<d.kind) == 0 {
			d.errs = append(d.errs, fmt.Errorf("option %s does not apply to %s steps", so.name, d.kind))
			continue
		}
		if err := so.apply(d); err != nil {
			d.errs = append(d.errs, fmt.Errorf("option %s: %w", so.name, err))
		}
	}
}

// StepOption configures a step at construction. An option that does not
// apply to the step's kind, or has an invalid value, is a [Build] error
// naming the step and the option.
type StepOption interface {
	stepOption() *stepOption
}

type stepOption struct {
	name  string
	kinds uint32 // bit set of stepKind
	apply func(*stepDef) error
}

func (o *stepOption) stepOption() *stepOption { return o }

func agentOption(name string, apply func(*stepDef) error) StepOption {
	return &stepOption{name: name, kinds: 1 << kindAgent, apply: apply}
}

func cacheOption(name string, apply func(*stepDef) error) StepOption {
	return &stepOption{name: name, kinds: 1 << kindCache, apply: apply}
}

func kindsOption(name string, kinds []stepKind, apply func(*stepDef) error) StepOption {
	var set uint32
	for _, k := range kinds {
		set |= 1 << k
	}
	return &stepOption{name: name, kinds: set, apply: apply}
}

// allKinds lists every kind a user can construct.
var allKinds = []stepKind{kindAgent, kindCache, kindSeq, kindParallel, kindLoop, kindMap, kindConditional, kindRouter, kindHuman}

// UpdatesContext makes the step merge its output into the run's [State] once
// it succeeds: a map[string]any output is deep-merged key by key (nested maps
// merged, other values replaced); a struct, or a pointer to one, is first
// turned into a map through its JSON encoding. Any other output fails the
// step. Inside a parallel branch or a loop iteration the merge lands in that
// branch's or iteration's state, and reaches the parent state when the
// branch or iteration is merged back.
func UpdatesContext() StepOption {
	return kindsOption("UpdatesContext", allKinds, func(d *stepDef) error {
		d.updatesState = true
		return nil
	})
}

// WithRetries sets how many times a failed attempt is retried: the step makes
// at most 1+n attempts. n must be >= 0. The default is 0.
func WithRetries(n int) StepOption {
	return agentOption("WithRetries", func(d *stepDef) error {
		if n < 0 {
			return fmt.Errorf("retries must be >= 0, got %d", n)
		}
		d.retries = n
		return nil
	})
}

// WithBackoff sets the delay before each retry: initial before the first,
// doubling each time up to max, each delay then drawn uniformly from its
// upper half (jitter). WithBackoff(0, 0) retries at once. The default is
// 100ms doubling up to 10s. initial must be >= 0 and max >= initial.
func WithBackoff(initial, max time.Duration) StepOption {
	return agentOption("WithBackoff", func(d *stepDef) error {
		if initial < 0 || max < initial {
			return fmt.Errorf("want 0 <= initial <= max, got initial %v, max %v", initial, max)
		}
		d.backoff = backoffPolicy{initial: initial, max: max}
		return nil
	})
}

// WithTimeout bounds each attempt to d through its context
// ([context.WithTimeoutCause]); the cause matches [ErrTimeout]. The timeout
// is cooperative: the agent runs on the caller's goroutine and must return
// once its context is done. An attempt that returns after its deadline fails
// with the timeout, whatever it returned. d must be > 0.
func WithTimeout(d time.Duration) StepOption {
	return agentOption("WithTimeout", func(s *stepDef) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be > 0, got %v", d)
		}
		s.timeout = d
		return nil
	})
}

// WithPromptProcessors adds processors applied, in order, to each attempt's
// input before the agent runs: each returns the value the next one (and
// finally the agent) receives. An error fails the attempt.
func WithPromptProcessors(p ...func(ctx context.Context, v any) (any, error)) StepOption {
	return agentOption("WithPromptProcessors", func(d *stepDef) error {
		for i, f := range p {
			if f == nil {
				return fmt.Errorf("processor %d is nil", i)
			}
		}
		d.promptProcs = append(d.promptProcs, p...)
		return nil
	})
}

// WithOutputProcessors adds processors applied, in order, to the agent's
// output before validation: each returns the value the next one receives.
// An error fails the attempt.
func WithOutputProcessors(p ...func(ctx context.Context, v any) (any, error)) StepOption {
	return agentOption("WithOutputProcessors", func(d *stepDef) error {
		for i, f := range p {
			if f == nil {
				return fmt.Errorf("processor %d is nil", i)
			}
		}
		d.outputProcs = append(d.outputProcs, p...)
		return nil
	})
}

// WithValidators adds validators run, in order, on each attempt's processed
// output. The first non-nil error rejects it: the attempt fails with a
// [*ValidationError] and the error's text becomes the feedback of the next
// attempt (see [Feedback]).
func WithValidators(v ...func(ctx context.Context, output any) error) StepOption {
	return agentOption("WithValidators", func(d *stepDef) error {
		for i, f := range v {
			if f == nil {
				return fmt.Errorf("validator %d is nil", i)
			}
		}
		d.validators = append(d.validators, v...)
		return nil
	})
}

// WithFallback sets the step run, with the same input, when every attempt
// has failed. The fallback's usage is added to the step's (money spent is
// money spent) and [MetaFallbackTriggered] and [MetaOriginalError] are set.
// Fallbacks may have fallbacks: [Build] rejects chains longer than 10 steps
// and chains that repeat a step name, with [ErrInfiniteFallback]. A pause,
// a budget breach or a cancelled context never triggers the fallback.
func WithFallback(s Step) StepOption {
	return agentOption("WithFallback", func(d *stepDef) error {
		if s.def == nil {
			return errors.New("fallback is the zero Step")
		}
		d.fallback = &s
		return nil
	})
}

// WithUsageEstimate sets what one attempt is expected to spend. When the run
// has [Limits], the estimate is reserved before each agent call — a call the
// remaining budget cannot cover is refused with [ErrUsageLimitExceeded] —
// and replaced by the actual usage afterwards.
func WithUsageEstimate(u Usage) StepOption {
	return agentOption("WithUsageEstimate", func(d *stepDef) error {
		if err := u.validate(); err != nil {
			return err
		}
		d.estimate = u
		return nil
	})
}

// String returns a readable identity of the step, e.g. `agent step "plan"`.
func (s Step) String() string {
	if s.def == nil {
		return "Step(zero)"
	}
	return fmt.Sprintf("%s step %q", s.def.kind, s.def.name)
}
