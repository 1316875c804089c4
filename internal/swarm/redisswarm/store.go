package redisswarm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

var (
	_ swarm.Store        = (*Store)(nil)
	_ swarm.RelayCounter = (*Store)(nil)
	_ swarm.PeerDetailer = (*Store)(nil)
	_ swarm.Remote       = (*Store)(nil)
)

// Remote is true: every call is a round trip to Redis (swarm.Remote).
func (s *Store) Remote() bool { return true }

// PeerDetail is false with Config.NoPeerDetail: peers carry no id,
// uploaded, downloaded or event.
func (s *Store) PeerDetail() bool { return !s.cfg.NoPeerDetail }

// swarmSuffixes name a swarm's keys after the info hash, and bucketKeys a
// bucket's after its tag, in script order (see swarmKeys).
var (
	swarmSuffixes = [6]string{"S4", "L4", "S6", "L6", "D", "G"}
	bucketNames   = [3]string{"h", "n", "x"}
)

// detailLen is a peer's stored detail: peer_id, uploaded, downloaded,
// left, event.
const detailLen = 20 + 8 + 8 + 8 + 1

// callBuf holds one call's keys and arguments. They are strings that
// point into arena (no copy per key); the buffer goes back to the pool
// only after Redis answered, since a call that timed out may still be
// written to the connection later.
type callBuf struct {
	arena []byte
	keys  [swarmKeys]string
	args  [13]string
}

// str appends b to the arena and returns it as a string without a copy;
// the arena never grows past its capacity while strings point into it.
func (c *callBuf) str(b ...[]byte) string {
	start := len(c.arena)
	for _, p := range b {
		c.arena = append(c.arena, p...)
	}
	if len(c.arena) == start {
		return ""
	}
	return unsafe.String(&c.arena[start], len(c.arena)-start)
}

func (c *callBuf) num(v int64) string {
	start := len(c.arena)
	c.arena = strconv.AppendInt(c.arena, v, 10)
	return unsafe.String(&c.arena[start], len(c.arena)-start)
}

func (s *Store) getBuf() *callBuf {
	b := s.bufs.Get().(*callBuf)
	b.arena = b.arena[:0]
	return b
}

// tag appends the bucket's key prefix, "<prefix>{<bucket in hex>}", to dst.
func (s *Store) tag(dst []byte, h *bittorrent.InfoHash) []byte {
	b := uint32(binary.BigEndian.Uint16(h[:2]))<<8 | uint32(h[2])
	b >>= 24 - s.bits
	dst = append(dst, s.cfg.Prefix...)
	dst = append(dst, '{')
	const hex = "0123456789abcdef"
	for i := s.width - 1; i >= 0; i-- {
		dst = append(dst, hex[b>>(4*uint(i))&15])
	}
	return append(dst, '}')
}

func (s *Store) bucketTag(dst []byte, bucket int) []byte {
	var h bittorrent.InfoHash
	v := uint32(bucket) << (24 - s.bits)
	h[0], h[1], h[2] = byte(v>>16), byte(v>>8), byte(v)
	return s.tag(dst, &h)
}

// swarmKeys fills the call's keys for the swarm of h.
func (s *Store) fillKeys(c *callBuf, h *bittorrent.InfoHash) []string {
	start := len(c.arena)
	c.arena = s.tag(c.arena, h)
	tag := c.arena[start:]
	tagLen := len(tag)
	for i, suf := range swarmSuffixes {
		st := len(c.arena)
		c.arena = append(c.arena, c.arena[start:start+tagLen]...)
		c.arena = append(c.arena, h[:]...)
		c.arena = append(c.arena, suf...)
		c.keys[i] = unsafe.String(&c.arena[st], len(c.arena)-st)
	}
	for i, n := range bucketNames {
		st := len(c.arena)
		c.arena = append(c.arena, c.arena[start:start+tagLen]...)
		c.arena = append(c.arena, n...)
		c.keys[6+i] = unsafe.String(&c.arena[st], len(c.arena)-st)
	}
	st := len(c.arena)
	c.arena = append(c.arena, c.arena[start:start+tagLen]...)
	c.arena = append(c.arena, h[:]...)
	c.arena = append(c.arena, 'P')
	c.keys[9] = unsafe.String(&c.arena[st], len(c.arena)-st)
	return c.keys[:]
}

