package caudal

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/caudal-go/caudal/internal/engine"
)

// maxFallbackChain is the longest fallback chain Build accepts, counting
// the primary step.
const maxFallbackChain = 10

// graph is a built step graph: what [Executor.Execute] runs.
type graph struct {
	root        node
	rootPath    string // the root's instance path
	nodes       []node // every step, by id
	fingerprint string // hex of the root's digest
	pausable    bool   // some step is a human-input step
	needsState  bool   // some step reads or writes the state: Execute supplies one

	// The fast paths of a root step that nothing observes, meters or
	// journals, chosen here so that Execute does not look at kinds.
	bare    *agentNode // the root is a bare agent step
	bareSeq *seqNode   // the root is a sequence of bare agent steps
	agent   *agentNode // the root is an agent step without fallback or UpdatesContext

	// tuned holds the per-step switches of the first executor with a tuner
	// that ran this graph, so that its executions find them with an atomic
	// load instead of a map lookup (other executors look them up).
	tuned atomic.Pointer[tunedGraph]
	// firstExec is the id of the first executor with a tuner that ran
	// this graph (0: none yet), which keeps its switches in tuned.
	firstExec atomic.Uint64
}

// tunedGraph is a graph's per-step switches in one executor, known by its
// id (not a pointer: a graph outliving the executor must not keep it).
type tunedGraph struct {
	executor uint64
	slots    []*engine.Slot[StepResult]
	forget   runtime.Cleanup // deletes an executor's record when the graph goes; zero in the graph's own
}

// Build validates the whole graph under s once and compiles it for
// [Executor.Execute]. It reports every problem it finds, each naming its
// step path, joined with [errors.Join]: a missing agent, an invalid or
// inapplicable option, a name that is empty or holds a character instance
// paths reserve ('/', '#', '[', ']'), a fallback chain that repeats a name
// or exceeds 10 steps ([ErrInfiniteFallback]), a cache step without a
// cache. Building a built step compiles it again. Memory grows linearly
// with the size of the graph.
func Build(s Step) (Step, error) {
	if s.def == nil {
		return Step{}, errors.New("caudal: Build: zero Step")
	}
	b := &builder{}
	root := b.compile(s.def, place{fixed: true}, "")
	if err := errors.Join(b.errs...); err != nil {
		return Step{def: s.def}, err
	}
	g := &graph{root: root, rootPath: childPath("", root.base()), nodes: b.nodes, pausable: b.pausable, needsState: b.needsState}
	d := root.base().digest
	g.fingerprint = hex.EncodeToString(d[:])
	for _, n := range b.nodes {
		if c, ok := n.(*cacheNode); ok {
			c.fingerprint = cacheFingerprint(d, c)
		}
	}
	switch n := root.(type) {
	case *agentNode:
		switch {
		case n.bare:
			g.bare = n
		case n.fallback == nil && !n.updatesState:
			g.agent = n
		}
	case *seqNode:
		if !n.updatesState && !slices.Contains(n.bare, nil) {
			g.bareSeq = n
		}
	}
	return Step{def: s.def, g: g}, nil
}

// place is where in the graph a step is compiled.
type place struct {
	parent string   // the parent's static path ("" at the root)
	long   bool     // the parent's path is longer than maxStaticPath: so are its children's
	fixed  bool     // not inside a loop or map body
	chain  []string // the fallback chain the step belongs to (nil outside fallbacks)
}

type builder struct {
	errs       []error
	segs       []string // segments of the path being compiled, for errors
	nodes      []node
	needsState bool // some step writes or reads the state
	pausable   bool // some step pauses
}

func (b *builder) fail(err error) {
	var segs []string
	for _, s := range b.segs {
		if s != "" {
			segs = append(segs, s)
		}
	}
	b.errs = append(b.errs, fmt.Errorf("caudal: step %q: %w", strings.Join(segs, "/"), err))
}

