package perf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// errNilReport is returned by the writers when given no report.
var errNilReport = errors.New("perf: nil report")

// WriteMarkdown writes r as a Markdown report in the structure of the
// ExecutorCore study: executive summary, performance metrics comparison,
// throughput, memory, latency distribution, negative control, component
// analysis, recommendations, the variants not built yet, and the testing
// methodology. Every figure and every finding comes from r; the output is
// deterministic (it depends on r only).
func WriteMarkdown(w io.Writer, r *Report) error {
	if r == nil {
		return errNilReport
	}
	var buf bytes.Buffer
	renderMarkdown(&buf, buildReportDoc(newReportIndex(r)))
	_, err := w.Write(buf.Bytes())
	return err
}

// A document is a list of blocks, rendered as Markdown or HTML.
type (
	docHeading struct {
		level int
		text  string
	}
	// docPara is a paragraph; **text** marks bold.
	docPara  struct{ text string }
	docList  struct{ items []string }
	docTable struct {
		header []string
		rows   [][]string
	}
	// docCharts marks where the HTML page puts its charts.
	docCharts struct{}
)

// renderMarkdown writes blocks as Markdown.
func renderMarkdown(buf *bytes.Buffer, blocks []any) {
	for i, b := range blocks {
		if i > 0 {
			if _, ok := b.(docCharts); !ok {
				buf.WriteByte('\n')
			}
		}
		switch b := b.(type) {
		case docHeading:
			buf.WriteString(strings.Repeat("#", b.level) + " " + b.text + "\n")
		case docPara:
			buf.WriteString(b.text + "\n")
		case docList:
			for _, it := range b.items {
				buf.WriteString("- " + it + "\n")
			}
		case docTable:
			writeMarkdownRow(buf, b.header)
			sep := make([]string, len(b.header))
			for j := range sep {
				sep[j] = "---"
			}
			writeMarkdownRow(buf, sep)
			for _, row := range b.rows {
				writeMarkdownRow(buf, row)
			}
		}
	}
}

// writeMarkdownRow writes one table row, escaping the cells' pipes.
func writeMarkdownRow(buf *bytes.Buffer, cells []string) {
	buf.WriteString("|")
	for _, c := range cells {
		buf.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
	}
	buf.WriteString("\n")
}

// reportIndex gives ordered, keyed access to a report's figures.
type reportIndex struct {
	r         *Report
	results   map[[2]string]*Result     // scenario, variant
	comps     map[[3]string]*Comparison // scenario, variant, metric
	others    []string                  // the non-baseline variants with results, in report order
	scenarios []ScenarioInfo            // the scenarios with results, in Infos order
}

// newReportIndex indexes r. Variants are ordered as in r.Config.Variants,
// then in order of first appearance; scenarios as in [Infos], then unknown
// ones by ID.
func newReportIndex(r *Report) *reportIndex {
	x := &reportIndex{
		r:       r,
		results: make(map[[2]string]*Result),
		comps:   make(map[[3]string]*Comparison),
	}
	seen := make(map[string]bool)
	var appeared []string
	for i := range r.Results {
		res := &r.Results[i]
		x.results[[2]string{res.Scenario, res.Variant}] = res
		if !seen[res.Variant] {
			seen[res.Variant] = true
			appeared = append(appeared, res.Variant)
		}
	}
	for i := range r.Comparisons {
		c := &r.Comparisons[i]
		x.comps[[3]string{c.Scenario, c.Variant, c.Metric}] = c
	}
	for _, v := range append(slices.Clone(r.Config.Variants), appeared...) {
		if v != VariantBaseline && seen[v] && !slices.Contains(x.others, v) {
			x.others = append(x.others, v)
		}
	}
	known := make(map[string]bool)
	for _, s := range Infos() {
		known[s.ID] = true
		if x.hasScenario(s.ID) {
			x.scenarios = append(x.scenarios, s)
		}
	}
	var unknown []string
	for _, res := range r.Results {
		if !known[res.Scenario] && !slices.Contains(unknown, res.Scenario) {
			unknown = append(unknown, res.Scenario)
		}
	}
	slices.Sort(unknown)
	for _, id := range unknown {
		x.scenarios = append(x.scenarios, ScenarioInfo{ID: id, Name: id, TargetMetric: MetricMeanNS})
	}
	return x
}

// hasScenario reports whether any variant has a result on scenario id.
func (x *reportIndex) hasScenario(id string) bool {
	for _, res := range x.r.Results {
		if res.Scenario == id {
			return true
		}
	}
	return false
}

// variants returns the baseline (when measured) and the other variants.
func (x *reportIndex) variants() []string {
	for _, res := range x.r.Results {
		if res.Variant == VariantBaseline {
			return append([]string{VariantBaseline}, x.others...)
		}
	}
	return x.others
}

func (x *reportIndex) result(scenario, variant string) *Result {
	return x.results[[2]string{scenario, variant}]
}

func (x *reportIndex) comparison(scenario, variant, metric string) *Comparison {
	return x.comps[[3]string{scenario, variant, metric}]
}

// target returns the comparison of variant on the target metric of s.
func (x *reportIndex) target(s ScenarioInfo, variant string) *Comparison {
	return x.comparison(s.ID, variant, targetMetric(s))
}

// targetMetric returns the metric s is judged on.
func targetMetric(s ScenarioInfo) string {
	if s.TargetMetric == "" {
		return MetricMeanNS
	}
	return s.TargetMetric
}

// metricPhrase describes a metric in words.
func metricPhrase(metric string) string {
	switch metric {
	case MetricBytesPerOp:
		return "bytes per op"
	case MetricAllocsPerOp:
		return "allocations per op"
	default:
		return "mean time per iteration"
	}
}

