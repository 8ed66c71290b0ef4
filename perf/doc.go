// Package perf is Caudal's performance validation suite: the five scenarios
// of the ExecutorCore study (execution, memory, concurrent, cache, context)
// in the study's own shapes with its measurement pitfalls fixed ("seed"),
// measured as their names say ("designed", with the error and outage
// workloads), and every component, preset, optimized and auto against
// every workload ("matrix", whose report is the study's selective
// optimization table). Package perf/advise recommends a Config from a
// recorded run or a report (`caudal advise`).
//
// A [Variant] is an executor configuration under test; the baseline is
// always measured and every other variant is compared with it (asking for
// the baseline measures it twice: the A/A control). Variants run
// interleaved, batch by batch, so drift on a shared machine hits them
// alike, and the comparison is paired: group j of the rounds of every
// variant covers the same stretch of time, the change is the median of the
// paired ratios with its 95 % interval, significance a Wilcoxon
// signed-rank test ([ComparePaired]). Gates are decided on the interval,
// by one function for the report's status and [Check]: a component on its
// own designed workload must meet its target; the automatic optimization
// ("auto") there must reach 80 % of that component's change in the same
// run, or meet the same bound; everything else must stay within a 3 %
// budget. Allocation figures
// are the medians of several quiet memory passes, interleaved; tails come
// from a separate pass that times iterations one by one.
//
// Reports come as Markdown in the study's structure, JSON ([Report], a
// contract other tools read), a self-contained HTML page, and a history of
// runs. The command `caudal bench` drives it.
package perf
