// Package tracker holds the rules of the tracker: modes (public, listed,
// private, private_listed), peer keys, numwant limits, intervals, the client
// address rules, and what to do with completions. Transports call Announce and
// Scrape; the swarm store keeps the peers. Nothing here knows a socket.
package tracker

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Config are the settings of the rules, from [core].
type Config struct {
	Private             bool
	Listed              bool
	CheckKeysExpiration bool
	Interval            uint32
	MinInterval         uint32
	MaxPeersPerAnnounce int
	// ExternalIP replaces loopback client addresses when it is a specific
	// address; the unspecified address (Torrust's default 0.0.0.0) keeps them.
	ExternalIP netip.Addr
}

// DefaultConfig is Torrust's default [core]: public, 120 s intervals, 74 peers.
func DefaultConfig() Config {
	return Config{
		CheckKeysExpiration: true,
		Interval:            120,
		MinInterval:         120,
		MaxPeersPerAnnounce: 74,
	}
}

// CompletionSink receives each new completed count, to be persisted in
// batches. Completed must not block.
type CompletionSink interface {
	Completed(h bittorrent.InfoHash, count uint32)
}

// Clock gives unix seconds.
type Clock interface{ Now() int64 }

// Tracker applies the rules. It is safe for concurrent use.
type Tracker struct {
	// rules is replaced whole by SetConfig (a reload); a request reads it
	// once, so it sees one configuration throughout.
	rules atomic.Pointer[rules]
	store swarm.Store
	lists *access.Lists
	clock Clock
	sink  CompletionSink
	// prefetcher is the store when it takes prefetch hints, else nil.
	prefetcher swarm.Prefetcher

	// Announces refused at a capacity limit, by limit (see Refused), and
	// when one was last logged.
	full       [3]atomic.Uint64
	fullLogged atomic.Int64
	log        atomic.Pointer[slog.Logger]

	// recorder, when set, is told every announce the store applied (see
	// Record).
	recorder atomic.Pointer[func(*swarm.Announce)]
}

// Record has fn told, from now on, every announce the store applied, as
// the store got it (fn must not keep it: it is reused after fn returns),
// until Record(nil). An upgrade's old process records what the announces
// it answers after its swarms were written change, for the new process.
// Unset, it costs an announce one atomic load.
func (t *Tracker) Record(fn func(*swarm.Announce)) {
	if fn == nil {
		t.recorder.Store(nil)
		return
	}
	t.recorder.Store(&fn)
}

// fullLimits are the names of the limits, in the order of Tracker.full.
var fullLimits = [3]*swarm.FullError{swarm.ErrFullTorrents, swarm.ErrFullPeers, swarm.ErrFullPeersPerTorrent}

// SetLogger is where the tracker says a capacity limit is reached (at most
// once a minute).
func (t *Tracker) SetLogger(log *slog.Logger) { t.log.Store(log) }

// Refused is how many announces each capacity limit refused, by the
// limit's configuration key.
func (t *Tracker) Refused() map[string]uint64 {
	out := make(map[string]uint64, len(fullLimits))
	for k, l := range fullLimits {
		out[l.Limit] = t.full[k].Load()
	}
	return out
}

func (t *Tracker) refuseFull(e *swarm.FullError) {
	for k, l := range fullLimits {
		if l.Limit == e.Limit {
			t.full[k].Add(1)
		}
	}
	now := time.Now().Unix()
	if last := t.fullLogged.Load(); now-last >= 60 && t.fullLogged.CompareAndSwap(last, now) {
		if log := t.log.Load(); log != nil {
			log.Warn("capacity limit reached: announces that would add a torrent or a peer are refused (\"tracker is full, try later\")",
				"limit", "core.limits."+e.Limit, "refused", t.Refused())
		}
	}
}

// rules is a Config with what is derived from it.
type rules struct {
	Config
	replaceLo  bool
	externalIP netip.Addr
}

// New builds the rules over a swarm store and the access lists. sink may be
// nil when completed counts are not persisted.
func New(cfg Config, store swarm.Store, lists *access.Lists, clock Clock, sink CompletionSink) *Tracker {
	t := &Tracker{store: store, lists: lists, clock: clock, sink: sink}
	t.prefetcher, _ = store.(swarm.Prefetcher)
	t.SetConfig(cfg)
	return t
}

// SetConfig replaces the settings; requests already running finish with
// the old ones, and every later one sees the new ones.
func (t *Tracker) SetConfig(cfg Config) {
	if cfg.MaxPeersPerAnnounce <= 0 {
		cfg.MaxPeersPerAnnounce = 74
	}
	r := &rules{Config: cfg}
	if cfg.ExternalIP.IsValid() && !cfg.ExternalIP.IsUnspecified() {
		r.replaceLo = true
		r.externalIP = bittorrent.NormalizeAddr(cfg.ExternalIP)
	}
	t.rules.Store(r)
}

// Prefetch hands a batch of announces to the store ahead of applying them
// (see swarm.Prefetcher); a store without it ignores them.
func (t *Tracker) Prefetch(hints []swarm.Hint) {
	if t.prefetcher != nil {
		t.prefetcher.Prefetch(hints)
	}
}

