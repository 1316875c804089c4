package swarmtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// model is the reference store: the rules of swarm.Store written as
// plainly as possible, with maps and no concern for speed.
type model struct {
	opts     swarm.Options
	torrents map[bittorrent.InfoHash]*mtorrent
	// gone are the addresses whose completion was counted and that left
	// with a stop, or completed with port 0: they come back counted. It
	// outlives a torrent's removal, as the store's memory of them does.
	gone map[goneKey]bool
}

type goneKey struct {
	h    bittorrent.InfoHash
	addr netip.AddrPort
}

type mtorrent struct {
	peers     map[netip.AddrPort]*swarm.PeerInfo
	counted   map[netip.AddrPort]bool
	completed uint32
}

func newModel(opts swarm.Options) *model {
	return &model{opts: opts, torrents: map[bittorrent.InfoHash]*mtorrent{}, gone: map[goneKey]bool{}}
}

func (t *mtorrent) stats() bittorrent.SwarmStats {
	st := bittorrent.SwarmStats{Completed: t.completed}
	for _, p := range t.peers {
		if bittorrent.Complete(p.Left) {
			st.Seeders++
		} else {
			st.Leechers++
		}
	}
	return st
}

// announce applies a and returns the expected result, counts, and the
// peers the answer may be drawn from.
func (m *model) announce(a *swarm.Announce) (swarm.Result, bittorrent.SwarmStats, map[netip.AddrPort]bittorrent.PeerID) {
	var res swarm.Result
	keep := a.Event != bittorrent.EventStopped && a.Addr.Port() != 0
	portZeroDone := a.Addr.Port() == 0 && a.Event == bittorrent.EventCompleted
	t := m.torrents[a.InfoHash]
	if t == nil {
		if !keep && !portZeroDone {
			return res, bittorrent.SwarmStats{}, nil
		}
		t = &mtorrent{peers: map[netip.AddrPort]*swarm.PeerInfo{}, counted: map[netip.AddrPort]bool{}}
		m.torrents[a.InfoHash] = t
	}
	k := goneKey{a.InfoHash, a.Addr}
	switch {
	case keep:
		if _, ok := t.peers[a.Addr]; !ok {
			t.counted[a.Addr] = m.gone[k]
			delete(m.gone, k)
		}
		t.peers[a.Addr] = &swarm.PeerInfo{ID: a.PeerID, Addr: a.Addr, Updated: a.Now, Uploaded: a.Uploaded,
			Downloaded: a.Downloaded, Left: a.Left, Event: a.Event}
		if a.Event == bittorrent.EventCompleted && !t.counted[a.Addr] {
			t.counted[a.Addr] = true
			t.completed++
			res.CountedCompletion = true
		}
	case portZeroDone:
		if !m.gone[k] {
			t.completed++
			res.CountedCompletion = true
		}
		m.gone[k] = true
	default:
		if _, ok := t.peers[a.Addr]; ok && t.counted[a.Addr] {
			m.gone[k] = true
		}
		delete(t.peers, a.Addr)
		delete(t.counted, a.Addr)
	}
	res.Completed = t.completed
	// The others of the wanted families; a seeder is handed only their
	// leechers, unless they have none.
	eligible := map[netip.AddrPort]bittorrent.PeerID{}
	leechers := map[netip.AddrPort]bittorrent.PeerID{}
	for addr, p := range t.peers {
		if addr == a.Addr || a.Families&bittorrent.FamilyOf(addr.Addr()) == 0 {
			continue
		}
		eligible[addr] = p.ID
		if !bittorrent.Complete(p.Left) {
			leechers[addr] = p.ID
		}
	}
	if bittorrent.Complete(a.Left) && len(leechers) > 0 {
		return res, t.stats(), leechers
	}
	return res, t.stats(), eligible
}

func (m *model) sweep(cutoff int64) swarm.SweepResult {
	var r swarm.SweepResult
	for h, t := range m.torrents {
		for addr, p := range t.peers {
			if p.Updated <= cutoff {
				delete(t.peers, addr)
				delete(t.counted, addr)
				r.Peers++
			}
		}
		if m.opts.RemovePeerlessTorrents && len(t.peers) == 0 && !(m.opts.KeepCompleted && t.completed > 0) {
			delete(m.torrents, h)
			r.Torrents++
		}
	}
	return r
}

func (m *model) totals() swarm.Totals {
	var tot swarm.Totals
	for _, t := range m.torrents {
		st := t.stats()
		tot.Torrents++
		tot.Seeders += uint64(st.Seeders)
		tot.Leechers += uint64(st.Leechers)
		tot.Completed += uint64(st.Completed)
	}
	return tot
}

