package memswarm

import (
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// addr is the raw address of a peer record: IPv4 and IPv6 peers live in
// separate slabs so an IPv4 peer does not pay for 16 address bytes.
type addr interface{ [4]byte | [16]byte }

// peer is one stored peer. It holds no pointer, so the slabs that hold
// millions of them are never scanned by the garbage collector. An IPv4
// record is 56 bytes, an IPv6 record 72. What handing out a peer reads
// (address, port, left, id) comes first: 40 bytes of an IPv4 record, so
// most records are read from one cache line.
type peer[A addr] struct {
	ip    A
	port  uint16
	event bittorrent.Event
	// counted is set once this peer's completion was counted in the swarm.
	counted bool
	left    int64
	// updated is the last announce in unix seconds; uint32 lasts until 2106
	// and keeps the record at 56 bytes.
	updated    uint32
	id         bittorrent.PeerID
	uploaded   int64
	downloaded int64
}

func (p *peer[A]) seeder() bool { return bittorrent.Complete(p.left) }

// less orders peers by (ip, port), the identity of a peer in a swarm; the
// peers of a swarm that fits a chunk are kept sorted so a lookup is a
// binary search without a per-peer index.
func (p *peer[A]) less(ip *A, port uint16) bool {
	for i := 0; i < len(*ip); i++ {
		if p.ip[i] != (*ip)[i] {
			return p.ip[i] < (*ip)[i]
		}
	}
	return p.port < port
}

// less is peer.less of the hot copy.
func (h *hotPeer[A]) less(ip *A, port uint16) bool {
	for i := 0; i < len(*ip); i++ {
		if h.ip[i] != (*ip)[i] {
			return h.ip[i] < (*ip)[i]
		}
	}
	return h.port < port
}

// key4 is an IPv4 address and a port as one integer that sorts as less
// does (only for 4-byte addresses).
func key4[A addr](ip *A, port uint16) uint64 {
	return uint64((*ip)[0])<<40 | uint64((*ip)[1])<<32 | uint64((*ip)[2])<<24 | uint64((*ip)[3])<<16 | uint64(port)
}

// linearMax is the largest segment findHot scans instead of bisecting. On
// 10,000 torrents of 20 peers (records not in the cache) a re-announce
// without peers handed out took 370–430 ns with the binary search and
// 200–240 ns with the scan; at 150 peers the scan loses (270 vs 380 ns).
// Those were scans of the records; the scan of the hot copies reads a
// seventh of the lines, and the crossover was not measured again.
const linearMax = 64

// findHot returns the position of (ip, port) in hs, the hot copies of a
// chunk segment (in the records' order, sorted by address), or where it
// would be inserted to keep them sorted. Reading the hot copies instead
// of the records looks at 8 bytes per IPv4 peer instead of 56: 20 peers
// are 3 cache lines instead of 18.
func findHot[A addr](hs []hotPeer[A], ip *A, port uint16) (int, bool) {
	if len(hs) <= linearMax {
		// A scan: its loads do not wait for each other's comparisons,
		// so the segment streams in from memory, where each step of a
		// binary search waits for the previous one's cache miss.
		if len(*ip) == 4 {
			// IPv4 compares (address, port) as one integer, not byte
			// by byte: a branch per entry instead of up to five.
			k := key4(ip, port)
			for i := range hs {
				if e := key4(&hs[i].ip, hs[i].port); e >= k {
					return i, e == k
				}
			}
			return len(hs), false
		}
		for i := range hs {
			if !hs[i].less(ip, port) {
				return i, hs[i].ip == *ip && hs[i].port == port
			}
		}
		return len(hs), false
	}
	lo, hi := 0, len(hs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if hs[m].less(ip, port) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(hs) && hs[lo].ip == *ip && hs[lo].port == port
}

// Slab geometry. Peers of small swarms live in fixed-size chunks of
// chunkLen records, carved into segments of a size class; a swarm larger
// than the largest class, maxSeg, gets a bigSeg of its own. A chunk is one
// large pointer-free allocation, so a million torrents cost the GC a few
// thousand chunk pointers instead of a million slices.
//
// maxSeg bounds the memmove of a sorted insert to 7 KB (a new peer in a
// segment of 4,096 shifted 115 KB on average, 4 % of the server's CPU in
// a skewed UDP run); swarms above it are few, and their bigSeg costs 12–24
// bytes of index per peer (see bigIndex).
const (
	chunkShift = 10
	chunkLen   = 1 << chunkShift
	maxSeg     = 256
	// noClass marks a segment that holds nothing.
	noClass = 0
)

// classSize[c] is the capacity of size class c (class 0 is "none"). The
// classes grow by about 1/4 per step above 8 records, so an average swarm
// wastes about a tenth of its segment; the last class is bigClass, a
// dedicated slice.
var classSize, classOf = buildClasses()

var bigClass = uint8(len(classSize))

func buildClasses() ([]uint32, []uint8) {
	sizes := []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8}
	for p := uint32(8); p < maxSeg; p *= 2 {
		sizes = append(sizes, p+p/4, p+p/2, p+3*p/4, 2*p)
	}
	of := make([]uint8, maxSeg+1)
	c := 1
	for n := 1; n <= maxSeg; n++ {
		for sizes[c] < uint32(n) {
			c++
		}
		of[n] = uint8(c)
	}
	return sizes, of
}

// seg is where one torrent's peers of one family are: off is a slot index
// in the slab (or an index into big for bigClass), n the number of peers.
type seg struct {
	off uint32
	n   uint32
	cls uint8
}

// slab holds the peers of one family of one shard.
//
// Segments are bump-allocated from the current chunk and recycled through
// one free list per class. Growing swarms leave freed small segments
// behind that larger ones cannot use; when those free slots pass an
// eighth of the slab and a new chunk is needed, the sparsest chunk is
// evacuated into the new one and becomes the next bump chunk, so the
// slab stays within about 1/8 of its live size at a cost of one
// chunk-sized copy under the shard lock (tens of microseconds).
type slab[A addr] struct {
	chunks [][]peer[A]
	// hot[c] mirrors chunks[c] slot for slot with what an answer without
	// peer ids and a lookup read (see hotPeer): allocated and dropped
	// with the chunk, written wherever a chunk record's address, port or
	// left is, so a chunk segment's lookup, its answer without ids and
	// Prefetch read 8 bytes per IPv4 peer instead of 56.
	hot [][]hotPeer[A]
	// live[c] is the number of slots of chunk c held by live segments.
	live []uint32
	// next and end bound the bump region, inside one chunk.
	next, end uint32
	free      [][]uint32
	// spare are chunks that hold no live segment and no free-list entry
	// (nil when their memory was given back).
	spare []uint32
	big   []bigSeg[A]
	// bigFree are indexes of big that can be reused.
	bigFree []uint32
	// seed keys the hash of the big segments' indexes, so that nobody
	// outside can choose addresses that collide.
	seed uint64
	// slots is the capacity held by live chunk segments; capSlots the
	// capacity of the allocated chunks.
	slots, capSlots uint64
	// owner gives evacuation the segments to move: the shard's torrents,
	// their p6 segment when v6.
	owner *[]torrent
	v6    bool
	// victim marks the chunks being evacuated (kept to reuse its memory).
	victim []bool
	// evacuations counts evacuated chunks, for tests and the memory report.
	evacuations int
	// released counts the bytes of chunks dropped, for Store.ReleasedBytes.
	released uint64
	// pview is what Prefetch reads without the lock (see slabView); a
	// pointer, so that resetting the slab keeps it.
	pview *atomic.Pointer[slabView[A]]
}

// slotBytes is the memory of one chunk slot: a record and its hot copy.
func slotBytes[A addr]() uint64 {
	return uint64(unsafe.Sizeof(peer[A]{}) + unsafe.Sizeof(hotPeer[A]{}))
}

// view is the segment's peers, sliced out of the slab without allocating.
// A big segment must be of one block, as segments of at most blockLen/2
// peers are (see bigSeg); span and at read any segment.
func (s *slab[A]) view(sg seg) []peer[A] {
	switch sg.cls {
	case noClass:
		return nil
	case bigClass:
		return s.big[sg.off].blocks[0][:sg.n]
	}
	c, o := sg.off>>chunkShift, sg.off&(chunkLen-1)
	return s.chunks[c][o : o+sg.n : o+classSize[sg.cls]]
}

// hotView is the hot copies of the segment's peers, in the same
// positions as view's records; a big segment must be of one block.
func (s *slab[A]) hotView(sg seg) []hotPeer[A] {
	switch sg.cls {
	case noClass:
		return nil
	case bigClass:
		return s.big[sg.off].hot[0][:sg.n]
	}
	c, o := sg.off>>chunkShift, sg.off&(chunkLen-1)
	return s.hot[c][o : o+sg.n : o+classSize[sg.cls]]
}

// at is the record at position i of the segment.
func (s *slab[A]) at(sg seg, i int) *peer[A] {
	if sg.cls == bigClass {
		return s.big[sg.off].at(uint32(i))
	}
	return &s.chunks[sg.off>>chunkShift][int(sg.off&(chunkLen-1))+i]
}

// hotAt is the hot copy of the record at position i of the segment.
func (s *slab[A]) hotAt(sg seg, i int) *hotPeer[A] {
	if sg.cls == bigClass {
		return s.big[sg.off].hotAt(uint32(i))
	}
	return &s.hot[sg.off>>chunkShift][int(sg.off&(chunkLen-1))+i]
}

// span is the segment's records from position i on that are contiguous in
// memory: the rest of a chunk segment, or up to the end of a big
// segment's block.
func (s *slab[A]) span(sg seg, i int) []peer[A] {
	if sg.cls == bigClass {
		return s.big[sg.off].span(uint32(i), sg.n)
	}
	return s.view(sg)[i:]
}

// alloc returns the offset of a fresh segment of class c. It may
// evacuate a chunk, moving other segments of the slab (never one that is
// not yet owned by a torrent).
func (s *slab[A]) alloc(c uint8) uint32 {
	if s.free == nil {
		s.free = make([][]uint32, len(classSize))
	}
	size := classSize[c]
	var off uint32
	if f := s.free[c]; len(f) > 0 {
		off = f[len(f)-1]
		s.free[c] = f[:len(f)-1]
	} else {
		for s.next+size > s.end {
			s.refill()
		}
		off = s.next
		s.next += size
	}
	s.live[off>>chunkShift] += size
	s.slots += uint64(size)
	return off
}

// refill starts a new bump region of one whole chunk.
func (s *slab[A]) refill() {
	s.retireTail()
	if n := len(s.spare); n > 0 {
		c := s.spare[n-1]
		s.spare = s.spare[:n-1]
		if s.chunks[c] == nil {
			s.chunks[c] = make([]peer[A], chunkLen)
			s.hot[c] = make([]hotPeer[A], chunkLen)
			s.capSlots += chunkLen
			s.publish()
		}
		s.next, s.end = c<<chunkShift, (c+1)<<chunkShift
		return
	}
	c := s.addChunk()
	if s.freeListed()*8 > s.capSlots {
		s.compact(c)
	}
}

// retireTail hands what is left of the bump region, too short for the
// segment wanted, to the free lists of smaller classes instead of wasting
// it.
func (s *slab[A]) retireTail() {
	for rest := s.end - s.next; rest > 0; {
		fc := classOf[min(rest, maxSeg)]
		if classSize[fc] > rest {
			fc--
		}
		s.free[fc] = append(s.free[fc], s.next)
		s.next += classSize[fc]
		rest -= classSize[fc]
	}
}

// addChunk allocates a new chunk and makes it the bump region.
func (s *slab[A]) addChunk() uint32 {
	c := uint32(len(s.chunks))
	s.chunks = append(s.chunks, make([]peer[A], chunkLen))
	s.hot = append(s.hot, make([]hotPeer[A], chunkLen))
	s.publish()
	s.live = append(s.live, 0)
	s.capSlots += chunkLen
	s.next, s.end = c<<chunkShift, (c+1)<<chunkShift
	return c
}

// freeListed is the number of slots in the free lists: allocated chunk
// memory that only a segment of the same class can use.
func (s *slab[A]) freeListed() uint64 {
	spare := uint64(0)
	for _, c := range s.spare {
		if s.chunks[c] != nil {
			spare += chunkLen
		}
	}
	return s.capSlots - s.slots - uint64(s.end-s.next) - spare
}

// compact evacuates the sparsest chunks whose live segments fit together
// in the bump region (a fresh chunk, bump) and makes them spare chunks.
// A chunk more than three quarters full is left alone: moving it would
// copy three slots for every one it frees.
func (s *slab[A]) compact(bump uint32) {
	if cap(s.victim) < len(s.chunks) {
		s.victim = make([]bool, len(s.chunks), cap(s.chunks))
	}
	victim := s.victim[:len(s.chunks)]
	clear(victim)
	room, any := s.end-s.next, false
	for {
		best, bestLive := -1, min(uint32(chunkLen*3/4), room)
		for c, l := range s.live {
			if uint32(c) != bump && !victim[c] && s.chunks[c] != nil && l <= bestLive && !slices.Contains(s.spare, uint32(c)) {
				best, bestLive = c, l
			}
		}
		if best < 0 {
			break
		}
		victim[best], any = true, true
		room -= bestLive
	}
	if !any {
		return
	}
	s.purge(func(off uint32) bool { return victim[off>>chunkShift] })
	ts := *s.owner
	for i := range ts {
		sg := s.segOf(&ts[i])
		if sg.cls == noClass || sg.cls == bigClass || !victim[sg.off>>chunkShift] {
			continue
		}
		size := classSize[sg.cls]
		off := s.next
		s.next += size
		copy(s.chunks[off>>chunkShift][off&(chunkLen-1):], s.view(*sg))
		copy(s.hot[off>>chunkShift][off&(chunkLen-1):], s.hotView(*sg))
		s.live[off>>chunkShift] += size
		s.live[sg.off>>chunkShift] -= size
		sg.off = off
	}
	// The evacuated chunks' numbers are spare; their memory goes back to
	// the garbage collector at once: a slab that compacts as it grows
	// kept a whole spare chunk per shard (256 KiB, 22 bytes per peer at
	// 3,000,000 peers) that only its next refill used, where a new chunk
	// costs the same allocation.
	for c, v := range victim {
		if v {
			s.spare = append(s.spare, uint32(c))
			s.evacuations++
			s.chunks[c], s.hot[c] = nil, nil
			s.capSlots -= chunkLen
			s.released += chunkLen * slotBytes[A]()
		}
	}
	s.publish()
}

func (s *slab[A]) segOf(t *torrent) *seg {
	if s.v6 {
		return &t.p6
	}
	return &t.p4
}

// purge drops the free-list entries that drop selects. A list left at
// under half its capacity is copied to one its size: after a flood, the
// lists of the chunks given back held hundreds of thousands of entries.
func (s *slab[A]) purge(drop func(off uint32) bool) {
	for c, f := range s.free {
		f = slices.DeleteFunc(f, drop)
		if cap(f) > 2*len(f)+64 {
			f = append([]uint32(nil), f...)
		}
		s.free[c] = f
	}
}

// reclaim gives the memory of chunks without live segments back to the
// garbage collector, keeping one spare while the slab is large enough for
// a spare to be a small part of it; Sweep calls it after a shard. A slab
// whose live segments fill less than a quarter of its chunks (what a
// flood of short-lived swarms leaves: a few live segments in every chunk)
// is repacked into as few chunks as they need.
func (s *slab[A]) reclaim() {
	if s.slots == 0 && len(s.big) == len(s.bigFree) {
		// Nothing is live: give everything back.
		*s = slab[A]{owner: s.owner, v6: s.v6, evacuations: s.evacuations, seed: s.seed, pview: s.pview,
			released: s.released + s.capSlots*slotBytes[A]()}
		s.publish()
		return
	}
	bump := s.next >> chunkShift
	if s.next == s.end {
		bump = ^uint32(0) // the bump region is used up
	}
	var empty []bool
	for c, l := range s.live {
		if l != 0 || s.chunks[c] == nil || uint32(c) == bump || slices.Contains(s.spare, uint32(c)) {
			continue
		}
		if empty == nil {
			empty = make([]bool, len(s.chunks))
		}
		empty[c] = true
		s.spare = append(s.spare, uint32(c))
	}
	if empty != nil {
		s.purge(func(off uint32) bool { return empty[off>>chunkShift] })
	}
	// One spare chunk saves a slab that hovers at a chunk boundary from
	// allocating and dropping a chunk at every sweep; below four chunks in
	// use it would cost more than a quarter of the slab.
	keep := s.capSlots-s.spareSlots() >= 4*chunkLen
	for _, c := range s.spare {
		if s.chunks[c] == nil {
			continue
		}
		if !keep {
			s.chunks[c], s.hot[c] = nil, nil
			s.capSlots -= chunkLen
			s.released += chunkLen * slotBytes[A]()
			s.publish()
		}
		keep = false
	}
	// Repack a slab that is mostly empty (what a flood leaves) or whose
	// free lists hold more than a sixteenth of it: holes of sizes that
	// no swarm grows into any more, which evacuation leaves alone in
	// chunks over three quarters full (11 % of the slab after every swarm
	// of a million grew from one peer to three in step).
	if s.capSlots >= 2*chunkLen && (s.slots*4 < s.capSlots || s.freeListed()*16 > s.capSlots) {
		s.repack()
	}
}

// spareSlots is the capacity of the spare chunks that still hold memory.
func (s *slab[A]) spareSlots() uint64 {
	n := uint64(0)
	for _, c := range s.spare {
		if s.chunks[c] != nil {
			n += chunkLen
		}
	}
	return n
}

// repack copies every live chunk segment into fresh chunks, one after
// another, and drops the old chunks: the slab then holds its live
// segments in as many chunks as they fill, plus the last one's tail. Big
// segments have their own arrays and stay where they are.
func (s *slab[A]) repack() {
	old := *s
	*s = slab[A]{owner: s.owner, v6: s.v6, evacuations: s.evacuations, seed: s.seed, pview: s.pview,
		big: old.big, bigFree: old.bigFree, free: make([][]uint32, len(classSize))}
	s.released = old.released + old.capSlots*slotBytes[A]()
	ts := *s.owner
	for i := range ts {
		sg := s.segOf(&ts[i])
		if sg.cls == noClass || sg.cls == bigClass {
			continue
		}
		size := classSize[sg.cls]
		if s.next+size > s.end {
			s.retireTail()
			s.addChunk()
		}
		off := s.next
		s.next += size
		copy(s.chunks[off>>chunkShift][off&(chunkLen-1):], old.view(*sg))
		copy(s.hot[off>>chunkShift][off&(chunkLen-1):], old.hotView(*sg))
		s.live[off>>chunkShift] += size
		s.slots += uint64(size)
		sg.off = off
	}
	s.publish()
}

func (s *slab[A]) release(sg seg) {
	switch sg.cls {
	case noClass:
	case bigClass:
		s.big[sg.off] = bigSeg[A]{}
		s.bigFree = append(s.bigFree, sg.off)
		s.publish()
	default:
		s.live[sg.off>>chunkShift] -= classSize[sg.cls]
		s.slots -= uint64(classSize[sg.cls])
		s.free[sg.cls] = append(s.free[sg.cls], sg.off)
	}
}

// move puts the segment's peers into a new segment with room for at
// least want records and releases the old one. Peers leaving a bigSeg for
// a chunk are sorted, as chunk segments are. A big segment that stays big
// keeps its index and only changes its one block (growing from a chunk
// segment to blockLen, or shrinking back).
func (s *slab[A]) move(sg *seg, want uint32) {
	if sg.cls == bigClass && want > maxSeg {
		s.big[sg.off].resize(min(want+want/4, blockLen))
		s.publish()
		return
	}
	var nw seg
	switch {
	case want > maxSeg:
		nw.cls = bigClass
		b := newBigSeg[A](min(want+want/4, blockLen))
		if n := len(s.bigFree); n > 0 {
			nw.off = s.bigFree[n-1]
			s.bigFree = s.bigFree[:n-1]
			s.big[nw.off] = b
		} else {
			nw.off = uint32(len(s.big))
			s.big = append(s.big, b)
		}
	case want > 0:
		nw.cls = classOf[want]
		// alloc may evacuate the chunk that holds *sg, so read *sg after.
		nw.off = s.alloc(nw.cls)
	}
	old := *sg
	nw.n = old.n
	switch {
	case nw.cls == bigClass:
		copy(s.big[nw.off].blocks[0], s.view(old))
		s.big[nw.off].reindex(nw.n, s.seed)
		s.publish()
	case nw.cls != noClass:
		ps := s.view(nw)
		copy(ps, s.view(old))
		if old.cls == bigClass {
			slices.SortFunc(ps, func(a, b peer[A]) int {
				if a.less(&b.ip, b.port) {
					return -1
				}
				return 1 // two peers never share an address
			})
			// The hot copies follow the records into their new order.
			hs := s.hotView(nw)
			for i := range ps {
				hs[i] = hotOf(&ps[i])
			}
		} else {
			copy(s.hotView(nw), s.hotView(old))
		}
	}
	s.release(old)
	*sg = nw
}

// find returns the position of (ip, port) in the segment; when it is not
// there, the position insert wants (meaningful for chunk segments only).
func (s *slab[A]) find(sg seg, ip *A, port uint16) (int, bool) {
	if sg.cls == bigClass {
		_, _, i := s.big[sg.off].lookup(hashPeer(ip, port, s.seed), ip, port)
		return i, i >= 0
	}
	return findHot(s.hotView(sg), ip, port)
}

// putNew makes *d the record of a new peer at (ip, port), left 0 until
// update writes it, and *h its hot copy. Written in place, field by field:
// a record built on the stack and copied over is read back in loads wider
// than the stores that built it, which the processor cannot forward, and
// waits for (a third of insert's time in the skewed UDP profile).
func putNew[A addr](d *peer[A], h *hotPeer[A], ip *A, port uint16, seeder bool) {
	*d = peer[A]{}
	d.ip, d.port = *ip, port
	*h = hotPeer[A]{}
	h.ip, h.port, h.seeder = *ip, port, seeder
}

// insert puts a new peer at (ip, port) at position i of the segment and
// returns where it is, growing the segment when full. A bigSeg puts a new
// seeder at its end and a new leecher after its leechers, where the first
// seeder was, which moves to the end: the new record is written once, in
// place (swapping it there after writing it would read it back at once,
// the stall putNew avoids).
func (s *slab[A]) insert(sg *seg, i int, ip *A, port uint16, seeder bool) int {
	if sg.cls != bigClass && (sg.cls == noClass || sg.n == classSize[sg.cls]) {
		s.move(sg, sg.n+1)
	}
	if sg.cls == bigClass {
		b := &s.big[sg.off]
		if c := b.capacity(); sg.n == c {
			if c < blockLen {
				s.move(sg, sg.n+1)
			} else {
				b.addBlock()
				s.publish()
			}
		}
		i = int(sg.n)
		if !seeder {
			if l := b.leechers; l < sg.n {
				q := b.at(sg.n)
				*q, *b.hotAt(sg.n) = *b.at(l), *b.hotAt(l)
				b.idx.repoint(hashPeer(&q.ip, q.port, s.seed), int(l), i)
				i = int(l)
			}
			b.leechers++
		}
		putNew(b.at(uint32(i)), b.hotAt(uint32(i)), ip, port, seeder)
		if b.idx.add(entry(hashPeer(ip, port, s.seed), i)) {
			s.publish()
		}
		sg.n++
		return i
	}
	sg.n++
	ps := s.view(*sg)
	copy(ps[i+1:], ps[i:len(ps)-1])
	hs := s.hotView(*sg)
	copy(hs[i+1:], hs[i:len(hs)-1])
	putNew(&ps[i], &hs[i], ip, port, true) // update sets seeder
	return i
}

// remove deletes position i of the segment. A bigSeg fills the hole with
// its last peer instead of shifting the tail.
func (s *slab[A]) remove(sg *seg, i int) {
	if sg.cls == bigClass {
		if s.big[sg.off].remove(i, int(sg.n), s.seed) {
			s.publish()
		}
		sg.n--
		s.shrink(sg)
		return
	}
	ps := s.view(*sg)
	copy(ps[i:], ps[i+1:])
	hs := s.hotView(*sg)
	copy(hs[i:], hs[i+1:])
	sg.n--
	s.shrink(sg)
}

// shrink moves a segment that has become much larger than its peers into
// a smaller one, and frees an empty one. The factor of four leaves room
// for the swarm to grow back without moving again at once. A big segment
// of several blocks drops its last block once that is empty and the one
// before at most half full, so a swarm that hovers at a block boundary
// does not allocate and free a block on every other announce.
func (s *slab[A]) shrink(sg *seg) {
	if sg.cls == bigClass && sg.n > 0 {
		b := &s.big[sg.off]
		k := len(b.blocks)
		for k > 1 && sg.n+blockLen/2 <= uint32(k-1)*blockLen {
			k--
		}
		if k < len(b.blocks) {
			b.truncate(k)
			s.publish()
		}
		if k == 1 && sg.n <= b.capacity()/4 {
			s.move(sg, sg.n+sg.n/4)
		}
		if sg.cls == bigClass {
			if b := &s.big[sg.off]; b.idx.oversized(sg.n) {
				b.rebuildIndex(sg.n, s.seed)
				s.publish()
			}
		}
		return
	}
	switch {
	case sg.n == 0:
		s.move(sg, 0)
	case sg.cls > 1 && sg.n*4 <= classSize[sg.cls]:
		s.move(sg, sg.n+sg.n/4)
	}
}
