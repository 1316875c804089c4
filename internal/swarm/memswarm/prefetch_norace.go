//go:build !race

package memswarm

import (
	"unsafe"

	"github.com/starling-tracker/starling/internal/swarm"
)

// prefetchRecords bounds the hot copies of a chunk segment one announce
// warms: findHot scans up to linearMax of them.
const prefetchRecords = linearMax

// prefetch warms the caches for up to prefetchBatch announces (see
// Prefetch for why its unlocked reads are safe), in four steps, each over
// the whole batch: the index slots, the torrent records, the swarms'
// segments (the hot copies of a chunk segment's first peers, a big
// swarm's index slot of the peer), and the peer's record (found in the
// hot copies of a chunk segment, or through the index slot of a big
// swarm, where the peers its answer will hold are loaded too). Each step
// first lists the cache lines to load (from what the step before loaded,
// now in the cache) and then loads them in a loop of a few instructions
// (lineList): the processor then has dozens of those loads in flight at
// once. Loading each line where its address is worked out put a hundred
// instructions between two loads, so only three or four misses overlapped
// and the pass waited for the rest one by one.
//
// Bounds are compared as unsigned: on 32-bit platforms a racy read of a
// 64-bit slot can be torn, and int of a large uint32 would be negative.
func (s *Store) prefetch(hints []swarm.Hint) uint64 {
	var (
		views [prefetchBatch]*prefetchView
		hv    [prefetchBatch]uint64
		segs  [prefetchBatch]seg
		lee   [prefetchBatch]uint32   // the torrent's leechers; 0 when it has both families
		parts [prefetchBatch][]uint64 // a big swarm's index part of the peer
		tags  [prefetchBatch]uint32
		sv4   [prefetchBatch]*slabView[[4]byte] // the slab view step 3 used, for step 4
		sv6   [prefetchBatch]*slabView[[16]byte]
		lines lineList
	)
	// The index slots.
	for k := range hints {
		h := &hints[k].InfoHash
		v := s.shard(h).view.Load()
		if v == nil || len(v.slots) == 0 {
			continue
		}
		views[k] = v
		hv[k] = hashInfo(h, v.seed)
		lines.addProbe(v.slots, hv[k])
	}
	lines.load()
	// The torrent records.
	var tpos [prefetchBatch]uint32
	for k := range hints {
		v := views[k]
		if v == nil {
			continue
		}
		e := probeTag(v.slots, hv[k])
		if i := uint32(e) - 1; e != 0 && uint(i) < uint(len(v.torrents)) {
			tpos[k] = i + 1
			// A 60-byte record spans at most two lines: its first and last
			// bytes load both.
			t := &v.torrents[i]
			lines.add(unsafe.Pointer(t))
			lines.add(unsafe.Pointer(&t.completed))
		}
	}
	lines.load()
	// The segments: the hot copies of a chunk segment's first peers, or a
	// big swarm's index slot of the peer.
	for k := range hints {
		if tpos[k] == 0 {
			continue
		}
		t := &views[k].torrents[tpos[k]-1]
		sh := s.shard(&hints[k].InfoHash)
		a := hints[k].Addr
		// A seeder's sample is the family's leechers (bigSeg.leechers,
		// not readable here); the torrent's count is that only when the
		// torrent has one family.
		p4, p6 := t.p4, t.p6
		if p4.n == 0 || p6.n == 0 {
			lee[k] = t.leechers
		}
		if ip := a.Addr(); ip.Is4() {
			segs[k], sv4[k] = p4, sh.p4.pview.Load()
			ip4 := ip.As4()
			parts[k], tags[k] = listSeg(&lines, sv4[k], segs[k], &ip4, a.Port())
		} else {
			segs[k], sv6[k] = p6, sh.p6.pview.Load()
			ip16 := ip.As16()
			parts[k], tags[k] = listSeg(&lines, sv6[k], segs[k], &ip16, a.Port())
		}
	}
	lines.load()
	// The peer's record, which update writes: in a chunk segment found
	// among the hot copies step 3 loaded; in a big swarm through its index
	// slot, with the peers its answer will hold.
	for k := range hints {
		if segs[k].cls != bigClass {
			a := hints[k].Addr
			if ip := a.Addr(); ip.Is4() {
				ip4 := ip.As4()
				listChunkPeer(&lines, sv4[k], segs[k], &ip4, a.Port())
			} else {
				ip16 := ip.As16()
				listChunkPeer(&lines, sv6[k], segs[k], &ip16, a.Port())
			}
			continue
		}
		pos := -1
		if len(parts[k]) > 0 {
			if e := probeTag(parts[k], uint64(tags[k])); e != 0 {
				pos = int(uint32(e) - 1)
			}
		}
		if hints[k].Addr.Addr().Is4() {
			listBig(&lines, sv4[k], segs[k], pos, &hints[k], lee[k])
		} else {
			listBig(&lines, sv6[k], segs[k], pos, &hints[k], lee[k])
		}
	}
	lines.load()
	return lines.sink
}

