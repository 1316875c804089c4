package swarmtest

import (
	"context"
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Run runs the whole conformance suite against stores built by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("NeverSelf", func(t *testing.T) { testNeverSelf(t, newStore) })
	t.Run("SeederGetsOnlyLeechers", func(t *testing.T) { testSeederGetsLeechers(t, newStore) })
	t.Run("NumWant", func(t *testing.T) { testNumWant(t, newStore) })
	t.Run("Families", func(t *testing.T) { testFamilies(t, newStore) })
	t.Run("RandomSample", func(t *testing.T) { testRandomSample(t, newStore) })
	t.Run("LargeSwarm", func(t *testing.T) { testLargeSwarm(t, newStore) })
	t.Run("LargeSwarmWithoutPeerIDs", func(t *testing.T) {
		testLargeSwarmNoIDs(t, newStore, bittorrent.IPv4)
		testLargeSwarmNoIDs(t, newStore, bittorrent.IPv6)
	})
	t.Run("Stopped", func(t *testing.T) { testStopped(t, newStore) })
	t.Run("PortZero", func(t *testing.T) { testPortZero(t, newStore) })
	t.Run("Completed", func(t *testing.T) { testCompleted(t, newStore) })
	t.Run("IdentityByAddress", func(t *testing.T) { testIdentity(t, newStore) })
	t.Run("CountsIncludeRequester", func(t *testing.T) { testCounts(t, newStore) })
	t.Run("Scrape", func(t *testing.T) { testScrape(t, newStore) })
	t.Run("SweepCutoff", func(t *testing.T) { testSweepCutoff(t, newStore) })
	t.Run("SweepPeerless", func(t *testing.T) { testSweepPeerless(t, newStore) })
	t.Run("SetCompleted", func(t *testing.T) { testSetCompleted(t, newStore) })
	t.Run("Torrent", func(t *testing.T) { testTorrent(t, newStore) })
	t.Run("TorrentsPaging", func(t *testing.T) { testTorrentsPaging(t, newStore) })
	t.Run("Model", func(t *testing.T) { testModel(t, newStore) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore) })
	t.Run("Relayed", func(t *testing.T) { testRelayed(t, newStore) })
}

var h1 = Hash(1)

// fill announces n IPv4 leechers (ids and addresses 1..n, port 6881) at time now.
func fill(t testing.TB, s swarm.Store, h bittorrent.InfoHash, n int, now int64) {
	t.Helper()
	for i := 1; i <= n; i++ {
		a := Announce(h, PeerID(i), Addr4(i, 6881), now)
		a.NumWant = 0
		Do(t, s, a)
	}
}

// checkAnswer checks that the answer has no duplicates and not self.
func checkAnswer(t testing.TB, resp *bittorrent.AnnounceResponse, self netip.AddrPort) {
	t.Helper()
	seen := map[netip.AddrPort]bool{}
	for _, a := range addrs(resp) {
		if a == self {
			t.Errorf("answer to %v contains the requester itself", self)
		}
		if seen[a] {
			t.Errorf("answer to %v contains %v twice", self, a)
		}
		seen[a] = true
	}
	v4, v6 := Peers(resp)
	for _, p := range v4 {
		if !p.Addr.Addr().Is4() {
			t.Errorf("the IPv4 peers hold %v", p.Addr)
		}
	}
	for _, p := range v6 {
		if !p.Addr.Addr().Is6() || p.Addr.Addr().Is4In6() {
			t.Errorf("the IPv6 peers hold %v", p.Addr)
		}
	}
}

func testNeverSelf(t *testing.T, newStore NewStore) {
	tests := []struct {
		name  string
		peers int
		want  int
	}{
		{"alone", 1, 0},
		{"two", 2, 1},
		{"ten", 10, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, swarm.Options{})
			fill(t, s, h1, tc.peers, 100)
			for i := 1; i <= tc.peers; i++ {
				for range 5 {
					_, resp := Do(t, s, Announce(h1, PeerID(i), Addr4(i, 6881), 101))
					checkAnswer(t, &resp, Addr4(i, 6881))
					if got := len(addrs(&resp)); got != tc.want {
						t.Fatalf("peer %d got %d peers, want %d", i, got, tc.want)
					}
				}
			}
		})
	}
}

