#!/usr/bin/env bash
# Does a second server socket on a second core add throughput? On a 2-core
# box the load generator needs the second core end to end, so this measures
# drain rates instead ("bench udp --burst"): the generator pauses the server
# (SIGSTOP), queues a burst of announces in its sockets, resumes it and
# sleeps while it answers, then reads the answers and takes the drain time
# from their kernel receive timestamps. Reported in BENCHMARKS.md ("### A
# second socket on a second core"). Run as root (it raises
# net.core.rmem_max/wmem_max so the queues hold a whole burst, and restores
# them) under the shared benchmark lock:
#
#   go build -o /tmp/starling-scaling ./cmd/starling
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-udp-scaling.sh /tmp/starling-scaling
#
# Each round runs the server with sockets = 1 on core 0 (GOMAXPROCS 1) and
# with sockets = 2 on cores 0-1 (GOMAXPROCS 2), in alternating order, for
# udp-echo and the tracker (uniform profile, numwant 30). Each run is BURSTS
# bursts of BURST announces; its figure is the median of the valid bursts
# after the first (the first inserts most of the peers).
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
BIN=${1:?usage: bench-udp-scaling.sh path/to/starling}
BURST=${BURST:-200000}
BURSTS=${BURSTS:-5}
ROUNDS=${ROUNDS:-3}
LOAD_SOCKETS=${LOAD_SOCKETS:-256}
SOURCE_IPS=${SOURCE_IPS:-16}
PROFILE=${PROFILE:-uniform}
SERVERS=${SERVERS:-echo tracker}
PORT=${PORT:-16971}
# The generator runs on core 0: it queues the burst while the server is
# stopped, so the requests' buffers are allocated on core 0, where the
# 1-socket server frees them. Left on core 1, it would have the kernel send
# those frees back to core 1 (deferred skb frees, an IPI per 64), and the
# idle core 1 would do part of the 1-core server's work.
GEN_CPUS=${GEN_CPUS:-0}
RMEM=${RMEM:-268435456} # 256 MiB: the kernel doubles it, a burst of 200,000 takes ~170 MB
work=$(mktemp -d)
server_pid=
old_rmem=$(cat /proc/sys/net/core/rmem_max)
old_wmem=$(cat /proc/sys/net/core/wmem_max)
cleanup() {
	if [[ -n $server_pid ]]; then
		kill -CONT "$server_pid" 2>/dev/null || true
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	sysctl -q -w net.core.rmem_max="$old_rmem" net.core.wmem_max="$old_wmem" || true
	rm -rf "$work"
}
trap cleanup EXIT
if ((old_rmem < RMEM)); then
	sysctl -q -w net.core.rmem_max="$RMEM" net.core.wmem_max="$RMEM"
fi

start_server() { # kind, sockets, cpus
	if [[ $1 == echo ]]; then
		GOMAXPROCS=$2 taskset -c "$3" "$BIN" bench udp-echo --addr "127.0.0.1:$PORT" --sockets "$2" 2>/dev/null &
	else
		tracker_toml "$work" "$PORT" "$2"
		GOMAXPROCS=$2 STARLING_CONFIG_TOML_PATH="$work/tracker.toml" taskset -c "$3" "$BIN" serve 2>"$work/serve.log" &
	fi
	server_pid=$!
}

stop_server() {
	kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

declare -A rates
run() { # kind, sockets, cpus, round
	local kind=$1 n=$2 cpus=$3 round=$4 out rate
	echo "== round $round: $kind, $n socket(s) on cpus $cpus, generator on cpus $GEN_CPUS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	start_server "$kind" "$n" "$cpus"
	# The generator sends while the server is stopped and sleeps (in no
	# poller) while it drains.
	out=$(taskset -c "$GEN_CPUS" "$BIN" bench udp --addr "127.0.0.1:$PORT" --profile "$PROFILE" --numwant 30 \
		--burst "$BURST" --bursts "$BURSTS" --sockets "$LOAD_SOCKETS" --source-ips "$SOURCE_IPS" \
		--server-pid "$server_pid" 2>&1) || true
	echo "$out"
	stop_server
	rate=$(sed -n 's/^drain rate: \([0-9]*\)\/s.*/\1/p' <<<"$out")
	rates[$kind,$n]+="${rate:-invalid} "
}

for ((round = 1; round <= ROUNDS; round++)); do
	for kind in $SERVERS; do
		if ((round % 2)); then
			run "$kind" 1 0 "$round"; run "$kind" 2 0,1 "$round"
		else
			run "$kind" 2 0,1 "$round"; run "$kind" 1 0 "$round"
		fi
	done
done

median() { tr ' ' '\n' | grep -E '^[0-9]+$' | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print 0; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "== drain rates (answers/s; each the median of bursts 2..$BURSTS of $BURST)"
for kind in $SERVERS; do
	one=${rates[$kind,1]} two=${rates[$kind,2]}
	m1=$(median <<<"$one") m2=$(median <<<"$two")
	printf '%-8s 1 socket, core 0:     %s-> median %s\n' "$kind" "$one" "$m1"
	printf '%-8s 2 sockets, cores 0-1: %s-> median %s\n' "$kind" "$two" "$m2"
	awk -v a="$m1" -v b="$m2" -v k="$kind" 'BEGIN {if (a > 0) printf "%-8s ratio 2/1: %.2f\n", k, b / a}'
done
