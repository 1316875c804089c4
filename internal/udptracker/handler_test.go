package udptracker

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// handlerFixture is one worker's handler over the real rules, with a swarm
// of 50 IPv4 and 50 IPv6 leechers on torrent hashN(1).
type handlerFixture struct {
	h        *handler
	counters *metrics.Counters
	clk      *clock.Manual
	src      netip.AddrPort
	out      []byte
}

func newHandlerFixture(tb testing.TB, limit int) *handlerFixture {
	tb.Helper()
	clk := clock.NewManual(1_700_000_000)
	tr := tracker.New(tracker.DefaultConfig(), memswarm.New(swarm.Options{}), access.New(nil), clk, nil)
	var resp bittorrent.AnnounceResponse
	for i := 0; i < 50; i++ {
		for _, a := range []netip.AddrPort{v4Peer(i), v6Peer(i)} {
			req := bittorrent.AnnounceRequest{InfoHash: hashN(1), Addr: a, Left: 1}
			resp.Reset()
			if err := tr.Announce(context.Background(), &req, &resp); err != nil {
				tb.Fatal(err)
			}
		}
	}
	c, err := newCookies(120)
	if err != nil {
		tb.Fatal(err)
	}
	counters := metrics.NewCounters(1, true)
	return &handlerFixture{
		h:        newHandler(tr, c, newLimiter(limit, 10, 1, 2), clk, counters.Stripe(), quietLog(), flag(false)),
		counters: counters,
		clk:      clk,
		src:      netip.MustParseAddrPort("192.0.2.7:40000"),
		out:      make([]byte, maxPayload4),
	}
}

func (f *handlerFixture) cid() uint64 { return f.h.cookies.mint(f.src.Addr(), f.clk.Now()) }

func (f *handlerFixture) do(pkt []byte) []byte {
	n := f.h.handle(context.Background(), f.src, pkt, false, f.out)
	f.h.flush()
	return f.out[:n]
}

// TestHandlerAllocations: connect, announce, scrape and the refusals
// allocate nothing once the worker's buffers are warm.
func TestHandlerAllocations(t *testing.T) {
	f := newHandlerFixture(t, 5)
	scrape74 := make([]bittorrent.InfoHash, 74)
	for i := range scrape74 {
		scrape74[i] = hashN(i % 3)
	}
	tests := []struct {
		name string
		pkt  func() []byte
		min  int
	}{
		{"connect", func() []byte { return connectPacket(1) }, 16},
		{"announce", func() []byte {
			return announcePacket(announceSpec{cid: f.cid(), txid: 2, hash: hashN(1), port: 9, numWant: 74, options: []byte{optURLData, 3, '/', 'a', 'n'}})
		}, 20 + 6*50},
		{"scrape", func() []byte { return scrapePacket(f.cid(), 3, scrape74...) }, 8 + 12*74},
		// The largest inputs a client controls: nothing grows with them.
		{"scrape of 101 hashes", func() []byte { return scrapePacket(f.cid(), 3, make([]bittorrent.InfoHash, 101)...) }, 8 + 12*74},
		{"announce with 1,900 bytes of options", func() []byte {
			var opts []byte
			for len(opts) < 1900 {
				opts = append(opts, optURLData, 250)
				opts = append(opts, make([]byte, 250)...)
			}
			return announcePacket(announceSpec{cid: f.cid(), txid: 2, hash: hashN(1), port: 9, options: opts})
		}, 20},
		{"bad connection id", func() []byte { return scrapePacket(7, 3, hashN(1)) }, 0},
		{"invalid action", func() []byte { b := connectPacket(4); b[11] = 8; return b }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := tt.pkt()
			if n := len(f.do(pkt)); n < tt.min {
				t.Fatalf("answer of %d bytes, want at least %d", n, tt.min)
			}
			if allocs := testing.AllocsPerRun(200, func() { f.do(pkt) }); allocs != 0 {
				t.Fatalf("%v allocations per packet, want 0", allocs)
			}
		})
	}
}

func BenchmarkHandler(b *testing.B) {
	f := newHandlerFixture(b, -1)
	hashes := make([]bittorrent.InfoHash, 10)
	for i := range hashes {
		hashes[i] = hashN(i % 3)
	}
	for _, bb := range []struct {
		name string
		pkt  []byte
	}{
		{"connect", connectPacket(1)},
		{"announce", announcePacket(announceSpec{cid: f.cid(), txid: 2, hash: hashN(1), port: 9, numWant: 30})},
		{"scrape10", scrapePacket(f.cid(), 3, hashes...)},
		{"bad_connection_id", scrapePacket(7, 3, hashN(1))},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.do(bb.pkt)
			}
		})
	}
}

