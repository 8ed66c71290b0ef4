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

	// Every kind.
	updatesState bool

	// Control flow.
	children    []*node
	branchNames []string
	defaultNode *node
	body        *node
	flowConfig

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
	n := b.compile(s.def, "", "", nil)
	if err := errors.Join(b.errs...); err != nil {
		return Step{def: s.def}, err
	}
	return Step{def: s.def, node: n, needsState: b.needsState}, nil
}

type builder struct {
	errs       []error
	needsState bool // some step writes or reads the state
}

func (b *builder) fail(path string, err error) {
	b.errs = append(b.errs, fmt.Errorf("caudal: step %q: %w", path, err))
}

// compile turns d into a node at path parent/segment, where segment is
// d.name unless a branch name replaces it. chain holds the names of the
// fallback chain d belongs to (nil outside fallbacks).
func (b *builder) compile(d *stepDef, parent, segment string, chain []string) *node {
	if segment == "" {
		segment = d.name
	}
	path := segment
	if parent != "" {
		path = parent + "/" + segment
	}
	n := &node{kind: d.kind, name: d.name, path: path, updatesState: d.updatesState}
	if d.name == "" {
		b.fail(path, errors.New("step has no name"))
	} else if strings.Contains(d.name, "/") {
		b.fail(path, fmt.Errorf("step name %q contains '/', the path separator", d.name))
	}
	for _, err := range d.errs {
		b.fail(path, err)
	}
	if d.updatesState || d.itemsKey != "" {
		b.needsState = true
	}
	n.flowConfig, n.branchNames = d.flowConfig, d.branchNames
	switch d.kind {
	case kindAgent:
		b.compileAgent(n, d, chain)
	case kindCache:
		if d.wrapped != nil {
			// The cache step stands in for the step it wraps: same path.
			n.wrapped = b.compile(d.wrapped.def, parent, segment, chain)
			n.fingerprint = n.wrapped.fingerprint
			n.inType, n.outType = n.wrapped.inType, n.wrapped.outType
		}
		n.cache, n.cacheKey, n.cacheTTL, n.stateKeys = d.cache, d.cacheKey, d.cacheTTL, d.stateKeys
	case kindSeq, kindRefineRound:
		b.compileSeq(n, d)
	case kindParallel, kindConditional, kindRouter:
		b.compileBranches(n, d)
	case kindLoop, kindMap:
		if d.body != nil {
			n.body = b.compile(d.body.def, path, "", nil)
		}
	}
	if n.kind == kindRouter {
		b.checkAgent(n, d.agent)
		n.agent = d.agent
	}
	if n.concurrency == 0 && (n.kind == kindParallel || n.kind == kindRouter) {
		n.concurrency = defaultConcurrency()
	}
	return n
}

// compileSeq compiles a sequence's children and checks their names and the
// types between consecutive typed steps.
func (b *builder) compileSeq(n *node, d *stepDef) {
	seen := make(map[string]bool, len(d.children))
	for i, c := range d.children {
		if c.def == nil {
			b.fail(n.path, fmt.Errorf("step %d is the zero Step", i))
			continue
		}
		if seen[c.def.name] {
			b.fail(n.path, fmt.Errorf("duplicate step name %q: sibling paths must be unique", c.def.name))
		}
		seen[c.def.name] = true
		child := b.compile(c.def, n.path, "", nil)
		if len(n.children) > 0 {
			prev := n.children[len(n.children)-1]
			if prev.outType != nil && child.inType != nil && !prev.outType.AssignableTo(child.inType) {
				b.fail(child.path, fmt.Errorf("%w: input type %s does not accept %s, the output of %q",
					ErrTypeMismatch, child.inType, prev.outType, prev.path))
			}
		}
		n.children = append(n.children, child)
	}
	if n.kind == kindSeq && len(n.children) > 0 {
		n.inType, n.outType = n.children[0].inType, n.children[len(n.children)-1].outType
	}
}

// compileBranches compiles the branches of a parallel, conditional or
// router step; each branch's path segment is its branch name.
func (b *builder) compileBranches(n *node, d *stepDef) {
	seen := make(map[string]bool, len(d.branchNames))
	for i, c := range d.children {
		name := d.branchNames[i]
		if seen[name] {
			b.fail(n.path, fmt.Errorf("duplicate branch name %q", name))
		}
		if strings.Contains(name, "/") {
			b.fail(n.path, fmt.Errorf("branch name %q contains '/', the path separator", name))
		}
		seen[name] = true
		n.children = append(n.children, b.compile(c.def, n.path, name, nil))
	}
	if d.defaultStep != nil {
		n.defaultNode = b.compile(d.defaultStep.def, n.path, "default", nil)
	}
	if n.kind == kindConditional && len(n.children) == 0 && n.defaultNode == nil {
		b.fail(n.path, errors.New("conditional step has no branches"))
	}
	if n.kind == kindRouter && len(n.children) == 0 {
		b.fail(n.path, errors.New("router step has no branches"))
	}
	if n.merge.strategy != NoMerge || n.merge.fn != nil || len(n.merge.reducers) > 0 {
		b.needsState = true
	}
}

// checkAgent reports a missing agent.
func (b *builder) checkAgent(n *node, agent Agent) {
	switch a := agent.(type) {
	case nil:
		b.fail(n.path, errors.New("missing agent"))
	case AgentFunc:
		if a == nil {
			b.fail(n.path, errors.New("missing agent (nil AgentFunc)"))
		}
	}
	if v := reflect.ValueOf(agent); v.IsValid() && v.Kind() == reflect.Pointer && v.IsNil() {
		b.fail(n.path, fmt.Errorf("missing agent (nil %T)", agent))
	}
}

func (b *builder) compileAgent(n *node, d *stepDef, chain []string) {
	b.checkAgent(n, d.agent)
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

	n.bare = n.plain && n.attempts == 1 && d.fallback == nil && n.streamer == nil && !d.updatesState
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
	n.fallback = b.compile(fb, n.path, "", next)
	n.fingerprint += ":fallback=" + n.fallback.fingerprint
}