// lineList is the cache lines one step of prefetch loads. A full list is
// loaded at once, so a step of any size needs no more room.
type lineList struct {
	p    [512]unsafe.Pointer
	n    int
	sink uint64
}

func (l *lineList) add(p unsafe.Pointer) {
	if l.n == len(l.p) {
		l.load()
	}
	l.p[l.n] = p
	l.n++
}

// addProbe lists the lines probeTag reads for hash h: the home slot's,
// and the next one when the probe runs past it (three homes in eight).
// Without it, the probe in the next step waited for memory there: a
// quarter of the prefetch pass's time in the skewed UDP profile, whose
// big swarms' index parts are 4 MB.
func (l *lineList) addProbe(slots []uint64, h uint64) {
	mask := len(slots) - 1
	first := unsafe.Pointer(&slots[int(h)&mask])
	last := unsafe.Pointer(&slots[(int(h)+probeSlots-1)&mask])
	l.add(first)
	if uintptr(last)&^63 != uintptr(first)&^63 {
		l.add(last)
	}
}

// addSpan lists every line of the size bytes from p on.
func (l *lineList) addSpan(p unsafe.Pointer, size uintptr) {
	for off := uintptr(0); off < size; off += 64 {
		l.add(unsafe.Add(p, off))
	}
	l.add(unsafe.Add(p, size-1)) // the last line, when p is not aligned
}

// load reads one byte of each listed line; the loop is a handful of
// instructions, so many of its loads are in flight at once.
func (l *lineList) load() {
	var x uint64
	for _, p := range l.p[:l.n] {
		x += uint64(*(*byte)(p))
	}
	l.sink += x
	l.n = 0
}

// listSeg lists the hot copies of a chunk segment's first peers (what
// findHot scans and an answer without ids reads), or, in a big segment, the
// index slot of the peer, and then returns the peer's index part and hash
// tag for listBig.
func listSeg[A addr](l *lineList, v *slabView[A], sg seg, ip *A, port uint16) ([]uint64, uint32) {
	if v == nil {
		return nil, 0
	}
	if sg.cls == bigClass {
		if uint(sg.off) >= uint(len(v.big)) {
			return nil, 0
		}
		x := &v.big[sg.off].idx
		tag := uint32(hashPeer(ip, port, v.seed))
		k := uint(tag >> x.shift)
		if k >= uint(len(x.dir)) || uint(x.dir[k]) >= uint(len(x.parts)) {
			return nil, 0
		}
		s := x.parts[x.dir[k]]
		if len(s) == 0 {
			return nil, 0
		}
		l.addProbe(s, uint64(tag))
		return s, tag
	}
	if sg.cls == noClass {
		return nil, 0
	}
	if hs := chunkHot(v, sg); len(hs) > 0 {
		l.addSpan(unsafe.Pointer(&hs[0]), uintptr(len(hs))*unsafe.Sizeof(hs[0]))
	}
	return nil, 0
}