// Announce applies a and draws the sample in one script call.
func (s *Store) Announce(ctx context.Context, a *swarm.Announce, resp *bittorrent.AnnounceResponse) (swarm.Result, error) {
	c, err := s.begin(opAnnounce)
	if err != nil {
		return swarm.Result{}, err
	}
	start := time.Now()
	b := s.getBuf()
	keys, args := s.fillAnnounce(b, a)
	cctx, cancel := callCtx(ctx, start, s.cfg.Timeout)
	r := s.announce.Exec(cctx, c, keys, args)
	cancel()
	res, err := s.announceReply(r, a, resp)
	s.end(opAnnounce, start, err)
	if err != nil {
		return swarm.Result{}, ErrUnavailable
	}
	s.bufs.Put(b)
	return res, nil
}

// callCtx bounds one call by the store's deadline, timeout after start,
// or by the caller's when that comes first. A caller's deadline at or
// before the store's is kept as it is, with no timer of the call's own:
// the UDP tracker gives each batch of requests one deadline, and a timer
// set and stopped per call (context.WithTimeout and its cancel) was 29 %
// of the node's time in a store call in perf (about 1.5 us an announce).
func callCtx(ctx context.Context, start time.Time, timeout time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && !dl.After(start.Add(timeout)) {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, timeout)
}

func noCancel() {}

