package memswarm

import (
	"math/bits"
	"slices"
)

// Big segment geometry. A big swarm's records and hot copies are in
// blocks of blockLen, so growing appends a block and never copies the
// swarm: one announce into a swarm of 2,000,000 peers used to copy all of
// them (366 ms) when its single array was full.
const (
	blockShift = 12
	blockLen   = 1 << blockShift
	blockMask  = blockLen - 1
	// minPartSlots is the smallest index part.
	minPartSlots = 64
	// maxPartDepth bounds the directory of index parts (1<<16 entries);
	// a part that deep grows past maxPartSlots instead of splitting, which
	// only a hash that no longer spreads peers could cause.
	maxPartDepth = 16
)

// maxPartSlots is the largest index part (128 KB, up to 10,922 entries):
// growing or splitting one is the most index work one announce does, about
// 0.5 ms, mostly page faults of the new part (1<<15 took twice as long).
// A variable so tests can split parts of small swarms.
var maxPartSlots = 1 << 14

// bigSeg holds the peers of one swarm too large for a chunk. Keeping them
// sorted would make every new peer shift on average half of the array
// (tens of microseconds at 500,000 peers), so they are in no order: a new
// peer goes at the end, a leaving one is replaced by the last, and an
// index finds a peer by address.
//
// Records and hot copies are in blocks: all of blockLen, except that a
// swarm of one block has a block sized to it (a swarm of 300 peers does
// not hold 4,096 records). Position p is offset p&blockMask of block
// p>>blockShift. A segment of more than one block holds more than
// blockLen/2 peers (see slab.shrink), so the segments pick walks with a
// random stride (at most maxSeg peers) are always one block.
//
// Every array is pointer-free, so the garbage collector scans only the
// small slices of block and part headers. The slices of headers (blocks,
// hot, the index's dir and parts) are replaced, never written in place,
// because Prefetch reads them through published views (see slabView).
type bigSeg[A addr] struct {
	blocks [][]peer[A]
	// hot mirrors what handing out a peer without its id reads of the
	// records, in the same positions: 8 bytes per IPv4 peer where a
	// record is 56, so the walk of an announce reads a sixth of the cache
	// lines.
	hot [][]hotPeer[A]
	idx bigIndex
	// leechers is how many of the peers are leechers: they hold positions
	// 0..leechers-1, the seeders the rest. A seeder's sample (leechers
	// only) is then a window over the leechers, where walking the whole
	// swarm and skipping seeders read every peer of a swarm with few
	// leechers (21 ms under the lock for 1,000,000 seeders and one
	// leecher) and favoured the leechers that follow long runs of seeders.
	leechers uint32
}

// hotPeer is a peer as an answer without peer ids and a lookup need it:
// big segments and slab chunks keep one beside each record.
type hotPeer[A addr] struct {
	ip     A
	port   uint16
	seeder bool
}

func hotOf[A addr](p *peer[A]) hotPeer[A] {
	return hotPeer[A]{ip: p.ip, port: p.port, seeder: p.seeder()}
}

// newBigSeg is a segment of one block of the given capacity (at most
// blockLen) and an empty index.
func newBigSeg[A addr](capacity uint32) bigSeg[A] {
	return bigSeg[A]{
		blocks: [][]peer[A]{make([]peer[A], capacity)},
		hot:    [][]hotPeer[A]{make([]hotPeer[A], capacity)},
	}
}

func (b *bigSeg[A]) capacity() uint32 {
	k := len(b.blocks)
	if k == 0 {
		return 0
	}
	return uint32((k-1)*blockLen + len(b.blocks[k-1]))
}

func (b *bigSeg[A]) at(i uint32) *peer[A] { return &b.blocks[i>>blockShift][i&blockMask] }

func (b *bigSeg[A]) hotAt(i uint32) *hotPeer[A] { return &b.hot[i>>blockShift][i&blockMask] }

// span is the records from position i to the end of its block or to n,
// the number of peers: the longest run a walk from i reads in order.
func (b *bigSeg[A]) span(i, n uint32) []peer[A] {
	blk := b.blocks[i>>blockShift]
	o := i & blockMask
	return blk[o:min(uint32(len(blk)), o+n-i)]
}

// hotSpan is span of the hot copies.
func (b *bigSeg[A]) hotSpan(i, n uint32) []hotPeer[A] {
	blk := b.hot[i>>blockShift]
	o := i & blockMask
	return blk[o:min(uint32(len(blk)), o+n-i)]
}

