//go:build linux

package batch

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A detached Conn owns its socket outside Go's netpoller: Recv blocks in
// recvmmsg itself, as a C server blocks in recvfrom, instead of parking
// its goroutine until the netpoller wakes it.
//
// Why (issue 22, shape c): at a low rate, a request that reaches a socket
// parked in the netpoller takes the runtime's path to its goroutine
// (epoll_pwait returns in some thread, the scheduler runs the goroutine,
// recvmmsg reads), and an empty recvmmsg and a second epoll_pwait follow
// the answer: five system calls a request, against two for a server
// blocked in recvfrom, and a longer path to the answer. Waiting in ppoll
// instead was tried and does not help: the socket stays in the
// netpoller's epoll set, so a thread in epoll_pwait wakes for every
// datagram too, and on a busy core it often runs first. Detached, a
// request costs a blocking recvmmsg that returns it and a sendmmsg.
//
// A goroutine blocked in a system call keeps its P, and Go's sysmon takes
// the P back (and wakes a thread to poll the network) when no other P is
// idle, or when the goroutine has not been through the scheduler for
// 10 ms. So the process keeps a P more than it has detached sockets (the
// caller's part), and Recv yields before it blocks when its last yield
// is detachedYield old: what else is queued on its P runs, and the
// scheduler sees the goroutine, so a socket that gets a datagram every
// few milliseconds keeps its P. The yield is the runtime's goyield, not
// Gosched: Gosched puts the goroutine on the global run queue and wakes
// an idle P's thread, which takes the goroutine over while the yielding
// thread goes to sleep: a context switch and two futex calls a yield,
// and the worker moves from thread to thread (at 1,000 requests
// a second on one core: 1.2 switches and 2.4 system calls a request
// against opentracker's 1.0 and 2.0; with goyield, 1.0 and 2.0, one
// thread). goyield puts it on its own P's queue, wakes no one, and the
// same thread runs it on. A socket quiet for
// longer has its P taken back once per quiet spell, which costs less
// than waking up to yield: a blocking recvmmsg lasts up to detachedWait
// (the socket's SO_RCVTIMEO), the longest a Pause waits for Recv to see
// its stop function (a Shutdown need not: StopReading). Woken every 5 ms
// instead, two idle sockets cost about 6 % of a core (measured beside a
// test run); every 100 ms, 1.5 %; every second, 0.4 %, as in the
// netpoller (0.3 %).
const (
	detachedWait  = time.Second
	detachedYield = 5 * time.Millisecond
)

// ErrStopped is returned by Recv on a detached Conn once its stop
// function returns true; it is a timeout (IsTimeout), as the read
// deadline that stops a Conn in the netpoller.
var ErrStopped error = os.ErrDeadlineExceeded

// Detach takes the socket out of Go's netpoller: it keeps a duplicate of
// the descriptor, in blocking mode with a receive timeout, and closes the
// *net.UDPConn, so the runtime no longer watches the socket. From then on
// Recv blocks in the kernel until a datagram comes or stop returns true
// (checked every detachedWait), and Close closes the socket. The caller
// runs with GOMAXPROCS above the number of detached Conns (see
// detachedYield).
func (c *Conn) Detach(stop func() bool) error {
	if c.fd >= 0 {
		return nil
	}
	fd := -1
	var derr error
	if err := c.rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("detach: dup: %w", derr)
	}
	tv := unix.NsecToTimeval(int64(detachedWait))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return fmt.Errorf("detach: SO_RCVTIMEO: %w", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return fmt.Errorf("detach: %w", err)
	}
	// Closing the Go socket removes it from the netpoller's epoll set;
	// the duplicate keeps the socket (and its place in a SO_REUSEPORT
	// group) open.
	if err := c.uc.Close(); err != nil {
		unix.Close(fd)
		return fmt.Errorf("detach: %w", err)
	}
	c.fd, c.stop = fd, stop
	detachedConns.Add(1)
	return nil
}

// detachedConns counts the Conns detached and not closed, for WakeDetached.
var detachedConns atomic.Int32

// Detached reports whether Detach has run.
func (c *Conn) Detached() bool { return c.fd >= 0 }

// File returns a duplicate of the socket's descriptor (to hand to
// another process), whether detached or not.
func (c *Conn) File() (*os.File, error) {
	if c.fd < 0 {
		return c.uc.File()
	}
	fd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	return os.NewFile(uintptr(fd), "udp"), nil
}

// StopReading wakes a detached Conn's Recv at once, for good: the
// socket reads nothing more, in this process or any other that shares
// it, so it is only for a socket that is closing and was not handed on.
// Without it Recv sees its stop function within detachedWait.
func (c *Conn) StopReading() {
	if c.fd >= 0 {
		_ = unix.Shutdown(c.fd, unix.SHUT_RD) // ENOTCONN on UDP, and it wakes readers all the same
	}
}

