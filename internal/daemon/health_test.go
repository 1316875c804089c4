package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestReachable(t *testing.T) {
	tests := []struct {
		bound string
		want  []string
	}{
		{"192.0.2.1:6969", []string{"192.0.2.1:6969"}},
		{"[::1]:6969", []string{"[::1]:6969"}},
		{"0.0.0.0:6969", []string{"127.0.0.1:6969"}},
		// A dual-stack wildcard: ::1 first, 127.0.0.1 where loopback has
		// no IPv6.
		{"[::]:6969", []string{"[::1]:6969", "127.0.0.1:6969"}},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range reachable(netip.MustParseAddrPort(tt.bound)) {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("reachable(%s) = %v, want %v", tt.bound, got, tt.want)
		}
	}
}

func TestProbeFirst(t *testing.T) {
	v6, v4 := netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("127.0.0.1:1")
	errNoV6 := errors.New("cannot assign requested address")
	var tried []netip.AddrPort
	probe := func(up ...netip.AddrPort) func(context.Context, netip.AddrPort) error {
		return func(_ context.Context, a netip.AddrPort) error {
			tried = append(tried, a)
			if slices.Contains(up, a) {
				return nil
			}
			if a == v6 {
				return errNoV6
			}
			return errors.New("refused")
		}
	}
	if err := probeFirst(t.Context(), []netip.AddrPort{v6, v4}, probe(v4)); err != nil {
		t.Fatalf("::1 down, 127.0.0.1 up: %v", err)
	}
	tried = nil
	if err := probeFirst(t.Context(), []netip.AddrPort{v6, v4}, probe(v6)); err != nil || len(tried) != 1 {
		t.Fatalf("::1 up: %v after %v", err, tried)
	}
	if err := probeFirst(t.Context(), []netip.AddrPort{v6, v4}, probe()); !errors.Is(err, errNoV6) {
		t.Fatalf("both down: %v, want the first address's error", err)
	}
}