func BenchmarkConnectionID(b *testing.B) {
	c, _ := newCookies(120)
	ip := netip.MustParseAddr("2001:db8::1")
	id := c.mint(ip, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if !c.valid(id, ip, 1000) {
			b.Fatal("refused")
		}
	}
}

// FuzzPacket feeds any datagram to the handler. It must never panic (a
// recovered panic is counted, and the count must stay 0), never read past
// the packet (the slice has no spare capacity to read into), and answer
// with a well-formed packet that fits 1500 bytes on the wire, or nothing.
// With validID set, the first 8 bytes are replaced by a valid connection id
// so the fuzzer reaches the announce and scrape parsers.
func FuzzPacket(f *testing.F) {
	f.Add(connectPacket(1), false)
	f.Add(announcePacket(announceSpec{txid: 2, hash: hashN(1), port: 9, numWant: -1}), true)
	f.Add(announcePacket(announceSpec{txid: 2, hash: hashN(1), port: 9, event: 3, options: []byte{optNOP, optURLData, 2, '/', 'a', optEndOfOptions}}), true)
	f.Add(announcePacket(announceSpec{txid: 2, hash: hashN(1), port: 9, options: []byte{optURLData, 250, 'x'}}), true)
	f.Add(scrapePacket(0, 3, hashN(1), hashN(1), hashN(2)), true)
	f.Add(scrapePacket(0, 3, make([]bittorrent.InfoHash, 80)...), true)
	f.Add(scrapePacket(0, 3), true)
	f.Add([]byte{1, 2, 3}, false)
	f.Add(announcePacket(announceSpec{txid: 2, hash: hashN(1), port: 9, options: append([]byte{optURLData, 42}, "/announce/"+validKey...)}), true)
	f.Add(announcePacket(announceSpec{txid: 2, hash: hashN(1), port: 9, options: []byte{optURLData, 4, '/', 'a', 'b', 'c', optURLData, 2, 'd', '?'}}), true)
	fx := newHandlerFixture(f, -1)
	// A private tracker's handler reads keys from the options too; it
	// shares fx's cookies, so the connection ids are valid for both.
	fxp := newPrivateHandlerFixture(f, fx.h.cookies)
	f.Fuzz(func(t *testing.T, data []byte, validID bool) {
		if validID && len(data) >= 8 {
			binary.BigEndian.PutUint64(data, fx.cid())
		}
		pkt := data[:len(data):len(data)]
		for _, src := range []netip.AddrPort{fx.src, netip.MustParseAddrPort("[2001:db8::5]:7"), netip.MustParseAddrPort("[::ffff:192.0.2.7]:40000")} {
			fx.src = src
			if validID && len(data) >= 8 {
				binary.BigEndian.PutUint64(data, fx.cid())
			}
			// As received whole, and as the start of a datagram the
			// receive buffer cut.
			for _, x := range []*handlerFixture{fx, fxp} {
				for _, truncated := range []bool{false, true} {
					n := x.h.handle(context.Background(), src, pkt, truncated, x.out)
					if x.counters.Value(metrics.Panics) != 0 {
						t.Fatalf("handler (private %v) panicked on % x (truncated %v)", x.h.private, data, truncated)
					}
					checkAnswer(t, src, pkt, x.out[:n])
				}
			}
		}
		fx.src = netip.MustParseAddrPort("192.0.2.7:40000")
	})
}

func checkAnswer(t *testing.T, src netip.AddrPort, pkt, resp []byte) {
	t.Helper()
	if len(resp) == 0 {
		if len(pkt) >= 16 {
			t.Fatalf("no answer to a %d-byte packet with a transaction id", len(pkt))
		}
		return
	}
	if len(pkt) < 16 {
		t.Fatalf("answered a %d-byte packet", len(pkt))
	}
	max := maxPayload4
	if !src.Addr().Unmap().Is4() {
		max = maxPayload6
	}
	if len(resp) > max {
		t.Fatalf("answer of %d bytes does not fit 1500 on the wire", len(resp))
	}
	if string(resp[4:8]) != string(pkt[12:16]) {
		t.Fatal("answer does not echo the transaction id")
	}
	peerLen := 6
	if !src.Addr().Unmap().Is4() {
		peerLen = 18
	}
	switch binary.BigEndian.Uint32(resp) {
	case actionConnect:
		if len(resp) != 16 {
			t.Fatalf("connect answer of %d bytes", len(resp))
		}
	case actionAnnounce:
		if len(resp) < 20 || (len(resp)-20)%peerLen != 0 {
			t.Fatalf("announce answer of %d bytes", len(resp))
		}
	case actionScrape:
		if n := (len(resp) - 8) / 12; (len(resp)-8)%12 != 0 || n < 1 || n > 74 || n != min((len(pkt)-16)/20, 74) {
			t.Fatalf("scrape answer of %d bytes for a %d-byte request", len(resp), len(pkt))
		}
	case actionError:
		if len(resp) == 8 {
			t.Fatal("error packet without a message")
		}
	default:
		t.Fatalf("answer with action %d", binary.BigEndian.Uint32(resp))
	}
}