func testSeederGetsLeechers(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	// Peers 1..5 are seeders, 6..10 leechers, half of each on IPv6.
	addr := func(i int) netip.AddrPort {
		if i%2 == 0 {
			return Addr6(i, 6881)
		}
		return Addr4(i, 6881)
	}
	for i := 1; i <= 10; i++ {
		a := Announce(h1, PeerID(i), addr(i), 100)
		if i <= 5 {
			a.Left = 0
		}
		Do(t, s, a)
	}
	leechers := map[netip.AddrPort]bool{}
	for i := 6; i <= 10; i++ {
		leechers[addr(i)] = true
	}
	tests := []struct {
		name   string
		i      int
		left   int64
		want   int
		onlyLe bool
	}{
		{"seeder re-announces", 1, 0, 5, true},
		{"new seeder", 11, 0, 5, true},
		{"leecher", 6, 1000, 10, false}, // 9 others and the new seeder 11
		{"new leecher", 12, 1000, 11, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Announce(h1, PeerID(tc.i), addr(tc.i), 101)
			a.Left = tc.left
			a.NumWant = 50
			_, resp := Do(t, s, a)
			checkAnswer(t, &resp, addr(tc.i))
			got := addrs(&resp)
			if len(got) != tc.want {
				t.Errorf("got %d peers %v, want %d", len(got), got, tc.want)
			}
			if tc.onlyLe {
				for _, p := range got {
					if !leechers[p] {
						t.Errorf("seeder was handed seeder %v", p)
					}
				}
			}
		})
	}
	t.Run("seeder in a swarm of seeders", func(t *testing.T) {
		// With no leecher to hand, a seeder is handed the other seeders
		// (a magnet download that reports left 0 finds the real seeder);
		// the first, alone, gets nothing.
		s := newStore(t, swarm.Options{})
		for i := 1; i <= 5; i++ {
			a := Announce(h1, PeerID(i), addr(i), 100)
			a.Left, a.NumWant = 0, 50
			_, resp := Do(t, s, a)
			checkAnswer(t, &resp, addr(i))
			if n := len(addrs(&resp)); n != i-1 {
				t.Fatalf("seeder %d got %d peers from a swarm of %d seeders, want the %d others", i, n, i, i-1)
			}
		}
		// One leecher arrives: from then on seeders get it alone.
		Do(t, s, Announce(h1, PeerID(6), addr(6), 101))
		a := Announce(h1, PeerID(1), addr(1), 102)
		a.Left, a.NumWant = 0, 50
		_, resp := Do(t, s, a)
		if got := addrs(&resp); len(got) != 1 || got[0] != addr(6) {
			t.Fatalf("seeder with one leecher in the swarm got %v, want only the leecher %v", got, addr(6))
		}
	})
	t.Run("unknown left is a leecher", func(t *testing.T) {
		s := newStore(t, swarm.Options{})
		for i := 1; i <= 3; i++ {
			a := Announce(h1, PeerID(i), Addr4(i, 6881), 100)
			a.Left = 0
			Do(t, s, a)
		}
		for _, left := range []int64{-1, math.MinInt64} {
			a := Announce(h1, PeerID(4), Addr4(4, 6881), 101)
			a.Left, a.NumWant = left, 50
			_, resp := Do(t, s, a)
			if resp.Seeders != 3 || resp.Leechers != 1 || len(addrs(&resp)) != 3 {
				t.Fatalf("left %d: %d seeders, %d leechers, %d peers; want 3, 1 and the 3 seeders", left, resp.Seeders, resp.Leechers, len(addrs(&resp)))
			}
			a = Announce(h1, PeerID(1), Addr4(1, 6881), 102)
			a.Left, a.NumWant = 0, 50
			_, resp = Do(t, s, a)
			if got := addrs(&resp); len(got) != 1 || got[0] != Addr4(4, 6881) {
				t.Fatalf("left %d: a seeder got %v, want only the peer of unknown left", left, got)
			}
		}
	})
	t.Run("leechers only in another family", func(t *testing.T) {
		// The IPv4 seeder asks for IPv4 peers (as over UDP); the only
		// leecher is on IPv6, so it has no leecher to hand and gets the
		// IPv4 seeders.
		s := newStore(t, swarm.Options{})
		Do(t, s, Announce(h1, PeerID(9), Addr6(9, 6881), 100))
		for i := 1; i <= 3; i++ {
			a := Announce(h1, PeerID(i), Addr4(i, 6881), 100)
			a.Left = 0
			Do(t, s, a)
		}
		a := Announce(h1, PeerID(1), Addr4(1, 6881), 101)
		a.Left, a.NumWant, a.Families = 0, 50, bittorrent.IPv4
		_, resp := Do(t, s, a)
		if got := addrs(&resp); len(got) != 2 {
			t.Fatalf("IPv4 seeder got %v, want the 2 other IPv4 seeders", got)
		}
		a.Families = bittorrent.IPv4 | bittorrent.IPv6
		_, resp = Do(t, s, a)
		if got := addrs(&resp); len(got) != 1 || got[0] != Addr6(9, 6881) {
			t.Fatalf("seeder asking for both families got %v, want only the IPv6 leecher", got)
		}
	})
	t.Run("large swarm of seeders", func(t *testing.T) {
		// Past a small swarm's size (a store may keep big swarms apart).
		s := newStore(t, swarm.Options{})
		const n = 2000
		for i := 1; i <= n; i++ {
			a := Announce(h1, PeerID(i), Addr4(i, 6881), 100)
			a.Left, a.NumWant = 0, 0
			Do(t, s, a)
		}
		a := Announce(h1, PeerID(1), Addr4(1, 6881), 101)
		a.Left, a.NumWant = 0, 50
		_, resp := Do(t, s, a)
		checkAnswer(t, &resp, Addr4(1, 6881))
		if got := addrs(&resp); len(got) != 50 {
			t.Fatalf("seeder in %d seeders got %d peers, want 50", n, len(got))
		}
		Do(t, s, Announce(h1, PeerID(n+1), Addr4(n+1, 6881), 101))
		_, resp = Do(t, s, a)
		if got := addrs(&resp); len(got) != 1 || got[0] != Addr4(n+1, 6881) {
			t.Fatalf("seeder in %d seeders and one leecher got %d peers, want only the leecher", n, len(got))
		}
	})
}

func testNumWant(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	fill(t, s, h1, 100, 100)
	tests := []struct {
		numWant int
		want    int
	}{
		{0, 0},
		{1, 1},
		{74, 74},
		{99, 99},
		{500, 99}, // everyone but the requester
	}
	for _, tc := range tests {
		for _, requester := range []int{1, 50, 100} {
			a := Announce(h1, PeerID(requester), Addr4(requester, 6881), 101)
			a.NumWant = tc.numWant
			_, resp := Do(t, s, a)
			checkAnswer(t, &resp, a.Addr)
			if got := len(addrs(&resp)); got != tc.want {
				t.Errorf("numwant %d from peer %d: got %d peers, want %d", tc.numWant, requester, got, tc.want)
			}
		}
	}
}