// buildReportDoc lays out the whole report.
func buildReportDoc(x *reportIndex) []any {
	r := x.r
	doc := []any{
		docHeading{1, "ExecutorCore Performance Validation — " + r.Suite + " suite"},
		docPara{runLine(r)},
	}
	doc = append(doc, summarySection(x)...)
	doc = append(doc, docCharts{})
	doc = append(doc, selectiveSection(x)...)
	doc = append(doc, comparisonSection(x)...)
	doc = append(doc, throughputSection(x)...)
	doc = append(doc, memorySection(x)...)
	doc = append(doc, latencySection(x)...)
	doc = append(doc, negativeControlSection(x)...)
	doc = append(doc, componentSection(x)...)
	doc = append(doc, recommendationSection(x)...)
	doc = append(doc, notBuiltSection(x)...)
	doc = append(doc, methodologySection(x)...)
	return doc
}

// runLine says when and at which commit r was measured.
func runLine(r *Report) string {
	commit := r.GitCommit
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("Run started %s at git commit %s (report schema version %d).",
		formatTime(r.StartedAt), commit, r.SchemaVersion)
}

// formatTail formats a tail percentile, "n/a" when too few timings gave it.
func formatTail(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return formatNS(*v)
}

// formatTime formats t as RFC 3339 in UTC.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// verdicts counts, for variant, the scenarios where it is significantly
// better, significantly worse or no different on the target metric, and
// finds its best and worst scenarios.
type verdicts struct {
	better, worse, same []string // scenario names
	best, worst         *Comparison
	bestName, worstName string
}

func (x *reportIndex) verdicts(variant string) verdicts {
	var v verdicts
	for _, s := range x.scenarios {
		c := x.target(s, variant)
		if c == nil {
			continue
		}
		switch {
		case c.Significant && c.ImprovementPct > 0:
			v.better = append(v.better, s.Name)
		case c.Significant && c.ImprovementPct < 0:
			v.worse = append(v.worse, s.Name)
		default:
			v.same = append(v.same, s.Name)
		}
		if v.best == nil || c.ImprovementPct > v.best.ImprovementPct {
			v.best, v.bestName = c, s.Name
		}
		if v.worst == nil || c.ImprovementPct < v.worst.ImprovementPct {
			v.worst, v.worstName = c, s.Name
		}
	}
	return v
}

// summarySection is the executive summary.
func summarySection(x *reportIndex) []any {
	r := x.r
	names := make([]string, len(x.scenarios))
	for i, s := range x.scenarios {
		names[i] = s.Name
	}
	doc := []any{
		docHeading{2, "Executive Summary"},
		docPara{fmt.Sprintf("This report regenerates the ExecutorCore performance study from the measurements of one run of the %s suite: %s on %s (%s). Every figure comes from the run's data; a variant that is not built yet is listed, never given a figure.",
			r.Suite, plural(len(x.variants()), "variant"), plural(len(x.scenarios), "scenario"), strings.Join(names, ", "))},
	}
	if w := r.Machine.Load.Warning; w != "" {
		doc = append(doc, docPara{"⚠️ **Warning**: " + w + "."})
	}
	if f := keyFinding(x); f != "" {
		doc = append(doc, docPara{"**Key Finding**: " + f})
	}
	var items []string
	for _, v := range x.others {
		vd := x.verdicts(v)
		n := len(vd.better) + len(vd.worse) + len(vd.same)
		if n == 0 {
			items = append(items, fmt.Sprintf("**%s**%s: no comparison with the baseline in this run.", v, variantRole(v)))
			continue
		}
		s := fmt.Sprintf("**%s**%s, against the baseline on each scenario's target metric: significantly better on %d of %d scenarios, significantly worse on %d, no significant difference on %d.",
			v, variantRole(v), len(vd.better), n, len(vd.worse), len(vd.same))
		s += fmt.Sprintf(" Best: %s (%s); worst: %s (%s).",
			vd.bestName, summaryChange(vd.best), vd.worstName, summaryChange(vd.worst))
		items = append(items, s)
	}
	if len(r.NegativeControl) > 0 {
		pts := sortedControl(r.NegativeControl)
		first, last := pts[0], pts[len(pts)-1]
		items = append(items, fmt.Sprintf("The negative control grows with its statistics history — %s: %s per execute at history %s → %s at %s (baseline: %s → %s).",
			VariantNaive, formatNS(first.MeanNSPerExec), groupInt(int64(first.History)),
			formatNS(last.MeanNSPerExec), groupInt(int64(last.History)),
			formatNS(first.BaselineNSPerEx), formatNS(last.BaselineNSPerEx)))
	}
	if len(r.NotBuilt) > 0 {
		items = append(items, fmt.Sprintf("Not built yet, so given no figure: %s.", strings.Join(r.NotBuilt, ", ")))
	}
	if len(items) > 0 {
		doc = append(doc, docList{items})
	}
	if desc := targetMetricNote(x); desc != "" {
		doc = append(doc, docPara{desc})
	}
	return doc
}

// targetMetricNote says what each scenario is judged on.
func targetMetricNote(x *reportIndex) string {
	return "A scenario's target metric is its " + targetMetricWords(x) + "."
}

// targetMetricWords names the target metrics of the report's scenarios:
// mean time per iteration, except where a scenario says otherwise.
func targetMetricWords(x *reportIndex) string {
	var odd []string
	for _, s := range x.scenarios {
		if m := targetMetric(s); m != MetricMeanNS {
			odd = append(odd, s.Name+" ("+metricPhrase(m)+")")
		}
	}
	if len(odd) == 0 {
		return metricPhrase(MetricMeanNS)
	}
	return metricPhrase(MetricMeanNS) + ", except " + strings.Join(odd, ", ")
}

