package daemon

import "testing"

// TestExpiryCutoff: whatever the fractions of seconds lost to whole-second
// times and a clock 100 ms behind, a peer is swept only once it has been
// silent for more than the timeout.
func TestExpiryCutoff(t *testing.T) {
	const timeout = 900
	for announceMs := int64(0); announceMs < 3000; announceMs += 7 {
		// Stored: the coarse clock at the announce, up to 100 ms behind.
		stored := (announceMs - 100) / 1000
		if announceMs < 100 {
			stored = -1
		}
		for sweepMs := announceMs; sweepMs < announceMs+(timeout+4)*1000; sweepMs += 13 {
			now := sweepMs / 1000 // the sweep's clock, never ahead
			if stored <= expiryCutoff(now, timeout) && sweepMs-announceMs <= timeout*1000 {
				t.Fatalf("announce at %d ms, swept at %d ms: after %d ms of a %d s timeout", announceMs, sweepMs, sweepMs-announceMs, timeout)
			}
		}
	}
}
