// Package memswarm is the in-memory swarm store: sharded by info hash, with
// pointer-free peer records kept in per-shard slabs so that millions of
// peers cost the garbage collector almost nothing, and with announce and
// scrape paths that take one lock and allocate nothing.
package memswarm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// DefaultShardBits gives 256 shards: two cores announcing in parallel no
// longer wait for each other (16 shards do not quite get there), while
// 1,024 shards cost a quarter more memory per peer, each shard keeping a
// partly used slab chunk (measurements in BENCHMARKS.md).
const DefaultShardBits = 8

// sweepBudget bounds the peers one Sweep step examines under a shard lock,
// so announces on that shard wait at most some tens of microseconds.
const sweepBudget = 1024

// Store is the in-memory swarm.Store.
type Store struct {
	opts   swarm.Options
	shards []shard
	shift  uint
	// The limits of opts.Limits, per shard: info hashes spread over the
	// shards evenly, and a shard checks its own counts under the lock it
	// holds anyway, where one store-wide count would be a contended
	// atomic on every new peer.
	shardTorrents, shardPeers uint64
	perTorrent                uint32
	// dumps counts Dumps under way: they resume a shard by torrent slot,
	// so a sweep does not move torrents (compactTorrents) meanwhile.
	dumps atomic.Int32
}

var _ swarm.Store = (*Store)(nil)

// New builds an empty store with DefaultShardBits.
func New(opts swarm.Options) *Store { return NewSharded(opts, DefaultShardBits) }

// NewSharded builds an empty store with 1<<shardBits shards (0 to 16).
func NewSharded(opts swarm.Options, shardBits uint) *Store {
	shardBits = min(shardBits, 16)
	s := &Store{opts: opts, shards: make([]shard, 1<<shardBits), shift: 16 - shardBits}
	n := uint64(len(s.shards))
	if l := opts.Limits.MaxTorrents; l > 0 {
		s.shardTorrents = max(1, (l+n-1)/n)
	}
	if l := opts.Limits.MaxPeers; l > 0 {
		s.shardPeers = max(1, (l+n-1)/n)
	}
	s.perTorrent = uint32(min(opts.Limits.MaxPeersPerTorrent, 1<<32-1))
	for i := range s.shards {
		s.shards[i].index.seed = rand.Uint64()
		s.shards[i].rng = rand.Uint64()
		s.shards[i].p4.owner = &s.shards[i].torrents
		s.shards[i].p6.owner = &s.shards[i].torrents
		s.shards[i].p6.v6 = true
		s.shards[i].p4.seed = rand.Uint64()
		s.shards[i].p6.seed = rand.Uint64()
		s.shards[i].p4.pview = new(atomic.Pointer[slabView[[4]byte]])
		s.shards[i].p6.pview = new(atomic.Pointer[slabView[[16]byte]])
	}
	return s
}

// shard picks a torrent's shard by the top bits of its hash, so the shards
// are in hash order and Torrents can page through them without sorting
// the whole store.
func (s *Store) shard(h *bittorrent.InfoHash) *shard {
	return &s.shards[(uint32(h[0])<<8|uint32(h[1]))>>s.shift]
}

// torrent is one swarm; pointer-free, kept in the shard's torrents slice.
type torrent struct {
	hash bittorrent.InfoHash
	live bool
	// relay says the swarm has WebSocket peers, which the store counts but
	// does not hold (swarm.RelayCounter), in the shard's relays; seeders
	// and leechers below are the stored peers alone, which pick relies on.
	relay     bool
	p4, p6    seg
	seeders   uint32
	leechers  uint32
	completed uint32
}

type shard struct {
	mu       sync.Mutex
	index    hashIndex
	torrents []torrent
	freeT    []uint32
	p4       slab[[4]byte]
	p6       slab[[16]byte]
	rng      uint64
	// gone remembers counted peers that left (see gone).
	gone gone
	// relays are the relayed peers of the swarms that have any (see
	// relayed).
	relays map[bittorrent.InfoHash]relayed
	// released counts the bytes of torrent slots and index that
	// compactTorrents dropped, for ReleasedBytes.
	released uint64
	// sink keeps the loads of touch from being optimised away.
	sink uint64
	// view is what Prefetch reads without the lock (see prefetchView).
	view atomic.Pointer[prefetchView]
	// Totals of the shard, kept as it changes.
	nTorrents, seeders, leechers, completed uint64
	// Keeps two shards' hot fields off one cache line.
	_ [64]byte
}

// rand is wyrand: a few cycles, no allocation, no global lock; the shard
// lock is held whenever it is called.
func (sh *shard) rand() uint64 {
	sh.rng += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(sh.rng, sh.rng^0xe7037ed1a0b428db)
	return hi ^ lo
}

func (sh *shard) get(h *bittorrent.InfoHash) (*torrent, bool) {
	i, ok := sh.index.get(h, sh.torrents)
	if !ok {
		return nil, false
	}
	return &sh.torrents[i], true
}

