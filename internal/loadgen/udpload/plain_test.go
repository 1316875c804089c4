package udpload_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/loadgen/udpload"
)

// startEcho runs udpload.Echo on a free port until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan netip.AddrPort, 1)
	done := make(chan error, 1)
	go func() {
		done <- udpload.Echo(ctx, "127.0.0.1:0", 1, udpload.EchoReply, func(a netip.AddrPort) { ready <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case a := <-ready:
		return a.String()
	case err := <-done:
		t.Fatal(err)
		return ""
	}
}

// datagram is one request a scripted server received.
type datagram struct {
	from netip.AddrPort
	tx   [4]byte
	at   time.Time
}

// reply is the 20-byte announce answer to d.
func (d datagram) reply() []byte {
	b := make([]byte, 20)
	b[3] = 1 // announce
	copy(b[4:8], d.tx[:])
	return b
}

// scriptedServer answers connects at once and hands every other request to
// handle, which answers through the socket when it wants to; idle, when
// not nil, is called whenever no datagram came for quiet. It runs until
// the test ends.
func scriptedServer(t *testing.T, quiet time.Duration, handle func(*net.UDPConn, datagram), idle func(*net.UDPConn)) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			if idle != nil {
				_ = conn.SetReadDeadline(time.Now().Add(quiet))
			}
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					idle(conn)
				}
				continue
			}
			if n < 16 {
				continue
			}
			d := datagram{from: from, at: time.Now()}
			copy(d.tx[:], buf[12:16])
			if n == 16 && binary.BigEndian.Uint32(buf[8:]) == 0 {
				r := make([]byte, 16)
				copy(r[4:8], d.tx[:])
				binary.BigEndian.PutUint64(r[8:], 42)
				_, _ = conn.WriteToUDPAddrPort(r, from)
				continue
			}
			handle(conn, d)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().String()
}

// TestPlainKeepsWindow: a server holds every request and, each time its
// clients go quiet, records how many each has in flight, then answers the
// oldest one of each. A plain client (Batch off) answers each answer with
// exactly one new request, so every count is the window; a batched one
// waits for its window to drain before it sends a batch again.
func TestPlainKeepsWindow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		batch     bool
		recvBatch bool
	}{{"plain", false, false}, {"plain, answers by recvmmsg", false, true}, {"batched", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			const window, sockets = 6, 2
			var mu sync.Mutex
			held := map[netip.AddrPort][]datagram{}
			seen := map[netip.AddrPort][]int{} // in flight at each quiet moment
			handle := func(_ *net.UDPConn, d datagram) {
				mu.Lock()
				held[d.from] = append(held[d.from], d)
				mu.Unlock()
			}
			idle := func(conn *net.UDPConn) {
				mu.Lock()
				defer mu.Unlock()
				for from, ds := range held {
					seen[from] = append(seen[from], len(ds))
					if len(ds) > 0 {
						_, _ = conn.WriteToUDPAddrPort(ds[0].reply(), from)
						held[from] = ds[1:]
					}
				}
			}
			addr := scriptedServer(t, 15*time.Millisecond, handle, idle)
			cfg := shortRun(addr)
			cfg.Warmup, cfg.Duration, cfg.Timeout = 0, 800*time.Millisecond, 5*time.Second
			cfg.Sockets, cfg.SourceIPs, cfg.Window, cfg.Batch, cfg.RecvBatch = sockets, 1, window, tc.batch, tc.recvBatch
			res, err := udpload.Run(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != sockets {
				t.Fatalf("%d clients seen, want %d", len(seen), sockets)
			}
			for from, counts := range seen {
				if len(counts) < 10 {
					t.Fatalf("%s: only %d quiet moments: %v", from, len(counts), counts)
				}
				if most := slices.Max(counts); most != window {
					t.Fatalf("%s: at most %d in flight, window %d: %v", from, most, window, counts)
				}
				full := !slices.ContainsFunc(counts, func(n int) bool { return n != window })
				if full == tc.batch {
					t.Fatalf("%s (batch %v): in flight at each quiet moment %v", from, tc.batch, counts)
				}
			}
			if res.Lost != 0 || res.Received == 0 || res.Latency.Count == 0 {
				t.Fatalf("result:\n%s", res)
			}
			// Every request waits about 2 quiet periods per request ahead
			// of it in its socket's window (two sockets share a round).
			if res.Latency.P50 < 15*time.Millisecond {
				t.Fatalf("held requests answered in %v:\n%s", res.Latency.P50, res)
			}
		})
	}
}

