#!/usr/bin/env bash
# ircompare.sh BASE [ROWS...]: instructions per operation of benchmark rows
# of the root package at git revision BASE and in the working tree, counted
# by callgrind (valgrind) with the collector off (GOGC=off) on one thread:
# deterministic where wall time on a shared machine is not. Each row is
# NAME:N1:N2; its figure is (Ir(N2 iterations) − Ir(N1)) / (N2 − N1), so the
# test binary's setup cancels out. Allocation costs stay in (mallocgc); the
# collector's work, proportional to bytes allocated, does not: read B/op
# beside it. Instructions are not time — a cache miss costs more than an add
# — so this complements benchstat, never replaces it.
set -euo pipefail
base=${1:?usage: ircompare.sh BASE [NAME:N1:N2 ...]}
shift
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
	rows=(BenchmarkFloor/bare:5000:25000 BenchmarkExecute/bare:5000:25000 BenchmarkExecute/policies:2000:10000
		BenchmarkExecute/cache=hit:1000:5000 BenchmarkExecute/cache=miss:1000:5000 BenchmarkExecute/fallback:5000:25000
		BenchmarkSeq/steps=3:2000:10000 BenchmarkSeq/steps=10:2000:10000 BenchmarkJournal/steps=10:2000:10000
		BenchmarkParallel/branches=5:1000:5000 BenchmarkLoop/iters=10:1000:5000 BenchmarkMap/items=100:200:1000
		BenchmarkIsolation/keys=8:100:500 BenchmarkIsolation/keys=64:20:100)
fi
command -v valgrind >/dev/null || { echo "ircompare.sh needs valgrind" >&2; exit 1; }
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach "$work/base" "$base" >/dev/null
(cd "$work/base" && go test -c -o "$work/base.test" .)
(cd "$root" && go test -c -o "$work/head.test" .)

# ir BIN ROW N: the instructions of N iterations of ROW, the whole process.
ir() {
	local out="$work/cg.out"
	GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$1" -test.run '^$' -test.bench "^${2}\$" -test.benchtime="${3}x" >/dev/null 2>&1
	callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}
echo "# instructions per op (callgrind, GOGC=off): base $(git -C "$root" rev-parse --short "$base"), head $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo ' + uncommitted changes')"
printf '%-34s %10s %10s %8s\n' row base head change
for r in "${rows[@]}"; do
	IFS=: read -r name n1 n2 <<<"$r"
	b=$(( ($(ir "$work/base.test" "$name" "$n2") - $(ir "$work/base.test" "$name" "$n1")) / (n2 - n1) ))
	h=$(( ($(ir "$work/head.test" "$name" "$n2") - $(ir "$work/head.test" "$name" "$n1")) / (n2 - n1) ))
	printf '%-34s %10d %10d %+7.1f%%\n' "$name" "$b" "$h" "$(awk -v b="$b" -v h="$h" 'BEGIN { print (h - b) * 100 / b }')"
done
