package udptracker

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/redisswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// TestFanoutOnlyRemote: a worker over the memory store handles its batch
// in order as before (no fanout); over a remote store it fans out.
func TestFanoutOnlyRemote(t *testing.T) {
	e := startEnv(t, envOpts{})
	if f := newFanout(&worker{s: e.srv}); f != nil {
		t.Fatal("fanout over the memory store")
	}
	srv, err := New(Config{BindAddress: "127.0.0.1:0"}, remoteTracker{e.tr}, e.counters, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if f := newFanout(srv.newWorker(nil)); f == nil {
		t.Fatal("no fanout over a remote store")
	}
}

type remoteTracker struct{ *tracker.Tracker }

func (remoteTracker) Remote() bool { return true }

// redisServer starts a private redis-server on a free loopback port for
// the test (STARLING_TEST_REDIS_URL gates the Redis tests; this one needs
// its own server, to stop it).
func redisServer(t *testing.T) (url string, cmd *exec.Cmd) {
	t.Helper()
	if os.Getenv("STARLING_TEST_REDIS_URL") == "" {
		t.Skip("STARLING_TEST_REDIS_URL is not set")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not in PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + addr + "/0", cmd
}

// TestFanoutRedis drives batches over a real UDP socket into a server on
// the Redis store: every request of a batch (announces, connects, a
// scrape, and a runt that gets no answer) is answered once, with its own
// transaction id and its own swarm's peers; with Redis stopped (SIGSTOP,
// so calls hang), every announce of a batch gets the degraded error
// answer within the store's deadline.
func TestFanoutRedis(t *testing.T) {
	url, redis := redisServer(t)
	// The breaker stays closed, so that every announce waits out its
	// deadline while Redis hangs.
	store, err := redisswarm.New(redisswarm.Config{URL: url, NoPeerDetail: true, Timeout: 50 * time.Millisecond,
		BreakerErrors: 1 << 20, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := startEnv(t, envOpts{store: store, limit: -1, now: time.Now().Unix()})
	srv, tr, counters, shutdown := e.srv, e.tr, e.counters, e.shutdown

	// Eight torrents of five leechers each, announced through the rules.
	const torrents, leechers = 8, 5
	hash := func(i int) bittorrent.InfoHash {
		h := hashN(i)
		h[0] = byte(i * 37) // other buckets too
		return h
	}
	for tor := range torrents {
		for p := range leechers {
			var id bittorrent.PeerID
			id[0], id[1] = byte(tor), byte(p)
			req := bittorrent.AnnounceRequest{InfoHash: hash(tor), PeerID: id, Addr: v4Peer(tor*leechers + p),
				Left: 100, Event: bittorrent.EventStarted, NumWant: 1}
			var resp bittorrent.AnnounceResponse
			if err := tr.Announce(context.Background(), &req, &resp); err != nil {
				t.Fatal(err)
			}
		}
	}

	to := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), srv.Addr().Port())
	c := newRawClient(t, "127.0.0.1:0", to)
	cid := c.connect()

	// One burst: 56 seeders' announces (7 per torrent, numwant 50, each
	// from its own port), 4 connects, a scrape, and a runt (too short for
	// a transaction id: no answer).
	type want struct {
		action uint32
		tor    int
		port   uint16
	}
	wants := map[uint32]want{}
	var burst [][]byte
	for i := range 56 {
		txid := uint32(0xa000 + i)
		tor := i % torrents
		port := uint16(7000 + i)
		burst = append(burst, announcePacket(announceSpec{cid: cid, txid: txid, hash: hash(tor), left: 0, numWant: 50, port: port}))
		wants[txid] = want{actionAnnounce, tor, port}
	}
	for i := range 4 {
		txid := uint32(0xc000 + i)
		burst = append(burst, connectPacket(txid))
		wants[txid] = want{action: actionConnect}
	}
	burst = append(burst, scrapePacket(cid, 0xd000, hash(0), hash(1)))
	wants[0xd000] = want{action: actionScrape}
	burst = append(burst, []byte{1, 2, 3})
	for i, p := range burst {
		// Interleave the runt and the others so that answers move up.
		if i == 3 {
			c.send([]byte{9})
		}
		c.send(p)
	}
	for range len(wants) {
		resp := c.recv()
		if len(resp) < 8 {
			t.Fatalf("short answer % x", resp)
		}
		action, txid := binary.BigEndian.Uint32(resp), binary.BigEndian.Uint32(resp[4:])
		w, ok := wants[txid]
		if !ok {
			t.Fatalf("answer for transaction %#x: unknown or answered twice", txid)
		}
		delete(wants, txid)
		if action != w.action {
			t.Fatalf("transaction %#x: action %d (% x), want %d", txid, action, resp, w.action)
		}
		switch action {
		case actionScrape:
			if len(resp) != 8+2*12 {
				t.Fatalf("scrape answer % x", resp)
			}
			for i := range 2 {
				if l := binary.BigEndian.Uint32(resp[8+12*i+8:]); l != leechers {
					t.Errorf("scrape: torrent %d has %d leechers, want %d", i, l, leechers)
				}
			}
		case actionAnnounce:
			// A seeder gets its torrent's five leechers, never itself.
			if l, s := binary.BigEndian.Uint32(resp[12:]), binary.BigEndian.Uint32(resp[16:]); l != leechers || s < 1 || s > 7 {
				t.Errorf("transaction %#x: %d leechers and %d seeders, want %d and 1 to 7", txid, l, s, leechers)
			}
			peers := resp[20:]
			if len(peers) != 6*leechers {
				t.Fatalf("transaction %#x: %d bytes of peers, want %d", txid, len(peers), 6*leechers)
			}
			got := map[netip.AddrPort]bool{}
			for p := peers; len(p) >= 6; p = p[6:] {
				got[netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[:4])), binary.BigEndian.Uint16(p[4:]))] = true
			}
			for p := range leechers {
				if !got[v4Peer(w.tor*leechers+p)] {
					t.Errorf("transaction %#x (torrent %d): leecher %v missing from %v", txid, w.tor, v4Peer(w.tor*leechers+p), got)
				}
			}
		}
	}
	c.expectNothingBefore()
	if n := counters.Value(metrics.UDP4Announces); n != 56 {
		t.Errorf("%d announces counted, want 56", n)
	}

	// Redis hangs: each announce of a burst gets the degraded answer, the
	// whole burst within a few deadlines (the calls wait together; one
	// after the other they would take 32 x 50 ms).
	if err := redis.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = redis.Process.Signal(syscall.SIGCONT) }()
	for round := range 3 {
		start := time.Now()
		txids := map[uint32]bool{}
		for i := range 32 {
			txid := uint32(0xe000 + round<<8 + i)
			txids[txid] = true
			c.send(announcePacket(announceSpec{cid: cid, txid: txid, hash: hash(i % torrents), numWant: 50, port: uint16(8000 + i)}))
		}
		for range len(txids) {
			resp := c.recv()
			txid := binary.BigEndian.Uint32(resp[4:])
			if !txids[txid] {
				t.Fatalf("round %d: answer for transaction %#x: unknown or answered twice", round, txid)
			}
			delete(txids, txid)
			if msg := errorText(t, resp, txid); !strings.Contains(msg, redisswarm.ErrUnavailable.Msg) {
				t.Fatalf("round %d: transaction %#x: error %q, want the store's %q", round, txid, msg, redisswarm.ErrUnavailable.Msg)
			}
		}
		// 50 ms per batch; a burst may come in a few batches.
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("round %d: 32 degraded answers took %v", round, d)
		}
	}
	c.expectNothingBefore()
	_ = redis.Process.Signal(syscall.SIGCONT)

	// The worker's pool (at most a batch less one) ends with the server.
	if n := poolGoroutines(); n == 0 || n >= batchSize {
		t.Errorf("%d pool goroutines while serving, want 1 to %d", n, batchSize-1)
	}
	shutdown()
	deadline := time.Now().Add(2 * time.Second)
	for poolGoroutines() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := poolGoroutines(); n > 0 {
		t.Errorf("%d pool goroutines after Shutdown", n)
	}
}