func testFamilies(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	for i := 1; i <= 5; i++ {
		a := Announce(h1, PeerID(i), Addr4(i, 6881), 100)
		Do(t, s, a)
		a = Announce(h1, PeerID(100+i), Addr6(i, 6881), 100)
		Do(t, s, a)
	}
	tests := []struct {
		name      string
		fam       bittorrent.Family
		numWant   int
		id        int
		self      netip.AddrPort
		want4     int
		want6     int
		wantTotal int
	}{
		{"v4 only from v4", bittorrent.IPv4, 74, 999, Addr4(20, 6881), 5, 0, 5},
		{"v6 only from v4", bittorrent.IPv6, 74, 999, Addr4(20, 6881), 0, 5, 5},
		{"v6 only from v6", bittorrent.IPv6, 74, 999, Addr6(20, 6881), 0, 5, 5},
		{"both from v6", bittorrent.BothFamilies, 74, 999, Addr6(20, 6881), 5, 5, 10},
		{"both from a stored v6 peer", bittorrent.BothFamilies, 74, 101, Addr6(1, 6881), 5, 4, 9},
		{"v6 only from a stored v6 peer", bittorrent.IPv6, 74, 101, Addr6(1, 6881), 0, 4, 4},
		{"v4 only from a stored v4 peer", bittorrent.IPv4, 74, 1, Addr4(1, 6881), 4, 0, 4},
		{"both, numwant 3", bittorrent.BothFamilies, 3, 999, Addr4(20, 6881), -1, -1, 3},
		{"both, numwant 10 of 10", bittorrent.BothFamilies, 10, 999, Addr4(20, 6881), 5, 5, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Announce(h1, PeerID(tc.id), tc.self, 101)
			a.NumWant, a.Families = tc.numWant, tc.fam
			_, resp := Do(t, s, a)
			checkAnswer(t, &resp, tc.self)
			if tc.id == 999 {
				// Take the requester out again so the cases stay independent.
				a.Event = bittorrent.EventStopped
				Do(t, s, a)
			}
			if tc.want4 >= 0 && len(resp.Peers4) != tc.want4 {
				t.Errorf("got %d IPv4 peers, want %d", len(resp.Peers4), tc.want4)
			}
			if tc.want6 >= 0 && len(resp.Peers6) != tc.want6 {
				t.Errorf("got %d IPv6 peers, want %d", len(resp.Peers6), tc.want6)
			}
			if len(resp.Peers4)+len(resp.Peers6) != tc.wantTotal {
				t.Errorf("got %d peers in total, want %d", len(resp.Peers4)+len(resp.Peers6), tc.wantTotal)
			}
		})
	}
	t.Run("both families are sampled", func(t *testing.T) {
		// With 5+5 peers and numwant 3, both families must show up over
		// many announces: the sample is over the union, not v4 first.
		var saw4, saw6 bool
		for range 100 {
			a := Announce(h1, PeerID(999), Addr4(77, 6881), 101)
			a.NumWant = 3
			_, resp := Do(t, s, a)
			saw4 = saw4 || len(resp.Peers4) > 0
			saw6 = saw6 || len(resp.Peers6) > 0
		}
		if !saw4 || !saw6 {
			t.Errorf("100 samples of 3 from 5 IPv4 + 5 IPv6 peers: saw IPv4 %v, IPv6 %v", saw4, saw6)
		}
	})
}

func testRandomSample(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	fill(t, s, h1, 100, 100)
	seen := map[netip.AddrPort]int{}
	firsts := map[netip.AddrPort]bool{}
	const rounds = 300
	for range rounds {
		a := Announce(h1, PeerID(1), Addr4(1, 6881), 101)
		a.NumWant = 10
		_, resp := Do(t, s, a)
		checkAnswer(t, &resp, a.Addr)
		for _, p := range addrs(&resp) {
			seen[p]++
		}
		if len(resp.Peers4) > 0 {
			firsts[resp.Peers4[0].Addr] = true
		}
	}
	// Each of the 99 others is picked with probability 10/99 per round;
	// missing one in 300 rounds has probability below 1e-13.
	for i := 2; i <= 100; i++ {
		if seen[Addr4(i, 6881)] == 0 {
			t.Errorf("peer %d was never handed out in %d samples of 10 out of 99", i, rounds)
		}
	}
	if len(firsts) < 10 {
		t.Errorf("only %d different first peers in %d answers: not a random sample", len(firsts), rounds)
	}
}

