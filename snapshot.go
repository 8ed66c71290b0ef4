package caudal

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// resumeRun checks snap against the graph — before any step runs — and
// returns the replay that drives the resumed execution.
func resumeRun(g *graph, snap *Snapshot, answer any) (*replay, error) {
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("caudal: WithResume: %w: %s", ErrSnapshotMismatch, fmt.Sprintf(format, args...))
	}
	if snap.Fingerprint != g.fingerprint {
		return nil, mismatch("the snapshot is of pipeline %.16s…, this pipeline is %.16s… (another pipeline, or a changed one)", snap.Fingerprint, g.fingerprint)
	}
	rp := &replay{
		steps: make(map[string]*Record), decisions: make(map[string]*Record),
		paths: make([]string, 0, len(snap.Journal)), target: snap.Path, answer: answer,
	}
	if snap.Path != "" {
		n, _, err := trace(g.root, snap.Path)
		if err != nil {
			return nil, mismatch("paused step: %v", err)
		}
		if _, ok := n.(*humanNode); !ok {
			return nil, mismatch("paused step %q is a %s step, not a human-input step", snap.Path, n.base().kind)
		}
	}
	hops := make([][]hop, len(snap.Journal))
	var total Usage
	for i := range snap.Journal {
		rec := &snap.Journal[i]
		var err error
		if hops[i], err = checkRecord(g, rec); err != nil {
			return nil, mismatch("record %d: %v", i, err)
		}
		if total, err = addUsage(total, rec.Usage); err != nil {
			return nil, mismatch("record %d: %v", i, err)
		}
		byPath := rp.steps
		if rec.Status == StatusDecided {
			byPath = rp.decisions
		}
		if byPath[rec.Path] != nil {
			return nil, mismatch("record %d: a second record of %q", i, rec.Path)
		}
		byPath[rec.Path] = rec
		rp.paths = append(rp.paths, rec.Path)
	}
	if snap.Path != "" {
		if rp.steps[snap.Path] != nil {
			return nil, mismatch("the paused step %q has a record already: it was answered", snap.Path)
		}
		_, h, _ := trace(g.root, snap.Path)
		hops = append(hops, h)
	}
	for _, h := range hops {
		if err := rp.checkOrder(h, len(snap.Journal)); err != nil {
			return nil, mismatch("%v", err)
		}
	}
	slices.Sort(rp.paths)
	return rp, nil
}

// maxJournalTokens bounds the tokens a journal may record in all: far more
// than any run spends, far from overflowing what a run adds to it.
const maxJournalTokens = math.MaxInt64 / 4

// addUsage adds u to the journal's total, refusing totals no run reaches.
func addUsage(total, u Usage) (Usage, error) {
	if u.PromptTokens > maxJournalTokens-total.PromptTokens || u.CompletionTokens > maxJournalTokens-total.CompletionTokens ||
		u.CostUSD > math.MaxFloat64/4-total.CostUSD {
		return total, errors.New("the journal's usage adds up past what a run can spend")
	}
	return total.Add(u), nil
}

// checkRecord checks that rec fits the graph and holds sane values, and
// returns the constructs its path goes through.
func checkRecord(g *graph, rec *Record) ([]hop, error) {
	n, hops, err := trace(g.root, rec.Path)
	if err != nil {
		return nil, err
	}
	switch rec.Status {
	case StatusSucceeded, StatusFailed:
	case StatusDecided:
		switch n := unwrap(n).(type) {
		case *condNode, *routerNode:
		case *agentNode:
			if n.fallback == nil {
				return nil, fmt.Errorf("a decision at %q, a step without a fallback", rec.Path)
			}
		default:
			return nil, fmt.Errorf("a decision at %q, a %s step, which decides nothing", rec.Path, n.base().kind)
		}
	default:
		return nil, fmt.Errorf("step %q: unknown status %q", rec.Path, rec.Status)
	}
	if err := rec.Usage.validate(); err != nil {
		return nil, fmt.Errorf("step %q: %w", rec.Path, err)
	}
	if rec.Attempts < 0 || rec.Latency < 0 {
		return nil, fmt.Errorf("step %q: negative attempts or latency", rec.Path)
	}
	for i, w := range rec.Writes {
		if len(w.Path) == 0 {
			return nil, fmt.Errorf("step %q: state write %d has an empty path", rec.Path, i)
		}
	}
	return hops, nil
}

