package udptracker

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
)

// TestPauseResume: a paused server answers nothing; the requests wait in
// its socket and are answered after Resume.
func TestPauseResume(t *testing.T) {
	e := startEnv(t, envOpts{sockets: 2})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	c.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Both sockets are quiet by now: their workers wait in the kernel
	// (when detached) and must be woken, not waited for.
	time.Sleep(50 * time.Millisecond)
	began := time.Now()
	if err := e.srv.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 300*time.Millisecond {
		t.Errorf("Pause of a quiet server took %s; its workers were not woken", d)
	}
	c.send(connectPacket(0x5151))
	_ = c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64)
	if n, _, err := c.c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("paused server answered % x", buf[:n])
	}
	e.srv.Resume()
	resp := c.recv()
	if binary.BigEndian.Uint32(resp[4:]) != 0x5151 {
		t.Fatalf("after Resume: % x", resp)
	}
}

// TestInheritedSockets: a second server built on the first one's sockets
// (as the new process of an upgrade is) answers on the same address, and
// with the same key accepts the connection ids the first one minted.
func TestInheritedSockets(t *testing.T) {
	e := startEnv(t, envOpts{sockets: 2})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	files, err := e.srv.Files()
	if err != nil {
		t.Fatal(err)
	}
	var conns []*net.UDPConn
	for _, f := range files {
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// The first server stops (its copies of the sockets close); the
	// sockets live on in the second.
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	srv2, err := New(Config{BindAddress: e.addr.String(), Conns: conns, Clock: e.clk, Detach: true}, e.tr, e.counters, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	if srv2.Addr() != e.addr {
		t.Fatalf("second server on %v, want %v", srv2.Addr(), e.addr)
	}
	served := make(chan error, 1)
	go func() { served <- srv2.Serve() }()
	defer func() {
		_ = srv2.Shutdown(context.Background())
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Error(err)
		}
	}()
	// The id minted by the first server: an announce is answered (a
	// refused id would get an error packet, which announceRaw rejects).
	if _, leechers, _ := announceRaw(t, c, announceSpec{cid: cid, txid: 9, hash: hashN(3), port: 6881, left: 1, numWant: 5}, 6); leechers != 1 {
		t.Fatalf("%d leechers after the announce, want 1", leechers)
	}
}
