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
// none of them. Few swarms have any, so they are kept in a map of the
// shard, not in every torrent (8 bytes of each of millions of torrents);
// torrent.relay says a swarm has an entry, so that announces to the
// others never look in the map.
type relayed struct {
	seeders, leechers uint32
}

func (r relayed) none() bool { return r.seeders == 0 && r.leechers == 0 }

// relayedOf is t's relayed peers.
func (sh *shard) relayedOf(t *torrent) relayed {
	if !t.relay {
		return relayed{}
	}
	return sh.relays[t.hash]
}

// setRelayed records t's relayed peers.
func (sh *shard) setRelayed(t *torrent, r relayed) {
	if r.none() {
		if t.relay {
			delete(sh.relays, t.hash)
			t.relay = false
		}
		return
	}
	if sh.relays == nil {
		sh.relays = map[bittorrent.InfoHash]relayed{}
	}
	sh.relays[t.hash] = r
	t.relay = true
}

// stats are a torrent's counts as scrape and the API report them: stored
// and relayed peers together.
func (sh *shard) stats(t *torrent) bittorrent.SwarmStats {
	r := sh.relayedOf(t)
	return bittorrent.SwarmStats{
		Seeders:   t.seeders + r.seeders,
		Completed: t.completed,
		Leechers:  t.leechers + r.leechers,
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
	r := sh.relayedOf(t)
	ds := max(seeders, -int32(r.seeders))
	dl := max(leechers, -int32(r.leechers))
	r.seeders = uint32(int32(r.seeders) + ds)
	r.leechers = uint32(int32(r.leechers) + dl)
	sh.setRelayed(t, r)
	sh.seeders = uint64(int64(sh.seeders) + int64(ds))
	sh.leechers = uint64(int64(sh.leechers) + int64(dl))
	if completed {
		t.completed++
		sh.completed++
		res.CountedCompletion = true
	}
	res.Completed = t.completed
	return sh.stats(t), res, nil
}
