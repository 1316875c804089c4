//go:build !race

package memswarm

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

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
				Now: round * 10, NumWant: 30, Families: bittorrent.BothFamilies, Compact: i%3 == 0}
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

// TestPrefetchChunkLines checks the lines prefetch lists for chunk
// segments: the hot copies of the first prefetchRecords peers, then the
// announcing peer's record when it is among them, and nothing for a peer
// that is not (new, or further on in a larger segment).
func TestPrefetchChunkLines(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	sizes := []int{1, 7, 20, prefetchRecords, prefetchRecords + 1, 200}
	for tor, n := range sizes {
		for i := range n {
			a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
			swarmtest.Do(t, s, a)
			a.Addr = swarmtest.Addr6(i, 6881)
			swarmtest.Do(t, s, a)
		}
	}
	checkInvariants(t, s)
	sh := &s.shards[0]
	for tor, n := range sizes {
		h := swarmtest.Hash(tor)
		tr, _ := sh.get(&h)
		checkChunkLines(t, &sh.p4, sh.p4.pview.Load(), tr.p4, n, func(i int) [4]byte { return swarmtest.Addr4(i, 6881).Addr().As4() })
		checkChunkLines(t, &sh.p6, sh.p6.pview.Load(), tr.p6, n, func(i int) [16]byte { return swarmtest.Addr6(i, 6881).Addr().As16() })
	}
}

func checkChunkLines[A addr](t *testing.T, sl *slab[A], v *slabView[A], sg seg, n int, ip func(int) A) {
	t.Helper()
	if sg.cls == noClass || sg.cls == bigClass || int(sg.n) != n {
		t.Fatalf("segment of class %d with %d peers, want a chunk segment of %d", sg.cls, sg.n, n)
	}
	listed := func(l *lineList) []unsafe.Pointer { return slices.Clone(l.p[:l.n]) }
	hs := sl.hotView(sg)
	for i := -1; i < n; i++ {
		var l lineList
		addr := ip(n + 1000) // not stored
		if i >= 0 {
			addr = ip(i)
		}
		listSeg(&l, v, sg, &addr, 6881)
		m := min(n, prefetchRecords)
		first, last := unsafe.Pointer(&hs[0]), unsafe.Add(unsafe.Pointer(&hs[m-1]), unsafe.Sizeof(hs[0])-1)
		got := listed(&l)
		if got[0] != first || got[len(got)-1] != last {
			t.Fatalf("%d peers: listSeg listed %v, want %p to %p", n, got, first, last)
		}
		l.load()
		listChunkPeer(&l, v, sg, &addr, 6881)
		got = listed(&l)
		// The peers are stored in address order: peer i is at position i.
		if i < 0 || i >= prefetchRecords {
			if len(got) != 0 {
				t.Fatalf("%d peers: peer %d (not among the first %d): listed %v", n, i, prefetchRecords, got)
			}
			continue
		}
		p := sl.at(sg, i)
		if len(got) < 2 || got[0] != unsafe.Pointer(p) || got[len(got)-1] != unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(*p)-1) {
			t.Fatalf("%d peers: peer %d at %p: listed %v", n, i, p, got)
		}
	}
}
