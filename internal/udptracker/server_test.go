package udptracker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker/udp"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

func newAnacrolix(t *testing.T, e *testEnv, v6 bool) *udp.ConnClient {
	t.Helper()
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	cc, err := udp.NewConnClient(udp.NewConnClientOpts{
		Network: network,
		Host:    e.target(v6).String(),
		Ipv6:    &v6,
		Logger:  quietLog(),
	})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestIndependentClient drives connect, announce and scrape with anacrolix's
// UDP tracker client (which also sends BEP 41 URL data) on both families.
func TestIndependentClient(t *testing.T) {
	for _, tt := range []struct {
		name string
		bind string
		v6   bool
	}{
		{"ipv4", "127.0.0.1:0", false},
		{"ipv6", "[::1]:0", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, envOpts{bind: tt.bind})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			seeder, leecher := newAnacrolix(t, e, tt.v6), newAnacrolix(t, e, tt.v6)
			h := hashN(1)
			hdr, peers, err := seeder.Announce(ctx, udp.AnnounceRequest{
				InfoHash: infohash.T(h), PeerId: [20]byte{'S'}, Left: 0, Event: 2, NumWant: -1, Port: 6881,
			}, udp.Options{RequestUri: "/announce?x=1"})
			if err != nil {
				t.Fatalf("seeder announce: %v", err)
			}
			if hdr.Seeders != 1 || hdr.Leechers != 0 || hdr.Interval != 120 || len(peers.NodeAddrs()) != 0 {
				t.Fatalf("seeder got %+v with %d peers", hdr, len(peers.NodeAddrs()))
			}
			hdr, peers, err = leecher.Announce(ctx, udp.AnnounceRequest{
				InfoHash: infohash.T(h), PeerId: [20]byte{'L'}, Left: 10, Event: 2, NumWant: 50, Port: 6882,
			}, udp.Options{})
			if err != nil {
				t.Fatalf("leecher announce: %v", err)
			}
			if hdr.Seeders != 1 || hdr.Leechers != 1 {
				t.Fatalf("leecher got counts %+v", hdr)
			}
			nas := peers.NodeAddrs()
			if len(nas) != 1 || nas[0].Port != 6881 || !nas[0].IP.Equal(e.target(tt.v6).Addr().AsSlice()) {
				t.Fatalf("leecher got peers %v, want the seeder at port 6881", nas)
			}
			got, err := leecher.Client.Scrape(ctx, []udp.InfoHash{h, hashN(99), h})
			if err != nil {
				t.Fatalf("scrape: %v", err)
			}
			want := udp.ScrapeResponse{{Seeders: 1, Leechers: 1}, {}, {Seeders: 1, Leechers: 1}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("scrape = %v, want %v", got, want)
			}
			conn, ann, scr := metrics.UDP4Connections, metrics.UDP4Announces, metrics.UDP4Scrapes
			if tt.v6 {
				conn, ann, scr = metrics.UDP6Connections, metrics.UDP6Announces, metrics.UDP6Scrapes
			}
			if c, a, s := e.counters.Value(conn), e.counters.Value(ann), e.counters.Value(scr); c != 2 || a != 2 || s != 1 {
				t.Fatalf("counters: connections %d announces %d scrapes %d, want 2 2 1", c, a, s)
			}
		})
	}
}

