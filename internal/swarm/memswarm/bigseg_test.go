package memswarm

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// smallParts makes index parts split at minPartSlots for the rest of the
// test, so swarms of a few thousand peers have hundreds of parts.
func smallParts(t *testing.T) {
	old := maxPartSlots
	maxPartSlots = minPartSlots
	t.Cleanup(func() { maxPartSlots = old })
}

// bigOf is the torrent's IPv4 segment and its bigSeg (nil when it is not
// big), in a one-shard store.
func bigOf(s *Store) (seg, *bigSeg[[4]byte]) {
	sh := &s.shards[0]
	sg := sh.torrents[0].p4
	if sg.cls != bigClass {
		return sg, nil
	}
	return sg, &sh.p4.big[sg.off]
}

// TestBlocks grows one swarm peer by peer across block boundaries and
// shrinks it back into a chunk segment, checking the blocks, the index
// and the answers at each boundary.
func TestBlocks(t *testing.T) {
	for _, small := range []bool{false, true} {
		t.Run(fmt.Sprintf("smallparts=%v", small), func(t *testing.T) {
			if small {
				smallParts(t)
			}
			s := NewSharded(swarm.Options{}, 0)
			h := swarmtest.Hash(1)
			announce := func(i int, ev bittorrent.Event) bittorrent.AnnounceResponse {
				a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
				a.Event, a.Left = ev, int64(i%3)
				a.Compact = i%2 == 0
				_, resp := swarmtest.Do(t, s, a)
				return resp
			}
			// Block counts expected at the edges: a block is added when
			// the last one is full, and one block is sized to the swarm.
			edges := map[int]int{maxSeg: 0, maxSeg + 1: 1, blockLen - 1: 1, blockLen: 1, blockLen + 1: 2,
				2 * blockLen: 2, 2*blockLen + 1: 3, 3*blockLen + 1: 4}
			const top = 3*blockLen + 1
			for n := 1; n <= top; n++ {
				resp := announce(n, bittorrent.EventStarted)
				if want, v4 := min(74, n-1), peers4(&resp); n%3 != 0 && len(v4) != want {
					t.Fatalf("at %d peers: %d handed out, want %d", n, len(v4), want)
				}
				if blocks, ok := edges[n]; ok {
					checkInvariants(t, s)
					if _, b := bigOf(s); b == nil && blocks != 0 || b != nil && len(b.blocks) != blocks {
						t.Fatalf("at %d peers: big segment %v, want %d blocks", n, b != nil, blocks)
					}
				}
			}
			if _, b := bigOf(s); small && len(b.idx.parts) < 64 {
				t.Errorf("%d peers in %d index parts of at most %d slots", top, len(b.idx.parts), maxPartSlots)
			}
			// Leaving from the highest number: the last block empties, and
			// is dropped once the one before is half empty too.
			shrinkEdges := map[int]int{3 * blockLen: 4, 2*blockLen + blockLen/2 + 1: 4, 2*blockLen + blockLen/2: 3,
				2 * blockLen: 3, blockLen + blockLen/2 + 1: 3, blockLen + blockLen/2: 2, blockLen/2 + 1: 2,
				blockLen / 2: 1, blockLen / 4: 1, maxSeg: 1}
			for n := top; n > 100; n-- {
				announce(n, bittorrent.EventStopped)
				if blocks, ok := shrinkEdges[n-1]; ok {
					checkInvariants(t, s)
					if _, b := bigOf(s); b == nil || len(b.blocks) != blocks {
						t.Fatalf("at %d peers: want %d blocks", n-1, blocks)
					}
				}
			}
			checkInvariants(t, s)
			if sg, b := bigOf(s); b != nil || sg.n != 100 {
				t.Fatalf("100 peers left: segment of class %d, %d peers, want a chunk segment", sg.cls, sg.n)
			}
		})
	}
}

// TestBigSwarmSmallParts runs TestBigSwarm's churn and sweeps with index
// parts that split at 64 slots.
func TestBigSwarmSmallParts(t *testing.T) {
	smallParts(t)
	TestBigSwarm(t)
}

// TestSweepBlocks sweeps a swarm of several blocks: half of it (the kept
// peers are moved down over block boundaries and reindexed), then all
// but a few (back into a chunk segment).
func TestSweepBlocks(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	ctx := context.Background()
	h := swarmtest.Hash(1)
	const n = 5*blockLen + 123
	for i := range n {
		// Every other peer is older, one in 1,000 newer still.
		now := int64(100 + i%2 + i%1000/999)
		swarmtest.Do(t, s, swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 1+uint16(i%3)), now))
	}
	checkInvariants(t, s)
	for _, tc := range []struct {
		cutoff int64
		left   int
		blocks int // 0: a chunk segment
	}{
		{99, n, 6},
		{100, n - n/2 - 1, 4},
		{101, 20, 0},
	} {
		r, err := s.Sweep(ctx, tc.cutoff)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, s)
		tor, _, _ := s.Torrent(ctx, h)
		if len(tor.Peers) != tc.left {
			t.Fatalf("sweep at %d removed %d: %d peers left, want %d", tc.cutoff, r.Peers, len(tor.Peers), tc.left)
		}
		for _, p := range tor.Peers {
			if p.Updated <= tc.cutoff {
				t.Fatalf("sweep at %d kept %+v", tc.cutoff, p)
			}
		}
		if _, b := bigOf(s); tc.blocks == 0 && b != nil || tc.blocks != 0 && (b == nil || len(b.blocks) != tc.blocks) {
			t.Fatalf("after the sweep at %d: big %v, want %d blocks", tc.cutoff, b != nil, tc.blocks)
		}
	}
}

// TestPrefetchBig runs Prefetch for peers of a big swarm, known and new,
// while another goroutine grows and shrinks it (blocks added and dropped,
// parts split and halved), so prefetch reads views that are being
// replaced. Prefetch only warms caches: the test checks that it reads
// nothing out of bounds (the race build skips its loads).
func TestPrefetchBig(t *testing.T) {
	smallParts(t)
	s := NewSharded(swarm.Options{}, 0)
	h := swarmtest.Hash(1)
	hints := make([]swarm.Hint, 64)
	for i := range hints {
		// Samples, num_wants and sides of every kind, extremes included.
		hints[i] = swarm.Hint{InfoHash: h, Addr: swarmtest.Addr4(i*97, 6881), Seeder: i%3 == 0,
			NumWant: []int32{-1, 0, 30, 74, 1 << 30, -1 << 31}[i%6], Sample: uint64(i) * 0x9e3779b97f4a7c15}
		if i%8 == 0 {
			hints[i].Addr = swarmtest.Addr6(i, 6881)
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				s.Prefetch(hints)
			}
		}
	}()
	var resp bittorrent.AnnounceResponse
	ctx := context.Background()
	do := func(i int, ev bittorrent.Event) {
		addr := swarmtest.Addr4(i, 6881)
		if i%8 == 0 {
			addr = swarmtest.Addr6(i, 6881)
		}
		a := swarmtest.Announce(h, swarmtest.PeerID(i), addr, 100)
		a.Event = ev
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			t.Error(err)
		}
	}
	for round := range 2 {
		for i := range 3 * blockLen {
			do(i, bittorrent.EventStarted)
		}
		for i := range 3*blockLen - 50 {
			do(i, bittorrent.EventStopped)
		}
		if round == 0 {
			checkInvariants(t, s)
		}
	}
	close(stop)
	wg.Wait()
	checkInvariants(t, s)
	if _, ok, _ := s.Torrent(ctx, h); !ok {
		t.Fatal("torrent gone")
	}
}
