#!/usr/bin/env bash
# RSS of a tracker before, during and after a flood of announces for 1,000,000 random hashes
# (BENCHMARKS.md, "Soak and flood"). Usage: flood.sh STARLING_BINARY
set -u
bin=$1; dir=$(mktemp -d); cd "$dir"
cat > t.toml <<T
[core]
inactive_peer_cleanup_interval = 10
[core.tracker_policy]
max_peer_timeout = 30
[core.database]
path = "$dir/db"
[core.swarm]
snapshot_path = ""
[[udp_trackers]]
bind_address = "127.0.0.1:21969"
[health_check_api]
bind_address = "127.0.0.1:0"
T
STARLING_CONFIG_TOML_PATH=t.toml "$bin" serve > tracker.log 2>&1 &
pid=$!
sleep 2
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status; }
echo "before: $(rss)"
"$bin" bench udp --addr 127.0.0.1:21969 --torrents 1000000 --peers 1000000 --duration 20s --sockets 2 --source-ips 1 > flood.out 2>/dev/null
echo "right after the flood: $(rss) ($(grep 'responses received' flood.out))"
for t in 45 90 180; do
  sleep $(( t - ${last:-0} )); last=$t
  echo "${t} s after (peers expire after 30 s, swept every 10 s): $(rss)"
done
grep -o 'swept inactive peers.*' tracker.log | tail -1
kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
