#!/usr/bin/env bash
# Measures one Starling node on the memory store against the same node on
# the Redis store (core.swarm.redis_peer_detail off, the default, and on:
# "redis-detail"), and (with CHIHAYA set) chihaya on its Redis store, as
# reported in BENCHMARKS.md ("## Swarms on Redis"). Run it under the shared
# benchmark lock:
#
#   go build -o /tmp/starling ./cmd/starling
#   flock /tmp/starling-bench.lock env CHIHAYA=/tmp/chihaya-bin/chihaya \
#     internal/loadgen/udpload/bench/bench-redis.sh /tmp/starling
#
# CHIHAYA.md beside this script says how to build chihaya. The tracker and
# its private redis-server (a new one for each tracker, no persistence) run
# on core 0 (SERVER_CPUS; REDIS_CPUS moves Redis elsewhere, to see what
# sharing the core costs it), the generator on core 1 (CLIENT_CPUS): uniform
# profile (10,000 torrents, 200,000 peers, half of them seeders), announces
# only, LOAD_SOCKETS sockets with WINDOW announces in flight each.
#
# For each tracker: a walk (bench udp --walk, numwant 30) announces each of
# the 200,000 peers once, 20 to a torrent; Redis's used_memory after it,
# less the empty server's, divided by the peers the tracker then holds is
# the memory per peer (Starling's count from /api/v1/stats, chihaya's from
# the lengths of its swarm hashes). Then one measured run per numwant in
# NUMWANTS, without a warm-up (the peers are in): announces per second,
# the tracker's CPU per answer (--server-pid), and Redis's CPU per
# announce: used_cpu_user + used_cpu_sys from INFO cpu before and after the
# run over the announces answered in it.
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
BIN=${1:?usage: bench-redis.sh path/to/starling}
CHIHAYA=${CHIHAYA:-}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
SERVER_CPUS=${SERVER_CPUS:-0}
REDIS_CPUS=${REDIS_CPUS:-$SERVER_CPUS}
CLIENT_CPUS=${CLIENT_CPUS:-1}
# Starling's UDP sockets. On Redis a worker handles each batch it reads
# (up to 64 requests) at once and rueidis writes their calls to Redis
# together, so one socket makes the largest batches and did best
# (BENCHMARKS.md, "Swarms on Redis": 1, 4 and 16 sockets). The memory
# store's runs use it too; runs before 7 Dec 2026 05:00 UTC used 16.
SERVER_SOCKETS=${SERVER_SOCKETS:-1}
LOAD_SOCKETS=${LOAD_SOCKETS:-16}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-8s}
NUMWANTS=${NUMWANTS:-30 50}
TRACKERS=${TRACKERS:-memory redis redis-detail}
[[ -n $CHIHAYA ]] && TRACKERS+=" chihaya"
PORT=${PORT:-16969}
API_PORT=${API_PORT:-16912}
REDIS_PORT=${REDIS_PORT:-16379}
TOKEN=benchAdminToken0123456789
bench_scratch
redis_pid=
server_pid=

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

start_redis() {
	taskset -c "$REDIS_CPUS" "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
		--dir "$work" --logfile "$work/redis.log" &
	redis_pid=$!
	pids+=("$redis_pid")
	for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && return; sleep 0.05; done
	echo "redis-server did not start:"; cat "$work/redis.log"; exit 1
}

stop() { # pid
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

info() { # field of INFO (any section)
	rcli info everything | tr -d '\r' | sed -n "s/^$1:\(.*\)$/\1/p"
}
redis_cpu() { echo "$(info used_cpu_user) $(info used_cpu_sys)"; }

starling_toml() { # store
	tracker_toml "$work" "$PORT" "$SERVER_SOCKETS"
	# tracker_toml's [core.swarm] (snapshots off) gets the store's keys.
	if [[ $1 == redis* ]]; then
		local detail=false
		[[ $1 == redis-detail ]] && detail=true
		sed -i '/^snapshot_path = ""$/a store = "redis"\nredis_url = "redis://127.0.0.1:'"$REDIS_PORT"'/0"\nredis_key_prefix = "bench:"\nredis_peer_detail = '"$detail" "$work/tracker.toml"
	fi
	cat >>"$work/tracker.toml" <<TOML

[http_api]
bind_address = "127.0.0.1:$API_PORT"

[http_api.access_tokens]
admin = "$TOKEN"
TOML
}

chihaya_yaml() {
	cat >"$work/chihaya.yaml" <<YAML
chihaya:
  announce_interval: 30m
  min_announce_interval: 15m
  metrics_addr: 127.0.0.1:0
  udp:
    addr: 127.0.0.1:$PORT
    default_numwant: 50
    max_numwant: 100
    max_scrape_infohashes: 50
    max_clock_skew: 10s
    private_key: benchmark-only-key-0123456789abcdef
  storage:
    name: redis
    config:
      gc_interval: 3m
      peer_lifetime: 31m
      prometheus_reporting_interval: 1s
      redis_broker: redis://127.0.0.1:$REDIS_PORT/0
      redis_connect_timeout: 15s
      redis_read_timeout: 15s
      redis_write_timeout: 15s
  prehooks: null
YAML
}

# peers NAME: the peers the tracker holds after the fill.
peers() {
	case $1 in
	chihaya)
		# Every IPv4 swarm hash's length (its counters are separate strings).
		# shellcheck disable=SC2016 # Lua, not shell
		rcli eval 'local n = 0
for _, k in ipairs(redis.call("KEYS", "IPv4_[SL]_*")) do
  if redis.call("TYPE", k).ok == "hash" then n = n + redis.call("HLEN", k) end
end
return n' 0 ;;
	*)
		curl -fsS "http://127.0.0.1:$API_PORT/api/v1/stats?token=$TOKEN" |
			sed -n 's/.*"seeders":\([0-9]*\).*"leechers":\([0-9]*\).*/\1 \2/p' | awk '{ print $1 + $2 }' ;;
	esac
}

