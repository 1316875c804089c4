package memswarm

import (
	"fmt"
	"net/netip"
	"runtime"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

var _ swarm.Dumper = (*Store)(nil)

// dumpBudget is about how many peers Dump copies under one shard lock
// before it lets announces in again (a torrent is never split, so one
// larger swarm is copied in one hold).
const dumpBudget = 4096

// Dump copies a shard's torrents a budget's worth at a time under its lock
// and calls fn for each one outside it. A torrent is visited once, by its
// slot: one created during the dump may be missed, as may peers that
// arrive after their swarm was copied, which a snapshot taken while
// serving cannot avoid.
func (s *Store) Dump(fn func(*swarm.TorrentDump) error) error {
	s.dumps.Add(1)
	defer s.dumps.Add(-1)
	var batch []swarm.TorrentDump
	var peers []swarm.PeerDump
	var ends []int
	for k := range s.shards {
		sh := &s.shards[k]
		for i, more := 0, true; more; {
			batch, peers, ends = batch[:0], peers[:0], ends[:0]
			i, more = s.dumpStep(sh, i, &batch, &peers, &ends)
			runtime.Gosched() // as in Sweep: let request handlers in
			// Cut from peers only now: appends may have moved it.
			for b := range batch {
				from := 0
				if b > 0 {
					from = ends[b-1]
				}
				batch[b].Peers = peers[from:ends[b]:ends[b]]
				if err := fn(&batch[b]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// dumpStep copies torrents of sh from slot i on until the budget is spent
// and returns the next slot and whether there are more. ends[b] is where
// the peers of batch[b] end in peers.
func (s *Store) dumpStep(sh *shard, i int, batch *[]swarm.TorrentDump, peers *[]swarm.PeerDump, ends *[]int) (int, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	budget := dumpBudget
	for ; i < len(sh.torrents) && budget > 0; i++ {
		t := &sh.torrents[i]
		if !t.live {
			continue
		}
		before := len(*peers)
		*peers = dumpFamily(&sh.p4, t.p4, *peers)
		*peers = dumpFamily(&sh.p6, t.p6, *peers)
		*batch = append(*batch, swarm.TorrentDump{InfoHash: t.hash, Completed: t.completed})
		*ends = append(*ends, len(*peers))
		budget -= 1 + len(*peers) - before
	}
	return i, i < len(sh.torrents)
}

func dumpFamily[A addr](sl *slab[A], sg seg, out []swarm.PeerDump) []swarm.PeerDump {
	for i := 0; i < int(sg.n); {
		run := sl.span(sg, i)
		for k := range run {
			p := &run[k]
			out = append(out, swarm.PeerDump{PeerInfo: info(p, addrOf(&p.ip)), Counted: p.counted})
		}
		i += len(run)
	}
	return out
}

// Restore adds d's peers as they were stored. It goes through update, as
// an announce does, so counts, order and big-swarm indexes stay right; the
// peer's event and counted flag are then set as they were, without
// counting a completion.
func (s *Store) Restore(d *swarm.TorrentDump) error {
	sh := s.shard(&d.InfoHash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t, ok := sh.get(&d.InfoHash)
	if !ok {
		if len(d.Peers) == 0 && d.Completed == 0 {
			return nil
		}
		t = sh.add(&d.InfoHash)
	}
	// Room for every peer first: a swarm grown one peer at a time is
	// copied into a larger segment at each size class.
	var n4, n6 uint32
	for k := range d.Peers {
		if d.Peers[k].Addr.Addr().Unmap().Is4() {
			n4++
		} else {
			n6++
		}
	}
	reserve(&sh.p4, &t.p4, n4)
	reserve(&sh.p6, &t.p6, n6)
	var a swarm.Announce
	var res swarm.Result
	var unlimited error // a restore is not refused at the limits
	for k := range d.Peers {
		p := &d.Peers[k]
		ip := p.Addr.Addr().Unmap()
		port := p.Addr.Port()
		if !ip.IsValid() || port == 0 {
			return fmt.Errorf("torrent %s: peer %v cannot be stored", d.InfoHash, p.Addr)
		}
		a = swarm.Announce{InfoHash: d.InfoHash, PeerID: p.ID, Addr: netip.AddrPortFrom(ip, port),
			Uploaded: p.Uploaded, Downloaded: p.Downloaded, Left: p.Left, Now: p.Updated}
		if ip.Is4() {
			i := update(sh, &sh.p4, t, &t.p4, ip.As4(), port, true, &a, &res, &unlimited)
			restored(sh.p4.at(t.p4, i), p)
		} else {
			i := update(sh, &sh.p6, t, &t.p6, ip.As16(), port, true, &a, &res, &unlimited)
			restored(sh.p6.at(t.p6, i), p)
		}
	}
	if d.Completed > t.completed {
		sh.completed += uint64(d.Completed - t.completed)
		t.completed = d.Completed
	}
	return nil
}

// reserve grows sg so that more peers fit without moving it again (a
// segment at most a big segment's first block; more blocks are added as
// they fill, without a move).
func reserve[A addr](sl *slab[A], sg *seg, more uint32) {
	want := sg.n + more
	switch {
	case more == 0:
	case sg.cls == bigClass:
		if c := sl.big[sg.off].capacity(); want > c && c < blockLen {
			sl.move(sg, want)
		}
	case sg.cls == noClass || want > classSize[sg.cls]:
		sl.move(sg, want)
	}
}

func restored[A addr](r *peer[A], p *swarm.PeerDump) {
	r.event = p.Event
	if p.Event > bittorrent.EventCompleted {
		r.event = bittorrent.EventNone
	}
	r.counted = p.Counted
}
