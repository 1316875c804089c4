#!/usr/bin/env bash
# The fair comparison of Starling's UDP tracker with opentracker (issue 22):
# each server alone on core 0, the load generator ("starling bench udp") on
# core 1, the same generator settings for both, rounds alternating which
# server goes first. Build opentracker as OPENTRACKER.md beside this script
# says, then, under the shared benchmark lock:
#
#   go build -o /tmp/starling ./cmd/starling
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-udp-fair.sh \
#     /tmp/starling /tmp/opentracker-build/src/opentracker
#
# Load shapes (SHAPES, default all seven), each in each profile (PROFILES,
# default "uniform skewed"), numwant 30:
#   a           16 client sockets on 127.0.0.1, 16 requests in flight each, one
#               datagram per send and per receive (a conventional client);
#   a-recv      the same plain clients, the same one datagram per send, but
#               each socket reads the answers that have arrived with one
#               recvmmsg (--recv-batch): what the servers see is a's, and the
#               generator spends less per request, so that it is not the
#               limit on its core;
#   a-mmsg      the same sockets and window, sent the way the issue's figures
#               were taken ("starling bench udp --sockets 16 --source-ips 0
#               --window 16 --gso=false"): each socket sends its window with
#               one sendmmsg, one datagram per message, and reads with
#               recvmmsg;
#   b-gso       4 sockets over 4 source addresses, 512 in flight each, batches
#               sent with UDP segmentation offload;
#   b-sendmmsg  the same, batches sent with sendmmsg (no GSO);
#   c           1,000 requests/s over 4 sockets on 127.0.0.1, one datagram per
#               send: a low rate, where the figure to compare is latency.
#   c-pair      shape c with both servers at once, Starling on PORT and
#               opentracker on PORT+1, both on core 0, and a generator for
#               each at once on core 1: the host's stalls, which decide
#               shape c's p99 on a shared box, then fall on both servers in
#               the same seconds instead of on one round or the other. Each
#               generator lists its answers slower than SLOW_OVER (300us)
#               (--slow-log); the run's line says how many of each server's
#               were sent within 3 ms of one of the other's (a stall of the
#               host or of the generator's core) and how many were its own.
# Within a round, both servers run each shape and profile back to back
# (Starling first in odd rounds, opentracker first in even ones), so the
# host's drift from minute to minute falls on both alike.
#
# Each measured run starts its server fresh. Before measuring, a walk
# ("bench udp --walk") announces every peer of the profile once, from the
# same sockets and source addresses as the shape (the trackers tell peers
# apart by address and port, and the generator derives a peer's port from
# its socket), so both servers hold the whole population (2,000,000 peers
# in the skewed profile) when the measured run starts: a warm-up alone would
# leave most of it to be inserted while measuring, and a faster server would
# insert a different share. Then WARMUP (3s) of the shape's own load and
# DURATION (10s) measured, with --server-pid, so the server's user and
# system CPU time per response is read from /proc over the measured window.
# PRELOAD=none skips the walks. The walk's sockets are plain clients
# (--batch=false: one request per answer) with WALK_INFLIGHT (128) requests
# in flight over all of them, few enough that opentracker's receive buffer
# (the system default, 208 KiB) holds them; each walk's losses are in its
# output and in the run's line.
#
# opentracker runs as "opentracker -f CONF -i 127.0.0.1 -P $PORT", CONF
# holding "listen.udp.workers $OT_WORKERS" (1): one blocking UDP worker
# thread. The flags are read in order and the UDP socket is bound at -P,
# so the config file (which sets the workers) and -i come before it. No -p:
# no TCP listener. Starling runs "starling serve" with tracker_toml (one
# UDP listener with STARLING_SOCKETS sockets, 1 by default).
#
# Output: a line per run, then a Markdown table per shape and profile: each
# server's median over the rounds with the range in brackets, and
# Starling/opentracker of the medians (answers/s is the headline for shapes
# a and b, p50 and p99 latency for shape c). OUT (default: a new directory
# under /tmp, kept) receives every run's raw generator output (NAME.out,
# its progress lines NAME.progress, the walk's NAME.walk.out, the server's
# stderr NAME.server.log), runs.tsv with the figures of every run, and
# summary.md with the tables.
#
# PACING=poisson sends shapes c and c-pair at the times of a Poisson process
# of the same rate (bench udp --poisson) instead of evenly spaced (even, the
# default): as independent clients' requests arrive, and without the fixed
# phase between c-pair's two generators that even pacing keeps in a round.
#
# Other settings: ROUNDS (3), SERVER_CPUS (0), CLIENT_CPUS (1), PORT
# (16969), OT_WORKERS (1), NUMWANT (30).
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
BIN=${1:?usage: bench-udp-fair.sh path/to/starling [path/to/opentracker]}
OPENTRACKER=${2:-${OPENTRACKER:-/tmp/opentracker-build/src/opentracker}}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3s}
DURATION=${DURATION:-10s}
SHAPES=${SHAPES:-a a-recv a-mmsg b-gso b-sendmmsg c c-pair}
PROFILES=${PROFILES:-uniform skewed}
PRELOAD=${PRELOAD:-walk}
WALK_INFLIGHT=${WALK_INFLIGHT:-128}
STARLING_SOCKETS=${STARLING_SOCKETS:-1}
OT_WORKERS=${OT_WORKERS:-1}
NUMWANT=${NUMWANT:-30}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
PORT=${PORT:-16969}
SLOW_OVER=${SLOW_OVER:-300us}
PACING=${PACING:-even}
OUT=${OUT:-$(mktemp -d /tmp/bench-udp-fair.XXXXXX)}
mkdir -p "$OUT"
[[ -x $OPENTRACKER ]] || { echo "no opentracker binary at $OPENTRACKER (see OPENTRACKER.md)" >&2; exit 1; }