load() { # numwant, duration (0: a walk), output
	local run=(--warmup 0s --duration "$2")
	[[ $2 == 0 ]] && run=(--walk --duration 10m)
	taskset -c "$CLIENT_CPUS" "$BIN" bench udp --addr "127.0.0.1:$PORT" --profile uniform --numwant "$1" \
		"${run[@]}" --sockets "$LOAD_SOCKETS" --source-ips "$LOAD_SOCKETS" --window "$WINDOW" \
		--server-pid "$server_pid" 2>"$work/progress.log" >"$3"
}

summary=()
for name in $TRACKERS; do
	echo "== $name (tracker on cpus $SERVER_CPUS, Redis on cpus $REDIS_CPUS, load on cpus $CLIENT_CPUS, $SERVER_SOCKETS server sockets, $LOAD_SOCKETS load sockets x $WINDOW in flight)"
	mem0=0
	if [[ $name != memory ]]; then
		start_redis
		mem0=$(info used_memory)
	fi
	case $name in
	chihaya)
		chihaya_yaml
		taskset -c "$SERVER_CPUS" "$CHIHAYA" --config "$work/chihaya.yaml" --nocolors >"$work/serve.log" 2>&1 & ;;
	*)
		starling_toml "$name"
		STARLING_CONFIG_TOML_PATH="$work/tracker.toml" taskset -c "$SERVER_CPUS" "$BIN" serve 2>"$work/serve.log" & ;;
	esac
	server_pid=$!
	pids+=("$server_pid")
	load 30 0 "$work/$name-fill.out"
	sed -n 's/^\(measured\|responses received\|lost\|error sample\).*/fill: &/p' "$work/$name-fill.out"
	n=$(peers "$name")
	perpeer=-
	if [[ $name != memory ]]; then
		mem1=$(info used_memory)
		perpeer=$(awk -v a="$mem0" -v b="$mem1" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }')
		echo "peers: $n; Redis used_memory $mem0 -> $mem1 B: $perpeer B per peer; keys: $(rcli dbsize)"
	else
		echo "peers: $n"
	fi
	for nw in $NUMWANTS; do
		cpu0="0 0"
		[[ $name != memory ]] && cpu0=$(redis_cpu) && rcli config resetstat >/dev/null
		load "$nw" "$DURATION" "$work/$name-$nw.out"
		per=-
		ann=$(sed -n 's/^  announce: *\([0-9]*\) .*/\1/p' "$work/$name-$nw.out")
		if [[ $name != memory ]]; then
			cpu1=$(redis_cpu)
			read -r u0 s0 <<<"$cpu0"
			read -r u1 s1 <<<"$cpu1"
			per=$(awk -v u0="$u0" -v s0="$s0" -v u1="$u1" -v s1="$s1" -v n="$ann" \
				'BEGIN { if (n > 0) printf "%.2f", 1e6 * (u1 - u0 + s1 - s0) / n; else print "?" }')
			split=$(awk -v u0="$u0" -v s0="$s0" -v u1="$u1" -v s1="$s1" -v n="$ann" \
				'BEGIN { if (n > 0) printf "%.2f / %.2f", 1e6 * (u1 - u0) / n, 1e6 * (s1 - s0) / n }')
			echo "numwant $nw: Redis user / system CPU per announce $split µs; its busiest commands:"
			rcli info commandstats | tr -d '\r' | grep '^cmdstat_' | sort -t= -k3 -n -r | head -4 | sed 's/^/  /'
		fi
		rate=$(sed -n 's/^  announce: *[0-9]* (\([0-9]*\)\/s)$/\1/p' "$work/$name-$nw.out")
		tcpu=$(sed -n 's/^server CPU:.*, \([0-9.]*\) µs per response$/\1/p' "$work/$name-$nw.out")
		errs=$(sed -n 's/^  error: *\([0-9]*\)$/\1/p' "$work/$name-$nw.out")
		lost=$(sed -n 's/^lost (timed out): *\([0-9]*\)$/\1/p' "$work/$name-$nw.out")
		echo "numwant $nw: $rate announces/s, tracker $tcpu µs per answer, Redis $per µs per announce, errors $errs, lost $lost"
		sed -n 's/^error sample.*/numwant '"$nw"': &/p' "$work/$name-$nw.out"
		summary+=("$(printf '%-15s %7s %12s %14s %14s %12s %8s' "$name" "$nw" "$rate" "$tcpu" "$per" "$perpeer" "$n")")
	done
	grep -v '^$' "$work/serve.log" | grep -iv 'level=info\| INF ' | head -5 || true
	echo "tracker RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$server_pid/status") peak"
	stop "$server_pid"
	if [[ -n $redis_pid ]]; then
		stop "$redis_pid"
		redis_pid=
	fi
done

echo
echo "== summary"
printf '%-15s %7s %12s %14s %14s %12s %8s\n' tracker numwant announces/s "tracker µs/ann" "Redis µs/ann" "Redis B/peer" peers
printf '%s\n' "${summary[@]}"
