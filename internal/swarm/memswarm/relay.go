package memswarm

import (
	"context"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

var _ swarm.RelayCounter = (*Store)(nil)

// relayed counts a swarm's peers that another transport holds (WebSocket
// peers, see swarm.RelayCounter). They live beside the stored peers' counts
// rather than in them: pick reads t.seeders and t.leechers to decide whom
// a UDP or HTTP peer may be handed, and relayed peers can be handed to
// none of them. Reading them costs an announce two adds on a cache line it
// already holds.
type relayed struct {
	seeders, leechers uint32
}

func (r relayed) none() bool { return r.seeders == 0 && r.leechers == 0 }

// stats are a torrent's counts as scrape and the API report them: stored
// and relayed peers together.
func stats(t *torrent) bittorrent.SwarmStats {
	return bittorrent.SwarmStats{
		Seeders:   t.seeders + t.relayed.seeders,
		Completed: t.completed,
		Leechers:  t.leechers + t.relayed.leechers,
	}
}

// CountRelayed changes the relayed counts of a swarm (swarm.RelayCounter).
func (s *Store) CountRelayed(_ context.Context, h bittorrent.InfoHash, seeders, leechers int32, completed bool) (bittorrent.SwarmStats, swarm.Result, error) {
	sh := s.shard(&h)
	var res swarm.Result
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t, ok := sh.get(&h)
	if !ok {
		if seeders <= 0 && leechers <= 0 && !completed {
			return bittorrent.SwarmStats{}, res, nil
		}
		t = sh.add(&h)
	}
	// A count never goes below zero: a caller's late decrement for a
	// swarm that was swept and created again must not wrap it around.
	ds := max(seeders, -int32(t.relayed.seeders))
	dl := max(leechers, -int32(t.relayed.leechers))
	t.relayed.seeders = uint32(int32(t.relayed.seeders) + ds)
	t.relayed.leechers = uint32(int32(t.relayed.leechers) + dl)
	sh.seeders = uint64(int64(sh.seeders) + int64(ds))
	sh.leechers = uint64(int64(sh.leechers) + int64(dl))
	if completed {
		t.completed++
		sh.completed++
		res.CountedCompletion = true
	}
	res.Completed = t.completed
	return stats(t), res, nil
}