// resize gives a one-block segment a block of the given capacity, keeping
// the positions (so the index stays as it is). Copies at most blockLen
// records.
func (b *bigSeg[A]) resize(capacity uint32) {
	ps := make([]peer[A], capacity)
	copy(ps, b.blocks[0])
	hot := make([]hotPeer[A], capacity)
	copy(hot, b.hot[0])
	b.blocks, b.hot = [][]peer[A]{ps}, [][]hotPeer[A]{hot}
}

// addBlock appends an empty block of blockLen.
func (b *bigSeg[A]) addBlock() {
	b.blocks = append(slices.Clip(b.blocks), make([]peer[A], blockLen))
	b.hot = append(slices.Clip(b.hot), make([]hotPeer[A], blockLen))
}

// truncate keeps the first k blocks.
func (b *bigSeg[A]) truncate(k int) {
	b.blocks = slices.Clone(b.blocks[:k])
	b.hot = slices.Clone(b.hot[:k])
}

// lookup returns the index part and slot of (ip, port), whose hash is h,
// and its position, or the empty slot where it would go and -1.
func (b *bigSeg[A]) lookup(h uint64, ip *A, port uint16) (part uint32, slot, pos int) {
	tag := uint32(h)
	part = b.idx.dir[tag>>b.idx.shift]
	s := b.idx.parts[part]
	mask := len(s) - 1
	for j := int(tag) & mask; ; j = (j + 1) & mask {
		v := s[j]
		if v == 0 {
			return part, j, -1
		}
		if uint32(v>>32) != tag {
			continue
		}
		if p := b.at(uint32(v) - 1); p.ip == *ip && p.port == port {
			return part, j, int(uint32(v) - 1)
		}
	}
}

// reindex puts the first n peers' leechers first and rebuilds the index
// and the hot copies from their records.
func (b *bigSeg[A]) reindex(n uint32, seed uint64) {
	l := uint32(0)
	for i := range n {
		if p := b.at(i); !p.seeder() {
			if i != l {
				*p, *b.at(l) = *b.at(l), *p
			}
			l++
		}
	}
	b.leechers = l
	b.idx = newBigIndex(int(n))
	for i := range n {
		p := b.at(i)
		b.idx.add(entry(hashPeer(&p.ip, p.port, seed), int(i)))
		*b.hotAt(i) = hotOf(p)
	}
}

// remove deletes position i of the n peers: the last peer moves into the
// hole, so nothing else shifts (a leaving leecher first trades places with
// the last leecher, to keep the leechers first). It reports whether an
// index part was replaced.
func (b *bigSeg[A]) remove(i, n int, seed uint64) bool {
	if uint32(i) < b.leechers {
		b.leechers--
		b.swap(uint32(i), b.leechers, seed)
		i = int(b.leechers)
	}
	p := b.at(uint32(i))
	part, j, _ := b.lookup(hashPeer(&p.ip, p.port, seed), &p.ip, p.port)
	b.idx.del(part, j)
	if last := n - 1; i != last {
		q := b.at(uint32(last))
		b.idx.repoint(hashPeer(&q.ip, q.port, seed), last, i)
		*p = *q
		*b.hotAt(uint32(i)) = *b.hotAt(uint32(last))
	}
	return b.idx.shrink(part)
}

// setSeeder records that the peer at position i is now a seeder or a
// leecher, moving it across the boundary between the two when it changes
// side, and returns its position.
func (b *bigSeg[A]) setSeeder(i uint32, seeder bool, seed uint64) uint32 {
	switch {
	case seeder && i < b.leechers:
		b.leechers--
		b.swap(i, b.leechers, seed)
		i = b.leechers
	case !seeder && i >= b.leechers:
		b.swap(i, b.leechers, seed)
		i = b.leechers
		b.leechers++
	}
	b.hotAt(i).seeder = seeder
	return i
}

// swap exchanges the peers at positions i and j and their index entries.
func (b *bigSeg[A]) swap(i, j uint32, seed uint64) {
	if i == j {
		return
	}
	p, q := b.at(i), b.at(j)
	hp, hq := hashPeer(&p.ip, p.port, seed), hashPeer(&q.ip, q.port, seed)
	// Entries are found by position: park one on a position no peer has.
	const parked = 1<<31 - 2 // fits an int on 32-bit platforms too
	b.idx.repoint(hp, int(i), parked)
	b.idx.repoint(hq, int(j), int(i))
	b.idx.repoint(hp, parked, int(j))
	*p, *q = *q, *p
	hi, hj := b.hotAt(i), b.hotAt(j)
	*hi, *hj = *hj, *hi
}

