package wstracker

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// A connection's reads go through a buffer lent from a pool while bytes
// are waiting in it, so one read system call takes in every message the
// client has sent so far, not only the next 512 bytes (gorilla's buffer,
// which a connection keeps for good and so is kept small). The buffer goes
// back to the pool as soon as its bytes are read, and a connection waits
// for its next bytes holding none (the runtime's poller, through
// syscall.RawConn, says when they are there), so an idle connection costs
// no more than before.

// lendSize is the buffer lent while bytes wait: a few announces with
// offers, or dozens of answers.
const lendSize = 16 << 10

var lendBufs = sync.Pool{New: func() any { b := make([]byte, lendSize); return &b }}

// lendListener wraps the TCP connections it accepts in lendConn.
type lendListener struct{ net.Listener }

func (l lendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &lendConn{Conn: c, raw: raw}, nil
}

// lendConn reads through a lent buffer. Only one goroutine reads at a
// time (net/http, then the connection's reader).
type lendConn struct {
	net.Conn
	raw  syscall.RawConn
	buf  *[]byte // nil while nothing waits in it
	r, w int
}

func (c *lendConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		if len(p) >= lendSize {
			return c.Conn.Read(p)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		lendBufs.Put(c.buf)
		c.buf = nil
	}
	return n, nil
}

// fill waits until the socket has bytes (honouring the read deadline),
// then reads them into a lent buffer with one system call.
func (c *lendConn) fill() error {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		bp := lendBufs.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			lendBufs.Put(bp) // not held while waiting
			return false
		}
		if rerr == nil && n > 0 {
			c.buf, c.r, c.w = bp, 0, n
		} else {
			lendBufs.Put(bp)
		}
		return true
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return io.EOF // the client closed its side
	}
	return nil
}

// CloseWrite keeps net/http's half-close of a refused request.
func (c *lendConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
