package memswarm

import (
	"math/bits"
	"slices"
	"sync/atomic"

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

func (p *peer[A]) seeder() bool { return p.left == 0 }

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

// linearMax is the largest segment find scans instead of bisecting. On
// 10,000 torrents of 20 peers (records not in the cache) a re-announce
// without peers handed out took 370–430 ns with the binary search and
// 200–240 ns with the scan; at 150 peers the scan loses (270 vs 380 ns).
const linearMax = 64

// find returns the position of (ip, port) in ps, or where it would be
// inserted to keep ps sorted.
func find[A addr](ps []peer[A], ip *A, port uint16) (int, bool) {
	if len(ps) <= linearMax {
		// A scan: its loads do not wait for each other's comparisons,
		// so the segment streams in from memory, where each step of a
		// binary search waits for the previous one's cache miss.
		for i := range ps {
			if !ps[i].less(ip, port) {
				return i, ps[i].ip == *ip && ps[i].port == port
			}
		}
		return len(ps), false
	}
	lo, hi := 0, len(ps)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ps[m].less(ip, port) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(ps) && ps[lo].ip == *ip && ps[lo].port == port
}

// Slab geometry. Peers of small swarms live in fixed-size chunks of
// chunkLen records, carved into segments of a size class; a swarm larger
// than the largest class, maxSeg, gets a bigSeg of its own. A chunk is one
// large pointer-free allocation, so a million torrents cost the GC a few
// thousand chunk pointers instead of a million slices.
//
// maxSeg bounds the memmove of a sorted insert to 7 KB (a new peer in a
// segment of 4,096 shifted 115 KB on average, 4 % of the server's CPU in
// a skewed UDP run); swarms above it are few, and their bigSeg costs about
// 10 bytes of index per peer.
const (
	chunkShift = 12
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
	// pview is what Prefetch reads without the lock (see slabView); a
	// pointer, so that resetting the slab keeps it.
	pview *atomic.Pointer[slabView[A]]
}

func (s *slab[A]) capOf(sg seg) uint32 {
	if sg.cls == bigClass {
		return uint32(len(s.big[sg.off].ps))
	}
	return classSize[sg.cls]
}

// view is the segment's peers, sliced out of the slab without allocating.
func (s *slab[A]) view(sg seg) []peer[A] {
	switch sg.cls {
	case noClass:
		return nil
	case bigClass:
		return s.big[sg.off].ps[:sg.n]
	}
	c, o := sg.off>>chunkShift, sg.off&(chunkLen-1)
	return s.chunks[c][o : o+sg.n : o+classSize[sg.cls]]
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
	// The tail of the region is too short: hand it to the free lists of
	// smaller classes instead of wasting it.
	for rest := s.end - s.next; rest > 0; {
		fc := classOf[min(rest, maxSeg)]
		if classSize[fc] > rest {
			fc--
		}
		s.free[fc] = append(s.free[fc], s.next)
		s.next += classSize[fc]
		rest -= classSize[fc]
	}
	if n := len(s.spare); n > 0 {
		c := s.spare[n-1]
		s.spare = s.spare[:n-1]
		if s.chunks[c] == nil {
			s.chunks[c] = make([]peer[A], chunkLen)
			s.capSlots += chunkLen
			s.publish()
		}
		s.next, s.end = c<<chunkShift, (c+1)<<chunkShift
		return
	}
	c := uint32(len(s.chunks))
	s.chunks = append(s.chunks, make([]peer[A], chunkLen))
	s.publish()
	s.live = append(s.live, 0)
	s.capSlots += chunkLen
	s.next, s.end = c<<chunkShift, (c+1)<<chunkShift
	if s.freeListed()*8 > s.capSlots {
		s.compact(c)
	}
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
		s.live[off>>chunkShift] += size
		s.live[sg.off>>chunkShift] -= size
		sg.off = off
	}
	for c, v := range victim {
		if v {
			s.spare = append(s.spare, uint32(c))
			s.evacuations++
		}
	}
}

func (s *slab[A]) segOf(t *torrent) *seg {
	if s.v6 {
		return &t.p6
	}
	return &t.p4
}

// purge drops the free-list entries that drop selects.
func (s *slab[A]) purge(drop func(off uint32) bool) {
	for c, f := range s.free {
		s.free[c] = slices.DeleteFunc(f, drop)
	}
}