func TestMalformedPackets(t *testing.T) {
	e := startEnv(t, envOpts{limit: -1})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	ann := func(mut func(b []byte) []byte) []byte {
		return mut(announcePacket(announceSpec{cid: cid, txid: 0xabcd, hash: hashN(1), port: 1, left: 1}))
	}
	tests := []struct {
		name string
		pkt  []byte
		want string // "" means no answer at all
	}{
		{"empty", nil, ""},
		{"shorter than a header", connectPacket(0xabcd)[:15], ""},
		{"unknown action", func() []byte { b := connectPacket(0xabcd); b[11] = 9; return b }(), msgInvalidAction},
		{"error action from a client", func() []byte { b := connectPacket(0xabcd); b[11] = 3; return b }(), msgInvalidAction},
		{"connect without protocol id", func() []byte { b := connectPacket(0xabcd); b[0] = 1; return b }(), msgNoProtocolID},
		{"truncated announce", ann(func(b []byte) []byte { return b[:97] }), msgShortPacket},
		{"announce header only", ann(func(b []byte) []byte { return b[:16] }), msgShortPacket},
		{"announce event 5", ann(func(b []byte) []byte { b[83] = 5; return b }), msgInvalidEvent},
		{"announce event 2^32-1", ann(func(b []byte) []byte { copy(b[80:], []byte{255, 255, 255, 255}); return b }), msgInvalidEvent},
		{"full scrape", scrapePacket(cid, 0xabcd), msgFullScrape},
		{"scrape of 1.5 hashes", append(scrapePacket(cid, 0xabcd, hashN(1)), make([]byte, 10)...), msgInvalidHashList},
		{"garbage with a transaction id", append([]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0xab, 0xcd}, "junk"...), msgInvalidAction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			if tt.want == "" {
				c.send(tt.pkt)
				c.expectNothingBefore()
				return
			}
			if got := errorText(t, c.roundTrip(tt.pkt), 0xabcd); got != tt.want {
				t.Fatalf("error %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConnectionIDs(t *testing.T) {
	e := startEnv(t, envOpts{limit: -1, lifetime: 120 * time.Second})
	a := newRawClient(t, "127.0.0.1:0", e.target(false))
	other := newRawClient(t, "127.0.0.2:0", e.target(false))
	valid := func(c *rawClient, cid uint64) bool {
		t.Helper()
		resp := c.roundTrip(announcePacket(announceSpec{cid: cid, txid: 77, hash: hashN(1), port: 7, left: 1}))
		if binary.BigEndian.Uint32(resp) == actionAnnounce {
			return true
		}
		if msg := errorText(t, resp, 77); msg != msgBadConnectionID {
			t.Fatalf("error %q", msg)
		}
		return false
	}
	cid := a.connect()
	if !valid(a, cid) {
		t.Fatal("a fresh id was refused")
	}
	if valid(other, cid) {
		t.Fatal("an id minted for 127.0.0.1 was accepted from 127.0.0.2")
	}
	if valid(a, cid^1) || valid(a, cid^(1<<40)) || valid(a, protocolID) || valid(a, 0) {
		t.Fatal("a forged id was accepted")
	}
	e.clk.Advance(120)
	if !valid(a, cid) {
		t.Fatal("an id was refused at the end of its lifetime")
	}
	// Scrape checks the id too.
	e.clk.Advance(1)
	if msg := errorText(t, a.roundTrip(scrapePacket(cid, 78, hashN(1))), 78); msg != msgBadConnectionID {
		t.Fatalf("expired scrape: %q", msg)
	}
	if valid(a, cid) {
		t.Fatal("an expired id was accepted")
	}
	if !valid(a, a.connect()) {
		t.Fatal("a new id after expiry was refused")
	}
	if got := e.counters.Value(metrics.UDPBadConnectionIDs); got != 7 {
		t.Fatalf("bad connection ids counted %d, want 7", got)
	}
}

func TestScrapeLimitsAndOrder(t *testing.T) {
	e := startEnv(t, envOpts{})
	e.addPeers(t, hashN(3), 3, v4Peer)
	e.addPeers(t, hashN(5), 5, v4Peer)
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	// Past 101 hashes the datagram is longer than the receive buffer and
	// is cut to it, as Torrust cuts to its own: the first 74 are answered.
	for _, n := range []int{1, 2, 74, 75, 101, 102, 200, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c.t = t
			hashes := make([]bittorrent.InfoHash, n)
			for i := range hashes {
				hashes[i] = hashN([]int{3, 5, 3, 9}[i%4]) // duplicates and an unknown
			}
			resp := c.roundTrip(scrapePacket(cid, 5, hashes...))
			if binary.BigEndian.Uint32(resp) != actionScrape || binary.BigEndian.Uint32(resp[4:]) != 5 {
				t.Fatalf("not a scrape answer: % x", resp[:8])
			}
			want := min(n, 74)
			if len(resp) != 8+12*want {
				t.Fatalf("answer has %d bytes, want %d entries", len(resp), want)
			}
			for i := 0; i < want; i++ {
				leechers := binary.BigEndian.Uint32(resp[8+12*i+8:])
				if w := []uint32{3, 5, 3, 0}[i%4]; leechers != w {
					t.Fatalf("entry %d has %d leechers, want %d", i, leechers, w)
				}
			}
		})
	}
}

// announceRaw announces from c and returns the header fields and the
// compact peers, checking the answer's framing.
func announceRaw(t *testing.T, c *rawClient, s announceSpec, peerLen int) (seeders, leechers uint32, peers [][]byte) {
	t.Helper()
	resp := c.roundTrip(announcePacket(s))
	if binary.BigEndian.Uint32(resp) != actionAnnounce {
		t.Fatalf("not an announce answer: %q", resp)
	}
	if binary.BigEndian.Uint32(resp[4:]) != s.txid {
		t.Fatalf("transaction id % x", resp[4:8])
	}
	body := resp[20:]
	if len(body)%peerLen != 0 {
		t.Fatalf("peer list of %d bytes is not a multiple of %d", len(body), peerLen)
	}
	for len(body) > 0 {
		peers = append(peers, body[:peerLen])
		body = body[peerLen:]
	}
	return binary.BigEndian.Uint32(resp[16:]), binary.BigEndian.Uint32(resp[12:]), peers
}

func TestNumWant(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.MaxPeersPerAnnounce = 300
	e := startEnv(t, envOpts{trCfg: &cfg})
	h := hashN(1)
	e.addPeers(t, h, 400, v4Peer)
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	for _, tt := range []struct {
		numWant int32
		want    int
	}{
		{-1, maxPeers4}, {0, maxPeers4}, {5, 5}, {200, 200}, {300, maxPeers4}, {-7, maxPeers4},
	} {
		t.Run(fmt.Sprint(tt.numWant), func(t *testing.T) {
			c.t = t
			_, _, peers := announceRaw(t, c, announceSpec{cid: cid, txid: 9, hash: h, numWant: tt.numWant, port: 9, left: 0}, 6)
			if len(peers) != tt.want {
				t.Fatalf("got %d peers, want %d", len(peers), tt.want)
			}
			if 28+20+len(peers)*6 > 1500 {
				t.Fatal("answer does not fit a 1500-byte packet")
			}
		})
	}
	t.Run("default of the rules", func(t *testing.T) {
		e := startEnv(t, envOpts{})
		e.addPeers(t, h, 100, v4Peer)
		c := newRawClient(t, "127.0.0.1:0", e.target(false))
		for _, nw := range []int32{-1, 0, 200} {
			_, _, peers := announceRaw(t, c, announceSpec{cid: c.connect(), txid: 9, hash: h, numWant: nw, port: 9}, 6)
			if len(peers) != 74 {
				t.Fatalf("num_want %d: got %d peers, want 74", nw, len(peers))
			}
		}
	})
}

// TestFamilies: each client gets peers of its own family only, IPv6 ones in
// 18-byte entries that fit a 1500-byte packet, and an IPv4 client arriving
// on a dual-stack socket is IPv4.
func TestFamilies(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.MaxPeersPerAnnounce = 300
	e := startEnv(t, envOpts{bind: "[::]:0", trCfg: &cfg})
	h := hashN(1)
	e.addPeers(t, h, 100, v4Peer)
	e.addPeers(t, h, 100, v6Peer)

	c6 := newRawClient(t, "[::1]:0", e.target(true))
	_, leechers, peers := announceRaw(t, c6, announceSpec{cid: c6.connect(), txid: 6, hash: h, port: 6, numWant: -1}, 18)
	if len(peers) != maxPeers6 || 48+20+18*len(peers) > 1500 {
		t.Fatalf("IPv6 client got %d peers", len(peers))
	}
	if leechers != 200 {
		t.Fatalf("leechers %d, want 200 (the requester is a seeder)", leechers)
	}
	for _, p := range peers {
		if !bytes.Equal(p[:4], []byte{0x20, 0x01, 0x0d, 0xb8}) {
			t.Fatalf("IPv6 client got peer % x", p)
		}
	}

	c4 := newRawClient(t, "127.0.0.1:0", e.target(false))
	_, _, peers = announceRaw(t, c4, announceSpec{cid: c4.connect(), txid: 4, hash: h, port: 4, numWant: 50}, 6)
	if len(peers) != 50 {
		t.Fatalf("IPv4 client on the dual-stack socket got %d peers, want 50", len(peers))
	}
	for _, p := range peers {
		if p[0] != 10 {
			t.Fatalf("IPv4 client got peer % x", p)
		}
	}
	// The IPv4 client was counted as IPv4.
	if e.counters.Value(metrics.UDP4Announces) != 1 || e.counters.Value(metrics.UDP6Announces) != 1 {
		t.Fatalf("announces by family: v4 %d v6 %d", e.counters.Value(metrics.UDP4Announces), e.counters.Value(metrics.UDP6Announces))
	}
}

// TestSourceAddressWins: the packet's IP field is ignored; peers are handed
// out with the source address and the announced port.
func TestSourceAddressWins(t *testing.T) {
	e := startEnv(t, envOpts{})
	h := hashN(1)
	a := newRawClient(t, "127.0.0.2:0", e.target(false))
	announceRaw(t, a, announceSpec{cid: a.connect(), txid: 1, hash: h, port: 5555, left: 0, event: 2, ipField: [4]byte{1, 2, 3, 4}}, 6)
	b := newRawClient(t, "127.0.0.1:0", e.target(false))
	seeders, leechers, peers := announceRaw(t, b, announceSpec{cid: b.connect(), txid: 2, hash: h, port: 6666, left: 5, event: 2}, 6)
	if seeders != 1 || leechers != 1 || len(peers) != 1 {
		t.Fatalf("seeders %d leechers %d peers %d", seeders, leechers, len(peers))
	}
	if want := []byte{127, 0, 0, 2, 0x15, 0xb3}; !bytes.Equal(peers[0], want) {
		t.Fatalf("peer % x, want % x", peers[0], want)
	}
	// Event numbers: 3 is stopped and removes the seeder; 1 is completed.
	announceRaw(t, a, announceSpec{cid: a.connect(), txid: 3, hash: h, port: 5555, event: 3}, 6)
	seeders, leechers, _ = announceRaw(t, b, announceSpec{cid: b.connect(), txid: 4, hash: h, port: 6666, left: 0, event: 1}, 6)
	if seeders != 1 || leechers != 0 {
		t.Fatalf("after stop and complete: seeders %d leechers %d", seeders, leechers)
	}
	resp := b.roundTrip(scrapePacket(b.connect(), 5, h))
	if completed := binary.BigEndian.Uint32(resp[12:]); completed != 1 {
		t.Fatalf("completed %d, want 1", completed)
	}
}

func TestBEP41Options(t *testing.T) {
	e := startEnv(t, envOpts{})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	for _, tt := range []struct {
		name string
		opts []byte
	}{
		{"url data", append([]byte{optURLData, 9}, "/announce"...)},
		{"split url data and nop", append(append([]byte{optNOP, optURLData, 4}, "/ann"...), append([]byte{optNOP, optURLData, 5}, "ounce"...)...)},
		{"end of options then junk", []byte{optEndOfOptions, 0xff, 0xff}},
		{"length past the end", []byte{optURLData, 200, 'x'}},
		{"type without length", []byte{optNOP, optURLData}},
		{"unknown type", []byte{0x7f, 2, 0, 0, optURLData, 1, '/'}},
		{"max url data", append([]byte{optURLData, 255}, bytes.Repeat([]byte{'a'}, 255)...)},
		{"longer than the receive buffer", bytes.Repeat(append([]byte{optURLData, 255}, bytes.Repeat([]byte{'a'}, 255)...), 12)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			announceRaw(t, c, announceSpec{cid: cid, txid: 41, hash: hashN(1), port: 41, options: tt.opts}, 6)
		})
	}
	var o announceOptions
	parseOptions(append(append([]byte{optNOP, optURLData, 4}, "/ann"...), append([]byte{optURLData, 5}, "ounce"...)...), &o)
	if got := string(o.urlData[:o.urlDataLen]); got != "/announce" || o.malformed {
		t.Fatalf("url data %q malformed %v", got, o.malformed)
	}
}