// testLargeSwarm checks the rules in a swarm of 1,000 peers of each family,
// larger than a store may keep in a small layout: the counts, that every
// peer can be handed out with its own id, that a seeder gets only
// leechers, and that leaving peers are gone from answers and counts.
func testLargeSwarm(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	const n = 1000
	addr := func(i int) netip.AddrPort {
		if i > n {
			return Addr6(i, 6881)
		}
		return Addr4(i, 6881)
	}
	// Peers 1..2n, scattered arrival order; a third are seeders.
	seeders := map[netip.AddrPort]bool{}
	ids := map[netip.AddrPort]bittorrent.PeerID{}
	for k := range 2 * n {
		i := 1 + (k*7919)%(2*n)
		a := Announce(h1, PeerID(i), addr(i), 100)
		a.NumWant = 0
		if i%3 == 0 {
			a.Left = 0
			seeders[addr(i)] = true
		}
		ids[addr(i)] = PeerID(i)
		Do(t, s, a)
	}
	if st := scrape1(t, s, h1); st.Seeders != uint32(len(seeders)) || st.Leechers != uint32(2*n-len(seeders)) {
		t.Fatalf("scrape %+v, want %d seeders and %d leechers", st, len(seeders), 2*n-len(seeders))
	}
	seen := map[netip.AddrPort]int{}
	// Each other peer is handed out with probability 50/1999 per round;
	// missing one in 1,500 rounds has probability below 1e-16.
	for r := range 1500 {
		i := 1 + r%(2*n)
		a := Announce(h1, PeerID(i), addr(i), 101)
		a.NumWant = 50
		if seeders[a.Addr] {
			a.Left = 0
		}
		_, resp := Do(t, s, a)
		checkAnswer(t, &resp, a.Addr)
		for _, p := range append(resp.Peers4, resp.Peers6...) {
			if !sameID(s, p.ID, ids[p.Addr]) {
				t.Fatalf("%v handed out with id %x, want %x", p.Addr, p.ID, ids[p.Addr])
			}
		}
		if got := len(resp.Peers4) + len(resp.Peers6); got != 50 {
			t.Fatalf("%d peers handed out, want 50", got)
		}
		for _, p := range addrs(&resp) {
			if bittorrent.Complete(a.Left) && seeders[p] {
				t.Fatalf("seeder %v was handed seeder %v", a.Addr, p)
			}
			seen[p]++
		}
	}
	for i := 1; i <= 2*n; i++ {
		if !seeders[addr(i)] && seen[addr(i)] == 0 {
			t.Errorf("leecher %v was never handed out", addr(i))
		}
	}
	// Half of the peers leave, in scattered order.
	for k := range n {
		i := 1 + (k*7919)%(2*n)
		a := Announce(h1, PeerID(i), addr(i), 102)
		a.Event = bittorrent.EventStopped
		Do(t, s, a)
		delete(seeders, addr(i))
		seen[addr(i)] = -1
	}
	a := Announce(h1, PeerID(0), Addr4(0, 6881), 103)
	a.NumWant = 2 * n
	_, resp := Do(t, s, a)
	for _, p := range addrs(&resp) {
		if seen[p] < 0 {
			t.Fatalf("%v left but was handed out", p)
		}
	}
	if got := len(resp.Peers4) + len(resp.Peers6); got != n {
		t.Fatalf("%d peers handed out after half left, want the %d others", got, n)
	}
	if st := scrape1(t, s, h1); st.Seeders != uint32(len(seeders)) || st.Leechers != uint32(n+1-len(seeders)) {
		t.Fatalf("after half left: scrape %+v, want %d seeders and %d leechers", st, len(seeders), n+1-len(seeders))
	}
}

// testLargeSwarmNoIDs checks answers without peer ids (UDP's) in a swarm
// of one family large enough for a store's big layout, which may answer
// them from a copy of what they need (memswarm does): through growth,
// peers switching between seeder and leecher, peers leaving and a sweep,
// every answer must hold only current peers, with their current state.
func testLargeSwarmNoIDs(t *testing.T, newStore NewStore, fam bittorrent.Family) {
	s := newStore(t, swarm.Options{})
	addr := func(i int) netip.AddrPort {
		if fam == bittorrent.IPv6 {
			return Addr6(i, 6881)
		}
		return Addr4(i, 6881)
	}
	const n = 2000
	seeder := map[netip.AddrPort]bool{} // the live peers and their state
	announce := func(i int, now int64, left int64, ev bittorrent.Event, want int) bittorrent.AnnounceResponse {
		a := Announce(h1, PeerID(i), addr(i), now)
		a.Left, a.Event, a.NumWant, a.Families, a.Compact = left, ev, want, fam, true
		_, resp := Do(t, s, a)
		if ev == bittorrent.EventStopped {
			delete(seeder, addr(i))
		} else {
			seeder[addr(i)] = left == 0
		}
		return resp
	}
	check := func(stage string, rounds int) {
		t.Helper()
		handed := map[netip.AddrPort]bool{}
		for r := range rounds {
			i := 1 + (r*7919)%(2*n)
			if _, ok := seeder[addr(i)]; !ok {
				continue
			}
			resp := announce(i, 200, map[bool]int64{true: 0, false: 1}[seeder[addr(i)]], bittorrent.EventNone, 50)
			checkAnswer(t, &resp, addr(i))
			for _, p := range addrs(&resp) {
				st, live := seeder[p]
				switch {
				case !live:
					t.Fatalf("%s: %v handed out but not in the swarm", stage, p)
				case seeder[addr(i)] && st:
					t.Fatalf("%s: seeder %v was handed seeder %v", stage, addr(i), p)
				}
				handed[p] = true
			}
		}
		for p, st := range seeder {
			if !st && !handed[p] {
				t.Errorf("%s: leecher %v never handed out in %d answers of 50", stage, p, rounds)
			}
		}
	}
	// Growth through the big layout's steps, scattered arrival order, a
	// third seeders.
	for k := range 2 * n {
		i := 1 + (k*7919)%(2*n)
		announce(i, 100, int64(i%3), bittorrent.EventNone, 0)
	}
	check("after growth", 3000)
	// A fifth switch state.
	for i := 5; i <= 2*n; i += 5 {
		announce(i, 150, map[bool]int64{true: 1, false: 0}[seeder[addr(i)]], bittorrent.EventNone, 0)
	}
	check("after switching", 3000)
	// Half leave, in scattered order (the last peer fills each hole).
	for k := range n {
		announce(1+(k*4001)%(2*n), 160, 1, bittorrent.EventStopped, 0)
	}
	check("after leaving", 3000)
	// A sweep drops the peers not seen since 150 (check re-announced
	// some at 200).
	if _, err := s.Sweep(context.Background(), 199); err != nil {
		t.Fatal(err)
	}
	tor, ok, err := s.Torrent(context.Background(), h1)
	if err != nil || !ok {
		t.Fatalf("torrent after sweep: %v %v", ok, err)
	}
	live := map[netip.AddrPort]bool{}
	for _, p := range tor.Peers {
		live[p.Addr] = true
		if seeder[p.Addr] != bittorrent.Complete(p.Left) {
			t.Fatalf("after sweep: %v has left=%d, want seeder=%v", p.Addr, p.Left, seeder[p.Addr])
		}
	}
	for p := range seeder {
		if !live[p] {
			delete(seeder, p)
		}
	}
	if len(seeder) < 300 {
		t.Fatalf("only %d peers after the sweep: the test no longer covers a big swarm", len(seeder))
	}
	check("after sweep", 3000)
}