// fillAnnounce writes the announce script's keys and arguments into b.
func (s *Store) fillAnnounce(b *callBuf, a *swarm.Announce) (keys, args []string) {
	keys = s.fillKeys(b, &a.InfoHash)
	ip := a.Addr.Addr()
	var ab [18]byte
	var addr []byte
	fam := "4"
	if ip.Is4() {
		v := ip.As4()
		copy(ab[:], v[:])
		binary.BigEndian.PutUint16(ab[4:], a.Addr.Port())
		addr = ab[:6]
	} else {
		v := ip.As16()
		copy(ab[:], v[:])
		binary.BigEndian.PutUint16(ab[16:], a.Addr.Port())
		addr = ab[:18]
		fam = "6"
	}
	what := "n"
	switch {
	case a.Addr.Port() != 0 && a.Event != bittorrent.EventStopped:
		what = "k"
	case a.Addr.Port() != 0:
		what = "s"
	case a.Event == bittorrent.EventCompleted:
		what = "z"
	}
	var d [detailLen]byte
	copy(d[:20], a.PeerID[:])
	binary.BigEndian.PutUint64(d[20:], uint64(a.Uploaded))
	binary.BigEndian.PutUint64(d[28:], uint64(a.Downloaded))
	binary.BigEndian.PutUint64(d[36:], uint64(a.Left))
	d[44] = byte(a.Event)
	seed := a.Sample
	if seed == 0 {
		seed = rand.Uint64()
	}
	args = b.args[:4]
	args[0] = b.str(a.InfoHash[:])
	args[1] = b.str(addr)
	args[2] = ""
	if !s.cfg.NoPeerDetail {
		args[2] = b.str(d[:])
	}
	// The rest as announceFormat packs it.
	var h [24]byte
	h[0] = fam[0]
	h[1] = what[0]
	h[2] = boolByte(bittorrent.Complete(a.Left))
	h[3] = boolByte(a.Event == bittorrent.EventCompleted)
	h[4] = byte(a.Families)
	h[5] = s.opts[0] - '0'
	h[6] = boolByte(!a.Compact && a.NumWant > 0)
	if s.cfg.AnnounceClock {
		h[7] = 1
		binary.LittleEndian.PutUint64(h[16:], uint64(a.Now-epoch))
	} else if now, ok := s.redisNow(); ok {
		h[7] = 1
		binary.LittleEndian.PutUint64(h[16:], uint64(now))
	}
	binary.LittleEndian.PutUint32(h[8:], uint32(min(max(a.NumWant, 0), 1<<20)))
	binary.LittleEndian.PutUint32(h[12:], uint32(seed>>33))
	args[3] = b.str(h[:])
	return keys, args
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func boolArg(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// announceReply decodes the script's reply into resp.
func (s *Store) announceReply(r rueidis.RedisResult, a *swarm.Announce, resp *bittorrent.AnnounceResponse) (swarm.Result, error) {
	m, err := r.ToMessage()
	if err != nil {
		return swarm.Result{}, err
	}
	if m.IsString() {
		// packedFast's reply: P alone.
		return packedReply(&m, nil, a, resp)
	}
	arr, err := m.ToArray()
	if err != nil {
		return swarm.Result{}, err
	}
	if len(arr) == 3 || len(arr) == 4 {
		return packedReply(&arr[0], arr[1:], a, resp)
	}
	var rep reply
	if err := rep.decode(arr); err != nil {
		return swarm.Result{}, err
	}
	return rep.fill(a, resp), nil
}

// fill puts the decoded reply into resp, without the requester, shuffled,
// in the form a asked for.
func (rep *reply) fill(a *swarm.Announce, resp *bittorrent.AnnounceResponse) swarm.Result {
	resp.Seeders, resp.Leechers = uint32(rep.seeders), uint32(rep.leechers)
	res := swarm.Result{Completed: uint32(rep.completed), CountedCompletion: rep.counted}
	var self [18]byte
	own4, own6 := 0, 0
	if ip := a.Addr.Addr(); ip.Is4() {
		v := ip.As4()
		copy(self[:], v[:])
		binary.BigEndian.PutUint16(self[4:], a.Addr.Port())
		own4 = min(rep.own, len(rep.v4)) / 6
	} else {
		v := ip.As16()
		copy(self[:], v[:])
		binary.BigEndian.PutUint16(self[16:], a.Addr.Port())
		own6 = min(rep.own, len(rep.v6)) / 18
	}
	if a.Compact {
		n := len(resp.Compact4)
		resp.Compact4 = append(resp.Compact4, rep.v4...)
		resp.Compact4 = dropOwn(resp.Compact4, n, own4, 6, self[:6])
		shuffle(resp.Compact4[n:], 6)
		n = len(resp.Compact6)
		resp.Compact6 = append(resp.Compact6, rep.v6...)
		resp.Compact6 = dropOwn(resp.Compact6, n, own6, 18, self[:])
		shuffle(resp.Compact6[n:], 18)
		return res
	}
	ids := rep.ids
	n := len(resp.Peers4)
	for p := rep.v4; len(p) >= 6; p = p[6:] {
		var id bittorrent.PeerID
		if len(ids) >= 20 {
			copy(id[:], ids[:20])
			ids = ids[20:]
		}
		addr, _ := parseAddr(p[:6])
		resp.Peers4 = append(resp.Peers4, bittorrent.Peer{ID: id, Addr: addr})
	}
	resp.Peers4 = dropOwnPeer(resp.Peers4, n, own4, a.Addr)
	shufflePeers(resp.Peers4[n:])
	n = len(resp.Peers6)
	for p := rep.v6; len(p) >= 18; p = p[18:] {
		var id bittorrent.PeerID
		if len(ids) >= 20 {
			copy(id[:], ids[:20])
			ids = ids[20:]
		}
		addr, _ := parseAddr(p[:18])
		resp.Peers6 = append(resp.Peers6, bittorrent.Peer{ID: id, Addr: addr})
	}
	resp.Peers6 = dropOwnPeer(resp.Peers6, n, own6, a.Addr)
	shufflePeers(resp.Peers6[n:])
	return res
}

// dropOwn removes one record from the own records after p[:from]: the
// requester when it was drawn, else a random one (the script drew one
// more from the requester's own list). The last record takes its place;
// the shuffle after puts them in order.
func dropOwn(p []byte, from, own, size int, self []byte) []byte {
	if own == 0 {
		return p
	}
	j := rand.IntN(own)
	for i := range own {
		if r := p[from+i*size : from+(i+1)*size]; string(r) == string(self) {
			j = i
			break
		}
	}
	last := len(p) - size
	copy(p[from+j*size:], p[last:])
	return p[:last]
}

func dropOwnPeer(p []bittorrent.Peer, from, own int, self netip.AddrPort) []bittorrent.Peer {
	if own == 0 {
		return p
	}
	j := rand.IntN(own)
	for i := range own {
		if p[from+i].Addr == self {
			j = i
			break
		}
	}
	p[from+j] = p[len(p)-1]
	return p[:len(p)-1]
}

// reply is the announce script's answer.
type reply struct {
	seeders, leechers, completed int64
	counted                      bool
	v4, v6, ids                  string
	own                          int // bytes of the requester's own list, first in its family
}

var errReply = errors.New("redis swarm store: malformed script reply")

func (r *reply) decode(arr []rueidis.RedisMessage) error {
	if len(arr) != 8 {
		return errReply
	}
	var nums [4]int64
	for i := range nums {
		v, err := arr[i].AsInt64()
		if err != nil || v < 0 || v > 1<<32-1 {
			return errReply
		}
		nums[i] = v
	}
	var strs [3]string
	for i := range strs {
		v, err := arr[4+i].ToString()
		if err != nil {
			return errReply
		}
		strs[i] = v
	}
	own, err := arr[7].AsInt64()
	if err != nil {
		return errReply
	}
	return r.set(nums, strs, own)
}

// set checks and keeps the decoded fields (split from decode for the
// fuzz test, which has no RedisMessage to build).
func (r *reply) set(nums [4]int64, strs [3]string, own int64) error {
	if nums[3] > 1 || len(strs[0])%6 != 0 || len(strs[1])%18 != 0 {
		return errReply
	}
	// The own records lie in one family: the requester's, which the
	// reply does not say, so both must hold them.
	if own < 0 || own%6 != 0 || own > int64(len(strs[0])) && own > int64(len(strs[1])) {
		return errReply
	}
	if strs[2] != "" && len(strs[2]) != 20*(len(strs[0])/6+len(strs[1])/18) {
		return errReply
	}
	r.seeders, r.leechers, r.completed, r.counted = nums[0], nums[1], nums[2], nums[3] == 1
	r.v4, r.v6, r.ids, r.own = strs[0], strs[1], strs[2], int(own)
	return nil
}

// shuffle permutes the size-byte records of p in place: ZRANDMEMBER's
// order is not random, and a client may use the first peers alone.
func shuffle(p []byte, size int) {
	n := len(p) / size
	var tmp [18]byte
	for i := n - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		if i != j {
			a, b := p[i*size:(i+1)*size], p[j*size:(j+1)*size]
			copy(tmp[:size], a)
			copy(a, b)
			copy(b, tmp[:size])
		}
	}
}

func shufflePeers(p []bittorrent.Peer) {
	rand.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
}

// Scrape reads the counts of hashes in one round trip.
func (s *Store) Scrape(ctx context.Context, hashes []bittorrent.InfoHash, out []bittorrent.SwarmStats) ([]bittorrent.SwarmStats, error) {
	if len(hashes) == 0 {
		return out, nil
	}
	c, err := s.begin(opScrape)
	if err != nil {
		return out, err
	}
	start := time.Now()
	cctx, cancel := callCtx(ctx, start, s.cfg.Timeout)
	stats, err := s.readStats(cctx, c, hashes)
	cancel()
	s.end(opScrape, start, err)
	if err != nil {
		return out, ErrUnavailable
	}
	for _, st := range stats {
		out = append(out, st.SwarmStats)
	}
	return out, nil
}

type swarmStats struct {
	exists bool
	bittorrent.SwarmStats
}

// readStats runs the stats script for every hash, pipelined.
func (s *Store) readStats(ctx context.Context, c rueidis.Client, hashes []bittorrent.InfoHash) ([]swarmStats, error) {
	// One arena, key list and argument list for all the calls: the
	// strings point into them and nothing is reused after.
	calls := make([]rueidis.LuaExec, len(hashes))
	b := &callBuf{arena: make([]byte, 0, len(hashes)*(swarmKeys*(len(s.cfg.Prefix)+s.width+24)+20))}
	keys := make([]string, 0, swarmKeys*len(hashes))
	args := make([]string, len(hashes))
	for i := range hashes {
		keys = append(keys, s.fillKeys(b, &hashes[i])...)
		args[i] = b.str(hashes[i][:])
		calls[i] = rueidis.LuaExec{Keys: keys[len(keys)-swarmKeys:], Args: args[i : i+1]}
	}
	rs := s.execMulti(ctx, c, s.stats, calls)
	out := make([]swarmStats, len(hashes))
	for i, r := range rs {
		v, err := r.AsIntSlice()
		if err != nil {
			return nil, err
		}
		if len(v) != 4 {
			return nil, errReply
		}
		out[i] = swarmStats{v[0] == 1, bittorrent.SwarmStats{Seeders: clamp32(v[1]), Completed: clamp32(v[3]), Leechers: clamp32(v[2])}}
	}
	return out, nil
}

func clamp32(v int64) uint32 { return uint32(min(max(v, 0), 1<<32-1)) }

// execMulti pipelines calls of one script; after NOSCRIPT (a restarted or
// flushed Redis) it loads the script on every node and tries once more.
func (s *Store) execMulti(ctx context.Context, c rueidis.Client, l *luaScript, calls []rueidis.LuaExec) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(calls))
	build := func() {
		for i, m := range calls {
			cmds[i] = c.B().Evalsha().Sha1(l.sha).Numkeys(int64(len(m.Keys))).Key(m.Keys...).Arg(m.Args...).Build()
		}
	}
	build()
	rs := c.DoMulti(ctx, cmds...)
	for _, r := range rs {
		if e, ok := rueidis.IsRedisErr(r.Error()); ok && e.IsNoScript() {
			return l.ExecMulti(ctx, c, calls...)
		}
	}
	return rs
}

