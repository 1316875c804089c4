package udptracker

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// testEnv is a running server over the real rules and memory store (or
// the store of envOpts.store).
type testEnv struct {
	srv      *Server
	tr       *tracker.Tracker
	store    *memswarm.Store // nil when envOpts.store was set
	clk      *clock.Manual
	counters *metrics.Counters
	lists    *access.Lists
	latency  *metrics.Latency
	addr     netip.AddrPort
	// shutdown stops the server and checks that Serve ended; it runs at
	// cleanup too, and only once.
	shutdown func()
}

type envOpts struct {
	bind     string
	sockets  int
	limit    int
	trCfg    *tracker.Config
	tracker  Tracker // overrides the real rules when set
	lifetime time.Duration
	// private reads peer keys from BEP 41 URL data (Config.Private); set
	// it with trCfg.Private.
	private bool
	// store replaces the memory store under the real rules.
	store swarm.Store
	// now is the manual clock's start (0: a fixed time in 2023).
	now int64
	// inPoller keeps the sockets in Go's netpoller (Config.Detach off;
	// the daemon detaches them, and so do the other tests).
	inPoller bool
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startEnv(t *testing.T, o envOpts) *testEnv {
	t.Helper()
	if o.bind == "" {
		o.bind = "127.0.0.1:0"
	}
	if o.sockets == 0 {
		o.sockets = 1
	}
	cfg := tracker.DefaultConfig()
	if o.trCfg != nil {
		cfg = *o.trCfg
	}
	if o.now == 0 {
		o.now = 1_700_000_000
	}
	e := &testEnv{clk: clock.NewManual(o.now), counters: metrics.NewCounters(4, true), lists: access.New(nil),
		latency: metrics.NewLatency(4)}
	store := o.store
	if store == nil {
		e.store = memswarm.New(swarm.Options{RemovePeerlessTorrents: true})
		store = e.store
	}
	e.tr = tracker.New(cfg, store, e.lists, e.clk, nil)
	var tr Tracker = e.tr
	if o.tracker != nil {
		tr = o.tracker
	}

	srv, err := New(Config{
		BindAddress:                o.bind,
		Sockets:                    o.sockets,
		CookieLifetime:             o.lifetime,
		MaxConnectionIDErrorsPerIP: o.limit,
		Clock:                      e.clk,
		Latency:                    e.latency,
		Private:                    o.private,
		Detach:                     !o.inPoller,
	}, tr, e.counters, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.addr = srv.Addr()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	var once sync.Once
	e.shutdown = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		})
	}
	t.Cleanup(e.shutdown)
	return e
}

// target is the address clients send to: the bound port on loopback of
// the wanted family.
func (e *testEnv) target(v6 bool) netip.AddrPort {
	if v6 {
		return netip.AddrPortFrom(netip.IPv6Loopback(), e.addr.Port())
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), e.addr.Port())
}

// rawClient sends hand-made packets from a chosen local address.
type rawClient struct {
	t  *testing.T
	c  *net.UDPConn
	to netip.AddrPort
}

func newRawClient(t *testing.T, local string, to netip.AddrPort) *rawClient {
	t.Helper()
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		t.Skipf("cannot bind %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, to: to}
}

func (r *rawClient) send(b []byte) {
	r.t.Helper()
	if _, err := r.c.WriteToUDPAddrPort(b, r.to); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next datagram, failing the test after 5 s.
func (r *rawClient) recv() []byte {
	r.t.Helper()
	buf := make([]byte, 4096)
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := r.c.ReadFromUDPAddrPort(buf)
	if err != nil {
		r.t.Fatalf("no answer: %v", err)
	}
	return buf[:n]
}

func (r *rawClient) roundTrip(b []byte) []byte {
	r.t.Helper()
	r.send(b)
	return r.recv()
}

// connect does a connect and returns the connection id.
func (r *rawClient) connect() uint64 {
	r.t.Helper()
	resp := r.roundTrip(connectPacket(0x1111))
	if len(resp) != 16 || binary.BigEndian.Uint32(resp) != actionConnect || binary.BigEndian.Uint32(resp[4:]) != 0x1111 {
		r.t.Fatalf("bad connect response % x", resp)
	}
	return binary.BigEndian.Uint64(resp[8:])
}

// expectNothingBefore checks that no answer to earlier packets arrives: a
// connect with a fresh transaction id is sent and must be the next datagram.
// UDP on loopback keeps order from one socket to one socket.
func (r *rawClient) expectNothingBefore() {
	r.t.Helper()
	resp := r.roundTrip(connectPacket(0x7e57))
	if binary.BigEndian.Uint32(resp) != actionConnect || binary.BigEndian.Uint32(resp[4:]) != 0x7e57 {
		r.t.Fatalf("got an unexpected answer % x", resp)
	}
}

func connectPacket(txid uint32) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, protocolID)
	binary.BigEndian.PutUint32(b[8:], actionConnect)
	binary.BigEndian.PutUint32(b[12:], txid)
	return b
}

