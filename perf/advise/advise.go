package advise

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caudal-go/caudal/optimize"
	"github.com/caudal-go/caudal/perf"
)

// Finding is one pattern in the data and the component it recommends.
type Finding struct {
	// Component is the recommended component's name, as
	// [optimize.Component] knows it (kebab-case).
	Component string `json:"component"`
	// Pattern says what was seen, Evidence the figures that show it:
	// counts, step paths, an example.
	Pattern  string `json:"pattern"`
	Evidence string `json:"evidence"`
	// File is the input it was found in.
	File string `json:"file"`
}

// Advice is what [Analyze] recommends.
type Advice struct {
	Files    []string  `json:"files"`
	Findings []Finding `json:"findings"`
	// Components are the findings' components, each once, in DESIGN.md's
	// order; Config turns exactly them on, with their defaults.
	Components []string        `json:"components"`
	Config     optimize.Config `json:"config"`
	// Keep, when no pattern was found, says why the baseline is the
	// advice.
	Keep string `json:"keep_baseline,omitempty"`
	// Notes are what was set aside: a component a report shows regressing.
	Notes []string `json:"notes,omitempty"`
}

// The thresholds of the event-log patterns.
const (
	manyEventsPerRun = 16               // events per run from which the object pool and telemetry pay
	timeoutStreak    = 3                // timeouts in a row on one path that call for a breaker
	fanOutWaits      = time.Millisecond // median latency of an item or branch that waits
	minFanOut        = 4                // items or branches from which a fan-out is one
	largeFanOut      = 8                // items or branches from which copying the state per child costs
)

// Analyze finds the patterns of every input and recommends a Config. It
// never fails: no pattern is the advice to keep the baseline.
func Analyze(inputs []*Input) *Advice {
	a := &Advice{}
	var logs []*Log
	for _, in := range inputs {
		a.Files = append(a.Files, in.File)
		switch {
		case in.Log != nil:
			logs = append(logs, in.Log)
		case in.Report != nil:
			f, notes := reportFindings(in.File, in.Report)
			a.Findings = append(a.Findings, f...)
			a.Notes = append(a.Notes, notes...)
		}
	}
	for _, l := range logs {
		a.Findings = append(a.Findings, logFindings(l)...)
	}
	for _, name := range perf.Components() {
		if slices.ContainsFunc(a.Findings, func(f Finding) bool { return f.Component == name }) {
			a.Components = append(a.Components, name)
			c, _ := optimize.Component(name)
			a.Config = merge(a.Config, c)
		}
	}
	if len(a.Findings) == 0 {
		a.Keep = keepReason(logs, inputs)
	}
	return a
}

// keepReason says why nothing is recommended.
func keepReason(logs []*Log, inputs []*Input) string {
	if len(logs) > 0 {
		events := 0
		for _, l := range logs {
			events += len(l.Events)
		}
		return fmt.Sprintf("keep the baseline: %d event(s) show no pattern a component wins on — no failed attempts repeating an error, no timeouts in a row, no cache hits, fewer than %d events per run, no fan-out that waits or is large, no merge conflicts", events, manyEventsPerRun)
	}
	for _, in := range inputs {
		if in.Report != nil {
			return "keep the baseline: no component met its target or was significantly better than the baseline on a workload's target metric in the report"
		}
	}
	return "keep the baseline: nothing was read"
}

// merge turns on in a every component on in b.
func merge(a, b optimize.Config) optimize.Config {
	a.ObjectPool.Enabled = a.ObjectPool.Enabled || b.ObjectPool.Enabled
	a.ContextManager.Enabled = a.ContextManager.Enabled || b.ContextManager.Enabled
	a.Telemetry.Enabled = a.Telemetry.Enabled || b.Telemetry.Enabled
	a.AdaptiveResourceManager.Enabled = a.AdaptiveResourceManager.Enabled || b.AdaptiveResourceManager.Enabled
	a.CacheOptimization.Enabled = a.CacheOptimization.Enabled || b.CacheOptimization.Enabled
	a.ErrorHandling.Enabled = a.ErrorHandling.Enabled || b.ErrorHandling.Enabled
	a.CircuitBreaker.Enabled = a.CircuitBreaker.Enabled || b.CircuitBreaker.Enabled
	a.AutomaticOptimization.Enabled = a.AutomaticOptimization.Enabled || b.AutomaticOptimization.Enabled
	return a
}