# The generator flags of each shape; its sockets and source addresses are
# also the walk's.
declare -A shape_flags=(
	[a]="--sockets 16 --source-ips 0 --window 16 --batch=false --gso=false"
	[a-recv]="--sockets 16 --source-ips 0 --window 16 --batch=false --recv-batch --gso=false"
	[a-mmsg]="--sockets 16 --source-ips 0 --window 16 --batch --gso=false"
	[b-gso]="--sockets 4 --source-ips 4 --window 512 --batch --gso"
	[b-sendmmsg]="--sockets 4 --source-ips 4 --window 512 --batch --gso=false"
	[c]="--rate 1000 --sockets 4 --source-ips 0 --batch=false"
	[c-pair]="--rate 1000 --sockets 4 --source-ips 0 --batch=false"
)
declare -A shape_text=(
	[a]="16 sockets on 127.0.0.1 x 16 in flight, one datagram per send and per receive"
	[a-recv]="16 sockets on 127.0.0.1 x 16 in flight, one datagram per send, answers read with recvmmsg"
	[a-mmsg]="16 sockets on 127.0.0.1 x 16 in flight, each window sent with one sendmmsg (one datagram per message, no GSO)"
	[b-gso]="4 sockets over 4 source addresses x 512 in flight, batches with GSO"
	[b-sendmmsg]="4 sockets over 4 source addresses x 512 in flight, batches with sendmmsg"
	[c]="1,000 requests/s over 4 sockets on 127.0.0.1, one datagram per send"
	[c-pair]="shape c, both servers at once on core 0, a generator for each at once on core 1"
)
case $PACING in
even) ;;
poisson) shape_flags[c]+=" --poisson" shape_flags[c-pair]+=" --poisson" ;;
*) echo "PACING is even or poisson, not $PACING" >&2; exit 1 ;;
esac
for shape in $SHAPES; do
	[[ -n ${shape_flags[$shape]:-} ]] || { echo "unknown shape $shape (a a-recv a-mmsg b-gso b-sendmmsg c c-pair)" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=
pair_pid= # c-pair's first server, while the second runs in server_pid
cleanup() {
	for p in $server_pid $pair_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
	echo "raw outputs kept in $OUT"
}
trap cleanup EXIT
printf 'listen.udp.workers %s\n' "$OT_WORKERS" >"$work/opentracker.conf"

# flag_value FLAG FLAGS...: the value that follows FLAG in FLAGS.
flag_value() {
	local want=$1
	shift
	while (($# > 1)); do
		[[ $1 == "$want" ]] && { echo "$2"; return; }
		shift
	done
}

# wait_bound PORT: until a socket is bound to 127.0.0.1:PORT/udp (5 s at
# most), as long as the server lives.
wait_bound() {
	local local_addr i
	local_addr=$(printf '0100007F:%04X' "$1")
	for ((i = 0; i < 100; i++)); do
		awk -v a="$local_addr" '$2 == a { f = 1 } END { exit !f }' /proc/net/udp && return 0
		kill -0 "$server_pid" 2>/dev/null || { echo "the server exited; see its log" >&2; return 1; }
		sleep 0.05
	done
	echo "nothing bound 127.0.0.1:$1/udp in 5 s" >&2
	return 1
}

start_server() { # server, name of the run[, port]
	local dir=$work/$2 port=${3:-$PORT}
	mkdir -p "$dir"
	case $1 in
	starling)
		tracker_toml "$dir" "$port" "$STARLING_SOCKETS"
		STARLING_CONFIG_TOML_PATH="$dir/tracker.toml" taskset -c "$SERVER_CPUS" "$BIN" serve 2>"$OUT/$2.server.log" & ;;
	opentracker)
		# The workers line must be read before -P binds the UDP socket.
		(cd "$dir" && exec taskset -c "$SERVER_CPUS" "$OPENTRACKER" -f "$work/opentracker.conf" -i 127.0.0.1 -P "$port") \
			>"$OUT/$2.server.log" 2>&1 & ;;
	esac
	server_pid=$!
	wait_bound "$port"
}

stop_server() {
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

# figures FILE: "answers/s lost errors user system p50 p99 generator%" of a
# generator output, "?" for what it lacks. Errors are error answers plus
# malformed ones; CPU in µs per response, latency in µs (the generator
# prints µs, ms or s).
figures() {
	awk '
	function us(v, unit) { return unit == "s" ? v * 1e6 : unit == "ms" ? v * 1e3 : v }
	/^responses received:/ { r = $4; gsub(/[^0-9.]/, "", r) }
	/^lost \(timed out\):/ { lost = $4 }
	/^  error:/ { err += $2; e = 1 }
	/^  malformed:/ { err += $2; e = 1 }
	/^server CPU:/ { s = 1; next }
	s && /^  user \/ system:/ { user = $4; sys = $6; s = 0 }
	/^generator CPU:/ { g = $5; gsub(/[^0-9.]/, "", g) }
	/^latency:/ {
		line = $0
		sub(/^latency: */, "", line)
		n = split(line, part, ", ")
		for (i = 1; i <= n; i++) {
			split(part[i], f, " ")
			if (f[1] == "p50") p50 = us(f[2], f[3])
			if (f[1] == "p99") p99 = us(f[2], f[3])
		}
	}
	function v(x) { return x == "" ? "?" : x }
	END { print v(r), v(lost), (e ? err : "?"), v(user), v(sys), v(p50), v(p99), v(g) }
	' "$1"
}

# One measured run: a fresh server, the walk, warm-up and measurement.
# walk NAME PORT PROFILE FLAGS...: the walk that loads the server on PORT
# with the whole population, from the shape's sockets and addresses.
walk() {
	[[ $PRELOAD == walk ]] || return 0
	local name=$1 port=$2 profile=$3 socks
	shift 3
	socks=$(flag_value --sockets "$@")
	taskset -c "$CLIENT_CPUS" "$BIN" bench udp --addr "127.0.0.1:$port" --profile "$profile" --numwant "$NUMWANT" \
		--walk --duration 10m --sockets "$socks" --source-ips "$(flag_value --source-ips "$@")" \
		--window $((WALK_INFLIGHT / socks > 0 ? WALK_INFLIGHT / socks : 1)) --batch=false \
		>"$OUT/$name.walk.out" 2>"$OUT/$name.walk.progress" ||
		echo "the walk of $name failed; see $OUT/$name.walk.*" >&2
}

# measure NAME PORT PID PROFILE FLAGS...: the warm-up and the measured run
# against the server on PORT, whose process is PID.
measure() {
	local name=$1 port=$2 pid=$3 profile=$4
	shift 4
	taskset -c "$CLIENT_CPUS" "$BIN" bench udp --addr "127.0.0.1:$port" --profile "$profile" --numwant "$NUMWANT" \
		--warmup "$WARMUP" --duration "$DURATION" "$@" --server-pid "$pid" \
		>"$OUT/$name.out" 2>"$OUT/$name.progress" ||
		echo "the generator of $name failed; see $OUT/$name.*" >&2
	echo "server RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status") peak" >>"$OUT/$name.out"
}

# report ROUND SHAPE PROFILE SERVER [NOTE]: the run's row in runs.tsv and
# its line.
report() {
	local name="r$1-$2-$3-$4" f walked
	read -ra f <<<"$(figures "$OUT/$name.out")"
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(IFS=$'\t'; echo "${f[*]}")" >>"$OUT/runs.tsv"
	walked=
	[[ $PRELOAD == walk ]] && walked=$(awk '/^responses received:/ { r = $3 } /^lost \(timed out\):/ { l = $4 } END { printf "walk %s answers, %s lost; ", r, l }' "$OUT/$name.walk.out")
	printf 'round %s %-10s %-7s %-11s %9s answers/s, lost %s, errors %s, server %s user + %s system µs/response, p50 %s µs, p99 %s µs, generator CPU %s%% (%sRSS %s)%s\n' \
		"$1" "$2" "$3" "$4" "${f[0]}" "${f[1]}" "${f[2]}" "${f[3]}" "${f[4]}" "${f[5]}" "${f[6]}" "${f[7]}" "$walked" \
		"$(sed -n 's/^server RSS: \(.*\) peak$/\1/p' "$OUT/$name.out")" "${5:+; $5}"
}

# One measured run: a fresh server, the walk, warm-up and measurement.
run() { # round, shape, profile, server
	local name="r$1-$2-$3-$4" flags
	read -ra flags <<<"${shape_flags[$2]}"
	start_server "$4" "$name"
	walk "$name" "$PORT" "$3" "${flags[@]}"
	measure "$name" "$PORT" "$server_pid" "$3" "${flags[@]}"
	stop_server
	report "$@"
}

# shared A B: how many of the answers listed in slow log A were sent within
# 3 ms of one listed in slow log B, as "N of M".
shared() {
	sort -n "$2" | awk -v a="$1" '
	{ t[++n] = $1 }
	END {
		while ((getline line < a) > 0) {
			split(line, f, " ")
			m++
			lo = 1; hi = n # the first send time at or after f[1] - 3000
			while (lo <= hi) { mid = int((lo + hi) / 2); if (t[mid] < f[1] - 3000) lo = mid + 1; else hi = mid - 1 }
			if (lo <= n && t[lo] <= f[1] + 3000) s++
		}
		printf "%d of %d", s, m
	}'
}

# One run of shape c-pair: both servers fresh and walked, then measured at
# once, each by its own generator.
run_pair() { # round, shape, profile
	local st="r$1-$2-$3-starling" ot="r$1-$2-$3-opentracker" flags st_pid ot_pid g
	read -ra flags <<<"${shape_flags[$2]}"
	: >"$OUT/$st.slow"; : >"$OUT/$ot.slow"
	start_server starling "$st" "$PORT"
	st_pid=$server_pid pair_pid=$server_pid
	start_server opentracker "$ot" $((PORT + 1))
	ot_pid=$server_pid
	walk "$st" "$PORT" "$3" "${flags[@]}"
	walk "$ot" $((PORT + 1)) "$3" "${flags[@]}"
	measure "$st" "$PORT" "$st_pid" "$3" "${flags[@]}" --slow-log "$OUT/$st.slow" --slow-over "$SLOW_OVER" &
	g=$!
	measure "$ot" $((PORT + 1)) "$ot_pid" "$3" "${flags[@]}" --slow-log "$OUT/$ot.slow" --slow-over "$SLOW_OVER"
	wait "$g"
	stop_server
	server_pid=$st_pid pair_pid=
	stop_server
	report "$1" "$2" "$3" starling "answers over $SLOW_OVER: $(shared "$OUT/$st.slow" "$OUT/$ot.slow") within 3 ms of opentracker's"
	report "$1" "$2" "$3" opentracker "answers over $SLOW_OVER: $(shared "$OUT/$ot.slow" "$OUT/$st.slow") within 3 ms of Starling's"
}

{
	echo "# bench-udp-fair.sh, $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n) ($(nproc) cores, kernel $(uname -r))"
	echo "# Starling: $BIN ($("$BIN" version 2>/dev/null || echo '?'), sha256 $(sha256sum "$BIN" | cut -c1-12)), $STARLING_SOCKETS UDP socket(s)"
	echo "# opentracker: $OPENTRACKER (sha256 $(sha256sum "$OPENTRACKER" | cut -c1-12)), listen.udp.workers $OT_WORKERS"
	echo "# servers on cpus $SERVER_CPUS, generator on cpus $CLIENT_CPUS; rounds $ROUNDS, preload $PRELOAD, warm-up $WARMUP, measured $DURATION, numwant $NUMWANT, pacing $PACING"
} | tee "$OUT/header.txt"
printf 'round\tshape\tprofile\tserver\tanswers_per_s\tlost\terrors\tuser_us\tsystem_us\tp50_us\tp99_us\tgenerator_cpu_pct\n' >"$OUT/runs.tsv"

for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order=(starling opentracker); else order=(opentracker starling); fi
	for shape in $SHAPES; do
		for profile in $PROFILES; do
			if [[ $shape == c-pair ]]; then
				run_pair "$r" "$shape" "$profile"
				continue
			fi
			for server in "${order[@]}"; do
				run "$r" "$shape" "$profile" "$server"
			done
		done
	done
done

# The tables: per shape and profile, each server's median over the rounds
# with the range, and the ratio of the medians.
summary() {
	awk -F'\t' -v shapes="$SHAPES" -v profiles="$PROFILES" \
		-v ta="${shape_text[a]}" -v tr="${shape_text[a-recv]}" -v tm="${shape_text[a-mmsg]}" -v tg="${shape_text[b-gso]}" -v ts="${shape_text[b-sendmmsg]}" -v tc="${shape_text[c]}" -v tp="${shape_text[c-pair]}" '
	function num(x) { return x ~ /^[0-9]+(\.[0-9]+)?$/ }
	# stat KEY: sets med, lo, hi and cnt from vals[KEY, 1..n[KEY]].
	function stat(key,    k, m, i, a) {
		m = 0
		for (i = 1; i <= n[key]; i++) if (num(vals[key, i])) a[++m] = vals[key, i] + 0
		cnt = m
		if (m == 0) return
		asort(a)
		lo = a[1]; hi = a[m]
		med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	function commas(x,    s, r) {
		s = sprintf("%.0f", x); r = ""
		while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
		return s r
	}
	function fmt(x, kind) {
		if (kind == "rate") return commas(x)
		if (kind == "cpu") return sprintf("%.2f", x)
		if (kind == "gen") return sprintf("%.0f %%", x)
		return sprintf("%.0f", x)
	}
	function cell(key, kind) {
		stat(key)
		if (cnt == 0) return "?"
		if (lo == hi) return fmt(med, kind)
		return fmt(med, kind) " (" fmt(lo, kind) "-" fmt(hi, kind) ")"
	}
	function ratio(k1, k2, bold,    a, s) {
		stat(k1); if (cnt == 0) return "?"; a = med
		stat(k2); if (cnt == 0 || med == 0) return "?"
		s = sprintf("%.2fx", a / med)
		return bold ? "**" s "**" : s
	}
	NR > 1 {
		key = $2 SUBSEP $3 SUBSEP $4
		for (c = 5; c <= 12; c++) vals[key, c, ++n[key, c]] = $c
		seen[$2, $3] = 1
	}
	END {
		text["a"] = ta; text["a-recv"] = tr; text["a-mmsg"] = tm; text["b-gso"] = tg; text["b-sendmmsg"] = ts; text["c"] = tc; text["c-pair"] = tp
		ns = split(shapes, S, " "); np = split(profiles, P, " ")
		split("rate lost sum cpu cpu lat lat gen", kind, " ")
		for (i = 1; i <= ns; i++) for (j = 1; j <= np; j++) {
			sh = S[i]; pr = P[j]
			if (!((sh, pr) in seen)) continue
			printf "\n#### Shape %s, %s profile: %s\n\n", sh, pr, text[sh]
			print "| server | answers/s | lost | errors | server user µs/answer | server system µs/answer | p50 µs | p99 µs | generator CPU |"
			print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
			split("Starling opentracker", label, " ")
			split("starling opentracker", srv, " ")
			for (s = 1; s <= 2; s++) {
				row = "| " label[s]
				for (c = 5; c <= 12; c++) {
					key = sh SUBSEP pr SUBSEP srv[s] SUBSEP c
					if (kind[c - 4] == "sum") {
						t = 0; ok = 0
						for (k = 1; k <= n[key]; k++) if (num(vals[key, k])) { t += vals[key, k]; ok = 1 }
						row = row " | " (ok ? t : "?")
					} else {
						row = row " | " cell(key, kind[c - 4])
					}
				}
				print row " |"
			}
			st = sh SUBSEP pr SUBSEP "starling" SUBSEP
			ot = sh SUBSEP pr SUBSEP "opentracker" SUBSEP
			lat = (sh ~ /^c/)
			printf "| Starling/opentracker | %s | | | %s | %s | %s | %s | |\n",
				ratio(st 5, ot 5, !lat), ratio(st 8, ot 8, 0), ratio(st 9, ot 9, 0), ratio(st 10, ot 10, lat), ratio(st 11, ot 11, lat)
		}
	}' "$OUT/runs.tsv"
}

echo
{
	echo "Medians over $ROUNDS round(s), range in brackets; errors summed over the rounds."
	summary
} | tee "$OUT/summary.md"
