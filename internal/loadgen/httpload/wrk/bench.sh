#!/bin/bash
# The HTTP tracker benchmark of BENCHMARKS.md ("HTTP tracker"): every engine
# (fasthttp, net/http), the tracker and a trivial fixed answer, keep-alive and
# a new connection per request. The target runs on core 0 with GOMAXPROCS=1,
# wrk on core 1 with announce.lua (random peers of 1000 torrents).
#
# usage: bench.sh STARLING_BINARY [DURATION] [ROUNDS]
# Run it under the shared lock: flock /tmp/starling-bench.lock bench.sh ...
set -u
BIN=$1; D=${2:-10s}; ROUNDS=${3:-3}
LUA=$(dirname "$0")/announce.lua
port=17400
one() { # engine trivial newconn
  local E=$1 T=$2 NC=$3 out err tp res
  port=$((port+1))
  out=$(mktemp); err=$(mktemp)
  targs="bench http target --engine $E --addr 127.0.0.1:$port"
  [ "$T" = 1 ] && targs="$targs --trivial"
  GOMAXPROCS=1 taskset -c 0 "$BIN" $targs >"$out" 2>"$err" &
  tp=$!
  for _ in $(seq 1 100); do grep -q listening "$err" && break; sleep 0.05; done
  if [ "$NC" = 1 ]; then
    res=$(taskset -c 1 wrk -t1 -c64 -d"$D" --latency -H "Connection: close" -s "$LUA" "http://127.0.0.1:$port" 2>&1)
  else
    res=$(taskset -c 1 wrk -t1 -c64 -d"$D" --latency -s "$LUA" "http://127.0.0.1:$port" 2>&1)
  fi
  kill -INT $tp; wait $tp
  echo "engine=$E trivial=$T newconn=$NC :: wrk $(echo "$res" | awk '/Requests\/sec/ {print $2}') req/s" \
    "p50 $(echo "$res" | awk '$1=="50%" {print $2}') p99 $(echo "$res" | awk '$1=="99%" {print $2}')" \
    "$(echo "$res" | grep -E 'Non-2xx|Socket errors' | tr '\n' ' ')" ":: $(cat "$out")"
  rm -f "$out" "$err"
}
for round in $(seq 1 "$ROUNDS"); do
  for nc in 0 1; do
    for cfg in "fasthttp 0" "fasthttp 1" "nethttp 0" "nethttp 1"; do
      echo "round $round $(one $cfg $nc)"
    done
  done
done
