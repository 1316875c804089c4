package memswarm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

func TestClasses(t *testing.T) {
	if classSize[1] != 1 || classSize[len(classSize)-1] != maxSeg || chunkLen%maxSeg != 0 {
		t.Fatalf("classes run from %d to %d, want 1 to %d (dividing %d)", classSize[1], classSize[len(classSize)-1], maxSeg, chunkLen)
	}
	for n := 1; n <= maxSeg; n++ {
		c := classOf[n]
		if classSize[c] < uint32(n) || classSize[c-1] >= uint32(n) {
			t.Fatalf("classOf[%d] = %d (size %d), not the smallest class that fits", n, c, classSize[c])
		}
		// Above 8 records a class wastes at most a quarter of its size.
		if n > 8 && float64(classSize[c]) > 1.25*float64(n) {
			t.Fatalf("class for %d records holds %d", n, classSize[c])
		}
	}
}

// checkInvariants checks every shard's bookkeeping against a recount:
// segments inside their chunk and disjoint from each other and from the
// free lists, per-chunk live counts, peers sorted and unique, hot copies
// equal to their records (chunk and big segments), chunks and hot chunks
// allocated together and published together, torrent, shard and index
// counts.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	for k := range s.shards {
		sh := &s.shards[k]
		sh.mu.Lock()
		var seeders, leechers, completed, torrents uint64
		for i := range sh.torrents {
			tr := &sh.torrents[i]
			if !tr.live {
				continue
			}
			torrents++
			if j, ok := sh.index.get(&tr.hash, sh.torrents); !ok || j != i {
				t.Fatalf("shard %d: torrent %d not indexed by its hash", k, i)
			}
			var se, le uint32
			countSeg(t, &sh.p4, tr.p4, &se, &le)
			countSeg(t, &sh.p6, tr.p6, &se, &le)
			if se != tr.seeders || le != tr.leechers {
				t.Fatalf("shard %d torrent %d: counts %d/%d, recount %d/%d", k, i, tr.seeders, tr.leechers, se, le)
			}
			seeders += uint64(se)
			leechers += uint64(le)
			completed += uint64(tr.completed)
		}
		entries := 0
		for _, v := range sh.index.slots {
			if v != 0 {
				entries++
			}
		}
		if entries != sh.index.n {
			t.Fatalf("shard %d: index counts %d entries, holds %d", k, sh.index.n, entries)
		}
		if torrents != sh.nTorrents || sh.index.n != int(torrents) || seeders != sh.seeders ||
			leechers != sh.leechers || completed != sh.completed {
			t.Fatalf("shard %d: totals %d/%d/%d/%d (index %d), recount %d/%d/%d/%d", k, sh.nTorrents, sh.seeders,
				sh.leechers, sh.completed, sh.index.n, torrents, seeders, leechers, completed)
		}
		checkSlab(t, &sh.p4, sh.torrents, func(tr *torrent) seg { return tr.p4 })
		checkSlab(t, &sh.p6, sh.torrents, func(tr *torrent) seg { return tr.p6 })
		sh.mu.Unlock()
	}
}

func countSeg[A addr](t *testing.T, sl *slab[A], sg seg, se, le *uint32) {
	t.Helper()
	if sg.cls != noClass && sg.n == 0 {
		t.Fatalf("empty segment of class %d kept", sg.cls)
	}
	if sg.cls == bigClass {
		checkBig(t, sl, sg)
	}
	for i := range int(sg.n) {
		p := sl.at(sg, i)
		if sg.cls != bigClass {
			if h := sl.hotView(sg)[i]; h != hotOf(p) || *sl.hotAt(sg, i) != h {
				t.Fatalf("chunk segment at %d: hot copy %d of %d is %+v, record %+v", sg.off, i, sg.n, h, hotOf(p))
			}
		}
		if sg.cls != bigClass && i > 0 && !sl.at(sg, i-1).less(&p.ip, p.port) {
			t.Fatalf("peers out of order or duplicated at %d", i)
		}
		if p.port == 0 {
			t.Fatal("a peer with port 0 is stored")
		}
		if p.seeder() {
			*se++
		} else {
			*le++
		}
	}
}