func (sh *shard) add(h *bittorrent.InfoHash) *torrent {
	var i uint32
	if n := len(sh.freeT); n > 0 {
		i = sh.freeT[n-1]
		sh.freeT = sh.freeT[:n-1]
	} else {
		i = uint32(len(sh.torrents))
		if len(sh.torrents) == cap(sh.torrents) {
			sh.growTorrents()
		}
		sh.torrents = sh.torrents[:i+1]
	}
	sh.nTorrents++
	t := &sh.torrents[i]
	*t = torrent{hash: *h, live: true}
	sh.index.add(h, int(i), sh.torrents)
	if v := sh.view.Load(); v == nil || len(v.slots) != len(sh.index.slots) || cap(v.torrents) != cap(sh.torrents) {
		sh.publishView()
	}
	return t
}

// growTorrents makes room for more torrents by an eighth, not by append's
// quarter: a million torrents of 60 bytes left a quarter of their slots
// empty on average, 7 bytes per peer at three peers a torrent. The copy
// this costs more often is of pointer-free records, once per eighth.
func (sh *shard) growTorrents() {
	n := len(sh.torrents)
	ts := make([]torrent, n, n+max(16, n/8))
	copy(ts, sh.torrents)
	sh.torrents = ts
}

func (sh *shard) drop(i uint32) {
	t := &sh.torrents[i]
	sh.p4.release(t.p4)
	sh.p6.release(t.p6)
	r := sh.relayedOf(t)
	sh.setRelayed(t, relayed{})
	sh.seeders -= uint64(t.seeders) + uint64(r.seeders)
	sh.leechers -= uint64(t.leechers) + uint64(r.leechers)
	sh.completed -= uint64(t.completed)
	sh.nTorrents--
	sh.index.remove(&t.hash, sh.torrents)
	*t = torrent{}
	sh.freeT = append(sh.freeT, i)
}

// count moves a peer in or out of the seeder and leecher counts.
func (sh *shard) count(t *torrent, seeder bool, d int32) {
	if seeder {
		t.seeders = uint32(int32(t.seeders) + d)
		sh.seeders = uint64(int64(sh.seeders) + int64(d))
	} else {
		t.leechers = uint32(int32(t.leechers) + d)
		sh.leechers = uint64(int64(sh.leechers) + int64(d))
	}
}

func clampTime(now int64) uint32 {
	return uint32(min(max(now, 0), 1<<32-1))
}

// Announce applies a under the shard lock and picks the peers to hand out.
func (s *Store) Announce(_ context.Context, a *swarm.Announce, resp *bittorrent.AnnounceResponse) (swarm.Result, error) {
	sh := s.shard(&a.InfoHash)
	// The tracker hands over normalised addresses; unmapping again is
	// cheap and keeps an IPv4 peer from ever landing in the IPv6 slab.
	ip := a.Addr.Addr().Unmap()
	port := a.Addr.Port()
	keep := a.Event != bittorrent.EventStopped && port != 0 && ip.IsValid()
	var res swarm.Result

	// Deferred, so that a panic (which the transports recover from) does
	// not leave the shard locked and every later announce to it waiting.
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t, ok := sh.get(&a.InfoHash)
	// A completion announced with port 0 counts, though the peer is not
	// stored: its address is remembered so that a retry does not count
	// it again.
	portZeroDone := port == 0 && ip.IsValid() && a.Event == bittorrent.EventCompleted
	if !ok {
		if !keep && !portZeroDone {
			resp.Seeders, resp.Leechers = 0, 0
			return res, nil
		}
		if s.shardTorrents > 0 && sh.nTorrents >= s.shardTorrents {
			return res, swarm.ErrFullTorrents
		}
		if keep && s.shardPeers > 0 && sh.seeders+sh.leechers >= s.shardPeers {
			return res, swarm.ErrFullPeers
		}
		t = sh.add(&a.InfoHash)
	}
	// What refuses a new peer, if it is one (update decides).
	var full error
	switch {
	case !keep:
	case s.shardPeers > 0 && sh.seeders+sh.leechers >= s.shardPeers:
		full = swarm.ErrFullPeers
	case s.perTorrent > 0 && t.p4.n+t.p6.n >= s.perTorrent:
		full = swarm.ErrFullPeersPerTorrent
	}
	if portZeroDone {
		var key uint64
		if ip.Is4() {
			a4 := ip.As4()
			key = goneKey(&a.InfoHash, &a4, 0, sh.index.seed)
		} else {
			a16 := ip.As16()
			key = goneKey(&a.InfoHash, &a16, 0, sh.index.seed)
		}
		if !sh.gone.take(key) {
			t.completed++
			sh.completed++
			res.CountedCompletion = true
		}
		sh.gone.add(key)
	}
	self4, self6 := -1, -1
	if ip.Is4() {
		self4 = update(sh, &sh.p4, t, &t.p4, ip.As4(), port, keep, a, &res, &full)
	} else if ip.IsValid() {
		self6 = update(sh, &sh.p6, t, &t.p6, ip.As16(), port, keep, a, &res, &full)
	}
	if full != nil && self4 < 0 && self6 < 0 {
		// A new peer at a limit: not stored, not answered. A torrent
		// made for it holds no peer and goes at the next sweep.
		return res, full
	}
	res.Completed = t.completed
	resp.Seeders, resp.Leechers = t.seeders, t.leechers
	if t.relay {
		r := sh.relays[t.hash]
		resp.Seeders += r.seeders
		resp.Leechers += r.leechers
	}
	if a.NumWant > 0 {
		sh.pick(t, a, self4, self6, resp)
	}
	return res, nil
}

