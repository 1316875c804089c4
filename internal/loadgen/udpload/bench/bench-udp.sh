#!/usr/bin/env bash
# Measures the UDP tracker against the udp-echo ceiling, as reported in
# BENCHMARKS.md ("## UDP tracker"). Run it under the shared benchmark lock:
#
#   go build -o /tmp/starling ./cmd/starling
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-udp.sh /tmp/starling
#
# The server is pinned to core 0 and the load generator to core 1. Each run
# is 2 s of warm-up and 10 s measured, numwant 30. A round runs udp-echo,
# then each profile followed by udp-echo again (echo, uniform, echo,
# skewed, echo), and compares each Starling run with the mean of the two
# echo runs around it: the host's speed drifts by 10-20 % within a minute.
#
# With OPENTRACKER=/path/to/opentracker set, each profile is also run against
# that binary after them, under the same conditions (same cores, port,
# generator flags and --server-pid accounting); see OPENTRACKER.md beside
# this script for how to build it. OPENTRACKER_ARGS goes before its own
# listen flags (e.g. "-f udp-workers.conf").
#
# SIZED_ECHO=200 (the default; 0 skips it) ends a round with an echo run
# whose answers are that many bytes: 200 is the size of Starling's answers
# here (30 IPv4 peers), so the echo runs show what the answers' size alone
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

echo_run() { # round, name of the run, reply size (0: the default 20 bytes)
	local size_flag=()
	((${3:-0} > 0)) && size_flag=(--reply-size "$3")
	echo "== round $1: udp-echo${3:+, $3-byte answers} (server on cpus $SERVER_CPUS, $SERVER_SOCKETS sockets; load on cpus $CLIENT_CPUS)"
	taskset -c "$SERVER_CPUS" "$BIN" bench udp-echo --addr "127.0.0.1:$PORT" --sockets "$SERVER_SOCKETS" "${size_flag[@]}" 2>/dev/null &
	server_pid=$!
	load uniform "$server_pid" "r$1-$2"
	stop_server
}

starling_run() { # round, profile
	echo "== round $1: starling serve, profile $2 (server on cpus $SERVER_CPUS, $SERVER_SOCKETS sockets; load on cpus $CLIENT_CPUS)"
	tracker_toml "$work" "$PORT" "$SERVER_SOCKETS"
	STARLING_CONFIG_TOML_PATH="$work/tracker.toml" taskset -c "$SERVER_CPUS" "$BIN" serve 2>"$work/serve.log" &
	server_pid=$!
	load "$2" "$server_pid" "r$1-starling-$2"
	grep -v '^$' "$work/serve.log" | head -5 || true
	echo "server RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$server_pid/status) peak"
	stop_server
}

opentracker_run() { # round, profile
	echo "== round $1: opentracker, profile $2 (server on cpus $SERVER_CPUS; load on cpus $CLIENT_CPUS)"
	# UDP only (no -p, so no TCP listener); as root it drops to nobody.
	# shellcheck disable=SC2086 # OPENTRACKER_ARGS is a list of flags
	taskset -c "$SERVER_CPUS" "$OPENTRACKER" $OPENTRACKER_ARGS -i 127.0.0.1 -P "$PORT" 2>"$work/opentracker.log" &
	server_pid=$!
	load "$2" "$server_pid" "r$1-opentracker-$2"
	grep -v '^$' "$work/opentracker.log" | head -5 || true
	echo "server RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$server_pid/status) peak"
	stop_server
}

# A round brackets each Starling run with echo runs, right before and
# right after it (echo, profile 1, echo, profile 2, echo): the host's
# speed drifts by 10-20 % over a minute, and a Starling run is compared
# with the mean of the two echoes around it. opentracker and the sized
# echo follow.
run_round() { # round number
	local k=0
	echo_run "$1" echo0
	for profile in $PROFILES; do
		starling_run "$1" "$profile"
		k=$((k + 1))
		echo_run "$1" "echo$k"
	done
	if [[ -n $OPENTRACKER ]]; then
		for profile in $PROFILES; do
			opentracker_run "$1" "$profile"
		done
	fi
	if ((SIZED_ECHO > 0)); then
		echo_run "$1" echo-sized "$SIZED_ECHO"
	fi
}

for ((r = 1; r <= ROUNDS; r++)); do
	run_round "$r"
done

# The summary: every round's figures, and Starling's against the echoes
# around it and opentracker of the same round.
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else printf "?" }'; }
echo
echo "== summary (answers/s; server µs per response in brackets)"
for ((r = 1; r <= ROUNDS; r++)); do
	line="round $r: echo $(rate "r$r-echo0") ($(cpu "r$r-echo0"))"
	k=0
	for profile in $PROFILES; do
		before=$(rate "r$r-echo$k")
		k=$((k + 1))
		after=$(rate "r$r-echo$k")
		echoes=$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.0f", (a + b) / 2 }')
		st=$(rate "r$r-starling-$profile")
		line+="; $profile: starling $st ($(cpu "r$r-starling-$profile")), $(pct "$st" "$echoes") % of the echoes around it ($before, $after)"
		if [[ -n $OPENTRACKER ]]; then
			ot=$(rate "r$r-opentracker-$profile")
			line+=", opentracker $ot ($(cpu "r$r-opentracker-$profile")), ×$(awk -v a="$st" -v b="$ot" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "?" }')"
		fi
	done
	if ((SIZED_ECHO > 0)); then
		line+="; $SIZED_ECHO-byte echo $(rate "r$r-echo-sized") ($(cpu "r$r-echo-sized"))"
	fi
	echo "$line"
done
