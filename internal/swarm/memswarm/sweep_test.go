package memswarm

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestSweepBigInSteps: a swarm of 50,000 peers, a third stale, is swept in
// steps that each examine at most sweepBudget of its peers, with
// announces between the steps; the stale peers are gone at the end, the
// fresh ones and those announced during the sweep are kept, and the big
// segment stays consistent (checkBig) after every step.
func TestSweepBigInSteps(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	sh := &s.shards[0]
	h := swarmtest.Hash(1)
	ann := func(i int, now int64, ev bittorrent.Event) {
		a := swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), now)
		a.Left, a.Event, a.NumWant = int64(i%2), ev, 0
		swarmtest.Do(t, s, a)
	}
	const n = 50_000
	for i := range n {
		now := int64(200)
		if i%3 == 0 {
			now = 100 // stale at cutoff 150
		}
		ann(i, now, bittorrent.EventNone)
	}
	var st sweepState
	var res swarm.SweepResult
	steps := 0
	for st.i < len(sh.torrents) {
		before := res.Peers
		s.sweepStep(sh, &st, 150, &res)
		steps++
		if got := res.Peers - before; got > sweepBudget {
			t.Fatalf("step %d removed %d peers, more than the budget of %d it may examine", steps, got, sweepBudget)
		}
		tor, _ := sh.get(&h)
		if tor.p4.cls == bigClass {
			checkBig(t, &sh.p4, tor.p4)
		}
		// Between steps: a stale peer comes back, a new one joins, a
		// fresh one leaves.
		ann(3*steps, 200, bittorrent.EventNone)
		ann(n+steps, 200, bittorrent.EventNone)
		ann(3*steps+1, 200, bittorrent.EventStopped)
	}
	if steps < n/sweepBudget {
		t.Fatalf("swept %d peers in %d steps", n, steps)
	}
	tor, _, err := s.Torrent(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tor.Peers {
		if p.Updated <= 150 {
			t.Fatalf("stale peer %v survived the sweep", p.Addr)
		}
	}
	// n peers, n/3 stale (minus the ones that came back), plus the joins,
	// minus the leaves: what is left is exactly the fresh ones.
	want := 0
	for i := range n + steps + 1 {
		switch {
		case i >= n:
			if i-n >= 1 && i-n <= steps {
				want++
			}
		case i%3 == 0:
			if i/3 >= 1 && i/3 <= steps {
				want++ // came back
			}
		case i%3 == 1 && (i-1)/3 >= 1 && (i-1)/3 <= steps:
			// left
		default:
			want++
		}
	}
	if len(tor.Peers) != want {
		t.Fatalf("%d peers after the sweep, want %d", len(tor.Peers), want)
	}
}

// TestSweepYields: on one P (a tracker pinned to one core), a sweep lets
// other goroutines run between its lock holds instead of keeping the P
// until the scheduler preempts it 10 ms later: a goroutine that counts
// while the sweep of 200,000 stale peers runs gets the P at least once
// per few steps. Without the yield it got it about once per 10 ms.
func TestSweepYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := NewSharded(swarm.Options{}, 4)
	const n = 200_000
	for i := range n {
		a := swarmtest.Announce(swarmtest.Hash(i%5000), swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		a.NumWant = 0
		swarmtest.Do(t, s, a)
	}
	var turns atomic.Int64
	done := make(chan struct{})
	started := make(chan struct{})
	go func() {
		close(started)
		for {
			select {
			case <-done:
				return
			default:
			}
			turns.Add(1)
			runtime.Gosched()
		}
	}()
	<-started
	res, err := s.Sweep(context.Background(), 150)
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	if res.Peers != n {
		t.Fatalf("swept %d peers, want %d", res.Peers, n)
	}
	// At least one turn per four steps of sweepBudget peers.
	if min := int64(n / sweepBudget / 4); turns.Load() < min {
		t.Fatalf("the other goroutine ran %d times during the sweep of %d peers, want at least %d", turns.Load(), n, min)
	}
}
