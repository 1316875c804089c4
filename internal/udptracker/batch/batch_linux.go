//go:build linux

package batch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr; x/sys/unix does not define it.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// side is the scratch of one direction, so one goroutine may receive while
// another sends on the same Conn.
type side struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	msgs  []Message
	n     int // messages offered
	done  int // messages the call moved
	errno syscall.Errno
	fn    func(fd uintptr) bool // made once, so a call allocates nothing
}

// Conn batches I/O on one UDP socket. Recv and Send may be called by one
// goroutine each at the same time, not more.
type Conn struct {
	uc   *net.UDPConn
	rc   syscall.RawConn
	v6   bool
	r, w side
	// Once Detach has run: fd is the socket, out of Go's netpoller, and
	// stop tells Recv to give up waiting (detached.go).
	fd      int
	stop    func() bool
	yielded time.Time // when Recv last went through the scheduler
	full    bool      // the last Recv filled every message offered
}

// NewConn wraps uc for batches of at most max datagrams.
func NewConn(uc *net.UDPConn, max int) (*Conn, error) {
	if max < 1 {
		max = 1
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("batch: raw socket: %w", err)
	}
	la, _ := uc.LocalAddr().(*net.UDPAddr)
	c := &Conn{uc: uc, rc: rc, fd: -1}
	// An IPv6 socket (including a dual-stack one) takes sockaddr_in6 for
	// every destination; IPv4 destinations go as v4-mapped addresses.
	if la != nil && la.IP.To4() == nil {
		c.v6 = true
	}
	if !c.v6 {
		if sa, err := socketFamily(rc); err == nil && sa == unix.AF_INET6 {
			c.v6 = true
		}
	}
	for _, s := range []*side{&c.r, &c.w} {
		s.hdrs = make([]mmsghdr, max)
		s.iovs = make([]unix.Iovec, max)
		s.names = make([]unix.RawSockaddrInet6, max)
	}
	c.r.fn = c.recvFn
	c.w.fn = c.sendFn
	return c, nil
}

func socketFamily(rc syscall.RawConn) (int, error) {
	var fam int
	var serr error
	err := rc.Control(func(fd uintptr) {
		fam, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	})
	if err != nil {
		return 0, err
	}
	return fam, serr
}

// UDPConn is the wrapped socket.
func (c *Conn) UDPConn() *net.UDPConn { return c.uc }

// Recv waits for at least one datagram and fills up to len(msgs) of them.
// It honours the socket's read deadline.
func (c *Conn) Recv(msgs []Message) (int, error) {
	s := &c.r
	if len(msgs) > len(s.hdrs) {
		msgs = msgs[:len(s.hdrs)]
	}
	for i := range msgs {
		m := &msgs[i]
		s.iovs[i] = unix.Iovec{Base: unsafe.SliceData(m.Buf)}
		s.iovs[i].SetLen(len(m.Buf))
		h := &s.hdrs[i]
		*h = mmsghdr{}
		h.hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.hdr.Namelen = uint32(unsafe.Sizeof(s.names[i]))
		h.hdr.Iov = &s.iovs[i]
		h.hdr.SetIovlen(1)
	}
	s.msgs, s.n = msgs, len(msgs)
	var err error
	if c.fd >= 0 {
		err = c.recvDetached()
	} else {
		err = c.rc.Read(s.fn)
	}
	if err != nil {
		s.msgs = nil
		return 0, err
	}
	s.msgs = nil
	if s.errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", s.errno)
	}
	for i := 0; i < s.done; i++ {
		m := &msgs[i]
		h := &s.hdrs[i]
		m.N = int(h.len)
		m.Truncated = h.hdr.Flags&unix.MSG_TRUNC != 0
		m.Addr = sockaddrToAddrPort(&s.names[i])
		m.Scope = 0
		if s.names[i].Family == unix.AF_INET6 {
			m.Scope = s.names[i].Scope_id
		}
	}
	return s.done, nil
}