// bigIndex finds a big swarm's peers by address. It is split into parts,
// open-addressing tables (linear probing, at most 2/3 full, backward-shift
// deletion) chosen by the top bits of the hash through a directory, as in
// extendible hashing: a full part doubles until it has maxPartSlots, and
// then splits in two by its next hash bit. Growing the index therefore
// rehashes one part, never the whole swarm (which took up to 100 ms at
// 2,000,000 peers), and costs 12–24 bytes per peer.
type bigIndex struct {
	// dir[t>>shift] is the part of the entries whose 32-bit tag is t: the
	// top depth bits choose (shift is 32-depth; a shift of 32 gives 0).
	dir   []uint32
	shift uint8
	depth uint8
	// parts hold entries (see entry) in the slot their tag picks, or the
	// next free one; 0 is an empty slot. Lengths are powers of two.
	parts [][]uint64
	meta  []partMeta
}

// partMeta is a part's number of entries and how many top tag bits all of
// them share (its local depth).
type partMeta struct {
	n     uint32
	depth uint8
}

// entry is an index entry: the low 32 bits of the peer's hash above its
// position+1. Probing compares the hash bits first and reads a record
// only when they match, so looking up a new peer reads no record at all
// (each record read is a cache miss in a swarm of hundreds of thousands),
// and moving entries between parts never rehashes a record: the low bits
// pick the slot, the top bits the part.
func entry(h uint64, pos int) uint64 { return uint64(uint32(h))<<32 | uint64(pos+1) }

// newBigIndex is an empty index with room for about n entries.
func newBigIndex(n int) bigIndex {
	size := minPartSlots
	for size*2 < n*3 {
		size *= 2
	}
	var depth uint8
	for size > maxPartSlots && depth < maxPartDepth {
		size /= 2
		depth++
	}
	x := bigIndex{dir: make([]uint32, 1<<depth), shift: 32 - depth, depth: depth,
		parts: make([][]uint64, 1<<depth), meta: make([]partMeta, 1<<depth)}
	for k := range x.dir {
		x.dir[k] = uint32(k)
		x.parts[k] = make([]uint64, size)
		x.meta[k].depth = depth
	}
	return x
}

// maxMergePeers bounds the swarm whose index is rebuilt whole to merge its
// parts: hashing and placing 65,536 entries takes about a millisecond
// under the shard lock. A larger swarm keeps its parts, each shrinking
// on its own (see shrink), so its index stays within about 48 bytes per
// peer plus minPartSlots entries per part.
const maxMergePeers = 1 << 16

// oversized reports whether the index has at least four times the parts
// that an index built for n entries would have: the swarm shrank since
// its parts split, and they are merged by rebuilding the index (what a
// rebuild costs is paid for by the removals since the split).
func (x *bigIndex) oversized(n uint32) bool {
	if len(x.parts) <= 1 || n > maxMergePeers {
		return false
	}
	return len(x.parts) >= 4*partsFor(int(n))
}

// partsFor is the number of parts newBigIndex(n) makes.
func partsFor(n int) int {
	size, parts := minPartSlots, 1
	for size*2 < n*3 {
		size *= 2
	}
	for size > maxPartSlots && parts < 1<<maxPartDepth {
		size /= 2
		parts *= 2
	}
	return parts
}

// rebuildIndex replaces the index with one built for the first n peers,
// leaving the records, their order and the hot copies as they are.
func (b *bigSeg[A]) rebuildIndex(n uint32, seed uint64) {
	b.idx = newBigIndex(int(n))
	for i := range n {
		p := b.at(i)
		b.idx.add(entry(hashPeer(&p.ip, p.port, seed), int(i)))
	}
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
	hi, lo := bits.Mul64(a^seed^0xa0761d6478bd642f, b^bits.RotateLeft64(seed, 32)^0xe7037ed1a0b428db)
	// The port goes in with a second multiply: XORed into b, it cancelled
	// out against address bytes 10-11, so one /64 could give 65,535
	// peers of one swarm a single hash, whatever the seed.
	hi, lo = bits.Mul64(hi^lo^uint64(port), bits.RotateLeft64(seed, 29)^0x8ebc6af09c88c6e3)
	return hi ^ lo
}

// add indexes entry v, whose peer is not indexed yet, and reports whether
// a part was replaced (grown or split).
func (x *bigIndex) add(v uint64) bool {
	tag := uint32(v >> 32)
	p := x.dir[tag>>x.shift]
	grown := false
	// A split can leave all entries on v's side (a small part's few
	// entries may share the bit): then that side splits again.
	for (int(x.meta[p].n)+1)*3 > len(x.parts[p])*2 {
		x.makeRoom(p)
		p = x.dir[tag>>x.shift]
		grown = true
	}
	place(x.parts[p], v)
	x.meta[p].n++
	return grown
}

