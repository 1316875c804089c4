package memswarm

import (
	"net/netip"
	"testing"
)

// TestHashPeerSpreads checks that peers a client can choose get distinct
// hashes: every port of one IPv6 address whose bytes 10-11 vary with the
// port (they once cancelled out: one /64 could put 65,535 peers of a
// swarm on one hash, an index probe run of all of them), every port of
// one IPv4 address, and the addresses of one /16.
func TestHashPeerSpreads(t *testing.T) {
	seed := uint64(0x123456789abcdef)
	cases := []struct {
		name string
		addr func(i int) netip.AddrPort
	}{
		{"IPv6 bytes 10-11 xor port", func(i int) netip.AddrPort {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			x := 0xbeef ^ uint16(i)
			b[10], b[11] = byte(x>>8), byte(x)
			return netip.AddrPortFrom(netip.AddrFrom16(b), uint16(i))
		}},
		{"IPv4 ports of one address", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 1}), uint16(i))
		}},
		{"IPv4 addresses of one /16", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 6881)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seen := map[uint32]int{} // the 32 bits an index entry keeps
			for i := 1; i < 65536; i++ {
				a := c.addr(i)
				var h uint64
				if a.Addr().Is4() {
					ip := a.Addr().As4()
					h = hashPeer(&ip, a.Port(), seed)
				} else {
					ip := a.Addr().As16()
					h = hashPeer(&ip, a.Port(), seed)
				}
				seen[uint32(h)]++
			}
			// 65,535 random 32-bit values collide about once; allow a few.
			if len(seen) < 65535-8 {
				t.Errorf("65,535 peers give %d distinct 32-bit hashes", len(seen))
			}
		})
	}
}
