package caudal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/caudal-go/caudal/internal/backoff"
)

// maxFallbackChain is the longest fallback chain Build accepts, counting
// the primary step.
const maxFallbackChain = 10

// node is a compiled step: everything the hot path needs, precomputed.
type node struct {
	kind stepKind
	name string
	path string

	// Agent step.
	agent       Agent
	streamer    StreamAgent // agent as a StreamAgent, or nil
	attempts    int
	backoff     backoffPolicy
	timeout     time.Duration
	timeoutErr  *timeoutError
	promptProcs []Processor
	outputProcs []Processor
	validators  []Validator
	fallback    *node
	plain       bool // no timeout, processors or validators: the attempt is the agent call
	bare        bool // plain, one attempt, no fallback, not streaming: see execBare
	estimate    Usage
	inType      reflect.Type
	outType     reflect.Type

	// Cache step.
	wrapped   *node
	cache     Cache
	cacheKey  func(ctx context.Context, in any) (string, error)
	cacheTTL  time.Duration
	stateKeys []string

	// fingerprint identifies the step's behaviour for cache keys.
	fingerprint string
}

// backoffPolicy is the delay schedule between attempts.
type backoffPolicy struct{ initial, max time.Duration }

var defaultBackoff = backoffPolicy{initial: 100 * time.Millisecond, max: 10 * time.Second}

// delay returns the jittered delay before retry n (n >= 1).
func (b backoffPolicy) delay(n int) time.Duration { return backoff.Delay(b.initial, b.max, n) }

// Build validates the whole graph under s once and compiles it for
// [Executor.Execute]. It reports every problem it finds, each naming its
// step path, joined with [errors.Join]: a missing agent, an invalid or
// inapplicable option, a fallback chain that repeats a name or exceeds 10
// steps ([ErrInfiniteFallback]), a cache step without a cache. Building a
// built step compiles it again.
func Build(s Step) (Step, error) {
	if s.def == nil {
		return Step{}, errors.New("caudal: Build: zero Step")
	}
	b := &builder{}
	n := b.compile(s.def, "", nil)
	if err := errors.Join(b.errs...); err != nil {
		return Step{def: s.def}, err
	}
	return Step{def: s.def, node: n}, nil
}

type builder struct {
	errs []error
}

func (b *builder) fail(path string, err error) {
	b.errs = append(b.errs, fmt.Errorf("caudal: step %q: %w", path, err))
}

// compile turns d into a node at path parent/d.name. chain holds the names
// of the fallback chain d belongs to (nil outside fallbacks).
func (b *builder) compile(d *stepDef, parent string, chain []string) *node {
	path := d.name
	if parent != "" {
		path = parent + "/" + d.name
	}
	n := &node{kind: d.kind, name: d.name, path: path}
	if d.name == "" {
		b.fail(path, errors.New("step has no name"))
	} else if strings.Contains(d.name, "/") {
		b.fail(path, fmt.Errorf("step name %q contains '/', the path separator", d.name))
	}
	for _, err := range d.errs {
		b.fail(path, err)
	}
	switch d.kind {
	case kindAgent:
		b.compileAgent(n, d, chain)
	case kindCache:
		if d.wrapped != nil {
			// The cache step stands in for the step it wraps: same path.
			n.wrapped = b.compile(d.wrapped.def, parent, chain)
			n.fingerprint = n.wrapped.fingerprint
		}
		n.cache, n.cacheKey, n.cacheTTL, n.stateKeys = d.cache, d.cacheKey, d.cacheTTL, d.stateKeys
	}
	return n
}

func (b *builder) compileAgent(n *node, d *stepDef, chain []string) {
	switch a := d.agent.(type) {
	case nil:
		b.fail(n.path, errors.New("missing agent"))
	case AgentFunc:
		if a == nil {
			b.fail(n.path, errors.New("missing agent (nil AgentFunc)"))
		}
	}
	if v := reflect.ValueOf(d.agent); v.IsValid() && v.Kind() == reflect.Pointer && v.IsNil() {
		b.fail(n.path, fmt.Errorf("missing agent (nil %T)", d.agent))
	}
	n.agent = d.agent
	n.streamer, _ = d.agent.(StreamAgent)
	n.attempts = 1 + d.retries
	n.backoff = d.backoff
	n.timeout = d.timeout
	if d.timeout > 0 {
		n.timeoutErr = &timeoutError{path: n.path, timeout: d.timeout}
	}
	n.promptProcs, n.outputProcs, n.validators = d.promptProcs, d.outputProcs, d.validators
	n.estimate = d.estimate
	n.plain = d.timeout == 0 && len(d.promptProcs) == 0 && len(d.outputProcs) == 0 && len(d.validators) == 0
	n.inType, n.outType = d.inType, d.outType
	n.fingerprint = fmt.Sprintf("agent:%s:%T:retries=%d:timeout=%v:prompt=%d:output=%d:validators=%d",
		d.name, d.agent, d.retries, d.timeout, len(d.promptProcs), len(d.outputProcs), len(d.validators))

	n.bare = n.plain && n.attempts == 1 && d.fallback == nil && n.streamer == nil
	if d.fallback == nil {
		return
	}
	fb := d.fallback.def
	if chain == nil {
		chain = []string{d.name}
	}
	for _, name := range chain {
		if name == fb.name {
			b.fail(n.path, fmt.Errorf("fallback %q: %w: %s", fb.name, ErrInfiniteFallback, strings.Join(append(chain, fb.name), " -> ")))
			return
		}
	}
	if len(chain)+1 > maxFallbackChain {
		b.fail(n.path, fmt.Errorf("fallback %q: %w: chain longer than %d steps", fb.name, ErrInfiniteFallback, maxFallbackChain))
		return
	}
	next := append(chain[:len(chain):len(chain)], fb.name)
	n.fallback = b.compile(fb, n.path, next)
	n.fingerprint += ":fallback=" + n.fallback.fingerprint
}
