package redisswarm

import (
	"context"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestCallCtx: a call keeps the caller's context, with no timer of its
// own, when the caller's deadline is at or before the store's; else it
// gets the store's deadline.
func TestCallCtx(t *testing.T) {
	const timeout = 50 * time.Millisecond
	start := time.Now()
	for _, tc := range []struct {
		name   string
		caller time.Duration // deadline after start; 0: none
		kept   bool
	}{
		{"no deadline", 0, false},
		{"earlier", 20 * time.Millisecond, true},
		{"the same", timeout, true},
		{"later", time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := context.Background()
			if tc.caller != 0 {
				var cancel context.CancelFunc
				parent, cancel = context.WithDeadline(parent, start.Add(tc.caller))
				defer cancel()
			}
			ctx, cancel := callCtx(parent, start, timeout)
			defer cancel()
			if kept := ctx == parent; kept != tc.kept {
				t.Fatalf("caller's context kept: %v, want %v", kept, tc.kept)
			}
			// Its own is timeout after the call's time (start or later).
			lo, hi := start.Add(timeout), time.Now().Add(timeout)
			if tc.kept {
				lo, hi = start.Add(tc.caller), start.Add(tc.caller)
			}
			if dl, ok := ctx.Deadline(); !ok || dl.Before(lo) || dl.After(hi) {
				t.Fatalf("deadline %v after start (set: %v), want %v to %v", dl.Sub(start), ok, lo.Sub(start), hi.Sub(start))
			}
		})
	}
}

// TestAnnounceCallerDeadline: under a caller's deadline (a UDP batch's)
// an announce allocates less than with a timer of its own, and answers
// the same.
func TestAnnounceCallerDeadline(t *testing.T) {
	s := newTestStore(t, Config{NoPeerDetail: true, BucketBits: 4, Timeout: 2 * time.Second})
	h := swarmtest.Hash(1)
	for i := 1; i <= 20; i++ {
		swarmtest.Do(t, s, swarmtest.Announce(h, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100))
	}
	a := swarmtest.Announce(h, swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 100)
	a.Compact, a.NumWant = true, 10
	var resp bittorrent.AnnounceResponse
	announce := func(ctx context.Context) {
		resp.Compact4 = resp.Compact4[:0]
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Compact4) != 6*10 || resp.Leechers != 20 {
			t.Fatalf("answer of %d bytes of peers and %d leechers, want %d and 20", len(resp.Compact4), resp.Leechers, 60)
		}
	}
	batch, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	own := testing.AllocsPerRun(200, func() { announce(context.Background()) })
	kept := testing.AllocsPerRun(200, func() { announce(batch) })
	t.Logf("allocations per announce: %.1f with a timer of its own, %.1f under the caller's deadline", own, kept)
	if kept >= own {
		t.Errorf("%.1f allocations per announce under the caller's deadline, %.1f with a timer of its own: want fewer", kept, own)
	}
}