// variantRole names the role of the variants that have one.
func variantRole(v string) string {
	if v == VariantNaive {
		return " (negative control)"
	}
	return ""
}

// keyFinding is the summary's headline, by suite.
func keyFinding(x *reportIndex) string {
	r := x.r
	if len(x.others) == 0 {
		return "only the baseline was measured, so there is nothing to compare."
	}
	winners := x.winners()
	switch r.Suite {
	case SuiteDesigned:
		var parts []string
		for _, v := range x.others {
			if p, ok := x.ownTarget(v); ok {
				parts = append(parts, p)
				continue
			}
			met, total, names := 0, 0, []string(nil)
			for _, s := range x.scenarios {
				c := x.target(s, v)
				if c == nil || c.TargetPct == nil {
					continue
				}
				total++
				if c.Met {
					met++
					names = append(names, s.Name)
				}
			}
			if total == 0 {
				continue
			}
			p := fmt.Sprintf("%s meets %d of %d targets", v, met, total)
			if len(names) > 0 {
				p += " (" + strings.Join(names, ", ") + ")"
			}
			parts = append(parts, p)
		}
		if len(parts) == 0 {
			return "no comparison in this run carries a target."
		}
		return strings.Join(parts, "; ") + "."
	default:
		if len(winners) == 0 {
			if r.Suite == SuiteSeed {
				const head = "nothing to win. No variant is significantly better than the baseline on any scenario of the seed suite"
				if n := x.optimizations(); n > 0 {
					verb := "find"
					if n == 1 {
						verb = "finds"
					}
					return fmt.Sprintf("%s: on the study's light shapes, the %s measured %s nothing to improve, and keeping the baseline is the honest result.",
						head, plural(n, "optimization variant"), verb)
				}
				return head + ". No optimization variant was measured (see Not Built), so the baseline is the only candidate; the negative control only shows what the study's failure modes cost."
			}
			return "no variant is significantly better than the baseline on any scenario: keep the baseline everywhere."
		}
		var parts []string
		for _, s := range x.scenarios {
			if c, ok := winners[s.ID]; ok {
				parts = append(parts, fmt.Sprintf("%s on %s (%s)", c.Variant, s.Name, formatPct(c.ImprovementPct)))
			}
		}
		return fmt.Sprintf("a variant is significantly better than the baseline on %d of %d scenarios — %s; keep the baseline on the others.",
			len(winners), len(x.scenarios), strings.Join(parts, ", "))
	}
}

// ownTarget describes whether component variant meets its target on its
// own workload, when that workload was measured with a target.
func (x *reportIndex) ownTarget(variant string) (string, bool) {
	for _, s := range x.scenarios {
		if s.Component != variant {
			continue
		}
		c := x.target(s, variant)
		if c == nil || c.TargetPct == nil {
			return "", false
		}
		verb := "misses"
		if c.Met {
			verb = "meets"
		}
		return fmt.Sprintf("%s %s its target on its own workload, %s (%s, target %s)",
			variant, verb, s.Name, summaryChange(c), targetCell(s, c)), true
	}
	return "", false
}

// optimizations counts the measured variants other than the baseline and
// the negative control.
func (x *reportIndex) optimizations() int {
	n := 0
	for _, v := range x.others {
		if v != VariantNaive {
			n++
		}
	}
	return n
}

// winners returns, per scenario ID, the comparison of the variant with
// the best significant improvement on the scenario's target metric. The
// negative control is never a candidate.
func (x *reportIndex) winners() map[string]*Comparison {
	out := make(map[string]*Comparison)
	for _, s := range x.scenarios {
		for _, v := range x.others {
			if v == VariantNaive {
				continue
			}
			c := x.target(s, v)
			if c == nil || !c.Significant || c.ImprovementPct <= 0 {
				continue
			}
			if best, ok := out[s.ID]; !ok || c.ImprovementPct > best.ImprovementPct {
				out[s.ID] = c
			}
		}
	}
	return out
}

// comparisonSection is the study's "Performance Metrics Comparison".
func comparisonSection(x *reportIndex) []any {
	doc := []any{docHeading{2, "Performance Metrics Comparison"}}
	if len(x.others) == 0 {
		return append(doc, docPara{"Only the baseline was measured: there is no comparison."})
	}
	for _, v := range x.others {
		doc = append(doc, docHeading{3, "baseline vs " + v + variantRole(v)})
		t := docTable{header: []string{"Metric", "Baseline", v, "Change", "Target", "Status"}}
		for _, s := range x.scenarios {
			b, o := x.result(s.ID, VariantBaseline), x.result(s.ID, v)
			if b == nil && o == nil {
				continue
			}
			c := x.target(s, v)
			t.rows = append(t.rows, []string{
				s.Name, targetFigure(s, b), targetFigure(s, o), changeCell(c), targetCell(s, c), x.status(s, v),
			})
		}
		doc = append(doc, t)
	}
	note := "The Baseline and variant columns show each scenario's target metric: " + targetMetricWords(x) + ". Change: the variant's improvement over the baseline on that metric (positive = better). On time it is the median of the paired ratios (variant over baseline, per group of interleaved rounds) with its 95% interval in brackets, significance from a Wilcoxon signed-rank test; on allocations and bytes, the medians of the memory passes with the range of the variant's passes; (n.s.): not significant at α = 0.05, or within the baseline's own pass-to-pass range."
	note += " Status, the same verdict `--check` applies: a component on its own designed workload meets its target when the whole interval clears it; auto (the automatic optimization) there must reach 80% of that component's change measured in the same run, significantly, or meet the same bound where the target is one; everywhere else ❌ when the whole interval lies beyond 3% slower (time), or the median is over 3% worse beyond the baseline's pass-to-pass range (allocs/op, bytes/op)."
	return append(doc, docPara{note})
}

