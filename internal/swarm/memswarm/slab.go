package memswarm

import "github.com/starling-tracker/starling/internal/bittorrent"

// addr is the raw address of a peer record: IPv4 and IPv6 peers live in
// separate slabs so an IPv4 peer does not pay for 16 address bytes.
type addr interface{ [4]byte | [16]byte }

// peer is one stored peer. It holds no pointer, so the slabs that hold
// millions of them are never scanned by the garbage collector. An IPv4
// record is 56 bytes, an IPv6 record 72.
type peer[A addr] struct {
	ip    A
	port  uint16
	event bittorrent.Event
	// counted is set once this peer's completion was counted in the swarm.
	counted bool
	// updated is the last announce in unix seconds; uint32 lasts until 2106
	// and keeps the record at 56 bytes.
	updated    uint32
	id         bittorrent.PeerID
	uploaded   int64
	downloaded int64
	left       int64
}

func (p *peer[A]) seeder() bool { return p.left == 0 }

// less orders peers by (ip, port), the identity of a peer in a swarm; each
// torrent's peers are kept sorted so a lookup is a binary search without a
// per-peer index.
func (p *peer[A]) less(ip *A, port uint16) bool {
	for i := 0; i < len(*ip); i++ {
		if p.ip[i] != (*ip)[i] {
			return p.ip[i] < (*ip)[i]
		}
	}
	return p.port < port
}

// find returns the position of (ip, port) in ps, or where it would be
// inserted to keep ps sorted.
func find[A addr](ps []peer[A], ip *A, port uint16) (int, bool) {
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
// than the largest class gets a slice of its own. A chunk is one large
// pointer-free allocation, so a million torrents cost the GC a few
// thousand chunk pointers instead of a million slices.
const (
	chunkShift = 12
	chunkLen   = 1 << chunkShift
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
	for p := uint32(8); p < chunkLen; p *= 2 {
		sizes = append(sizes, p+p/4, p+p/2, p+3*p/4, 2*p)
	}
	of := make([]uint8, chunkLen+1)
	c := 1
	for n := 1; n <= chunkLen; n++ {
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
type slab[A addr] struct {
	chunks [][]peer[A]
	// next is the first never-used slot of the last chunk.
	next uint32
	free [][]uint32
	big  [][]peer[A]
	// bigFree are indexes of big that can be reused.
	bigFree []uint32
	// slots is the capacity held by live segments, for the memory report.
	slots uint64
}

func (s *slab[A]) capOf(sg seg) uint32 {
	if sg.cls == bigClass {
		return uint32(cap(s.big[sg.off]))
	}
	return classSize[sg.cls]
}

// view is the segment's peers, sliced out of the slab without allocating.
func (s *slab[A]) view(sg seg) []peer[A] {
	switch sg.cls {
	case noClass:
		return nil
	case bigClass:
		return s.big[sg.off][:sg.n]
	}
	c, o := sg.off>>chunkShift, sg.off&(chunkLen-1)
	return s.chunks[c][o : o+sg.n : o+classSize[sg.cls]]
}

// alloc returns the offset of a fresh segment of class c.
func (s *slab[A]) alloc(c uint8) uint32 {
	if s.free == nil {
		s.free = make([][]uint32, len(classSize))
	}
	size := classSize[c]
	s.slots += uint64(size)
	if f := s.free[c]; len(f) > 0 {
		off := f[len(f)-1]
		s.free[c] = f[:len(f)-1]
		return off
	}
	if s.next+size > uint32(len(s.chunks))<<chunkShift {
		// The tail of the last chunk is too short: hand it to the free
		// lists of smaller classes instead of wasting it.
		for rest := uint32(len(s.chunks))<<chunkShift - s.next; rest > 0; {
			fc := classOf[rest]
			if classSize[fc] > rest {
				fc--
			}
			s.free[fc] = append(s.free[fc], s.next)
			s.next += classSize[fc]
			rest -= classSize[fc]
		}
		s.chunks = append(s.chunks, make([]peer[A], chunkLen))
		s.next = uint32(len(s.chunks)-1) << chunkShift
	}
	off := s.next
	s.next += size
	return off
}

func (s *slab[A]) release(sg seg) {
	switch sg.cls {
	case noClass:
	case bigClass:
		s.slots -= uint64(cap(s.big[sg.off]))
		s.big[sg.off] = nil
		s.bigFree = append(s.bigFree, sg.off)
	default:
		s.slots -= uint64(classSize[sg.cls])
		s.free[sg.cls] = append(s.free[sg.cls], sg.off)
	}
}

// move puts ps (which may be inside the old segment) into a new segment
// with room for at least want records and releases the old one.
func (s *slab[A]) move(sg *seg, want uint32) {
	old := *sg
	ps := s.view(old)
	var nw seg
	nw.n = old.n
	if want > chunkLen {
		nw.cls = bigClass
		b := make([]peer[A], len(ps), want+want/4)
		copy(b, ps)
		s.slots += uint64(cap(b))
		if n := len(s.bigFree); n > 0 {
			nw.off = s.bigFree[n-1]
			s.bigFree = s.bigFree[:n-1]
			s.big[nw.off] = b
		} else {
			nw.off = uint32(len(s.big))
			s.big = append(s.big, b)
		}
	} else if want > 0 {
		nw.cls = classOf[want]
		nw.off = s.alloc(nw.cls)
		copy(s.view(nw), ps)
	}
	s.release(old)
	*sg = nw
}

// insert puts p at position i of the segment, growing it when full.
func (s *slab[A]) insert(sg *seg, i int, p *peer[A]) {
	if sg.cls == noClass || sg.n == s.capOf(*sg) {
		s.move(sg, sg.n+1)
	}
	sg.n++
	ps := s.view(*sg)
	copy(ps[i+1:], ps[i:len(ps)-1])
	ps[i] = *p
}

// remove deletes position i of the segment.
func (s *slab[A]) remove(sg *seg, i int) {
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
		if sg.n <= uint32(cap(s.big[sg.off]))/4 {
			s.move(sg, sg.n+sg.n/4)
		}
	case sg.cls > 1 && sg.n*4 <= classSize[sg.cls]:
		s.move(sg, sg.n+sg.n/4)
	}
}
