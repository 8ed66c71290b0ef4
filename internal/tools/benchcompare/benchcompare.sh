#!/usr/bin/env bash
# benchcompare.sh BASE [COUNT] [REGEX]: compare the root package's benchmarks
# at git revision BASE with the working tree, in one run. Both test binaries
# are built first; then, COUNT times (default 15), BASE's and the working
# tree's benchmarks run one after the other (-benchtime=200ms), so that drift
# of the machine hits both alike; benchstat compares them. The benchmarks are
# the README table's unless REGEX is given. Calibrate first: the Floor rows
# are identical code in both and must show no difference.
set -euo pipefail
base=${1:?usage: benchcompare.sh BASE [COUNT] [REGEX]}
count=${2:-15}
regex=${3:-'^Benchmark(Floor|Execute|Seq|Journal|Parallel|Loop|Map|Isolation)$'}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git -C "$root" worktree add --detach "$work/base" "$base" >/dev/null
(cd "$work/base" && go test -c -o "$work/base.test" .)
(cd "$root" && go test -c -o "$work/head.test" .)
for i in $(seq "$count"); do
	printf 'pass %d/%d\r' "$i" "$count" >&2
	"$work/base.test" -test.run='^$' -test.bench="$regex" -test.benchmem -test.benchtime=200ms >>"$work/base.txt"
	"$work/head.test" -test.run='^$' -test.bench="$regex" -test.benchmem -test.benchtime=200ms >>"$work/head.txt"
done
echo >&2
echo "# base $(git -C "$root" rev-parse --short "$base"), head $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo ' + uncommitted changes'), $count alternating passes"
"$root/bin/benchstat" base="$work/base.txt" head="$work/head.txt"