// targetFigure is a result's figure on the target metric of s.
func targetFigure(s ScenarioInfo, res *Result) string {
	if res == nil {
		return "—"
	}
	if targetMetric(s) == MetricBytesPerOp {
		return formatBytes(res.Stats.BytesPerOp) + "/op"
	}
	return formatNS(res.Stats.MeanNS)
}

// changeCell is a comparison's improvement with its interval (time) or
// the range of the variant's memory passes, marked when not significant.
func changeCell(c *Comparison) string {
	if c == nil {
		return "—"
	}
	s := formatPct(c.ImprovementPct)
	if c.LowPct != c.HighPct {
		s += " [" + formatPct(c.LowPct) + ", " + formatPct(c.HighPct) + "]"
	}
	if !c.Significant {
		s += " (n.s.)"
	}
	return s
}

// summaryChange is a comparison's improvement in running text.
func summaryChange(c *Comparison) string {
	s := formatPct(c.ImprovementPct)
	if !c.Significant {
		s += ", not significant"
	}
	return s
}

// targetCell is the target of a comparison, or of its scenario.
func targetCell(s ScenarioInfo, c *Comparison) string {
	switch {
	case c != nil && (c.TargetPct != nil || c.TargetMaxCostNS != nil):
		return targetText(c)
	case c == nil && s.TargetMaxCostNS > 0:
		return fmt.Sprintf("at most %s ns per execute", strconv.FormatFloat(s.TargetMaxCostNS, 'f', -1, 64))
	case c == nil && s.TargetPct < 0:
		return "no worse than " + strconv.FormatFloat(s.TargetPct, 'f', -1, 64) + "%"
	case c == nil && s.TargetPct > 0:
		return "+" + strconv.FormatFloat(s.TargetPct, 'f', -1, 64) + "%"
	default:
		return "—"
	}
}

// status is the Status cell of variant on s: the gates [judge] decided,
// so the report and [Check] never disagree.
func (x *reportIndex) status(s ScenarioInfo, variant string) string {
	var fails []string
	for _, m := range []string{MetricMeanNS, MetricAllocsPerOp, MetricBytesPerOp} {
		if c := x.comparison(s.ID, variant, m); c != nil && c.Gate != "" {
			fails = append(fails, metricShort(m)+" "+string(c.Status))
		}
	}
	if len(fails) > 0 {
		return "❌ " + strings.Join(fails, ", ")
	}
	c := x.target(s, variant)
	switch {
	case c == nil:
		return "—"
	case c.Status == StatusMet:
		return "✅ target met"
	case c.Status == "":
		return "—" // a report of schema version 1: no verdicts recorded
	}
	return "✅ no regression"
}

// metricShort names a metric in a status cell.
func metricShort(metric string) string {
	switch metric {
	case MetricAllocsPerOp:
		return "allocs/op"
	case MetricBytesPerOp:
		return "bytes/op"
	}
	return "time"
}

// throughputSection is the study's "Throughput Analysis".
func throughputSection(x *reportIndex) []any {
	doc := []any{docHeading{2, "Throughput Analysis"}}
	if len(x.others) == 0 {
		t := docTable{header: []string{"Metric", "Baseline (ops/sec)", "Baseline (executes/sec)"}}
		for _, s := range x.scenarios {
			if b := x.result(s.ID, VariantBaseline); b != nil {
				t.rows = append(t.rows, []string{s.Name, formatRate(b.Stats.OpsPerSec), formatRate(b.Stats.ExecutesPerSec)})
			}
		}
		return append(doc, t)
	}
	for _, v := range x.others {
		doc = append(doc, docHeading{3, "baseline vs " + v + ": operations per second"})
		t := docTable{header: []string{
			"Metric", "Baseline (ops/sec)", v + " (ops/sec)", "Change",
			"Baseline (executes/sec)", v + " (executes/sec)",
		}}
		for _, s := range x.scenarios {
			b, o := x.result(s.ID, VariantBaseline), x.result(s.ID, v)
			if b == nil && o == nil {
				continue
			}
			t.rows = append(t.rows, []string{
				s.Name,
				rateOf(b, false), rateOf(o, false), rateChange(b, o),
				rateOf(b, true), rateOf(o, true),
			})
		}
		doc = append(doc, t)
	}
	return append(doc, docPara{"An operation is one iteration of a scenario; an iteration performs one or more executes (see Latency Distribution). Change: the difference in operations per second."})
}

// rateOf is a result's operations or executes per second.
func rateOf(res *Result, executes bool) string {
	switch {
	case res == nil:
		return "—"
	case executes:
		return formatRate(res.Stats.ExecutesPerSec)
	default:
		return formatRate(res.Stats.OpsPerSec)
	}
}

// rateChange is the relative change from b's to o's operations per second.
func rateChange(b, o *Result) string {
	if b == nil || o == nil || b.Stats.OpsPerSec == 0 {
		return "—"
	}
	return formatPct((o.Stats.OpsPerSec/b.Stats.OpsPerSec - 1) * 100)
}

// memorySection is the study's "Memory Usage Analysis".
func memorySection(x *reportIndex) []any {
	t := docTable{header: []string{"Metric", "Variant", "allocs/op", "bytes/op", "Peak heap", "RSS delta (secondary)"}}
	for _, s := range x.scenarios {
		for _, v := range x.variants() {
			res := x.result(s.ID, v)
			if res == nil {
				continue
			}
			t.rows = append(t.rows, []string{
				s.Name, v, formatCount(res.Stats.AllocsPerOp), formatBytes(res.Stats.BytesPerOp),
				formatBytes(float64(res.Stats.PeakHeapBytes)), formatBytes(float64(res.Stats.RSSDeltaBytes)),
			})
		}
	}
	return []any{
		docHeading{2, "Memory Usage Analysis"},
		t,
		docPara{"allocs/op and bytes/op are per iteration: the medians of several quiet memory passes, interleaved across variants, each counted exactly. Peak heap is the highest live heap seen while the variant ran. RSS delta is secondary: the process's resident set is shared by every variant and the runtime, and it can shrink when memory returns to the operating system."},
	}
}

