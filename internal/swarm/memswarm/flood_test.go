package memswarm

import (
	"context"
	"runtime"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestMemoryComesBackAfterFlood: a store serving 2,000 steady swarms is
// flooded with announces for 300,000 random hashes; once the flood's
// peers expire and are swept, the store's structures (MemoryBytes) and
// the Go heap drop back to within 20 % of what they held before plus a
// small constant, and the steady swarms are all still served. Run for
// stores of 1 and 256 shards, with and without a big swarm that shrinks.
func TestMemoryComesBackAfterFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods 300,000 torrents")
	}
	for _, tc := range []struct {
		name      string
		shardBits uint
		big       int // peers of one swarm that shrinks to a tenth with the flood
	}{
		{"256 shards", DefaultShardBits, 0},
		{"one shard", 0, 0},
		{"256 shards and a big swarm", DefaultShardBits, 100_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := NewSharded(swarm.Options{RemovePeerlessTorrents: true}, tc.shardBits)
			steady := func(now int64) {
				for i := range 2_000 {
					for p := range 3 {
						a := swarmtest.Announce(swarmtest.Hash(i), swarmtest.PeerID(p), swarmtest.Addr4(p, 6881), now)
						a.NumWant = 0
						swarmtest.Do(t, s, a)
					}
				}
			}
			bigHash := swarmtest.Hash(1 << 30)
			bigSwarm := func(from, to int, now int64, ev bittorrent.Event) {
				for p := from; p < to; p++ {
					a := swarmtest.Announce(bigHash, swarmtest.PeerID(p), swarmtest.Addr4(p, 7000), now)
					a.NumWant, a.Event = 0, ev
					swarmtest.Do(t, s, a)
				}
			}
			steady(100)
			bigSwarm(0, tc.big/10, 100, bittorrent.EventNone)
			if _, err := s.Sweep(ctx, 0); err != nil {
				t.Fatal(err)
			}
			before, heapBefore := s.MemoryBytes(), heapInuse()

			// The flood: one peer in each of 300,000 new swarms, while
			// the big swarm grows tenfold and the steady swarms go on.
			bigSwarm(tc.big/10, tc.big, 150, bittorrent.EventNone)
			for i := range 300_000 {
				a := swarmtest.Announce(swarmtest.Hash(1_000_000+i), swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 150)
				a.NumWant = 0
				swarmtest.Do(t, s, a)
			}
			during := s.MemoryBytes()
			steady(200)
			bigSwarm(0, tc.big/10, 200, bittorrent.EventNone)
			res, err := s.Sweep(ctx, 150)
			if err != nil {
				t.Fatal(err)
			}
			if res.Torrents != 300_000 || res.Peers != 300_000+tc.big*9/10 {
				t.Fatalf("swept %+v, want the flood's 300,000 torrents and peers and %d peers of the big swarm", res, tc.big*9/10)
			}
			after, heapAfter := s.MemoryBytes(), heapInuse()
			t.Logf("store %d KiB before, %d KiB during, %d KiB after; heap in use %d KiB before, %d KiB after",
				before>>10, during>>10, after>>10, heapBefore>>10, heapAfter>>10)
			// What the store dropped is what the daemon hands back to the OS.
			if rel := s.ReleasedBytes(); rel < during-after {
				t.Errorf("ReleasedBytes %d, less than the %d bytes the store shrank by", rel, during-after)
			}
			const slack = 1 << 20
			if after > before+before/5+slack {
				t.Errorf("the store holds %d bytes after the flood, %d before", after, before)
			}
			if heapAfter > heapBefore+heapBefore/5+4*slack {
				t.Errorf("the heap holds %d bytes after the flood, %d before", heapAfter, heapBefore)
			}
			tot, _ := s.Totals(ctx)
			if want := uint64(2_000 + min(tc.big, 1)); tot.Torrents != want || tot.Seeders+tot.Leechers != uint64(6_000+tc.big/10) {
				t.Fatalf("totals %+v after the flood, want %d torrents and %d peers", tot, want, 6_000+tc.big/10)
			}
			// Every steady swarm is still found, and still answers.
			for i := range 2_000 {
				a := swarmtest.Announce(swarmtest.Hash(i), swarmtest.PeerID(9), swarmtest.Addr4(9, 6881), 210)
				a.NumWant = 10
				_, resp := swarmtest.Do(t, s, a)
				if len(resp.Peers4) != 3 {
					t.Fatalf("swarm %d hands out %d peers after the flood, want 3", i, len(resp.Peers4))
				}
			}
			if tc.big > 0 {
				sh := s.shard(&bigHash)
				tor, _ := sh.get(&bigHash)
				if tor.p4.cls == bigClass {
					checkBig(t, &sh.p4, tor.p4)
				}
				got, _, _ := s.Torrent(ctx, bigHash)
				if len(got.Peers) != tc.big/10 {
					t.Fatalf("the big swarm holds %d peers, want %d", len(got.Peers), tc.big/10)
				}
			}
			runtime.KeepAlive(s)
		})
	}
}

// TestBigIndexPartsMerge: a swarm that grew to 200,000 peers split its
// index into parts; as it shrinks, the parts are merged back (the index
// is rebuilt for what is left), and the swarm stays consistent and finds
// every peer it holds.
func TestBigIndexPartsMerge(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	sh := &s.shards[0]
	h := swarmtest.Hash(7)
	ann := func(i int, ev bittorrent.Event) {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		a.Left, a.Event, a.NumWant = int64(i%3), ev, 0
		swarmtest.Do(t, s, a)
	}
	const n = 200_000
	for i := range n {
		ann(i, bittorrent.EventNone)
	}
	tor, _ := sh.get(&h)
	peak := len(sh.p4.big[tor.p4.off].idx.parts)
	if peak < 8 {
		t.Fatalf("%d index parts at %d peers; the test wants a split index", peak, n)
	}
	const left = 5_000
	for i := left; i < n; i++ {
		ann(i, bittorrent.EventStopped)
	}
	tor, _ = sh.get(&h)
	if tor.p4.cls != bigClass {
		t.Fatalf("class %d at %d peers, want a big segment", tor.p4.cls, left)
	}
	checkBig(t, &sh.p4, tor.p4)
	if got := len(sh.p4.big[tor.p4.off].idx.parts); got*4 > peak || got > partsFor(left)*4 {
		t.Fatalf("%d index parts at %d peers (%d at the peak)", got, left, peak)
	}
	for i := range left {
		a := swarmtest.Addr4(i, 6881)
		ip := a.Addr().As4()
		if _, ok := sh.p4.find(tor.p4, &ip, a.Port()); !ok {
			t.Fatalf("peer %d is not found after the merge", i)
		}
	}
}