// Torrent reads one swarm with its peers for the API.
func (s *Store) Torrent(ctx context.Context, h bittorrent.InfoHash) (swarm.Torrent, bool, error) {
	c, err := s.begin(opTorrent)
	if err != nil {
		return swarm.Torrent{}, false, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	t, ok, err := s.torrent(ctx, c, h)
	s.end(opTorrent, start, err)
	return t, ok, err
}

func (s *Store) torrent(ctx context.Context, c rueidis.Client, h bittorrent.InfoHash) (swarm.Torrent, bool, error) {
	b := &callBuf{arena: make([]byte, 0, 512)}
	keys := s.fillKeys(b, &h)
	ih := string(h[:])
	cmds := rueidis.Commands{
		c.B().Hget().Key(keys[6]).Field(ih).Build(),
		c.B().Hgetall().Key(keys[4]).Build(),
	}
	for i := range 4 {
		cmds = append(cmds, c.B().Zrange().Key(keys[i]).Min("0").Max("-1").Withscores().Build())
	}
	cmds = append(cmds, c.B().Get().Key(keys[9]).Build())
	rs := c.DoMulti(ctx, cmds...)
	for _, r := range rs {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return swarm.Torrent{}, false, fmt.Errorf("redis swarm store: read torrent: %w", err)
		}
	}
	rec, err := rs[0].ToString()
	if rueidis.IsRedisNil(err) {
		return swarm.Torrent{}, false, nil
	}
	detail, _ := rs[1].AsStrMap()
	t := swarm.Torrent{TorrentSummary: swarm.TorrentSummary{InfoHash: h}}
	if p, err := rs[6].ToString(); err == nil {
		sw, err := parsePacked(p)
		if err != nil {
			return swarm.Torrent{}, false, fmt.Errorf("redis swarm store: read torrent: %w", err)
		}
		t.Completed = sw.completed
		t.Seeders, t.Leechers = sw.relayedS, sw.relayedL
		for k := range 4 {
			for j := range sw.n[k] {
				ts, _ := sw.record(k, j)
				m := sw.addr(k, j)
				if k%2 == 0 {
					t.Seeders++
				} else {
					t.Leechers++
				}
				t.Peers = append(t.Peers, peerInfo(m, k%2 == 1, ts, detail[m]))
			}
		}
		return t, true, nil
	}
	completed, relayedS, relayedL := parseRecord(rec)
	t.Completed = clamp32(completed)
	t.Seeders, t.Leechers = clamp32(relayedS), clamp32(relayedL)
	for i := range 4 {
		zs, err := rs[2+i].AsZScores()
		if err != nil {
			return swarm.Torrent{}, false, fmt.Errorf("redis swarm store: read torrent: %w", err)
		}
		if i%2 == 0 {
			t.Seeders += uint32(len(zs))
		} else {
			t.Leechers += uint32(len(zs))
		}
		for _, z := range zs {
			ts := int64(z.Score)
			if ts >= counted/2 {
				ts -= counted
			}
			if _, ok := parseAddr(z.Member); ok {
				t.Peers = append(t.Peers, peerInfo(z.Member, i%2 == 1, ts, detail[z.Member]))
			}
		}
	}
	return t, true, nil
}

