package daemon

import (
	"os"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/snapshot"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestLateLog: the announces recorded reach the pipe's reader in order,
// and are counted as passed on; with the reader gone they are counted as
// not passed on, and the log neither blocks nor fails the announces.
func TestLateLog(t *testing.T) {
	t.Run("read", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		l := newLateLog(w)
		got := make(chan []int64, 1)
		go func() {
			var nows []int64
			_, err := snapshot.ReadAnnounces(r, func(a *swarm.Announce) error {
				nows = append(nows, a.Now)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			got <- nows
		}()
		// More than the pipe holds, so the writer waits for the reader.
		const n = 5000
		for i := range n {
			a := swarmtest.Announce(swarmtest.Hash(i%7), swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), int64(i))
			l.add(&a)
		}
		sent, lost, err := l.close(time.Now().Add(10 * time.Second))
		if sent != n || lost != 0 || err != nil {
			t.Fatalf("passed on %d, not %d, %v", sent, lost, err)
		}
		nows := <-got
		if len(nows) != n {
			t.Fatalf("read %d announces, want %d", len(nows), n)
		}
		for i, v := range nows {
			if v != int64(i) {
				t.Fatalf("announce %d read as %d: out of order", i, v)
			}
		}
	})
	t.Run("reader gone", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		l := newLateLog(w)
		a := swarmtest.Announce(swarmtest.Hash(1), swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 1)
		for range 3 {
			l.add(&a)
		}
		sent, lost, err := l.close(time.Now().Add(5 * time.Second))
		if sent != 0 || lost != 3 || err == nil {
			t.Fatalf("passed on %d, not %d, %v; want 0, 3 and an error", sent, lost, err)
		}
	})
}