// reportFindings recommends, from a bench report, every component that met
// its target or was significantly better on a workload's target metric,
// unless the report shows it regressing somewhere.
func reportFindings(file string, r *perf.Report) ([]Finding, []string) {
	regressed := map[string]string{}
	for _, c := range r.Comparisons {
		if c.Status == perf.StatusRegression || c.Status == perf.StatusMissed && isBound(c) {
			if _, seen := regressed[c.Variant]; !seen {
				regressed[c.Variant] = fmt.Sprintf("%s on %s: %+.1f%% %s, %s", c.Variant, c.Scenario, c.ImprovementPct, c.Metric, c.Status)
			}
		}
	}
	type win struct{ lines []string }
	wins := map[string]*win{}
	for _, c := range r.Comparisons {
		name := c.Variant
		if name == perf.VariantAuto {
			name = "automatic-optimization"
		}
		if !slices.Contains(perf.Components(), name) {
			continue
		}
		info, ok := perf.Info(c.Scenario)
		metric := info.TargetMetric
		if metric == "" {
			metric = perf.MetricMeanNS
		}
		if !ok || c.Metric != metric || !isWin(c) {
			continue
		}
		if wins[name] == nil {
			wins[name] = &win{}
		}
		line := fmt.Sprintf("%s (%s): %+.1f%% [%+.1f%%, %+.1f%%] %s, %s", c.Scenario, info.Name, c.ImprovementPct, c.LowPct, c.HighPct, c.Metric, c.Status)
		if c.Metric == perf.MetricMeanNS {
			line = fmt.Sprintf("%s (%s): %+.1f%% [%+.1f%%, %+.1f%%] p=%.2g, %s", c.Scenario, info.Name, c.ImprovementPct, c.LowPct, c.HighPct, c.P, c.Status)
		}
		wins[name].lines = append(wins[name].lines, line)
	}
	var out []Finding
	var notes []string
	for _, name := range perf.Components() {
		w := wins[name]
		if w == nil {
			continue
		}
		if why, bad := regressed[c2v(name, r)]; bad {
			notes = append(notes, fmt.Sprintf("%s wins on %d workload(s) but is set aside: it regresses, or breaks a bound, in the same report (%s)", name, len(w.lines), why))
			continue
		}
		out = append(out, Finding{
			Component: name, File: file,
			Pattern:  fmt.Sprintf("met its target or was significantly better on %d workload(s) of the %s suite", len(w.lines), r.Suite),
			Evidence: strings.Join(w.lines, "; "),
		})
	}
	return out, notes
}

// isBound reports whether c's target is a bound (the most a variant may
// cost), not an improvement.
func isBound(c perf.Comparison) bool {
	return c.TargetMaxCostNS != nil || c.TargetPct != nil && *c.TargetPct <= 0
}

// isWin reports whether c is a win: an improvement target met, or a
// significant improvement. A bound met (no worse than −20 %, at most 20 ns
// added) is no win.
func isWin(c perf.Comparison) bool {
	switch c.Status {
	case perf.StatusMet:
		return !isBound(c)
	case perf.StatusBetter:
		return true
	}
	return false
}

// c2v returns the variant name component was measured under in r.
func c2v(component string, r *perf.Report) string {
	if component == "automatic-optimization" && !slices.Contains(r.Config.Variants, component) {
		return perf.VariantAuto
	}
	return component
}

