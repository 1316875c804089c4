//go:build !race

package memswarm

import (
	"unsafe"

	"github.com/starling-tracker/starling/internal/swarm"
)

// prefetchRecords bounds the records of a chunk segment one announce
// warms: find scans up to linearMax of them.
const prefetchRecords = linearMax

// prefetch warms the caches for up to prefetchBatch announces (see
// Prefetch for why its unlocked reads are safe).
//
// Bounds are compared as unsigned: on 32-bit platforms a racy read of a
// 64-bit slot can be torn, and int of a large uint32 would be negative.
func (s *Store) prefetch(hints []swarm.Hint) uint64 {
	var (
		views [prefetchBatch]*prefetchView
		slots [prefetchBatch]uint64
		segs  [prefetchBatch]seg
		lee   [prefetchBatch]uint32
		pos   [prefetchBatch]int
		sink  uint64
	)
	// The index slots.
	for k := range hints {
		h := &hints[k].InfoHash
		v := s.shard(h).view.Load()
		views[k] = v
		if v == nil {
			continue
		}
		slots[k] = probeTag(v.slots, hashInfo(h, v.seed))
	}
	// The torrent records, and the segment of the announcing peer's family.
	for k := range hints {
		v, e := views[k], slots[k]
		if v == nil || e == 0 {
			continue
		}
		if i := uint32(e) - 1; uint(i) < uint(len(v.torrents)) {
			t := &v.torrents[i]
			if hints[k].Addr.Addr().Is4() {
				segs[k] = t.p4
			} else {
				segs[k] = t.p6
			}
			lee[k] = t.leechers
			// A 60-byte record spans at most two lines: its first byte
			// and its last field load both (shard.get compares the hash,
			// pick reads the counts).
			sink += uint64(t.hash[0]) + uint64(t.completed)
		}
	}
	// The segments: a chunk segment's first records, or a big swarm's
	// index slot of the peer.
	for k := range hints {
		if segs[k].cls == noClass {
			continue
		}
		sh := s.shard(&hints[k].InfoHash)
		a := hints[k].Addr
		if ip := a.Addr(); ip.Is4() {
			ip4 := ip.As4()
			var x uint64
			x, pos[k] = warmSeg(sh.p4.pview.Load(), segs[k], &ip4, a.Port())
			sink += x
		} else {
			ip16 := ip.As16()
			var x uint64
			x, pos[k] = warmSeg(sh.p6.pview.Load(), segs[k], &ip16, a.Port())
			sink += x
		}
	}
	// A big swarm's record of the peer, found through its index slot, and
	// the peers its answer will hold.
	for k := range hints {
		if segs[k].cls != bigClass {
			continue
		}
		sh := s.shard(&hints[k].InfoHash)
		if hints[k].Addr.Addr().Is4() {
			v := sh.p4.pview.Load()
			sink += warmBig(v, segs[k], pos[k]) + warmSample(v, segs[k], &hints[k], lee[k])
		} else {
			v := sh.p6.pview.Load()
			sink += warmBig(v, segs[k], pos[k]) + warmSample(v, segs[k], &hints[k], lee[k])
		}
	}
	return sink
}

// warmWant bounds the peers of one answer warmSample loads.
const warmWant = 64

