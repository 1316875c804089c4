package memswarm

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestDumpRestore: a store restored from its dump holds the same torrents,
// peers (ids, addresses, times, progress, events), counts and completed
// counts, including a big swarm, IPv6 peers and a torrent kept only for
// its completed count; a restored peer whose completion was counted is not
// counted again.
func TestDumpRestore(t *testing.T) {
	ctx := context.Background()
	opts := swarm.Options{RemovePeerlessTorrents: true, KeepCompleted: true}
	src := New(opts)
	var hashes []bittorrent.InfoHash
	for h := range 50 {
		hash := swarmtest.Hash(h)
		hashes = append(hashes, hash)
		n := 1 + h%7
		if h == 0 {
			n = 3 * maxSeg // a big swarm, stored in arrival order
		}
		for i := range n {
			addr := swarmtest.Addr4(i, uint16(6881+h))
			if i%3 == 1 {
				addr = swarmtest.Addr6(i, uint16(6881+h))
			}
			a := swarmtest.Announce(hash, swarmtest.PeerID(i), addr, int64(1000+i))
			a.Left = int64(i % 4) // a quarter are seeders
			if i%5 == 0 {
				a.Left = -1 // unknown
			}
			switch i % 6 {
			case 2:
				a.Event = bittorrent.EventCompleted
			case 3:
				a.Event = bittorrent.EventStarted
			}
			a.Uploaded, a.Downloaded = int64(i*10), int64(i*20)
			swarmtest.Do(t, src, a)
		}
	}
	kept := swarmtest.Hash(999)
	hashes = append(hashes, kept)
	if err := src.SetCompleted(ctx, []swarm.CompletedCount{{InfoHash: kept, Completed: 42}}); err != nil {
		t.Fatal(err)
	}

	dst := New(opts)
	calls := 0
	if err := src.Dump(func(d *swarm.TorrentDump) error {
		calls++
		return dst.Restore(d)
	}); err != nil {
		t.Fatal(err)
	}
	if calls != len(hashes) {
		t.Errorf("dump made %d calls for %d torrents", calls, len(hashes))
	}
	for _, h := range hashes {
		want, ok1, _ := src.Torrent(ctx, h)
		got, ok2, _ := dst.Torrent(ctx, h)
		if ok1 != ok2 || !reflect.DeepEqual(want, got) {
			t.Fatalf("torrent %s: restored %+v (%v), want %+v (%v)", h, got, ok2, want, ok1)
		}
	}
	wt, _ := src.Totals(ctx)
	gt, _ := dst.Totals(ctx)
	if wt != gt {
		t.Fatalf("totals %+v, want %+v", gt, wt)
	}
	// Peer 2 of torrent 2 completed before the dump: not counted again.
	before := mustScrape(t, dst, hashes[2])
	a := swarmtest.Announce(hashes[2], swarmtest.PeerID(2), swarmtest.Addr4(2, 6883), 5000)
	a.Left, a.Event = 0, bittorrent.EventCompleted
	if res, _ := swarmtest.Do(t, dst, a); res.CountedCompletion {
		t.Fatal("a restored peer's completion was counted again")
	}
	if after := mustScrape(t, dst, hashes[2]); after.Completed != before.Completed {
		t.Fatalf("completed %d after a repeated completion, was %d", after.Completed, before.Completed)
	}

	t.Run("fn's error ends the dump", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := src.Dump(func(*swarm.TorrentDump) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Dump returned %v after %d calls", err, n)
		}
	})
}

func mustScrape(t *testing.T, s swarm.Store, h bittorrent.InfoHash) bittorrent.SwarmStats {
	t.Helper()
	out, err := s.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}
