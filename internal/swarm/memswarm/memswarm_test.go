package memswarm

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

func newStore(_ testing.TB, opts swarm.Options) swarm.Store { return New(opts) }

func TestConformance(t *testing.T) { swarmtest.Run(t, newStore) }

// TestConformanceOneShard runs the suite with every torrent in one shard,
// so torrents share slabs and free lists.
func TestConformanceOneShard(t *testing.T) {
	swarmtest.Run(t, func(_ testing.TB, opts swarm.Options) swarm.Store { return NewSharded(opts, 0) })
}

func BenchmarkStore(b *testing.B) { swarmtest.Bench(b, newStore) }

// BenchmarkShards measures parallel announces with several shard counts,
// to pick DefaultShardBits.
func BenchmarkShards(b *testing.B) {
	for _, bits := range []uint{0, 4, 8, 10} {
		b.Run(fmt.Sprintf("shards=%d", 1<<bits), func(b *testing.B) {
			swarmtest.Bench(b, func(_ testing.TB, opts swarm.Options) swarm.Store { return NewSharded(opts, bits) })
		})
	}
}

// TestZeroAllocs asserts that announces (new peers, re-announces, stopped,
// answers of 74 from both families) and scrapes allocate nothing once the
// store and the response buffers have warmed up.
func TestZeroAllocs(t *testing.T) {
	s := New(swarm.Options{})
	ctx := context.Background()
	h := swarmtest.Hash(1)
	for i := range 200 {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		swarmtest.Do(t, s, a)
		a.Addr = swarmtest.Addr6(i, 6881)
		swarmtest.Do(t, s, a)
	}
	resp := bittorrent.AnnounceResponse{
		Peers4: make([]bittorrent.Peer, 0, 74), Peers6: make([]bittorrent.Peer, 0, 74),
	}
	tests := []struct {
		name string
		a    swarm.Announce
	}{
		{"re-announce v4", swarmtest.Announce(h, swarmtest.PeerID(3), swarmtest.Addr4(3, 6881), 101)},
		{"re-announce v6", swarmtest.Announce(h, swarmtest.PeerID(3), swarmtest.Addr6(3, 6881), 101)},
		{"unknown torrent stopped", func() swarm.Announce {
			a := swarmtest.Announce(swarmtest.Hash(2), swarmtest.PeerID(3), swarmtest.Addr4(3, 6881), 101)
			a.Event = bittorrent.EventStopped
			return a
		}()},
		{"seeder", func() swarm.Announce {
			a := swarmtest.Announce(h, swarmtest.PeerID(4), swarmtest.Addr4(4, 6881), 101)
			a.Left = 0
			return a
		}()},
		{"port 0", swarmtest.Announce(h, swarmtest.PeerID(4), swarmtest.Addr4(999, 0), 101)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a
			allocs := testing.AllocsPerRun(100, func() {
				resp.Reset()
				if _, err := s.Announce(ctx, &a, &resp); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per announce, want 0", allocs)
			}
		})
	}
	t.Run("join and leave", func(t *testing.T) {
		// The only peer of a torrent joins and leaves: its segment goes to
		// the free list and comes back from it.
		a := swarmtest.Announce(swarmtest.Hash(3), swarmtest.PeerID(1000), swarmtest.Addr4(1000, 6881), 102)
		allocs := testing.AllocsPerRun(100, func() {
			a.Event = bittorrent.EventStarted
			resp.Reset()
			s.Announce(ctx, &a, &resp)
			a.Event = bittorrent.EventStopped
			resp.Reset()
			s.Announce(ctx, &a, &resp)
		})
		if allocs != 0 {
			t.Errorf("%v allocations per join and leave, want 0", allocs)
		}
	})
	t.Run("scrape", func(t *testing.T) {
		hashes := make([]bittorrent.InfoHash, 74)
		for i := range hashes {
			hashes[i] = swarmtest.Hash(i)
		}
		out := make([]bittorrent.SwarmStats, 0, 74)
		allocs := testing.AllocsPerRun(100, func() {
			out, _ = s.Scrape(ctx, hashes, out[:0])
		})
		if allocs != 0 {
			t.Errorf("%v allocations per scrape of 74, want 0", allocs)
		}
	})
}

// TestAddressEdges covers addresses the tracker should never hand over
// (it normalises them) but that must still not corrupt the store.
func TestAddressEdges(t *testing.T) {
	h := swarmtest.Hash(1)
	mapped := netip.AddrPortFrom(netip.MustParseAddr("::ffff:10.0.0.1"), 6881)
	tests := []struct {
		name      string
		addr      netip.AddrPort
		stored    bool
		wantAddr  netip.AddrPort
		wantV4Len int
	}{
		{"IPv4-mapped is stored as IPv4", mapped, true, swarmtest.Addr4(1, 6881), 1},
		{"invalid address is not stored", netip.AddrPort{}, false, netip.AddrPort{}, 0},
		{"unspecified IPv6 is an address like any other", netip.MustParseAddrPort("[::]:1"), true, netip.MustParseAddrPort("[::]:1"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(swarm.Options{})
			swarmtest.Do(t, s, swarmtest.Announce(h, swarmtest.PeerID(1), tc.addr, 100))
			tor, ok, err := s.Torrent(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.stored {
				if ok {
					t.Fatalf("stored %+v", tor)
				}
				return
			}
			if !ok || len(tor.Peers) != 1 || tor.Peers[0].Addr != tc.wantAddr {
				t.Fatalf("torrent %+v, want one peer at %v", tor, tc.wantAddr)
			}
			_, resp := swarmtest.Do(t, s, swarmtest.Announce(h, swarmtest.PeerID(2), swarmtest.Addr4(2, 1), 100))
			if len(resp.Peers4) != tc.wantV4Len {
				t.Errorf("another peer got IPv4 peers %v, want %d", resp.Peers4, tc.wantV4Len)
			}
		})
	}
}

// peers4 is the IPv4 peers of resp, from its Peers or its compact list.
func peers4(resp *bittorrent.AnnounceResponse) []bittorrent.Peer {
	v4, _ := swarmtest.Peers(resp)
	return v4
}

// TestAnnouncePanicReleasesShard: a panic inside Announce (here a nil
// response, written under the lock) must not leave the shard locked; the
// transports recover from panics and go on serving, and every later
// announce to that shard would wait for ever.
func TestAnnouncePanicReleasesShard(t *testing.T) {
	s := NewSharded(swarm.Options{}, 1)
	a := swarmtest.Announce(swarmtest.Hash(1), swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 100)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("announce with a nil response did not panic")
			}
		}()
		_, _ = s.Announce(context.Background(), &a, nil)
	}()
	done := make(chan error, 1)
	go func() {
		var resp bittorrent.AnnounceResponse
		_, err := s.Announce(context.Background(), &a, &resp)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the next announce to the shard is still waiting for its lock")
	}
}
