package daemon

import (
	"bufio"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// Bytes a derived limit counts per peer and per torrent: about what the
// memory store's RSS grows by (BENCHMARKS.md), with room to spare.
const (
	bytesPerPeer    = 160
	bytesPerTorrent = 256
)

// memoryBudget is the memory the process may use and where that figure
// comes from: GOMEMLIMIT, else the cgroup's limit, else the machine's
// memory; 0 when none can be read.
func memoryBudget() (uint64, string) {
	if v := debug.SetMemoryLimit(-1); v != math.MaxInt64 && v > 0 {
		return uint64(v), "GOMEMLIMIT"
	}
	if v, ok := cgroupLimit(); ok {
		return v, "the cgroup's memory limit"
	}
	if v, ok := physicalMemory(); ok {
		return v, "the machine's memory"
	}
	return 0, ""
}

// cgroupLimit reads cgroup v2's memory.max, or v1's limit_in_bytes.
func cgroupLimit() (uint64, bool) {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		// "max", or v1's "no limit" of nearly 2^63.
		if err == nil && v > 0 && v < 1<<62 {
			return v, true
		}
	}
	return 0, false
}

func physicalMemory() (uint64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// storeLimits turns [core.limits] into the store's, deriving max_torrents
// and max_peers from the memory budget when they are 0 (half of it for
// peers, an eighth for torrents), and logs them. Under a cgroup limit with
// no GOMEMLIMIT, the Go runtime is told to keep the heap within 90 % of
// it, so the garbage collector works harder before the kernel kills.
func storeLimits(l config.Limits, store string, log *slog.Logger) swarm.Limits {
	setGCPercent(log)
	budget, source := memoryBudget()
	if source == "the cgroup's memory limit" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(budget / 10 * 9))
		log.Info("Go memory limit set from the cgroup's", "gomemlimit_bytes", budget/10*9, "cgroup_bytes", budget)
	}
	if store == config.StoreRedis {
		// The swarms are in Redis, not in this process's memory: the
		// node's budget says nothing of them, and no node sees them all.
		log.Info("capacity limits (core.limits) do not apply to the Redis swarm store; bound Redis with maxmemory and noeviction")
		return swarm.Limits{}
	}
	out := swarm.Limits{MaxTorrents: l.MaxTorrents, MaxPeers: l.MaxPeers, MaxPeersPerTorrent: l.MaxPeersPerTorrent}
	derived := []string{}
	if out.MaxPeers == 0 && budget > 0 {
		out.MaxPeers = budget / 2 / bytesPerPeer
		derived = append(derived, "max_peers")
	}
	if out.MaxTorrents == 0 && budget > 0 {
		out.MaxTorrents = budget / 8 / bytesPerTorrent
		derived = append(derived, "max_torrents")
	}
	perTorrent := "no cap"
	if out.MaxPeersPerTorrent > 0 {
		perTorrent = strconv.FormatUint(out.MaxPeersPerTorrent, 10)
	}
	log.Info("capacity limits (core.limits)", "max_torrents", out.MaxTorrents, "max_peers", out.MaxPeers,
		"max_peers_per_torrent", perTorrent, "derived", strings.Join(derived, ","),
		"from", fmt.Sprintf("%s: %d MiB", source, budget>>20))
	return out
}

var (
	limitDesc = prometheus.NewDesc("starling_limit",
		"Capacity limits (core.limits): the most torrents and peers the tracker keeps; 0 is no cap.", []string{"limit"}, nil)
	fullDesc = prometheus.NewDesc("starling_announces_refused_full_total",
		"Announces refused because they would add a torrent or a peer past a capacity limit.", []string{"limit"}, nil)
)

// limitsCollector exposes the limits and the refusals at each.
type limitsCollector struct {
	limits  swarm.Limits
	tracker *tracker.Tracker
}

func (c limitsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- limitDesc; ch <- fullDesc }

func (c limitsCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range map[string]uint64{"max_torrents": c.limits.MaxTorrents, "max_peers": c.limits.MaxPeers,
		"max_peers_per_torrent": c.limits.MaxPeersPerTorrent} {
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(v), name)
	}
	for name, n := range c.tracker.Refused() {
		ch <- prometheus.MustNewConstMetric(fullDesc, prometheus.CounterValue, float64(n), name)
	}
}

// defaultGCPercent is the Go collector's target when GOGC is not set: the
// heap may grow by a quarter of what is live between two collections,
// not Go's default of as much again. Nearly all of a tracker's heap is
// pointer-free slabs that a collection does not scan, so collecting four
// times as often costs little CPU, and RSS stays near what is live
// instead of swinging up to twice it (a one-hour soak's RSS swung between
// 300 and 450 MiB with 250 MiB live).
const defaultGCPercent = 25

// setGCPercent applies defaultGCPercent unless GOGC says otherwise.
func setGCPercent(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		log.Info("Go collector target from GOGC", "gogc", os.Getenv("GOGC"))
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Info("Go collector target set (GOGC unset)", "gc_percent", defaultGCPercent)
}
