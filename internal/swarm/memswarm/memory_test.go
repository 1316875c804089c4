package memswarm

import (
	"context"
	"flag"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

var (
	memory10M    = flag.Bool("memory10m", false, "run TestMemory10M: load 10M IPv4 peers over 1M torrents (~1 GiB, ~1 min)")
	memoryShards = flag.Uint("memory-shardbits", DefaultShardBits, "shard bits of the store TestMemory10M loads")
)

// Targets of the memory test (issue 2).
const (
	maxBytesPerPeer = 96
	maxFullGC       = 20 * time.Millisecond
)

// heapInuse collects twice (so finalizers and sweeping settle) and reads
// the heap in use.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// timeGC is the best of a few forced full collections: the figure is the
// collector's own cost, not that of another process stealing the core.
func timeGC(runs int) (best, worst time.Duration) {
	best = time.Hour
	for range runs {
		start := time.Now()
		runtime.GC()
		d := time.Since(start)
		best, worst = min(best, d), max(worst, d)
	}
	return best, worst
}

// TestMemory10M loads 10,000,000 IPv4 peers across 1,000,000 torrents
// (each peer in a random torrent, so swarm sizes vary around 10) and
// checks bytes per peer and the time of a forced full collection.
//
//	go test ./internal/swarm/memswarm -run TestMemory10M -memory10m -v
func TestMemory10M(t *testing.T) {
	if !*memory10M {
		t.Skip("needs -memory10m")
	}
	const (
		peers    = 10_000_000
		torrents = 1_000_000
	)
	base := heapInuse()
	s := NewSharded(swarm.Options{}, *memoryShards)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var resp bittorrent.AnnounceResponse
	a := swarm.Announce{Now: 1_700_000_000, Left: 1, Families: bittorrent.IPv4}
	// Latency of each announce, by power of two of nanoseconds, and of
	// those that evacuated slab chunks (the longest the shard lock is
	// held by an announce).
	var hist [40]int
	var evacN int
	var evacMax, evacSum time.Duration
	start := time.Now()
	for i := range peers {
		a.InfoHash = swarmtest.Hash(rng.IntN(torrents))
		a.PeerID = swarmtest.PeerID(i)
		a.Addr = swarmtest.Addr4(i, uint16(1024+i%50000))
		a.Left = int64(i % 3) // a third seeders
		sh := s.shard(&a.InfoHash)
		ev := sh.p4.evacuations
		t0 := time.Now()
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		hist[bits.Len64(uint64(d))]++
		if sh.p4.evacuations != ev {
			evacN++
			evacSum += d
			evacMax = max(evacMax, d)
		}
	}
	load := time.Since(start)
	inuse := heapInuse() - base
	tot, _ := s.Totals(ctx)
	if tot.Seeders+tot.Leechers != peers {
		t.Fatalf("store holds %d peers, want %d", tot.Seeders+tot.Leechers, peers)
	}
	var slots, chunks uint64
	evacuations := 0
	for i := range s.shards {
		slots += s.shards[i].p4.slots
		chunks += s.shards[i].p4.capSlots / chunkLen
		evacuations += s.shards[i].p4.evacuations
	}
	best, worst := timeGC(5)
	perPeer := float64(inuse) / peers
	t.Logf("%d shards: loaded %d peers in %d torrents in %v (%.0f ns/announce)", len(s.shards), peers, tot.Torrents, load.Round(time.Millisecond),
		float64(load.Nanoseconds())/peers)
	t.Logf("heap in use %d MiB: %.1f bytes/peer (records 56 B; live slots %.2f per peer, %d chunks = %.2f slots per peer, %d chunks evacuated)",
		inuse>>20, perPeer, float64(slots)/peers, chunks, float64(chunks*chunkLen)/peers, evacuations)
	quantile := func(q float64) time.Duration {
		n := 0
		for b, c := range hist {
			if n += c; float64(n) >= q*peers {
				return time.Duration(1) << b
			}
		}
		return 0
	}
	t.Logf("announce latency (upper bound of power-of-two bucket): p50 %v, p99 %v, p99.99 %v",
		quantile(0.5), quantile(0.99), quantile(0.9999))
	if evacN > 0 {
		t.Logf("%d announces evacuated chunks: mean %v, max %v", evacN, evacSum/time.Duration(evacN), evacMax)
	}
	t.Logf("forced full GC: best %v, worst of 5 %v (GOMAXPROCS %d)", best, worst, runtime.GOMAXPROCS(0))
	if perPeer > maxBytesPerPeer {
		t.Errorf("%.1f bytes per peer, target %d", perPeer, maxBytesPerPeer)
	}
	if best > maxFullGC {
		t.Errorf("full GC took %v, target %v", best, maxFullGC)
	}

	// Sweep all of them, in bounded steps, and time it.
	start = time.Now()
	r, err := s.Sweep(ctx, a.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep of all %d peers took %v", r.Peers, time.Since(start).Round(time.Millisecond))
	if r.Peers != peers {
		t.Errorf("sweep removed %d peers, want %d", r.Peers, peers)
	}
	runtime.KeepAlive(s)
}

// TestMemoryPerTorrentSlices is the design this package did not take,
// measured for BENCHMARKS.md: one Go slice of 56-byte records per torrent
// (1M heap objects for 10M peers) and the time of a full collection.
//
//	go test ./internal/swarm/memswarm -run TestMemoryPerTorrentSlices -memory10m -v
func TestMemoryPerTorrentSlices(t *testing.T) {
	if !*memory10M {
		t.Skip("needs -memory10m")
	}
	const torrents = 1_000_000
	base := heapInuse()
	swarms := make([][]peer[[4]byte], torrents)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10_000_000 {
		i := rng.IntN(torrents)
		swarms[i] = append(swarms[i], peer[[4]byte]{})
	}
	inuse := heapInuse() - base
	best, worst := timeGC(5)
	t.Logf("per-torrent slices: %.1f bytes/peer, forced full GC best %v worst %v",
		float64(inuse)/10_000_000, best, worst)
	runtime.KeepAlive(swarms)
	swarms = nil
	debug.FreeOSMemory()
}