// update applies the announce to the requester's own family and returns
// the requester's position in it, or -1 when it is not stored.
// A new peer is refused when *full is set (a limit is reached): update
// then stores nothing and returns -1; a known peer clears *full.
func update[A addr](sh *shard, sl *slab[A], t *torrent, sg *seg, ip A, port uint16, keep bool, a *swarm.Announce, res *swarm.Result, full *error) int {
	i, found := sl.find(*sg, &ip, port)
	if keep && *full != nil {
		if !found {
			return -1
		}
		*full = nil
	}
	if !keep {
		if found {
			p := sl.at(*sg, i)
			if p.counted {
				sh.gone.add(goneKey(&a.InfoHash, &ip, port, sh.index.seed))
			}
			sh.count(t, p.seeder(), -1)
			sl.remove(sg, i)
		}
		return -1
	}
	seeder := bittorrent.Complete(a.Left)
	// A peer that stopped after its completion was counted comes back
	// counted (see gone).
	wasCounted := false
	if !found {
		wasCounted = sh.gone.n > 0 && sh.gone.take(goneKey(&a.InfoHash, &ip, port, sh.index.seed))
		i = sl.insert(sg, i, &ip, port, seeder)
		sh.count(t, seeder, 1)
	} else if was := sl.at(*sg, i).seeder(); was != seeder {
		sh.count(t, was, -1)
		sh.count(t, !was, 1)
	}
	if sg.cls == bigClass {
		// Before the record is written: this may move it.
		i = int(sl.big[sg.off].setSeeder(uint32(i), seeder, sl.seed))
	}
	p := sl.at(*sg, i)
	p.id = a.PeerID
	p.event = a.Event
	p.updated = clampTime(a.Now)
	p.uploaded, p.downloaded, p.left = a.Uploaded, a.Downloaded, a.Left
	// A big segment's setSeeder set this already; a chunk segment's hot
	// copy learns it here (insert copied a record with left 0).
	sl.hotAt(*sg, i).seeder = p.seeder()
	if wasCounted {
		p.counted = true
	}
	if a.Event == bittorrent.EventCompleted && !p.counted {
		p.counted = true
		t.completed++
		sh.completed++
		res.CountedCompletion = true
	}
	return i
}

