package udptracker

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// gateTracker holds each announce until released, so a test can shut the
// server down while a batch is being handled.
type gateTracker struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gateTracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	g.entered <- struct{}{}
	<-g.release
	resp.Interval, resp.Seeders = 120, 1
	return nil
}

func (g *gateTracker) Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	return nil
}

// TestShutdownAnswersTheBatchInHand: a request already read when Shutdown
// starts is still answered; its effects were applied, so its answer must
// not be lost.
func TestShutdownAnswersTheBatchInHand(t *testing.T) {
	g := &gateTracker{entered: make(chan struct{}), release: make(chan struct{})}
	e := startEnv(t, envOpts{tracker: g})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	c.send(announcePacket(announceSpec{cid: cid, txid: 77, hash: hashN(1), port: 6881}))
	<-g.entered

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- e.srv.Shutdown(ctx)
	}()
	for !e.srv.closing.Load() {
		time.Sleep(time.Millisecond)
	}
	close(g.release)

	resp := c.recv()
	if len(resp) < 20 || binary.BigEndian.Uint32(resp[0:4]) != actionAnnounce || binary.BigEndian.Uint32(resp[4:8]) != 77 {
		t.Fatalf("answer %x, want the announce answer to transaction 77", resp)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