// compile turns d into a node at pl. seg replaces d's name as its path
// segment when it is not "" (a branch's name).
func (b *builder) compile(d *stepDef, pl place, seg string) node {
	if seg == "" && d.kind != kindRefineRound {
		seg = d.name
	}
	b.segs = append(b.segs, seg)
	defer func() { b.segs = b.segs[:len(b.segs)-1] }()

	nb := nodeBase{kind: d.kind, name: d.name, seg: seg, updatesState: d.updatesState, in: d.inType, out: d.outType}
	if !pl.long {
		if p := join(pl.parent, seg); len(p) <= maxStaticPath {
			nb.path, nb.fixed = p, pl.fixed
		}
	}
	inner := place{parent: nb.path, long: nb.path == "", fixed: pl.fixed}
	b.checkName(d)
	for _, err := range d.errs {
		b.fail(err)
	}
	if d.updatesState || d.itemsKey != "" {
		b.needsState = true
	}

	var n node
	switch d.kind {
	case kindAgent:
		n = b.compileAgent(nb, d, pl)
	case kindCache:
		n = b.compileCache(nb, d, pl, seg)
	case kindSeq:
		n = b.compileSeq(nb, d, inner)
	case kindRefineRound:
		r := &roundNode{nodeBase: nb}
		r.generator = b.compile(d.children[0].def, inner, "")
		r.critic = b.compile(d.children[1].def, inner, "")
		n = r
	case kindParallel, kindRouter:
		n = b.compileParallel(nb, d, inner)
	case kindConditional:
		n = b.compileConditional(nb, d, inner)
	case kindLoop:
		l := &loopNode{
			nodeBase: nb, exitCond: d.exitCond, maxIterations: d.maxIterations,
			inMap: d.inputMapper, iterMap: d.iterMapper, outMap: d.outputMapper,
		}
		l.body = b.body(d, inner)
		n = l
	case kindMap:
		m := &mapNode{nodeBase: nb, itemsKey: d.itemsKey, concurrency: d.concurrency}
		m.body = b.body(d, inner)
		n = m
	case kindHuman:
		b.pausable = true
		n = &humanNode{nodeBase: nb, message: d.message, schema: d.schema}
	}
	b.finish(n, d)
	return n
}

// checkName reports a name that is missing or holds a reserved character.
func (b *builder) checkName(d *stepDef) {
	switch {
	case d.kind == kindRefineRound:
	case d.name == "":
		b.fail(errors.New("step has no name"))
	case strings.ContainsAny(d.name, "/#[]"):
		b.fail(fmt.Errorf("step name %q contains one of '/', '#', '[', ']', which instance paths reserve", d.name))
	}
}

// finish gives n its id, site and digest.
func (b *builder) finish(n node, d *stepDef) {
	nb := n.base()
	nb.id = len(b.nodes)
	b.nodes = append(b.nodes, n)
	nb.site = engine.Site{Node: n, Path: nb.path, ID: engine.NewSiteID(), Traits: traitsOf(n, d)}
	if d.kind == kindAgent || d.kind == kindRouter {
		nb.site.Agent = d.agent
	}
	h := sha256.New()
	h.Write([]byte(describe(n, d)))
	for _, k := range n.kids() {
		kd := k.base().digest
		h.Write(kd[:])
	}
	if c, ok := n.(*cacheNode); ok {
		kd := c.inner.base().digest
		h.Write(kd[:])
	}
	h.Sum(nb.digest[:0])
	nb.site.Shape = binary.LittleEndian.Uint64(nb.digest[:8])
}

// traitsOf returns what compiled step n, of definition d, does, for a
// tuner (engine.Traits).
func traitsOf(n node, d *stepDef) engine.Traits {
	switch n := n.(type) {
	case *agentNode:
		t := engine.Calls
		if n.attempts > 1 {
			t |= engine.Retries
		}
		if d.timeout > 0 {
			t |= engine.Timeout
		}
		return t
	case *routerNode:
		if !n.together {
			return engine.Calls | engine.Forks | engine.Capped
		}
		return engine.Calls | engine.Forks
	case *parallelNode:
		if !n.together {
			return engine.Forks | engine.Capped
		}
		return engine.Forks
	case *mapNode:
		if n.concurrency > 1 {
			return engine.Forks | engine.Capped
		}
		return engine.Forks
	case *loopNode:
		return engine.Forks
	case *cacheNode:
		return engine.Cached
	}
	return 0
}

// describe returns what of step n changes its behaviour: its kind, name,
// segment and options (a function option by its presence: a change inside a
// function does not change the fingerprint). The nested steps' digests
// follow it into the hash.
func describe(n node, d *stepDef) string {
	nb := n.base()
	head := fmt.Sprintf("kind=%d name=%q seg=%q updates=%t\n", nb.kind, nb.name, nb.seg, nb.updatesState)
	switch n := n.(type) {
	case *agentNode:
		return head + fmt.Sprintf("agent=%T stream=%t attempts=%d backoff=%v/%v timeout=%v prompt=%d output=%d validators=%d estimate=%+v fallback=%t retryif=%t maxretry=%v\n",
			d.agent, n.streamer != nil, n.attempts, d.backoff.initial, d.backoff.max, d.timeout,
			len(d.promptProcs), len(d.outputProcs), len(d.validators), d.estimate, n.fallback != nil, d.retryIf != nil, d.maxRetryDuration)
	case *cacheNode:
		return head + fmt.Sprintf("cache=%T ttl=%v statekeys=%q keyfunc=%t\n", d.cache, d.cacheTTL, d.stateKeys, d.cacheKey != nil)
	case *parallelNode:
		return head + describeMerge(d)
	case *routerNode:
		return head + fmt.Sprintf("router=%T\n", d.agent) + describeMerge(d)
	case *condNode:
		return head + fmt.Sprintf("branches=%q default=%t in=%t out=%t\n", d.branchNames, d.defaultStep != nil, d.inputMapper != nil, d.outputMapper != nil)
	case *loopNode:
		return head + fmt.Sprintf("max=%d exit=%t in=%t iter=%t out=%t\n", d.maxIterations, d.exitCond != nil, d.inputMapper != nil, d.iterMapper != nil, d.outputMapper != nil)
	case *mapNode:
		return head + fmt.Sprintf("items=%q concurrency=%d\n", d.itemsKey, d.concurrency)
	case *humanNode:
		return head + fmt.Sprintf("message=%q schema=%v\n", d.message, d.schema)
	}
	return head
}