// TestLatencyOfDelayedAnswers: a server that answers each request a fixed
// delay after it came gives round trips of at least that delay and not
// much more, in every mode.
func TestLatencyOfDelayedAnswers(t *testing.T) {
	const delay = 5 * time.Millisecond
	for _, tc := range []struct {
		name  string
		batch bool
		gso   bool
		rate  float64
		recv  bool // RecvBatch
		poiss bool // Poisson
	}{
		{"plain", false, false, 0, false, false},
		{"plain, answers by recvmmsg", false, false, 0, true, false},
		{"batched sendmmsg", true, false, 0, false, false},
		{"batched gso", true, true, 0, false, false},
		{"paced", false, false, 400, false, false},
		{"paced, Poisson", false, false, 400, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scriptedServer(t, 0, func(conn *net.UDPConn, d datagram) {
				time.AfterFunc(delay-time.Since(d.at), func() { _, _ = conn.WriteToUDPAddrPort(d.reply(), d.from) })
			}, nil)
			cfg := shortRun(addr)
			cfg.Sockets, cfg.SourceIPs, cfg.Window = 2, 1, 4
			cfg.Batch, cfg.GSO, cfg.Rate, cfg.RecvBatch, cfg.Poisson = tc.batch, tc.gso, tc.rate, tc.recv, tc.poiss
			// Every timed answer is over half the delay: the slow log
			// lists each of them.
			var slow bytes.Buffer
			cfg.SlowLog, cfg.SlowOver = &slow, delay/2
			start := time.Now()
			res, err := udpload.Run(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			l := res.Latency
			checkSlowLog(t, slow.String(), l.Count, start, time.Now(), delay)
			if l.Count == 0 || l.Count > res.Received || res.Lost != 0 {
				t.Fatalf("%d answers timed:\n%s", l.Count, res)
			}
			if !(delay <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Fatalf("latency %+v for a %v delay:\n%s", l, delay, res)
			}
			if l.P50 > delay+20*time.Millisecond {
				t.Fatalf("p50 %v for a %v delay:\n%s", l.P50, delay, res)
			}
			if !strings.Contains(res.String(), "latency:             p50 ") {
				t.Fatalf("summary without latency:\n%s", res)
			}
		})
	}
}

// checkSlowLog checks that log has n lines "SENT LATENCY", each sent
// between start and end and at least min slow.
func checkSlowLog(t *testing.T, log string, n uint64, start, end time.Time, min time.Duration) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if uint64(len(lines)) != n {
		t.Fatalf("slow log has %d lines for %d timed answers:\n%s", len(lines), n, log)
	}
	for _, line := range lines {
		var sent, rtt int64
		if _, err := fmt.Sscanf(line, "%d %d", &sent, &rtt); err != nil {
			t.Fatalf("slow log line %q: %v", line, err)
		}
		if sent < start.UnixMicro() || sent > end.UnixMicro() || time.Duration(rtt)*time.Microsecond < min-time.Microsecond {
			t.Fatalf("slow log line %q: want a send time within %d..%d and at least %v", line, start.UnixMicro(), end.UnixMicro(), min)
		}
	}
}

// TestLateAnswersNotTimed: answers that come after the requests were given
// up on are received but not timed. The server answers each socket's first
// window of requests 150 ms late and drops everything else, so the sockets
// hear nothing for longer than the 40 ms timeout and give those requests up
// before their answers come.
func TestLateAnswersNotTimed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch bool
		rate  float64
		recv  bool // RecvBatch
	}{{"plain", false, 0, false}, {"plain, answers by recvmmsg", false, 0, true}, {"batched", true, 0, false}, {"paced", false, 200, false}} {
		t.Run(tc.name, func(t *testing.T) {
			const window, sockets = 4, 2
			var mu sync.Mutex
			seen := map[netip.AddrPort]int{}
			addr := scriptedServer(t, 0, func(conn *net.UDPConn, d datagram) {
				mu.Lock()
				defer mu.Unlock()
				if seen[d.from]++; seen[d.from] <= window {
					time.AfterFunc(150*time.Millisecond, func() { _, _ = conn.WriteToUDPAddrPort(d.reply(), d.from) })
				}
			}, nil)
			cfg := shortRun(addr)
			cfg.Warmup, cfg.Duration, cfg.Timeout = 0, 600*time.Millisecond, 40*time.Millisecond
			cfg.Sockets, cfg.SourceIPs, cfg.Window = sockets, 1, window
			cfg.Batch, cfg.GSO, cfg.Rate, cfg.RecvBatch = tc.batch, false, tc.rate, tc.recv
			res, err := udpload.Run(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Received != window*sockets || res.Lost < window*sockets || res.Latency.Count != 0 {
				t.Fatalf("late answers:\n%s", res)
			}
		})
	}
}

