package redisswarm

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// testURL is the Redis of STARLING_TEST_REDIS_URL: the test is skipped
// without it, and fails when it is set and Redis does not answer.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("STARLING_TEST_REDIS_URL")
	if u == "" {
		tb.Skip("STARLING_TEST_REDIS_URL is not set")
	}
	c := rawClient(tb, u)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		tb.Fatalf("STARLING_TEST_REDIS_URL=%s does not answer: %v", u, err)
	}
	return u
}

// rawClient is a plain client for checks and faults, closed with the test.
func rawClient(tb testing.TB, u string) rueidis.Client {
	tb.Helper()
	opt, err := ClientOption(u)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		tb.Fatalf("STARLING_TEST_REDIS_URL=%s: %v", u, err)
	}
	tb.Cleanup(c.Close)
	return c
}

var prefixes atomic.Int64

// testPrefix is a key prefix no other test uses, its keys deleted after.
func testPrefix(tb testing.TB, u string) string {
	p := fmt.Sprintf("starlingtest:%d:%d:%d:", os.Getpid(), time.Now().UnixNano()%1e9, prefixes.Add(1))
	tb.Cleanup(func() { deleteKeys(tb, u, p) })
	return p
}

func deleteKeys(tb testing.TB, u, prefix string) {
	c := rawClient(tb, u)
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Logf("clean up %s: %v", prefix, err)
			return
		}
		for _, k := range e.Elements {
			c.Do(ctx, c.B().Del().Key(k).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// newTestStore is a store on a fresh prefix, closed with the test.
func newTestStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.URL == "" {
		cfg.URL = testURL(tb)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = testPrefix(tb, cfg.URL)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// conformanceStore drives the clock from the announces, as the suite
// does, with 16 buckets so that its thousands of Totals stay quick.
func conformanceStore(tb testing.TB, opts swarm.Options) swarm.Store {
	return newTestStore(tb, Config{Options: opts, AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second})
}

func TestConformance(t *testing.T) { swarmtest.Run(t, conformanceStore) }

// TestConformanceNoPeerDetail runs the suite on the store without peer
// detail (the daemon's default): the suite checks what it keeps.
func TestConformanceNoPeerDetail(t *testing.T) {
	swarmtest.Run(t, func(tb testing.TB, opts swarm.Options) swarm.Store {
		return newTestStore(tb, Config{Options: opts, AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second, NoPeerDetail: true})
	})
}

// TestConformanceDefaultBuckets runs the suite on the 4,096 buckets of
// production, but for the model and concurrency tests, whose thousands
// of Totals would each read every bucket.
func TestConformanceDefaultBuckets(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	swarmtest.Run(t, func(tb testing.TB, opts swarm.Options) swarm.Store {
		if strings.Contains(tb.Name(), "/Model") || strings.Contains(tb.Name(), "/Concurrent") {
			return conformanceStore(tb, opts)
		}
		return newTestStore(tb, Config{Options: opts, AnnounceClock: true, Timeout: 2 * time.Second})
	})
}

func BenchmarkStore(b *testing.B) {
	swarmtest.Bench(b, func(tb testing.TB, opts swarm.Options) swarm.Store {
		return newTestStore(tb, Config{Options: opts, AnnounceClock: true, Timeout: 5 * time.Second})
	})
}

// TestNoPeerDetail: without detail, answers, counts and completions are
// as with it; peers carry no id and the API shows them without detail.
func TestNoPeerDetail(t *testing.T) {
	s := newTestStore(t, Config{NoPeerDetail: true, AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second})
	h := swarmtest.Hash(1)
	for i := 1; i <= 5; i++ {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		if i <= 2 {
			a.Left, a.Event = 0, bittorrent.EventCompleted
		}
		swarmtest.Do(t, s, a)
	}
	a := swarmtest.Announce(h, swarmtest.PeerID(9), swarmtest.Addr6(9, 6881), 101)
	a.Compact = true
	res, resp := swarmtest.Do(t, s, a)
	if v4, _ := swarmtest.Peers(&resp); len(v4) != 5 || resp.Seeders != 2 || resp.Leechers != 4 || res.Completed != 2 {
		t.Fatalf("compact answer %d peers, %d/%d, %+v", len(v4), resp.Seeders, resp.Leechers, res)
	}
	a.Compact = false
	_, resp = swarmtest.Do(t, s, a)
	for _, p := range resp.Peers4 {
		if p.ID != (bittorrent.PeerID{}) {
			t.Fatalf("peer %v handed out with id %x without detail", p.Addr, p.ID)
		}
	}
	tor, ok, err := s.Torrent(context.Background(), h)
	if err != nil || !ok || len(tor.Peers) != 6 || tor.Seeders != 2 || tor.Completed != 2 {
		t.Fatalf("torrent %+v %v %v", tor, ok, err)
	}
	for _, p := range tor.Peers {
		if (p.Left == 0) != (p.Addr.Addr().Is4() && p.Addr.Addr().As4()[3] <= 2) || p.Updated < 100 {
			t.Errorf("peer %+v", p)
		}
	}
}

// TestSampleUniform: each other peer is handed out as often as the rest,
// whether the requester is in the list drawn from (a leecher asking, its
// own entry dropped from the draw) or not (a seeder), and across the two
// families.
func TestSampleUniform(t *testing.T) {
	s := conformanceStore(t, swarm.Options{})
	h := swarmtest.Hash(1)
	addr := func(i int) netip.AddrPort {
		if i%3 == 0 {
			return swarmtest.Addr6(i, 6881)
		}
		return swarmtest.Addr4(i, 6881)
	}
	const n, rounds, want = 30, 3000, 5
	for i := 1; i <= n; i++ {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), addr(i), 100)
		a.NumWant = 0
		swarmtest.Do(t, s, a)
	}
	for _, seeder := range []bool{false, true} {
		seen := map[netip.AddrPort]int{}
		for range rounds {
			a := swarmtest.Announce(h, swarmtest.PeerID(1), addr(1), 101)
			if seeder {
				// Peer 31 seeds: every leecher is in the lists it is handed.
				a = swarmtest.Announce(h, swarmtest.PeerID(31), addr(31), 101)
				a.Left = 0
			}
			a.NumWant, a.Compact = want, true
			_, resp := swarmtest.Do(t, s, a)
			v4, v6 := swarmtest.Peers(&resp)
			for _, p := range append(v4, v6...) {
				seen[p.Addr]++
			}
		}
		others := n - 1
		if seeder {
			others = n
		}
		expect := float64(rounds*want) / float64(others)
		for i := 1; i <= n; i++ {
			if !seeder && i == 1 {
				continue
			}
			if got := float64(seen[addr(i)]); got < 0.75*expect || got > 1.25*expect {
				t.Errorf("seeder %v: peer %d handed out %v times, expected about %.0f", seeder, i, got, expect)
			}
		}
	}
}

// TestConformanceConversions runs the suite with swarms packed up to two
// peers, so that swarms move between the packed string and the sorted
// sets all the time (past 2 peers on announce, back at 1 in the sweep).
func TestConformanceConversions(t *testing.T) {
	swarmtest.Run(t, func(tb testing.TB, opts swarm.Options) swarm.Store {
		return newTestStore(tb, Config{Options: opts, AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second, PackMax: 2})
	})
}

// TestConformanceSortedSets runs the suite with no packed swarms (every
// swarm in the sorted sets, as before the packed layout).
func TestConformanceSortedSets(t *testing.T) {
	swarmtest.Run(t, func(tb testing.TB, opts swarm.Options) swarm.Store {
		return newTestStore(tb, Config{Options: opts, AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second, PackMax: -1})
	})
}

// TestPackedMoves: a swarm starts packed, moves to the sorted sets past
// PackMax peers, and is packed again by the sweep at PackMax/2; its
// counts, completions and peers stay the same through both moves.
func TestPackedMoves(t *testing.T) {
	s := newTestStore(t, Config{AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second, PackMax: 4})
	c := rawClient(t, s.cfg.URL)
	ctx := context.Background()
	h := swarmtest.Hash(7)
	keys := s.fillKeys(&callBuf{arena: make([]byte, 0, 512)}, &h)
	layout := func() string {
		p, _ := c.Do(ctx, c.B().Exists().Key(keys[9]).Build()).AsInt64()
		z, _ := c.Do(ctx, c.B().Exists().Key(keys[0], keys[1], keys[2], keys[3]).Build()).AsInt64()
		switch {
		case p == 1 && z == 0:
			return "packed"
		case p == 0 && z > 0:
			return "sorted sets"
		}
		return fmt.Sprintf("packed %d, sorted sets %d", p, z)
	}
	announce := func(i int, now int64, seeder bool) swarm.Result {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), now)
		if i%2 == 0 {
			a.Addr = swarmtest.Addr6(i, 6881)
		}
		if seeder {
			a.Left, a.Event = 0, bittorrent.EventCompleted
		}
		res, _ := swarmtest.Do(t, s, a)
		return res
	}
	check := func(want string, seeders, leechers, completed uint32) {
		t.Helper()
		if got := layout(); got != want {
			t.Fatalf("layout %s, want %s", got, want)
		}
		st, err := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil)
		if err != nil || st[0] != (bittorrent.SwarmStats{Seeders: seeders, Leechers: leechers, Completed: completed}) {
			t.Fatalf("scrape %+v %v, want %d/%d/%d", st, err, seeders, leechers, completed)
		}
		tor, ok, err := s.Torrent(ctx, h)
		if err != nil || !ok || len(tor.Peers) != int(seeders+leechers) || tor.Completed != completed {
			t.Fatalf("torrent %+v %v %v", tor, ok, err)
		}
	}
	announce(1, 100, true)
	announce(2, 100, false)
	announce(3, 200, false)
	check("packed", 1, 2, 1)
	announce(4, 200, true)
	check("packed", 2, 2, 2)
	announce(5, 200, false)
	check("sorted sets", 2, 3, 2)
	// A re-announce and a completion in the sorted sets.
	if res := announce(2, 200, true); !res.CountedCompletion || res.Completed != 3 {
		t.Fatalf("completion in the sorted sets: %+v", res)
	}
	announce(4, 300, true)
	if _, err := s.Sweep(ctx, 250); err != nil {
		t.Fatal(err)
	}
	check("packed", 1, 0, 3)
	// Peer 1 completed before it was swept: it counts again when it
	// comes back, as in the sorted sets (expiry forgets it).
	if res := announce(1, 300, true); !res.CountedCompletion || res.Completed != 4 {
		t.Fatalf("completion after the move back: %+v", res)
	}
	if res := announce(1, 301, true); res.CountedCompletion {
		t.Fatalf("second completion counted: %+v", res)
	}
	check("packed", 2, 0, 4)
}

