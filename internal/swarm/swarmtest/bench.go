package swarmtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Bench runs the shared benchmarks: steady-state announces (a known peer
// re-announcing) into swarms of 1, 100 and 10,000 peers asking for 74,
// first announces (new peers) into a swarm of 500,000, re-announces spread
// over 10,000 swarms of 20, scrapes of 1 and 74 hashes, and announces from
// all cores over many torrents.
func Bench(b *testing.B, newStore NewStore) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("Announce/swarm=%d", n), func(b *testing.B) { benchAnnounce(b, newStore, n) })
	}
	// A torrent as popular as the top one of a big public tracker: every
	// new peer must be added without a cost that grows with the swarm.
	b.Run("AnnounceFirst/swarm=500000", func(b *testing.B) { benchFirst(b, newStore, 500000) })
	// Many small swarms, far beyond the CPU caches, as the UDP load
	// generator's uniform profile: what a busy tracker's store costs.
	b.Run("AnnounceSpread/torrents=10000,peers=20", func(b *testing.B) { benchSpread(b, newStore, 10000, 20) })
	for _, n := range []int{1, 74} {
		b.Run(fmt.Sprintf("Scrape/hashes=%d", n), func(b *testing.B) { benchScrape(b, newStore, n) })
	}
	// 20,000 torrents: beyond the CPU caches, and a setup a networked
	// backend can afford each time the benchmark function is called.
	b.Run("AnnounceParallel/torrents=20000", func(b *testing.B) { benchParallel(b, newStore, 20000, 4) })
}

func benchAnnounce(b *testing.B, newStore NewStore, n int) {
	s := newStore(b, swarm.Options{})
	h := Hash(1)
	fill(b, s, h, n, 100)
	ctx := context.Background()
	a := Announce(h, PeerID(1), Addr4(1, 6881), 101)
	var resp bittorrent.AnnounceResponse
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := 1 + i%n
		a.PeerID, a.Addr = PeerID(k), Addr4(k, 6881)
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			b.Fatal(err)
		}
	}
	if want := min(74, n-1); len(resp.Peers4) != want {
		b.Fatalf("last answer had %d peers, want %d", len(resp.Peers4), want)
	}
}

// benchFirst fills a swarm with n leechers and then measures announces of
// peers it has never seen, at scattered addresses (the filled peers hold
// the even address numbers, the new ones odd numbers in a scrambled
// order), each asking for 30 peers as a UDP client does.
func benchFirst(b *testing.B, newStore NewStore, n int) {
	s := newStore(b, swarm.Options{})
	h := Hash(1)
	for i := 1; i <= n; i++ {
		a := Announce(h, PeerID(i), Addr4(2*i, 6881), 100)
		a.NumWant = 0
		Do(b, s, a)
	}
	ctx := context.Background()
	a := Announce(h, PeerID(1), Addr4(1, 6881), 101)
	a.NumWant = 30
	var resp bittorrent.AnnounceResponse
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Multiplying by an odd constant permutes 23-bit numbers, so
		// every address is new until 8 M announces.
		k := int(uint32(i)*0x9e3779b1) & (1<<23 - 1)
		a.PeerID, a.Addr = PeerID(n+i), Addr4(2*k+1, 6881)
		a.Left = int64(i & 1)
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			b.Fatal(err)
		}
	}
	if len(resp.Peers4) == 0 {
		b.Fatal("the last first announce got no peers")
	}
}

// benchSpread fills torrents swarms of peers each (half seeders), the
// torrents growing side by side, and then measures re-announces of random
// known peers asking for 30 IPv4 peers.
func benchSpread(b *testing.B, newStore NewStore, torrents, peers int) {
	s := newStore(b, swarm.Options{})
	for p := range peers {
		for t := range torrents {
			a := Announce(Hash(t), PeerID(p), Addr4(t*peers+p, 6881), 100)
			a.NumWant = 0
			a.Left = int64(p & 1)
			Do(b, s, a)
		}
	}
	ctx := context.Background()
	a := Announce(Hash(0), PeerID(0), Addr4(0, 6881), 101)
	a.NumWant, a.Families = 30, bittorrent.IPv4
	var resp bittorrent.AnnounceResponse
	x := uint64(0x9e3779b97f4a7c15)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		t, p := int(x%uint64(torrents)), int(x>>32)%peers
		a.InfoHash, a.PeerID, a.Addr, a.Left = Hash(t), PeerID(p), Addr4(t*peers+p, 6881), int64(p&1)
		resp.Reset()
		if _, err := s.Announce(ctx, &a, &resp); err != nil {
			b.Fatal(err)
		}
	}
	if len(resp.Peers4) == 0 {
		b.Fatal("the last announce got no peers")
	}
}

func benchScrape(b *testing.B, newStore NewStore, n int) {
	s := newStore(b, swarm.Options{})
	hashes := make([]bittorrent.InfoHash, n)
	for i := range hashes {
		hashes[i] = Hash(i)
		fill(b, s, hashes[i], 3, 100)
	}
	ctx := context.Background()
	out := make([]bittorrent.SwarmStats, 0, n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if out, err = s.Scrape(ctx, hashes, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
	if out[n-1].Leechers != 3 {
		b.Fatalf("scrape answered %+v, want 3 leechers", out[n-1])
	}
}

// benchParallel announces from every core as known peers of random
// torrents, so the shards' locks are exercised the way a busy tracker
// uses them.
func benchParallel(b *testing.B, newStore NewStore, torrents, peers int) {
	s := newStore(b, swarm.Options{})
	for t := range torrents {
		for p := range peers {
			a := Announce(Hash(t), PeerID(p), Addr4(t*peers+p, 6881), 100)
			a.NumWant = 0
			Do(b, s, a)
		}
	}
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		x := seed.Add(0x9e3779b97f4a7c15) | 1
		// One announce and response per goroutine, reused, as a
		// transport worker does.
		var resp bittorrent.AnnounceResponse
		a := Announce(Hash(0), PeerID(0), Addr4(0, 6881), 101)
		for pb.Next() {
			// xorshift: math/rand's global source would be a shared lock.
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			t, p := int(x%uint64(torrents)), int(x>>32)%peers
			a.InfoHash, a.PeerID, a.Addr = Hash(t), PeerID(p), Addr4(t*peers+p, 6881)
			resp.Reset()
			if _, err := s.Announce(ctx, &a, &resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
