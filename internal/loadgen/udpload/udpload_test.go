package udpload_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/loadgen/udpload"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/udptracker"
)

func startTracker(t *testing.T, cfg tracker.Config) (*udptracker.Server, *metrics.Counters) {
	t.Helper()
	clk := clock.NewManual(1_700_000_000)
	tr := tracker.New(cfg, memswarm.New(swarm.Options{}), access.New(nil), clk, nil)
	counters := metrics.NewCounters(2, true)
	srv, err := udptracker.New(udptracker.Config{BindAddress: "127.0.0.1:0", Sockets: 2, Clock: clk},
		tr, counters, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		<-done
	})
	return srv, counters
}

func shortRun(addr string) udpload.Config {
	cfg := udpload.DefaultConfig()
	cfg.Addr = addr
	cfg.Warmup, cfg.Duration = 100*time.Millisecond, 400*time.Millisecond
	cfg.Torrents, cfg.Peers = 100, 1000
	cfg.Sockets, cfg.SourceIPs, cfg.Window = 2, 2, 64
	return cfg
}

func TestRunAgainstTracker(t *testing.T) {
	for _, tt := range []struct {
		name    string
		scrapes float64
		skew    float64
		gso     bool
		plain   bool // Batch off
		rate    float64
	}{
		{"announces uniform", 0, 0, true, false, 0},
		{"mix skewed", 0.3, 1.3, true, false, 0},
		{"mix skewed sendmmsg", 0.3, 1.3, false, false, 0},
		{"announces plain", 0, 0, false, true, 0},
		{"mix skewed plain", 0.3, 1.3, true, true, 0}, // GSO needs batches: off
		{"mix skewed paced", 0.3, 1.3, false, true, 2000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, counters := startTracker(t, tracker.DefaultConfig())
			cfg := shortRun(srv.Addr().String())
			cfg.ScrapeShare, cfg.Skew, cfg.GSO = tt.scrapes, tt.skew, tt.gso
			cfg.Batch, cfg.Rate = !tt.plain, tt.rate
			var progress strings.Builder
			res, err := udpload.Run(context.Background(), cfg, &progress)
			if err != nil {
				t.Fatal(err)
			}
			if res.Received == 0 || res.Announces == 0 || res.Errors != 0 || res.Bad != 0 {
				t.Fatalf("result:\n%s", res)
			}
			if tt.scrapes > 0 && res.Scrapes == 0 {
				t.Fatalf("no scrapes answered:\n%s", res)
			}
			// Answers to requests sent before the window may land in it.
			if res.Received > res.Sent+uint64(cfg.Window*cfg.Sockets) || res.Announces+res.Scrapes != res.Received {
				t.Fatalf("inconsistent counts:\n%s", res)
			}
			// The tracker saw at least what the generator counted.
			if got := counters.Value(metrics.UDP4Announces); got < res.Announces {
				t.Fatalf("tracker counted %d announces, generator %d", got, res.Announces)
			}
			if !strings.Contains(res.String(), "responses received:") {
				t.Fatalf("summary: %s", res)
			}
			l := res.Latency
			if l.Count == 0 || l.Count > res.Received || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 &&
				l.P99 <= l.P999 && l.P999 <= l.Max) || !strings.Contains(res.String(), "latency:             p50 ") {
				t.Fatalf("latency %+v:\n%s", l, res)
			}
			// Linux has had UDP segmentation since 4.18.
			if want := tt.gso && !tt.plain && runtime.GOOS == "linux"; res.Segmented != want {
				t.Fatalf("segmented %v, want %v:\n%s", res.Segmented, want, res)
			}
		})
	}
}

