package batch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
)

// socketBuffer is the least kernel buffer asked for on each socket: a
// burst of a few thousand datagrams waits there instead of being dropped
// while the worker is busy. The kernel caps it at net.core.rmem_max /
// wmem_max; where the operator has raised those above it, the sockets ask
// for the raised value, so the sysctl is the one knob for deeper queues.
const socketBuffer = 4 << 20

// maxBuffer bounds what is asked for (the kernel keeps it in an int and
// doubles it).
const maxBuffer = 1 << 30

// bufferSizes are the receive and send buffers to ask for.
var bufferSizes = sync.OnceValues(func() (int, int) {
	return max(socketBuffer, sysctlInt("/proc/sys/net/core/rmem_max")),
		max(socketBuffer, sysctlInt("/proc/sys/net/core/wmem_max"))
})

// sysctlInt reads a numeric sysctl file, 0 when there is none (not Linux).
func sysctlInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0
	}
	return min(n, maxBuffer)
}

// Network picks the socket type for a bind address the way an operator
// reads it: an IPv4 address binds IPv4 only, a specific IPv6 address IPv6
// only, and the IPv6 wildcard a dual-stack socket (IPv4 clients then arrive
// as IPv4-mapped addresses).
func Network(address string) string {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return "udp"
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "udp"
	case a.Is4():
		return "udp4"
	case a.IsUnspecified():
		return "udp"
	default:
		return "udp6"
	}
}

// ListenGroup opens n sockets on address that share it with SO_REUSEPORT,
// so the kernel spreads clients over them (by a hash of the source address
// and port). With port 0 the first socket picks the port and the others
// join it. Where SO_REUSEPORT is missing, one socket is opened.
//
// With v6only, an IPv6 wildcard address binds IPv6 only (IPV6_V6ONLY).
func ListenGroup(ctx context.Context, address string, n int, v6only bool) ([]*net.UDPConn, error) {
	network := Network(address)
	if v6only && network == "udp" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
				network = "udp6" // Go sets IPV6_V6ONLY on udp6 sockets
			}
		}
	}
	if n < 1 {
		n = 1
	}
	if !reusePortSupported {
		n = 1
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("listen udp %q: %w (expected host:port, such as 0.0.0.0:6969)", address, err)
	}
	if n > 1 && port != "0" {
		// SO_REUSEPORT would let us share a port with another process of
		// the same user (an old tracker still running) and silently split
		// its traffic. An exclusive bind first makes that a clear error.
		var plain net.ListenConfig
		pc, err := plain.ListenPacket(ctx, network, address)
		if err != nil {
			return nil, fmt.Errorf("listen udp %s: %w (is another process using this port?)", address, err)
		}
		pc.Close()
	}
	lc := net.ListenConfig{}
	if n > 1 {
		lc.Control = setReusePort
	}
	conns := make([]*net.UDPConn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	addr := address
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen udp %s (socket %d of %d): %w", addr, i+1, n, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			closeAll()
			return nil, errors.New("listen udp: not a UDP socket")
		}
		rbuf, wbuf := bufferSizes()
		_ = uc.SetReadBuffer(rbuf)
		_ = uc.SetWriteBuffer(wbuf)
		conns = append(conns, uc)
		if i == 0 {
			host, _, _ := net.SplitHostPort(address)
			bound := uc.LocalAddr().(*net.UDPAddr)
			addr = net.JoinHostPort(host, strconv.Itoa(bound.Port))
		}
	}
	return conns, nil
}