// logFindings finds the patterns of one event log.
func logFindings(l *Log) []Finding {
	var out []Finding
	add := func(component, pattern, evidence string) {
		out = append(out, Finding{Component: component, Pattern: pattern, Evidence: evidence, File: l.File})
	}
	runs := countRuns(l.Events)
	same, down := repeatedErrors(l.Events)
	if same != "" {
		add("error-handling", "failed attempts repeat the same error until the retries are exhausted", same)
	}
	if down != "" {
		add("circuit-breaker", "failed attempts repeat a server error or a timeout until the retries are exhausted: the agent is down", down)
	}
	if f := clientErrors(l.Events); f != "" {
		add("error-handling", "errors whose text shows an HTTP 4xx status: another attempt cannot mend them", f)
	}
	if f := timeouts(l.Events); f != "" {
		add("circuit-breaker", fmt.Sprintf("%d or more timeouts in a row on one step", timeoutStreak), f)
	}
	if f := circuits(l.Events); f != "" {
		add("circuit-breaker", "a circuit breaker changed state in the recorded run", f)
	}
	if f := cacheHits(l.Events); f != "" {
		add("cache-optimization", "cache hits: cache steps see repeated inputs", f)
	}
	if perRun := float64(len(l.Events)) / float64(max(runs, 1)); perRun >= manyEventsPerRun {
		retries, fallbacks := count(l.Events, "retry"), count(l.Events, "fallback")
		add("object-pool", "many events per run: allocation-heavy executes",
			fmt.Sprintf("%d events in %d run(s), %.0f per run (at least %d), %d retries and %d fallbacks among them: each event record and attempt frame is an allocation the pool recycles", len(l.Events), runs, perRun, manyEventsPerRun, retries, fallbacks))
		add("telemetry", "many events per run, each written synchronously to a JSON log",
			fmt.Sprintf("%.0f events per run (at least %d) written to this log on the executing goroutine: telemetry hands them to a background drain", perRun, manyEventsPerRun))
	}
	out = append(out, fanOutFindings(l)...)
	if f := tuned(l.Events); len(f) > 0 {
		for _, t := range f {
			add(t.component, "the automatic optimization switched this component on in the recorded run", t.evidence)
		}
	}
	return out
}

// countRuns counts the runs in events: distinct run IDs, plus the root
// steps started without one.
func countRuns(events []Event) int {
	ids := map[string]bool{}
	n := 0
	for _, e := range events {
		switch {
		case e.RunID != "":
			ids[e.RunID] = true
		case e.Kind == "step_started" && !strings.ContainsAny(e.Path, "/["):
			n++
		}
	}
	return n + len(ids)
}

func count(events []Event, kind string) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// stepKey identifies one step's attempts within one execution.
type stepKey struct{ run, path string }

// repeatedErrors describes the steps whose every failed attempt had one
// error until the retries ran out: in same those whose error another
// attempt will not mend (error handling stops retrying it), in down those
// whose error says the agent is down — a 5xx, 408 or 429 status, a timeout,
// "unavailable", "overloaded" (a breaker stops calling it). Each is "" when
// there is none.
func repeatedErrors(events []Event) (same, down string) {
	type seen struct {
		errs []string
	}
	cur := map[stepKey]*seen{}
	type hit struct {
		times, attempts int
		example         string
	}
	hits := map[string]*hit{}
	for _, e := range events {
		k := stepKey{e.RunID, e.Path}
		switch e.Kind {
		case "step_started":
			cur[k] = &seen{}
		case "attempt_failed":
			s := cur[k]
			if s == nil {
				s = &seen{}
				cur[k] = s
			}
			s.errs = append(s.errs, e.Err)
			if e.RetryStopped != "exhausted" || len(s.errs) < 2 {
				continue
			}
			if slices.ContainsFunc(s.errs, func(x string) bool { return x != s.errs[0] }) {
				continue
			}
			h := hits[e.Path]
			if h == nil {
				h = &hit{example: s.errs[0]}
				hits[e.Path] = h
			}
			h.times++
			h.attempts += len(s.errs)
		}
	}
	var sameParts, downParts []string
	for _, p := range sortedKeys(hits) {
		h := hits[p]
		part := fmt.Sprintf("%s: %d time(s), %d attempts in all, each failing with %q until retries were exhausted", p, h.times, h.attempts, h.example)
		if agentDown(h.example) {
			downParts = append(downParts, part)
		} else {
			sameParts = append(sameParts, part)
		}
	}
	return strings.Join(sameParts, "; "), strings.Join(downParts, "; ")
}

