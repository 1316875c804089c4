package swarmtest

import (
	"context"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// testRelayed checks swarm.RelayCounter on stores that implement it:
// relayed (WebSocket) peers are counted everywhere counts are read, are
// never handed out, keep their torrent through a sweep, and never make a
// seeder believe there are leechers to be handed.
func testRelayed(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t, swarm.Options{RemovePeerlessTorrents: true})
	rc, ok := s.(swarm.RelayCounter)
	if !ok {
		t.Skip("the store does not count relayed peers")
	}
	relay := func(h bittorrent.InfoHash, seeders, leechers int32, completed bool) bittorrent.SwarmStats {
		t.Helper()
		st, _, err := rc.CountRelayed(ctx, h, seeders, leechers, completed)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	h := Hash(1)
	if st := relay(h, -1, 0, false); st != (bittorrent.SwarmStats{}) {
		t.Fatalf("a decrement created %+v", st)
	}
	relay(h, 0, 2, false)
	st, res, err := rc.CountRelayed(ctx, h, 1, -1, true)
	if err != nil || !res.CountedCompletion || res.Completed != 1 {
		t.Fatalf("completion: %+v %v", res, err)
	}
	if want := (bittorrent.SwarmStats{Seeders: 1, Leechers: 1, Completed: 1}); st != want {
		t.Fatalf("counts %+v, want %+v", st, want)
	}
	// A stored seeder sees every count, and is handed seeders, not the
	// relayed leecher it cannot reach.
	Do(t, s, Announce(h, PeerID(1), Addr4(1, 6881), 100))
	seed := Announce(h, PeerID(2), Addr4(2, 6881), 100)
	seed.Left = 0
	_, resp := Do(t, s, seed)
	if resp.Seeders != 2 || resp.Leechers != 2 {
		t.Fatalf("answer counts %d/%d, want 2/2", resp.Seeders, resp.Leechers)
	}
	if v4, v6 := Peers(&resp); len(v4) != 1 || len(v6) != 0 || v4[0].Addr != Addr4(1, 6881) {
		t.Fatalf("handed %v %v, want the stored leecher alone", v4, v6)
	}
	// With no stored leecher, a seeder is handed the stored seeders.
	stop := Announce(h, PeerID(1), Addr4(1, 6881), 100)
	stop.Event = bittorrent.EventStopped
	Do(t, s, stop)
	seed2 := Announce(h, PeerID(3), Addr4(3, 6881), 100)
	seed2.Left = 0
	if _, resp := Do(t, s, seed2); len(resp.Peers4)+len(resp.Compact4) == 0 {
		t.Fatal("a seeder with only relayed leechers was handed nobody")
	}
	got, _ := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil)
	if want := (bittorrent.SwarmStats{Seeders: 3, Leechers: 1, Completed: 1}); got[0] != want {
		t.Fatalf("scrape %+v, want %+v", got[0], want)
	}
	if tot := totals(t, s); tot != (swarm.Totals{Torrents: 1, Seeders: 3, Leechers: 1, Completed: 1}) {
		t.Fatalf("totals %+v", tot)
	}
	// The sweep removes the stored peers; relayed ones keep the torrent.
	sweep(t, s, 1000)
	if tot := totals(t, s); tot != (swarm.Totals{Torrents: 1, Seeders: 1, Leechers: 1, Completed: 1}) {
		t.Fatalf("totals after the sweep %+v", tot)
	}
	list, err := s.Torrents(ctx, 0, 10)
	if err != nil || len(list) != 1 || list[0].Seeders != 1 || list[0].Leechers != 1 {
		t.Fatalf("torrents %+v %v", list, err)
	}
	// Counts never go below zero; once the relayed peers leave, the sweep
	// removes the torrent.
	if st := relay(h, -5, -5, false); st != (bittorrent.SwarmStats{Completed: 1}) {
		t.Fatalf("after leaving: %+v", st)
	}
	sweep(t, s, 1000)
	if tot := totals(t, s); tot != (swarm.Totals{}) {
		t.Fatalf("totals after the last sweep %+v", tot)
	}
}
