package metrics

import "testing"

// TestTally: a tally's counts reach the stripe only when flushed, all of
// them, once; with statistics off only the error counters do, as with Inc.
func TestTally(t *testing.T) {
	for _, tt := range []struct {
		name                         string
		on                           bool
		wantAnnounces, wantRequests  uint64
		wantErrors, afterSecondFlush uint64
	}{
		{"statistics on", true, 3, 5, 2, 3},
		{"statistics off", false, 0, 5, 2, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCounters(1, tt.on)
			s := c.Stripe()
			var tl Tally
			for range 3 {
				tl.Inc(UDP4Announces)
			}
			for range 5 {
				tl.Inc(UDPRequests)
			}
			tl.Inc(UDPErrors)
			s.Inc(UDPErrors)
			if got := c.Value(UDP4Announces); got != 0 {
				t.Fatalf("announces before the flush: %d", got)
			}
			tl.FlushTo(s)
			if a, r, e := c.Value(UDP4Announces), c.Value(UDPRequests), c.Value(UDPErrors); a != tt.wantAnnounces || r != tt.wantRequests || e != tt.wantErrors {
				t.Errorf("announces %d requests %d errors %d, want %d %d %d", a, r, e, tt.wantAnnounces, tt.wantRequests, tt.wantErrors)
			}
			tl.FlushTo(s) // nothing new: nothing added twice
			if got := c.Value(UDP4Announces); got != tt.afterSecondFlush {
				t.Errorf("announces after a second flush: %d, want %d", got, tt.afterSecondFlush)
			}
		})
	}
}
