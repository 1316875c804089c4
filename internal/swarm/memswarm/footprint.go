package memswarm

import "unsafe"

// MemoryBytes is the memory the store's own structures hold: torrent
// slots, indexes, slab chunks and big segments, sized by their capacity,
// not by what is live in them. It takes each shard's lock in turn; it is
// for the metrics and for tests that memory is given back.
func (s *Store) MemoryBytes() uint64 {
	var n uint64
	for k := range s.shards {
		sh := &s.shards[k]
		sh.mu.Lock()
		n += uint64(cap(sh.torrents))*uint64(unsafe.Sizeof(torrent{})) +
			uint64(len(sh.index.slots))*8 + uint64(cap(sh.freeT))*4 +
			uint64(len(sh.gone.slots))*8 +
			sh.p4.memoryBytes() + sh.p6.memoryBytes()
		sh.mu.Unlock()
	}
	return n
}

func (s *slab[A]) memoryBytes() uint64 {
	var p peer[A]
	var h hotPeer[A]
	n := s.capSlots * uint64(unsafe.Sizeof(p)+unsafe.Sizeof(h))
	for i := range s.big {
		b := &s.big[i]
		for _, blk := range b.blocks {
			n += uint64(cap(blk)) * uint64(unsafe.Sizeof(p))
		}
		for _, blk := range b.hot {
			n += uint64(cap(blk)) * uint64(unsafe.Sizeof(h))
		}
		for _, part := range b.idx.parts {
			n += uint64(len(part)) * 8
		}
		n += uint64(len(b.idx.dir)) * 4
	}
	for _, f := range s.free {
		n += uint64(cap(f)) * 4
	}
	return n
}

// ReleasedBytes is how many bytes of its structures the store has dropped
// since it was made (slab chunks, torrent slots, indexes), for the daemon
// to hand them back to the OS after a sweep that dropped many: they are
// garbage until the next collection, and a repack after a flood or a
// load that fragmented the slabs drops most of a slab at once.
func (s *Store) ReleasedBytes() uint64 {
	var n uint64
	for k := range s.shards {
		sh := &s.shards[k]
		sh.mu.Lock()
		n += sh.released + sh.p4.released + sh.p6.released
		sh.mu.Unlock()
	}
	return n
}