// warmSample loads the hot copies that pick will walk for the announce of
// h in its big segment sg (see pickRuns and pickHot), from the start its
// Sample gives: one entry per cache line. leechers is the torrent's count,
// the length of a seeder's sample.
func warmSample[A addr](v *slabView[A], sg seg, h *swarm.Hint, leechers uint32) uint64 {
	if v == nil || h.Sample == 0 || uint(sg.off) >= uint(len(v.big)) {
		return 0
	}
	n := uint64(sg.n)
	if h.Seeder {
		n = uint64(min(leechers, sg.n))
	}
	want := uint64(h.NumWant)
	if h.NumWant <= 0 || want > warmWant {
		want = warmWant
	}
	m := min(want+8, n) // as pickRuns reads
	if m == 0 {
		return 0
	}
	hot := v.big[sg.off].hot
	i := (h.Sample & 0xffffffff) * n >> 32
	step := uint64(64 / unsafe.Sizeof(hotPeer[A]{}))
	var sink uint64
	for j := uint64(0); ; j += step {
		j = min(j, m-1) // the last entry's line too
		p := i + j
		if p >= n {
			p -= n
		}
		if b := p >> blockShift; b < uint64(len(hot)) {
			if blk := hot[b]; p&blockMask < uint64(len(blk)) {
				sink += uint64(blk[p&blockMask].port)
			}
		}
		if j == m-1 {
			return sink
		}
	}
}

// warmSeg loads the first records of a chunk segment, or the peer's index
// slot in a big segment and returns the position the slot names (-1 when
// there is none to load).
func warmSeg[A addr](v *slabView[A], sg seg, ip *A, port uint16) (sink uint64, pos int) {
	if v == nil {
		return 0, -1
	}
	if sg.cls == bigClass {
		if uint(sg.off) >= uint(len(v.big)) {
			return 0, -1
		}
		x := &v.big[sg.off].idx
		tag := uint32(hashPeer(ip, port, v.seed))
		k := int(tag >> x.shift)
		if k >= len(x.dir) || uint(x.dir[k]) >= uint(len(x.parts)) {
			return 0, -1
		}
		s := x.parts[x.dir[k]]
		if len(s) == 0 {
			return 0, -1
		}
		e := probeTag(s, uint64(tag))
		if e == 0 {
			// A new peer (or one further along the probe run): its slots
			// are now loaded, there is no record to load.
			return uint64(len(s)), -1
		}
		return e, int(uint32(e) - 1)
	}
	c, o := int(sg.off>>chunkShift), int(sg.off&(chunkLen-1))
	if c >= len(v.chunks) || v.chunks[c] == nil {
		return 0, -1
	}
	ps := v.chunks[c]
	end := min(o+int(min(sg.n, prefetchRecords)), len(ps))
	for i := o; i < end; i++ {
		// A record's first and last bytes that find and pick read.
		sink += uint64(ps[i].port) + uint64(ps[i].id[len(ps[i].id)-1])
	}
	return sink, -1
}

// warmBig loads record pos of a big segment and its hot copy (update
// writes both).
func warmBig[A addr](v *slabView[A], sg seg, pos int) uint64 {
	if v == nil || pos < 0 || uint(sg.off) >= uint(len(v.big)) {
		return 0
	}
	var sink uint64
	b := &v.big[sg.off]
	if c := pos >> blockShift; c < len(b.blocks) {
		if ps := b.blocks[c]; pos&blockMask < len(ps) {
			p := &ps[pos&blockMask]
			sink += uint64(p.port) + uint64(p.left)
		}
	}
	if c := pos >> blockShift; c < len(b.hot) {
		if hs := b.hot[c]; pos&blockMask < len(hs) {
			sink += uint64(hs[pos&blockMask].port)
		}
	}
	return sink
}

// probeSlots is how many slots from its home probeTag looks at: with
// linear probing at most 3/4 full, an entry is often a few slots past its
// home (a third of the torrents of the UDP uniform profile were), and the
// next slots are mostly on the same cache line.
const probeSlots = 4

// probeTag returns the entry among the probeSlots slots from the home of
// hash h whose tag is h's low 32 bits, or 0. It does not branch on what it
// reads, so a batch's probes do not wait for each other.
func probeTag(slots []uint64, h uint64) uint64 {
	mask := len(slots) - 1
	tag := uint32(h)
	var found uint64
	for k := range probeSlots {
		e := slots[(int(h)+k)&mask]
		// An empty slot whose tag matches (a tag of 0) gives 0 too.
		if uint32(e>>32) == tag {
			found = e
		}
	}
	return found
}
