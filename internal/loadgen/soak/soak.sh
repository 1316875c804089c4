#!/usr/bin/env bash
# The one-hour soak of BENCHMARKS.md ("One hour of starling bench soak"): a tracker with the default policy
# (max_peer_timeout 900 s, a sweep every 600 s) on loopback ports, and `starling bench soak` against it.
# Usage: soak.sh STARLING_BINARY [DURATION] [RATE]
set -u
bin=$1; duration=${2:-60m}; rate=${3:-2000}
dir=$(mktemp -d); cd "$dir"
token=soakToken0123456789
cat > t.toml <<T
[core.database]
path = "$dir/db"
[core.swarm]
snapshot_path = ""
[[udp_trackers]]
bind_address = "127.0.0.1:19969"
[[http_trackers]]
bind_address = "127.0.0.1:19070"
[http_api]
bind_address = "127.0.0.1:19212"
[http_api.access_tokens]
admin = "$token"
[health_check_api]
bind_address = "127.0.0.1:0"
T
STARLING_CONFIG_TOML_PATH=t.toml "$bin" serve > tracker.log 2>&1 &
pid=$!
sleep 2
STARLING_SOAK_TOKEN=$token "$bin" bench soak --udp udp://127.0.0.1:19969 --http http://127.0.0.1:19070 \
  --api http://127.0.0.1:19212 --duration "$duration" --report 1m --rate "$rate"
code=$?
echo "tracker log lines about memory:"; grep -E 'returning it|swept' tracker.log | tail -5
kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
exit $code