func TestRateLimit(t *testing.T) {
	e := startEnv(t, envOpts{limit: 3})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	bad := announcePacket(announceSpec{cid: 12345, txid: 1, hash: hashN(1), port: 1})
	for i := 0; i < 8; i++ {
		c.send(bad)
	}
	for i := 0; i < 3; i++ {
		if msg := errorText(t, c.recv(), 1); msg != msgBadConnectionID {
			t.Fatalf("answer %d: %q", i, msg)
		}
	}
	c.expectNothingBefore()
	// Malformed requests draw on the same budget.
	c.send(connectPacket(1)[:12])
	c.send(func() []byte { b := connectPacket(9); b[11] = 9; return b }())
	c.expectNothingBefore()
	if got := e.counters.Value(metrics.UDPRateLimited); got != 6 {
		t.Fatalf("rate limited %d, want 6", got)
	}
	if got := e.counters.Value(metrics.UDPBadConnectionIDs); got != 8 {
		t.Fatalf("bad connection ids %d, want 8", got)
	}
	// Other IPs keep their budget, and the budget comes back next window.
	o := newRawClient(t, "127.0.0.3:0", e.target(false))
	if msg := errorText(t, o.roundTrip(bad), 1); msg != msgBadConnectionID {
		t.Fatal(msg)
	}
	e.clk.Advance(int64(DefaultErrorWindow / time.Second))
	if msg := errorText(t, c.roundTrip(bad), 1); msg != msgBadConnectionID {
		t.Fatal(msg)
	}
}