// TestPackedMergesOldLayout: peers that a node of a build before the
// packed layout added in sorted sets beside a packed swarm (a rolling
// upgrade) join it at the next sweep, counted once, and the bucket's
// counters still add up.
func TestPackedMergesOldLayout(t *testing.T) {
	s, c, keys := packedBeforeMerge(t, 0)
	ctx := context.Background()
	h := swarmtest.Hash(3)
	// What the old scripts do for a new leecher (peer 3) and for peer 2
	// (which they do not see in P): ZADD to L4, the bucket counter up.
	for _, i := range []int{2, 3} {
		addOld(t, c, keys, 1, swarmtest.Addr4(i, 6881), 200-epoch)
	}
	// Its record: two completions it counted (from 0: it read "P" as 0).
	c.Do(ctx, c.B().Hset().Key(keys[6]).FieldValue().FieldValue(string(h[:]), "\x02"+strings.Repeat("\x00", 27)).Build())
	c.Do(ctx, c.B().Hincrby().Key(keys[7]).Field("c").Increment(2).Build())
	swarmtest.Do(t, s, func() swarm.Announce {
		a := swarmtest.Announce(h, swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 250)
		a.Left, a.Event = 0, bittorrent.EventCompleted
		return a
	}())
	if _, err := s.Sweep(ctx, 150); err != nil {
		t.Fatal(err)
	}
	st, err := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil)
	if err != nil || st[0] != (bittorrent.SwarmStats{Seeders: 1, Leechers: 2, Completed: 3}) {
		t.Fatalf("scrape %+v %v, want 1 seeder, 2 leechers, 3 completed", st, err)
	}
	if tot, err := s.Totals(ctx); err != nil || tot.Seeders != 1 || tot.Leechers != 2 || tot.Torrents != 1 || tot.Completed != 3 {
		t.Fatalf("totals %+v %v", tot, err)
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key(keys[0], keys[1], keys[2], keys[3]).Build()).AsInt64(); n != 0 {
		t.Fatalf("%d sorted sets left", n)
	}
	if list, err := s.Torrents(ctx, 0, 10); err != nil || len(list) != 1 || list[0].Leechers != 2 || list[0].Completed != 3 {
		t.Fatalf("torrents %+v %v", list, err)
	}
	// Expired, they all go, and the counters return to zero.
	if _, err := s.Sweep(ctx, 300); err != nil {
		t.Fatal(err)
	}
	if tot, err := s.Totals(ctx); err != nil || tot.Leechers != 0 || tot.Seeders != 0 {
		t.Fatalf("totals after expiry %+v %v", tot, err)
	}
}