// TestRateAchieved: a paced run sends its rate within 5 %, one request per
// datagram, each socket evenly spaced, and loses nothing.
func TestRateAchieved(t *testing.T) {
	const rate, sockets = 2000.0, 4
	var mu sync.Mutex
	arrivals := map[netip.AddrPort][]time.Time{}
	datagrams := 0
	addr := scriptedServer(t, 0, func(conn *net.UDPConn, d datagram) {
		mu.Lock()
		arrivals[d.from] = append(arrivals[d.from], d.at)
		datagrams++
		mu.Unlock()
		_, _ = conn.WriteToUDPAddrPort(d.reply(), d.from)
	}, nil)
	cfg := shortRun(addr)
	cfg.Warmup, cfg.Duration = 200*time.Millisecond, 2*time.Second
	cfg.Sockets, cfg.SourceIPs, cfg.Rate, cfg.Batch = sockets, 1, rate, false
	res, err := udpload.Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.PerSecond(res.Sent); math.Abs(got-rate) > 0.05*rate {
		t.Fatalf("%.0f requests/s, want %.0f:\n%s", got, rate, res)
	}
	if res.Lost != 0 || res.Skipped != 0 || res.Latency.Count == 0 || res.Errors != 0 {
		t.Fatalf("result:\n%s", res)
	}
	if !strings.Contains(res.String(), "achieved of 2000/s asked") || !strings.Contains(res.String(), "paced, one datagram per send") {
		t.Fatalf("summary:\n%s", res)
	}
	mu.Lock()
	defer mu.Unlock()
	// The server got one datagram per request: what was sent in the whole
	// run, warm-up included, is at least the window's.
	if uint64(datagrams) < res.Sent {
		t.Fatalf("server got %d datagrams, generator sent %d in the window", datagrams, res.Sent)
	}
	if len(arrivals) != sockets {
		t.Fatalf("%d sockets seen", len(arrivals))
	}
	// Each socket sends every sockets/rate = 2 ms: the median gap is that,
	// and few gaps are bursts (under a quarter of it).
	interval := time.Duration(float64(sockets) / rate * float64(time.Second))
	for from, ts := range arrivals {
		gaps := make([]time.Duration, 0, len(ts))
		for i := 1; i < len(ts); i++ {
			gaps = append(gaps, ts[i].Sub(ts[i-1]))
		}
		slices.Sort(gaps)
		median := gaps[len(gaps)/2]
		short := 0
		for _, g := range gaps {
			if g < interval/4 {
				short++
			}
		}
		if median < interval*8/10 || median > interval*12/10 || short > len(gaps)/10 {
			t.Fatalf("%s: median gap %v (want %v), %d of %d gaps under %v", from, median, interval, short, len(gaps), interval/4)
		}
	}
}

// TestRateWindowCap: paced sends that find the window full are skipped and
// counted; a server that never answers gets at most a window per socket
// per timeout.
func TestRateWindowCap(t *testing.T) {
	var mu sync.Mutex
	got := 0
	addr := scriptedServer(t, 0, func(*net.UDPConn, datagram) {
		mu.Lock()
		got++
		mu.Unlock()
	}, nil)
	cfg := shortRun(addr)
	cfg.Warmup, cfg.Duration, cfg.Timeout = 0, 500*time.Millisecond, 100*time.Millisecond
	cfg.Sockets, cfg.SourceIPs, cfg.Window, cfg.Rate, cfg.Batch = 1, 1, 2, 1000, false
	res, err := udpload.Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// A window of 2 every 100 ms over 500 ms: about 10 sent, about 490
	// skipped; the requests given up on are lost.
	if res.Sent < 4 || res.Sent > 14 || res.Skipped < 400 || res.Lost+2 < res.Sent || res.Received != 0 {
		t.Fatalf("result:\n%s", res)
	}
	if !strings.Contains(res.String(), "sends skipped (window full)") {
		t.Fatalf("summary:\n%s", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if uint64(got) < res.Sent {
		t.Fatalf("server got %d requests, generator sent %d", got, res.Sent)
	}
}

// TestModesAgainstEcho: every mode runs against the echo server and reports
// plausible latency, and the summary names the mode.
func TestModesAgainstEcho(t *testing.T) {
	addr := startEcho(t)
	for _, tc := range []struct {
		name      string
		batch     bool
		recvBatch bool
		rate      float64
		sends     string
	}{
		{"plain", false, false, 0, "one datagram per send and per receive (write/read), window refilled per answer"},
		{"plain, answers by recvmmsg", false, true, 0, "one datagram per send (write), answers read by recvmmsg"},
		{"batched", true, false, 0, "a batch per system call"},
		{"paced", false, false, 1000, "paced, one datagram per send"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := shortRun(addr)
			cfg.Sockets, cfg.SourceIPs, cfg.Window, cfg.Batch, cfg.Rate = 4, 1, 16, tc.batch, tc.rate
			cfg.RecvBatch = tc.recvBatch
			res, err := udpload.Run(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			l := res.Latency
			if res.Announces == 0 || res.Lost != 0 || l.Count == 0 || l.Count > res.Received ||
				!(0 < l.P50 && l.P50 <= l.P99 && l.P99 <= l.Max) || l.Max > time.Second {
				t.Fatalf("result:\n%s", res)
			}
			if tc.batch == false && res.Segmented {
				t.Fatalf("segmented without batches:\n%s", res)
			}
			if !strings.Contains(res.String(), "generator sends:     ") || !strings.Contains(res.String(), tc.sends) {
				t.Fatalf("summary:\n%s", res)
			}
		})
	}
}