// latencySection is the latency distribution of every scenario.
func latencySection(x *reportIndex) []any {
	doc := []any{
		docHeading{2, "Latency Distribution"},
		docPara{"Time per iteration. Mean, stddev, min, max and CI95 (the 95% confidence interval of the mean) come from the batch samples; the median and percentiles from a separate tail pass that times iterations one by one (an HDR histogram), p99 only from 100 timings and p99.9 only from 1,000 (n/a below); samples are batch timings taken, iterations the iterations they covered, tail the iterations timed one by one."},
	}
	for _, s := range x.scenarios {
		doc = append(doc, docHeading{3, s.Name})
		t := docTable{header: []string{
			"Variant", "Mean", "Median", "p95", "p99", "p99.9", "Stddev", "Min", "Max", "CI95",
			"Samples", "Iterations", "Batch", "Tail", "GC CPU", "Executes/iteration",
		}}
		for _, v := range x.variants() {
			res := x.result(s.ID, v)
			if res == nil {
				continue
			}
			st := res.Stats
			t.rows = append(t.rows, []string{
				v, formatNS(st.MeanNS), formatNS(st.MedianNS), formatNS(st.P95NS), formatTail(st.P99NS),
				formatTail(st.P999NS), formatNS(st.StddevNS), formatNS(st.MinNS), formatNS(st.MaxNS),
				formatNS(st.CI95LowNS) + " – " + formatNS(st.CI95HighNS),
				groupInt(int64(res.Samples)), groupInt(res.Iterations), groupInt(int64(res.BatchSize)),
				groupInt(int64(st.TailSamples)), fmt.Sprintf("%.1f%%", res.GCCPUFraction*100), groupInt(int64(res.ExecutesPerIteration)),
			})
		}
		doc = append(doc, t)
	}
	return doc
}

// sortedControl returns the control points sorted by history.
func sortedControl(pts []ControlPoint) []ControlPoint {
	out := slices.Clone(pts)
	slices.SortStableFunc(out, func(a, b ControlPoint) int { return a.History - b.History })
	return out
}

// negativeControlSection is the naive variant's cost as its history grows.
func negativeControlSection(x *reportIndex) []any {
	if len(x.r.NegativeControl) == 0 {
		return nil
	}
	t := docTable{header: []string{"History", VariantNaive + " per execute", "baseline per execute", "Ratio"}}
	for _, p := range sortedControl(x.r.NegativeControl) {
		t.rows = append(t.rows, []string{
			groupInt(int64(p.History)), formatNS(p.MeanNSPerExec), formatNS(p.BaselineNSPerEx), formatRatio(p.MeanNSPerExec, p.BaselineNSPerEx),
		})
	}
	return []any{
		docHeading{2, "Negative Control"},
		docPara{"The naive variant reproduces the study's failure modes: statistics recomputed over the whole history at every execute, a memory system call per execute, a cache key with no cache behind it. Its cost must grow with its history; that it does proves the suite can see a regression."},
		t,
	}
}

// componentSection is the study's "Optimization Component Analysis".
func componentSection(x *reportIndex) []any {
	t := docTable{header: []string{"Component", "Workload", "State", "Change on its workload", "Target"}}
	measured := make(map[string]bool)
	for _, res := range x.r.Results {
		measured[res.Variant] = true
	}
	for _, s := range Infos() {
		if s.Component == "" {
			continue
		}
		state, change, target := "not measured in this run", "—", "—"
		switch {
		case measured[s.Component]:
			state = "measured"
			switch c := x.target(s, s.Component); {
			case c != nil:
				change, target = changeCell(c), targetCell(s, c)
				if x.r.Suite != SuiteSeed {
					target += " " + x.status(s, s.Component)
				}
			case !x.hasScenario(s.ID):
				change = "— (workload not in the " + x.r.Suite + " suite)"
			}
		case slices.Contains(x.r.NotBuilt, s.Component):
			state = "not built yet — no figure"
		}
		t.rows = append(t.rows, []string{s.Component, s.Name, state, change, target})
	}
	return []any{
		docHeading{2, "Optimization Component Analysis"},
		docPara{"Each optimization component exists to win one workload; it is judged there on the workload's target metric."},
		t,
	}
}

// matrixRows returns the variants of the selective-optimization table in
// its order: the components, the presets, optimized, auto (as
// [MatrixVariants] lists them), then any other measured variant but the
// negative control, the A/A control last.
func (x *reportIndex) matrixRows() []string {
	var rows []string
	order := append(Components(), Presets()...)
	order = append(order, VariantOptimized, VariantAuto)
	for _, v := range order {
		if slices.Contains(x.others, v) {
			rows = append(rows, v)
		}
	}
	for _, v := range x.others {
		if !slices.Contains(rows, v) && v != VariantNaive && v != VariantAA {
			rows = append(rows, v)
		}
	}
	if slices.Contains(x.others, VariantAA) {
		rows = append(rows, VariantAA)
	}
	return rows
}

// statusMark is the mark of a comparison's status in the selective
// optimization table.
func statusMark(st Status) string {
	switch st {
	case StatusMet:
		return "✅ target met"
	case StatusMissed:
		return "❌ target missed"
	case StatusBetter:
		return "▲ better"
	case StatusSame:
		return "= same"
	case StatusWorse:
		return "▽ worse"
	case StatusRegression:
		return "❌ regression"
	}
	return ""
}