// pick appends a random sample of up to NumWant peers of the wanted
// families. It walks the union of both families' peers from a random start
// with a random stride coprime with its length: a permutation that costs
// no allocation, so every peer is equally likely to be among the first
// ones taken. Above maxSeg peers the stride is 1 (see below), and for a
// seeder a big segment offers only its leechers, which it keeps first.
// A seeder with no leecher to be handed is handed seeders, as a leecher is.
func (sh *shard) pick(t *torrent, a *swarm.Announce, self4, self6 int, resp *bittorrent.AnnounceResponse) {
	var s4, s6 seg
	if a.Families&bittorrent.IPv4 != 0 {
		s4 = t.p4
	}
	if a.Families&bittorrent.IPv6 != 0 {
		s6 = t.p6
	}
	seeder := bittorrent.Complete(a.Left) && sh.anyLeecher(t, s4, s6)
	if seeder {
		// A seeder is handed only leechers, and a big segment keeps its
		// leechers first: its sample is drawn from them alone. (The
		// requester, a seeder, is past them.)
		if s4.cls == bigClass {
			s4.n = sh.p4.big[s4.off].leechers
			self4 = -1
		}
		if s6.cls == bigClass {
			s6.n = sh.p6.big[s6.off].leechers
			self6 = -1
		}
	}
	n4 := uint64(s4.n)
	n := n4 + uint64(s6.n)
	if n == 0 {
		return
	}
	self := uint64(1<<64 - 1)
	if self4 >= 0 && s4.n > 0 {
		self = uint64(self4)
	} else if self6 >= 0 && s6.n > 0 {
		self = n4 + uint64(self6)
	}
	r := a.Sample
	if r == 0 {
		r = sh.rand()
	}
	// Multiply-shift, not modulo: Prefetch found the same start from the
	// count it read, which earlier announces of the batch may have changed
	// by a few; that moves the start here by as few positions.
	i := (r & 0xffffffff) * n >> 32
	want := min(a.NumWant, int(n))
	// Room for the whole answer up front: the loops then write each peer
	// in place, field by field; building a Peer and appending it costs a
	// store-forwarding stall per peer (half the time of an announce). A
	// compact answer is written as the transport sends it, 6 or 18 bytes
	// per peer, instead of 56-byte Peers that it would convert.
	if a.Compact {
		if s4.n > 0 {
			resp.Compact4 = slices.Grow(resp.Compact4, compactLen4*want)
		}
		if s6.n > 0 {
			resp.Compact6 = slices.Grow(resp.Compact6, compactLen6*want)
		}
	} else {
		if s4.n > 0 {
			resp.Peers4 = slices.Grow(resp.Peers4, want)
		}
		if s6.n > 0 {
			resp.Peers6 = slices.Grow(resp.Peers6, want)
		}
	}
	// A swarm larger than a chunk segment is walked from the random start
	// in order: its records are in no address order (arrival order, with
	// leechers first), every peer is still equally likely to be taken, and
	// the walk streams through consecutive cache lines. A random stride there
	// costs one cache miss per peer read, a third of the server's CPU time
	// in the skewed UDP profile, where most announces hit swarms of
	// hundreds of thousands of peers.
	if n > maxSeg {
		sh.pickRuns(t, s4, s6, i, self, want, seeder, a.Compact, resp)
		return
	}
	// At most maxSeg peers: each family is one run (see bigSeg). When the
	// answer takes every other peer, which ones does not depend on the
	// stride: a rotation from the random start (stride 1) hands out the
	// same set, and its walk wraps once instead of at every few steps,
	// each wrap a mispredicted branch.
	stride := uint64(1)
	if n > 2 && uint64(want) < n-1 {
		stride = 1 + (r>>32)%(n-1)
		for gcd(stride, n) != 1 {
			stride++
			if stride == n {
				stride = 1
			}
		}
	}
	if a.Compact {
		pickHotSmall(sh.p4.hotView(s4), sh.p6.hotView(s6), i, stride, self, want, seeder, resp)
		return
	}
	v4, v6 := sh.p4.view(s4), sh.p6.view(s6)
	for range n {
		if i != self {
			if i < n4 {
				if p := &v4[i]; !seeder || !p.seeder() {
					k := len(resp.Peers4)
					resp.Peers4 = resp.Peers4[:k+1]
					d := &resp.Peers4[k]
					d.ID = p.id
					d.Addr = netip.AddrPortFrom(netip.AddrFrom4(p.ip), p.port)
					if want--; want == 0 {
						return
					}
				}
			} else if p := &v6[i-n4]; !seeder || !p.seeder() {
				k := len(resp.Peers6)
				resp.Peers6 = resp.Peers6[:k+1]
				d := &resp.Peers6[k]
				d.ID = p.id
				d.Addr = netip.AddrPortFrom(netip.AddrFrom16(p.ip), p.port)
				if want--; want == 0 {
					return
				}
			}
		}
		if i += stride; i >= n {
			i -= n
		}
	}
}

// anyLeecher says whether the wanted segments s4 and s6 of t (each t's own
// or empty) hold a leecher. The torrent's count answers unless a family
// that holds peers is not wanted (a UDP answer carries one family); then a
// big segment's count does, and a chunk segment's at most maxSeg hot
// copies are read until the first leecher.
func (sh *shard) anyLeecher(t *torrent, s4, s6 seg) bool {
	if t.leechers == 0 {
		return false
	}
	if s4.n == t.p4.n && s6.n == t.p6.n {
		return true
	}
	return hasLeecher(&sh.p4, s4) || hasLeecher(&sh.p6, s6)
}

func hasLeecher[A addr](sl *slab[A], sg seg) bool {
	if sg.n == 0 {
		return false
	}
	if sg.cls == bigClass {
		return sl.big[sg.off].leechers > 0
	}
	hs := sl.hotView(sg)
	for i := range hs {
		if !hs[i].seeder {
			return true
		}
	}
	return false
}

// pickHotSmall is pick's walk over at most maxSeg peers for a compact
// answer: the same permutation of the union of h4 and h6 (from position i
// by stride), the same peers, read from the hot copies (a swarm of 20 IPv4
// peers is 3 cache lines of them, 18 of records), written to resp's
// compact lists, which pick made room in.
func pickHotSmall(h4 []hotPeer[[4]byte], h6 []hotPeer[[16]byte], i, stride, self uint64, want int, seeder bool, resp *bittorrent.AnnounceResponse) {
	switch {
	case len(h6) == 0:
		resp.Compact4 = walkHot(h4, resp.Compact4, i, stride, self, want, seeder)
		return
	case len(h4) == 0:
		resp.Compact6 = walkHot(h6, resp.Compact6, i, stride, self, want, seeder)
		return
	}
	n4 := uint64(len(h4))
	n := n4 + uint64(len(h6))
	c4, c6 := resp.Compact4, resp.Compact6
	k4, k6 := len(c4), len(c6)
	c4, c6 = c4[:cap(c4)], c6[:cap(c6)]
	sf := b2i(seeder)
	for range n {
		if i < n4 {
			h := &h4[i]
			putCompact(c4, k4, h)
			t := b2i(i != self) &^ (sf & b2i(h.seeder))
			k4 += compactLen4 * t
			want -= t
		} else {
			h := &h6[i-n4]
			putCompact(c6, k6, h)
			t := b2i(i != self) &^ (sf & b2i(h.seeder))
			k6 += compactLen6 * t
			want -= t
		}
		if want == 0 {
			break
		}
		if i += stride; i >= n {
			i -= n
		}
	}
	resp.Compact4, resp.Compact6 = c4[:k4], c6[:k6]
}

