//go:build !race

package memswarm

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestPrefetchDuringChanges runs Prefetch without the lock, as a UDP
// worker does, while another goroutine makes the store reallocate what
// it reads: torrents and index growing, swarms growing into big segments
// and shrinking back, chunks evacuated, sweeps giving memory back. A
// stale or torn read must never index out of bounds (a panic fails the
// test). Race builds skip the loads, so this runs without -race only.
func TestPrefetchDuringChanges(t *testing.T) {
	s := NewSharded(swarm.Options{RemovePeerlessTorrents: true}, 2)
	const torrents = 3000
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hints := make([]swarm.Hint, 64)
		for r := 0; !stop.Load(); r++ {
			for k := range hints {
				i := (r*64 + k) * 7919
				hints[k] = swarm.Hint{InfoHash: swarmtest.Hash(i % torrents), Addr: addrOf6or4(i), Seeder: i%2 == 0,
					NumWant: int32(i%200) - 100, Sample: uint64(i) * 0x9e3779b97f4a7c15}
			}
			s.Prefetch(hints)
		}
	}()
	var resp bittorrent.AnnounceResponse
	deadline := time.Now().Add(time.Second)
	for round := int64(1); time.Now().Before(deadline); round++ {
		// Grow: a few swarms past the big-segment limit, many small ones.
		for i := range 20_000 {
			tor := i % torrents
			if i%4 == 0 {
				tor = i % 3
			}
			a := swarm.Announce{InfoHash: swarmtest.Hash(tor), Addr: addrOf6or4(i), Left: int64(i % 2),
				Now: round * 10, NumWant: 30, Families: bittorrent.BothFamilies, NoPeerIDs: i%3 == 0}
			resp.Reset()
			if _, err := s.Announce(context.Background(), &a, &resp); err != nil {
				t.Fatal(err)
			}
		}
		// Shrink: half leave, then a sweep drops everything of this round.
		for i := 0; i < 20_000; i += 2 {
			a := swarm.Announce{InfoHash: swarmtest.Hash(i % torrents), Addr: addrOf6or4(i), Event: bittorrent.EventStopped, Now: round * 10}
			resp.Reset()
			s.Announce(context.Background(), &a, &resp)
		}
		if _, err := s.Sweep(context.Background(), round*10); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}

func addrOf6or4(i int) netip.AddrPort {
	if i%5 == 0 {
		return swarmtest.Addr6(i, 6881)
	}
	return swarmtest.Addr4(i, 6881)
}