// selectiveCell is variant's cell on s: the change on the workload's target
// metric with its interval, and the status mark; a failed gate on another
// metric is added.
func (x *reportIndex) selectiveCell(s ScenarioInfo, variant string) string {
	c := x.target(s, variant)
	if c == nil {
		return "—"
	}
	cell := changeCell(c)
	if m := statusMark(c.Status); m != "" {
		cell += " " + m
	}
	for _, m := range []string{MetricMeanNS, MetricAllocsPerOp, MetricBytesPerOp} {
		if o := x.comparison(s.ID, variant, m); m != c.Metric && o != nil && o.Gate != "" {
			cell += "; " + metricShort(m) + " " + statusMark(o.Status)
		}
	}
	return cell
}

// selectiveSection is the study's "selective optimization" table, for the
// matrix suite: a row per variant, a column per workload, each cell the
// variant's change on the workload's target metric and its verdict.
func selectiveSection(x *reportIndex) []any {
	if x.r.Suite != SuiteMatrix || len(x.others) == 0 {
		return nil
	}
	t := docTable{header: []string{"Variant"}}
	for _, s := range x.scenarios {
		t.header = append(t.header, s.Name+" ("+metricShort(targetMetric(s))+")")
	}
	for _, v := range x.matrixRows() {
		row := []string{v + matrixRole(v)}
		for _, s := range x.scenarios {
			row = append(row, x.selectiveCell(s, v))
		}
		t.rows = append(t.rows, row)
	}
	return []any{
		docHeading{2, "Selective Optimization"},
		docPara{"Every component, every preset, optimized (every component) and auto (the automatic optimization) on every workload. Each cell: the change on the workload's target metric against the baseline (positive = better), its 95% interval, and the verdict `--check` applies — ✅ target met or ❌ target missed where the variant is the workload's component (or auto, judged against 80% of that component's win), otherwise ▲ significantly better, = no significant difference, ▽ significantly worse within the 3% budget, ❌ regression beyond it; a failed gate on another metric follows a semicolon. baseline-aa is the baseline measured again: what it shows is the instrument's noise."},
		t,
	}
}

// matrixRole names a row's role in the selective-optimization table.
func matrixRole(v string) string {
	switch {
	case v == VariantAA:
		return " (A/A control)"
	case v == VariantOptimized:
		return " (preset: all)"
	case v == VariantAuto:
		return " (preset: auto)"
	case slices.Contains(presetNames, v):
		return " (preset)"
	case slices.Contains(componentNames, v):
		return " (component)"
	}
	return ""
}

// matrixWinners returns, per scenario ID, the comparison of the row with
// the best significant improvement on the scenario's target metric; the
// controls are never candidates.
func (x *reportIndex) matrixWinners() map[string]*Comparison {
	out := make(map[string]*Comparison)
	for _, s := range x.scenarios {
		for _, v := range x.matrixRows() {
			if v == VariantAA {
				continue
			}
			c := x.target(s, v)
			if c == nil || !c.Significant || c.ImprovementPct <= 0 {
				continue
			}
			if best, ok := out[s.ID]; !ok || c.ImprovementPct > best.ImprovementPct {
				out[s.ID] = c
			}
		}
	}
	return out
}

// matrixRecommendations derives the Recommendations from the selective
// optimization table: per workload the best significant variant, and per
// component the workloads where it wins (target met or significantly
// better) and where it fails a gate.
func matrixRecommendations(x *reportIndex) []any {
	winners := x.matrixWinners()
	var perWorkload []string
	kept := 0
	for _, s := range x.scenarios {
		c, ok := winners[s.ID]
		if !ok {
			kept++
			perWorkload = append(perWorkload, fmt.Sprintf("%s: keep the baseline — no variant is significantly better on %s.", s.Name, metricPhrase(targetMetric(s))))
			continue
		}
		perWorkload = append(perWorkload, fmt.Sprintf("%s: %s, %s on %s (%s).", s.Name, c.Variant, changeCell(c), metricPhrase(c.Metric), c.Status))
	}
	var perComponent []string
	for _, v := range Components() {
		if !slices.Contains(x.others, v) {
			continue
		}
		var wins, fails []string
		for _, s := range x.scenarios {
			if c := x.target(s, v); c != nil && (c.Status == StatusMet || c.Status == StatusBetter) {
				wins = append(wins, fmt.Sprintf("%s (%s, %s)", s.Name, formatPct(c.ImprovementPct), c.Status))
			}
			for _, m := range []string{MetricMeanNS, MetricAllocsPerOp, MetricBytesPerOp} {
				if c := x.comparison(s.ID, v, m); c != nil && c.Gate != "" {
					fails = append(fails, fmt.Sprintf("%s (%s %s)", s.Name, metricShort(m), c.Status))
				}
			}
		}
		item := fmt.Sprintf("**%s**: wins nowhere in this run — leave it off", v)
		if len(wins) > 0 {
			item = fmt.Sprintf("**%s**: turn it on for %s", v, strings.Join(wins, ", "))
		}
		if len(fails) > 0 {
			item += "; fails a gate on " + strings.Join(fails, ", ")
		}
		perComponent = append(perComponent, item+".")
	}
	doc := []any{
		docHeading{2, "Recommendations"},
		docHeading{3, "Selective Optimization Strategy"},
		docPara{"Derived from the Selective Optimization table. Rather than enabling every optimization, enable per workload the variant the measurements support — the best significant improvement on the workload's target metric (the A/A control is never a candidate):"},
		docList{perWorkload},
	}
	if len(perComponent) > 0 {
		doc = append(doc, docPara{"Per component, the workloads where it wins (target met, or significantly better):"}, docList{perComponent})
	}
	if len(x.scenarios) > 0 {
		doc = append(doc, docPara{fmt.Sprintf("The baseline stays the answer on %d of %d scenarios.", kept, len(x.scenarios))})
	}
	return doc
}

