package udptracker

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// As the daemon does (raiseProcs): a P for each detached socket's
	// waiting worker and some to spare, so that the tests' servers take
	// the detached path.
	if runtime.GOMAXPROCS(0) < 8 {
		runtime.GOMAXPROCS(8)
	}
	os.Exit(m.Run())
}

// TestDetachedServer: with Detach, a server's sockets leave Go's
// netpoller (each worker blocks in recvmmsg); it answers, pauses (within
// the detached wait of an idle worker, a second) and resumes, shuts down
// at once (its sockets shut for reading wake the workers), and gives the
// process's budget of detached sockets back.
func TestDetachedServer(t *testing.T) {
	before := DetachedSockets()
	e := startEnv(t, envOpts{sockets: 2})
	if got := detachedSoon(before+2) - before; got != 2 {
		t.Fatalf("%d sockets detached, want 2", got)
	}
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	c.connect()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("Pause took %v, want at most about a second", d)
	}
	c.send(connectPacket(0x7171))
	_ = c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	if n, _, err := c.c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("paused server answered % x", buf[:n])
	}
	e.srv.Resume()
	if resp := c.recv(); binary.BigEndian.Uint32(resp[4:]) != 0x7171 {
		t.Fatalf("after Resume: % x", resp)
	}

	start = time.Now()
	e.shutdown()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Shutdown took %v", d)
	}
	if got := DetachedSockets(); got != before {
		t.Errorf("%d sockets detached after Shutdown, want %d", got, before)
	}
}

// TestDetachBudget: a process detaches at most GOMAXPROCS-1 sockets
// (a blocked worker holds a P, and the runtime takes Ps back when none
// is idle); the others stay in the netpoller, and all answer.
func TestDetachBudget(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	free := procs - 1 - DetachedSockets()
	if free < 1 {
		t.Skipf("no P to spare: GOMAXPROCS %d, %d detached", procs, DetachedSockets())
	}
	e := startEnv(t, envOpts{sockets: free + 2})
	if got := detachedSoon(procs - 1); got != procs-1 {
		t.Fatalf("%d sockets detached with GOMAXPROCS %d, want %d", got, procs, procs-1)
	}
	// Every socket answers: clients from many ports spread over the
	// SO_REUSEPORT group.
	for i := 0; i < 32; i++ {
		c := newRawClient(t, "127.0.0.1:0", e.target(false))
		c.send(connectPacket(uint32(i)))
		if resp := c.recv(); binary.BigEndian.Uint32(resp[4:]) != uint32(i) {
			t.Fatalf("client %d: % x", i, resp)
		}
	}
}

// detachedSoon is DetachedSockets once it reaches want (Serve, which
// detaches, runs in its own goroutine), or after a second.
func detachedSoon(want int) int {
	deadline := time.Now().Add(time.Second)
	for DetachedSockets() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // and no more than want
	return DetachedSockets()
}
