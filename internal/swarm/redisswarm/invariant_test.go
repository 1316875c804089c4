package redisswarm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestInvariants runs thousands of concurrent announces from goroutines
// acting as three nodes (three stores on one prefix, on Redis's clock):
// starts, stops, completions, role switches, port 0, both families, and
// sweeps that expire peers. Afterwards every count read through the
// store and every bucket counter equals what the sorted sets hold, no
// count is negative, and each torrent's completed count equals the
// completions the nodes were told they counted.
//
// It runs with the default layout (these swarms of up to 40 peers are
// packed), with swarms moving between the packed string and the sorted
// sets at 2 peers, and with sorted sets only.
func TestInvariants(t *testing.T) {
	for _, pm := range []int{0, 2, -1} {
		t.Run(fmt.Sprintf("PackMax=%d", pm), func(t *testing.T) { testInvariants(t, pm) })
	}
}

func testInvariants(t *testing.T, packMax int) {
	u := testURL(t)
	prefix := testPrefix(t, u)
	const (
		nodes     = 3
		workers   = 6
		ops       = 1500
		torrents  = 12
		addresses = 40
	)
	// A peerless torrent is removed unless it has a completed count: a
	// torrent removed with its count by a sweep (peers last seen in the
	// second before expire) and announced again would start its count
	// anew, and the comparison below could not tell.
	opts := swarm.Options{RemovePeerlessTorrents: true, KeepCompleted: true}
	var stores [nodes]*Store
	for i := range stores {
		stores[i] = newTestStore(t, Config{URL: u, Prefix: prefix, Options: opts, BucketBits: 3, Timeout: 5 * time.Second,
			SweepLease: 200 * time.Millisecond, PackMax: packMax})
	}
	counted := make([]map[bittorrent.InfoHash]uint32, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		counted[w] = map[bittorrent.InfoHash]uint32{}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			s := stores[w%nodes]
			var resp bittorrent.AnnounceResponse
			for op := range ops {
				if op%300 == 299 {
					// Peers last seen a second ago or more expire.
					if _, err := s.Sweep(context.Background(), time.Now().Unix()-1); err != nil {
						errs <- err
						return
					}
					continue
				}
				i := rng.IntN(addresses)
				addr := swarmtest.Addr4(i, uint16(1+i%3))
				if i%4 == 0 {
					addr = swarmtest.Addr6(i, uint16(1+i%3))
				}
				if rng.IntN(20) == 0 {
					addr = swarmtest.Addr4(i, 0)
				}
				a := swarm.Announce{
					InfoHash: swarmtest.Hash(rng.IntN(torrents)), PeerID: swarmtest.PeerID(i), Addr: addr,
					Left:    []int64{0, 1, -1, 500}[rng.IntN(4)],
					Event:   []bittorrent.Event{bittorrent.EventNone, bittorrent.EventNone, bittorrent.EventStarted, bittorrent.EventCompleted, bittorrent.EventStopped}[rng.IntN(5)],
					NumWant: rng.IntN(10), Families: bittorrent.Family(1 + rng.IntN(3)), Compact: rng.IntN(2) == 0,
				}
				resp.Reset()
				res, err := s.Announce(context.Background(), &a, &resp)
				if err != nil {
					errs <- err
					return
				}
				if res.CountedCompletion {
					counted[w][a.InfoHash]++
				}
				if n := len(resp.Compact4)/6 + len(resp.Compact6)/18 + len(resp.Peers4) + len(resp.Peers6); n > a.NumWant {
					errs <- errors.New("more peers than numwant")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := rawClient(t, u)
	ctx := context.Background()
	hashes := make([]bittorrent.InfoHash, torrents)
	for i := range hashes {
		hashes[i] = swarmtest.Hash(i)
	}
	s := stores[0]
	scraped, err := s.Scrape(ctx, hashes, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sum swarm.Totals
	for i, h := range hashes {
		b := &callBuf{arena: make([]byte, 0, 512)}
		keys := s.fillKeys(b, &h)
		var card [4]int64
		for k := range card {
			if card[k], err = c.Do(ctx, c.B().Zcard().Key(keys[k]).Build()).AsInt64(); err != nil {
				t.Fatal(err)
			}
		}
		// A packed swarm has no sorted sets, and its record is "P".
		if p, err := c.Do(ctx, c.B().Get().Key(keys[9]).Build()).ToString(); err == nil {
			sw, err := parsePacked(p)
			if err != nil || card != [4]int64{} {
				t.Fatalf("torrent %d: packed %x (%v) beside sorted sets %v", i, p, err, card)
			}
			if rec, _ := c.Do(ctx, c.B().Hget().Key(keys[6]).Field(string(h[:])).Build()).ToString(); rec != "P" {
				t.Errorf("torrent %d: packed, record %q", i, rec)
			}
			for k := range card {
				card[k] = int64(sw.n[k])
			}
		} else if !rueidis.IsRedisNil(err) {
			t.Fatal(err)
		}
		if seeders, leechers := card[0]+card[2], card[1]+card[3]; int64(scraped[i].Seeders) != seeders || int64(scraped[i].Leechers) != leechers {
			t.Errorf("torrent %d: scrape %+v, sorted sets %d seeders %d leechers", i, scraped[i], seeders, leechers)
		}
		// The record's list sizes, which announces sample by, are the
		// sorted sets' own.
		if rec, err := c.Do(ctx, c.B().Hget().Key(keys[6]).Field(string(h[:])).Build()).ToString(); err == nil && rec != "P" {
			for k := range card {
				if len(rec) != 28 || int64(binary.LittleEndian.Uint32([]byte(rec[4+4*k:]))) != card[k] {
					t.Errorf("torrent %d: record %x, sorted sets %v", i, rec, card)
					break
				}
			}
		}
		details, _ := c.Do(ctx, c.B().Hlen().Key(keys[4]).Build()).AsInt64()
		if details != card[0]+card[1]+card[2]+card[3] {
			t.Errorf("torrent %d: %d peer details for %d peers", i, details, card[0]+card[1]+card[2]+card[3])
		}
		var want uint32
		for w := range workers {
			want += counted[w][h]
		}
		tor, ok, err := s.Torrent(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			sum.Torrents++
			if tor.Completed != want {
				t.Errorf("torrent %d: completed %d, the nodes counted %d", i, tor.Completed, want)
			}
		} else if want != 0 {
			t.Errorf("torrent %d with %d completions removed", i, want)
		}
		sum.Seeders += uint64(scraped[i].Seeders)
		sum.Leechers += uint64(scraped[i].Leechers)
		sum.Completed += uint64(scraped[i].Completed)
	}
	tot, err := s.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tot != sum {
		t.Errorf("totals %+v, the torrents add up to %+v", tot, sum)
	}
	// No bucket counter is negative.
	for b := range 1 << s.bits {
		vals, err := c.Do(ctx, c.B().Hmget().Key(string(s.bucketTag(nil, b))+"n").Field("s", "l", "t", "c").Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range vals {
			if n, err := v.AsInt64(); err == nil && n < 0 {
				t.Errorf("bucket %d counter %d is %d", b, j, n)
			} else if err != nil && !rueidis.IsRedisNil(err) {
				t.Fatal(err)
			}
		}
	}
	// A sweep of everything empties the store exactly.
	for _, st := range stores {
		if _, err := st.Sweep(ctx, time.Now().Unix()+10); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(250 * time.Millisecond) // the leases lapse
	if _, err := s.Sweep(ctx, time.Now().Unix()+10); err != nil {
		t.Fatal(err)
	}
	var kept swarm.Totals
	for _, h := range hashes {
		var want uint32
		for w := range workers {
			want += counted[w][h]
		}
		if want > 0 {
			kept.Torrents++
			kept.Completed += uint64(want)
		}
	}
	if tot, err := s.Totals(ctx); err != nil || tot != kept {
		t.Errorf("after sweeping everything: totals %+v, %v; want %+v (the torrents with a completed count)", tot, err, kept)
	}
}