// peerInfo is a stored peer as the API shows it: m its address, ts its
// store time, d its detail ("" when not kept).
func peerInfo(m string, leecher bool, ts int64, d string) swarm.PeerInfo {
	p := swarm.PeerInfo{Updated: ts + epoch}
	p.Addr, _ = parseAddr(m)
	if leecher {
		p.Left = bittorrent.LeftUnknown // without detail: a leecher
	}
	if len(d) == detailLen {
		copy(p.ID[:], d[:20])
		p.Uploaded = int64(binary.BigEndian.Uint64([]byte(d[20:28])))
		p.Downloaded = int64(binary.BigEndian.Uint64([]byte(d[28:36])))
		p.Left = int64(binary.BigEndian.Uint64([]byte(d[36:44])))
		p.Event = bittorrent.Event(d[44])
	}
	return p
}

// parseAddr reads a stored peer: 6 bytes IPv4 or 18 bytes IPv6, each
// followed by the port, big-endian.
func parseAddr(m string) (netip.AddrPort, bool) {
	port := func(p string) uint16 { return uint16(p[0])<<8 | uint16(p[1]) }
	switch len(m) {
	case 6:
		var a [4]byte
		copy(a[:], m)
		return netip.AddrPortFrom(netip.AddrFrom4(a), port(m[4:])), true
	case 18:
		var a [16]byte
		copy(a[:], m)
		return netip.AddrPortFrom(netip.AddrFrom16(a), port(m[16:])), true
	}
	return netip.AddrPort{}, false
}