func testStopped(t *testing.T, newStore NewStore) {
	t.Run("removes the peer", func(t *testing.T) {
		s := newStore(t, swarm.Options{})
		fill(t, s, h1, 3, 100)
		a := Announce(h1, PeerID(2), Addr4(2, 6881), 101)
		a.Event = bittorrent.EventStopped
		_, resp := Do(t, s, a)
		if resp.Leechers != 2 || resp.Seeders != 0 {
			t.Errorf("stopped answer counts %d/%d, want 0 seeders 2 leechers", resp.Seeders, resp.Leechers)
		}
		_, resp = Do(t, s, Announce(h1, PeerID(1), Addr4(1, 6881), 102))
		if got := addrs(&resp); !slices.Equal(got, []netip.AddrPort{Addr4(3, 6881)}) {
			t.Errorf("after peer 2 stopped, peer 1 got %v, want only peer 3", got)
		}
		if st := scrape1(t, s, h1); st != (bittorrent.SwarmStats{Leechers: 2}) {
			t.Errorf("scrape %+v, want 2 leechers", st)
		}
		if tot := totals(t, s); tot != (swarm.Totals{Torrents: 1, Leechers: 2}) {
			t.Errorf("totals %+v, want 1 torrent 2 leechers", tot)
		}
	})
	t.Run("stores nothing", func(t *testing.T) {
		s := newStore(t, swarm.Options{})
		a := Announce(h1, PeerID(1), Addr4(1, 6881), 100)
		a.Event = bittorrent.EventStopped
		_, resp := Do(t, s, a)
		if resp.Seeders != 0 || resp.Leechers != 0 || len(addrs(&resp)) != 0 {
			t.Errorf("stopped into an empty store answered %+v", resp)
		}
		if tot := totals(t, s); tot != (swarm.Totals{}) {
			t.Errorf("totals %+v after a lone stopped, want zero", tot)
		}
		if _, ok, err := s.Torrent(context.Background(), h1); err != nil || ok {
			t.Errorf("Torrent after a lone stopped: found %v, err %v; want not found", ok, err)
		}
	})
	t.Run("a stopped seeder", func(t *testing.T) {
		s := newStore(t, swarm.Options{})
		a := Announce(h1, PeerID(1), Addr4(1, 6881), 100)
		a.Left = 0
		Do(t, s, a)
		a.Event = bittorrent.EventStopped
		_, resp := Do(t, s, a)
		if resp.Seeders != 0 {
			t.Errorf("seeders %d after the only seeder stopped", resp.Seeders)
		}
		if tot := totals(t, s); tot.Seeders != 0 || tot.Leechers != 0 {
			t.Errorf("totals %+v after the only seeder stopped", tot)
		}
	})
}

func testPortZero(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	fill(t, s, h1, 3, 100)
	a := Announce(h1, PeerID(9), Addr4(9, 0), 101)
	a.Event = bittorrent.EventCompleted
	res, resp := Do(t, s, a)
	if got := len(addrs(&resp)); got != 3 {
		t.Errorf("port 0 announce got %d peers, want 3", got)
	}
	if resp.Leechers != 3 || resp.Seeders != 0 {
		t.Errorf("port 0 announce counts %d/%d, want 0/3 (itself not stored)", resp.Seeders, resp.Leechers)
	}
	if !res.CountedCompletion || res.Completed != 1 {
		t.Errorf("port 0 completed was not counted: %+v", res)
	}
	// A retry of the same port-0 completion is not another download.
	if res, _ := Do(t, s, a); res.CountedCompletion || res.Completed != 1 {
		t.Errorf("port 0 completed again: %+v, want not counted, 1 completed", res)
	}
	if st := scrape1(t, s, h1); st.Completed != 1 || st.Leechers != 3 {
		t.Errorf("scrape after port 0 completions %+v, want 1 completed and the 3 stored leechers", st)
	}
	_, resp = Do(t, s, Announce(h1, PeerID(1), Addr4(1, 6881), 102))
	for _, p := range addrs(&resp) {
		if p.Addr() == Addr4(9, 0).Addr() {
			t.Errorf("port 0 peer was handed out as %v", p)
		}
	}
	t.Run("into an empty store", func(t *testing.T) {
		s := newStore(t, swarm.Options{})
		Do(t, s, Announce(h1, PeerID(9), Addr4(9, 0), 101))
		if tot := totals(t, s); tot != (swarm.Totals{}) {
			t.Errorf("totals %+v after a port 0 announce, want zero", tot)
		}
		a := Announce(h1, PeerID(9), Addr4(9, 0), 102)
		a.Event, a.Left = bittorrent.EventCompleted, 0
		Do(t, s, a)
		if tot := totals(t, s); tot != (swarm.Totals{Torrents: 1, Completed: 1}) {
			t.Errorf("totals %+v after a port 0 completion, want 1 torrent with 1 completed and no peer", tot)
		}
	})
}

