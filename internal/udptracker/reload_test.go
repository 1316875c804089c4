package udptracker

import (
	"net/netip"
	"testing"
)

// TestLimiterSetLimit: a reload can turn the error limit on, change it and
// turn it off while the limiter is in use.
func TestLimiterSetLimit(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	l := newLimiter(-1, 60, 1, 2)
	for range 100 {
		if !l.allow(ip, 0) {
			t.Fatal("no limit, yet an answer was refused")
		}
	}
	l.setLimit(3)
	n := 0
	for range 10 {
		if l.allow(ip, 0) {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("limit 3 allowed %d", n)
	}
	l.setLimit(5) // this window's 3 stand: two more
	n = 0
	for range 10 {
		if l.allow(ip, 0) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("raised to 5 after 3, allowed %d more", n)
	}
	l.setLimit(0)
	if !l.allow(ip, 0) {
		t.Fatal("limit turned off, yet refused")
	}
}
