package connlimit

import (
	"io"
	"net"
	"testing"
	"time"
)

// serve accepts on l and holds each connection until it is closed by the
// client.
func serve(l *Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

func dial(t *testing.T, local, to string) net.Conn {
	t.Helper()
	la, _ := net.ResolveTCPAddr("tcp", local)
	d := net.Dialer{LocalAddr: la, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closed reports whether the server closed c (a read sees EOF at once).
func closed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF
}

func TestCaps(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 5, 3)
	defer l.Close()
	go serve(l)
	addr := raw.Addr().String()
	var a []net.Conn
	for range 4 {
		a = append(a, dial(t, "127.0.0.1:0", addr))
	}
	if !closed(a[3]) || closed(a[0]) || closed(a[2]) {
		t.Fatal("the fourth connection from one address was not the one refused")
	}
	if l.RefusedPerIP.Load() != 1 {
		t.Fatalf("refused per IP %d, want 1", l.RefusedPerIP.Load())
	}
	// Another address still gets in, up to the total of 5.
	b1, b2, b3 := dial(t, "127.0.0.2:0", addr), dial(t, "127.0.0.2:0", addr), dial(t, "127.0.0.2:0", addr)
	if closed(b1) || closed(b2) || !closed(b3) || l.RefusedTotal.Load() != 1 {
		t.Fatalf("total cap: refused %d", l.RefusedTotal.Load())
	}
	// A closed connection frees its place.
	a[0].Close()
	deadline := time.Now().Add(2 * time.Second)
	for l.Open() > 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c := dial(t, "127.0.0.1:0", addr); closed(c) {
		t.Fatal("a place freed by a close was not given to the next connection")
	}
}