// testModel drives the store and the model with the same random
// operations and compares every answer, the scrape of every torrent and
// the totals after each one.
func testModel(t *testing.T, newStore NewStore) {
	optss := []swarm.Options{
		{},
		{RemovePeerlessTorrents: true},
		{RemovePeerlessTorrents: true, KeepCompleted: true},
	}
	for _, opts := range optss {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			s := newStore(t, opts)
			m := newModel(opts)
			hashes := []bittorrent.InfoHash{Hash(0), Hash(1), Hash(2), Hash(3)}
			// Two hashes that differ only in the last byte share a shard
			// in any store that shards by prefix.
			hashes[3] = hashes[2]
			hashes[3][19] ^= 1
			addrs := []netip.AddrPort{}
			for i := range 4 {
				for _, port := range []uint16{1, 2} {
					addrs = append(addrs, Addr4(i, port), Addr6(i, port))
				}
			}
			addrs = append(addrs, Addr4(9, 0), Addr6(9, 0))
			now := int64(1000)
			for op := range 2000 {
				now += int64(rng.IntN(3))
				if rng.IntN(25) == 0 {
					cutoff := now - int64(rng.IntN(12))
					got := sweep(t, s, cutoff)
					if want := m.sweep(cutoff); got != want {
						t.Fatalf("op %d: sweep(%d) = %+v, want %+v", op, cutoff, got, want)
					}
				} else {
					a := swarm.Announce{
						InfoHash:   hashes[rng.IntN(len(hashes))],
						PeerID:     PeerID(rng.IntN(1000)),
						Addr:       addrs[rng.IntN(len(addrs))],
						Uploaded:   rng.Int64N(1 << 40),
						Downloaded: rng.Int64N(1 << 40),
						Left:       []int64{0, -1, 5, 1 << 33}[rng.IntN(4)], // -1: UDP's signed left
						Event:      bittorrent.Event(rng.IntN(4)),
						Now:        now,
						NumWant:    []int{0, 1, 3, 74}[rng.IntN(4)],
						Families:   bittorrent.Family(1 + rng.IntN(3)),
					}
					res, resp := Do(t, s, a)
					wantRes, st, eligible := m.announce(&a)
					if res != wantRes {
						t.Fatalf("op %d: %+v: result %+v, want %+v", op, a, res, wantRes)
					}
					if resp.Seeders != st.Seeders || resp.Leechers != st.Leechers {
						t.Fatalf("op %d: %+v: counts %d/%d, want %d/%d", op, a, resp.Seeders, resp.Leechers, st.Seeders, st.Leechers)
					}
					checkAnswer(t, &resp, a.Addr)
					v4, v6 := Peers(&resp)
					got := append(v4, v6...)
					if want := min(a.NumWant, len(eligible)); len(got) != want {
						t.Fatalf("op %d: %+v: %d peers, want %d of %v", op, a, len(got), want, eligible)
					}
					for _, p := range got {
						if id, ok := eligible[p.Addr]; !ok || !sameID(s, p.ID, id) {
							t.Fatalf("op %d: %+v: handed out %v (%x), not an eligible peer", op, a, p.Addr, p.ID)
						}
					}
				}
				compare(t, op, s, m, hashes, op%100 == 0)
			}
		})
	}
}

