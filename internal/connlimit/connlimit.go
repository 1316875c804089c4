// Package connlimit caps the connections a TCP listener holds, in total and
// per source address, so that one address opening connections and sending
// nothing (slowloris) or a flood of connections cannot use up the
// process's descriptors and starve the other clients. A connection over a
// cap is closed as soon as it is accepted.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Listener wraps a net.Listener with the caps.
type Listener struct {
	net.Listener
	max, maxPerIP int
	// Refused counts the connections closed at accept, by cap.
	RefusedTotal, RefusedPerIP atomic.Uint64

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

// New caps ln at max connections in total and maxPerIP per source address;
// 0 leaves that cap out.
func New(ln net.Listener, max, maxPerIP int) *Listener {
	return &Listener{Listener: ln, max: max, maxPerIP: maxPerIP, perIP: map[netip.Addr]int{}}
}

// Accept returns the next connection within the caps, closing the others.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		l.mu.Lock()
		switch {
		case l.max > 0 && l.total >= l.max:
			l.mu.Unlock()
			l.RefusedTotal.Add(1)
			c.Close()
			continue
		case l.maxPerIP > 0 && l.perIP[ip] >= l.maxPerIP:
			l.mu.Unlock()
			l.RefusedPerIP.Add(1)
			c.Close()
			continue
		}
		l.total++
		l.perIP[ip]++
		l.mu.Unlock()
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

// Open is the number of connections held.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *Listener) release(ip netip.Addr) {
	l.mu.Lock()
	l.total--
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

type conn struct {
	net.Conn
	l    *Listener
	ip   netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