// recommendationSection is the study's "Recommendations", derived from the
// significant improvements (for the matrix suite, from its selective
// optimization table).
func recommendationSection(x *reportIndex) []any {
	if x.r.Suite == SuiteMatrix {
		return matrixRecommendations(x)
	}
	winners := x.winners()
	var items []string
	kept := 0
	for _, s := range x.scenarios {
		c, ok := winners[s.ID]
		if !ok {
			kept++
			items = append(items, fmt.Sprintf("%s: keep the baseline — no variant is significantly better on %s.", s.Name, metricPhrase(targetMetric(s))))
			continue
		}
		item := fmt.Sprintf("%s: use %s for %s workloads: %s on %s", s.Name, c.Variant, s.ID, formatPct(c.ImprovementPct), metricPhrase(c.Metric))
		if x.r.Suite == SuiteDesigned && c.TargetPct != nil {
			met := " not met)"
			if c.Met {
				met = " met)"
			}
			item += " (target " + targetCell(s, c) + met
		}
		items = append(items, item+".")
	}
	doc := []any{docHeading{2, "Recommendations"}, docPara{"Per workload, the variant with the best significant improvement on the target metric:"}}
	doc = append(doc, docList{items})
	var notes []string
	if len(x.scenarios) > 0 {
		notes = append(notes, fmt.Sprintf("The baseline stays the answer on %d of %d scenarios.", kept, len(x.scenarios)))
	}
	if slices.Contains(x.others, VariantNaive) {
		notes = append(notes, "The negative control (naive) is never recommended.")
	}
	if len(x.r.NotBuilt) > 0 {
		notes = append(notes, "Variants not built yet cannot be recommended.")
	}
	if len(notes) > 0 {
		doc = append(doc, docPara{strings.Join(notes, " ")})
	}
	return doc
}

// notBuiltSection lists the variants and components that do not exist yet.
func notBuiltSection(x *reportIndex) []any {
	doc := []any{docHeading{2, "Not Built"}}
	if len(x.r.NotBuilt) == 0 {
		return append(doc, docPara{"Every requested variant was built and measured."})
	}
	return append(doc,
		docPara{"These variants and components do not exist yet; they are never given a figure:"},
		docList{slices.Clone(x.r.NotBuilt)})
}

// methodologySection is the study's "Performance Testing Methodology".
func methodologySection(x *reportIndex) []any {
	r := x.r
	m, c := r.Machine, r.Config
	env := []string{
		"CPU: " + orUnknown(m.CPUModel),
		"CPUs: " + strconv.Itoa(m.CPUs) + ", GOMAXPROCS: " + strconv.Itoa(m.GOMAXPROCS),
		"Go: " + orUnknown(m.GoVersion),
		"OS/arch: " + orUnknown(m.GOOS) + "/" + orUnknown(m.GOARCH),
	}
	quick := "no"
	if c.Quick {
		quick = "yes"
	}
	cfg := []string{
		"Quick run: " + quick,
		"Time per scenario: " + c.TimePerScenario.String(),
		"Minimum batch: " + formatNS(float64(c.MinBatchNS)),
	}
	if len(c.Variants) > 0 {
		cfg = append(cfg, "Variants measured: "+strings.Join(c.Variants, ", "))
	}
	if len(c.Requested) > 0 {
		cfg = append(cfg, "Variants requested: "+strings.Join(c.Requested, ", "))
	}
	if len(c.References) > 0 {
		cfg = append(cfg, "References (measured so that auto is judged against 80% of each component's change on its workload; judged as usual themselves): "+strings.Join(c.References, ", "))
	}
	if c.CalibrationRuns > 0 {
		cfg = append(cfg,
			fmt.Sprintf("Warm-up: %s; rounds: at least %d, samples: at least %d", formatNS(float64(c.WarmupNS)), c.MinRounds, c.MinSamples),
			fmt.Sprintf("Batch size: the median of %d timings reaches the minimum batch", c.CalibrationRuns),
			fmt.Sprintf("Memory passes: %d per variant, interleaved, at least %d iterations each", c.MemPasses, c.MemMinIters),
			"Tail pass: "+formatNS(float64(c.TailBudgetNS))+" of iterations timed one by one",
			fmt.Sprintf("Groups of rounds paired: about %d, each on fresh instances of the workloads", c.Groups))
	}
	l := m.Load
	if l.Load1Start != 0 || l.Load1End != 0 {
		env = append(env, fmt.Sprintf("Load average (1 min): %s at the start, %s at the end; CPU pressure (some, avg10): %s, %s",
			loadFigure(l.Load1Start, ""), loadFigure(l.Load1End, ""), loadFigure(l.CPUPressureStart, "%"), loadFigure(l.CPUPressureEnd, "%")))
	}
	if l.Warning != "" {
		env = append(env, "⚠️ "+l.Warning)
	}
	batch := "Iterations are timed in batches"
	if c.MinBatchNS > 0 {
		batch += " of at least " + formatNS(float64(c.MinBatchNS))
	}
	batch += ", so the clock's resolution and overhead do not distort short iterations."
	method := []string{
		"Variants run in interleaved rounds, so drift on a shared machine hits them alike: each pair of rounds is a random order (fixed seed) and its reverse, so every variant holds the same mean position and follows the others at random — a variant pays for what the one before it left. After each batch, background work (telemetry's delivery) is flushed, untimed.",
		batch,
		"Percentiles (median, p95, p99, p99.9) come from a separate tail pass that times iterations one by one, round-robin across variants, in an HDR histogram at 3 significant digits; p99 needs 100 timings, p99.9 1,000.",
		"The rounds fall into groups (about 20); group j of every variant covers the same rounds, so the groups pair. The change is the median of the paired ratios with a distribution-free 95% interval; significance is a Wilcoxon signed-rank test on the logarithms of the ratios (α = 0.05). Gates are decided on the interval.",
		"Allocation counts and bytes come from several quiet memory passes, interleaved across variants; a difference counts only beyond the baseline's own pass-to-pass range.",
		"While timing, the process holds a 64 MiB pointer-free block, so that the collector runs at the pace of a service with that much live heap, not every 4 MiB allocated as a benchmark process's own few MiB would make it; the memory passes run without it. After a round longer than 20 ms, and between the batches of the next, the collector runs when the heap has grown past halfway to its goal, so no variant pays for another's garbage; the GC CPU share of each variant's timed batches is recorded.",
		"Every variant's workload is rebuilt from scratch (executor, steps, caches, state) for every group of rounds: two instances of identical code can differ by several percent (memory layout, hash seeds), and that difference becomes noise between the groups instead of being taken for the variants'.",
		"Every scenario gets fresh executors; inputs are built before the timer starts; the agent is an in-process agent with unlimited outputs, so no usage limit interferes.",
	}
	if line := stallsLine(r); line != "" {
		method = append(method, line)
	}
	return []any{
		docHeading{2, "Performance Testing Methodology"},
		docHeading{3, "Test Environment"},
		docList{env},
		docHeading{3, "Configuration"},
		docList{cfg},
		docHeading{3, "Method"},
		docList{method},
	}
}