func testCompleted(t *testing.T, newStore NewStore) {
	type step struct {
		peer      int
		port      uint16
		event     bittorrent.Event
		counted   bool
		completed uint32
	}
	const (
		none      = bittorrent.EventNone
		started   = bittorrent.EventStarted
		completed = bittorrent.EventCompleted
		stopped   = bittorrent.EventStopped
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"first announce completed counts", []step{{1, 6881, completed, true, 1}}},
		{"started then completed", []step{{1, 6881, started, false, 0}, {1, 6881, completed, true, 1}}},
		{"completed again does not count", []step{
			{1, 6881, completed, true, 1}, {1, 6881, completed, false, 1}, {1, 6881, none, false, 1},
			{1, 6881, completed, false, 1}}},
		{"two peers", []step{{1, 6881, completed, true, 1}, {2, 6881, completed, true, 2}}},
		{"same ip, new port is another peer", []step{{1, 6881, completed, true, 1}, {1, 6882, completed, true, 2}}},
		{"stopped keeps the count", []step{{1, 6881, completed, true, 1}, {1, 6881, stopped, false, 1}}},
		{"stopped and back: its completion is not counted again", []step{
			{1, 6881, completed, true, 1}, {1, 6881, stopped, false, 1}, {1, 6881, started, false, 1},
			{1, 6881, completed, false, 1}, {2, 6881, completed, true, 2}}},
		{"stopped before completing: the completion counts", []step{
			{1, 6881, started, false, 0}, {1, 6881, stopped, false, 0}, {1, 6881, completed, true, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, swarm.Options{})
			for k, st := range tc.steps {
				a := Announce(h1, PeerID(st.peer), Addr4(st.peer, st.port), int64(100+k))
				a.Event = st.event
				if st.event == completed {
					a.Left = 0
				}
				res, _ := Do(t, s, a)
				if res.CountedCompletion != st.counted || res.Completed != st.completed {
					t.Fatalf("step %d (%v from peer %d:%d): result %+v, want counted %v completed %d",
						k, st.event, st.peer, st.port, res, st.counted, st.completed)
				}
				if got := scrape1(t, s, h1).Completed; got != st.completed {
					t.Fatalf("step %d: scrape completed %d, want %d", k, got, st.completed)
				}
				if got := totals(t, s).Completed; got != uint64(st.completed) {
					t.Fatalf("step %d: totals completed %d, want %d", k, got, st.completed)
				}
			}
		})
	}
}

func testIdentity(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	first := Addr4(1, 6881)
	second := Addr4(1, 7000)
	Do(t, s, Announce(h1, PeerID(1), first, 100))
	// Same peer_id, same IP, another port: a second peer.
	_, resp := Do(t, s, Announce(h1, PeerID(1), second, 101))
	if resp.Leechers != 2 {
		t.Fatalf("a second port made %d leechers, want 2", resp.Leechers)
	}
	if got := addrs(&resp); !slices.Equal(got, []netip.AddrPort{first}) {
		t.Errorf("the second port got %v, want the first", got)
	}
	// The second cannot remove or change the first, whatever its peer_id.
	a := Announce(h1, PeerID(1), second, 102)
	a.Event = bittorrent.EventStopped
	Do(t, s, a)
	a = Announce(h1, PeerID(1), Addr4(2, 6881), 102)
	a.Event = bittorrent.EventStopped
	Do(t, s, a)
	tor, ok, err := s.Torrent(context.Background(), h1)
	if err != nil || !ok {
		t.Fatalf("Torrent: found %v, err %v", ok, err)
	}
	if len(tor.Peers) != 1 || tor.Peers[0].Addr != first || tor.Peers[0].Updated != 100 {
		t.Errorf("peers %+v, want only the first, untouched (updated 100)", tor.Peers)
	}
	// A new peer_id from the first address is the same peer, updated.
	a = Announce(h1, PeerID(5), first, 103)
	a.Left = 0
	_, resp = Do(t, s, a)
	if resp.Seeders != 1 || resp.Leechers != 0 {
		t.Errorf("re-announce as seeder from the same address: %d/%d, want 1/0", resp.Seeders, resp.Leechers)
	}
	tor, _, _ = s.Torrent(context.Background(), h1)
	if len(tor.Peers) != 1 || !sameID(s, tor.Peers[0].ID, PeerID(5)) {
		t.Errorf("peers %+v, want one with the new peer_id", tor.Peers)
	}
	// The same address in another swarm is another peer.
	_, resp = Do(t, s, Announce(Hash(2), PeerID(5), first, 104))
	if resp.Leechers != 1 || len(addrs(&resp)) != 0 {
		t.Errorf("other swarm: %d leechers, peers %v; want 1 and none", resp.Leechers, addrs(&resp))
	}
}

func testCounts(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	steps := []struct {
		peer     int
		left     int64
		event    bittorrent.Event
		seeders  uint32
		leechers uint32
	}{
		{1, 1000, bittorrent.EventStarted, 0, 1},
		{1, 0, bittorrent.EventCompleted, 1, 0},
		{2, 0, bittorrent.EventStarted, 2, 0},
		{3, 5, bittorrent.EventNone, 2, 1},
		{1, 10, bittorrent.EventNone, 1, 2}, // a seeder can become a leecher again
		{2, 0, bittorrent.EventStopped, 0, 2},
		{3, 5, bittorrent.EventStopped, 0, 1},
		// UDP's left is signed: a negative one (all ones from clients
		// that do not know it) is unknown, a leecher; Torrust's seeder
		// is left <= 0.
		{4, -1, bittorrent.EventStarted, 0, 2},
		{4, 0, bittorrent.EventNone, 1, 1},
		{4, -5, bittorrent.EventNone, 0, 2},
		{4, math.MinInt64, bittorrent.EventNone, 0, 2},
		{4, math.MaxInt64, bittorrent.EventNone, 0, 2},
		{4, 0, bittorrent.EventNone, 1, 1},
	}
	for k, st := range steps {
		a := Announce(h1, PeerID(st.peer), Addr4(st.peer, 6881), int64(100+k))
		a.Left, a.Event = st.left, st.event
		_, resp := Do(t, s, a)
		if resp.Seeders != st.seeders || resp.Leechers != st.leechers {
			t.Errorf("step %d: answer %d seeders %d leechers, want %d/%d", k, resp.Seeders, resp.Leechers, st.seeders, st.leechers)
		}
		sc := scrape1(t, s, h1)
		tot := totals(t, s)
		if sc.Seeders != st.seeders || sc.Leechers != st.leechers ||
			tot.Seeders != uint64(st.seeders) || tot.Leechers != uint64(st.leechers) || tot.Torrents != 1 {
			t.Errorf("step %d: scrape %+v totals %+v, want %d/%d", k, sc, tot, st.seeders, st.leechers)
		}
	}
}