// makeRoom doubles part p or, at maxPartSlots, splits it.
func (x *bigIndex) makeRoom(p uint32) {
	if s := x.parts[p]; len(s) < maxPartSlots || x.meta[p].depth >= maxPartDepth {
		x.setPart(p, rebuilt(s, 2*len(s)))
		return
	}
	x.split(p)
}

// split moves the entries of part p whose next tag bit is set into a new
// part of p's size; each is then about a third full. Only the new part is
// fresh memory: a split's cost is mostly the page faults of first writes,
// which two fresh parts doubled.
func (x *bigIndex) split(p uint32) {
	d := x.meta[p].depth
	if d == x.depth {
		// Double the directory: index k of the new one has one more tag
		// bit than index k>>1 of the old.
		dir := make([]uint32, 2*len(x.dir))
		for k := range dir {
			dir[k] = x.dir[k>>1]
		}
		x.dir = dir
		x.depth++
		x.shift--
	} else {
		x.dir = slices.Clone(x.dir)
	}
	lo := x.parts[p]
	// An empty slot before any entry leaves: no probe run crosses it.
	e := 0
	for lo[e] != 0 {
		e++ // parts are at most 2/3 full
	}
	hi := make([]uint64, len(lo))
	var nhi uint32
	bit := 31 - d
	for j, v := range lo {
		if v != 0 && uint32(v>>32)>>bit&1 == 1 {
			place(hi, v)
			nhi++
			lo[j] = 0
		}
	}
	settle(lo, e)
	q := uint32(len(x.parts))
	x.parts = append(slices.Clone(x.parts), hi)
	x.meta[p] = partMeta{n: x.meta[p].n - nhi, depth: d + 1}
	x.meta = append(x.meta, partMeta{n: nhi, depth: d + 1})
	// The same bit in a directory index of depth bits.
	dbit := x.depth - 1 - d
	for k := range x.dir {
		if x.dir[k] == p && k>>dbit&1 == 1 {
			x.dir[k] = q
		}
	}
}

// setPart replaces part p in a new slice of parts: a published view may
// hold the old one.
func (x *bigIndex) setPart(p uint32, s []uint64) {
	x.parts = slices.Clone(x.parts)
	x.parts[p] = s
}

// rebuilt is the entries of s placed in a new table of size slots.
func rebuilt(s []uint64, size int) []uint64 {
	t := make([]uint64, size)
	for _, v := range s {
		if v != 0 {
			place(t, v)
		}
	}
	return t
}

// settle re-places the entries of s after some were emptied without
// backward shifts; slot e was empty before, so no probe run crosses it.
// Going once round from e, each entry moves to the first free slot from
// its home, which is at or before its own: the slots before it in its run
// are settled already, and later moves only fill empty slots after it, so
// every entry is again reachable from its home.
func settle(s []uint64, e int) {
	mask := len(s) - 1
	for k := 1; k <= mask; k++ {
		j := (e + k) & mask
		if v := s[j]; v != 0 {
			s[j] = 0
			place(s, v)
		}
	}
}

// place puts entry v into the first free slot of s from its home.
func place(s []uint64, v uint64) {
	mask := len(s) - 1
	j := int(v>>32) & mask
	for s[j] != 0 {
		j = (j + 1) & mask
	}
	s[j] = v
}

// del empties slot j of part p.
func (x *bigIndex) del(p uint32, j int) {
	unindex(x.parts[p], j)
	x.meta[p].n--
}

// repoint changes the position of the entry of hash h from from to to.
func (x *bigIndex) repoint(h uint64, from, to int) {
	tag := uint32(h)
	s := x.parts[x.dir[tag>>x.shift]]
	mask := len(s) - 1
	j := int(tag) & mask
	for uint32(s[j]) != uint32(from+1) {
		j = (j + 1) & mask
	}
	s[j] = entry(h, to)
}

// shrink halves part p when it is at most 1/6 full (a third full after,
// as after a doubling), and reports whether it did.
func (x *bigIndex) shrink(p uint32) bool {
	s := x.parts[p]
	if len(s) <= minPartSlots || int(x.meta[p].n)*6 > len(s) {
		return false
	}
	x.setPart(p, rebuilt(s, len(s)/2))
	return true
}

// unindex empties slot j by backward shifting: later entries of the probe
// run move up, so no tombstones pile up in a swarm with churn.
func unindex(s []uint64, j int) {
	mask := len(s) - 1
	s[j] = 0
	for k := (j + 1) & mask; s[k] != 0; k = (k + 1) & mask {
		v := s[k]
		home := int(v>>32) & mask
		// The entry at k may fill the hole at j unless its home slot lies
		// cyclically after j: lookups from there would never reach j.
		if (k-home)&mask >= (k-j)&mask {
			s[j], s[k] = v, 0
			j = k
		}
	}
}
