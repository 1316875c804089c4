package udptracker

import (
	"encoding/binary"
	"math"
	"testing"
)

// TestLeft: BEP 15's left is a 64-bit field that Starling reads as signed.
// Only 0 makes a seeder; a negative value (the all-ones that
// bittorrent-tracker's Client sends when it does not know its progress) is
// unknown, a leecher, in the answer's counts and in a scrape.
func TestLeft(t *testing.T) {
	e := startEnv(t, envOpts{})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	tests := []struct {
		name   string
		left   uint64 // as sent on the wire
		seeder bool
	}{
		{"zero", 0, true},
		{"one", 1, false},
		{"2^63-1", math.MaxInt64, false},
		{"-1", uint64(1<<64 - 1), false},
		{"all ones", 0xffff_ffff_ffff_ffff, false},
		{"-2^63", 1 << 63, false},
		{"-16384", uint64(1<<64 - 16384), false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hashN(100 + i)
			seeders, leechers, _ := announceRaw(t, c, announceSpec{cid: cid, txid: uint32(i + 1), hash: h, port: 6881,
				left: int64(tt.left), event: eventStartedForTest, numWant: 10}, 6)
			want := [2]uint32{0, 1}
			if tt.seeder {
				want = [2]uint32{1, 0}
			}
			if [2]uint32{seeders, leechers} != want {
				t.Errorf("answer counts %d seeders, %d leechers; want %v", seeders, leechers, want)
			}
			resp := c.roundTrip(scrapePacket(cid, 99, h))
			if len(resp) != 20 || binary.BigEndian.Uint32(resp) != actionScrape {
				t.Fatalf("scrape answer % x", resp)
			}
			if got := [2]uint32{binary.BigEndian.Uint32(resp[8:]), binary.BigEndian.Uint32(resp[16:])}; got != want {
				t.Errorf("scrape counts %d seeders, %d leechers; want %v", got[0], got[1], want)
			}
		})
	}
}

// TestClientsThatMisreportLeft: two clients that both send left = all ones
// (unknown) find each other, and so do two that both send 0 (a magnet
// download before it has the metadata, beside the real seeder): with no
// leecher to hand, a seeder is handed seeders.
func TestClientsThatMisreportLeft(t *testing.T) {
	e := startEnv(t, envOpts{})
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	for k, left := range []int64{-1, 0} {
		h := hashN(200 + k)
		_, _, peers := announceRaw(t, c, announceSpec{cid: cid, txid: 1, hash: h, port: 7001, left: left, event: eventStartedForTest, numWant: 50}, 6)
		if len(peers) != 0 {
			t.Fatalf("left %d: the first peer was handed %d peers", left, len(peers))
		}
		_, _, peers = announceRaw(t, c, announceSpec{cid: cid, txid: 2, hash: h, port: 7002, left: left, event: eventStartedForTest, numWant: 50}, 6)
		if len(peers) != 1 || binary.BigEndian.Uint16(peers[0][4:]) != 7001 {
			t.Fatalf("left %d: the second peer was handed %x, want the first (port 7001)", left, peers)
		}
		_, _, peers = announceRaw(t, c, announceSpec{cid: cid, txid: 3, hash: h, port: 7001, left: left, numWant: 50}, 6)
		if len(peers) != 1 || binary.BigEndian.Uint16(peers[0][4:]) != 7002 {
			t.Fatalf("left %d: the first peer's next announce was handed %x, want the second (port 7002)", left, peers)
		}
	}
}