// WakeDetached makes every detached Recv waiting in the kernel look at
// its stop function now, not within detachedWait: a signal to each of the
// process's threads (SIGURG, which the Go runtime sends its threads itself
// to preempt goroutines, and ignores otherwise) ends such a wait with
// EINTR, as a call on a socket with a receive timeout is never restarted
// after a signal (signal(7)). Every thread, because noting which thread
// waits would cost a system call per wait. An upgrade's pause waited up
// to a second for a quiet socket's worker while the other sockets'
// requests queued. A signal that comes just before a wait is missed: the
// caller wakes again until the Recv has returned.
func WakeDetached() {
	if detachedConns.Load() == 0 {
		return
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	pid := unix.Getpid()
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = unix.Tgkill(pid, tid, unix.SIGURG)
		}
	}
}

// Close closes the socket. A detached Conn's Recv must have returned
// first: closing a descriptor does not wake a thread blocked on it.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return c.uc.Close()
	}
	fd := c.fd
	c.fd = -2 // closed: neither -1 (in the netpoller) nor a descriptor
	detachedConns.Add(-1)
	return unix.Close(fd)
}

// recvDetached fills c.r from the socket, blocking until at least one
// datagram comes, or returns ErrStopped.
func (c *Conn) recvDetached() error {
	s := &c.r
	s.errno, s.done = 0, 0
	fd := uintptr(c.fd)
	hdrs := uintptr(unsafe.Pointer(&s.hdrs[0]))
	// After a full batch more is likely queued: a non-blocking call,
	// which need not tell the runtime it may block. Not once stopped:
	// an upgrade's old process, woken from its pause to stop, would take
	// requests queued for the new one and answer them from its swarms,
	// where the announces are lost (the e2e upgrade test, on a busy box,
	// saw up to 146 requests a run go unanswered).
	if c.full && !c.stop() {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, hdrs, uintptr(s.n), unix.MSG_DONTWAIT, 0, 0)
		if e == 0 && !c.shut(int(n)) {
			c.done(int(n))
			return nil
		}
		if e != unix.EAGAIN && e != unix.EINTR {
			s.errno = e
			return nil
		}
	}
	for {
		if c.stop() {
			return ErrStopped
		}
		start := time.Now()
		if start.Sub(c.yielded) >= detachedYield {
			goyield()
			c.yielded = start
		}
		// MSG_WAITFORONE: block for the first datagram only, then take
		// what else is queued.
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, hdrs, uintptr(s.n), unix.MSG_WAITFORONE, 0, 0)
		switch {
		case e == 0 && c.shut(int(n)):
			if c.stop() {
				return ErrStopped
			}
			time.Sleep(detachedYield) // shut by someone else: do not spin
		case e == 0:
			c.done(int(n))
			return nil
		case e == unix.EAGAIN:
			// The receive timeout, or the descriptor made non-blocking
			// again (a process the socket was handed to does so):
			// blocking once more, so that this loop does not spin.
			if time.Since(start) < detachedWait/2 {
				_ = unix.SetNonblock(c.fd, false)
			}
		case e == unix.EINTR:
		default:
			s.errno = e
			return nil
		}
	}
}

// shut reports whether a recvmmsg that moved n messages found the socket
// shut for reading (StopReading): it then fills messages of no length
// and no sender, which a datagram, even an empty one, always has.
func (c *Conn) shut(n int) bool {
	return n == 0 || c.r.hdrs[0].len == 0 && c.r.hdrs[0].hdr.Namelen == 0
}

func (c *Conn) done(n int) {
	c.r.done = n
	c.full = n == c.r.n
}

// sendDetached sends c.w's messages, waiting (in ppoll, at most
// detachedYield at a time) while the socket's send buffer is full.
func (c *Conn) sendDetached() error {
	s := &c.w
	s.errno, s.done = 0, 0
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.n), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EAGAIN && e != unix.EINTR {
			s.errno = e
			if e == 0 {
				s.done = int(n)
			}
			return nil
		}
		if e == unix.EINTR {
			continue
		}
		if c.stop() {
			return ErrStopped
		}
		pfd := unix.PollFd{Fd: int32(c.fd), Events: unix.POLLOUT}
		ts := unix.NsecToTimespec(int64(detachedYield))
		_, _, _ = unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	}
}

// goyield is runtime.goyield: Gosched without the global run queue and
// the wake-up of another thread (see detachedYield). The runtime marks it
// as one that packages outside it link to (gVisor does), so that its name
// and signature stay.
//
//go:linkname goyield runtime.goyield
func goyield()
