package memswarm

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestPickHotSameAsRecords: a compact answer of a swarm of at most maxSeg
// peers, read from the hot copies, holds the same peers in the same order
// as the answer with ids, read from the records, for the same sample:
// chunk segments of both families and sizes up to maxSeg, a big segment
// shrunk below maxSeg, a seeder's sample of the few leechers of a big
// swarm, a big swarm of IPv6 peers, and a swarm of both families past
// maxSeg, whose compact answer is the records' walk converted.
func TestPickHotSameAsRecords(t *testing.T) {
	s := NewSharded(swarm.Options{}, 0)
	type member struct {
		addr netip.AddrPort
		left int64
	}
	members := map[int][]member{}
	join := func(tor int, addr netip.AddrPort, left int64) {
		a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(len(members[tor])), addr, 100)
		a.Left, a.NumWant = left, 0
		swarmtest.Do(t, s, a)
		members[tor] = append(members[tor], member{addr, left})
	}
	leave := func(tor int, m member) {
		a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(0), m.addr, 100)
		a.Event, a.NumWant = bittorrent.EventStopped, 0
		swarmtest.Do(t, s, a)
	}
	sizes := []int{1, 2, 3, 5, 20, 64, 65, 130, maxSeg}
	for tor, n := range sizes {
		for i := range n {
			addr := swarmtest.Addr4(tor*1000+i, uint16(1+i%3))
			if i%3 == 0 {
				addr = swarmtest.Addr6(tor*1000+i, uint16(1+i%3))
			}
			join(tor, addr, int64(i%2))
		}
	}
	// A big segment back below maxSeg peers (it moves into a chunk only
	// at a quarter of its capacity).
	big := len(sizes)
	for i := range 2 * maxSeg {
		join(big, swarmtest.Addr4(i, 7), int64(i%2))
	}
	for _, m := range members[big][maxSeg-50:] {
		leave(big, m)
	}
	members[big] = members[big][:maxSeg-50]
	// A big swarm of seeders and a few leechers.
	few := big + 1
	for i := range 3 * maxSeg {
		join(few, swarmtest.Addr4(i, 9), 0)
	}
	for i := range 7 {
		join(few, swarmtest.Addr4(10_000+i, 9), 1)
	}
	// A big swarm of IPv6 peers alone.
	big6 := few + 1
	for i := range 2 * maxSeg {
		join(big6, swarmtest.Addr6(i, 13), int64(i%2))
	}
	// Both families, more than maxSeg peers in all.
	mixed := big6 + 1
	for i := range maxSeg + maxSeg/2 {
		addr := swarmtest.Addr4(i, 11)
		if i%3 == 0 {
			addr = swarmtest.Addr6(i, 11)
		}
		join(mixed, addr, int64(i%2))
	}
	checkInvariants(t, s)
	sh := &s.shards[0]
	if sg := sh.torrents[big].p4; sg.cls != bigClass || sg.n > maxSeg {
		t.Fatalf("torrent %d: segment of class %d with %d peers, want a big one of at most %d", big, sg.cls, sg.n, maxSeg)
	}
	addrs := func(ps []bittorrent.Peer) []netip.AddrPort {
		out := make([]netip.AddrPort, len(ps))
		for k, p := range ps {
			out[k] = p.Addr
		}
		return out
	}
	compared := 0
	for tor, ms := range members {
		for j, m := range ms {
			if j%7 != 0 && j != len(ms)-1 {
				continue
			}
			for _, fam := range []bittorrent.Family{bittorrent.IPv4, bittorrent.IPv6, bittorrent.BothFamilies} {
				for _, want := range []int{1, 5, 50, 1000} {
					for _, sample := range []uint64{1, 0xffffffff, 0x1234_5678_9abc_def0, 0xdead_beef_0000_0001} {
						a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(j), m.addr, 100)
						a.Left, a.NumWant, a.Families, a.Sample = m.left, want, fam, sample
						_, withIDs := swarmtest.Do(t, s, a)
						a.Compact = true
						_, compact := swarmtest.Do(t, s, a)
						c4, c6 := swarmtest.Peers(&compact)
						if !slices.Equal(addrs(withIDs.Peers4), addrs(c4)) || !slices.Equal(addrs(withIDs.Peers6), addrs(c6)) {
							t.Fatalf("torrent %d, peer %v (left %d), families %d, num_want %d, sample %#x: with ids %v %v, compact %v %v",
								tor, m.addr, m.left, fam, want, sample, withIDs.Peers4, withIDs.Peers6, c4, c6)
						}
						if len(withIDs.Peers4)+len(withIDs.Peers6) > 0 {
							compared++
						}
					}
				}
			}
		}
	}
	if compared < 500 {
		t.Fatalf("only %d answers compared", compared)
	}
	checkInvariants(t, s)
}
