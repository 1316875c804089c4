package memswarm

import (
	"context"
	"net/netip"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// FuzzOps reads the input as a program of announces and sweeps on a
// two-shard store and checks, after every step, that answers keep the
// rules and that the store's bookkeeping matches a recount.
//
// Each operation is 4 bytes: kind and event, torrent and address family,
// peer, and numwant with left.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0x11, 1, 0, 2, 0x22, 3, 0, 1, 0x03, 0x80, 0, 0, 0})
	f.Add([]byte{2, 1, 1, 0x10, 0x83, 0, 0, 0, 0x80, 1, 1, 0x01})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) == 0 {
			return
		}
		if len(prog) > 4*512 {
			prog = prog[:4*512]
		}
		s := NewSharded(swarm.Options{RemovePeerlessTorrents: prog[0]&0x40 != 0, KeepCompleted: prog[0]&0x20 != 0}, 1)
		ctx := context.Background()
		var resp bittorrent.AnnounceResponse
		now := int64(1000)
		for ; len(prog) >= 4; prog = prog[4:] {
			op, tb, pb, nb := prog[0], prog[1], prog[2], prog[3]
			now += int64(op >> 5 & 1)
			if op&0x80 != 0 {
				if _, err := s.Sweep(ctx, now-int64(tb%8)); err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, s)
				continue
			}
			a := swarmtest.Announce(swarmtest.Hash(int(tb&3)), swarmtest.PeerID(int(pb)), swarmtest.Addr4(int(pb&15), uint16(pb>>4)), now)
			if tb&4 != 0 {
				a.Addr = swarmtest.Addr6(int(pb&15), uint16(pb>>4))
			}
			a.Event = bittorrent.Event(op & 3)
			a.NumWant = int(nb & 15)
			a.Left = int64(nb >> 4 & 1)
			a.Compact = nb&0x20 != 0
			a.Families = bittorrent.Family(1 + tb>>3%3)
			resp.Reset()
			res, err := s.Announce(ctx, &a, &resp)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(resp.Peers4) + len(resp.Peers6) + len(resp.Compact4)/6 + len(resp.Compact6)/18; n > a.NumWant {
				t.Fatalf("%d peers for numwant %d", n, a.NumWant)
			}
			checkAnswer(t, s, &a, &resp)
			if st, _ := s.Scrape(ctx, []bittorrent.InfoHash{a.InfoHash}, nil); st[0].Completed != res.Completed ||
				st[0].Seeders != resp.Seeders || st[0].Leechers != resp.Leechers {
				t.Fatalf("scrape %+v after an answer of %d/%d completed %d", st[0], resp.Seeders, resp.Leechers, res.Completed)
			}
			checkInvariants(t, s)
		}
	})
}

// FuzzBigOps is FuzzOps for big swarms: each operation joins or leaves a
// range of up to 2,040 peers of one torrent (IPv4 or IPv6), re-announces
// one, or sweeps, so swarms cross the chunk limit and block boundaries
// both ways; index parts split at 64 slots. The bookkeeping, blocks and
// index are checked after every operation.
//
// Each operation is 4 bytes: kind and family, the range's start, its
// length in steps of 8, and left with the announce time.
func FuzzBigOps(f *testing.F) {
	f.Add([]byte{0, 0, 40, 0, 0, 1, 255, 1, 1, 0, 200, 0, 3, 0, 0, 0})
	f.Add([]byte{0, 0, 255, 0, 4, 0, 255, 0, 0, 9, 255, 1, 2, 3, 7, 1, 1, 2, 250, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		old := maxPartSlots
		maxPartSlots = minPartSlots
		defer func() { maxPartSlots = old }()
		if len(prog) > 4*64 {
			prog = prog[:4*64]
		}
		s := NewSharded(swarm.Options{RemovePeerlessTorrents: true}, 0)
		ctx := context.Background()
		var resp bittorrent.AnnounceResponse
		for ; len(prog) >= 4; prog = prog[4:] {
			op, start, n, nb := prog[0], int(prog[1])*64, int(prog[2])*8, prog[3]
			now := 1000 + int64(nb>>1&7)
			if op&3 == 3 {
				if _, err := s.Sweep(ctx, now); err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, s)
				continue
			}
			a := swarmtest.Announce(swarmtest.Hash(int(op>>3&1)), swarmtest.PeerID(0), netip.AddrPort{}, now)
			a.Left = int64(nb & 1)
			a.Compact = op&0x10 != 0
			a.NumWant = 30
			// As the UDP tracker passes it after Prefetch; 0: the store draws.
			a.Sample = uint64(op>>5) * 0x9e3779b97f4a7c15
			if op&3 == 2 {
				n = 1 // one peer re-announces
			}
			if op&3 == 1 {
				a.Event = bittorrent.EventStopped
			}
			for i := start; i < start+n; i++ {
				a.Addr = swarmtest.Addr4(i, 1+uint16(i%3))
				if op&4 != 0 {
					a.Addr = swarmtest.Addr6(i, 1+uint16(i%3))
				}
				resp.Reset()
				if _, err := s.Announce(ctx, &a, &resp); err != nil {
					t.Fatal(err)
				}
				if i == start+n-1 {
					// Every answer costs a listing of the swarm.
					checkAnswer(t, s, &a, &resp)
				} else {
					v4, v6 := swarmtest.Peers(&resp)
					for _, p := range append(v4, v6...) {
						if p.Addr == a.Addr {
							t.Fatalf("%v was handed itself", a.Addr)
						}
					}
				}
			}
			checkInvariants(t, s)
		}
	})
}

// checkAnswer checks that every peer handed out is another stored peer of
// the torrent, a leecher when the requester is a seeder and the swarm has
// one to hand, with its id
// (or none when ids were not wanted).
func checkAnswer(t *testing.T, s *Store, a *swarm.Announce, resp *bittorrent.AnnounceResponse) {
	t.Helper()
	tr, _, _ := s.Torrent(context.Background(), a.InfoHash)
	stored := make(map[netip.AddrPort]swarm.PeerInfo, len(tr.Peers))
	for _, p := range tr.Peers {
		stored[p.Addr] = p
	}
	swarmtest.CheckForm(t, a, resp)
	// A seeder may be handed seeders only when the wanted families hold
	// no other leecher.
	leechers := false
	for _, p := range tr.Peers {
		if p.Addr != a.Addr && a.Families&bittorrent.FamilyOf(p.Addr.Addr()) != 0 && !bittorrent.Complete(p.Left) {
			leechers = true
		}
	}
	v4, v6 := swarmtest.Peers(resp)
	for _, p := range append(v4, v6...) {
		q, ok := stored[p.Addr]
		switch {
		case p.Addr == a.Addr:
			t.Fatalf("%v was handed itself", a.Addr)
		case !ok:
			t.Fatalf("%v handed out, not stored", p.Addr)
		case leechers && bittorrent.Complete(a.Left) && bittorrent.Complete(q.Left):
			t.Fatalf("seeder %v handed to a seeder", p.Addr)
		case p.ID != q.ID && (!a.Compact || p.ID != bittorrent.PeerID{}):
			t.Fatalf("%v handed out with id %x, stored %x", p.Addr, p.ID, q.ID)
		}
	}
}
