package tracker_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// newFull is the tracker as the daemon builds it, over the real store.
func newFull(tb testing.TB, cfg tracker.Config) (*tracker.Tracker, *access.Lists) {
	tb.Helper()
	lists := access.New(nil)
	store := memswarm.New(swarm.Options{RemovePeerlessTorrents: true})
	return tracker.New(cfg, store, lists, clock.NewManual(1_700_000_000), nil), lists
}

func fill(tb testing.TB, tr *tracker.Tracker, h bittorrent.InfoHash, peers int) {
	tb.Helper()
	var resp bittorrent.AnnounceResponse
	for i := 0; i < peers; i++ {
		req := bittorrent.AnnounceRequest{
			InfoHash: h,
			Addr:     netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 6881),
			Left:     int64(i % 2),
			Families: bittorrent.IPv4,
		}
		req.PeerID[0] = byte(i)
		resp.Reset()
		if err := tr.Announce(context.Background(), &req, &resp); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestSteadyStateAllocatesNothing: the announce and scrape paths through
// the rules and the store allocate nothing once buffers have grown, in every
// mode.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	key, _ := bittorrent.ParseKey("YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ")
	for _, mode := range []struct {
		name            string
		private, listed bool
	}{{"public", false, false}, {"listed", false, true}, {"private", true, false}, {"private_listed", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			cfg := tracker.DefaultConfig()
			cfg.Private, cfg.Listed = mode.private, mode.listed
			tr, lists := newFull(t, cfg)
			h := bittorrent.InfoHash{7}
			ctx := context.Background()
			_ = lists.AddToWhitelist(ctx, h)
			_ = lists.AddKey(ctx, access.KeyRecord{Key: key, Permanent: true})
			var resp bittorrent.AnnounceResponse
			for i := 0; i < 200; i++ {
				req := bittorrent.AnnounceRequest{
					InfoHash: h, Key: key, HasKey: true, Families: bittorrent.IPv4,
					Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 6881),
					Left: int64(i % 2),
				}
				resp.Reset()
				if err := tr.Announce(ctx, &req, &resp); err != nil {
					t.Fatal(err)
				}
			}
			req := bittorrent.AnnounceRequest{
				InfoHash: h, Key: key, HasKey: true, Families: bittorrent.IPv4, Left: 5,
				Addr: netip.MustParseAddrPort("10.9.9.9:6881"),
			}
			allocs := testing.AllocsPerRun(1000, func() {
				resp.Reset()
				if err := tr.Announce(ctx, &req, &resp); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("announce: %v allocations, want 0", allocs)
			}
			if len(resp.Peers4) != 74 {
				t.Errorf("announce returned %d peers, want 74", len(resp.Peers4))
			}
			hashes := make([]bittorrent.InfoHash, 74)
			for i := range hashes {
				hashes[i] = bittorrent.InfoHash{byte(i)}
			}
			sreq := bittorrent.ScrapeRequest{InfoHashes: hashes, Key: key, HasKey: true}
			var sresp bittorrent.ScrapeResponse
			allocs = testing.AllocsPerRun(1000, func() {
				sresp.Reset()
				if err := tr.Scrape(ctx, &sreq, &sresp); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("scrape: %v allocations, want 0", allocs)
			}
			if sresp.Files[7].Seeders != 100 || sresp.Files[7].Leechers != 101 {
				t.Errorf("scrape of the filled torrent: %+v", sresp.Files[7])
			}
		})
	}
}

// BenchmarkAnnounce is the rules plus the store, as a transport calls them.
func BenchmarkAnnounce(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(map[int]string{1: "swarm=1", 100: "swarm=100", 10_000: "swarm=10000"}[n], func(b *testing.B) {
			tr, _ := newFull(b, tracker.DefaultConfig())
			h := bittorrent.InfoHash{1}
			fill(b, tr, h, n)
			req := bittorrent.AnnounceRequest{InfoHash: h, Families: bittorrent.IPv4, Left: 1,
				Addr: netip.MustParseAddrPort("10.200.0.1:6881")}
			var resp bittorrent.AnnounceResponse
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp.Reset()
				_ = tr.Announce(ctx, &req, &resp)
			}
		})
	}
}