// Remote reports whether the store waits on another process (see
// swarm.Remote), so that a transport keeps several calls in flight.
func (t *Tracker) Remote() bool {
	r, ok := t.store.(swarm.Remote)
	return ok && r.Remote()
}

// Config returns the rules' settings.
func (t *Tracker) Config() Config { return t.rules.Load().Config }

// Mode names the tracker's mode as Torrust does.
func (t *Tracker) Mode() string {
	cfg := t.rules.Load()
	switch {
	case cfg.Private && cfg.Listed:
		return "private_listed"
	case cfg.Private:
		return "private"
	case cfg.Listed:
		return "listed"
	default:
		return "public"
	}
}

// ClientIP is the address a client is recorded and handed out as: IPv4-mapped
// addresses become IPv4, and loopback becomes external_ip when one is set.
func (t *Tracker) ClientIP(a netip.Addr) netip.Addr {
	return t.rules.Load().clientIP(a)
}

func (r *rules) clientIP(a netip.Addr) netip.Addr {
	a = bittorrent.NormalizeAddr(a)
	if r.replaceLo && a.IsLoopback() {
		return r.externalIP
	}
	return a
}

var announcePool = sync.Pool{New: func() any { return new(swarm.Announce) }}

// Announce checks req against the mode, records the peer and fills resp.
// Refusals are *bittorrent.ClientError.
func (t *Tracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	now := t.clock.Now()
	cfg := t.rules.Load()
	if err := t.authorize(cfg, req, now); err != nil {
		return err
	}
	want := int(req.NumWant)
	if want <= 0 || want > cfg.MaxPeersPerAnnounce {
		want = cfg.MaxPeersPerAnnounce
	}
	fam := req.Families
	if fam == 0 {
		fam = bittorrent.BothFamilies
	}
	// The store is an interface, so a pointer passed to it escapes; a pool
	// keeps the announce path free of a heap allocation per request.
	a := announcePool.Get().(*swarm.Announce)
	defer announcePool.Put(a)
	// Every field, one by one (TestAnnounceSetsEveryField counts them): a
	// composite literal of a struct with a pointer is built on the stack
	// and copied over in 16-byte moves that straddle its narrower stores,
	// which the processor cannot forward; it waits for each on the path of
	// every announce.
	a.InfoHash = req.InfoHash
	a.PeerID = req.PeerID
	a.Addr = netip.AddrPortFrom(cfg.clientIP(req.Addr.Addr()), req.Addr.Port())
	a.Uploaded = req.Uploaded
	a.Downloaded = req.Downloaded
	a.Left = req.Left
	a.Event = req.Event
	a.Now = now
	a.NumWant = want
	a.Families = fam
	a.Compact = req.Compact
	a.Sample = req.Sample
	resp.Interval = cfg.Interval
	resp.MinInterval = cfg.MinInterval
	res, err := t.store.Announce(ctx, a, resp)
	if err != nil {
		var full *swarm.FullError
		if errors.As(err, &full) {
			t.refuseFull(full)
			return bittorrent.ErrTrackerFull
		}
		return err
	}
	if res.CountedCompletion && t.sink != nil {
		t.sink.Completed(req.InfoHash, res.Completed)
	}
	if rec := t.recorder.Load(); rec != nil {
		(*rec)(a)
	}
	return nil
}

// Authorize applies the mode's checks (peer key, whitelist) to req without
// recording anything. Transports call it when they must refuse a request for
// a reason of their own, so that the mode's refusal wins, as in Torrust.
func (t *Tracker) Authorize(req *bittorrent.AnnounceRequest) error {
	return t.authorize(t.rules.Load(), req, t.clock.Now())
}

func (t *Tracker) authorize(cfg *rules, req *bittorrent.AnnounceRequest, now int64) error {
	if cfg.Private {
		if err := t.checkKey(cfg, req.HasKey, req.Key, now); err != nil {
			return err
		}
	}
	if cfg.Listed && !t.lists.Whitelisted(req.InfoHash) {
		return bittorrent.ErrNotWhitelisted(req.InfoHash)
	}
	return nil
}

// Scrape fills resp with one entry per requested hash, in order. Hashes the
// client may not see (not whitelisted, or a private tracker without a valid
// key) get zeros, as in Torrust.
func (t *Tracker) Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	cfg := t.rules.Load()
	if cfg.Private && t.checkKey(cfg, req.HasKey, req.Key, t.clock.Now()) != nil {
		for range req.InfoHashes {
			resp.Files = append(resp.Files, bittorrent.SwarmStats{})
		}
		return nil
	}
	start := len(resp.Files)
	files, err := t.store.Scrape(ctx, req.InfoHashes, resp.Files)
	if err != nil {
		return err
	}
	resp.Files = files
	if cfg.Listed {
		for i, h := range req.InfoHashes {
			if !t.lists.Whitelisted(h) {
				resp.Files[start+i] = bittorrent.SwarmStats{}
			}
		}
	}
	return nil
}

func (t *Tracker) checkKey(cfg *rules, has bool, k bittorrent.Key, now int64) error {
	if !has {
		return bittorrent.ErrMissingKey
	}
	r, ok := t.lists.Key(k)
	if !ok {
		return bittorrent.ErrUnknownKey(k)
	}
	if cfg.CheckKeysExpiration && r.Expired(now) {
		return bittorrent.ErrExpiredKey
	}
	return nil
}