// checkBig checks a big segment: its blocks (all of blockLen but a lone
// one, not more than needed, hot copies matching the records) and its
// index: a directory consistent with the parts' depths, parts at most 2/3
// full holding exactly the peers, each reachable from its home slot
// without crossing an empty slot.
func checkBig[A addr](t *testing.T, sl *slab[A], sg seg) {
	t.Helper()
	b := &sl.big[sg.off]
	if len(b.blocks) != len(b.hot) || len(b.blocks) == 0 {
		t.Fatalf("%d blocks and %d hot blocks", len(b.blocks), len(b.hot))
	}
	for k := range b.blocks {
		if len(b.blocks[k]) != len(b.hot[k]) || len(b.blocks) > 1 && len(b.blocks[k]) != blockLen || len(b.blocks[k]) > blockLen {
			t.Fatalf("block %d of %d holds %d records, %d hot copies", k, len(b.blocks), len(b.blocks[k]), len(b.hot[k]))
		}
	}
	if k := len(b.blocks); sg.n > b.capacity() || k > 1 && sg.n+blockLen/2 <= uint32(k-1)*blockLen {
		t.Fatalf("%d blocks (capacity %d) for %d peers", k, b.capacity(), sg.n)
	}
	x := &b.idx
	if len(x.dir) != 1<<x.depth || x.shift != 32-x.depth || len(x.parts) != len(x.meta) {
		t.Fatalf("directory of %d entries, depth %d, shift %d, %d parts, %d metas", len(x.dir), x.depth, x.shift, len(x.parts), len(x.meta))
	}
	// Each part of depth d is named by one aligned run of 1<<(depth-d)
	// directory entries.
	named := make([]int, len(x.parts))
	for k := 0; k < len(x.dir); {
		p := x.dir[k]
		run := 1 << (x.depth - x.meta[p].depth)
		if k%run != 0 {
			t.Fatalf("part %d of depth %d named from directory entry %d", p, x.meta[p].depth, k)
		}
		for j := k; j < k+run; j++ {
			if x.dir[j] != p {
				t.Fatalf("directory entries %d..%d should all name part %d", k, k+run-1, p)
			}
		}
		named[p]++
		k += run
	}
	entries := 0
	for p, s := range x.parts {
		if named[p] != 1 {
			t.Fatalf("part %d named by %d runs of the directory", p, named[p])
		}
		if len(s) < minPartSlots || len(s)&(len(s)-1) != 0 || int(x.meta[p].n)*3 > len(s)*2 {
			t.Fatalf("part %d: %d slots for %d entries", p, len(s), x.meta[p].n)
		}
		n := 0
		for _, v := range s {
			if v == 0 {
				continue
			}
			n++
			if uint32(v) > sg.n || uint32(v) == 0 {
				t.Fatalf("index entry %d beyond the %d peers", v, sg.n)
			}
			if x.dir[uint32(v>>32)>>x.shift] != uint32(p) {
				t.Fatalf("entry %x in part %d, its tag names part %d", v, p, x.dir[uint32(v>>32)>>x.shift])
			}
		}
		if n != int(x.meta[p].n) {
			t.Fatalf("part %d counts %d entries, holds %d", p, x.meta[p].n, n)
		}
		entries += n
	}
	if entries != int(sg.n) {
		t.Fatalf("index has %d entries for %d peers", entries, sg.n)
	}
	for i := range sg.n {
		p := b.at(i)
		h := hashPeer(&p.ip, p.port, sl.seed)
		if part, j, pos := b.lookup(h, &p.ip, p.port); pos != int(i) || x.parts[part][j] != entry(h, int(i)) {
			t.Fatalf("peer %d found at %d (duplicate or lost index entry)", i, pos)
		}
		if *b.hotAt(i) != hotOf(p) {
			t.Fatalf("hot copy %d is %+v, record %+v", i, *b.hotAt(i), hotOf(p))
		}
		if p.seeder() != (i >= b.leechers) {
			t.Fatalf("peer %d of %d (seeder %v) is on the wrong side of the %d leechers", i, sg.n, p.seeder(), b.leechers)
		}
	}
	if b.leechers > sg.n {
		t.Fatalf("%d leechers counted among %d peers", b.leechers, sg.n)
	}
}