func describeMerge(d *stepDef) string {
	// The declared concurrency, not the default it resolves to: that
	// depends on the machine, and a snapshot must resume on another one.
	return fmt.Sprintf("branches=%q merge=%d failure=%d reducers=%q mergefunc=%t concurrency=%d\n",
		d.branchNames, d.merge.strategy, d.merge.failure, slices.Sorted(maps.Keys(d.merge.reducers)), d.merge.fn != nil, d.concurrency)
}

// body compiles the body of a loop or map: a dynamic place, since each
// iteration or item has its own instance path.
func (b *builder) body(d *stepDef, pl place) node {
	pl.fixed = false
	if d.body == nil {
		return &seqNode{nodeBase: nodeBase{kind: kindSeq}} // reported by the constructor
	}
	return b.compile(d.body.def, pl, "")
}

// compileSeq compiles a sequence's children and checks their names and the
// types between consecutive typed steps.
func (b *builder) compileSeq(nb nodeBase, d *stepDef, pl place) node {
	s := &seqNode{nodeBase: nb}
	seen := make(map[string]bool, len(d.children))
	var prev node
	for i, c := range d.children {
		if c.def == nil {
			b.fail(fmt.Errorf("step %d is the zero Step", i))
			continue
		}
		if seen[c.def.name] {
			b.fail(fmt.Errorf("duplicate step name %q: sibling paths must be unique", c.def.name))
		}
		seen[c.def.name] = true
		child := b.compile(c.def, pl, "")
		if prev != nil {
			if in, out := child.base().in, prev.base().out; out != nil && in != nil && !out.AssignableTo(in) {
				b.segs = append(b.segs, c.def.name)
				b.fail(fmt.Errorf("%w: input type %s does not accept %s, the output of %q",
					ErrTypeMismatch, in, out, join(nb.path, prev.base().seg)))
				b.segs = b.segs[:len(b.segs)-1]
			}
		}
		prev = child
		s.children = append(s.children, child)
		a, _ := child.(*agentNode)
		if a != nil && !a.bare {
			a = nil
		}
		s.bare = append(s.bare, a)
	}
	if len(s.children) > 0 {
		s.in, s.out = s.children[0].base().in, s.children[len(s.children)-1].base().out
	}
	return s
}

// compileParallel compiles a parallel or router step.
func (b *builder) compileParallel(nb nodeBase, d *stepDef, pl place) node {
	p := parallelNode{nodeBase: nb, merge: d.merge, concurrency: d.concurrency, names: d.branchNames}
	p.branches = b.branches(d, pl)
	for i := range p.branches {
		p.all = append(p.all, i)
	}
	if p.concurrency == 0 {
		// Declared branches run together, whatever a limiter says: they
		// may wait on each other.
		p.concurrency, p.together = len(p.branches), true
	}
	if d.merge.strategy != NoMerge || d.merge.fn != nil || len(d.merge.reducers) > 0 {
		b.needsState = true
	}
	if d.kind == kindParallel {
		return &p
	}
	if len(p.branches) == 0 {
		b.fail(errors.New("router step has no branches"))
	}
	b.checkAgent(d.agent)
	return &routerNode{parallelNode: p, agent: d.agent}
}

// compileConditional compiles a conditional step.
func (b *builder) compileConditional(nb nodeBase, d *stepDef, pl place) node {
	c := &condNode{nodeBase: nb, names: d.branchNames, key: d.branchKey, inMap: d.inputMapper, outMap: d.outputMapper}
	c.branches = b.branches(d, pl)
	if d.defaultStep != nil {
		if slices.Contains(d.branchNames, "default") {
			b.fail(errors.New(`a branch named "default" and WithDefault would share the path segment "default"`))
		}
		c.deflt = b.compile(d.defaultStep.def, pl, "default")
	}
	if len(c.branches) == 0 && c.deflt == nil {
		b.fail(errors.New("conditional step has no branches"))
	}
	return c
}