func TestTrackerRefusal(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.Listed = true
	e := startEnv(t, envOpts{trCfg: &cfg})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	h := hashN(1)
	msg := errorText(t, c.roundTrip(announcePacket(announceSpec{cid: c.connect(), txid: 3, hash: h, port: 1})), 3)
	if want := "tracker server error: The torrent: " + h.String() + ", is not whitelisted"; msg != want {
		t.Fatalf("error %q, want %q", msg, want)
	}
	// Failed requests are not counted as handled (spec section 7), only as
	// errors.
	if n := e.counters.Value(metrics.UDP4Announces); n != 0 {
		t.Fatalf("a refused announce counted as handled: udp4 announces %d", n)
	}
	if n := e.counters.Value(metrics.UDPErrors); n != 1 {
		t.Fatalf("udp errors %d, want 1", n)
	}
}

// faultyTracker fails or panics on demand.
type faultyTracker struct{ panics atomic.Bool }

func (f *faultyTracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	if f.panics.Load() {
		panic("boom")
	}
	return errors.New("disk on fire at /secret/path")
}

func (f *faultyTracker) Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	for range req.InfoHashes {
		resp.Files = append(resp.Files, bittorrent.SwarmStats{Seeders: 1})
	}
	return nil
}

func TestInternalErrorsAndPanics(t *testing.T) {
	ft := &faultyTracker{}
	e := startEnv(t, envOpts{tracker: ft})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	msg := errorText(t, c.roundTrip(announcePacket(announceSpec{cid: cid, txid: 8, hash: hashN(1), port: 1})), 8)
	if msg != msgInternal || strings.Contains(msg, "secret") {
		t.Fatalf("internal error leaked as %q", msg)
	}
	ft.panics.Store(true)
	c.send(announcePacket(announceSpec{cid: cid, txid: 8, hash: hashN(1), port: 1}))
	c.expectNothingBefore()
	if got := e.counters.Value(metrics.Panics); got != 1 {
		t.Fatalf("panics counted %d, want 1", got)
	}
	// The worker survived.
	if resp := c.roundTrip(scrapePacket(cid, 4, hashN(1))); binary.BigEndian.Uint32(resp) != actionScrape {
		t.Fatalf("after the panic: % x", resp)
	}
}

