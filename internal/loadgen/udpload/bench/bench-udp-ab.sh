#!/usr/bin/env bash
# Compares two builds of Starling's UDP tracker by their CPU per response,
# both running at once: A and B share core 0, each with its own generator
# on core 1 (half the load each). On a shared VM whose speed drifts by
# 20-30 % from minute to minute, runs one after the other cannot resolve a
# 5 % change; two servers measured over the same seconds drift together,
# so their difference can. Each round swaps which build gets which port.
#
#   go build -o /tmp/a ./cmd/starling   # (the old commit, e.g. from git archive)
#   go build -o /tmp/b ./cmd/starling
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-udp-ab.sh /tmp/a /tmp/b skewed
#
# Prints, per round, each build's answers per second and server user and
# system µs per response and p50/p99 latency, then B's user time minus
# A's. ROUNDS (4), WARMUP (3s), DURATION (8s), PORT (16969, and the next
# one) as in bench-udp.sh. The generator is A's binary, run with GEN_FLAGS
# ("--sockets 4 --source-ips 4": as fast as it goes); for a low rate,
# where the CPU per response is mostly waking up (issue 22's shape c):
#   GEN_FLAGS="--rate 1000 --sockets 4 --source-ips 0 --batch=false"
# (each generator sends that rate, so each server gets it). WALK_FLAGS, when
# set, loads each server with the whole profile first ("bench udp --walk
# --batch=false WALK_FLAGS", one server after the other), from the
# measured run's sockets and addresses, e.g.
#   WALK_FLAGS="--sockets 4 --source-ips 0 --window 32"
# so that a low rate meets a full store, not the few peers it announces.
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
A=${1:?usage: bench-udp-ab.sh build-A build-B [uniform|skewed]}
B=${2:?usage: bench-udp-ab.sh build-A build-B [uniform|skewed]}
PROFILE=${3:-skewed}
ROUNDS=${ROUNDS:-4}
WARMUP=${WARMUP:-3s}
DURATION=${DURATION:-8s}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
PORT=${PORT:-16969}
read -ra GEN <<<"${GEN_FLAGS:---sockets 4 --source-ips 4}"
bench_scratch

# figures BUILD: "rate user system p50 p99" of that build's run in this
# round (latencies as the generator prints them, unit included).
figures() {
	local out=$work/$1.out
	local rate user lat
	rate=$(sed -n 's/^responses received: *[0-9]* (\([0-9]*\)\/s)$/\1/p' "$out")
	# The user / system line right after "server CPU" (the generator's
	# own follows "generator CPU").
	user=$(awk '/^server CPU/ { s = 1; next } s && /user \/ system/ { print $4, $6; exit }' "$out")
	lat=$(awk '/^latency:/ { for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1) $(i + 2); if ($i == "p99") b = $(i + 1) $(i + 2) } gsub(/,/, "", a); gsub(/,/, "", b); print a, b }' "$out")
	echo "${rate:-0} ${user:-? ?} ${lat:-? ?}"
}

for ((r = 1; r <= ROUNDS; r++)); do
	# Odd rounds give A the first port, even rounds B.
	if ((r % 2)); then order=(A B); else order=(B A); fi
	pids=()
	for k in 0 1; do
		name=${order[$k]}
		bin=${!name}
		mkdir -p "$work/$name"
		tracker_toml "$work/$name" $((PORT + k)) 1
		STARLING_CONFIG_TOML_PATH="$work/$name/tracker.toml" taskset -c "$SERVER_CPUS" "$bin" serve 2>"$work/$name.log" &
		pids+=($!)
	done
	sleep 0.5
	if [[ -n ${WALK_FLAGS:-} ]]; then
		read -ra walk <<<"$WALK_FLAGS"
		for k in 0 1; do
			taskset -c "$CLIENT_CPUS" "$A" bench udp --addr "127.0.0.1:$((PORT + k))" --profile "$PROFILE" --numwant 30 \
				--walk --duration 10m --batch=false "${walk[@]}" >/dev/null 2>&1 || echo "a walk failed" >&2
		done
	fi
	gens=()
	for k in 0 1; do
		name=${order[$k]}
		taskset -c "$CLIENT_CPUS" "$A" bench udp --addr "127.0.0.1:$((PORT + k))" --profile "$PROFILE" --numwant 30 \
			--warmup "$WARMUP" --duration "$DURATION" "${GEN[@]}" \
			--server-pid "${pids[$k]}" >"$work/$name.out" 2>/dev/null &
		gens+=($!)
	done
	for g in "${gens[@]}"; do wait "$g" || echo "a generator failed; see its output above" >&2; done
	kill "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
	pids=()
	read -r ra ua sa la qa <<<"$(figures A)"
	read -r rb ub sb lb qb <<<"$(figures B)"
	echo "round $r ($PROFILE): A $ra/s, user $ua + system $sa µs, p50 $la p99 $qa; B $rb/s, user $ub + system $sb µs, p50 $lb p99 $qb; B-A user $(awk -v a="$ua" -v b="$ub" 'BEGIN { if (a == "?" || b == "?") print "?"; else printf "%+.2f", b - a }') µs"
done