func testScrape(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	fill(t, s, Hash(1), 3, 100)
	fill(t, s, Hash(2), 1, 100)
	a := Announce(Hash(2), PeerID(7), Addr6(7, 1), 100)
	a.Left, a.Event = 0, bittorrent.EventCompleted
	Do(t, s, a)
	one := bittorrent.SwarmStats{Leechers: 3}
	two := bittorrent.SwarmStats{Seeders: 1, Completed: 1, Leechers: 1}
	tests := []struct {
		name   string
		hashes []bittorrent.InfoHash
		want   []bittorrent.SwarmStats
	}{
		{"none", nil, nil},
		{"one", []bittorrent.InfoHash{Hash(1)}, []bittorrent.SwarmStats{one}},
		{"unknown", []bittorrent.InfoHash{Hash(3)}, []bittorrent.SwarmStats{{}}},
		{"order, duplicates and unknowns", []bittorrent.InfoHash{Hash(2), Hash(3), Hash(1), Hash(2), Hash(1)},
			[]bittorrent.SwarmStats{two, {}, one, two, one}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []bittorrent.SwarmStats{{Seeders: 42}}
			out, err := s.Scrape(context.Background(), tc.hashes, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out, append([]bittorrent.SwarmStats{{Seeders: 42}}, tc.want...)) {
				t.Errorf("scrape %v appended %+v, want %+v", tc.hashes, out[1:], tc.want)
			}
		})
	}
	t.Run("74 hashes", func(t *testing.T) {
		hashes := make([]bittorrent.InfoHash, 74)
		for i := range hashes {
			hashes[i] = Hash(1 + i%3)
		}
		out, err := s.Scrape(context.Background(), hashes, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range out {
			want := []bittorrent.SwarmStats{one, two, {}}[i%3]
			if st != want {
				t.Errorf("entry %d: %+v, want %+v", i, st, want)
			}
		}
	})
}

func testSweepCutoff(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	// Peer i announces at time 100+i, in two torrents and both families.
	for i := 1; i <= 6; i++ {
		for _, h := range []bittorrent.InfoHash{Hash(1), Hash(2)} {
			a := Announce(h, PeerID(i), Addr4(i, 6881), int64(100+i))
			if i%2 == 0 {
				a.Left = 0
				a.Addr = Addr6(i, 6881)
			}
			Do(t, s, a)
		}
	}
	steps := []struct {
		cutoff   int64
		removed  int
		seeders  uint32
		leechers uint32
	}{
		{100, 0, 3, 3},
		{101, 2, 3, 2}, // peer 1 (last seen at 101, the cutoff itself) goes
		{103, 4, 2, 1},
		{103, 0, 2, 1},
		{106, 6, 0, 0},
	}
	for _, st := range steps {
		r := sweep(t, s, st.cutoff)
		if r.Peers != st.removed || r.Torrents != 0 {
			t.Errorf("sweep %d removed %+v, want %d peers and no torrent", st.cutoff, r, st.removed)
		}
		for _, h := range []bittorrent.InfoHash{Hash(1), Hash(2)} {
			if sc := scrape1(t, s, h); sc.Seeders != st.seeders || sc.Leechers != st.leechers {
				t.Errorf("after sweep %d: scrape %+v, want %d/%d", st.cutoff, sc, st.seeders, st.leechers)
			}
		}
		want := swarm.Totals{Torrents: 2, Seeders: 2 * uint64(st.seeders), Leechers: 2 * uint64(st.leechers)}
		if tot := totals(t, s); tot != want {
			t.Errorf("after sweep %d: totals %+v, want %+v", st.cutoff, tot, want)
		}
	}
	// A swept peer that announces again is a new peer.
	_, resp := Do(t, s, Announce(Hash(1), PeerID(1), Addr4(1, 6881), 200))
	if resp.Leechers != 1 {
		t.Errorf("a swept peer re-announcing: %d leechers, want 1", resp.Leechers)
	}
}

func testSweepPeerless(t *testing.T, newStore NewStore) {
	tests := []struct {
		name      string
		opts      swarm.Options
		completed uint32
		removed   bool
	}{
		{"kept by default", swarm.Options{}, 0, false},
		{"kept by default with completed", swarm.Options{}, 1, false},
		{"removed", swarm.Options{RemovePeerlessTorrents: true}, 0, true},
		{"removed although completed", swarm.Options{RemovePeerlessTorrents: true}, 2, true},
		{"kept with completed", swarm.Options{RemovePeerlessTorrents: true, KeepCompleted: true}, 2, false},
		{"removed without completed", swarm.Options{RemovePeerlessTorrents: true, KeepCompleted: true}, 0, true},
		{"keep completed alone removes nothing", swarm.Options{KeepCompleted: true}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, tc.opts)
			// Hash(1) goes peerless; Hash(2) keeps a fresh peer.
			for i := range int(tc.completed) + 1 {
				a := Announce(Hash(1), PeerID(i), Addr4(i, 6881), 100)
				if i > 0 {
					a.Event, a.Left = bittorrent.EventCompleted, 0
				}
				Do(t, s, a)
			}
			Do(t, s, Announce(Hash(2), PeerID(50), Addr4(50, 6881), 200))
			r := sweep(t, s, 150)
			wantR := swarm.SweepResult{Peers: int(tc.completed) + 1}
			if tc.removed {
				wantR.Torrents = 1
			}
			if r != wantR {
				t.Errorf("sweep result %+v, want %+v", r, wantR)
			}
			tor, ok, err := s.Torrent(context.Background(), Hash(1))
			if err != nil {
				t.Fatal(err)
			}
			if ok == tc.removed {
				t.Errorf("peerless torrent found %v, want %v", ok, !tc.removed)
			}
			want := swarm.Totals{Torrents: 1, Leechers: 1}
			if !tc.removed {
				want.Torrents, want.Completed = 2, uint64(tc.completed)
				if tor.Completed != tc.completed || len(tor.Peers) != 0 || tor.Seeders+tor.Leechers != 0 {
					t.Errorf("kept torrent %+v, want no peers and completed %d", tor, tc.completed)
				}
			}
			if tot := totals(t, s); tot != want {
				t.Errorf("totals %+v, want %+v", tot, want)
			}
			if _, ok, _ := s.Torrent(context.Background(), Hash(2)); !ok {
				t.Error("the torrent with a fresh peer was removed")
			}
		})
	}
}