type announceSpec struct {
	cid     uint64
	txid    uint32
	hash    bittorrent.InfoHash
	peerID  bittorrent.PeerID
	left    int64
	event   uint32
	numWant int32
	port    uint16
	ipField [4]byte
	options []byte
}

func announcePacket(s announceSpec) []byte {
	b := make([]byte, announceLen, announceLen+len(s.options))
	binary.BigEndian.PutUint64(b, s.cid)
	binary.BigEndian.PutUint32(b[8:], actionAnnounce)
	binary.BigEndian.PutUint32(b[12:], s.txid)
	copy(b[16:], s.hash[:])
	copy(b[36:], s.peerID[:])
	binary.BigEndian.PutUint64(b[64:], uint64(s.left))
	binary.BigEndian.PutUint32(b[80:], s.event)
	copy(b[84:], s.ipField[:])
	binary.BigEndian.PutUint32(b[92:], uint32(s.numWant))
	binary.BigEndian.PutUint16(b[96:], s.port)
	return append(b, s.options...)
}

func scrapePacket(cid uint64, txid uint32, hashes ...bittorrent.InfoHash) []byte {
	b := make([]byte, 16, 16+20*len(hashes))
	binary.BigEndian.PutUint64(b, cid)
	binary.BigEndian.PutUint32(b[8:], actionScrape)
	binary.BigEndian.PutUint32(b[12:], txid)
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return b
}

// errorText returns the message of an error packet for txid, failing the
// test for anything else.
func errorText(t *testing.T, resp []byte, txid uint32) string {
	t.Helper()
	if len(resp) < 8 || binary.BigEndian.Uint32(resp) != actionError {
		t.Fatalf("want an error packet, got % x", resp)
	}
	if got := binary.BigEndian.Uint32(resp[4:]); got != txid {
		t.Fatalf("error packet transaction id %#x, want %#x", got, txid)
	}
	return string(resp[8:])
}

func hashN(i int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.BigEndian.PutUint32(h[:], uint32(i)+1)
	h[19] = 0xaa
	return h
}

// addPeers registers n leechers of torrent h directly through the rules,
// from addresses made by mk(i).
func (e *testEnv) addPeers(t *testing.T, h bittorrent.InfoHash, n int, mk func(i int) netip.AddrPort) {
	t.Helper()
	var resp bittorrent.AnnounceResponse
	for i := 0; i < n; i++ {
		var id bittorrent.PeerID
		binary.BigEndian.PutUint32(id[:], uint32(i))
		req := bittorrent.AnnounceRequest{InfoHash: h, PeerID: id, Addr: mk(i), Left: 100, Event: bittorrent.EventStarted, NumWant: 1}
		resp.Reset()
		if err := e.tr.Announce(context.Background(), &req, &resp); err != nil {
			t.Fatal(err)
		}
	}
}

func v4Peer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(1000+i))
}

func v6Peer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), uint16(2000+i))
}

// flag is an atomic.Bool set to v, for a handler's private mode.
func flag(v bool) *atomic.Bool {
	b := new(atomic.Bool)
	b.Store(v)
	return b
}