func TestRunCountsErrors(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.Listed = true // nothing is whitelisted: every announce is refused
	srv, _ := startTracker(t, cfg)
	res, err := udpload.Run(context.Background(), shortRun(srv.Addr().String()), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Announces != 0 || !strings.Contains(res.ErrorSample, "is not whitelisted") {
		t.Fatalf("result:\n%s", res)
	}
}

func TestEcho(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan netip.AddrPort, 1)
	done := make(chan error, 1)
	go func() {
		done <- udpload.Echo(ctx, "127.0.0.1:0", 2, udpload.EchoReply, func(a netip.AddrPort) { ready <- a })
	}()
	var addr netip.AddrPort
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	res, err := udpload.Run(context.Background(), shortRun(addr.String()), io.Discard)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if res.Announces == 0 || res.Errors != 0 {
		t.Fatalf("result:\n%s", res)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestEchoReplySize checks the answers of an echo server of each reply
// size with a raw socket: a connect gets 16 bytes, anything else the
// reply size, both with the request's transaction id.
func TestEchoReplySize(t *testing.T) {
	for _, tc := range []struct {
		reply int
		ok    bool
	}{{udpload.EchoReply, true}, {200, true}, {udpload.MaxEchoReply, true}, {19, false}, {1473, false}, {-1, false}} {
		t.Run(strconv.Itoa(tc.reply), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan netip.AddrPort, 1)
			done := make(chan error, 1)
			go func() { done <- udpload.Echo(ctx, "127.0.0.1:0", 1, tc.reply, func(a netip.AddrPort) { ready <- a }) }()
			var addr netip.AddrPort
			select {
			case addr = <-ready:
				if !tc.ok {
					t.Fatalf("a reply of %d bytes was taken", tc.reply)
				}
			case err := <-done:
				if tc.ok || err == nil || !strings.Contains(err.Error(), "bytes: use 20") {
					t.Fatalf("reply %d: %v", tc.reply, err)
				}
				return
			}
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, req := range []struct {
				size, want int
				action     uint32
			}{{16, 16, 0}, {98, tc.reply, 1}, {40, tc.reply, 1}} {
				pkt := make([]byte, req.size)
				binary.BigEndian.PutUint32(pkt[8:], req.action)
				binary.BigEndian.PutUint32(pkt[12:], 0xdeadbeef)
				if req.size == 16 {
					binary.BigEndian.PutUint64(pkt, 0x41727101980)
				}
				if _, err := c.Write(pkt); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 2048)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n != req.want || binary.BigEndian.Uint32(buf[0:]) != req.action || binary.BigEndian.Uint32(buf[4:]) != 0xdeadbeef {
					t.Fatalf("%d-byte request: answer of %d bytes % x, want %d bytes, action %d", req.size, n, buf[:min(n, 24)], req.want, req.action)
				}
			}
		})
	}
}

