package udptracker

import (
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// TestServeLoopAllocations: the whole path (recvmmsg, parse, rules, store,
// encode, sendmmsg) allocates nothing per request once warm. The client
// side uses the batch package too, which allocates nothing, so the
// process-wide malloc count measures the server.
func TestServeLoopAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := startEnv(t, envOpts{})
	raw := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := raw.connect()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.target(false)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bc, err := batch.NewConn(conn, 32)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]batch.Message, 32)
	in := make([]batch.Message, 32)
	for i := range out {
		// One torrent, 32 peers announcing again and again: steady state.
		out[i].Buf = announcePacket(announceSpec{cid: cid, txid: uint32(i), hash: hashN(1), port: uint16(1000 + i), numWant: 30, left: int64(i % 2)})
		out[i].N = len(out[i].Buf)
		in[i].Buf = make([]byte, 2048)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	round := func() {
		if _, err := bc.Send(out); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(out); {
			n, err := bc.Recv(in)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if binary.BigEndian.Uint32(in[i].Buf) != actionAnnounce {
					t.Fatalf("answer % x", in[i].Buf[:in[i].N])
				}
			}
			got += n
		}
	}
	for i := 0; i < 20; i++ {
		round()
	}
	const rounds = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < rounds; i++ {
		round()
	}
	runtime.ReadMemStats(&after)
	requests := rounds * len(out)
	mallocs := after.Mallocs - before.Mallocs
	// A few allocations come from the runtime itself (timers, the poller);
	// one per 100 requests would already mean a leak on the hot path.
	if mallocs > uint64(requests/100) {
		t.Fatalf("%d allocations for %d requests", mallocs, requests)
	}
	t.Logf("%d allocations for %d requests", mallocs, requests)
}
