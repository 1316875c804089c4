// Package swarmtest is the conformance suite and benchmark set that every
// swarm.Store backend runs from its own tests:
//
//	func TestConformance(t *testing.T) { swarmtest.Run(t, newStore) }
//	func BenchmarkStore(b *testing.B)  { swarmtest.Bench(b, newStore) }
//
// The suite checks the rules written on swarm.Store, one table or scenario
// per rule, plus a randomised comparison against a reference model and a
// concurrency test meant for -race.
package swarmtest

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// NewStore builds an empty store with opts for one test or benchmark; the
// backend registers its own cleanup with tb.Cleanup.
type NewStore func(tb testing.TB, opts swarm.Options) swarm.Store

// detail is whether s keeps every field of swarm.PeerInfo: the suite
// checks ids, uploaded, downloaded, left and event only then, and else
// that a peer is a seeder exactly when its Left is 0.
func detail(s swarm.Store) bool {
	d, ok := s.(swarm.PeerDetailer)
	return !ok || d.PeerDetail()
}

// samePeer is p == want, or without detail the fields such a store keeps.
func samePeer(s swarm.Store, p, want swarm.PeerInfo) bool {
	if detail(s) {
		return p == want
	}
	return p.Addr == want.Addr && p.Updated == want.Updated && bittorrent.Complete(p.Left) == bittorrent.Complete(want.Left)
}

// sameID is whether a handed-out peer's id is want, or without detail 0.
func sameID(s swarm.Store, id, want bittorrent.PeerID) bool {
	if detail(s) {
		return id == want
	}
	return id == bittorrent.PeerID{}
}

// Hash is a deterministic info hash for test number i.
func Hash(i int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint32(h[8:], uint32(i))
	h[19] = 0x5a
	return h
}

// PeerID is a deterministic peer id for test peer number i.
func PeerID(i int) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], "-ST0001-")
	binary.BigEndian.PutUint64(id[12:], uint64(i))
	return id
}

// Addr4 is IPv4 test peer number i (10.x.y.z) on port.
func Addr4(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), port)
}

// Addr6 is IPv6 test peer number i (fd00::i) on port.
func Addr6(i int, port uint16) netip.AddrPort {
	var b [16]byte
	b[0] = 0xfd
	binary.BigEndian.PutUint32(b[12:], uint32(i))
	return netip.AddrPortFrom(netip.AddrFrom16(b), port)
}

// Announce builds a leecher's announce (Left 1000, no event) at time now
// that wants 74 peers of both families.
func Announce(h bittorrent.InfoHash, id bittorrent.PeerID, addr netip.AddrPort, now int64) swarm.Announce {
	return swarm.Announce{
		InfoHash: h, PeerID: id, Addr: addr, Left: 1000, Now: now,
		NumWant: 74, Families: bittorrent.BothFamilies,
	}
}

// Do runs one announce and fails the test on error.
func Do(tb testing.TB, s swarm.Store, a swarm.Announce) (swarm.Result, bittorrent.AnnounceResponse) {
	tb.Helper()
	var resp bittorrent.AnnounceResponse
	res, err := s.Announce(context.Background(), &a, &resp)
	if err != nil {
		tb.Fatalf("announce %v from %v: %v", a.Event, a.Addr, err)
	}
	CheckForm(tb, &a, &resp)
	return res, resp
}

// CheckForm checks that resp holds its peers in the form a asked for:
// whole compact entries and no Peers when a.Compact, else the reverse.
func CheckForm(tb testing.TB, a *swarm.Announce, resp *bittorrent.AnnounceResponse) {
	tb.Helper()
	switch {
	case a.Compact && len(resp.Peers4)+len(resp.Peers6) > 0:
		tb.Fatalf("compact announce from %v answered with %d+%d Peers", a.Addr, len(resp.Peers4), len(resp.Peers6))
	case !a.Compact && len(resp.Compact4)+len(resp.Compact6) > 0:
		tb.Fatalf("announce from %v with ids answered with %d+%d compact bytes", a.Addr, len(resp.Compact4), len(resp.Compact6))
	case len(resp.Compact4)%6 != 0 || len(resp.Compact6)%18 != 0:
		tb.Fatalf("announce from %v: compact lists of %d and %d bytes", a.Addr, len(resp.Compact4), len(resp.Compact6))
	}
}

// Peers returns the peers resp hands out by family: its Peers, then the
// entries of its compact lists as Peers without ids. An incomplete compact
// entry at the end is left out (CheckForm reports it).
func Peers(resp *bittorrent.AnnounceResponse) (v4, v6 []bittorrent.Peer) {
	v4 = slices.Clone(resp.Peers4)
	for c := resp.Compact4; len(c) >= 6; c = c[6:] {
		v4 = append(v4, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte(c[:4])), binary.BigEndian.Uint16(c[4:6]))})
	}
	v6 = slices.Clone(resp.Peers6)
	for c := resp.Compact6; len(c) >= 18; c = c[18:] {
		v6 = append(v6, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte(c[:16])), binary.BigEndian.Uint16(c[16:18]))})
	}
	return v4, v6
}

func scrape1(tb testing.TB, s swarm.Store, h bittorrent.InfoHash) bittorrent.SwarmStats {
	tb.Helper()
	out, err := s.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil)
	if err != nil {
		tb.Fatalf("scrape: %v", err)
	}
	if len(out) != 1 {
		tb.Fatalf("scrape of one hash returned %d entries", len(out))
	}
	return out[0]
}

func totals(tb testing.TB, s swarm.Store) swarm.Totals {
	tb.Helper()
	t, err := s.Totals(context.Background())
	if err != nil {
		tb.Fatalf("totals: %v", err)
	}
	return t
}

func sweep(tb testing.TB, s swarm.Store, cutoff int64) swarm.SweepResult {
	tb.Helper()
	r, err := s.Sweep(context.Background(), cutoff)
	if err != nil {
		tb.Fatalf("sweep: %v", err)
	}
	return r
}

// addrs lists the addresses of an answer, both families.
func addrs(resp *bittorrent.AnnounceResponse) []netip.AddrPort {
	var out []netip.AddrPort
	v4, v6 := Peers(resp)
	for _, p := range append(v4, v6...) {
		out = append(out, p.Addr)
	}
	return out
}
