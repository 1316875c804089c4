package tracker

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// TestSetConfig: a reload's settings apply to the next request: intervals,
// the numwant cap and the mode.
func TestSetConfig(t *testing.T) {
	tr, st := newTracker(t, DefaultConfig())
	ctx := context.Background()
	var resp bittorrent.AnnounceResponse
	if err := tr.Announce(ctx, announce(hashB, nil), &resp); err != nil || resp.Interval != 120 || st.last.NumWant != 74 {
		t.Fatalf("before: %v, interval %d, numwant %d", err, resp.Interval, st.last.NumWant)
	}
	cfg := DefaultConfig()
	cfg.Interval, cfg.MinInterval, cfg.MaxPeersPerAnnounce = 1800, 900, 30
	cfg.Private, cfg.Listed = true, true
	tr.SetConfig(cfg)
	var ce *bittorrent.ClientError
	if err := tr.Announce(ctx, announce(hashB, nil), &resp); !errors.As(err, &ce) {
		t.Fatalf("private after the reload: an announce without a key got %v", err)
	}
	resp.Reset()
	if err := tr.Announce(ctx, announce(hashA, &goodKey), &resp); err != nil || resp.Interval != 1800 || resp.MinInterval != 900 || st.last.NumWant != 30 {
		t.Fatalf("after: %v, intervals %d/%d, numwant %d", err, resp.Interval, resp.MinInterval, st.last.NumWant)
	}
	if tr.Mode() != "private_listed" || tr.Config().Interval != 1800 {
		t.Fatalf("mode %s, config %+v", tr.Mode(), tr.Config())
	}
}

// TestSetConfigWhileServing: reloads race with announces (run with -race).
func TestSetConfigWhileServing(t *testing.T) {
	tr, _ := newTracker(t, DefaultConfig())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		var resp bittorrent.AnnounceResponse
		for range 2000 {
			resp.Reset()
			_ = tr.Announce(context.Background(), announce(hashA, &goodKey), &resp)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 200 {
			cfg := DefaultConfig()
			cfg.Interval = uint32(100 + i)
			cfg.Private = i%2 == 0
			tr.SetConfig(cfg)
		}
	}()
	wg.Wait()
}
