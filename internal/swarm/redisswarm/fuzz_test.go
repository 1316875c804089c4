package redisswarm

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// FuzzReply checks the announce script's reply as the store reads it: a
// malformed one is refused, never a panic; an accepted one gives whole
// peers, as many as the reply packs, with their ids, in either form.
func FuzzReply(f *testing.F) {
	v4 := "\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x1a\xe1"
	v6 := strings.Repeat("\xfd", 16) + "\x1a\xe1"
	pid := swarmtest.PeerID(1)
	id := string(pid[:])
	f.Add(int64(1), int64(2), int64(3), int64(1), v4, v6, id+id+id, int64(0))
	f.Add(int64(0), int64(0), int64(0), int64(0), "", "", "", int64(0))
	f.Add(int64(1), int64(0), int64(0), int64(2), v4, "", "", int64(6))
	f.Add(int64(1), int64(0), int64(0), int64(0), v4[:5], "", "", int64(0))
	f.Add(int64(1), int64(0), int64(0), int64(0), v4, v6, id, int64(12))
	f.Add(int64(1), int64(0), int64(0), int64(0), v4, v6, id+id+id, int64(18))
	f.Fuzz(func(t *testing.T, s, l, c, counted int64, p4, p6, ids string, own int64) {
		var rep reply
		if err := rep.set([4]int64{s, l, c, counted}, [3]string{p4, p6, ids}, own); err != nil {
			if !errors.Is(err, errReply) {
				t.Fatalf("error %v, want errReply", err)
			}
			return
		}
		n4, n6 := len(p4)/6, len(p6)/18
		// The requester (an IPv4 peer not in the reply) drops one of its
		// own list's records, when the reply says it has any.
		if own >= 6 && len(p4) >= 6 {
			n4--
		}
		for _, compact := range []bool{true, false} {
			a := swarm.Announce{Compact: compact, Addr: swarmtest.Addr4(99, 1)}
			var resp bittorrent.AnnounceResponse
			res := rep.fill(&a, &resp)
			if res.CountedCompletion != (counted == 1) || resp.Seeders != uint32(s) || resp.Leechers != uint32(l) {
				t.Fatalf("result %+v, counts %d/%d from %d %d %d %d", res, resp.Seeders, resp.Leechers, s, l, c, counted)
			}
			got4, got6 := swarmtest.Peers(&resp)
			if len(got4) != n4 || len(got6) != n6 {
				t.Fatalf("compact %v: %d+%d peers from %d+%d packed", compact, len(got4), len(got6), n4, n6)
			}
			if compact {
				swarmtest.CheckForm(t, &a, &resp)
				continue
			}
			// Without the compact form every peer carries its id.
			if ids != "" {
				want := map[string]int{}
				for i := 0; i < len(ids); i += 20 {
					want[ids[i:i+20]]++
				}
				for _, p := range slices.Concat(got4, got6) {
					if want[string(p.ID[:])] == 0 {
						t.Fatalf("peer %v has id %x, not one of the reply's", p.Addr, p.ID)
					}
					want[string(p.ID[:])]--
				}
			}
		}
	})
}
