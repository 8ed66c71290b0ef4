// Command ratios turns benchstat's CSV output (benchstat -format csv) into a
// Markdown table of caudal/peer ratios of the medians, one row per comparable
// pair, for benchmarks/RESULTS.md.
//
// A pair is two benchmarks whose names differ only in the lib= key, one of
// them lib=caudal: BenchmarkChain/lib=caudal/steps=3 pairs with
// BenchmarkChain/lib=eino/steps=3. Benchmarks with no caudal counterpart are
// listed after the table. Nothing is typed by hand: pairs and figures all come
// from the input.
//
// Usage:
//
//	benchstat -format csv bench.txt | go run ./internal/ratios
package main
