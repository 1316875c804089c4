#!/usr/bin/env bash
# Measures the UDP pause of an upgrade (`starling upgrade`) with a store of
# a few million peers, for one or more Starling builds side by side, as
# reported in BENCHMARKS.md ("Upgrade pause"). Run it under the shared
# benchmark lock:
#
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-upgrade.sh \
#     /tmp/starling-a /tmp/starling-b
#
# For each round and each build: a fresh `starling serve` (tracker_toml,
# logging at info, no CPU pinning, so the old and the new process can run
# on both cores as they would on a server), a walk (bench udp --walk)
# announcing every peer of PROFILE (skewed: 1,000,000 torrents, 2,000,000
# peers, of which the store keeps those with distinct addresses), then a
# probe at PROBE_RATE announces a second (bench udp --rate, 5 s timeout)
# during which the build upgrades to itself. Requests wait in the socket
# while UDP is paused, so the probe's slowest answer is the pause, seen
# from a client. Each line gives it with the two processes' own figures
# from their logs: the old one's write of the swarms (into the pipe, or
# into the file for a build before the pipe) and the new one's load.
#
# Settings: ROUNDS (2), PROFILE (skewed), PROBE_RATE (2000), PORT (17969).
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
(($# > 0)) || { echo "usage: bench-upgrade.sh path/to/starling..." >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
PROFILE=${PROFILE:-skewed}
PROBE_RATE=${PROBE_RATE:-2000}
PORT=${PORT:-17969}
bench_scratch

# field NAME LINE: the value of NAME=... in a log line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

one() { # binary, round
	local bin=$1 dir=$work/run-$2-$(basename "$1") pid probe log
	mkdir -p "$dir"
	tracker_toml "$dir" "$PORT" 1
	sed -i 's/threshold = "error"/threshold = "info"/' "$dir/tracker.toml"
	STARLING_CONFIG_TOML_PATH="$dir/tracker.toml" "$bin" serve --pid-file "$dir/pid" 2>"$dir/server.log" &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 100); do [[ -s $dir/pid ]] && break; sleep 0.1; done
	"$bin" bench udp --addr "127.0.0.1:$PORT" --profile "$PROFILE" --walk --duration 10m --sockets 4 \
		--source-ips 4 --window 64 --batch=false >"$dir/walk.out" 2>/dev/null
	"$bin" bench udp --addr "127.0.0.1:$PORT" --profile "$PROFILE" --rate "$PROBE_RATE" --sockets 4 \
		--source-ips 4 --warmup 0s --duration 8s --timeout 5s >"$dir/probe.out" 2>/dev/null &
	probe=$!
	sleep 3
	STARLING_CONFIG_TOML_PATH="$dir/tracker.toml" "$bin" upgrade --pid-file "$dir/pid" >"$dir/upgrade.out" 2>&1 ||
		echo "the upgrade failed: $(cat "$dir/upgrade.out")" >&2
	wait "$probe" || true
	log=$(cat "$dir/server.log")
	local wrote loaded
	wrote=$(grep -E 'swarms (handed to|written for) the new process' <<<"$log" || true)
	loaded=$(grep 'swarms taken over' <<<"$log" || true)
	printf '%-28s round %d  peers %-8s pause (slowest probe answer) %-9s write %-7s load %-7s lost %s\n' \
		"$(basename "$bin")" "$2" "$(field peers "$loaded")" \
		"$(sed -n 's/.* max \([0-9.]* [µm]*s\).*/\1/p' "$dir/probe.out")" \
		"$(field took "$wrote")" "$(field took "$loaded")" "$(awk '/^lost/ {print $NF}' "$dir/probe.out")"
	kill "$(cat "$dir/pid")" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	sleep 1
}

for ((r = 1; r <= ROUNDS; r++)); do
	for bin in "$@"; do
		one "$bin" "$r"
	done
done
