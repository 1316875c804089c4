package udptracker

import (
	"testing"

	"github.com/starling-tracker/starling/internal/metrics"
)

// TestLatencyObserved: each answered connect, announce and scrape lands in
// its histogram; error answers in none.
func TestLatencyObserved(t *testing.T) {
	e := startEnv(t, envOpts{})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	c.roundTrip(announcePacket(announceSpec{cid: cid, txid: 2, hash: hashN(1), port: 6881}))
	c.roundTrip(announcePacket(announceSpec{cid: cid, txid: 3, hash: hashN(1), port: 6882}))
	c.roundTrip(scrapePacket(cid, 4, hashN(1)))
	c.roundTrip(scrapePacket(cid+1, 5, hashN(1))) // bad connection id: an error answer

	for op, want := range map[metrics.Op]uint64{metrics.UDPConnect: 1, metrics.UDPAnnounce: 2, metrics.UDPScrape: 1} {
		s := e.latency.Snapshot(op)
		if s.Count != want {
			t.Errorf("%s %s: %d observations, want %d", op.Protocol(), op.Kind(), s.Count, want)
		}
		if want > 0 && (s.Sum <= 0 || s.Sum > 5) {
			t.Errorf("%s %s: implausible total %v s", op.Protocol(), op.Kind(), s.Sum)
		}
	}
}
