package redisswarm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestMemoryPerPeer loads 20,000 IPv4 peers in 1,000 swarms of 20 into a
// private Redis and reports its memory per peer (INFO memory before and
// after). Each peer costs its record in the packed swarm (6-byte address,
// 5-byte time and flag) and, with detail, its detail for the API
// (peer_id, uploaded, downloaded, left, event: 45 bytes); each torrent
// its keys. Without detail the bound is issue 17's 40 bytes (32-34 measured
// here, where 1,000 torrents in 4,096 buckets pay for more bucket keys
// per torrent than the 10,000).
func TestMemoryPerPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	r := startRedis(t, 0)
	c := rawClient(t, r.url())
	for _, tc := range []struct {
		noDetail bool
		max      float64
	}{{false, 130}, {true, 40}} {
		c.Do(context.Background(), c.B().Flushall().Build())
		s := newTestStore(t, Config{URL: r.url(), Prefix: "m:", NoPeerDetail: tc.noDetail, Timeout: 5 * time.Second})
		// Warm the scripts and one bucket's keys first.
		announceTimed(s, 0)
		before := usedMemory(t, c)
		const torrents, peers = 1000, 20
		for p := range peers {
			for tor := range torrents {
				a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*peers+p, 6881), 0)
				a.NumWant, a.Left = 0, int64(p%2)
				var resp bittorrent.AnnounceResponse
				if _, err := s.Announce(context.Background(), &a, &resp); err != nil {
					t.Fatal(err)
				}
			}
		}
		per := float64(usedMemory(t, c)-before) / (torrents * peers)
		t.Logf("NoPeerDetail %v: Redis memory %.0f bytes per IPv4 peer in swarms of %d (%.0f per torrent)", tc.noDetail, per, peers, per*peers)
		if per > tc.max {
			t.Errorf("NoPeerDetail %v: %.0f bytes per peer, want at most %.0f", tc.noDetail, per, tc.max)
		}
		s.Close()
	}
}

// TestRedisCPUPerAnnounce reports Redis's time per announce script
// (INFO commandstats) for re-announces into 1,000 swarms of 20 peers at
// numwant 50 (every other peer: the whole swarm), compact answers.
func TestRedisCPUPerAnnounce(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	r := startRedis(t, 0)
	c := rawClient(t, r.url())
	for _, noDetail := range []bool{false, true} {
		c.Do(context.Background(), c.B().Flushall().Build())
		s := newTestStore(t, Config{URL: r.url(), Prefix: "cpu:", NoPeerDetail: noDetail, Timeout: 5 * time.Second})
		const torrents, peers = 1000, 20
		announce := func(tor, p, numwant int) {
			a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*peers+p, 6881), 0)
			a.NumWant, a.Left, a.Compact = numwant, int64(p%2), true
			var resp bittorrent.AnnounceResponse
			if _, err := s.Announce(context.Background(), &a, &resp); err != nil {
				t.Fatal(err)
			}
		}
		for p := range peers {
			for tor := range torrents {
				announce(tor, p, 0)
			}
		}
		c.Do(context.Background(), c.B().ConfigResetstat().Build())
		for i := range 20000 {
			announce(i%torrents, (i/torrents)%peers, 50)
		}
		info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if strings.HasPrefix(l, "cmdstat_evalsha:") {
				t.Logf("NoPeerDetail %v: %s", noDetail, l)
			}
		}
		s.Close()
	}
}
