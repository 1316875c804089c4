package memswarm

import (
	"context"
	"net/netip"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestSeederSampleOfFewLeechers: in a big swarm of 10,000 seeders and 11
// leechers (10 that joined first, one last), a seeder asking for one peer
// gets each leecher about equally often, with and without peer ids. A walk
// of the whole swarm that skipped seeders handed out the leecher after the
// long run of seeders 9,899 times in 10,000, another one 9 times.
func TestSeederSampleOfFewLeechers(t *testing.T) {
	for _, compact := range []bool{false, true} {
		s := New(swarm.Options{})
		h := swarmtest.Hash(1)
		join := func(i int, left int64) {
			a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
			a.Left, a.NumWant = left, 0
			swarmtest.Do(t, s, a)
		}
		for i := 1; i <= 10; i++ {
			join(i, 1)
		}
		for i := 11; i <= 10_010; i++ {
			join(i, 0)
		}
		join(10_011, 1)
		got := map[netip.AddrPort]int{}
		const rounds = 11_000
		for r := range rounds {
			i := 11 + r%10_000
			a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 101)
			a.Left, a.NumWant, a.Families, a.Compact = 0, 1, bittorrent.IPv4, compact
			_, resp := swarmtest.Do(t, s, a)
			v4 := peers4(&resp)
			if len(v4) != 1 {
				t.Fatalf("seeder got %d peers, want 1", len(v4))
			}
			got[v4[0].Addr]++
		}
		// 1,000 expected each; a binomial's deviation is about 30.
		for _, i := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10_011} {
			if c := got[swarmtest.Addr4(i, 6881)]; c < 800 || c > 1200 {
				t.Errorf("compact=%v: leecher %d handed out %d times in %d, want about %d", compact, i, c, rounds, rounds/11)
			}
		}
		if len(got) != 11 {
			t.Errorf("compact=%v: %d different peers handed to seeders, want the 11 leechers", compact, len(got))
		}
	}
}

// TestLeechersFirstThroughChanges drives a big swarm through joins,
// leechers becoming seeders and back, and leaving, and checks after each
// step that the segment keeps its leechers first (checkBig).
func TestLeechersFirstThroughChanges(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	h := swarmtest.Hash(1)
	ann := func(i int, left int64, ev bittorrent.Event) {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		a.Left, a.Event, a.NumWant, a.Families = left, ev, 5, bittorrent.IPv4
		var resp bittorrent.AnnounceResponse
		if _, err := s.Announce(context.Background(), &a, &resp); err != nil {
			t.Fatal(err)
		}
	}
	sh := &s.shards[0]
	check := func(stage string) {
		t.Helper()
		tor, ok := sh.get(&h)
		if !ok || tor.p4.cls != bigClass {
			t.Fatalf("%s: the swarm is not a big segment", stage)
		}
		checkBig(t, &sh.p4, tor.p4)
	}
	for i := range 3000 {
		ann(i, int64(i%3), bittorrent.EventNone)
	}
	check("after joining")
	for i := 0; i < 3000; i += 4 {
		ann(i, int64((i+1)%2), bittorrent.EventNone) // some switch, some stay
	}
	check("after switching")
	for i := 1; i < 3000; i += 3 {
		ann(i, 1, bittorrent.EventStopped)
	}
	check("after leaving")
}

// TestSampleStart: an announce that carries its sample's randomness
// (swarm.Announce.Sample, as the UDP tracker passes after Prefetch) is
// answered from the start that randomness gives, the one listBig
// loads, for a leecher over all peers and for a seeder over the leechers,
// with and without ids; 0 still lets the store draw.
func TestSampleStart(t *testing.T) {
	for _, compact := range []bool{false, true} {
		s := NewSharded(swarm.Options{}, 0)
		h := swarmtest.Hash(1)
		const n = 1000 // 600 leechers then 400 seeders
		for i := range n {
			a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
			a.NumWant = 0
			if i < 600 {
				a.Left = 1
			} else {
				a.Left = 0
			}
			swarmtest.Do(t, s, a)
		}
		sh := &s.shards[0]
		tr, ok := sh.get(&h)
		if !ok || tr.p4.cls != bigClass {
			t.Fatal("no big swarm")
		}
		b := &sh.p4.big[tr.p4.off]
		for _, tc := range []struct {
			sample uint64
			seeder bool
		}{
			{1, false}, {0xffffffff, false}, {0x80000000, false}, {0x1234_5678_9abc_def0, false},
			{1, true}, {0xffffffff, true}, {0x9abc_def0, true},
		} {
			// The requester is a new peer: it joins at the end (a leecher
			// is then swapped to the leechers' end), so the positions the
			// start is counted in are those after its own update.
			id := 5000 + int(tc.sample%97)
			a := swarmtest.Announce(h, swarmtest.PeerID(id), swarmtest.Addr4(id, 6881), 100)
			a.NumWant, a.Compact, a.Sample, a.Families = 5, compact, tc.sample, bittorrent.IPv4
			if tc.seeder {
				a.Left = 0
			}
			_, resp := swarmtest.Do(t, s, a)
			m := uint64(tr.p4.n)
			if tc.seeder {
				m = uint64(b.leechers)
			}
			i := uint32((tc.sample & 0xffffffff) * m >> 32)
			if p := b.at(i); netip.AddrPortFrom(netip.AddrFrom4(p.ip), p.port) == a.Addr {
				i = (i + 1) % uint32(m) // itself is skipped
			}
			p := b.at(i)
			want := netip.AddrPortFrom(netip.AddrFrom4(p.ip), p.port)
			if v4 := peers4(&resp); len(v4) != 5 || v4[0].Addr != want {
				t.Fatalf("compact %v, sample %#x, seeder %v: answer starts %v, want %v (position %d of %d)",
					compact, tc.sample, tc.seeder, v4, want, i, m)
			}
			// Leave again, so the next case sees the same swarm.
			a.Event, a.Sample = bittorrent.EventStopped, 0
			swarmtest.Do(t, s, a)
		}
		// Without a sample, the starts still spread over the swarm.
		firsts := map[netip.AddrPort]bool{}
		for range 200 {
			a := swarmtest.Announce(h, swarmtest.PeerID(0), swarmtest.Addr4(0, 6881), 100)
			a.NumWant, a.Compact = 1, compact
			_, resp := swarmtest.Do(t, s, a)
			firsts[peers4(&resp)[0].Addr] = true
		}
		if len(firsts) < 100 {
			t.Fatalf("compact %v: 200 announces without a sample started at only %d peers", compact, len(firsts))
		}
	}
}
