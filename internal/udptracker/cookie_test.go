package udptracker

import (
	"net/netip"
	"testing"
	"time"
)

func TestConnectionIDTimeRange(t *testing.T) {
	// The check rebuilds the expiry from the id's expBits bits: a
	// lifetime must leave most of that range to tell expired ids apart.
	if max := uint32(maxCookieLifetime / time.Second); max >= expMask/2 {
		t.Fatalf("maxCookieLifetime %d s is not well inside the id's %d-second range", max, expMask+1)
	}
}

func TestConnectionIDLifetime(t *testing.T) {
	c, err := newCookies(120)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	const t0 = 1_795_000_000
	id := c.mint(ip, t0)
	tests := []struct {
		name string
		id   uint64
		ip   netip.Addr
		now  int64
		want bool
	}{
		{"fresh", id, ip, t0, true},
		{"end of lifetime", id, ip, t0 + 120, true},
		{"expired", id, ip, t0 + 121, false},
		{"expired long ago", id, ip, t0 + expMask/2, false},
		// The id's time bits name a time a lifetime ahead again, but its
		// MAC covers the expiry of a whole range earlier.
		{"one range later", id, ip, t0 + expMask + 1, false},
		{"one range later, end of lifetime", id, ip, t0 + expMask + 1 + 120, false},
		{"from the future", id, ip, t0 - 1, false},
		{"other ip", id, netip.MustParseAddr("192.0.2.2"), t0, false},
		{"v6 ip", c.mint(netip.MustParseAddr("2001:db8::1"), t0), netip.MustParseAddr("2001:db8::1"), t0 + 60, true},
		{"top MAC bit flipped", id ^ 1<<(macBits-1), ip, t0, false},
		{"time bit flipped", id ^ 1<<macBits, ip, t0, false},
		{"across the wrap of the time bits", c.mint(ip, expMask-60), ip, expMask + 30, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.valid(tt.id, tt.ip, tt.now); got != tt.want {
				t.Fatalf("valid = %v, want %v", got, tt.want)
			}
		})
	}
}
