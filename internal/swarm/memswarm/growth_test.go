package memswarm

import (
	"context"
	"flag"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

var growth2M = flag.Bool("growth2m", false, "run TestGrowth2M: grow one swarm to 2M IPv4 peers and report the slowest announces (~1 GiB, tens of seconds)")

// TestGrowth2M announces 2,000,000 new IPv4 peers into one torrent, one
// goroutine, and reports the slowest single announces: the longest a
// growing swarm holds its shard's lock (and so the UDP worker that
// announces into it). It runs twice: with the garbage collector off, so
// that what is left is the store's own work, and with it on.
//
//	go test ./internal/swarm/memswarm -run TestGrowth2M -growth2m -v
func TestGrowth2M(t *testing.T) {
	if !*growth2M {
		t.Skip("needs -growth2m")
	}
	const peers = 2_000_000
	type slow struct {
		d     time.Duration
		swarm int
	}
	grow := func(t *testing.T) {
		s := New(swarm.Options{})
		ctx := context.Background()
		h := swarmtest.Hash(1)
		a := swarmtest.Announce(h, swarmtest.PeerID(0), swarmtest.Addr4(0, 1), 1_700_000_000)
		a.NumWant, a.Compact = 30, true
		var resp bittorrent.AnnounceResponse
		var worst []slow // the 8 slowest, slowest first
		over1ms := 0
		// The announces that added a block, and those that grew or split
		// an index part (a few do both).
		type kind struct {
			n        int
			sum, max time.Duration
		}
		var blocks, parts kind
		note := func(k *kind, d time.Duration) {
			k.n++
			k.sum += d
			k.max = max(k.max, d)
		}
		sh := s.shard(&h)
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		start := time.Now()
		for i := range peers {
			// Scattered addresses: consecutive numbers times an odd
			// constant.
			a.Addr = swarmtest.Addr4(int(uint32(i)*0x9e3779b1), uint16(1024+i%50000))
			a.PeerID = swarmtest.PeerID(i)
			resp.Reset()
			// Parts are replaced in a new slice of them.
			var nb int
			var parts0 *[]uint64
			if i > 0 && sh.torrents[0].p4.cls == bigClass {
				b := &sh.p4.big[sh.torrents[0].p4.off]
				nb, parts0 = len(b.blocks), &b.idx.parts[0]
			}
			t0 := time.Now()
			if _, err := s.Announce(ctx, &a, &resp); err != nil {
				t.Fatal(err)
			}
			d := time.Since(t0)
			if sg := sh.torrents[0].p4; sg.cls == bigClass && nb > 0 {
				b := &sh.p4.big[sg.off]
				if len(b.blocks) != nb {
					note(&blocks, d)
				}
				if &b.idx.parts[0] != parts0 {
					note(&parts, d)
				}
			}
			if d > time.Millisecond {
				over1ms++
			}
			if len(worst) < 8 || d > worst[len(worst)-1].d {
				k, _ := slices.BinarySearchFunc(worst, d, func(w slow, d time.Duration) int { return int(d - w.d) })
				worst = slices.Insert(worst, k, slow{d, i + 1})
				worst = worst[:min(len(worst), 8)]
			}
		}
		load := time.Since(start)
		runtime.ReadMemStats(&ms1)
		if tot, _ := s.Totals(ctx); tot.Leechers != peers {
			t.Fatalf("swarm holds %d peers, want %d", tot.Leechers, peers)
		}
		t.Logf("%d announces in %v (%.0f ns each), %d over 1 ms; %d GCs, pauses %v in all",
			peers, load.Round(time.Millisecond), float64(load.Nanoseconds())/peers, over1ms,
			ms1.NumGC-ms0.NumGC, time.Duration(ms1.PauseTotalNs-ms0.PauseTotalNs))
		for _, k := range []struct {
			what string
			kind
		}{{"added a block", blocks}, {"grew or split an index part", parts}} {
			if k.n > 0 {
				t.Logf("%d announces %s: mean %v, max %v", k.n, k.what, (k.sum / time.Duration(k.n)).Round(time.Microsecond), k.max.Round(time.Microsecond))
			}
		}
		for _, w := range worst {
			t.Logf("  %8v at %d peers", w.d.Round(time.Microsecond), w.swarm)
		}
		runtime.KeepAlive(s)
	}
	t.Run("gc=off", func(t *testing.T) {
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		grow(t)
	})
	runtime.GC()
	t.Run("gc=on", func(t *testing.T) {
		base := heapInuse()
		grow(t)
		// The store of grow is garbage by now; measure one that is kept.
		s := New(swarm.Options{})
		a := swarmtest.Announce(swarmtest.Hash(1), swarmtest.PeerID(0), swarmtest.Addr4(0, 1), 1_700_000_000)
		a.NumWant = 0
		for i := range peers {
			a.Addr = swarmtest.Addr4(int(uint32(i)*0x9e3779b1), uint16(1024+i%50000))
			resp := bittorrent.AnnounceResponse{}
			if _, err := s.Announce(context.Background(), &a, &resp); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("heap per peer of a swarm of %d: %.1f bytes", peers, float64(heapInuse()-base)/peers)
		runtime.KeepAlive(s)
	})
}
