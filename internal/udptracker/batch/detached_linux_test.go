//go:build linux

package batch

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// detachedPair is a detached server Conn on 127.0.0.1 and a client Conn
// aimed at it; stop stops the server's Recv.
func detachedPair(t *testing.T) (srv, cli *Conn, to netip.AddrPort, stop *atomic.Bool) {
	t.Helper()
	su := listen(t, "127.0.0.1:0", 1)[0]
	cu := listen(t, "127.0.0.1:0", 1)[0]
	to = su.LocalAddr().(*net.UDPAddr).AddrPort()
	var err error
	if srv, err = NewConn(su, 8); err != nil {
		t.Fatal(err)
	}
	if cli, err = NewConn(cu, 8); err != nil {
		t.Fatal(err)
	}
	stop = new(atomic.Bool)
	if err := srv.Detach(stop.Load); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if !srv.Detached() {
		t.Fatal("Detached() = false after Detach")
	}
	return srv, cli, to, stop
}

func recvBufs(n int) []Message {
	in := make([]Message, n)
	for i := range in {
		in[i].Buf = make([]byte, 64)
	}
	return in
}

// A detached Conn blocks in recvmmsg until a datagram comes, answers
// through sendmmsg, and its Recv ends with ErrStopped (a timeout) soon
// after stop turns true, so a Pause or Shutdown is not held up.
func TestDetachedConn(t *testing.T) {
	srv, cli, to, stop := detachedPair(t)
	got := make(chan []byte, 1)
	go func() {
		in := recvBufs(8)
		n, err := srv.Recv(in)
		if err != nil || n != 1 {
			t.Errorf("Recv = %d, %v", n, err)
			got <- nil
			return
		}
		got <- append([]byte(nil), in[0].Buf[:in[0].N]...)
		// Echo it back to the sender.
		out := []Message{{Buf: in[0].Buf, N: in[0].N, Addr: in[0].Addr}}
		if n, err := srv.Send(out); n != 1 || err != nil {
			t.Errorf("Send = %d, %v", n, err)
		}
	}()
	time.Sleep(20 * time.Millisecond) // the reader is blocked by now
	msg := []byte("hello, detached")
	if n, err := cli.Send([]Message{{Buf: msg, N: len(msg), Addr: to}}); n != 1 || err != nil {
		t.Fatalf("client Send = %d, %v", n, err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, msg) {
			t.Fatalf("received %q, want %q", b, msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked detached Recv did not return the datagram")
	}
	if err := cli.UDPConn().SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	back := recvBufs(1)
	if n, err := cli.Recv(back); n != 1 || err != nil || !bytes.Equal(back[0].Buf[:back[0].N], msg) {
		t.Fatalf("echo: Recv = %d, %v, %q", n, err, back[0].Buf[:back[0].N])
	}

	stopBlockedRecv(t, srv, func() { stop.Store(true) }, 3*detachedWait)
}

// The descriptor a detached Conn hands out (to a process it upgrades to)
// is the same socket, and when that process makes the socket non-blocking
// again (Go's net.FilePacketConn does), Recv still waits rather than
// spinning: it makes the descriptor blocking once more.
func TestDetachedFileAndNonblock(t *testing.T) {
	srv, cli, to, _ := detachedPair(t)
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.FilePacketConn(f) // sets O_NONBLOCK on the shared socket
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if got := pc.LocalAddr().(*net.UDPAddr).AddrPort(); got != to {
		t.Fatalf("File's socket is bound to %v, want %v", got, to)
	}
	fl, err := unix.FcntlInt(uintptr(srv.fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Fatalf("expected the shared socket non-blocking now: flags %#x, %v", fl, err)
	}

	var user0 unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &user0)
	got := make(chan int, 1)
	go func() {
		n, err := srv.Recv(recvBufs(8))
		if err != nil {
			t.Errorf("Recv: %v", err)
		}
		got <- n
	}()
	time.Sleep(300 * time.Millisecond)
	msg := []byte("after the flag changed")
	if n, err := cli.Send([]Message{{Buf: msg, N: len(msg), Addr: to}}); n != 1 || err != nil {
		t.Fatalf("client Send = %d, %v", n, err)
	}
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("Recv = %d datagrams, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv did not return the datagram")
	}
	var user1 unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &user1)
	// A spinning Recv would have burnt the 300 ms; a waiting one a few.
	cpu := time.Duration(unix.TimevalToNsec(user1.Utime)+unix.TimevalToNsec(user1.Stime)) -
		time.Duration(unix.TimevalToNsec(user0.Utime)+unix.TimevalToNsec(user0.Stime))
	if cpu > 150*time.Millisecond {
		t.Errorf("the process used %v of CPU while Recv waited 300 ms: Recv spins on a non-blocking socket", cpu)
	}
	if fl, _ := unix.FcntlInt(uintptr(srv.fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
		t.Errorf("Recv left the socket non-blocking (flags %#x)", fl)
	}
}

// Detach fails cleanly on a closed socket, and the Conn stays usable as
// it was (in the netpoller), so a server falls back to it.
func TestDetachClosed(t *testing.T) {
	su := listen(t, "127.0.0.1:0", 1)[0]
	c, err := NewConn(su, 4)
	if err != nil {
		t.Fatal(err)
	}
	su.Close()
	if err := c.Detach(func() bool { return false }); err == nil {
		t.Fatal("Detach of a closed socket succeeded")
	}
	if c.Detached() {
		t.Fatal("Detached() after a failed Detach")
	}
}

func init() {
	// The detached reader holds a P while it blocks; the tests need one
	// more for the goroutines that feed it.
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}

// StopReading wakes a blocked detached Recv at once.
func TestDetachedStopReading(t *testing.T) {
	srv, _, _, stop := detachedPair(t)
	stopBlockedRecv(t, srv, func() { stop.Store(true); srv.StopReading() }, detachedWait/2)
}

// stopBlockedRecv blocks a Recv on srv, calls stop, and checks that the
// Recv returns a timeout within limit.
func stopBlockedRecv(t *testing.T, srv *Conn, stop func(), limit time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := srv.Recv(recvBufs(8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // the reader is blocked by now
	start := time.Now()
	stop()
	select {
	case err := <-done:
		if !IsTimeout(err) {
			t.Fatalf("Recv after stop = %v, want a timeout", err)
		}
		if d := time.Since(start); d > limit {
			t.Errorf("Recv took %v to return after stop, want at most %v", d, limit)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv did not return after stop")
	}
}

// An empty datagram is a datagram (it has a sender), not the mark of a
// socket shut for reading.
func TestDetachedEmptyDatagram(t *testing.T) {
	srv, cli, to, _ := detachedPair(t)
	if n, err := cli.Send([]Message{{Buf: make([]byte, 1), N: 0, Addr: to}}); n != 1 || err != nil {
		t.Fatalf("client Send = %d, %v", n, err)
	}
	in := recvBufs(8)
	n, err := srv.Recv(in)
	if err != nil || n != 1 || in[0].N != 0 || !in[0].Addr.IsValid() {
		t.Fatalf("Recv = %d, %v, length %d from %v; want one empty datagram with its sender", n, err, in[0].N, in[0].Addr)
	}
}

// Once stop is true, Recv reads nothing, even right after a full batch
// (when it first tries a read that does not wait): an upgrade's old
// process, woken from its pause to stop, must leave what is queued in
// the shared socket to the new process.
func TestDetachedStopAfterFullBatch(t *testing.T) {
	srv, cli, to, stop := detachedPair(t)
	send := func(n int) {
		t.Helper()
		out := make([]Message, n)
		for i := range out {
			out[i] = Message{Buf: []byte{byte(i)}, N: 1, Addr: to}
		}
		if k, err := cli.Send(out); k != n || err != nil {
			t.Fatalf("client Send = %d, %v", k, err)
		}
	}
	send(16)
	time.Sleep(20 * time.Millisecond)
	in := recvBufs(8)
	if n, err := srv.Recv(in); n != 8 || err != nil {
		t.Fatalf("Recv = %d, %v; want a full batch of 8", n, err)
	}
	stop.Store(true)
	if n, err := srv.Recv(in); !IsTimeout(err) {
		t.Fatalf("Recv after stop = %d, %v; want a timeout and nothing read", n, err)
	}
	// The other 8 are still queued for whoever reads the socket next.
	stop.Store(false)
	if n, err := srv.Recv(in); n != 8 || err != nil {
		t.Fatalf("Recv after the stop was lifted = %d, %v; want the 8 left", n, err)
	}
}

// WakeDetached ends a detached Recv's wait in the kernel at once, so it
// sees its stop function without waiting for the socket's receive timeout.
func TestDetachedWake(t *testing.T) {
	srv, _, _, stop := detachedPair(t)
	done := make(chan struct{})
	defer close(done)
	stopBlockedRecv(t, srv, func() {
		stop.Store(true)
		go func() { // a wake just before the wait is missed: again until done
			for {
				WakeDetached()
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}, detachedWait/5)
}

// A detached Recv waiting between datagrams a millisecond apart goes
// through the scheduler every detachedYield, so that Go's sysmon leaves
// it its P, and its yield keeps the goroutine on its own thread: with
// Gosched, another thread took it over at nearly every yield (a context
// switch and two futex calls each).
func TestDetachedYieldKeepsThread(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	srv, cli, to, _ := detachedPair(t)
	const datagrams = 300 // about 60 yields
	moves := make(chan int, 1)
	go func() {
		in := recvBufs(8)
		last, moved := unix.Gettid(), 0
		for got := 0; got < datagrams; {
			n, err := srv.Recv(in)
			if err != nil {
				t.Errorf("Recv = %d, %v", n, err)
				break
			}
			got += n
			if tid := unix.Gettid(); tid != last {
				moved, last = moved+1, tid
			}
		}
		moves <- moved
	}()
	out := []Message{{Buf: []byte("x"), N: 1, Addr: to}}
	start := time.Now()
	for range datagrams {
		if n, err := cli.Send(out); n != 1 || err != nil {
			t.Fatalf("client Send = %d, %v", n, err)
		}
		time.Sleep(time.Millisecond)
	}
	var moved int
	select {
	case moved = <-moves:
	case <-time.After(10 * time.Second):
		t.Fatal("the detached reader did not get the datagrams")
	}
	yields := int(time.Since(start) / detachedYield)
	t.Logf("%d datagrams over %v: the reader changed threads %d times in about %d yields",
		datagrams, time.Since(start).Round(time.Millisecond), moved, yields)
	if moved > yields/10+2 {
		t.Fatalf("the reader changed threads %d times in about %d yields; want almost none", moved, yields)
	}
}
