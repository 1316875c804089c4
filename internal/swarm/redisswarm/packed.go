package redisswarm

import (
	"math/rand/v2"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// listSize is the address length of each list of a swarm: S4 L4 S6 L6.
var listSize = [4]int{6, 6, 18, 18}

// packedSwarm is a small swarm as the scripts keep it in one string (see
// packFormat), read in place: nothing is copied out of p.
type packedSwarm struct {
	completed, relayedS, relayedL uint32
	n                             [4]int
	start                         [4]int // offset of each list's first address
	recs                          int    // offset of the first record
	p                             string
}

func le32(p string, i int) uint32 {
	return uint32(p[i]) | uint32(p[i+1])<<8 | uint32(p[i+2])<<16 | uint32(p[i+3])<<24
}

// parsePacked checks that p is whole: its length is what its header says.
func parsePacked(p string) (packedSwarm, error) {
	var sw packedSwarm
	if len(p) < packHeader {
		return sw, errReply
	}
	sw.completed, sw.relayedS, sw.relayedL = le32(p, 0), le32(p, 4), le32(p, 8)
	off := packHeader
	total := 0
	for k := range 4 {
		sw.n[k] = int(p[12+2*k]) | int(p[13+2*k])<<8
		sw.start[k] = off
		off += sw.n[k] * listSize[k]
		total += sw.n[k]
	}
	sw.recs = off
	if len(p) != off+5*total {
		return sw, errReply
	}
	sw.p = p
	return sw, nil
}

// addr is the j-th address of list k.
func (sw *packedSwarm) addr(k, j int) string {
	o := sw.start[k] + j*listSize[k]
	return sw.p[o : o+listSize[k]]
}

// record is the store time of the j-th peer of list k, and whether its
// completion counted.
func (sw *packedSwarm) record(k, j int) (ts int64, counted bool) {
	i := j
	for l := range k {
		i += sw.n[l]
	}
	o := sw.recs + 5*i
	return int64(int32(le32(sw.p, o))), sw.p[o+4] == 1
}

// packedReply decodes the reply of an announce to a packed swarm, P and
// rest: {selfk, counted[, details]}, or nothing after packedFast, which
// returns P alone (no table to build), and draws the sample from P on
// the node, as the script's draw would on Redis: the same lists, numwant
// at most, never the requester, each other peer equally likely.
func packedReply(pm *rueidis.RedisMessage, rest []rueidis.RedisMessage, a *swarm.Announce, resp *bittorrent.AnnounceResponse) (swarm.Result, error) {
	p, err := pm.ToString()
	if err != nil {
		return swarm.Result{}, errReply
	}
	var counted int64
	if len(rest) > 0 {
		if counted, err = rest[1].AsInt64(); err != nil || counted < 0 || counted > 1 {
			return swarm.Result{}, errReply
		}
	}
	sw, err := parsePacked(p)
	if err != nil {
		return swarm.Result{}, err
	}
	var details []rueidis.RedisMessage
	if len(rest) == 3 {
		if details, err = rest[2].ToArray(); err != nil {
			return swarm.Result{}, errReply
		}
	}
	sw.fill(a, resp, details)
	return swarm.Result{Completed: sw.completed, CountedCompletion: counted == 1}, nil
}

// fill answers a from the swarm: the counts and the sample, in the form
// a asked for. details are the swarm's HGETALL (address, detail pairs)
// for the peer ids of the non-compact form.
func (sw *packedSwarm) fill(a *swarm.Announce, resp *bittorrent.AnnounceResponse, details []rueidis.RedisMessage) {
	resp.Seeders = uint32(sw.n[0]+sw.n[2]) + sw.relayedS
	resp.Leechers = uint32(sw.n[1]+sw.n[3]) + sw.relayedL
	if a.NumWant <= 0 {
		return
	}
	// The lists drawn from, as the script's draw picks them: the wanted
	// families' leechers for a seeder that has any, else their seeders
	// and leechers.
	v4, v6 := a.Families&bittorrent.IPv4 != 0, a.Families&bittorrent.IPv6 != 0
	use := [4]bool{false, v4 && sw.n[1] > 0, false, v6 && sw.n[3] > 0}
	if !bittorrent.Complete(a.Left) || !use[1] && !use[3] {
		use[0], use[2] = v4 && sw.n[0] > 0, v6 && sw.n[2] > 0
	}
	var self [18]byte
	selfLen := 6
	if ip := a.Addr.Addr(); ip.Is4() {
		v := ip.As4()
		copy(self[:], v[:])
	} else {
		v := ip.As16()
		copy(self[:], v[:])
		selfLen = 18
	}
	self[selfLen-2], self[selfLen-1] = byte(a.Addr.Port()>>8), byte(a.Addr.Port())
	// The requester is skipped where it is stored (at most once).
	skipK, skipJ, m := -1, -1, 0
	for k := range 4 {
		if !use[k] {
			continue
		}
		m += sw.n[k]
		if listSize[k] != selfLen || skipK >= 0 {
			continue
		}
		for j := range sw.n[k] {
			if sw.addr(k, j) == string(self[:selfLen]) {
				skipK, skipJ = k, j
				m--
				break
			}
		}
	}
	need := min(a.NumWant, m)
	n4, n6 := len(resp.Compact4), len(resp.Compact6)
	p4, p6 := len(resp.Peers4), len(resp.Peers6)
	// Selection sampling (Knuth's algorithm S): each candidate is taken
	// with probability need/left, which draws need of the m uniformly,
	// in one pass and with no memory; the shuffle after mixes the order.
	left := m
	for k := range 4 {
		if !use[k] {
			continue
		}
		for j := 0; j < sw.n[k] && need > 0; j++ {
			if k == skipK && j == skipJ {
				continue
			}
			if left > need && rand.IntN(left) >= need {
				left--
				continue
			}
			left--
			need--
			addr := sw.addr(k, j)
			switch {
			case a.Compact && k < 2:
				resp.Compact4 = append(resp.Compact4, addr...)
			case a.Compact:
				resp.Compact6 = append(resp.Compact6, addr...)
			default:
				ap, _ := parseAddr(addr)
				peer := bittorrent.Peer{Addr: ap}
				if d := detailOf(details, addr); len(d) >= 20 {
					copy(peer.ID[:], d[:20])
				}
				if k < 2 {
					resp.Peers4 = append(resp.Peers4, peer)
				} else {
					resp.Peers6 = append(resp.Peers6, peer)
				}
			}
		}
	}
	if a.Compact {
		shuffle(resp.Compact4[n4:], 6)
		shuffle(resp.Compact6[n6:], 18)
		return
	}
	shufflePeers(resp.Peers4[p4:])
	shufflePeers(resp.Peers6[p6:])
}

// detailOf finds addr's detail in HGETALL's pairs ("" when absent).
func detailOf(details []rueidis.RedisMessage, addr string) string {
	for i := 0; i+1 < len(details); i += 2 {
		if k, err := details[i].ToString(); err == nil && k == addr {
			v, _ := details[i+1].ToString()
			return v
		}
	}
	return ""
}
