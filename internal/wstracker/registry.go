package wstracker

import (
	"errors"
	"math/rand/v2"
	"sync"
)

// The registry keeps the WebSocket peers of every swarm with their
// connections, and the offers relayed that still wait for an answer. It is
// sharded by info hash; a shard's lock is taken before a connection's own
// (never the other way round).

const regShards = 64

// Refusals of the registry, as the client reads them.
var (
	errPeerIDInUse = errors.New("peer_id is in use by another connection for this torrent")
	errNoOffer     = errors.New("Could not find the offer corresponding to your answer. It may have expired.")
	errTooMany     = errors.New("too many peers on one connection")
)

type registry struct {
	shards [regShards]regShard
}

type regShard struct {
	mu     sync.Mutex
	swarms map[id]*wsSwarm
	_      [40]byte // keeps two shards' locks off one cache line
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].swarms = make(map[id]*wsSwarm)
	}
	return r
}

func (r *registry) shard(h *id) *regShard {
	return &r.shards[h[0]%regShards]
}

type wsSwarm struct {
	members []*member // in no order; member.pos is the index
	byID    map[id]*member
	offers  map[offerKey]pendingOffer
}

// member is a WebSocket peer: the connection that first announced its
// peer id in this swarm owns it until it leaves.
type member struct {
	c       *conn
	id      id
	seeder  bool
	counted bool // its completion was counted
	updated int64
	pos     int
}

// offerKey names a relayed offer by its id and the peer it went to: an
// offer id is the offerer's, and one offer goes to one peer.
type offerKey struct{ offer, to id }

type pendingOffer struct {
	from    *conn
	fromID  id
	to      *conn
	expires int64 // unix nanoseconds
}

// target is one peer an announce's offer goes to.
type target struct {
	c     *conn
	offer int // index in the request's offers
}

// peerKey is one peer of a connection: a torrent and the peer id.
type peerKey struct{ hash, peer id }

// leaving is a peer that left its swarm, for the store's counts.
type leaving struct {
	hash   id
	seeder bool
}

// change is what an announce changed in the counts.
type change struct {
	seeders, leechers int32
	completed         bool
}

func (ch *change) add(seeder bool, d int32) {
	if seeder {
		ch.seeders += d
	} else {
		ch.leechers += d
	}
}

func (sw *wsSwarm) remove(m *member) {
	last := sw.members[len(sw.members)-1]
	sw.members[m.pos] = last
	last.pos = m.pos
	sw.members[len(sw.members)-1] = nil
	sw.members = sw.members[:len(sw.members)-1]
	delete(sw.byID, m.id)
}

func (sw *wsSwarm) empty() bool { return len(sw.members) == 0 && len(sw.offers) == 0 }

