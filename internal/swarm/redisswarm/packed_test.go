package redisswarm

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// packedOf builds a packed swarm as the scripts write it.
func packedOf(completed uint32, lists [4][]netip.AddrPort) string {
	var h [packHeader]byte
	binary.LittleEndian.PutUint32(h[0:], completed)
	for k, l := range lists {
		binary.LittleEndian.PutUint16(h[12+2*k:], uint16(len(l)))
	}
	b := h[:]
	for _, l := range lists {
		for _, a := range l {
			b = append(b, a.Addr().AsSlice()...)
			b = binary.BigEndian.AppendUint16(b, a.Port())
		}
	}
	for _, l := range lists {
		for range l {
			b = append(b, 1, 0, 0, 0, 0)
		}
	}
	return string(b)
}

// TestPackedDraw: the node's draw from a packed swarm follows the
// script's rules: counts from the header, seeders get leechers, only the
// wanted families, at most numwant, never the requester.
func TestPackedDraw(t *testing.T) {
	var lists [4][]netip.AddrPort
	for i := range 6 {
		lists[i%2] = append(lists[i%2], swarmtest.Addr4(i, 6881))
		lists[2+i%2] = append(lists[2+i%2], swarmtest.Addr6(i, 6881))
	}
	sw, err := parsePacked(packedOf(9, lists))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		self     netip.AddrPort
		seeder   bool
		fam      bittorrent.Family
		numwant  int
		want4    int
		want6    int
		fromList []int
	}{
		{"leecher, all", swarmtest.Addr4(1, 6881), false, bittorrent.IPv4 | bittorrent.IPv6, 50, 5, 6, []int{0, 1, 2, 3}},
		{"seeder gets leechers", swarmtest.Addr4(0, 6881), true, bittorrent.IPv4 | bittorrent.IPv6, 50, 3, 3, []int{1, 3}},
		{"IPv4 only", swarmtest.Addr6(1, 6881), false, bittorrent.IPv4, 50, 6, 0, []int{0, 1}},
		{"numwant", swarmtest.Addr4(1, 6881), false, bittorrent.IPv4 | bittorrent.IPv6, 4, -1, -1, []int{0, 1, 2, 3}},
		{"none", swarmtest.Addr4(1, 6881), false, bittorrent.IPv4 | bittorrent.IPv6, 0, 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := swarm.Announce{Addr: tc.self, NumWant: tc.numwant, Families: tc.fam, Compact: true, Left: 1}
			if tc.seeder {
				a.Left = 0
			}
			var resp bittorrent.AnnounceResponse
			sw.fill(&a, &resp, nil)
			if resp.Seeders != 6 || resp.Leechers != 6 {
				t.Fatalf("counts %d/%d", resp.Seeders, resp.Leechers)
			}
			v4, v6 := swarmtest.Peers(&resp)
			if tc.want4 >= 0 && (len(v4) != tc.want4 || len(v6) != tc.want6) {
				t.Fatalf("%d+%d peers, want %d+%d", len(v4), len(v6), tc.want4, tc.want6)
			}
			if len(v4)+len(v6) > tc.numwant {
				t.Fatalf("%d peers for numwant %d", len(v4)+len(v6), tc.numwant)
			}
			for _, p := range append(v4, v6...) {
				if p.Addr == tc.self {
					t.Fatalf("requester handed itself")
				}
				found := false
				for _, k := range tc.fromList {
					for _, x := range lists[k] {
						found = found || x == p.Addr
					}
				}
				if !found {
					t.Fatalf("peer %v not from lists %v", p.Addr, tc.fromList)
				}
			}
		})
	}
}

// FuzzPacked checks the node's reading of a packed swarm: a malformed one
// is refused, never a panic; from an accepted one, the draw hands out at
// most numwant whole peers of the swarm, never the requester.
func FuzzPacked(f *testing.F) {
	var lists [4][]netip.AddrPort
	for i := range 3 {
		lists[i%4] = append(lists[i%4], swarmtest.Addr4(i, 6881))
		lists[2+i%2] = append(lists[2+i%2], swarmtest.Addr6(i, 6881))
	}
	good := packedOf(3, lists)
	f.Add(good, 2, false, false, true)
	f.Add(good, 50, true, true, false)
	f.Add(good[:len(good)-1], 5, false, false, true)
	f.Add(packedOf(0, [4][]netip.AddrPort{}), 5, false, false, true)
	f.Add(strings.Repeat("\xff", 40), 5, false, false, true)
	f.Fuzz(func(t *testing.T, p string, numwant int, seeder, six, compact bool) {
		sw, err := parsePacked(p)
		if err != nil {
			if !errors.Is(err, errReply) {
				t.Fatalf("error %v, want errReply", err)
			}
			return
		}
		self := swarmtest.Addr4(1, 6881)
		if six {
			self = swarmtest.Addr6(1, 6881)
		}
		numwant = min(max(numwant, 0), 200)
		a := swarm.Announce{Addr: self, NumWant: numwant, Families: bittorrent.IPv4 | bittorrent.IPv6, Compact: compact, Left: 1}
		if seeder {
			a.Left = 0
		}
		var resp bittorrent.AnnounceResponse
		sw.fill(&a, &resp, nil)
		if compact {
			swarmtest.CheckForm(t, &a, &resp)
		}
		v4, v6 := swarmtest.Peers(&resp)
		if len(v4)+len(v6) > numwant {
			t.Fatalf("%d peers for numwant %d", len(v4)+len(v6), numwant)
		}
		in := map[string]int{}
		for k := range 4 {
			for j := range sw.n[k] {
				in[sw.addr(k, j)]++
			}
		}
		for _, peer := range append(v4, v6...) {
			if peer.Addr == self && in[string(append(self.Addr().AsSlice(), byte(self.Port()>>8), byte(self.Port())))] < 2 {
				t.Fatalf("requester handed itself")
			}
			b := append(peer.Addr.Addr().AsSlice(), byte(peer.Addr.Port()>>8), byte(peer.Addr.Port()))
			if in[string(b)] == 0 {
				t.Fatalf("peer %v is not in the swarm", peer.Addr)
			}
		}
	})
}