// branches compiles the branches of a parallel, conditional or router step;
// each branch's path segment is its branch name.
func (b *builder) branches(d *stepDef, pl place) []node {
	seen := make(map[string]bool, len(d.branchNames))
	out := make([]node, 0, len(d.children))
	for i, c := range d.children {
		name := d.branchNames[i]
		if seen[name] {
			b.fail(fmt.Errorf("duplicate branch name %q", name))
		}
		if strings.ContainsAny(name, "/#[]") {
			b.fail(fmt.Errorf("branch name %q contains one of '/', '#', '[', ']', which instance paths reserve", name))
		}
		seen[name] = true
		out = append(out, b.compile(c.def, pl, name))
	}
	return out
}

// compileCache compiles a cache step around the step it wraps, which has
// the same path.
func (b *builder) compileCache(nb nodeBase, d *stepDef, pl place, seg string) node {
	c := &cacheNode{nodeBase: nb, cache: d.cache, key: d.cacheKey, ttl: d.cacheTTL, stateKeys: d.stateKeys}
	if d.wrapped == nil {
		c.inner = &seqNode{nodeBase: nodeBase{kind: kindSeq}} // reported by the constructor
		return c
	}
	b.segs = b.segs[:len(b.segs)-1] // the wrapped step stands at the same path
	c.inner = b.compile(d.wrapped.def, pl, seg)
	b.segs = append(b.segs, seg)
	// The cache step is the instance: it merges the output for both.
	c.updatesState = d.updatesState || d.wrapped.def.updatesState
	c.in, c.out = c.inner.base().in, c.inner.base().out
	return c
}

// cacheFingerprint returns the fingerprint canonical cache keys of c are
// made from: the structure of the step it wraps (every kind has one: its
// digest covers its own options and all it contains), and where it stands
// — its pipeline's fingerprint and its position in the pipeline — so that
// two steps share entries only when they are the same step of the same
// pipeline, wherever it is built.
func cacheFingerprint(root [sha256.Size]byte, c *cacheNode) string {
	h := sha256.New()
	inner := c.inner.base().digest
	h.Write(root[:])
	h.Write(inner[:])
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], uint64(c.id))
	h.Write(id[:])
	return hex.EncodeToString(h.Sum(nil))
}

// checkAgent reports a missing agent.
func (b *builder) checkAgent(agent Agent) {
	switch a := agent.(type) {
	case nil:
		b.fail(errors.New("missing agent"))
		return
	case AgentFunc:
		if a == nil {
			b.fail(errors.New("missing agent (nil AgentFunc)"))
			return
		}
	}
	if v := reflect.ValueOf(agent); v.Kind() == reflect.Pointer && v.IsNil() {
		b.fail(fmt.Errorf("missing agent (nil %T)", agent))
	}
}

// compileAgent compiles an agent step and composes its policies.
func (b *builder) compileAgent(nb nodeBase, d *stepDef, pl place) node {
	b.checkAgent(d.agent)
	a := &agentNode{nodeBase: nb, agent: d.agent, attempts: 1 + d.retries, backoff: d.backoff, retryIf: d.retryIf, maxRetryDuration: d.maxRetryDuration}
	a.streamer, _ = d.agent.(StreamAgent)
	plain := d.timeout == 0 && len(d.promptProcs) == 0 && len(d.outputProcs) == 0 && len(d.validators) == 0

	// The attempt's layers, from the inside out.
	var attempt layer = agentLayer{a: a}
	if len(d.promptProcs)+len(d.outputProcs)+len(d.validators) > 0 {
		attempt = &processLayer{a: a, prompt: d.promptProcs, output: d.outputProcs, validators: d.validators}
	}
	if d.timeout > 0 {
		attempt = &timeoutLayer{next: attempt, d: d.timeout, cause: &timeoutError{timeout: d.timeout}}
	}
	a.attempt = &usageLayer{next: attempt, estimate: d.estimate}

	a.bare = plain && a.attempts == 1 && d.fallback == nil && a.streamer == nil && !d.updatesState
	if d.fallback == nil {
		return a
	}
	fb := d.fallback.def
	chain := pl.chain
	if chain == nil {
		chain = []string{d.name}
	}
	if slices.Contains(chain, fb.name) {
		b.fail(fmt.Errorf("fallback %q: %w: %s", fb.name, ErrInfiniteFallback, strings.Join(append(chain, fb.name), " -> ")))
		return a
	}
	if len(chain)+1 > maxFallbackChain {
		b.fail(fmt.Errorf("fallback %q: %w: chain longer than %d steps", fb.name, ErrInfiniteFallback, maxFallbackChain))
		return a
	}
	a.fallback = b.compile(fb, place{parent: nb.path, long: nb.path == "", fixed: pl.fixed, chain: append(chain[:len(chain):len(chain)], fb.name)}, "")
	return a
}
