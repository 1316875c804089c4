//go:build linux

package udpload

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// gsoMaxBytes bounds one segmented send: a UDP datagram's payload before
// the kernel cuts it into segments, 65,535 minus the IPv6 and UDP headers.
const gsoMaxBytes = 65_535 - 40 - 8

// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS since Linux 4.18.
const gsoMaxSegments = 64

// errNoGSO says the kernel refused UDP segmentation; the caller sends
// datagram by datagram instead.
var errNoGSO = errors.New("UDP segmentation offload not available")

// gsoSender sends a batch of requests to the connected tracker with UDP
// generic segmentation offload (UDP_SEGMENT): requests of one size go end to
// end in one sendmsg, and the kernel cuts them into datagrams. The
// generator pays one trip through the socket and IP layers per batch
// instead of one per request, so on one core it can outrun the server it
// measures, which the echo runs need. A tracker cannot answer this way:
// its answers go to many clients, and segments share one destination.
type gsoSender struct {
	rc    syscall.RawConn
	buf   []byte
	oob   [24]byte // one cmsghdr and its uint16, aligned: CmsgSpace(2)
	iov   unix.Iovec
	hdr   unix.Msghdr
	taken []bool // per message of the batch being sent
	errno syscall.Errno
	fn    func(fd uintptr) bool // made once, so a send allocates nothing
}

func newGSOSender(uc *net.UDPConn, max int) (*gsoSender, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("gso: raw socket: %w", err)
	}
	g := &gsoSender{rc: rc, buf: make([]byte, gsoMaxBytes), taken: make([]bool, max)}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&g.oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	g.hdr.Iov = &g.iov
	g.hdr.SetIovlen(1)
	g.fn = g.sendFn
	return g, nil
}

// Send sends every msgs[i].Buf[:N] (at most the max given to
// newGSOSender), grouping equal sizes, and returns how many went out; with
// errNoGSO, none did.
func (g *gsoSender) Send(msgs []batch.Message) (int, error) {
	if len(msgs) > len(g.taken) {
		g.taken = make([]bool, len(msgs))
	}
	taken := g.taken[:len(msgs)]
	clear(taken)
	sent := 0
	for first := 0; first < len(msgs); first++ {
		if taken[first] {
			continue
		}
		size := msgs[first].N
		// Gather the untaken messages of this size, up to what one send
		// may carry, end to end in buf.
		n, segs := 0, 0
		for i := first; i < len(msgs) && segs < gsoMaxSegments && n+size <= len(g.buf); i++ {
			if !taken[i] && msgs[i].N == size {
				n += copy(g.buf[n:], msgs[i].Buf[:size])
				taken[i] = true
				segs++
			}
		}
		if segs == 0 {
			return sent, fmt.Errorf("gso: a %d-byte datagram does not fit one send", size)
		}
		if err := g.send(n, size, segs); err != nil {
			return sent, err
		}
		sent += segs
	}
	return sent, nil
}

// send sends buf[:n] as segs datagrams of size bytes.
func (g *gsoSender) send(n, size, segs int) error {
	g.iov.Base = &g.buf[0]
	g.iov.SetLen(n)
	g.hdr.Control, g.hdr.Controllen = nil, 0
	if segs > 1 {
		*(*uint16)(unsafe.Pointer(&g.oob[unix.CmsgLen(0)])) = uint16(size)
		g.hdr.Control = &g.oob[0]
		g.hdr.SetControllen(len(g.oob))
	}
	if err := g.rc.Write(g.fn); err != nil {
		return err
	}
	switch g.errno {
	case 0:
		return nil
	case unix.EIO, unix.EINVAL, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
		// No segmentation here (an old kernel, or a device without it).
		return errNoGSO
	default:
		return fmt.Errorf("sendmsg: %w", g.errno)
	}
}

func (g *gsoSender) sendFn(fd uintptr) bool {
	_, _, e := unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&g.hdr)), unix.MSG_DONTWAIT)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	g.errno = e
	return true
}
