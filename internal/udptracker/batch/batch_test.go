package batch

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t *testing.T, addr string, n int) []*net.UDPConn {
	t.Helper()
	conns, err := ListenGroup(context.Background(), addr, n, false)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

func TestRoundTrip(t *testing.T) {
	for _, tt := range []struct{ name, server, client string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1:0"},
		{"ipv6", "[::1]:0", "[::1]:0"},
		{"ipv4 on dual stack", "[::]:0", "127.0.0.1:0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := listen(t, tt.server, 1)[0]
			cli := listen(t, tt.client, 1)[0]
			sc, err := NewConn(srv, 8)
			if err != nil {
				t.Fatal(err)
			}
			cc, err := NewConn(cli, 8)
			if err != nil {
				t.Fatal(err)
			}
			port := srv.LocalAddr().(*net.UDPAddr).Port
			to := netip.AddrPortFrom(cli.LocalAddr().(*net.UDPAddr).AddrPort().Addr(), uint16(port))
			if to.Addr().IsUnspecified() {
				to = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			}
			out := make([]Message, 5)
			for i := range out {
				out[i] = Message{Buf: bytes.Repeat([]byte{byte(i)}, 10+i), N: 10 + i, Addr: to}
			}
			out[4].Buf = make([]byte, 100) // longer than the receive buffer
			out[4].N = 100
			if n, err := cc.Send(out); err != nil || n != 5 {
				t.Fatalf("Send = %d, %v", n, err)
			}
			in := make([]Message, 8)
			for i := range in {
				in[i].Buf = make([]byte, 64)
			}
			_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < 5 {
				n, err := sc.Recv(in[got:])
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
			from := cli.LocalAddr().(*net.UDPAddr).AddrPort()
			for i := 0; i < 5; i++ {
				m := in[i]
				if m.Addr.Port() != from.Port() || !m.Addr.Addr().Unmap().IsLoopback() {
					t.Fatalf("message %d from %v, want port %d", i, m.Addr, from.Port())
				}
				if i < 4 && (m.N != 10+i || m.Buf[0] != byte(i) || m.Truncated) {
					t.Fatalf("message %d: %d bytes, truncated %v", i, m.N, m.Truncated)
				}
			}
			if !in[4].Truncated {
				t.Fatal("the 100-byte datagram was not reported truncated")
			}
			// Answer to the source addresses as received.
			for i := 0; i < 4; i++ {
				in[i].N = 3
			}
			if n, err := sc.Send(in[:4]); err != nil || n != 4 {
				t.Fatalf("reply Send = %d, %v", n, err)
			}
			_ = cli.SetReadDeadline(time.Now().Add(5 * time.Second))
			for got = 0; got < 4; {
				n, err := cc.Recv(out[got:4])
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
		})
	}
}

func TestNoAllocations(t *testing.T) {
	a := listen(t, "127.0.0.1:0", 1)[0]
	b := listen(t, "127.0.0.1:0", 1)[0]
	ac, _ := NewConn(a, 16)
	bc, _ := NewConn(b, 16)
	msgs := make([]Message, 16)
	for i := range msgs {
		msgs[i] = Message{Buf: make([]byte, 32), N: 32, Addr: b.LocalAddr().(*net.UDPAddr).AddrPort()}
	}
	in := make([]Message, 16)
	for i := range in {
		in[i].Buf = make([]byte, 64)
	}
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ac.Send(msgs); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(msgs); {
			n, err := bc.Recv(in)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch round trip, want 0", allocs)
	}
}

func TestListenGroup(t *testing.T) {
	conns := listen(t, "127.0.0.1:0", 3)
	port := conns[0].LocalAddr().(*net.UDPAddr).Port
	for i, c := range conns {
		if p := c.LocalAddr().(*net.UDPAddr).Port; p != port {
			t.Fatalf("socket %d on port %d, want %d", i, p, port)
		}
	}
	for _, tt := range []struct{ addr, want string }{
		{"0.0.0.0:1", "udp4"}, {"127.0.0.1:1", "udp4"}, {"[::]:1", "udp"}, {"[::1]:1", "udp6"}, {"localhost:1", "udp"},
	} {
		if got := Network(tt.addr); got != tt.want {
			t.Errorf("Network(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
	if _, err := ListenGroup(context.Background(), fmt.Sprintf("127.0.0.1:%d", port), 2, false); err == nil {
		t.Fatal("joined a port owned by another group")
	}
}