// BenchmarkHandlerParallel runs one handler per goroutine (as one worker
// per socket does) over a shared tracker holding 10,000 torrents of 20
// IPv4 peers, each goroutine re-announcing existing peers: with -cpu 1,2 it
// shows whether the user-space path scales with cores (shared state: the
// store's shard locks, the counters' stripes, the read-only cookie key).
func BenchmarkHandlerParallel(b *testing.B) {
	const torrents, perTorrent = 10_000, 20
	clk := clock.NewManual(1_700_000_000)
	tr := tracker.New(tracker.DefaultConfig(), memswarm.New(swarm.Options{}), access.New(nil), clk, nil)
	var resp bittorrent.AnnounceResponse
	src := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 6881)
	}
	for i := 0; i < torrents*perTorrent; i++ {
		req := bittorrent.AnnounceRequest{InfoHash: spreadHash(i % torrents), Addr: src(i), Left: int64(i % 2), NumWant: 1}
		resp.Reset()
		if err := tr.Announce(context.Background(), &req, &resp); err != nil {
			b.Fatal(err)
		}
	}
	c, _ := newCookies(120)
	lim := newLimiter(-1, 10, 1, 2)
	counters := metrics.NewCounters(8, true)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := newHandler(tr, c, lim, clk, counters.Stripe(), quietLog(), flag(false))
		out := make([]byte, maxPayload4)
		pkt := announcePacket(announceSpec{txid: 1, numWant: 30, port: 6881})
		var rng uint64 = uint64(time.Now().UnixNano())
		for pb.Next() {
			rng ^= rng << 13
			rng ^= rng >> 7
			rng ^= rng << 17
			i := int(rng % (torrents * perTorrent))
			a := src(i)
			binary.BigEndian.PutUint64(pkt, c.mint(a.Addr(), clk.Now()))
			hh := spreadHash(i % torrents)
			copy(pkt[16:36], hh[:])
			if h.handle(context.Background(), a, pkt, false, out) < 20 {
				b.Fatal("no announce answer")
			}
		}
	})
}

// spreadHash is a torrent's hash with its bytes spread like a SHA-1's, so
// torrents land on all of the store's shards (hashN's counter in the first
// bytes would put every torrent of a benchmark on one shard lock).
func spreadHash(i int) bittorrent.InfoHash {
	h := hashN(i)
	x := uint64(i+1) * 0x9e3779b97f4a7c15
	binary.BigEndian.PutUint64(h[:8], x^x>>29)
	return h
}

// BenchmarkBatch handles announces 64 at a time, as a worker does with one
// recvmmsg, with and without the store's prefetch pass, over the load
// generator's uniform population (10,000 torrents of 20 peers, 11 MB of
// peer records: out of the core's caches) and over a swarm of 500,000
// peers. ns/op is per announce.
func BenchmarkBatch(b *testing.B) {
	for _, pop := range []struct {
		name            string
		torrents, peers int
	}{{"uniform", 10_000, 200_000}, {"big", 1, 500_000}} {
		clk := clock.NewManual(1_700_000_000)
		tr := tracker.New(tracker.DefaultConfig(), memswarm.New(swarm.Options{}), access.New(nil), clk, nil)
		src := func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 6881)
		}
		var resp bittorrent.AnnounceResponse
		for i := range pop.peers {
			req := bittorrent.AnnounceRequest{InfoHash: spreadHash(i % pop.torrents), Addr: src(i), Left: int64(i % 2), NumWant: 1}
			resp.Reset()
			if err := tr.Announce(context.Background(), &req, &resp); err != nil {
				b.Fatal(err)
			}
		}
		c, _ := newCookies(120)
		// A ring of ready packets, random peers of the population.
		const ring = 8192
		pkts := make([][]byte, ring)
		addrs := make([]netip.AddrPort, ring)
		rng := uint64(1)
		for k := range pkts {
			rng ^= rng << 13
			rng ^= rng >> 7
			rng ^= rng << 17
			i := int(rng % uint64(pop.peers))
			addrs[k] = src(i)
			pkts[k] = announcePacket(announceSpec{txid: 1, numWant: 30, port: 6881})
			binary.BigEndian.PutUint64(pkts[k], c.mint(addrs[k].Addr(), clk.Now()))
			hh := spreadHash(i % pop.torrents)
			copy(pkts[k][16:36], hh[:])
		}
		for _, pf := range []bool{false, true} {
			b.Run(pop.name+"/prefetch="+map[bool]string{false: "off", true: "on"}[pf], func(b *testing.B) {
				w := newBenchWorker(tr, c, clk, pf)
				next := 0
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; done += batchSize {
					n := min(batchSize, b.N-done)
					for i := range n {
						m := &w.rx[i]
						m.N = copy(m.Buf, pkts[next])
						m.Addr = addrs[next]
						next = (next + 1) % ring
					}
					if w.answer(context.Background(), n) != n || w.tx[0].N < 20 {
						b.Fatal("no announce answer")
					}
				}
			})
		}
	}
}