// reclaim gives the memory of chunks without live segments back to the
// garbage collector, keeping one spare; Sweep calls it after a shard.
func (s *slab[A]) reclaim() {
	if s.slots == 0 && len(s.big) == len(s.bigFree) {
		// Nothing is live: give everything back.
		*s = slab[A]{owner: s.owner, v6: s.v6, evacuations: s.evacuations, seed: s.seed, pview: s.pview}
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
	kept := false
	for _, c := range s.spare {
		if s.chunks[c] == nil {
			continue
		}
		if kept {
			s.chunks[c] = nil
			s.capSlots -= chunkLen
			s.publish()
		}
		kept = true
	}
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
// a chunk are sorted, as chunk segments are.
func (s *slab[A]) move(sg *seg, want uint32) {
	var nw seg
	switch {
	case want > maxSeg:
		nw.cls = bigClass
		b := newBigSeg[A](want + want/4)
		if n := len(s.bigFree); n > 0 {
			nw.off = s.bigFree[n-1]
			s.bigFree = s.bigFree[:n-1]
			s.big[nw.off] = b
		} else {
			nw.off = uint32(len(s.big))
			s.big = append(s.big, b)
		}
		s.publish()
	case want > 0:
		nw.cls = classOf[want]
		// alloc may evacuate the chunk that holds *sg, so read *sg after.
		nw.off = s.alloc(nw.cls)
	}
	old := *sg
	nw.n = old.n
	copy(s.view(nw), s.view(old))
	switch {
	case nw.cls == bigClass && old.cls == bigClass:
		// Positions are kept: the index entries move as they are.
		s.big[nw.off].rehash(s.big[old.off].idx)
		copy(s.big[nw.off].hot, s.big[old.off].hot[:nw.n])
	case nw.cls == bigClass:
		s.big[nw.off].reindex(nw.n, s.seed)
	case old.cls == bigClass && nw.cls != noClass:
		slices.SortFunc(s.view(nw), func(a, b peer[A]) int {
			if a.less(&b.ip, b.port) {
				return -1
			}
			return 1 // two peers never share an address
		})
	}
	s.release(old)
	*sg = nw
}

// find returns the position of (ip, port) in the segment; when it is not
// there, the position insert wants (meaningful for chunk segments only).
func (s *slab[A]) find(sg seg, ip *A, port uint16) (int, bool) {
	if sg.cls == bigClass {
		b := &s.big[sg.off]
		_, i := b.lookup(hashPeer(ip, port, s.seed), ip, port)
		return i, i >= 0
	}
	return find(s.view(sg), ip, port)
}

// insert puts p at position i of the segment (at the end of a bigSeg),
// growing it when full, and returns where p is.
func (s *slab[A]) insert(sg *seg, i int, p *peer[A]) int {
	if sg.cls == noClass || sg.n == s.capOf(*sg) {
		s.move(sg, sg.n+1)
	}
	if sg.cls == bigClass {
		b := &s.big[sg.off]
		i = int(sg.n)
		b.ps[i] = *p
		b.hot[i] = hotOf(p)
		h := hashPeer(&p.ip, p.port, s.seed)
		j, _ := b.lookup(h, &p.ip, p.port)
		b.idx[j] = entry(h, i)
		sg.n++
		return i
	}
	sg.n++
	ps := s.view(*sg)
	copy(ps[i+1:], ps[i:len(ps)-1])
	ps[i] = *p
	return i
}

// remove deletes position i of the segment. A bigSeg fills the hole with
// its last peer instead of shifting the tail.
func (s *slab[A]) remove(sg *seg, i int) {
	if sg.cls == bigClass {
		s.big[sg.off].remove(i, int(sg.n), s.seed)
		sg.n--
		s.shrink(sg)
		return
	}
	ps := s.view(*sg)
	copy(ps[i:], ps[i+1:])
	sg.n--
	s.shrink(sg)
}

// shrink moves a segment that has become much larger than its peers into
// a smaller one, and frees an empty one. The factor of four leaves room
// for the swarm to grow back without moving again at once.
func (s *slab[A]) shrink(sg *seg) {
	switch {
	case sg.n == 0:
		s.move(sg, 0)
	case sg.cls == bigClass:
		if sg.n <= uint32(len(s.big[sg.off].ps))/4 {
			s.move(sg, sg.n+sg.n/4)
		}
	case sg.cls > 1 && sg.n*4 <= classSize[sg.cls]:
		s.move(sg, sg.n+sg.n/4)
	}
}

// bigSeg holds the peers of one swarm too large for a chunk. Keeping them
// sorted would make every new peer shift on average half of the array
// (tens of microseconds at 500,000 peers), so they are in no order: a new
// peer goes at the end, a leaving one is replaced by the last, and an
// open-addressing index finds a peer by address. Both arrays are
// pointer-free, so a big swarm costs the garbage collector two objects
// it never scans.
type bigSeg[A addr] struct {
	// ps has the segment's capacity as its length; the first seg.n are
	// the peers.
	ps []peer[A]
	// idx holds entries (see entry) in the slot their hash picks, or the
	// next free one (linear probing); 0 is an empty slot. Its length is a
	// power of two at least 3/2 of len(ps), so it stays at most 2/3 full.
	idx []uint64
	// hot mirrors what handing out a peer without its id reads of ps, in
	// the same positions: 8 bytes per IPv4 peer where a record is 56, so
	// the walk of an announce reads a sixth of the cache lines.
	hot []hotPeer[A]
}

// hotPeer is a big swarm's peer as an answer without peer ids needs it.
type hotPeer[A addr] struct {
	ip     A
	port   uint16
	seeder bool
}

func hotOf[A addr](p *peer[A]) hotPeer[A] {
	return hotPeer[A]{ip: p.ip, port: p.port, seeder: p.seeder()}
}

// entry is an index entry: the low 32 bits of the peer's hash above its
// position+1. Probing compares the hash bits first and reads a record
// only when they match, so looking up a new peer reads no record at all
// (each record read is a cache miss in a swarm of hundreds of thousands),
// and moving entries never rehashes a record.
func entry(h uint64, pos int) uint64 { return uint64(uint32(h))<<32 | uint64(pos+1) }

func newBigSeg[A addr](capacity uint32) bigSeg[A] {
	slots := 1 << bits.Len32(capacity+capacity/2-1)
	return bigSeg[A]{ps: make([]peer[A], capacity), idx: make([]uint64, slots), hot: make([]hotPeer[A], capacity)}
}

// hashPeer mixes a peer's address with the slab's seed (wyhash's
// multiply-and-fold): a few nanoseconds, no allocation.
func hashPeer[A addr](ip *A, port uint16, seed uint64) uint64 {
	var a, b uint64
	if len(*ip) == 4 {
		a = uint64((*ip)[0])<<24 | uint64((*ip)[1])<<16 | uint64((*ip)[2])<<8 | uint64((*ip)[3])
	} else {
		for k := 0; k < 8; k++ {
			a = a<<8 | uint64((*ip)[k])
			b = b<<8 | uint64((*ip)[8+k])
		}
	}
	hi, lo := bits.Mul64(a^seed^0xa0761d6478bd642f, b^uint64(port)<<32^bits.RotateLeft64(seed, 32)^0xe7037ed1a0b428db)
	return hi ^ lo
}

// lookup returns the index slot of (ip, port), whose hash is h, and its
// position, or the empty slot where it would go and -1.
func (b *bigSeg[A]) lookup(h uint64, ip *A, port uint16) (slot, pos int) {
	mask := len(b.idx) - 1
	tag := uint32(h)
	for j := int(h) & mask; ; j = (j + 1) & mask {
		v := b.idx[j]
		if v == 0 {
			return j, -1
		}
		if uint32(v>>32) != tag {
			continue
		}
		if p := &b.ps[uint32(v)-1]; p.ip == *ip && p.port == port {
			return j, int(uint32(v) - 1)
		}
	}
}

// place puts entry v into the first free slot from its home.
func (b *bigSeg[A]) place(v uint64) {
	mask := len(b.idx) - 1
	j := int(v>>32) & mask
	for b.idx[j] != 0 {
		j = (j + 1) & mask
	}
	b.idx[j] = v
}

// reindex rebuilds the index and hot of the first n peers from their
// records.
func (b *bigSeg[A]) reindex(n uint32, seed uint64) {
	clear(b.idx)
	for i := range int(n) {
		p := &b.ps[i]
		b.place(entry(hashPeer(&p.ip, p.port, seed), i))
		b.hot[i] = hotOf(p)
	}
}

// rehash fills the index from another index of the same positions.
func (b *bigSeg[A]) rehash(old []uint64) {
	if len(old) == len(b.idx) {
		copy(b.idx, old)
		return
	}
	for _, v := range old {
		if v != 0 {
			b.place(v)
		}
	}
}

// remove deletes position i of the n peers: the last peer moves into the
// hole, so nothing else shifts.
func (b *bigSeg[A]) remove(i, n int, seed uint64) {
	j, _ := b.lookup(hashPeer(&b.ps[i].ip, b.ps[i].port, seed), &b.ps[i].ip, b.ps[i].port)
	b.unindex(j)
	if last := n - 1; i != last {
		p := &b.ps[last]
		h := hashPeer(&p.ip, p.port, seed)
		mask := len(b.idx) - 1
		j := int(h) & mask
		for uint32(b.idx[j]) != uint32(last+1) {
			j = (j + 1) & mask
		}
		b.idx[j] = entry(h, i)
		b.ps[i] = *p
		b.hot[i] = b.hot[last]
	}
}

// unindex empties slot j by backward shifting: later entries of the probe
// run move up, so no tombstones pile up in a swarm with churn.
func (b *bigSeg[A]) unindex(j int) {
	mask := len(b.idx) - 1
	b.idx[j] = 0
	for k := (j + 1) & mask; b.idx[k] != 0; k = (k + 1) & mask {
		v := b.idx[k]
		home := int(v>>32) & mask
		// The entry at k may fill the hole at j unless its home slot lies
		// cyclically after j: lookups from there would never reach j.
		if (k-home)&mask >= (k-j)&mask {
			b.idx[j], b.idx[k] = v, 0
			j = k
		}
	}
}
