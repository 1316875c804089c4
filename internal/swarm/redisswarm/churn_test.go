package redisswarm

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestChurnProfile measures Redis's time per announce on the uniform
// profile (10,000 torrents of 20 IPv4 peers, half seeders) under churn,
// not only re-announces: of each ten announces one is a stop, one a peer
// coming back (a new peer to its swarm), one a leecher's completion (a
// role switch and a count), seven re-announces; numwant 50, compact, from
// 64 goroutines, on a private redis-server. It reports INFO cpu per
// announce and commandstats; run with STARLING_REDIS_PROFILE=1.
func TestChurnProfile(t *testing.T) {
	if os.Getenv("STARLING_REDIS_PROFILE") == "" {
		t.Skip("STARLING_REDIS_PROFILE is not set")
	}
	r := startRedis(t, 0)
	pin(t, r)
	c := rawClient(t, r.url())
	torrents := profileTorrents()
	const peers, workers, rounds = 20, 64, 100000
	s := newTestStore(t, Config{URL: r.url(), Prefix: "starling:", NoPeerDetail: true, Timeout: 5 * time.Second})
	announceTimed(s, 0)
	loadUniform(t, s, torrents, peers, workers)
	c.Do(context.Background(), c.B().ConfigResetstat().Build())
	cpu := cpuSeconds(t, c)
	parallel(t, workers, rounds, func(i int) error {
		// Announce i and i+1 of a group of ten are the same peer's stop
		// and return (in order or not: the goroutines race).
		k := ((i / 10) * 7919) % (torrents * peers)
		if i%10 >= 2 {
			k = (k + i%10) % (torrents * peers)
		}
		tor, p := k%torrents, k/torrents
		a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*peers+p, 6881), 0)
		a.NumWant, a.Left, a.Compact = 50, int64(p%2), true
		switch i % 10 {
		case 0:
			a.Event = bittorrent.EventStopped
		case 1:
			a.Event = bittorrent.EventStarted
		case 2:
			a.Left, a.Event = 0, bittorrent.EventCompleted
		}
		var resp bittorrent.AnnounceResponse
		_, err := s.Announce(context.Background(), &a, &resp)
		return err
	})
	cpu = (cpuSeconds(t, c) - cpu) / rounds * 1e6
	t.Logf("churn: %s; INFO cpu %.1f us per announce", evalStats(t, c), cpu)
}