// poolGoroutines counts the goroutines of fanout pools.
func poolGoroutines() int {
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "udptracker.(*fanout).loop(")
}

var _ swarm.Remote = (*redisswarm.Store)(nil)

// deadlineTracker is a remote tracker that records the deadline each
// announce was given.
type deadlineTracker struct {
	*tracker.Tracker
	mu        sync.Mutex
	deadlines []time.Time // zero: none
}

func (*deadlineTracker) Remote() bool { return true }

func (d *deadlineTracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	dl, _ := ctx.Deadline()
	d.mu.Lock()
	d.deadlines = append(d.deadlines, dl)
	d.mu.Unlock()
	return d.Tracker.Announce(ctx, req, resp)
}

// TestFanoutBatchDeadline: the requests of one batch share one deadline,
// batchDeadline after the batch began, which the store keeps instead of
// a timer per call; every request is still answered.
func TestFanoutBatchDeadline(t *testing.T) {
	e := startEnv(t, envOpts{})
	dt := &deadlineTracker{Tracker: e.tr}
	srv, err := New(Config{BindAddress: "127.0.0.1:0", Clock: e.clk}, dt, e.counters, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// Shutdown (safe before Serve) ends the worker's pool.
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	w := srv.newWorker(nil)
	if w.fan == nil {
		t.Fatal("no fanout over a remote store")
	}
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	cid := srv.cookies.mint(from.Addr(), e.clk.Now())
	for _, n := range []int{1, 2, batchSize} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			dt.deadlines = dt.deadlines[:0]
			for i := range n {
				p := announcePacket(announceSpec{cid: cid, txid: uint32(i), hash: hashN(i % 4), left: 1, numWant: 5, port: uint16(7000 + i)})
				m := &w.rx[i]
				m.N, m.Addr, m.Truncated = copy(m.Buf, p), from, false
			}
			start := time.Now()
			if out := w.fan.answer(context.Background(), n); out != n {
				t.Fatalf("%d answers to %d announces", out, n)
			}
			if len(dt.deadlines) != n {
				t.Fatalf("%d announces reached the tracker, want %d", len(dt.deadlines), n)
			}
			first := dt.deadlines[0]
			if first.IsZero() || first.Before(start.Add(batchDeadline)) || first.After(time.Now().Add(batchDeadline)) {
				t.Fatalf("deadline %v after the batch began, want %v", first.Sub(start), batchDeadline)
			}
			for i, dl := range dt.deadlines {
				if !dl.Equal(first) {
					t.Errorf("announce %d: deadline %v, want the batch's %v", i, dl, first)
				}
			}
		})
	}
}
