//go:build !linux

package batch

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// Conn falls back to one datagram per call where recvmmsg is missing.
type Conn struct{ uc *net.UDPConn }

// NewConn wraps uc.
func NewConn(uc *net.UDPConn, max int) (*Conn, error) { return &Conn{uc: uc}, nil }

// UDPConn is the wrapped socket.
func (c *Conn) UDPConn() *net.UDPConn { return c.uc }

// Recv reads one datagram.
func (c *Conn) Recv(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	m := &msgs[0]
	n, ap, err := c.uc.ReadFromUDPAddrPort(m.Buf)
	if err != nil {
		return 0, err
	}
	m.N, m.Addr, m.Truncated = n, ap, n == len(m.Buf)
	return 1, nil
}

// Send writes the datagrams one by one.
func (c *Conn) Send(msgs []Message) (int, error) {
	for i := range msgs {
		m := &msgs[i]
		var err error
		if m.Addr.IsValid() {
			_, err = c.uc.WriteToUDPAddrPort(m.Buf[:m.N], m.Addr)
		} else {
			_, err = c.uc.Write(m.Buf[:m.N])
		}
		if err != nil && IsClosedOrTimeout(err) {
			return i, err
		}
	}
	return len(msgs), nil
}

// IsClosedOrTimeout tells fatal errors from per-datagram ones.
func IsClosedOrTimeout(err error) bool {
	return IsTimeout(err) || errors.Is(err, net.ErrClosed)
}

func setReusePort(network, address string, c syscall.RawConn) error { return nil }

const reusePortSupported = false

// ErrStopped is never returned here: Conns stay in Go's netpoller.
var ErrStopped error = os.ErrDeadlineExceeded

// Detach does nothing here: the socket stays in Go's netpoller, and
// deadlines stop Recv.
func (c *Conn) Detach(stop func() bool) error { return nil }

// Detached is false here.
func (c *Conn) Detached() bool { return false }

// File returns a duplicate of the socket's descriptor.
func (c *Conn) File() (*os.File, error) { return c.uc.File() }

// Close closes the socket.
func (c *Conn) Close() error { return c.uc.Close() }

// StopReading does nothing here: a read deadline stops Recv.
func (c *Conn) StopReading() {}

// WakeDetached does nothing: no Conn is detached here.
func WakeDetached() {}