// recvFn and sendFn use RawSyscall6: with MSG_DONTWAIT the calls never
// block, but a sendmmsg of 64 datagrams runs for a few hundred
// microseconds on loopback (the kernel delivers each datagram to the
// receiver inline). Announced as a blocking syscall, that is long enough
// for the runtime to hand the P to another thread, which finds nothing to
// do, sleeps in epoll and is switched to and from at every reschedule
// point of the kernel loop: ~45,000 context switches/s at 145,000
// answers/s, measured with perf. Keeping the P costs other goroutines at
// most one batch's latency.
func (c *Conn) recvFn(fd uintptr) bool {
	s := &c.r
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.n), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false // wait for the poller, then retry
	}
	s.errno = e
	s.done = int(n)
	if e != 0 {
		s.done = 0
	}
	return true
}

// Send sends msgs[i].Buf[:msgs[i].N] to msgs[i].Addr for every message,
// waiting for buffer space as needed. It returns how many were sent; a
// datagram the kernel refuses (say, an unreachable destination) is skipped
// and counted as sent, so one bad address cannot wedge a batch.
func (c *Conn) Send(msgs []Message) (int, error) {
	sent := 0
	var dropped error
	for sent < len(msgs) {
		chunk := msgs[sent:]
		if len(chunk) > len(c.w.hdrs) {
			chunk = chunk[:len(c.w.hdrs)]
		}
		n, err := c.sendChunk(chunk)
		if err != nil {
			var d droppedError
			if !errors.As(err, &d) {
				return sent, err
			}
			// One datagram failed for a reason of its own: the others
			// still go out, and the first such error is reported.
			if dropped == nil {
				dropped = err
			}
		}
		sent += n
	}
	return sent, dropped
}

// droppedError is a datagram the kernel refused for a reason that does not
// concern the socket; Send skips it and sends the rest.
type droppedError struct{ errno unix.Errno }

func (e droppedError) Error() string { return "sendmmsg: datagram dropped: " + e.errno.Error() }
func (e droppedError) Unwrap() error { return e.errno }

func (c *Conn) sendChunk(msgs []Message) (int, error) {
	s := &c.w
	for i := range msgs {
		m := &msgs[i]
		s.iovs[i] = unix.Iovec{Base: unsafe.SliceData(m.Buf)}
		s.iovs[i].SetLen(m.N)
		h := &s.hdrs[i]
		*h = mmsghdr{}
		if m.Addr.IsValid() {
			h.hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
			h.hdr.Namelen = addrPortToSockaddr(m.Addr, c.v6, &s.names[i])
			if c.v6 {
				s.names[i].Scope_id = m.Scope
			}
		}
		h.hdr.Iov = &s.iovs[i]
		h.hdr.SetIovlen(1)
	}
	s.msgs, s.n = msgs, len(msgs)
	var err error
	if c.fd >= 0 {
		err = c.sendDetached()
	} else {
		err = c.rc.Write(s.fn)
	}
	s.msgs = nil
	if err != nil {
		return 0, err
	}
	switch s.errno {
	case 0:
		return s.done, nil
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EINVAL, unix.EPERM, unix.EACCES, unix.EAFNOSUPPORT, unix.EMSGSIZE:
		// The first datagram was refused; drop it and go on.
		return 1, nil
	case unix.EBADF, unix.ENOTSOCK, unix.EFAULT:
		return 0, fmt.Errorf("sendmmsg: %w", s.errno)
	default:
		return 1, droppedError{s.errno}
	}
}

func (c *Conn) sendFn(fd uintptr) bool {
	s := &c.w
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.n), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	s.errno = e
	s.done = int(n)
	if e != 0 {
		s.done = 0
	}
	return true
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		// The zone (scope id) is dropped: a tracker answers by address,
		// and a zone name would need an allocation to look up.
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

func addrPortToSockaddr(ap netip.AddrPort, v6 bool, sa *unix.RawSockaddrInet6) uint32 {
	port := ap.Port()
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().Unmap().As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}

func setReusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", serr)
	}
	return nil
}

const reusePortSupported = true
