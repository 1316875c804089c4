# Sourced by the UDP benchmark scripts: the configuration they run
# "starling serve" with, and their scratch directory.

# tracker_toml DIR PORT SOCKETS writes DIR/tracker.toml: a public tracker
# with statistics on, logging errors only, its database in DIR, one UDP
# listener on 127.0.0.1:PORT with SOCKETS sockets, no HTTP tracker or API,
# and no swarm snapshot: the default one, in ./storage of the working
# directory, would hand each run's peers to the next run's server. A
# script that sets more of [core.swarm] inserts its keys after the
# snapshot_path line (see bench-redis.sh).
tracker_toml() {
	cat >"$1/tracker.toml" <<TOML
[metadata]
schema_version = "2.0.0"

[logging]
threshold = "error"

[core]
tracker_usage_statistics = true

[core.database]
path = "$1/tracker.db"

[core.swarm]
snapshot_path = ""

[[udp_trackers]]
bind_address = "127.0.0.1:$2"
sockets = $3

[health_check_api]
bind_address = "127.0.0.1:0"
TOML
}

# bench_scratch sets work to a new scratch directory and pids to an empty
# list, and on exit kills the processes in pids and removes work.
bench_scratch() {
	work=$(mktemp -d)
	pids=()
	trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}