// agentDown reports whether an error's text says its agent is down rather
// than that the request is wrong: a 5xx, 408 or 429 status, or words of a
// timeout or an outage.
func agentDown(text string) bool {
	if m := statusRE.FindStringSubmatch(text); m != nil && (m[1][0] == '5' || m[1] == "408" || m[1] == "429") {
		return true
	}
	lower := strings.ToLower(text)
	for _, w := range []string{"timed out", "timeout", "deadline exceeded", "unavailable", "overloaded", "connection refused"} {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// statusRE finds an HTTP status code in an error's text.
var statusRE = regexp.MustCompile(`\b([45]\d\d)\b`)

// clientErrors describes the failed attempts whose error shows a 4xx
// status that will not change (not 408 nor 429), or returns "".
func clientErrors(events []Event) string {
	paths := map[string]int{}
	example := ""
	retried := 0
	for _, e := range events {
		if e.Kind != "attempt_failed" {
			continue
		}
		m := statusRE.FindStringSubmatch(e.Err)
		permanent := e.ErrorClass == "permanent"
		if !permanent && (m == nil || m[1][0] != '4' || m[1] == "408" || m[1] == "429") {
			continue
		}
		paths[e.Path]++
		if e.RetryStopped == "" {
			retried++
		}
		if example == "" {
			example = e.Err
		}
	}
	if len(paths) == 0 {
		return ""
	}
	var parts []string
	for _, p := range sortedKeys(paths) {
		parts = append(parts, fmt.Sprintf("%s: %d", p, paths[p]))
	}
	return fmt.Sprintf("%d failed attempt(s) with a client error (%s), %d of them retried; e.g. %q", sum(paths), strings.Join(parts, ", "), retried, example)
}

// isTimeout reports whether a failed attempt timed out.
func isTimeout(e Event) bool {
	if e.ErrorClass == "timeout" {
		return true
	}
	t := strings.ToLower(e.Err)
	return strings.Contains(t, "deadline exceeded") || strings.Contains(t, "timeout") || strings.Contains(t, "timed out")
}

// timeouts describes the paths with timeoutStreak or more timeouts in a
// row, or returns "". A step that succeeds with no failed attempt (its own
// agent answered, not a fallback) ends a streak, and so does a failure
// that is not a timeout.
func timeouts(events []Event) string {
	streak, longest, total := map[string]int{}, map[string]int{}, map[string]int{}
	failed := map[stepKey]bool{}
	example := ""
	for _, e := range events {
		k := stepKey{e.RunID, e.Path}
		switch {
		case e.Kind == "step_started":
			failed[k] = false
		case e.Kind == "attempt_failed" && isTimeout(e):
			failed[k] = true
			streak[e.Path]++
			total[e.Path]++
			longest[e.Path] = max(longest[e.Path], streak[e.Path])
			if example == "" {
				example = e.Err
			}
		case e.Kind == "attempt_failed":
			failed[k] = true
			streak[e.Path] = 0
		case e.Kind == "step_finished" && e.Success && !failed[k]:
			streak[e.Path] = 0
		}
	}
	var parts []string
	for _, p := range sortedKeys(longest) {
		if longest[p] >= timeoutStreak {
			parts = append(parts, fmt.Sprintf("%s: %d timeouts in a row (%d in all)", p, longest[p], total[p]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + fmt.Sprintf("; e.g. %q: a breaker fails these calls fast, or sends them straight to the fallback", example)
}

// circuits describes the breakers' changes of state, or returns "".
func circuits(events []Event) string {
	states := map[string]int{}
	paths := map[string]int{}
	for _, e := range events {
		if e.Kind == "circuit" {
			states[e.State]++
			paths[e.Path]++
		}
	}
	if len(states) == 0 {
		return ""
	}
	var parts []string
	for _, s := range sortedKeys(states) {
		parts = append(parts, fmt.Sprintf("%s %d", s, states[s]))
	}
	return fmt.Sprintf("%d change(s) of state (%s) on %s", sum(states), strings.Join(parts, ", "), strings.Join(sortedKeys(paths), ", "))
}

// cacheHits describes the cache hits per path, or returns "".
func cacheHits(events []Event) string {
	paths := map[string]int{}
	for _, e := range events {
		if e.Kind == "cache_hit" {
			paths[e.Path]++
		}
	}
	if len(paths) == 0 {
		return ""
	}
	var parts []string
	for _, p := range sortedKeys(paths) {
		parts = append(parts, fmt.Sprintf("%s: %d", p, paths[p]))
	}
	return fmt.Sprintf("%d cache hit(s) (%s): the cache optimization serves them from a sharded in-process cache with a fast key, and runs concurrent misses once", sum(paths), strings.Join(parts, ", "))
}

// itemRE matches a map item's path: the map's path, then "[i]".
var itemRE = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// fanOut is one fan-out step's children in one execution.
type fanOut struct {
	kind      string // "map" or "parallel"
	path      string
	width     int             // items or branches in the widest execution
	latencies []time.Duration // of its items or branches
	conflicts int
}

// fanOutFindings finds map items and parallel branches: the adaptive
// resource manager when they wait, the context manager when they conflict
// or are many.
func fanOutFindings(l *Log) []Finding {
	fans := map[string]*fanOut{}
	get := func(kind, path string) *fanOut {
		f := fans[path]
		if f == nil {
			f = &fanOut{kind: kind, path: path}
			fans[path] = f
		}
		return f
	}
	// Map items: paths ending in [i].
	items := map[stepKey]map[int]bool{}
	for _, e := range l.Events {
		m := itemRE.FindStringSubmatch(e.Path)
		if m == nil || e.Kind != "step_finished" {
			continue
		}
		i, _ := strconv.Atoi(m[2])
		k := stepKey{e.RunID, m[1]}
		if items[k] == nil {
			items[k] = map[int]bool{}
		}
		items[k][i] = true
		f := get("map", m[1])
		f.latencies = append(f.latencies, e.Latency)
		f.width = max(f.width, len(items[k]))
	}
	// Parallel branches: siblings running at once.
	open := map[stepKey]time.Time{}
	children := map[stepKey][]span{}
	lat := map[stepKey][]time.Duration{}
	for _, e := range l.Events {
		parent, _, ok := cutLast(e.Path)
		if !ok || itemRE.MatchString(e.Path) {
			continue
		}
		k := stepKey{e.RunID, e.Path}
		switch e.Kind {
		case "step_started":
			open[k] = e.Time
		case "step_finished":
			if start, ok := open[k]; ok {
				pk := stepKey{e.RunID, parent}
				children[pk] = append(children[pk], span{start, e.Time})
				lat[pk] = append(lat[pk], e.Latency)
				delete(open, k)
			}
		}
	}
	for pk, spans := range children {
		if !overlapping(spans) {
			continue
		}
		f := get("parallel", pk.path)
		f.width = max(f.width, len(spans))
		f.latencies = append(f.latencies, lat[pk]...)
	}
	for _, e := range l.Events {
		if e.Kind == "merge_conflict" {
			get("parallel", e.Path).conflicts++
		}
	}
	var out []Finding
	for _, p := range sortedKeys(fans) {
		f := fans[p]
		what := map[string]string{"map": "items", "parallel": "branches"}[f.kind]
		med := medianDuration(f.latencies)
		if f.width >= minFanOut && med >= fanOutWaits {
			out = append(out, Finding{
				Component: "adaptive-resource-manager", File: l.File,
				Pattern:  fmt.Sprintf("a fan-out whose %s wait", what),
				Evidence: fmt.Sprintf("%s: a %s of %d %s, median latency %v each (at least %v): a limit learned from latency runs more of them at once", f.path, f.kind, f.width, what, med.Round(time.Microsecond), fanOutWaits),
			})
		}
		if f.conflicts > 0 || f.width >= largeFanOut {
			out = append(out, Finding{
				Component: "context-manager", File: l.File,
				Pattern:  fmt.Sprintf("a large fan-out or merge conflicts: each of the %s gets a copy of the state", what),
				Evidence: fmt.Sprintf("%s: a %s of %d %s (large from %d), %d merge conflict(s): copy-on-write state and a merge of only the keys written", f.path, f.kind, f.width, what, largeFanOut, f.conflicts),
			})
		}
	}
	return out
}

// cutLast splits a path at its last "/".
func cutLast(p string) (parent, name string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p, false
	}
	return p[:i], p[i+1:], true
}

// span is when a step ran.
type span struct{ start, end time.Time }

// overlapping reports whether two of spans overlap in time.
func overlapping(spans []span) bool {
	s := slices.Clone(spans)
	sort.Slice(s, func(i, j int) bool { return s[i].start.Before(s[j].start) })
	for i := 1; i < len(s); i++ {
		if s[i].start.Before(s[i-1].end) {
			return true
		}
	}
	return false
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(d))
	return s[len(s)/2]
}

// tunedComponent is a component the automatic optimization switched on.
type tunedComponent struct{ component, evidence string }

// componentAliases are how a tuned decision may name a component.
var componentAliases = map[string][]string{
	"object-pool":               {"object-pool", "object pool", "objectpool"},
	"context-manager":           {"context-manager", "context manager", "contextmanager", "copy-on-write"},
	"telemetry":                 {"telemetry"},
	"adaptive-resource-manager": {"adaptive-resource-manager", "adaptive resource manager", "adaptive", "concurrency limit"},
	"cache-optimization":        {"cache-optimization", "cache optimization", "cacheoptimization", "cache"},
	"error-handling":            {"error-handling", "error handling", "errorhandling"},
	"circuit-breaker":           {"circuit-breaker", "circuit breaker", "circuitbreaker", "breaker"},
}

// tuned returns the components tuned events switched on, each with the
// paths and an example decision.
func tuned(events []Event) []tunedComponent {
	paths := map[string]map[string]bool{}
	examples := map[string]string{}
	for _, e := range events {
		if e.Kind != "tuned" {
			continue
		}
		d := strings.ToLower(e.Decision)
		if strings.Contains(d, " off") || strings.HasPrefix(d, "off") || strings.Contains(d, "disable") {
			continue
		}
		for _, name := range perf.Components() {
			if slices.ContainsFunc(componentAliases[name], func(a string) bool { return strings.Contains(d, a) }) {
				if paths[name] == nil {
					paths[name] = map[string]bool{}
					examples[name] = e.Decision
				}
				paths[name][e.Path] = true
				break
			}
		}
	}
	var out []tunedComponent
	for _, name := range perf.Components() {
		if paths[name] != nil {
			out = append(out, tunedComponent{name, fmt.Sprintf("switched on for %s; e.g. %q: turning it on for every step saves the tuner the wait", strings.Join(sortedKeys(paths[name]), ", "), examples[name])})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