func checkSlab[A addr](t *testing.T, sl *slab[A], ts []torrent, segOf func(*torrent) seg) {
	t.Helper()
	if len(sl.hot) != len(sl.chunks) {
		t.Fatalf("%d chunks, %d hot chunks", len(sl.chunks), len(sl.hot))
	}
	for c := range sl.chunks {
		if (sl.chunks[c] == nil) != (sl.hot[c] == nil) || sl.chunks[c] != nil && (len(sl.chunks[c]) != chunkLen || len(sl.hot[c]) != chunkLen) {
			t.Fatalf("chunk %d holds %d records (nil %v), %d hot copies (nil %v)", c,
				len(sl.chunks[c]), sl.chunks[c] == nil, len(sl.hot[c]), sl.hot[c] == nil)
		}
	}
	if sl.pview != nil {
		// Prefetch reads the chunks and hot copies of the published view.
		v := sl.pview.Load()
		if v == nil && len(sl.chunks) > 0 || v != nil && (len(v.chunks) != len(sl.chunks) || len(v.hot) != len(sl.hot)) {
			t.Fatalf("published view does not hold the slab's %d chunks", len(sl.chunks))
		}
		for c := range sl.chunks {
			if (sl.chunks[c] == nil) != (v.chunks[c] == nil) || (sl.hot[c] == nil) != (v.hot[c] == nil) ||
				sl.chunks[c] != nil && (&sl.chunks[c][0] != &v.chunks[c][0] || &sl.hot[c][0] != &v.hot[c][0]) {
				t.Fatalf("published view holds other memory for chunk %d", c)
			}
		}
	}
	owner := make([][]int8, len(sl.chunks)) // 1 live, 2 free, per slot
	for c := range sl.chunks {
		if sl.chunks[c] != nil {
			owner[c] = make([]int8, chunkLen)
		}
	}
	mark := func(off, size uint32, what int8) {
		c, o := off>>chunkShift, off&(chunkLen-1)
		if int(c) >= len(owner) || owner[c] == nil || o+size > chunkLen {
			t.Fatalf("segment at %d size %d outside its chunk", off, size)
		}
		for j := o; j < o+size; j++ {
			if owner[c][j] != 0 {
				t.Fatalf("slot %d of chunk %d is both %d and %d", j, c, owner[c][j], what)
			}
			owner[c][j] = what
		}
	}
	live := make([]uint32, len(sl.chunks))
	var slots uint64
	bigs := 0
	for i := range ts {
		sg := segOf(&ts[i])
		switch {
		case !ts[i].live || sg.cls == noClass:
		case sg.cls == bigClass:
			bigs++
			if sg.n <= maxSeg/4 {
				t.Fatalf("big segment holds only %d peers", sg.n)
			}
		default:
			mark(sg.off, classSize[sg.cls], 1)
			live[sg.off>>chunkShift] += classSize[sg.cls]
			slots += uint64(classSize[sg.cls])
		}
	}
	for c, f := range sl.free {
		for _, off := range f {
			mark(off, classSize[c], 2)
		}
	}
	for c := range live {
		if live[c] != sl.live[c] {
			t.Fatalf("chunk %d: live %d, recount %d", c, sl.live[c], live[c])
		}
	}
	if slots != sl.slots {
		t.Fatalf("slots %d, recount %d", sl.slots, slots)
	}
	for _, c := range sl.spare {
		if live[c] != 0 {
			t.Fatalf("spare chunk %d holds live segments", c)
		}
		for _, o := range owner[c] {
			if o != 0 {
				t.Fatalf("spare chunk %d has free-list entries", c)
			}
		}
	}
	if got := len(sl.big) - len(sl.bigFree); got != bigs {
		t.Fatalf("%d big slices in use, %d torrents with one", got, bigs)
	}
}