// walkHot is pickHotSmall's walk over one family's peers hs, appending
// to c, which has room for want of them. Each peer is written at the end
// of c and kept by moving the end past it or not: the seeder filter costs
// no branch, where branching on it mispredicted for half the peers of a
// seeder's answer.
func walkHot[A addr](hs []hotPeer[A], c []byte, i, stride, self uint64, want int, seeder bool) []byte {
	n := uint64(len(hs))
	k := len(c)
	c = c[:cap(c)]
	sf := b2i(seeder)
	for range n {
		h := &hs[i]
		putCompact(c, k, h)
		t := b2i(i != self) &^ (sf & b2i(h.seeder))
		k += (len(h.ip) + 2) * t
		if want -= t; want == 0 {
			break
		}
		if i += stride; i >= n {
			i -= n
		}
	}
	return c[:k]
}

// b2i is 1 for true and 0 for false, without a branch.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compactLen4 and compactLen6 are the sizes of a compact peer.
const (
	compactLen4 = 6
	compactLen6 = 18
)

// putCompact writes h's address and port in compact form at c[k:].
func putCompact[A addr](c []byte, k int, h *hotPeer[A]) {
	e := c[k : k+len(h.ip)+2 : k+len(h.ip)+2]
	*(*A)(unsafe.Pointer(&e[0])) = h.ip
	binary.BigEndian.PutUint16(e[len(h.ip):], h.port)
}

// pickRuns is pick's walk over more than maxSeg peers: in order from
// position i of the union, run by run (a chunk segment, or a big
// segment's block), wrapping at its end.
func (sh *shard) pickRuns(t *torrent, s4, s6 seg, i, self uint64, want int, seeder, compact bool, resp *bittorrent.AnnounceResponse) {
	n4 := uint64(s4.n)
	n := n4 + uint64(s6.n)
	// Records to read for want peers: more when only leechers are wanted
	// (a seeder's sample skips seeders).
	m := uint64(want) + 8
	if seeder {
		m = uint64(want)*n/uint64(max(t.leechers, 1)) + 8
	}
	m = min(m, n)
	// Without ids, one family in a big segment: walk its hot copy.
	if compact && s6.n == 0 && s4.cls == bigClass {
		pickHot(sh, &sh.p4.big[s4.off], n, i, m, self, want, &resp.Compact4)
		return
	}
	if compact && n4 == 0 && s6.cls == bigClass {
		pickHot(sh, &sh.p6.big[s6.off], n, i, m, self, want, &resp.Compact6)
		return
	}
	sh.sink += touch(&sh.p4, s4, &sh.p6, s6, i, m)
	if compact {
		// Both families, one of them past maxSeg (compact HTTP): the walk
		// over the records below hands out Peers, moved to the compact
		// lists at the end.
		k4, k6 := len(resp.Peers4), len(resp.Peers6)
		resp.Peers4 = slices.Grow(resp.Peers4, want)
		resp.Peers6 = slices.Grow(resp.Peers6, want)
		defer compactPeers(resp, k4, k6)
	}
	for left := n; left > 0; {
		var k uint64
		if i < n4 {
			k, want = takeRun(sh.p4.span(s4, int(i)), i, self, left, want, seeder, &resp.Peers4)
		} else {
			k, want = takeRun(sh.p6.span(s6, int(i-n4)), i, self, left, want, seeder, &resp.Peers6)
		}
		if want == 0 {
			return
		}
		left -= k
		if i += k; i == n {
			i = 0
		}
	}
}

// takeRun hands out peers of run, whose first record is position i of the
// union, reading at most left records, and returns how many it read and
// how many peers are still wanted.
func takeRun[A addr](run []peer[A], i, self, left uint64, want int, seeder bool, out *[]bittorrent.Peer) (uint64, int) {
	run = run[:min(uint64(len(run)), left)]
	for k := range run {
		if p := &run[k]; i+uint64(k) != self && (!seeder || !p.seeder()) {
			j := len(*out)
			*out = (*out)[:j+1]
			d := &(*out)[j]
			d.ID = p.id
			d.Addr = netip.AddrPortFrom(addrOf(&p.ip), p.port)
			if want--; want == 0 {
				return uint64(k + 1), 0
			}
		}
	}
	return uint64(len(run)), want
}

// pickHot is pick's walk over a big swarm's hot copy (see bigSeg), from
// position i of its n peers on, for a compact answer appended to out,
// which pick made room in. The first m entries of the walk are loaded
// first, as touch does for records. Every peer of the walk but the
// requester is handed out: a seeder's walk covers the leechers alone (n is
// their count, see pick), and a leecher may be handed anyone. So the walk
// copies runs of entries, with no test per peer.
func pickHot[A addr](sh *shard, b *bigSeg[A], n, i, m, self uint64, want int, out *[]byte) {
	var x uint64
	for j := i; m > 0; {
		run := b.hotSpan(uint32(j), uint32(n))
		run = run[:min(uint64(len(run)), m)]
		for k := range run {
			x += uint64(run[k].port)
		}
		m -= uint64(len(run))
		if j += uint64(len(run)); j == n {
			j = 0
		}
	}
	sh.sink += x
	c := *out
	for left := n; left > 0 && want > 0; {
		run := b.hotSpan(uint32(i), uint32(n))
		run = run[:min(uint64(len(run)), left)]
		if s := self - i; self >= i && s < uint64(len(run)) {
			c, want = appendHot(c, run[:s], want)
			c, want = appendHot(c, run[s+1:], want)
		} else {
			c, want = appendHot(c, run, want)
		}
		left -= uint64(len(run))
		if i += uint64(len(run)); i == n {
			i = 0
		}
	}
	*out = c
}

