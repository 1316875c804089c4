#!/usr/bin/env bash
# Compares two builds of the tracker's user-space path on BenchmarkBatchSkewed
# (internal/udptracker): both test binaries run at the same time on one
# core, so the host's drift, which moves runs one after the other by
# 20-40 % here, moves both alike, and their ratio resolves about 1 %.
#
#   go test -c -o /tmp/a.test ./internal/udptracker   # the old commit
#   go test -c -o /tmp/b.test ./internal/udptracker   # the new one
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-batch-ab.sh /tmp/a.test /tmp/b.test
#
# Prints each round's ns per announce of both (each has half the core, so
# they are about twice a lone run's) and B/A. ROUNDS (4), CPU (0), BENCH
# (BatchSkewed), COUNT (2400000: the store's state moves with the count,
# so both must run the same one).
set -euo pipefail
A=${1:?usage: bench-batch-ab.sh a.test b.test}
B=${2:?usage: bench-batch-ab.sh a.test b.test}
ROUNDS=${ROUNDS:-4}
CPU=${CPU:-0}
BENCH=${BENCH:-BatchSkewed}
COUNT=${COUNT:-2400000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nsop() { awk '$1 ~ /^Benchmark/ { print $3 }' "$1"; }
for ((r = 1; r <= ROUNDS; r++)); do
	taskset -c "$CPU" "$A" -test.run '^$' -test.bench "^Benchmark$BENCH\$" -test.benchtime "${COUNT}x" >"$work/a" 2>&1 &
	pa=$!
	taskset -c "$CPU" "$B" -test.run '^$' -test.bench "^Benchmark$BENCH\$" -test.benchtime "${COUNT}x" >"$work/b" 2>&1 &
	pb=$!
	wait "$pa" "$pb"
	a=$(nsop "$work/a")
	b=$(nsop "$work/b")
	echo "round $r: A $a ns/op, B $b ns/op, B/A $(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "?" }')"
done
