#!/usr/bin/env bash
# Measures the UDP tracker against the udp-echo ceiling, as reported in
# BENCHMARKS.md ("## UDP tracker"). Run it under the shared benchmark lock:
#
#   go build -o /tmp/starling ./cmd/starling
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-udp.sh /tmp/starling
#
# The server is pinned to core 0 and the load generator to core 1. Each run
# is 2 s of warm-up and 10 s measured, numwant 30.
#
# With OPENTRACKER=/path/to/opentracker set, each profile is also run against
# that binary right after Starling's run of it, under the same conditions
# (same cores, port, generator flags and --server-pid accounting); see
# OPENTRACKER.md beside this script for how to build it. OPENTRACKER_ARGS
# goes before its own listen flags (e.g. "-f udp-workers.conf").
#
# SIZED_ECHO=200 (the default; 0 skips it) adds a second echo run whose
# answers are that many bytes: 200 is the size of Starling's answers here
# (30 IPv4 peers), so the two echo runs show what the answers' size alone
# costs, and the rest of the gap is the tracker's work.
#
# ROUNDS=N repeats the whole sequence N times and ends with a table of
# every round's rates and ratios: on a shared machine whose speed drifts
# from minute to minute, only runs next to each other compare.
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
BIN=${1:?usage: bench-udp.sh path/to/starling}
OPENTRACKER=${OPENTRACKER:-}
OPENTRACKER_ARGS=${OPENTRACKER_ARGS:-}
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-10s}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
LOAD_SOCKETS=${LOAD_SOCKETS:-4}
PROFILES=${PROFILES:-uniform skewed}
SERVER_SOCKETS=${SERVER_SOCKETS:-1}
PORT=${PORT:-16969}
ROUNDS=${ROUNDS:-1}
SIZED_ECHO=${SIZED_ECHO:-200}
work=$(mktemp -d)
server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

load() { # profile, pid, name of the run for the summary
	taskset -c "$CLIENT_CPUS" "$BIN" bench udp --addr "127.0.0.1:$PORT" --profile "$1" --numwant 30 \
		--warmup "$WARMUP" --duration "$DURATION" --sockets "$LOAD_SOCKETS" --source-ips "$LOAD_SOCKETS" \
		--server-pid "$2" 2>"$work/progress.log" | tee "$work/$3.out"
}

# rate NAME and cpu NAME: answers per second and server µs per response.
rate() { sed -n 's/^responses received: *[0-9]* (\([0-9]*\)\/s)$/\1/p' "$work/$1.out"; }
cpu() { sed -n 's/^server CPU:.*, \([0-9.]*\) µs per response$/\1/p' "$work/$1.out"; }

stop_server() {
	kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

run_round() { # round number
	echo "== round $1: udp-echo (server on cpus $SERVER_CPUS, $SERVER_SOCKETS sockets; load on cpus $CLIENT_CPUS)"
	taskset -c "$SERVER_CPUS" "$BIN" bench udp-echo --addr "127.0.0.1:$PORT" --sockets "$SERVER_SOCKETS" 2>/dev/null &
	server_pid=$!
	load uniform "$server_pid" "r$1-echo"
	stop_server
	if ((SIZED_ECHO > 0)); then
		echo "== round $1: udp-echo, $SIZED_ECHO-byte answers (server on cpus $SERVER_CPUS, $SERVER_SOCKETS sockets; load on cpus $CLIENT_CPUS)"
		taskset -c "$SERVER_CPUS" "$BIN" bench udp-echo --addr "127.0.0.1:$PORT" --sockets "$SERVER_SOCKETS" \
			--reply-size "$SIZED_ECHO" 2>/dev/null &
		server_pid=$!
		load uniform "$server_pid" "r$1-echo-sized"
		stop_server
	fi

	for profile in $PROFILES; do
		echo "== round $1: starling serve, profile $profile (server on cpus $SERVER_CPUS, $SERVER_SOCKETS sockets; load on cpus $CLIENT_CPUS)"
		tracker_toml "$work" "$PORT" "$SERVER_SOCKETS"
		STARLING_CONFIG_TOML_PATH="$work/tracker.toml" taskset -c "$SERVER_CPUS" "$BIN" serve 2>"$work/serve.log" &
		server_pid=$!
		load "$profile" "$server_pid" "r$1-starling-$profile"
		grep -v '^$' "$work/serve.log" | head -5 || true
		echo "server RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$server_pid/status) peak"
		stop_server

		[[ -n $OPENTRACKER ]] || continue
		echo "== round $1: opentracker, profile $profile (server on cpus $SERVER_CPUS; load on cpus $CLIENT_CPUS)"
		# UDP only (no -p, so no TCP listener); as root it drops to nobody.
		# shellcheck disable=SC2086 # OPENTRACKER_ARGS is a list of flags
		taskset -c "$SERVER_CPUS" "$OPENTRACKER" $OPENTRACKER_ARGS -i 127.0.0.1 -P "$PORT" 2>"$work/opentracker.log" &
		server_pid=$!
		load "$profile" "$server_pid" "r$1-opentracker-$profile"
		grep -v '^$' "$work/opentracker.log" | head -5 || true
		echo "server RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$server_pid/status) peak"
		stop_server
	done
}

for ((r = 1; r <= ROUNDS; r++)); do
	run_round "$r"
done

# The summary: every round's figures, and Starling's against the echo and
# opentracker of the same round.
echo
echo "== summary (answers/s; server µs per response in brackets)"
for ((r = 1; r <= ROUNDS; r++)); do
	echo_rate=$(rate "r$r-echo")
	line="round $r: echo $echo_rate ($(cpu "r$r-echo"))"
	if ((SIZED_ECHO > 0)); then
		sized_rate=$(rate "r$r-echo-sized")
		line+=", $SIZED_ECHO-byte echo $sized_rate ($(cpu "r$r-echo-sized"))"
	fi
	for profile in $PROFILES; do
		st=$(rate "r$r-starling-$profile")
		line+="; $profile: starling $st ($(cpu "r$r-starling-$profile")), $(awk -v a="$st" -v b="$echo_rate" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else printf "?" }') % of echo"
		if ((SIZED_ECHO > 0)); then
			line+=" ($(awk -v a="$st" -v b="$sized_rate" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else printf "?" }') % of the $SIZED_ECHO-byte echo)"
		fi
		if [[ -n $OPENTRACKER ]]; then
			ot=$(rate "r$r-opentracker-$profile")
			line+=", opentracker $ot ($(cpu "r$r-opentracker-$profile")), ×$(awk -v a="$st" -v b="$ot" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "?" }')"
		fi
	done
	echo "$line"
done
