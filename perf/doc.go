// Package perf is Caudal's performance validation suite: the five scenarios
// of the ExecutorCore study (execution, memory, concurrent, cache, context)
// in the study's own shapes with its measurement pitfalls fixed ("seed"),
// measured as their names say ("designed", with the error and outage
// workloads), and every component against every workload ("matrix").
//
// A [Variant] is an executor configuration under test; the baseline is
// always measured and every other variant is compared with it. Variants run
// interleaved, batch by batch, so drift on a shared machine hits them
// alike; significance is decided on interleaved batch means
// (golang.org/x/perf/benchmath), never on raw per-execute samples; and
// allocation figures come from a separate quiet pass, so they are exact.
//
// Reports come as Markdown in the study's structure, JSON ([Report], a
// contract other tools read), a self-contained HTML page, and a history of
// runs. The command `caudal bench` drives it.
package perf