// TestPackedMergeFull: an older build's peer that does not fit in a full
// packed swarm is dropped at the merge, and its counted completion is
// remembered: it does not count again when the peer comes back.
func TestPackedMergeFull(t *testing.T) {
	s, c, keys := packedBeforeMerge(t, 2)
	ctx := context.Background()
	h := swarmtest.Hash(3)
	a := swarmtest.Addr4(3, 6881)
	addOld(t, c, keys, 0, a, 200-epoch+counted)
	if _, err := s.Sweep(ctx, 150); err != nil {
		t.Fatal(err)
	}
	if tot, err := s.Totals(ctx); err != nil || tot.Seeders != 0 || tot.Leechers != 1 {
		t.Fatalf("totals %+v %v, want the one leecher left", tot, err)
	}
	back := swarmtest.Announce(h, swarmtest.PeerID(3), a, 300)
	back.Left, back.Event = 0, bittorrent.EventCompleted
	if res, _ := swarmtest.Do(t, s, back); res.CountedCompletion {
		t.Fatalf("the dropped peer's completion counted again: %+v", res)
	}
}

// packedBeforeMerge is a store (PackMax packMax) whose swarm of
// swarmtest.Hash(3) is packed with peers 1 and 2 of swarmtest.Addr4 at
// 100 and peer 1 again at 250, so that a sweep at 150 visits it; keys
// are the swarm's.
func packedBeforeMerge(t *testing.T, packMax int) (*Store, rueidis.Client, []string) {
	s := newTestStore(t, Config{AnnounceClock: true, BucketBits: 4, Timeout: 2 * time.Second, PackMax: packMax})
	h := swarmtest.Hash(3)
	keys := s.fillKeys(&callBuf{arena: make([]byte, 0, 512)}, &h)
	for i := 1; i <= 2; i++ {
		swarmtest.Do(t, s, swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100))
	}
	swarmtest.Do(t, s, swarmtest.Announce(h, swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 250))
	return s, rawClient(t, s.cfg.URL), keys
}

// addOld adds a to sorted set k of the swarm at score, and counts it in
// the bucket's counter, as the scripts before the packed layout did.
func addOld(t *testing.T, c rueidis.Client, keys []string, k int, a netip.AddrPort, score float64) {
	ctx := context.Background()
	m := string(append(a.Addr().AsSlice(), byte(a.Port()>>8), byte(a.Port())))
	field := "l"
	if k%2 == 0 {
		field = "s"
	}
	for _, err := range []error{
		c.Do(ctx, c.B().Zadd().Key(keys[k]).ScoreMember().ScoreMember(score, m).Build()).Error(),
		c.Do(ctx, c.B().Hincrby().Key(keys[7]).Field(field).Increment(1).Build()).Error(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}