// appendHot appends up to want peers of run to c in compact form, within
// the room pick made, and returns how many more are wanted.
func appendHot[A addr](c []byte, run []hotPeer[A], want int) ([]byte, int) {
	run = run[:min(len(run), want)]
	var ip A
	size := len(ip) + 2
	k := len(c)
	c = c[:k+size*len(run)]
	for j := range run {
		putCompact(c, k, &run[j])
		k += size
	}
	return c, want - len(run)
}

// compactPeers moves the peers of resp from Peers4[k4:] and Peers6[k6:] to
// its compact lists.
func compactPeers(resp *bittorrent.AnnounceResponse, k4, k6 int) {
	for i := range resp.Peers4[k4:] {
		a := &resp.Peers4[k4+i].Addr
		ip := a.Addr().As4()
		resp.Compact4 = binary.BigEndian.AppendUint16(append(resp.Compact4, ip[:]...), a.Port())
	}
	for i := range resp.Peers6[k6:] {
		a := &resp.Peers6[k6+i].Addr
		ip := a.Addr().As16()
		resp.Compact6 = binary.BigEndian.AppendUint16(append(resp.Compact6, ip[:]...), a.Port())
	}
	resp.Peers4, resp.Peers6 = resp.Peers4[:k4], resp.Peers6[:k6]
}

// addrOf is a record's address as a netip.Addr.
func addrOf[A addr](ip *A) netip.Addr {
	if len(*ip) == 4 {
		return netip.AddrFrom4([4]byte{(*ip)[0], (*ip)[1], (*ip)[2], (*ip)[3]})
	}
	var b [16]byte
	for k := range b {
		b[k] = (*ip)[k]
	}
	return netip.AddrFrom16(b)
}

// touch reads two words of each of the m records of the union of s4 and
// s6 from position i on, wrapping at its end, without branching on what
// it reads: these loads do not wait for each other, so their cache misses
// overlap. In the walk that follows, the seeder filter branches on every
// record read, and each mispredicted branch makes the next miss wait for
// the one before it.
func touch(sl4 *slab[[4]byte], s4 seg, sl6 *slab[[16]byte], s6 seg, i, m uint64) uint64 {
	n4 := uint64(s4.n)
	n := n4 + uint64(s6.n)
	var x, k uint64
	for m > 0 {
		if i < n4 {
			x, k = touchRun(sl4.span(s4, int(i)), m, x)
		} else {
			x, k = touchRun(sl6.span(s6, int(i-n4)), m, x)
		}
		m -= k
		if i += k; i == n {
			i = 0
		}
	}
	return x
}

