package tracker

import (
	"context"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// CountRelayed tells the swarm store of a change in the peers a transport
// keeps itself (WebSocket peers, see swarm.RelayCounter) and returns the
// swarm's counts after it, every transport's peers together. A completion
// (counted once per peer by the caller) is persisted like any other. With
// a store that cannot count relayed peers they go uncounted and the
// answer's counts are zero.
func (t *Tracker) CountRelayed(ctx context.Context, h bittorrent.InfoHash, seeders, leechers int32, completed bool) (bittorrent.SwarmStats, error) {
	rc, ok := t.store.(swarm.RelayCounter)
	if !ok {
		return bittorrent.SwarmStats{}, nil
	}
	st, res, err := rc.CountRelayed(ctx, h, seeders, leechers, completed)
	if err != nil {
		return st, err
	}
	if res.CountedCompletion && t.sink != nil {
		t.sink.Completed(h, res.Completed)
	}
	return st, nil
}