// TestRunRequests: a run with a request count ends when that many were
// sent and answered, long before its duration: exactly the count without a
// warm-up. With one, the window holds at least the count (and at most a
// window per socket more, sent while it opened) and also the answers to
// the requests in flight when it opened.
func TestRunRequests(t *testing.T) {
	srv, _ := startTracker(t, tracker.DefaultConfig())
	for _, tc := range []struct {
		warmup   time.Duration
		requests uint64
		plain    bool
	}{{0, 5000, false}, {0, 1, false}, {200 * time.Millisecond, 3000, false}, {0, 5000, true}, {0, 1, true}} {
		cfg := shortRun(srv.Addr().String())
		cfg.Warmup, cfg.Duration, cfg.Requests, cfg.Batch = tc.warmup, time.Minute, tc.requests, !tc.plain
		res, err := udpload.Run(context.Background(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		most, early := tc.requests, uint64(0)
		if tc.warmup > 0 {
			most += uint64(cfg.Sockets * min(cfg.Window, 64)) // a batch per socket
			early = uint64(cfg.Sockets * cfg.Window)
		}
		if res.Sent < tc.requests || res.Sent > most || res.Received < res.Sent || res.Received > res.Sent+early ||
			res.Announces != res.Received || res.Lost != 0 {
			t.Fatalf("warm-up %v, %d requests: sent %d (want %d..%d), received %d, announces %d, lost %d",
				tc.warmup, tc.requests, res.Sent, tc.requests, most, res.Received, res.Announces, res.Lost)
		}
		if res.Elapsed >= cfg.Duration {
			t.Fatalf("%d requests: the window lasted its whole duration (%v)", tc.requests, res.Elapsed)
		}
	}
}

func TestRunWithoutTracker(t *testing.T) {
	// A port with nothing behind it: the run must end with an error, not hang.
	srv, _ := startTracker(t, tracker.DefaultConfig())
	addr := srv.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_, err := udpload.Run(ctx, shortRun(addr), io.Discard)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run against a closed port: %v", err)
	}
}

func TestConfigChecks(t *testing.T) {
	for _, mut := range []func(*udpload.Config){
		func(c *udpload.Config) { c.Torrents = 0 },
		func(c *udpload.Config) { c.Skew = 0.5 },
		func(c *udpload.Config) { c.Warmup = -time.Second },
		func(c *udpload.Config) { c.Timeout = -time.Second },
		func(c *udpload.Config) { c.SourceIPs = -3 },
		func(c *udpload.Config) { c.Burst = -1 },
		func(c *udpload.Config) { c.ScrapeShare = 2 },
		func(c *udpload.Config) { c.ScrapeHashes = 75 },
		func(c *udpload.Config) { c.Duration = 0 },
		func(c *udpload.Config) { c.Addr = " , " },
		func(c *udpload.Config) { c.Rate = -1 },
		func(c *udpload.Config) { c.Rate = math.NaN() },
		func(c *udpload.Config) { c.Rate = math.Inf(1) },
	} {
		c := udpload.DefaultConfig()
		mut(&c)
		if _, err := udpload.Run(context.Background(), c, io.Discard); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	c := udpload.DefaultConfig()
	if err := c.Profile("skewed"); err != nil || c.Torrents != 1_000_000 || c.Peers != 2_000_000 || c.Skew <= 1 {
		t.Fatalf("skewed profile: %+v %v", c, err)
	}
	if err := c.Profile("nope"); err == nil {
		t.Fatal("unknown profile accepted")
	}
}

func TestEchoChecks(t *testing.T) {
	for _, tc := range []struct{ sockets, reply int }{{0, udpload.EchoReply}, {-2, udpload.EchoReply}, {1, udpload.EchoReply - 1}, {1, udpload.MaxEchoReply + 1}} {
		if err := udpload.Echo(context.Background(), "127.0.0.1:0", tc.sockets, tc.reply, nil); err == nil {
			t.Errorf("echo with %d sockets and %d-byte replies started", tc.sockets, tc.reply)
		}
	}
}

// TestRunSeveralTargets: a run aimed at two trackers spreads its sockets
// over both, each tracker answers its share, and the summary's total is
// the sum of the targets' parts.
func TestRunSeveralTargets(t *testing.T) {
	srv1, counters1 := startTracker(t, tracker.DefaultConfig())
	srv2, counters2 := startTracker(t, tracker.DefaultConfig())
	cfg := shortRun(srv1.Addr().String() + ", " + srv2.Addr().String())
	cfg.Sockets, cfg.SourceIPs = 4, 2
	res, err := udpload.Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Targets) != 2 || res.Targets[0].Addr != srv1.Addr().String() || res.Targets[1].Addr != srv2.Addr().String() {
		t.Fatalf("targets: %+v", res.Targets)
	}
	var sum udpload.Counts
	for i, tc := range res.Targets {
		if tc.Announces == 0 || tc.Errors != 0 || tc.Latency.Count == 0 || tc.Latency.P50 > tc.Latency.Max {
			t.Fatalf("target %d (%s) answered nothing or errors:\n%s", i, tc.Addr, res)
		}
		sum.Sent += tc.Sent
		sum.Received += tc.Received
		sum.Announces += tc.Announces
	}
	if res.Latency.Count != res.Targets[0].Latency.Count+res.Targets[1].Latency.Count {
		t.Fatalf("latency counts: targets %d + %d, total %d", res.Targets[0].Latency.Count, res.Targets[1].Latency.Count, res.Latency.Count)
	}
	if sum.Sent != res.Sent || sum.Received != res.Received || sum.Announces != res.Announces {
		t.Fatalf("targets add up to %+v, total %+v", sum, res.Counts)
	}
	for i, c := range []*metrics.Counters{counters1, counters2} {
		if got := c.Value(metrics.UDP4Announces); got < res.Targets[i].Announces {
			t.Fatalf("tracker %d counted %d announces, the generator %d", i+1, got, res.Targets[i].Announces)
		}
	}
	if s := res.String(); !strings.Contains(s, "to "+srv2.Addr().String()+":") {
		t.Fatalf("summary without the targets:\n%s", s)
	}

	// More targets than sockets, or a target that does not resolve, is
	// refused before anything is sent.
	cfg.Sockets = 1
	if _, err := udpload.Run(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "one socket per target") {
		t.Fatalf("2 targets on 1 socket: %v", err)
	}
	cfg = shortRun(srv1.Addr().String() + ",nowhere.invalid:x")
	if _, err := udpload.Run(context.Background(), cfg, io.Discard); err == nil {
		t.Fatal("an unresolvable target was accepted")
	}
	// A burst pauses one tracker: several targets are refused.
	cfg = shortRun(srv1.Addr().String() + "," + srv2.Addr().String())
	cfg.Burst, cfg.ServerPID = 100, 1
	if _, err := udpload.RunBurst(context.Background(), cfg, io.Discard); err == nil {
		t.Fatal("a burst with two targets was accepted")
	}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want []string
	}{
		{"127.0.0.1:6969", []string{"127.0.0.1:6969"}},
		{"a:1,b:2", []string{"a:1", "b:2"}},
		{" a:1 , ,b:2,", []string{"a:1", "b:2"}},
		{"", nil},
	} {
		c := udpload.Config{Addr: tc.addr}
		if got := c.Targets(); !slices.Equal(got, tc.want) {
			t.Errorf("Targets(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestRunWalk: a walk announces every peer of the population exactly once
// and ends by itself, long before its duration.
func TestRunWalk(t *testing.T) {
	var cfg udpload.Config
	for _, batch := range []bool{true, false} {
		srv, counters := startTracker(t, tracker.DefaultConfig())
		cfg = shortRun(srv.Addr().String())
		cfg.Warmup, cfg.Duration, cfg.Walk, cfg.Batch = 0, time.Minute, true, batch
		cfg.Peers, cfg.Sockets, cfg.Window = 1001, 3, 16
		res, err := udpload.Run(context.Background(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 1001 || res.Announces != 1001 || res.Lost != 0 || res.Elapsed >= time.Minute || res.Latency.Count != 1001 {
			t.Fatalf("walk of 1001 peers (batch %v):\n%s", batch, res)
		}
		if got := counters.Value(metrics.UDP4Announces); got != 1001 {
			t.Fatalf("tracker counted %d announces (batch %v)", got, batch)
		}
	}
	cfg.Warmup = time.Second
	if _, err := udpload.Run(context.Background(), cfg, io.Discard); err == nil {
		t.Fatal("a walk with a warm-up was accepted")
	}
}