// stallsLine says how the time comparisons of the workloads the machine
// stalls were made, with the stalls counted in r; "" when r has none.
func stallsLine(r *Report) string {
	var names []string
	baseStalls := map[string]int{} // by scenario: the baseline's, the same in each of its comparisons
	stalls, kept := 0, 0
	for _, c := range r.Comparisons {
		if c.Stalls == nil {
			continue
		}
		if _, seen := baseStalls[c.Scenario]; !seen {
			if info, ok := Info(c.Scenario); ok {
				names = append(names, info.Name)
			}
		}
		baseStalls[c.Scenario] = c.Stalls[0]
		stalls += c.Stalls[1]
		if c.StallsKept {
			kept++
		}
	}
	if len(baseStalls) == 0 {
		return ""
	}
	base := 0
	for _, n := range baseStalls {
		base += n
	}
	return fmt.Sprintf("%s keeps every core busy for milliseconds an iteration, and the machine stalls a few of them (a core taken away: the iteration lasts about twice its median, whatever runs). Its time comparisons leave out the iterations over %.1f× their subject's median — %d of the baseline's and %d of the other variants' in this run — unless a variant stalls significantly more often than the baseline (one-sided binomial test, α = 0.05): then its stalls are its cost and stay in (%d comparison(s) here). The counts are in the JSON report.",
		strings.Join(names, ", "), stallFactor, base, stalls, kept)
}

// loadFigure formats a load reading, "unknown" for −1.
func loadFigure(v float64, unit string) string {
	if v < 0 {
		return "unknown"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + unit
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// plural formats n with noun, pluralized.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// round3 rounds v to 3 significant digits.
func round3(v float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	if err != nil {
		return v
	}
	return r
}

// sig3 formats v, already rounded to 3 significant digits, showing them
// all ("60.0", "332", "1.20").
func sig3(v float64) string {
	if v == 0 {
		return "0"
	}
	digits := max(2-int(math.Floor(math.Log10(math.Abs(v)))), 0)
	return strconv.FormatFloat(v, 'f', digits, 64)
}

// scaled formats v with the largest unit not above it (units ascend by
// step), at 3 significant digits.
func scaled(v, step float64, units []string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	i := 0
	for i < len(units)-1 && math.Abs(round3(v/math.Pow(step, float64(i)))) >= 1000 {
		i++
	}
	return sig3(round3(v/math.Pow(step, float64(i)))) + " " + units[i]
}

// formatNS formats nanoseconds in ns, µs, ms or s at 3 significant digits.
func formatNS(ns float64) string { return scaled(ns, 1000, []string{"ns", "µs", "ms", "s"}) }

// formatBytes formats bytes in B, KiB, MiB or GiB at 3 significant digits.
func formatBytes(b float64) string {
	if math.Abs(b) < 1024 && b == math.Trunc(b) {
		return strconv.FormatFloat(b, 'f', 0, 64) + " B"
	}
	return scaled(b, 1024, []string{"B", "KiB", "MiB", "GiB"})
}

// formatPct formats a signed percentage with one decimal ("+12.3%",
// "−452.9%").
func formatPct(p float64) string {
	if math.IsNaN(p) || math.IsInf(p, 0) {
		return "—"
	}
	s := strconv.FormatFloat(math.Abs(p), 'f', 1, 64)
	switch {
	case s == "0.0":
		return "0.0%"
	case p < 0:
		return "−" + s + "%"
	default:
		return "+" + s + "%"
	}
}

// formatRate formats a rate per second: grouped digits from 100 up, else
// 3 significant digits.
func formatRate(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	if math.Abs(v) >= 100 {
		return groupInt(int64(math.Round(v)))
	}
	return sig3(round3(v))
}

// formatCount formats a count per op: grouped digits from 1,000 up, else
// at most two decimals.
func formatCount(v float64) string {
	if math.Abs(v) >= 1000 {
		return groupInt(int64(math.Round(v)))
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// formatRatio formats a/b as "37.5×".
func formatRatio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return sig3(round3(a/b)) + "×"
}

// groupInt formats n with thousands separators ("16,659").
func groupInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