// compare checks scrape and totals, and with deep the API views too.
func compare(t *testing.T, op int, s swarm.Store, m *model, hashes []bittorrent.InfoHash, deep bool) {
	t.Helper()
	out, err := s.Scrape(context.Background(), hashes, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hashes {
		var want bittorrent.SwarmStats
		if mt := m.torrents[h]; mt != nil {
			want = mt.stats()
		}
		if out[i] != want {
			t.Fatalf("op %d: scrape of torrent %d: %+v, want %+v", op, i, out[i], want)
		}
	}
	if got, want := totals(t, s), m.totals(); got != want {
		t.Fatalf("op %d: totals %+v, want %+v", op, got, want)
	}
	if !deep {
		return
	}
	list, err := s.Torrents(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(m.torrents) {
		t.Fatalf("op %d: Torrents lists %d, want %d", op, len(list), len(m.torrents))
	}
	for _, sum := range list {
		mt := m.torrents[sum.InfoHash]
		if mt == nil || sum.SwarmStats != mt.stats() {
			t.Fatalf("op %d: Torrents item %+v does not match the model", op, sum)
		}
		tor, ok, err := s.Torrent(context.Background(), sum.InfoHash)
		if err != nil || !ok {
			t.Fatalf("op %d: Torrent(%v): %v %v", op, sum.InfoHash, ok, err)
		}
		if len(tor.Peers) != len(mt.peers) {
			t.Fatalf("op %d: Torrent has %d peers, want %d", op, len(tor.Peers), len(mt.peers))
		}
		for _, p := range tor.Peers {
			if mp := mt.peers[p.Addr]; mp == nil || !samePeer(s, p, *mp) {
				t.Fatalf("op %d: Torrent peer %+v, want %+v", op, p, mp)
			}
		}
	}
}

// testConcurrent has goroutines announce (each for its own peers, so
// each knows what the store must end up with), scrape, list and sweep at
// once; run it with -race.
func testConcurrent(t *testing.T, newStore NewStore) {
	const (
		workers  = 6
		ops      = 1500
		torrents = 16
		own      = 12
		stale    = 1000
	)
	s := newStore(t, swarm.Options{RemovePeerlessTorrents: true, KeepCompleted: true})
	ctx := context.Background()
	// Stale peers (seen at time 1) that the sweeper removes while the
	// workers announce at times >= 2.
	for i := range stale {
		a := Announce(Hash(i%torrents), PeerID(i), Addr6(100000+i, 1), 1)
		a.NumWant = 0
		Do(t, s, a)
	}
	type key struct {
		h    int
		addr netip.AddrPort
	}
	type state struct {
		left    int64
		counted bool
	}
	finals := make([]map[key]state, workers)
	completions := make([][torrents]uint32, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers+2)
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			mine := map[key]state{}
			// Peers that stopped after their completion was counted: the
			// store remembers them, and does not count them again.
			left := map[key]bool{}
			var resp bittorrent.AnnounceResponse
			for i := range ops {
				h := rng.IntN(torrents)
				addr := Addr4(w*1000+rng.IntN(own), 6881)
				a := Announce(Hash(h), PeerID(w), addr, int64(2+i))
				a.Event = bittorrent.Event(rng.IntN(4))
				a.Left = int64(rng.IntN(3)-1) * 100 // -100 (unknown) is a leecher
				a.NumWant = rng.IntN(30)
				resp.Reset()
				res, err := s.Announce(ctx, &a, &resp)
				if err != nil {
					errs <- err
					return
				}
				k := key{h, addr}
				st, had := mine[k]
				wantCounted := false
				if a.Event == bittorrent.EventStopped {
					if had && st.counted {
						left[k] = true
					}
					delete(mine, k)
				} else {
					if !had {
						st = state{}
					}
					st.left = a.Left
					if a.Event == bittorrent.EventCompleted && !st.counted {
						st.counted = true
						if left[k] {
							delete(left, k)
						} else {
							wantCounted = true
							completions[w][h]++
						}
					}
					mine[k] = st
				}
				if res.CountedCompletion != wantCounted {
					errs <- fmt.Errorf("worker %d op %d: counted %v, want %v", w, i, res.CountedCompletion, wantCounted)
					return
				}
				for _, p := range append(resp.Peers4, resp.Peers6...) {
					if p.Addr == addr {
						errs <- fmt.Errorf("worker %d op %d: handed itself", w, i)
						return
					}
				}
				if i%10 == 0 {
					if _, err := s.Scrape(ctx, []bittorrent.InfoHash{Hash(h), Hash(h + 1)}, nil); err != nil {
						errs <- err
						return
					}
				}
			}
			finals[w] = mine
		}()
	}
	var swept swarm.SweepResult
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := s.Sweep(ctx, 1)
			if err != nil {
				errs <- err
				return
			}
			swept.Peers += r.Peers
			swept.Torrents += r.Torrents
			if _, err := s.Totals(ctx); err != nil {
				errs <- err
				return
			}
			if _, err := s.Torrents(ctx, 3, 5); err != nil {
				errs <- err
				return
			}
			if _, _, err := s.Torrent(ctx, Hash(3)); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := sweep(t, s, 1)
	swept.Peers += r.Peers
	if swept.Peers != stale {
		t.Errorf("sweeps removed %d peers, want the %d stale ones", swept.Peers, stale)
	}
	var want [torrents]bittorrent.SwarmStats
	var wantTot swarm.Totals
	for w := range workers {
		for k, st := range finals[w] {
			if bittorrent.Complete(st.left) {
				want[k.h].Seeders++
			} else {
				want[k.h].Leechers++
			}
		}
		for h, c := range completions[w] {
			want[h].Completed += c
		}
	}
	hashes := make([]bittorrent.InfoHash, torrents)
	for h := range torrents {
		hashes[h] = Hash(h)
		st := want[h]
		if st != (bittorrent.SwarmStats{}) {
			wantTot.Torrents++
		}
		wantTot.Seeders += uint64(st.Seeders)
		wantTot.Leechers += uint64(st.Leechers)
		wantTot.Completed += uint64(st.Completed)
	}
	out, err := s.Scrape(ctx, hashes, nil)
	if err != nil {
		t.Fatal(err)
	}
	for h := range torrents {
		if out[h] != want[h] {
			t.Errorf("torrent %d: scrape %+v, want %+v", h, out[h], want[h])
		}
	}
	if got := totals(t, s); got != wantTot {
		t.Errorf("totals %+v, want %+v", got, wantTot)
	}
}
