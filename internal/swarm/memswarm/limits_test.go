package memswarm

import (
	"context"
	"errors"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestLimits: at a limit a new torrent or peer is refused with the
// limit's error and nothing is stored, while the peers already stored
// keep being served; a place freed by a stop is taken again. One shard,
// so the store-wide limits are exact.
func TestLimits(t *testing.T) {
	ctx := context.Background()
	announce := func(s *Store, h, i int, ev bittorrent.Event) (bittorrent.AnnounceResponse, error) {
		a := swarmtest.Announce(swarmtest.Hash(h), swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		a.Event = ev
		var resp bittorrent.AnnounceResponse
		_, err := s.Announce(ctx, &a, &resp)
		return resp, err
	}
	t.Run("max_peers_per_torrent", func(t *testing.T) {
		s := NewSharded(swarm.Options{Limits: swarm.Limits{MaxPeersPerTorrent: 2}}, 0)
		for i := 1; i <= 2; i++ {
			if _, err := announce(s, 1, i, bittorrent.EventStarted); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := announce(s, 1, 3, bittorrent.EventStarted); !errors.Is(err, swarm.ErrFullPeersPerTorrent) {
			t.Fatalf("third peer: %v", err)
		}
		if resp, err := announce(s, 1, 1, bittorrent.EventNone); err != nil || resp.Leechers != 2 || len(resp.Peers4) != 1 {
			t.Fatalf("a stored peer at the limit: %+v, %v", resp, err)
		}
		if _, err := announce(s, 2, 3, bittorrent.EventStarted); err != nil {
			t.Fatalf("another torrent: %v", err)
		}
		announce(s, 1, 2, bittorrent.EventStopped)
		if _, err := announce(s, 1, 3, bittorrent.EventStarted); err != nil {
			t.Fatalf("after a stop freed a place: %v", err)
		}
	})
	t.Run("max_peers", func(t *testing.T) {
		s := NewSharded(swarm.Options{Limits: swarm.Limits{MaxPeers: 3}}, 0)
		for i := 1; i <= 3; i++ {
			if _, err := announce(s, i, i, bittorrent.EventStarted); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range []int{1, 9} { // an existing torrent, a new one
			if _, err := announce(s, h, 4, bittorrent.EventStarted); !errors.Is(err, swarm.ErrFullPeers) {
				t.Fatalf("fourth peer into torrent %d: %v", h, err)
			}
		}
		if tot, _ := s.Totals(ctx); tot.Torrents != 3 || tot.Leechers != 3 {
			t.Fatalf("totals %+v after refusals", tot)
		}
	})
	t.Run("max_torrents", func(t *testing.T) {
		s := NewSharded(swarm.Options{Limits: swarm.Limits{MaxTorrents: 2}}, 0)
		announce(s, 1, 1, bittorrent.EventStarted)
		announce(s, 2, 2, bittorrent.EventStarted)
		if _, err := announce(s, 3, 3, bittorrent.EventStarted); !errors.Is(err, swarm.ErrFullTorrents) {
			t.Fatalf("third torrent: %v", err)
		}
		if _, err := announce(s, 1, 3, bittorrent.EventStarted); err != nil {
			t.Fatalf("a new peer of a known torrent: %v", err)
		}
	})
	t.Run("spread over shards", func(t *testing.T) {
		// 256 shards share 512 peers: two each.
		s := New(swarm.Options{Limits: swarm.Limits{MaxPeers: 512}})
		refused := 0
		for i := range 2000 {
			if _, err := announce(s, i, i, bittorrent.EventStarted); err != nil {
				refused++
			}
		}
		tot, _ := s.Totals(ctx)
		if tot.Leechers > 512 || tot.Leechers < 400 || refused != 2000-int(tot.Leechers) {
			t.Fatalf("%d peers stored, %d refused, of 2000 with a limit of 512", tot.Leechers, refused)
		}
	})
}