// parseRecord reads a torrent's record (see recordFormat): its completed
// count and relayed seeders and leechers.
func parseRecord(r string) (completed, relayedS, relayedL int64) {
	if len(r) != 28 {
		completed, _ = strconv.ParseInt(r, 10, 64) // written before records
		return completed, 0, 0
	}
	u := func(i int) int64 { return int64(binary.LittleEndian.Uint32([]byte(r[4*i:]))) }
	return u(0), u(5), u(6)
}

// Torrents lists torrents in hash order. The buckets hold hashes in order
// (a bucket is the hash's first bits), so whole buckets before offset are
// skipped by their counts and only the buckets of the page are read.
func (s *Store) Torrents(ctx context.Context, offset, limit int) ([]swarm.TorrentSummary, error) {
	if limit <= 0 {
		return nil, nil
	}
	c, err := s.begin(opTorrents)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	list, err := s.torrents(ctx, c, max(offset, 0), limit)
	s.end(opTorrents, start, err)
	return list, err
}

func (s *Store) torrents(ctx context.Context, c rueidis.Client, offset, limit int) ([]swarm.TorrentSummary, error) {
	n := 1 << s.bits
	cmds := make(rueidis.Commands, n)
	for i := range n {
		cmds[i] = c.B().Hget().Key(string(s.bucketTag(nil, i)) + "n").Field("t").Build()
	}
	counts := make([]int64, n)
	for i, r := range c.DoMulti(ctx, cmds...) {
		v, err := r.AsInt64()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("redis swarm store: list torrents: %w", err)
		}
		counts[i] = v
	}
	// Whole buckets before offset are skipped by their counts; the
	// buckets of the page are read in one round trip, then their
	// torrents' counts in another. Counts that moved meanwhile only
	// shift the page, as the memory store's do.
	var hashes []bittorrent.InfoHash
	for i := 0; i < n && len(hashes) < limit; {
		for i < n && int64(offset) >= counts[i] {
			offset -= int(max(counts[i], 0))
			i++
		}
		var batch []int
		want := int64(offset + limit - len(hashes))
		for ; i < n && want > 0; i++ {
			if counts[i] > 0 {
				batch = append(batch, i)
				want -= counts[i]
			}
		}
		if len(batch) == 0 {
			break
		}
		cmds := make(rueidis.Commands, len(batch))
		for j, b := range batch {
			cmds[j] = c.B().Hkeys().Key(string(s.bucketTag(nil, b)) + "h").Build()
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			fields, err := r.AsStrSlice()
			if err != nil {
				return nil, fmt.Errorf("redis swarm store: list torrents: %w", err)
			}
			var in []bittorrent.InfoHash
			for _, f := range fields {
				if len(f) == 20 {
					in = append(in, bittorrent.InfoHash([]byte(f)))
				}
			}
			slices.SortFunc(in, func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) })
			if offset >= len(in) {
				offset -= len(in)
				continue
			}
			in = in[offset:]
			offset = 0
			hashes = append(hashes, in[:min(len(in), limit-len(hashes))]...)
		}
	}
	var out []swarm.TorrentSummary
	for len(hashes) > 0 {
		chunk := hashes[:min(len(hashes), 4096)]
		hashes = hashes[len(chunk):]
		stats, err := s.readStats(ctx, c, chunk)
		if err != nil {
			return nil, fmt.Errorf("redis swarm store: list torrents: %w", err)
		}
		for j, st := range stats {
			if st.exists {
				out = append(out, swarm.TorrentSummary{InfoHash: chunk[j], SwarmStats: st.SwarmStats})
			}
		}
	}
	return out, nil
}