func testSetCompleted(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	fill(t, s, Hash(1), 2, 100)
	err := s.SetCompleted(context.Background(), []swarm.CompletedCount{
		{InfoHash: Hash(1), Completed: 10}, {InfoHash: Hash(2), Completed: 5}, {InfoHash: Hash(3), Completed: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Scrape(context.Background(), []bittorrent.InfoHash{Hash(1), Hash(2), Hash(3)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []bittorrent.SwarmStats{{Leechers: 2, Completed: 10}, {Completed: 5}, {}}
	if !slices.Equal(out, want) {
		t.Errorf("scrape after SetCompleted %+v, want %+v", out, want)
	}
	if tot := totals(t, s); tot != (swarm.Totals{Torrents: 2, Leechers: 2, Completed: 15}) {
		t.Errorf("totals %+v, want 2 torrents, 2 leechers, 15 completed", tot)
	}
	a := Announce(Hash(2), PeerID(1), Addr4(1, 6881), 101)
	a.Event = bittorrent.EventCompleted
	if res, _ := Do(t, s, a); !res.CountedCompletion || res.Completed != 6 {
		t.Errorf("completion after a loaded 5: %+v, want counted, 6", res)
	}
}

func testTorrent(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	if _, ok, err := s.Torrent(context.Background(), h1); ok || err != nil {
		t.Fatalf("Torrent of an empty store: found %v, err %v", ok, err)
	}
	want := []swarm.PeerInfo{
		{ID: PeerID(1), Addr: Addr4(1, 6881), Updated: 1700000000, Uploaded: 1, Downloaded: 2, Left: 3, Event: bittorrent.EventStarted},
		{ID: PeerID(2), Addr: Addr6(2, 51413), Updated: 1700000001, Uploaded: 1 << 40, Downloaded: 5, Left: 0, Event: bittorrent.EventCompleted},
		{ID: PeerID(3), Addr: Addr4(3, 1), Updated: 1700000002, Uploaded: 0, Downloaded: 0, Left: 9, Event: bittorrent.EventNone},
	}
	for _, p := range want {
		a := swarm.Announce{InfoHash: h1, PeerID: p.ID, Addr: p.Addr, Uploaded: p.Uploaded, Downloaded: p.Downloaded,
			Left: p.Left, Event: p.Event, Now: p.Updated}
		Do(t, s, a)
	}
	tor, ok, err := s.Torrent(context.Background(), h1)
	if err != nil || !ok {
		t.Fatalf("Torrent: found %v, err %v", ok, err)
	}
	wantSum := swarm.TorrentSummary{InfoHash: h1, SwarmStats: bittorrent.SwarmStats{Seeders: 1, Completed: 1, Leechers: 2}}
	if tor.TorrentSummary != wantSum {
		t.Errorf("summary %+v, want %+v", tor.TorrentSummary, wantSum)
	}
	byAddr := func(a, b swarm.PeerInfo) int { return a.Addr.Compare(b.Addr) }
	slices.SortFunc(tor.Peers, byAddr)
	slices.SortFunc(want, byAddr)
	if !slices.EqualFunc(tor.Peers, want, func(p, w swarm.PeerInfo) bool { return samePeer(s, p, w) }) {
		t.Errorf("peers\n%+v\nwant\n%+v", tor.Peers, want)
	}
}

func testTorrentsPaging(t *testing.T, newStore NewStore) {
	s := newStore(t, swarm.Options{})
	if got, err := s.Torrents(context.Background(), 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Torrents of an empty store: %v, %v", got, err)
	}
	const n = 300
	var want []swarm.TorrentSummary
	for i := range n {
		h := Hash(i)
		fill(t, s, h, 1+i%3, 100)
		want = append(want, swarm.TorrentSummary{InfoHash: h, SwarmStats: bittorrent.SwarmStats{Leechers: uint32(1 + i%3)}})
	}
	slices.SortFunc(want, func(a, b swarm.TorrentSummary) int {
		return slices.Compare(a.InfoHash[:], b.InfoHash[:])
	})
	tests := []struct{ offset, limit int }{
		{0, 1000}, {0, n}, {0, 1}, {1, 1}, {299, 10}, {300, 10}, {1000, 10}, {17, 100}, {0, 0},
	}
	for _, tc := range tests {
		got, err := s.Torrents(context.Background(), tc.offset, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		w := want[min(tc.offset, n):min(tc.offset+tc.limit, n)]
		if !slices.Equal(got, w) {
			t.Errorf("Torrents(%d, %d): %d items, want %d (or wrong order)", tc.offset, tc.limit, len(got), len(w))
		}
	}
	var paged []swarm.TorrentSummary
	for off := 0; ; off += 7 {
		page, err := s.Torrents(context.Background(), off, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paging by 7 gave %d torrents, want all %d in hash order", len(paged), n)
	}
}