// newBenchWorker is a worker over tr without sockets, its store's prefetch
// pass on or off.
func newBenchWorker(tr *tracker.Tracker, c *cookies, clk *clock.Manual, prefetch bool) *worker {
	w := &worker{
		h:  newHandler(tr, c, newLimiter(-1, 10, 1, 2), clk, metrics.NewCounters(1, true).Stripe(), quietLog(), flag(false)),
		rx: make([]batch.Message, batchSize),
		tx: make([]batch.Message, batchSize),
	}
	if prefetch {
		w.prefetch = tr
	}
	for i := range w.rx {
		w.rx[i].Buf = make([]byte, 2048)
		w.tx[i].Buf = make([]byte, maxPayload4)
	}
	return w
}

// BenchmarkBatchSkewed replays, in one process, the load generator's
// skewed profile as a run of bench-udp.sh meets it: 2,000,000 peers, each
// of one of 1,000,000 torrents drawn from Zipf 1.3, half of them seeders;
// half a million random draws of them announced before the clock starts
// (the run's warm-up),
// then announces of peers drawn at random, so that about half of the first
// 2,400,000 (a measured run's count) are a peer's first. ns/op is per
// announce, handled 64 at a time with the prefetch pass, as a worker does:
// the tracker's user time without the kernel's noise (and about 10 ns of
// writing the packets). The store's state
// moves with b.N, so compare runs of one fixed count:
//
//	go test ./internal/udptracker -run '^$' -bench BatchSkewed -benchtime 2400000x -count 6
func BenchmarkBatchSkewed(b *testing.B) {
	const (
		torrents = 1_000_000
		peers    = 2_000_000
		ips      = 64 // peer i is ip i%ips, port 1024+i/ips: few cookies to mint
	)
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.3, 1, torrents-1)
	torrentOf := make([]uint32, peers)
	for i := range torrentOf {
		torrentOf[i] = uint32(zipf.Uint64())
	}
	clk := clock.NewManual(1_700_000_000)
	c, _ := newCookies(120)
	var addrs [ips]netip.AddrPort
	var cids [ips]uint64
	for k := range addrs {
		addrs[k] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(k)}), 6881)
		cids[k] = c.mint(addrs[k].Addr(), clk.Now())
	}
	template := announcePacket(announceSpec{txid: 1, numWant: 30})
	// draw is a peer drawn at random with its torrent, worked out before the
	// clock starts: looking the torrent up then would be a cache miss the
	// server does not have (its packets arrive in buffers the kernel just
	// wrote).
	draw := func() uint64 {
		i := rng.IntN(peers)
		return uint64(torrentOf[i])<<32 | uint64(i)
	}
	// fill makes m the announce of the drawn peer d.
	fill := func(m *batch.Message, d uint64) {
		i := int(uint32(d))
		m.N = copy(m.Buf, template)
		binary.BigEndian.PutUint64(m.Buf, cids[i%ips])
		h := spreadHash(int(d >> 32))
		copy(m.Buf[16:36], h[:])
		binary.BigEndian.PutUint64(m.Buf[64:], uint64(i%2))
		binary.BigEndian.PutUint16(m.Buf[96:], uint16(1024+i/ips))
		m.Addr = addrs[i%ips]
	}
	tr := tracker.New(tracker.DefaultConfig(), memswarm.New(swarm.Options{}), access.New(nil), clk, nil)
	w := newBenchWorker(tr, c, clk, true)
	run := func(draws []uint64) {
		for len(draws) > 0 {
			k := min(batchSize, len(draws))
			for j, d := range draws[:k] {
				fill(&w.rx[j], d)
			}
			draws = draws[k:]
			if w.answer(context.Background(), k) != k || w.tx[0].N < 20 {
				b.Fatal("no announce answer")
			}
		}
	}
	draws := make([]uint64, max(peers/4, b.N))
	for k := range draws[:peers/4] {
		draws[k] = draw()
	}
	run(draws[:peers/4])
	for k := range draws[:b.N] {
		draws[k] = draw()
	}
	b.ReportAllocs()
	b.ResetTimer()
	run(draws[:b.N])
}

