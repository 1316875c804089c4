//go:build linux

package udpload

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// TestGSOSender: a batch of two sizes, interleaved, more than one send
// can carry, arrives as one datagram per message, each whole.
func TestGSOSender(t *testing.T) {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(4 << 20)
	tx, err := net.DialUDP("udp", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	g, err := newGSOSender(tx, 8)
	if err != nil {
		t.Fatal(err)
	}
	// 98-byte announces and 1,496-byte scrapes, 90 of them: the scrapes
	// exceed one send's 64 KB and the batch exceeds the 8 given above.
	msgs := make([]batch.Message, 90)
	want := map[string]bool{}
	for i := range msgs {
		size := 98
		if i%3 == 2 {
			size = 1496
		}
		b := bytes.Repeat([]byte{byte(i)}, size)
		msgs[i] = batch.Message{Buf: b, N: size}
		want[string(b)] = true
	}
	n, err := g.Send(msgs)
	if err == errNoGSO {
		t.Skip("this kernel has no UDP segmentation")
	}
	if err != nil || n != len(msgs) {
		t.Fatalf("sent %d of %d: %v", n, len(msgs), err)
	}
	buf := make([]byte, 2048)
	_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	for range msgs {
		k, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(msgs)-len(want), err)
		}
		if !want[string(buf[:k])] {
			t.Fatalf("unexpected or repeated datagram of %d bytes starting %d", k, buf[0])
		}
		delete(want, string(buf[:k]))
	}
}