// TestSlabStress drives one shard (so every torrent shares the slabs)
// through growth, churn, a swarm that grows past a chunk and shrinks
// back, and sweeps, checking the bookkeeping and the counts against a
// plain map after every phase.
func TestSlabStress(t *testing.T) {
	s := NewSharded(swarm.Options{RemovePeerlessTorrents: true}, 0)
	ctx := context.Background()
	type key struct {
		h    int
		addr netip.AddrPort
	}
	type rec struct{ left, now int64 }
	want := map[key]rec{}
	var resp bittorrent.AnnounceResponse
	announce := func(h int, addr netip.AddrPort, left int64, ev bittorrent.Event, now int64) {
		a := swarmtest.Announce(swarmtest.Hash(h), swarmtest.PeerID(h), addr, now)
		a.Left, a.Event, a.NumWant = left, ev, 5
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			t.Fatal(err)
		}
		if ev == bittorrent.EventStopped {
			delete(want, key{h, addr})
		} else {
			want[key{h, addr}] = rec{left, now}
		}
	}
	verify := func(phase string) {
		t.Helper()
		checkInvariants(t, s)
		var counts [2000]bittorrent.SwarmStats
		for k, r := range want {
			if r.left == 0 {
				counts[k.h].Seeders++
			} else {
				counts[k.h].Leechers++
			}
		}
		hashes := make([]bittorrent.InfoHash, len(counts))
		for h := range hashes {
			hashes[h] = swarmtest.Hash(h)
		}
		out, _ := s.Scrape(ctx, hashes, nil)
		for h := range out {
			if out[h] != counts[h] {
				t.Fatalf("%s: torrent %d scrape %+v, want %+v", phase, h, out[h], counts[h])
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	addrOf := func(i int) netip.AddrPort {
		if i%4 == 0 {
			return swarmtest.Addr6(i, uint16(1+i%7))
		}
		return swarmtest.Addr4(i, uint16(1+i%7))
	}
	// Growth: 60,000 peers over 1,000 torrents, all at once.
	for i := range 60000 {
		announce(rng.IntN(1000), addrOf(i), int64(i%2), bittorrent.EventStarted, 100)
	}
	verify("growth")
	if ev := s.shards[0].p4.evacuations; ev == 0 {
		t.Errorf("growth evacuated no chunk")
	}
	if sl := &s.shards[0].p4; sl.capSlots > sl.slots+sl.slots/4+2*chunkLen {
		t.Errorf("after growth: %d slots allocated for %d live", sl.capSlots, sl.slots)
	}
	// Churn: peers leave and others join.
	for i := range 40000 {
		if i%2 == 0 {
			for k := range want {
				announce(k.h, k.addr, 0, bittorrent.EventStopped, 101)
				break
			}
		} else {
			announce(rng.IntN(1000), addrOf(100000+i), 1, bittorrent.EventNone, 101)
		}
		if i%10000 == 0 {
			verify(fmt.Sprintf("churn %d", i))
		}
	}
	verify("churn")
	// A swarm grows past the largest class and shrinks back.
	for i := range 3 * maxSeg {
		announce(1500, addrOf(200000+i), 1, bittorrent.EventStarted, 102)
	}
	verify("big")
	for i := range 3*maxSeg - 20 {
		announce(1500, addrOf(200000+i), 1, bittorrent.EventStopped, 102)
	}
	verify("big shrunk")
	// Sweep the peers of time 100 (about half), then everything.
	r, err := s.Sweep(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	swept := 0
	for k, w := range want {
		if w.now <= 100 {
			delete(want, k)
			swept++
		}
	}
	if r.Peers != swept {
		t.Errorf("sweep at 100 removed %d peers, want %d", r.Peers, swept)
	}
	verify("sweep 100")
	if _, err := s.Sweep(ctx, 200); err != nil {
		t.Fatal(err)
	}
	clear(want)
	verify("sweep all")
	if tot, _ := s.Totals(ctx); tot != (swarm.Totals{}) {
		t.Errorf("totals after sweeping everything: %+v", tot)
	}
	if sl := &s.shards[0].p4; sl.capSlots > chunkLen {
		t.Errorf("after sweeping everything %d slots are still allocated", sl.capSlots)
	}
}

// TestBigSwarm churns one torrent far beyond a chunk, in both families, with
// peers joining, changing, leaving and being swept in random order, and
// checks the unordered big segments and their indexes against a plain map.
func TestBigSwarm(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	ctx := context.Background()
	h := swarmtest.Hash(7)
	rng := rand.New(rand.NewPCG(5, 6))
	type rec struct{ left, now int64 }
	want := map[netip.AddrPort]rec{}
	var resp bittorrent.AnnounceResponse
	addrOf := func(i int) netip.AddrPort {
		// Few ports on few addresses: neighbouring keys probe the same
		// index runs.
		if i%3 == 0 {
			return swarmtest.Addr6(i/8, uint16(1+i%8))
		}
		return swarmtest.Addr4(i/8, uint16(1+i%8))
	}
	now := int64(100)
	announce := func(addr netip.AddrPort, left int64, ev bittorrent.Event) {
		a := swarmtest.Announce(h, swarmtest.PeerID(1), addr, now)
		a.Left, a.Event, a.NumWant = left, ev, 30
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			t.Fatal(err)
		}
		if ev == bittorrent.EventStopped {
			delete(want, addr)
		} else {
			want[addr] = rec{left, now}
		}
		for _, p := range append(resp.Peers4, resp.Peers6...) {
			if _, ok := want[p.Addr]; !ok || p.Addr == addr {
				t.Fatalf("handed out %v, which is not a peer or is the requester", p.Addr)
			}
		}
	}
	verify := func(phase string) {
		t.Helper()
		checkInvariants(t, s)
		tor, ok, _ := s.Torrent(ctx, h)
		if !ok && len(want) > 0 {
			t.Fatalf("%s: torrent gone", phase)
		}
		if len(tor.Peers) != len(want) {
			t.Fatalf("%s: %d peers stored, want %d", phase, len(tor.Peers), len(want))
		}
		for i, p := range tor.Peers {
			w, ok := want[p.Addr]
			if !ok || w.left != p.Left || w.now != p.Updated {
				t.Fatalf("%s: stored %+v, want %+v (present %v)", phase, p, w, ok)
			}
			if i > 0 && p.Addr.Addr().Is4() == tor.Peers[i-1].Addr.Addr().Is4() && tor.Peers[i-1].Addr.Compare(p.Addr) >= 0 {
				t.Fatalf("%s: Torrent's peers out of address order at %d", phase, i)
			}
		}
	}
	const pool = 60000
	for i := range 3 * chunkLen * 3 / 2 {
		announce(addrOf(rng.IntN(pool)), int64(i%2), bittorrent.EventStarted)
	}
	verify("growth")
	if sh := &s.shards[0]; sh.torrents[0].p4.cls != bigClass || sh.torrents[0].p6.cls != bigClass {
		t.Fatalf("segments of %d and %d peers are not big", sh.torrents[0].p4.n, sh.torrents[0].p6.n)
	}
	for round := range 6 {
		now++
		for range 8000 {
			switch addr := addrOf(rng.IntN(pool)); rng.IntN(3) {
			case 0:
				announce(addr, 0, bittorrent.EventStopped)
			default:
				announce(addr, int64(rng.IntN(2)), bittorrent.EventNone)
			}
		}
		verify(fmt.Sprintf("churn %d", round))
		if round%2 == 1 {
			// Sweep what was not seen in this round's first half.
			if _, err := s.Sweep(ctx, now-1); err != nil {
				t.Fatal(err)
			}
			for k, w := range want {
				if w.now <= now-1 {
					delete(want, k)
				}
			}
			verify(fmt.Sprintf("sweep %d", round))
		}
	}
	// Leave until the segments go back into chunks (sorted again).
	for addr := range want {
		if len(want) <= 100 {
			break
		}
		announce(addr, 0, bittorrent.EventStopped)
	}
	verify("shrunk")
	if sh := &s.shards[0]; sh.torrents[0].p4.cls == bigClass {
		t.Fatalf("%d IPv4 peers still in a big segment", sh.torrents[0].p4.n)
	}
}
