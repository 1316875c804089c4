package memswarm

import (
	"slices"
	"sync/atomic"

	"github.com/starling-tracker/starling/internal/swarm"
)

// Prefetch (swarm.Prefetcher) loads what a batch of announces will read,
// one step for the whole batch before the next: the torrent index slots,
// then the torrent records, then the start of each swarm's segment (the
// hot copies of a chunk segment's first peers, or, in a big swarm, the
// announcing peer's index slot), then the announcing peer's record. The
// loads of different announces do not depend on each other, so their
// cache misses overlap, where Announce, one at a time under the shard
// lock, waits for each miss before it knows the next address.
//
// It reads without the lock, through views published whenever the arrays
// they describe are reallocated (prefetchView, slabView). The arrays'
// contents change under it: those reads race with announces on other
// cores by design, which is harmless for word-sized values that only
// choose what to load next, since every position is checked against the
// view's bounds. Holding a view keeps its arrays alive while it is read.
// Race builds skip the loads (prefetch_race.go).
func (s *Store) Prefetch(hints []swarm.Hint) {
	var sink uint64
	for len(hints) > 0 {
		n := min(len(hints), prefetchBatch)
		sink += s.prefetch(hints[:n])
		hints = hints[n:]
	}
	prefetchSink.Add(sink)
}

// prefetchBatch is the largest number of announces one pass warms.
const prefetchBatch = 64

// prefetchSink keeps the compiler from dropping loads whose values are
// not otherwise used; it is written once per batch.
var prefetchSink atomic.Uint64

// prefetchView is a shard's torrent index and torrent records as of their
// last reallocation. Never modified once published.
type prefetchView struct {
	slots    []uint64
	torrents []torrent
	seed     uint64
}

// publishView is called under the shard lock after the index or the
// torrents were reallocated.
func (sh *shard) publishView() {
	sh.view.Store(&prefetchView{
		slots:    sh.index.slots,
		torrents: sh.torrents[:cap(sh.torrents)],
		seed:     sh.index.seed,
	})
}

// slabView is a slab's chunks, their hot copies and big segments as of
// their last change: copies of the slices, never modified once published.
type slabView[A addr] struct {
	chunks [][]peer[A]
	hot    [][]hotPeer[A]
	big    []bigSeg[A]
	seed   uint64
}

// publish is called under the shard lock whenever a chunk or a big
// segment's arrays are allocated or dropped.
func (s *slab[A]) publish() {
	if s.pview == nil {
		return // a bare slab of a test
	}
	s.pview.Store(&slabView[A]{chunks: slices.Clone(s.chunks), hot: slices.Clone(s.hot), big: slices.Clone(s.big), seed: s.seed})
}