// unwrap returns the step a cache step stands for.
func unwrap(n node) node {
	for {
		c, ok := n.(*cacheNode)
		if !ok {
			return n
		}
		n = c.inner
	}
}

// hop is one construct an instance path goes through, and which of its
// children it goes into: a sequence's child or a refine round's (index), a
// loop's iteration or a map's item (the index in the path), a branch of a
// parallel, router or conditional step (its index; a conditional's default
// comes after its branches), an agent step's fallback (0).
type hop struct {
	n     node   // the construct, a cache step's wrapped step in its place
	at    string // its instance path
	child int
}

// checkOrder checks the records a record's constructs imply: in a
// sequence, a loop or a sequential map, every child before the one the
// record is in completed; a fallback ran after its primary failed; a
// branch of a conditional or a router is one the step chose. journal is the
// number of records: no construct can have completed more children.
func (rp *replay) checkOrder(hops []hop, journal int) error {
	for _, h := range hops {
		if rp.steps[h.at] != nil {
			return nil // the construct completed: what is inside is not looked at
		}
		switch n := h.n.(type) {
		case *seqNode:
			if err := rp.completed(h, 0, func(j int) string { return childPath(h.at, n.children[j].base()) }); err != nil {
				return err
			}
		case *roundNode:
			kids := n.kids()
			if err := rp.completed(h, 0, func(j int) string { return childPath(h.at, kids[j].base()) }); err != nil {
				return err
			}
		case *loopNode:
			if h.child-1 > journal {
				return fmt.Errorf("iteration %d of %q: the journal cannot hold the ones before it", h.child, h.at)
			}
			if err := rp.completed(h, 1, func(j int) string { return indexPath(h.at, '#', j, n.body.base().seg) }); err != nil {
				return err
			}
		case *mapNode:
			if n.concurrency != 1 {
				break
			}
			if h.child > journal {
				return fmt.Errorf("item %d of %q: the journal cannot hold the ones before it", h.child, h.at)
			}
			if err := rp.completed(h, 0, func(j int) string { return indexPath(h.at, '[', j, n.body.base().seg) }); err != nil {
				return err
			}
		case *agentNode:
			if rp.decisions[h.at] == nil {
				return fmt.Errorf("records in the fallback of %q, whose primary did not fail", h.at)
			}
		case *condNode:
			if err := rp.chosenKey(n, h); err != nil {
				return err
			}
		case *routerNode:
			if err := rp.chosenBranch(n, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// completed checks that the children of h's construct before h.child, from
// first, have completed; path gives a child's instance path.
func (rp *replay) completed(h hop, first int, path func(j int) string) error {
	for j := first; j < h.child; j++ {
		if p := path(j); rp.steps[p] == nil || rp.steps[p].Status != StatusSucceeded {
			return fmt.Errorf("records inside %q, but %q before it did not complete", h.at, p)
		}
	}
	return nil
}

// chosenKey checks that the conditional's journaled key chose branch h.child.
func (rp *replay) chosenKey(n *condNode, h hop) error {
	d := rp.decisions[h.at]
	if d == nil {
		return fmt.Errorf("records in a branch of conditional %q, which chose none", h.at)
	}
	key, _ := d.Output.(string)
	want := slices.Index(n.names, key)
	if want < 0 && n.deflt != nil {
		want = len(n.branches)
	}
	if want != h.child {
		return fmt.Errorf("records in a branch of conditional %q that its key %q does not choose", h.at, key)
	}
	return nil
}

// chosenBranch checks that the router's journaled choice includes branch
// h.child.
func (rp *replay) chosenBranch(n *routerNode, h hop) error {
	d := rp.decisions[h.at]
	if d == nil {
		return fmt.Errorf("records in a branch of router %q, which chose none", h.at)
	}
	names, err := branchNames(d.Output)
	if err != nil || !slices.Contains(names, n.names[h.child]) {
		return fmt.Errorf("records in branch %q of router %q, which its choice does not include", n.names[h.child], h.at)
	}
	return nil
}

// maxItemIndex bounds the item index of a map in an instance path.
const maxItemIndex = math.MaxInt32

// trace returns the step at instance path p of the graph under root, and
// the constructs the path goes through. An instance path is the step names
// from the root joined by "/", a branch named by its branch name, a loop's
// segment followed by "#i" (iteration i, from 1) and a map's by "[i]" (item
// i, from 0) on the paths of their bodies, e.g. "report/refine#3/critic"
// or "enrich[7]/fetch".
func trace(root node, p string) (node, []hop, error) {
	if p == "" {
		return nil, nil, errors.New("empty step path")
	}
	segs := strings.Split(p, "/")
	var hops []hop
	n, end := root, 0 // end: where the current segment ends in p
	for i := 0; ; {
		seg := segs[i]
		start := end
		if i > 0 {
			start++ // the '/'
		}
		end = start + len(seg)
		name, sep, idx, err := parseSegment(seg)
		if err != nil {
			return nil, nil, fmt.Errorf("path %q: %w", p, err)
		}
		if name != n.base().seg {
			return nil, nil, fmt.Errorf("path %q: no step %q there", p, name)
		}
		at := p[:start+len(name)]
		i++
		if sep != 0 {
			body, err := indexed(n, sep, idx)
			if err != nil {
				return nil, nil, fmt.Errorf("path %q: %w", p, err)
			}
			hops = append(hops, hop{n: unwrap(n), at: at, child: idx})
			n, at = body, p[:end]
			if body.base().seg != "" {
				if i == len(segs) {
					return nil, nil, fmt.Errorf("path %q ends at an iteration or item", p)
				}
				continue // segs[i] names the body
			}
		}
		if i == len(segs) {
			return n, hops, nil
		}
		if inner := unwrap(n); sep == 0 && (isLoop(inner) || isMap(inner)) {
			return nil, nil, fmt.Errorf("path %q: the body of %s step %q needs an iteration or item index", p, inner.base().kind, inner.base().name)
		}
		want, _, _, err := parseSegment(segs[i])
		if err != nil {
			return nil, nil, fmt.Errorf("path %q: %w", p, err)
		}
		k := slices.IndexFunc(n.kids(), func(k node) bool { return k.base().seg == want })
		if k < 0 {
			return nil, nil, fmt.Errorf("path %q: no step %q there", p, want)
		}
		hops = append(hops, hop{n: unwrap(n), at: at, child: k})
		n = n.kids()[k]
		end = start + len(seg) // segs[i] is matched against n next
	}
}

func isLoop(n node) bool {
	_, ok := n.(*loopNode)
	return ok
}

func isMap(n node) bool {
	_, ok := n.(*mapNode)
	return ok
}

// indexed returns the body of loop or map n for an index after sep.
func indexed(n node, sep byte, idx int) (node, error) {
	switch n := unwrap(n).(type) {
	case *loopNode:
		if sep == '#' && idx >= 1 && idx <= n.maxIterations {
			return n.body, nil
		}
		if sep == '#' {
			return nil, fmt.Errorf("iteration %d of loop %q, which runs 1 to %d", idx, n.name, n.maxIterations)
		}
	case *mapNode:
		if sep == '[' {
			return n.body, nil
		}
	}
	return nil, fmt.Errorf("index %c%d on %s step %q", sep, idx, n.base().kind, n.base().name)
}

// parseSegment splits an instance path segment into the step's name and
// its iteration ("#i") or item ("[i]") index, if any. Indexes are decimal
// numbers without sign or leading zeros.
func parseSegment(seg string) (name string, sep byte, idx int, err error) {
	i := strings.IndexAny(seg, "#[]")
	if i < 0 {
		return seg, 0, 0, nil
	}
	name, sep, num := seg[:i], seg[i], seg[i+1:]
	switch sep {
	case '#':
	case '[':
		var ok bool
		if num, ok = strings.CutSuffix(num, "]"); !ok {
			return "", 0, 0, fmt.Errorf("segment %q: unclosed item index", seg)
		}
	default:
		return "", 0, 0, fmt.Errorf("segment %q: stray %q", seg, sep)
	}
	if num == "" || (len(num) > 1 && num[0] == '0') || strings.Trim(num, "0123456789") != "" {
		return "", 0, 0, fmt.Errorf("segment %q: bad index %q", seg, num)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > maxItemIndex {
		return "", 0, 0, fmt.Errorf("segment %q: index out of range", seg)
	}
	return name, sep, int(n), nil
}
