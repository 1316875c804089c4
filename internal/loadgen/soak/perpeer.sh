#!/usr/bin/env bash
# RSS per IPv4 peer measured from the outside (BENCHMARKS.md, "Memory per peer from the outside"):
# RSS of a fresh tracker, then RSS after `bench udp --walk` loaded PEERS peers into TORRENTS torrents
# (peer i in torrent i mod TORRENTS), two sweeps ran (every 60 s; no peer expires) and the runtime ran its
# periodic GC (it forces one every 2 minutes).
# Usage: perpeer.sh STARLING_BINARY [PEERS] [TORRENTS]
set -u
bin=$1; peers=${2:-3000000}; torrents=${3:-1000000}
dir=$(mktemp -d); cd "$dir"
cat > t.toml <<T
[core]
inactive_peer_cleanup_interval = 60
[core.tracker_policy]
max_peer_timeout = 3600
[core.database]
path = "$dir/db"
[core.swarm]
snapshot_path = ""
[[udp_trackers]]
bind_address = "127.0.0.1:21970"
[health_check_api]
bind_address = "127.0.0.1:0"
[http_api]
bind_address = "127.0.0.1:21971"
[http_api.access_tokens]
admin = "perpeerToken0123456789"
T
STARLING_CONFIG_TOML_PATH=t.toml "$bin" serve > tracker.log 2>&1 &
pid=$!
sleep 3
kib() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
start=$(kib)
"$bin" bench udp --addr 127.0.0.1:21970 --walk --torrents "$torrents" --peers "$peers" --sockets 2 --source-ips 4 > walk.out 2>/dev/null
loaded=$(kib)
sleep 150
settled=$(kib)
awk -v s="$start" -v l="$loaded" -v e="$settled" -v n="$peers" 'BEGIN {
  printf "RSS at start %.1f MiB, right after loading %.1f MiB, after the periodic GC %.1f MiB\n", s/1024, l/1024, e/1024
  printf "bytes of RSS per peer: %.1f right after loading, %.1f after the GC\n", (l-s)*1024/n, (e-s)*1024/n }'
grep -E 'responses received|errors' walk.out | head -3
# Where the heap is: in use (live and not yet collected), idle (freed, kept), released to the system.
curl -s "http://127.0.0.1:21971/metrics?token=perpeerToken0123456789" | grep -E '^go_memstats_(heap_(inuse|idle|released|alloc)|stack_inuse|sys)_bytes|^starling_(torrents|peers)' 
kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
