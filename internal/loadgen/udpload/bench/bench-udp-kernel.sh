#!/usr/bin/env bash
# Where Starling's kernel time per answer differs from the echo's: runs
# "starling bench udp-echo --reply-size 200" (the size of Starling's
# answers with 30 IPv4 peers) and "starling serve" at the same time, both
# on core 0, each with its own generator on core 1, records core 0 with
# perf, and prints each server's kernel and user time per answer and the
# kernel functions whose time per answer differs most between them.
# Both servers see the same host over the same seconds, so what differs is
# what the tracker makes the kernel do, not the host's drift.
#
#   go build -o /tmp/starling ./cmd/starling
#   flock /tmp/starling-bench.lock internal/loadgen/udpload/bench/bench-udp-kernel.sh /tmp/starling skewed
#
# Needs perf (linux-perf). WARMUP (3s), DURATION (8s), PORT (16969 and the
# next one), TOP (20 functions each way).
set -euo pipefail
. "$(dirname "$0")/tracker-toml.sh"
BIN=${1:?usage: bench-udp-kernel.sh path/to/starling [uniform|skewed]}
PROFILE=${2:-skewed}
WARMUP=${WARMUP:-3s}
DURATION=${DURATION:-8s}
PORT=${PORT:-16969}
TOP=${TOP:-20}
bench_scratch

tracker_toml "$work" $((PORT + 1)) 1
taskset -c 0 "$BIN" bench udp-echo --addr "127.0.0.1:$PORT" --reply-size 200 2>/dev/null &
echo_pid=$!
pids+=("$echo_pid")
STARLING_CONFIG_TOML_PATH="$work/tracker.toml" taskset -c 0 "$BIN" serve 2>"$work/serve.log" &
st_pid=$!
pids+=("$st_pid")
sleep 0.5
secs() { sed 's/s$//' <<<"$1"; }
# perf covers the measured window but its first and last 0.5 s.
record=$(awk -v d="$(secs "$DURATION")" 'BEGIN { print d - 1 }')
(
	sleep "$(awk -v w="$(secs "$WARMUP")" 'BEGIN { print w + 0.5 }')"
	perf record -q -e cpu-clock -F 4000 -C 0 -o "$work/perf.data" -- sleep "$record" >/dev/null 2>&1
) &
perf_job=$!
gen() { # port, profile, server pid, output
	taskset -c 1 "$BIN" bench udp --addr "127.0.0.1:$1" --profile "$2" --numwant 30 --warmup "$WARMUP" \
		--duration "$DURATION" --sockets 4 --source-ips 4 --server-pid "$3" >"$4" 2>/dev/null
}
gen "$PORT" uniform "$echo_pid" "$work/echo.out" &
g1=$!
gen $((PORT + 1)) "$PROFILE" "$st_pid" "$work/starling.out" &
g2=$!
wait "$g1" "$g2" "$perf_job"
rate() { sed -n 's/^responses received: *[0-9]* (\([0-9]*\)\/s)$/\1/p' "$1"; }
re=$(rate "$work/echo.out")
rs=$(rate "$work/starling.out")
echo "echo (200-byte answers): $re/s; starling ($PROFILE): $rs/s"
# Samples by process and symbol; perf names a Go program's threads by
# the process's pid only for its first thread, so map every thread to its
# process through /proc while the servers still run.
declare -A owner
for p in "$echo_pid" "$st_pid"; do
	for t in /proc/"$p"/task/*; do owner[${t##*/}]=$p; done
done
kill "${pids[@]}"
wait "${pids[@]}" 2>/dev/null || true
pids=()
perf report -i "$work/perf.data" --no-children --sort pid,sym -g none 2>/dev/null |
	awk '$1 ~ /%$/ { sub(/%/, "", $1); split($2, t, ":"); kind = $3; sym = $4; print t[1], kind, sym, $1 }' >"$work/samples"
for t in "${!owner[@]}"; do echo "$t ${owner[$t]}"; done >"$work/owners"
# ns per answer = share of core 0 over the recorded seconds / answers per second.
awk -v echo_pid="$echo_pid" -v st_pid="$st_pid" -v re="$re" -v rs="$rs" -v top="$TOP" '
	FILENAME ~ /owners$/ { owner[$1] = $2; next }
	{
		p = owner[$1]
		if (p == echo_pid) { r = re; who = "e" } else if (p == st_pid) { r = rs; who = "s" } else next
		ns = $4 / 100 * 1e9 / r
		total[who, $2] += ns
		if ($2 == "[k]") { k[$3] = 1; v[who, $3] += ns }
	}
	END {
		printf "ns per answer, kernel / user: echo %.0f / %.0f, starling %.0f / %.0f; kernel difference %+.0f\n",
			total["e", "[k]"], total["e", "[.]"], total["s", "[k]"], total["s", "[.]"], total["s", "[k]"] - total["e", "[k]"]
		n = 0
		for (s in k) { d[++n] = v["s", s] - v["e", s]; name[n] = s }
		# Selection sort of the differences, largest first: the lists are short.
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (d[j] > d[i]) {
			x = d[i]; d[i] = d[j]; d[j] = x; x = name[i]; name[i] = name[j]; name[j] = x
		}
		print "kernel functions, ns per answer (echo, starling, difference), most added by starling first:"
		for (i = 1; i <= n && i <= top; i++) printf "  %-44s %6.0f %6.0f %+6.0f\n", name[i], v["e", name[i]], v["s", name[i]], d[i]
		print "  ..."
		for (i = (n - top + 1 > top ? n - top + 1 : top + 1); i <= n; i++) printf "  %-44s %6.0f %6.0f %+6.0f\n", name[i], v["e", name[i]], v["s", name[i]], d[i]
	}' "$work/owners" "$work/samples"