// Totals adds up the buckets' counters.
func (s *Store) Totals(ctx context.Context) (swarm.Totals, error) {
	c, err := s.begin(opTotals)
	if err != nil {
		return swarm.Totals{}, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	n := 1 << s.bits
	cmds := make(rueidis.Commands, n)
	for i := range n {
		cmds[i] = c.B().Hmget().Key(string(s.bucketTag(nil, i))+"n").Field("s", "l", "t", "c").Build()
	}
	var tot [4]int64
	for _, r := range c.DoMulti(ctx, cmds...) {
		vs, e := r.ToArray()
		if e != nil {
			err = e
			break
		}
		for j, v := range vs {
			if x, e := v.AsInt64(); e == nil {
				tot[j] += x
			}
		}
	}
	s.end(opTotals, start, err)
	if err != nil {
		return swarm.Totals{}, fmt.Errorf("redis swarm store: totals: %w", err)
	}
	u := func(v int64) uint64 { return uint64(max(v, 0)) }
	return swarm.Totals{Torrents: u(tot[2]), Seeders: u(tot[0]), Leechers: u(tot[1]), Completed: u(tot[3])}, nil
}

// countsMark is the key that says the persisted completed counts are in
// this Redis. A Redis restarted empty (or flushed) has lost it with the
// counts, which the nodes then load again (CountsLoaded, MarkCounts). On
// a Cluster it lives on one primary: only that primary's loss is seen.
func (s *Store) countsMark() string { return s.cfg.Prefix + "completed-loaded" }

// CountsLoaded reports whether the persisted completed counts are in
// Redis (MarkCounts was called since Redis last lost its data).
func (s *Store) CountsLoaded(ctx context.Context) (bool, error) {
	c := s.client.Load()
	if c == nil {
		return false, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	n, err := (*c).Do(ctx, (*c).B().Exists().Key(s.countsMark()).Build()).AsInt64()
	return n == 1, err
}

// MarkCounts records that the persisted completed counts are in Redis.
func (s *Store) MarkCounts(ctx context.Context) error {
	c := s.client.Load()
	if c == nil {
		return ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	return (*c).Do(ctx, (*c).B().Set().Key(s.countsMark()).Value("1").Build()).Error()
}

// SetCompleted raises the torrents' completed counts to at least the
// persisted ones (another node may have counted more since).
func (s *Store) SetCompleted(ctx context.Context, counts []swarm.CompletedCount) error {
	for len(counts) > 0 {
		chunk := counts[:min(len(counts), 1000)]
		counts = counts[len(chunk):]
		c, err := s.begin(opSetCompleted)
		if err != nil {
			return err
		}
		start := time.Now()
		calls := make([]rueidis.LuaExec, len(chunk))
		for i := range chunk {
			b := &callBuf{arena: make([]byte, 0, 512)}
			keys := s.fillKeys(b, &chunk[i].InfoHash)
			calls[i] = rueidis.LuaExec{Keys: slices.Clone(keys),
				Args: []string{string(chunk[i].InfoHash[:]), strconv.FormatUint(uint64(chunk[i].Completed), 10), s.opts}}
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
		for _, r := range s.execMulti(cctx, c, s.setCompleted, calls) {
			if e := r.Error(); e != nil {
				err = e
				break
			}
		}
		cancel()
		s.end(opSetCompleted, start, err)
		if err != nil {
			return fmt.Errorf("redis swarm store: set completed counts: %w", err)
		}
	}
	return nil
}

// Sweep removes the peers last seen at or before cutoff, and the
// torrents left peerless when configured to. With Redis's clock, cutoff
// is read as an age (the node's now minus cutoff) and applied to Redis
// TIME. Each bucket is swept by the node that holds its lease: a bucket
// another node swept within Config.SweepLease is skipped (its peers are
// that node's count).
func (s *Store) Sweep(ctx context.Context, cutoff int64) (swarm.SweepResult, error) {
	var res swarm.SweepResult
	c, err := s.begin(opSweep)
	if err != nil {
		return res, err
	}
	start := time.Now()
	err = s.sweep(ctx, c, cutoff, &res)
	s.end(opSweep, start, err)
	if err != nil {
		return res, fmt.Errorf("redis swarm store: sweep: %w", err)
	}
	return res, nil
}

func (s *Store) sweep(ctx context.Context, c rueidis.Client, cutoff int64, res *swarm.SweepResult) error {
	cut, age := "", "0"
	if s.cfg.AnnounceClock {
		cut = strconv.FormatInt(cutoff-epoch, 10)
	} else {
		age = strconv.FormatInt(max(time.Now().Unix()-cutoff, 0), 10)
	}
	lease := strconv.FormatInt(s.cfg.SweepLease.Milliseconds(), 10)
	buckets := make([]int, 1<<s.bits)
	for i := range buckets {
		buckets[i] = i
	}
	for len(buckets) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		scans := make([]rueidis.LuaExec, len(buckets))
		for i, b := range buckets {
			tag := string(s.bucketTag(nil, b))
			scans[i] = rueidis.LuaExec{Keys: []string{tag + "lease", tag + "x"},
				Args: []string{s.cfg.NodeID, lease, cut, age, strconv.Itoa(scanLimit)}}
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
		rs := s.execMulti(cctx, c, s.scan, scans)
		cancel()
		var calls []rueidis.LuaExec
		var again []int
		for i, r := range rs {
			list, err := r.AsStrSlice()
			if rueidis.IsRedisNil(err) {
				continue // another node's lease
			}
			if err != nil {
				return err
			}
			if len(list) == scanLimit {
				again = append(again, buckets[i])
			}
			for _, ih := range list {
				if len(ih) != 20 {
					continue
				}
				h := bittorrent.InfoHash([]byte(ih))
				b := &callBuf{arena: make([]byte, 0, 512)}
				keys := s.fillKeys(b, &h)
				calls = append(calls, rueidis.LuaExec{Keys: slices.Clone(keys), Args: []string{ih, cut, age, s.opts}})
			}
		}
		for len(calls) > 0 {
			chunk := calls[:min(len(calls), 1024)]
			calls = calls[len(chunk):]
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
			rs := s.execMulti(cctx, c, s.sweepSwarm, chunk)
			cancel()
			for _, r := range rs {
				v, err := r.AsIntSlice()
				if err != nil {
					return err
				}
				if len(v) == 2 {
					res.Peers += int(v[0])
					res.Torrents += int(v[1])
				}
			}
		}
		buckets = again
	}
	return nil
}

// CountRelayed adds relayed (WebSocket) peers to a swarm's counts.
func (s *Store) CountRelayed(ctx context.Context, h bittorrent.InfoHash, seeders, leechers int32, completed bool) (bittorrent.SwarmStats, swarm.Result, error) {
	c, err := s.begin(opRelay)
	if err != nil {
		return bittorrent.SwarmStats{}, swarm.Result{}, err
	}
	start := time.Now()
	b := &callBuf{arena: make([]byte, 0, 512)}
	keys := s.fillKeys(b, &h)
	args := []string{string(h[:]), strconv.Itoa(int(seeders)), strconv.Itoa(int(leechers)), boolArg(completed), s.opts}
	cctx, cancel := callCtx(ctx, start, s.cfg.Timeout)
	v, err := s.relay.Exec(cctx, c, keys, args).AsIntSlice()
	cancel()
	if err == nil && len(v) != 4 {
		err = errReply
	}
	s.end(opRelay, start, err)
	if err != nil {
		return bittorrent.SwarmStats{}, swarm.Result{}, ErrUnavailable
	}
	st := bittorrent.SwarmStats{Seeders: clamp32(v[0]), Completed: clamp32(v[2]), Leechers: clamp32(v[1])}
	return st, swarm.Result{Completed: clamp32(v[2]), CountedCompletion: v[3] == 1}, nil
}
