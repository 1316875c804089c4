package udptracker

import (
	"testing"

	"github.com/starling-tracker/starling/internal/metrics"
)

// TestLatencyObserved: each answered connect, announce and scrape lands in
// its histogram, an error answer in its request's (as HTTP failures are
// timed), and an answer to an unknown action in none.
func TestLatencyObserved(t *testing.T) {
	e := startEnv(t, envOpts{})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	c.roundTrip(announcePacket(announceSpec{cid: cid, txid: 2, hash: hashN(1), port: 6881}))
	c.roundTrip(announcePacket(announceSpec{cid: cid, txid: 3, hash: hashN(1), port: 6882}))
	c.roundTrip(scrapePacket(cid, 4, hashN(1)))
	c.roundTrip(scrapePacket(cid+1, 5, hashN(1))) // bad connection id: an error answer
	bogus := scrapePacket(cid, 6, hashN(1))
	bogus[11] = 9 // an unknown action: an error answer of no kind
	c.roundTrip(bogus)

	for op, want := range map[metrics.Op]uint64{metrics.UDPConnect: 1, metrics.UDPAnnounce: 2, metrics.UDPScrape: 2} {
		s := e.latency.Snapshot(op)
		if s.Count != want {
			t.Errorf("%s %s: %d observations, want %d", op.Protocol(), op.Kind(), s.Count, want)
		}
		if want > 0 && (s.Sum <= 0 || s.Sum > 5) {
			t.Errorf("%s %s: implausible total %v s", op.Protocol(), op.Kind(), s.Sum)
		}
	}
}