func TestSeveralSocketsAndProbe(t *testing.T) {
	e := startEnv(t, envOpts{sockets: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Many source ports spread over the sockets; all must be answered.
	for i := 0; i < 20; i++ {
		if err := Probe(ctx, e.target(false).String()); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.counters.Value(metrics.UDP4Connections); got != 20 {
		t.Fatalf("connections %d, want 20", got)
	}
	// A probe of a port nobody answers fails within its context.
	dead := newRawClient(t, "127.0.0.1:0", e.target(false))
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := Probe(short, dead.c.LocalAddr().String()); err == nil {
		t.Fatal("probe of a silent port succeeded")
	}
}

func TestShutdown(t *testing.T) {
	srv, err := New(Config{BindAddress: "127.0.0.1:0", Sockets: 2}, &faultyTracker{}, metrics.NewCounters(1, true), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background()) }()
	select {
	case <-srv.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("never ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Probe(ctx, srv.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	if err := srv.Listen(ctx); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Listen after shutdown: %v", err)
	}
	// The port is free again.
	again, err := New(Config{BindAddress: srv.Addr().String(), Sockets: 2}, &faultyTracker{}, metrics.NewCounters(1, true), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Listen(ctx); err != nil {
		t.Fatalf("rebind after shutdown: %v", err)
	}
	if err := again.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{BindAddress: "x", CookieLifetime: time.Millisecond}, &faultyTracker{}, metrics.NewCounters(1, true), nil); err == nil {
		t.Fatal("a sub-second cookie lifetime was accepted")
	}
	if _, err := New(Config{BindAddress: "x", CookieLifetime: 1 << 31 * time.Second}, &faultyTracker{}, metrics.NewCounters(1, true), nil); err == nil || !strings.Contains(err.Error(), "cookie_lifetime") {
		t.Fatalf("a cookie lifetime of 2^31 s: %v", err)
	}
	srv, err := New(Config{BindAddress: "no-port"}, &faultyTracker{}, metrics.NewCounters(1, true), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("Listen(no-port) = %v", err)
	}
	// A port in use by a plain socket is refused even with SO_REUSEPORT.
	busy := newRawClient(t, "127.0.0.1:0", netip.AddrPort{})
	srv, _ = New(Config{BindAddress: busy.c.LocalAddr().String(), Sockets: 2}, &faultyTracker{}, metrics.NewCounters(1, true), quietLog())
	if err := srv.Listen(context.Background()); err == nil {
		t.Fatal("bound a port already in use")
	}
}

// TestConnectionIDAcrossListeners: the key is per process, so a client may
// connect on one listener and announce on another.
func TestConnectionIDAcrossListeners(t *testing.T) {
	a, b := startEnv(t, envOpts{}), startEnv(t, envOpts{})
	ca := newRawClient(t, "127.0.0.1:0", a.target(false))
	cid := ca.connect()
	cb := newRawClient(t, "127.0.0.1:0", b.target(false))
	announceRaw(t, cb, announceSpec{cid: cid, txid: 12, hash: hashN(1), port: 12}, 6)
}

// panickyPrefetch is a working tracker whose Prefetch panics.
type panickyPrefetch struct{ *tracker.Tracker }

func (panickyPrefetch) Prefetch([]swarm.Hint) { panic("prefetch boom") }

// newTestWorker is a worker of e's server on a socket of its own, for
// tests that hand it batches directly.
func newTestWorker(t *testing.T, e *testEnv) *worker {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	bc, err := batch.NewConn(uc, batchSize)
	if err != nil {
		t.Fatal(err)
	}
	return e.srv.newWorker(bc)
}

// TestPrefetchPanicDisablesIt: a panic in the store's lock-free prefetch
// pass is counted and logged, the worker stops prefetching, and the batch
// is still answered.
func TestPrefetchPanicDisablesIt(t *testing.T) {
	e := startEnv(t, envOpts{})
	w := newTestWorker(t, e)
	w.prefetch = panickyPrefetch{e.tr}
	for i := range 2 {
		m := &w.rx[i]
		m.N = copy(m.Buf, announcePacket(announceSpec{txid: uint32(i), hash: hashN(1), port: 6881}))
		m.Addr = netip.MustParseAddrPort("127.0.0.1:40000")
	}
	w.prefetchAnnounces(2)
	if w.prefetch != nil {
		t.Fatal("the worker still prefetches after a panic")
	}
	if got := e.counters.Value(metrics.Panics); got != 1 {
		t.Fatalf("panics counted %d, want 1", got)
	}
}

// sampleRecorder is the rules with what the worker hands them recorded:
// the hints' samples and each announce's Sample.
type sampleRecorder struct {
	*tracker.Tracker
	hinted, announced []uint64
}

func (r *sampleRecorder) Prefetch(hints []swarm.Hint) {
	for _, h := range hints {
		r.hinted = append(r.hinted, h.Sample)
	}
	r.Tracker.Prefetch(hints)
}

func (r *sampleRecorder) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	r.announced = append(r.announced, req.Sample)
	return r.Tracker.Announce(ctx, req, resp)
}

// TestWorkerPassesSamples: each announce of a prefetched batch reaches the
// rules with the sample its hint carried (so the store answers from the
// peers it loaded), a different one per announce; a lone announce, not
// prefetched, carries none and lets the store draw.
func TestWorkerPassesSamples(t *testing.T) {
	e := startEnv(t, envOpts{})
	w := newTestWorker(t, e)
	rec := &sampleRecorder{Tracker: e.tr}
	w.prefetch, w.h.tracker = rec, rec
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	fill := func(n int) {
		for i := range n {
			m := &w.rx[i]
			m.Addr = src
			if i == 1 { // a connect among the announces
				m.N = copy(m.Buf, connectPacket(uint32(i)))
				continue
			}
			pkt := announcePacket(announceSpec{cid: e.srv.cookies.mint(src.Addr(), e.clk.Now()), txid: uint32(i),
				hash: hashN(1), port: 6881 + uint16(i), left: int64(i % 2), numWant: 30})
			m.N = copy(m.Buf, pkt)
		}
	}
	fill(4)
	if got := w.answer(context.Background(), 4); got != 4 {
		t.Fatalf("%d answers to 4 datagrams", got)
	}
	if len(rec.hinted) != 3 || !slices.Equal(rec.hinted, rec.announced) {
		t.Fatalf("hinted samples %x, announced %x: want the same 3", rec.hinted, rec.announced)
	}
	if rec.hinted[0] == rec.hinted[1] || rec.hinted[1] == rec.hinted[2] || rec.hinted[0] == rec.hinted[2] {
		t.Fatalf("samples %x repeat", rec.hinted)
	}
	rec.hinted, rec.announced = nil, nil
	fill(1)
	if got := w.answer(context.Background(), 1); got != 1 {
		t.Fatalf("%d answers to 1 datagram", got)
	}
	if len(rec.hinted) != 0 || !slices.Equal(rec.announced, []uint64{0}) {
		t.Fatalf("lone announce: hinted %x, announced %x: want none and 0", rec.hinted, rec.announced)
	}
}

// TestPausedEvent: libtorrent announces a partial seed with event 4 (BEP
// 21); it is answered and keeps the peer in its swarm like event 0.
func TestPausedEvent(t *testing.T) {
	e := startEnv(t, envOpts{})
	e.addPeers(t, hashN(7), 2, v4Peer)
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	for i, ev := range []uint32{eventStartedForTest, eventPaused, eventPaused} {
		_, leechers, peers := announceRaw(t, c, announceSpec{cid: cid, txid: uint32(70 + i), hash: hashN(7), port: 7070, left: 5, event: ev}, 6)
		if leechers != 3 || len(peers) != 2 {
			t.Fatalf("announce %d (event %d): %d leechers, %d peers; want 3 and the 2 others", i, ev, leechers, len(peers))
		}
	}
}

const eventStartedForTest = 2