// chunkHot is the hot copies of the first min(n, prefetchRecords) peers
// of the chunk segment sg in v, cut to the chunk's bounds (empty when sg
// is not a chunk segment or its chunk is not in v).
func chunkHot[A addr](v *slabView[A], sg seg) []hotPeer[A] {
	if v == nil || sg.cls == noClass || sg.cls == bigClass {
		return nil
	}
	c, o := uint(sg.off>>chunkShift), uint(sg.off&(chunkLen-1))
	if c >= uint(len(v.hot)) {
		return nil
	}
	hs := v.hot[c]
	if o >= uint(len(hs)) {
		return nil
	}
	return hs[o : o+min(uint(min(sg.n, prefetchRecords)), uint(len(hs))-o)]
}

// listChunkPeer lists the record of the peer (ip, port) in the chunk
// segment sg, looked up in the hot copies listSeg loaded (a peer past the
// first prefetchRecords, or not stored yet, is not listed).
func listChunkPeer[A addr](l *lineList, v *slabView[A], sg seg, ip *A, port uint16) {
	hs := chunkHot(v, sg)
	if len(hs) == 0 {
		return
	}
	j, ok := findHot(hs, ip, port)
	if !ok {
		return
	}
	c, q := uint(sg.off>>chunkShift), uint(sg.off&(chunkLen-1))+uint(j)
	if c >= uint(len(v.chunks)) {
		return
	}
	if ps := v.chunks[c]; q < uint(len(ps)) {
		l.addSpan(unsafe.Pointer(&ps[q]), unsafe.Sizeof(ps[0]))
	}
}

// warmWant bounds the peers of one answer listBig loads: the tracker's
// default max_peers_per_announce (a num_want of 0 or less gets that many).
const warmWant = 74

// listBig lists, in the big segment sg, record pos (the announcing peer,
// -1 for a new one) and its hot copy, and the hot copies that pick will
// walk for the announce of h (see pickRuns and pickHot), from the start
// its Sample gives: one entry per cache line. leechers is the length of a
// seeder's sample; 0 when unknown, and then a seeder's sample is not
// loaded.
func listBig[A addr](l *lineList, v *slabView[A], sg seg, pos int, h *swarm.Hint, leechers uint32) {
	if v == nil || uint(sg.off) >= uint(len(v.big)) {
		return
	}
	b := &v.big[sg.off]
	if pos >= 0 {
		if c := pos >> blockShift; c < len(b.blocks) && c < len(b.hot) {
			if ps, hs := b.blocks[c], b.hot[c]; pos&blockMask < len(ps) && pos&blockMask < len(hs) {
				l.addSpan(unsafe.Pointer(&ps[pos&blockMask]), unsafe.Sizeof(ps[0]))
				l.add(unsafe.Pointer(&hs[pos&blockMask]))
			}
		}
	}
	if h.Sample == 0 {
		return
	}
	n := uint64(sg.n)
	if h.Seeder {
		n = uint64(min(leechers, sg.n)) // 0 (nothing to load) when unknown
	}
	want := uint64(h.NumWant)
	if h.NumWant <= 0 || want > warmWant {
		want = warmWant
	}
	m := min(want+8, n) // as pickRuns reads
	if m == 0 {
		return
	}
	i := (h.Sample & 0xffffffff) * n >> 32
	step := uint64(64 / unsafe.Sizeof(hotPeer[A]{}))
	for j := uint64(0); ; j += step {
		j = min(j, m-1) // the last entry's line too
		p := i + j
		if p >= n {
			p -= n
		}
		if c := p >> blockShift; c < uint64(len(b.hot)) {
			if hs := b.hot[c]; p&blockMask < uint64(len(hs)) {
				l.add(unsafe.Pointer(&hs[p&blockMask]))
			}
		}
		if j == m-1 {
			return
		}
	}
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