// announce records c's peer (or removes it on stopped) and picks the peers
// the announce's offers go to, recording each offer for its answer. A
// connection may hold several peers of one torrent (two clients of one
// page share the socket), each peer id bound to it.
func (r *registry) announce(c *conn, q *request, now int64, cfg *Config) (change, []target, error) {
	var ch change
	h := q.infoHash
	pk := peerKey{h, q.peerID}
	sh := r.shard(&h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[h]
	m := swarmMember(sw, q.peerID)
	if m != nil && m.c != c {
		return ch, nil, errPeerIDInUse
	}
	if q.event == eventStopped {
		if m != nil {
			sw.remove(m)
			ch.add(m.seeder, -1)
			c.mu.Lock()
			delete(c.peers, pk)
			c.mu.Unlock()
			if sw.empty() {
				delete(sh.swarms, h)
			}
		}
		return ch, nil, nil
	}
	seeder := q.left == 0
	if m == nil {
		c.mu.Lock()
		n := len(c.peers)
		if n < cfg.MaxPeersPerConnection {
			if c.peers == nil {
				c.peers = make(map[peerKey]struct{}, 1)
			}
			c.peers[pk] = struct{}{}
		}
		c.mu.Unlock()
		if n >= cfg.MaxPeersPerConnection {
			return ch, nil, errTooMany
		}
		if sw == nil {
			sw = &wsSwarm{byID: make(map[id]*member), offers: make(map[offerKey]pendingOffer)}
			sh.swarms[h] = sw
		}
		m = &member{c: c, id: q.peerID, seeder: seeder, pos: len(sw.members)}
		sw.members = append(sw.members, m)
		sw.byID[q.peerID] = m
		ch.add(seeder, 1)
	} else if m.seeder != seeder {
		ch.add(m.seeder, -1)
		ch.add(seeder, 1)
		m.seeder = seeder
	}
	m.updated = now
	if q.event == eventCompleted && !m.counted {
		m.counted = true
		ch.completed = true
	}
	k := min(len(q.offers), len(sw.members)-1, cfg.MaxPendingOffers-int(c.pending.Load()))
	if k <= 0 {
		return ch, nil, nil
	}
	q.picked = pick(q.picked[:0], sw.members, m, k)
	expires := now + cfg.OfferTTL.Nanoseconds()
	out := q.targets[:0]
	for i, t := range q.picked {
		key := offerKey{q.offers[i].id, t.id}
		if _, dup := sw.offers[key]; !dup {
			c.pending.Add(1)
		}
		sw.offers[key] = pendingOffer{from: c, fromID: q.peerID, to: t.c, expires: expires}
		out = append(out, target{c: t.c, offer: i})
	}
	q.targets = out
	return ch, out, nil
}

func swarmMember(sw *wsSwarm, pid id) *member {
	if sw == nil {
		return nil
	}
	return sw.byID[pid]
}

// pick draws k distinct members other than self, at random (k is small:
// at most MaxOffers, and below len(members)), appending them to out.
func pick(out []*member, members []*member, self *member, k int) []*member {
	if k >= len(members)-1 {
		for _, m := range members {
			if m != self {
				out = append(out, m)
			}
		}
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out[:k]
	}
	// Rejection sampling: k is at most a tenth... of a swarm larger than
	// k+1, so few draws repeat.
	for len(out) < k {
		m := members[rand.IntN(len(members))]
		if m == self || contains(out, m) {
			continue
		}
		out = append(out, m)
	}
	return out
}

func contains(ms []*member, m *member) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// answer finds the offer q answers and returns the connection of the peer
// that made it; the offer is used up. The answer must come from the
// connection the offer went to, under the peer id it went to, and name the
// offerer, who must still be in the swarm on the same connection.
func (r *registry) answer(c *conn, q *request, now int64) (*conn, error) {
	h := q.infoHash
	sh := r.shard(&h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[h]
	if sw == nil {
		return nil, errNoOffer
	}
	key := offerKey{q.offerID, q.peerID}
	p, ok := sw.offers[key]
	if !ok || p.to != c || p.fromID != q.toPeerID {
		return nil, errNoOffer
	}
	delete(sw.offers, key)
	p.from.pending.Add(-1)
	if p.expires <= now {
		return nil, errNoOffer
	}
	if m := sw.byID[q.toPeerID]; m == nil || m.c != p.from {
		return nil, errNoOffer
	}
	return p.from, nil
}

// removeConn takes every peer of c out of its swarm.
func (r *registry) removeConn(c *conn) []leaving {
	c.mu.Lock()
	ps := c.peers
	c.peers = nil
	c.mu.Unlock()
	var gone []leaving
	for pk := range ps {
		h, pid := pk.hash, pk.peer
		sh := r.shard(&h)
		sh.mu.Lock()
		if sw := sh.swarms[h]; sw != nil {
			if m := sw.byID[pid]; m != nil && m.c == c {
				sw.remove(m)
				gone = append(gone, leaving{h, m.seeder})
			}
			if sw.empty() {
				delete(sh.swarms, h)
			}
		}
		sh.mu.Unlock()
	}
	return gone
}

// sweep drops offers that expired by now and peers last announced at or
// before cutoff (unix nanoseconds), and returns the peers that left.
func (r *registry) sweep(now, cutoff int64) []leaving {
	var gone []leaving
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for h, sw := range sh.swarms {
			for k, p := range sw.offers {
				if p.expires <= now {
					delete(sw.offers, k)
					p.from.pending.Add(-1)
				}
			}
			for j := 0; j < len(sw.members); {
				m := sw.members[j]
				if m.updated > cutoff {
					j++
					continue
				}
				sw.remove(m)
				gone = append(gone, leaving{h, m.seeder})
				m.c.mu.Lock()
				delete(m.c.peers, peerKey{h, m.id})
				m.c.mu.Unlock()
			}
			if sw.empty() {
				delete(sh.swarms, h)
			}
		}
		sh.mu.Unlock()
	}
	return gone
}

// hashes lists up to limit info hashes of swarms with WebSocket peers.
func (r *registry) hashes(limit int) []id {
	var out []id
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for h, sw := range sh.swarms {
			if len(out) == limit {
				break
			}
			if len(sw.members) > 0 {
				out = append(out, h)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// peers is the number of WebSocket peers of a swarm (for tests).
func (r *registry) peers(h id) int {
	sh := r.shard(&h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sw := sh.swarms[h]; sw != nil {
		return len(sw.members)
	}
	return 0
}