// touchRun is touch over the first m records of run; it returns the sum
// so far and the number of records read.
func touchRun[A addr](run []peer[A], m, x uint64) (uint64, uint64) {
	run = run[:min(uint64(len(run)), m)]
	for k := range run {
		// The first and the last byte the walk reads of a record, on at
		// most two cache lines.
		x += uint64(run[k].left) ^ uint64(run[k].id[len(run[k].id)-1])
	}
	return x, uint64(len(run))
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Scrape appends each hash's counts, zeros for unknown ones.
func (s *Store) Scrape(_ context.Context, hashes []bittorrent.InfoHash, out []bittorrent.SwarmStats) ([]bittorrent.SwarmStats, error) {
	for k := range hashes {
		h := &hashes[k]
		sh := s.shard(h)
		var st bittorrent.SwarmStats
		sh.mu.Lock()
		if t, ok := sh.get(h); ok {
			st = sh.stats(t)
		}
		sh.mu.Unlock()
		out = append(out, st)
	}
	return out, nil
}

func (sh *shard) summary(t *torrent) swarm.TorrentSummary {
	return swarm.TorrentSummary{InfoHash: t.hash, SwarmStats: sh.stats(t)}
}

func info[A addr](p *peer[A], a netip.Addr) swarm.PeerInfo {
	return swarm.PeerInfo{
		ID: p.id, Addr: netip.AddrPortFrom(a, p.port), Updated: int64(p.updated),
		Uploaded: p.uploaded, Downloaded: p.downloaded, Left: p.left, Event: p.event,
	}
}

// Torrent returns one torrent and all its peers, IPv4 first, each family
// in address order.
func (s *Store) Torrent(_ context.Context, h bittorrent.InfoHash) (swarm.Torrent, bool, error) {
	sh := s.shard(&h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t, ok := sh.get(&h)
	if !ok {
		return swarm.Torrent{}, false, nil
	}
	out := swarm.Torrent{TorrentSummary: sh.summary(t), Peers: make([]swarm.PeerInfo, 0, t.p4.n+t.p6.n)}
	out.Peers = infos(&sh.p4, t.p4, out.Peers)
	out.Peers = infos(&sh.p6, t.p6, out.Peers)
	// Peers of a big swarm are stored in no order.
	if t.p4.cls == bigClass {
		sortByAddr(out.Peers[:t.p4.n])
	}
	if t.p6.cls == bigClass {
		sortByAddr(out.Peers[t.p4.n:])
	}
	return out, true, nil
}

// infos appends the segment's peers in the order they are stored.
func infos[A addr](sl *slab[A], sg seg, out []swarm.PeerInfo) []swarm.PeerInfo {
	for i := 0; i < int(sg.n); {
		run := sl.span(sg, i)
		for k := range run {
			out = append(out, info(&run[k], addrOf(&run[k].ip)))
		}
		i += len(run)
	}
	return out
}

func sortByAddr(ps []swarm.PeerInfo) {
	slices.SortFunc(ps, func(a, b swarm.PeerInfo) int { return a.Addr.Compare(b.Addr) })
}

// pageBufs hold a shard's torrents while Torrents sorts them: an API
// client paging through the torrents made a shard's worth of garbage
// (100 KB at a million torrents) per page, most of the heap's growth
// between two collections in a soak.
var pageBufs = sync.Pool{New: func() any { return new([]swarm.TorrentSummary) }}

// Torrents pages through the torrents in hash order. Shards are in hash
// order, so only the shards that hold the page are read and sorted.
func (s *Store) Torrents(ctx context.Context, offset, limit int) ([]swarm.TorrentSummary, error) {
	if offset < 0 || limit <= 0 {
		return nil, nil
	}
	var out []swarm.TorrentSummary
	for k := range s.shards {
		sh := &s.shards[k]
		sh.mu.Lock()
		n := int(sh.nTorrents)
		if offset >= n {
			sh.mu.Unlock()
			offset -= n
			continue
		}
		bp := pageBufs.Get().(*[]swarm.TorrentSummary)
		page := (*bp)[:0]
		for i := range sh.torrents {
			if t := &sh.torrents[i]; t.live {
				page = append(page, sh.summary(t))
			}
		}
		sh.mu.Unlock()
		slices.SortFunc(page, func(a, b swarm.TorrentSummary) int {
			return bytes.Compare(a.InfoHash[:], b.InfoHash[:])
		})
		out = append(out, page[offset:][:min(len(page)-offset, limit-len(out))]...)
		offset = 0
		*bp = page
		pageBufs.Put(bp)
		if len(out) == limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list torrents: %w", err)
		}
	}
	return out, nil
}

// Totals adds up the shards' counts.
func (s *Store) Totals(_ context.Context) (swarm.Totals, error) {
	var t swarm.Totals
	for k := range s.shards {
		sh := &s.shards[k]
		sh.mu.Lock()
		t.Torrents += sh.nTorrents
		t.Seeders += sh.seeders
		t.Leechers += sh.leechers
		t.Completed += sh.completed
		sh.mu.Unlock()
	}
	return t, nil
}

// SetCompleted sets the completed counts loaded from the database,
// creating the torrents that are not known yet. A zero count creates
// nothing.
func (s *Store) SetCompleted(_ context.Context, counts []swarm.CompletedCount) error {
	for k := range counts {
		c := &counts[k]
		sh := s.shard(&c.InfoHash)
		sh.mu.Lock()
		t, ok := sh.get(&c.InfoHash)
		if !ok && c.Completed > 0 {
			t, ok = sh.add(&c.InfoHash), true
		}
		if ok {
			sh.completed = sh.completed - uint64(t.completed) + uint64(c.Completed)
			t.completed = c.Completed
		}
		sh.mu.Unlock()
	}
	return nil
}

// Sweep removes peers last seen at or before cutoff and then, when
// configured, torrents left without peers. It goes shard by shard and
// holds a shard's lock for at most about sweepBudget peers, so announces
// keep flowing during a sweep of millions of peers.
func (s *Store) Sweep(ctx context.Context, cutoff int64) (swarm.SweepResult, error) {
	var res swarm.SweepResult
	for k := range s.shards {
		sh := &s.shards[k]
		var st sweepState
		for {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("sweep peers: %w", err)
			}
			if done := s.sweepLocked(sh, &st, cutoff, &res); done {
				break
			}
			// Between two lock holds, let a request handler run: with
			// one or two Ps (a tracker pinned to its cores), a sweep of
			// millions of peers would otherwise keep the UDP workers
			// waiting for the scheduler's 10 ms preemption.
			runtime.Gosched()
		}
	}
	return res, nil
}

// sweepLocked runs one sweepStep of sh under its lock, and gives the
// slabs' free memory back once the shard is done; it reports whether it
// is. The unlock is deferred, as in Announce.
func (s *Store) sweepLocked(sh *shard, st *sweepState, cutoff int64, res *swarm.SweepResult) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepStep(sh, st, cutoff, res)
	done := st.i >= len(sh.torrents)
	if done {
		sh.p4.reclaim()
		sh.p6.reclaim()
		if s.dumps.Load() == 0 {
			sh.compactTorrents()
		}
	}
	return done
}

