// Package batch moves UDP datagrams in batches: on Linux one recvmmsg or
// sendmmsg system call carries up to len(msgs) datagrams, which is where a
// UDP tracker spends most of its time. Elsewhere it falls back to one
// datagram per call. It also opens SO_REUSEPORT socket groups, so several
// workers can each own a socket on the same address.
//
// Both the tracker and the load generator use it, so a benchmark measures
// the same I/O path on both sides.
package batch

import (
	"errors"
	"net"
	"net/netip"
)

// Message is one datagram. For Recv, Buf is the buffer to fill (its full
// length is offered to the kernel) and N, Addr and Truncated are set. For
// Send, Buf[:N] is sent to Addr (Addr is ignored on a connected socket).
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
	// Scope is the IPv6 scope id of a link-local Addr (kept as a number:
	// a netip zone is a string, and looking it up would allocate).
	Scope uint32
	// Truncated is set when the datagram was longer than Buf.
	Truncated bool
}

// ErrClosed is returned by Recv and Send once the socket is closed.
var ErrClosed = net.ErrClosed

// IsTimeout reports whether err is a deadline expiry.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
