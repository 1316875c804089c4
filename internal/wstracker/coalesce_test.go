package wstracker

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-tracker/starling/internal/tracker"
)

// serverConn waits for the server's side of the one connection open.
func serverConn(t *testing.T, srv *Server) *conn {
	t.Helper()
	var c *conn
	eventually(t, "the server's connection", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for x := range srv.conns {
			c = x
		}
		return len(srv.conns) == 1
	})
	return c
}

// countingConn counts the writes to a socket.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Frames queued while the writer is busy go out in one write, each intact
// (every length encoding: 7-bit, 16-bit, 64-bit) and in the order queued,
// with a ping among them.
func TestQueuedFramesInOneWrite(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	cl := dialWith(t, websocket.DefaultDialer, srv, "", false)
	sc := serverConn(t, srv)
	cc := &countingConn{Conn: sc.nc}

	sizes := []int{0, 1, 125, 126, 127, 300, 0xFFFF, 0x10000, 70000, 5}
	var want [][]byte
	// The writer counts as running while the frames are queued, so none
	// is written before all are.
	sc.mu.Lock()
	sc.nc, sc.writing = cc, true
	sc.mu.Unlock()
	for i, n := range sizes {
		msg := bytes.Repeat([]byte{'a' + byte(i)}, n)
		if !sc.send(msg) {
			t.Fatalf("frame %d not queued", i)
		}
		want = append(want, msg)
		if i == 3 {
			sc.enqueue(opPing, []byte("p"))
		}
	}
	srv.wg.Add(1)
	go sc.flush()

	pinged := make(chan string, 1)
	cl.ws.SetPingHandler(func(data string) error { pinged <- data; return nil })
	_ = cl.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, w := range want {
		typ, got, err := cl.ws.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(got, w) {
			t.Fatalf("frame %d: type %d, %d bytes %.20q, want %d bytes %.20q", i, typ, len(got), got, len(w), w)
		}
	}
	select {
	case p := <-pinged:
		if p != "p" {
			t.Fatalf("ping %q", p)
		}
	default:
		t.Fatal("the ping queued among the frames did not arrive")
	}
	cc.mu.Lock()
	writes := cc.writes
	cc.mu.Unlock()
	if writes != 1 {
		t.Fatalf("%d frames in %d writes, want 1", len(sizes)+1, writes)
	}
	eventually(t, "the queue to empty", func() bool {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return !sc.writing && sc.out == nil && sc.queuedMsgs == 0 && sc.queued == 0
	})
}

// With a client that reads nothing, what waits for it never passes the
// bounds, however many frames are coalesced, and the connection is closed:
// by the bounds, or by the write deadline when they are far off.
func TestQueueBoundsWithSlowReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"messages", Config{MaxQueuedMessages: 64, MaxQueuedBytes: 1 << 30, WriteTimeout: time.Minute}},
		{"bytes", Config{MaxQueuedMessages: 1 << 20, MaxQueuedBytes: 256 << 10, WriteTimeout: time.Minute}},
		{"write deadline", Config{MaxQueuedMessages: 1 << 20, MaxQueuedBytes: 1 << 30, WriteTimeout: 300 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRules(t, tracker.DefaultConfig())
			srv := start(t, tc.cfg, r)
			dialWith(t, websocket.DefaultDialer, srv, "", false)
			sc := serverConn(t, srv)
			msg := bytes.Repeat([]byte{'x'}, 4<<10)
			for i := 0; ; i++ {
				if i > 1<<16 {
					t.Fatal("the tracker kept buffering for a client that does not read")
				}
				queued := sc.send(msg)
				sc.mu.Lock()
				n, b := sc.queuedMsgs, sc.queued
				sc.mu.Unlock()
				if n > tc.cfg.MaxQueuedMessages || b > tc.cfg.MaxQueuedBytes {
					t.Fatalf("%d messages, %d bytes queued", n, b)
				}
				if !queued {
					break
				}
				if b > 16<<20 {
					// Far more than the socket takes: the writer is stuck,
					// and only its deadline can end it.
					break
				}
			}
			eventually(t, "the connection to close", func() bool { return srv.Connections() == 0 })
			sc.mu.Lock()
			defer sc.mu.Unlock()
			if sc.out != nil || sc.queued != 0 {
				t.Fatalf("a closed connection keeps %d bytes queued", sc.queued)
			}
		})
	}
}

// maskedFrame is a client's text frame, masked with a zero key (which
// leaves the payload as it is).
func maskedFrame(payload string) []byte {
	b := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}

// Messages that arrive together are all read (one read takes them in),
// and a message that arrives in pieces, cut anywhere, is put together.
func TestMessagesArrivingTogetherAndInPieces(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	c := dial(t, srv, "")
	nc := c.ws.NetConn()
	var all []byte
	const n = 40
	for i := range n {
		all = append(all, maskedFrame(`{"action":"scrape","info_hash":`+jsonID(id{byte(i)})+`}`)...)
	}
	// A long message too, past gorilla's 512-byte buffer.
	all = append(all, maskedFrame(announceJSON(id{1}, id{'a'}, `,"x":"`+strings.Repeat("y", 3000)+`"`))...)
	if _, err := nc.Write(all); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := c.read()
		if m.str("action") != "scrape" || m.raw["files"] == nil || !strings.Contains(m.text, jsonID(id{byte(i)})) {
			t.Fatalf("answer %d: %s", i, m.text)
		}
	}
	if m := c.read(); m.raw["interval"] == nil {
		t.Fatalf("announce answer: %s", m.text)
	}
	// Byte by byte: every cut of a frame, header included.
	frame := maskedFrame(`{"action":"scrape","info_hash":` + jsonID(id{9}) + `}`)
	for i := range frame {
		if _, err := nc.Write(frame[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if m := c.read(); !strings.Contains(m.text, jsonID(id{9})) {
		t.Fatalf("answer to the message sent in pieces: %s", m.text)
	}
}