// minCompactTorrents is the number of torrent slots below which a shard
// keeps its torrents slice whatever it holds: 256 slots of 68 bytes.
const minCompactTorrents = 256

// compactTorrents gives back what a flood of torrents left behind once
// they are swept: the torrents slice, its free list and the index keep
// the size of the flood's peak, so when at most a quarter of the slots
// hold a live torrent, the live ones move to the front of a slice sized
// for them and the index is rebuilt for them. It copies the live torrents
// only, which are at most a quarter of the slots it frees. Positions
// change, so it runs at the end of a shard's sweep, never during a Dump.
func (sh *shard) compactTorrents() {
	n := int(sh.nTorrents)
	if len(sh.torrents) < minCompactTorrents || n*4 > len(sh.torrents) {
		return
	}
	var ts []torrent
	if n > 0 {
		ts = make([]torrent, 0, n+n/4)
		for i := range sh.torrents {
			if sh.torrents[i].live {
				ts = append(ts, sh.torrents[i])
			}
		}
	}
	sh.released += uint64(cap(sh.torrents))*uint64(unsafe.Sizeof(torrent{})) + uint64(len(sh.index.slots))*8
	sh.torrents, sh.freeT = ts, nil
	sh.index.rebuild(ts)
	sh.publishView()
}

// sweepState is where a shard's sweep resumes: torrent i and, inside a
// big swarm, the positions below which its families are still to be
// examined (started says they were set).
type sweepState struct {
	i       int
	started bool
	c4, c6  uint32
}

// sweepStep sweeps torrents from st on until about sweepBudget peers were
// examined. A big swarm is swept in steps of that budget too, so no lock
// hold examines more than a budget's worth of peers (a swarm of 1,000,000
// used to be filtered and reindexed in one hold, 177 ms).
func (s *Store) sweepStep(sh *shard, st *sweepState, cutoff int64, res *swarm.SweepResult) {
	budget := sweepBudget
	for st.i < len(sh.torrents) && budget > 0 {
		t := &sh.torrents[st.i]
		if !t.live {
			st.i++
			continue
		}
		if !st.started {
			st.started, st.c4, st.c6 = true, t.p4.n, t.p6.n
			budget--
		}
		res.Peers += sweepFamily(sh, &sh.p4, t, &t.p4, cutoff, &st.c4, &budget)
		res.Peers += sweepFamily(sh, &sh.p6, t, &t.p6, cutoff, &st.c6, &budget)
		if st.c4 > 0 || st.c6 > 0 {
			return // the budget ran out inside this swarm
		}
		if s.opts.RemovePeerlessTorrents && t.p4.n == 0 && t.p6.n == 0 && !t.relay &&
			!(s.opts.KeepCompleted && t.completed > 0) {
			sh.drop(uint32(st.i))
			res.Torrents++
		}
		st.i++
		st.started = false
	}
}

// sweepFamily sweeps one family of a torrent: positions below *below are
// still to be examined. A chunk segment (at most maxSeg peers) is swept
// whole; a big one from the top down, within *budget, removing stale
// peers one by one (the last peer, already examined, fills each hole, and
// a leaving leecher trades places with the last leecher, also examined),
// so its index is updated entry by entry instead of rebuilt. Peers that
// announces move into the examined part between two steps wait for the
// next sweep.
func sweepFamily[A addr](sh *shard, sl *slab[A], t *torrent, sg *seg, cutoff int64, below *uint32, budget *int) int {
	if *below == 0 {
		return 0
	}
	removed := 0
	j := min(*below, sg.n)
	for j > 0 && *budget > 0 && sg.cls == bigClass {
		j--
		*budget--
		if p := sl.at(*sg, int(j)); int64(p.updated) <= cutoff {
			sh.count(t, p.seeder(), -1)
			sl.remove(sg, int(j))
			removed++
		}
		j = min(j, sg.n)
	}
	if sg.cls != bigClass {
		// A chunk segment, or a big one that shrank into one.
		*budget -= int(sg.n)
		removed += sweepSeg(sh, sl, t, sg, cutoff)
		j = 0
	}
	*below = j
	return removed
}

// sweepSeg drops the stale peers of a chunk segment, keeping the order.
func sweepSeg[A addr](sh *shard, sl *slab[A], t *torrent, sg *seg, cutoff int64) int {
	kept := 0
	for j := range int(sg.n) {
		p := sl.at(*sg, j)
		if int64(p.updated) <= cutoff {
			sh.count(t, p.seeder(), -1)
			continue
		}
		if kept != j {
			*sl.at(*sg, kept) = *p
			*sl.hotAt(*sg, kept) = *sl.hotAt(*sg, j)
		}
		kept++
	}
	removed := int(sg.n) - kept
	if removed > 0 {
		sg.n = uint32(kept)
		sl.shrink(sg)
	}
	return removed
}