// compactResponse is an answer of n IPv4 and n IPv6 peers in compact form.
func compactResponse(n int) *bittorrent.AnnounceResponse {
	var r bittorrent.AnnounceResponse
	for i := range n {
		a4, a6 := v4Peer(i), v6Peer(i)
		r.Compact4 = binary.BigEndian.AppendUint16(append(r.Compact4, a4.Addr().AsSlice()...), a4.Port())
		r.Compact6 = binary.BigEndian.AppendUint16(append(r.Compact6, a6.Addr().AsSlice()...), a6.Port())
	}
	return &r
}

// TestWriteAnnounceWholePeers: an answer holds the client's family's
// peers, as many whole ones as fit the buffer.
func TestWriteAnnounceWholePeers(t *testing.T) {
	r := compactResponse(5)
	txid := []byte{1, 2, 3, 4}
	for _, tc := range []struct {
		fam       bittorrent.Family
		room      int // bytes of out past the header
		wantPeers int
	}{
		{bittorrent.IPv4, 1000, 5}, {bittorrent.IPv4, 30, 5}, {bittorrent.IPv4, 29, 4}, {bittorrent.IPv4, 5, 0}, {bittorrent.IPv4, 0, 0},
		{bittorrent.IPv6, 1000, 5}, {bittorrent.IPv6, 90, 5}, {bittorrent.IPv6, 89, 4}, {bittorrent.IPv6, 17, 0}, {bittorrent.IPv6, 0, 0},
	} {
		out := make([]byte, announceHdrLen+tc.room)
		size := map[bittorrent.Family]int{bittorrent.IPv4: 6, bittorrent.IPv6: 18}[tc.fam]
		want := map[bittorrent.Family][]byte{bittorrent.IPv4: r.Compact4, bittorrent.IPv6: r.Compact6}[tc.fam][:size*tc.wantPeers]
		n := writeAnnounce(out, txid, r, tc.fam)
		if n != announceHdrLen+len(want) || !bytes.Equal(out[announceHdrLen:n], want) {
			t.Errorf("family %d, %d bytes of room: wrote %d bytes of peers %x, want %x", tc.fam, tc.room, n-announceHdrLen, out[announceHdrLen:n], want)
		}
	}
}

// TestWriteAnnounceInPlace: peers the store wrote straight into the
// answer stay as they are, header in front, cut to whole peers that fit.
func TestWriteAnnounceInPlace(t *testing.T) {
	r := compactResponse(5)
	for _, tt := range []struct {
		room, wantPeers int
	}{{1000, 5}, {29, 4}} {
		out := make([]byte, announceHdrLen+tt.room)
		// The peers as the store writes them: in out, as many bytes as fit.
		var resp bittorrent.AnnounceResponse
		resp.Compact4 = out[announceHdrLen : announceHdrLen+min(len(r.Compact4), tt.room)]
		copy(resp.Compact4, r.Compact4)
		n := writeAnnounce(out, []byte{1, 2, 3, 4}, &resp, bittorrent.IPv4)
		want := r.Compact4[:6*tt.wantPeers]
		if n != announceHdrLen+len(want) || !bytes.Equal(out[announceHdrLen:n], want) || binary.BigEndian.Uint32(out[4:8]) != 0x01020304 {
			t.Errorf("room %d: wrote %d bytes %x", tt.room, n, out[:n])
		}
	}
}

// BenchmarkWriteAnnounce encodes an answer of 30 IPv4 and one of 30 IPv6
// peers, what every UDP announce of the benchmark profiles ends with.
func BenchmarkWriteAnnounce(b *testing.B) {
	r := compactResponse(30)
	out := make([]byte, maxPayload4)
	txid := []byte{1, 2, 3, 4}
	for _, fam := range []bittorrent.Family{bittorrent.IPv4, bittorrent.IPv6} {
		b.Run(map[bittorrent.Family]string{bittorrent.IPv4: "v4", bittorrent.IPv6: "v6"}[fam], func(b *testing.B) {
			for b.Loop() {
				writeAnnounce(out, txid, r, fam)
			}
		})
	}
}
