// Package httptracker is the HTTP(S) BitTorrent tracker (BEP 3, 7, 23, 48)
// with Torrust v3's routes, query rules and failure texts. A Handler turns raw
// request bytes into calls on the tracker's rules and bencoded answers; thin
// adapters connect it to fasthttp (the Server) and to net/http.
package httptracker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/starling-tracker/starling/internal/bencode"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/requestid"
)

// Tracker is what the HTTP tracker needs of the rules. *tracker.Tracker
// satisfies it.
type Tracker interface {
	Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error
	Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error
	// Authorize applies the mode's checks alone; the handler calls it before
	// refusing a request whose client address it cannot resolve, so that a
	// key or whitelist refusal comes first, as in Torrust.
	Authorize(req *bittorrent.AnnounceRequest) error
}

// DefaultMaxScrapeTorrents is how many hashes one scrape answers by default.
const DefaultMaxScrapeTorrents = 74

// Content types of the answers, as Torrust sends them.
const (
	contentTypeBencode = "application/octet-stream"
	contentTypeFailure = "text/plain; charset=utf-8"
	contentTypeJSON    = "application/json"
)

// Failure texts that are not the parser's.
const (
	prefixAuth       = bittorrent.AuthErrorPrefix
	prefixTracker    = "Tracker error: "
	msgXForwardedFor = "Error resolving peer IP: missing or invalid the right most X-Forwarded-For IP (mandatory on reverse proxy tracker configuration)"
	msgInternal      = prefixTracker + "internal error"
)

var healthBody = []byte(`{"status":"Ok"}`)

// Handler answers announce, scrape and health-check requests. It is safe for
// concurrent use; each request borrows a scratch from a pool, so the steady
// state allocates nothing.
type Handler struct {
	tracker      Tracker
	counters     *metrics.Counters
	log          *slog.Logger
	reverseProxy bool
	maxScrape    int
	timed        bool
	full         *FullScrape // nil: full scrapes refused
	writeTimeout time.Duration
	pool         sync.Pool
}

// NewHandler builds the handler core over the tracker's rules. It reads
// OnReverseProxy and MaxScrapeTorrents from cfg.
func NewHandler(cfg Config, t Tracker, counters *metrics.Counters, log *slog.Logger) *Handler {
	if counters == nil {
		counters = metrics.NewCounters(1, false)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	max := cfg.MaxScrapeTorrents
	if max <= 0 {
		max = DefaultMaxScrapeTorrents
	}
	h := &Handler{tracker: t, counters: counters, log: log, reverseProxy: cfg.OnReverseProxy, maxScrape: max, timed: cfg.Latency != nil}
	if fs := cfg.FullScrape; fs != nil && fs.Builder != nil {
		h.full = fs
	}
	h.writeTimeout = cfg.WriteTimeout
	if h.writeTimeout <= 0 {
		h.writeTimeout = DefaultWriteTimeout
	}
	h.pool.New = func() any {
		var lat *metrics.LatencyStripe
		if cfg.Latency != nil {
			lat = cfg.Latency.Stripe()
		}
		return &scratch{
			lat:    lat,
			stripe: counters.Stripe(),
			hashes: make([]bittorrent.InfoHash, 0, max),
			out:    make([]byte, 0, 1024),
			rid:    make([]byte, 0, requestid.MaxLen),
		}
	}
	return h
}

// scratch is one request's working memory, reused across requests.
type scratch struct {
	stripe *metrics.Stripe
	lat    *metrics.LatencyStripe // nil when latency is not observed
	areq   bittorrent.AnnounceRequest
	aresp  bittorrent.AnnounceResponse
	sreq   bittorrent.ScrapeRequest
	sresp  bittorrent.ScrapeResponse
	hashes []bittorrent.InfoHash
	perr   parseError
	msg    []byte // a parse failure's reason
	in     []byte // a copy of the query for adapters that hold it as a string
	xff    []byte // the X-Forwarded-For values, joined with ','
	out    []byte // the answer's body
	rid    []byte // the request's x-request-id
}

func (h *Handler) getScratch() *scratch  { return h.pool.Get().(*scratch) }
func (h *Handler) putScratch(s *scratch) { h.pool.Put(s) }

// rawRequest is what the adapters hand the core.
type rawRequest struct {
	path     []byte
	query    []byte
	hasQuery bool // the URL had a '?', even with nothing after it
	remote   netip.AddrPort
	xff      []byte
	// authorization is the Authorization header, read only when a full
	// scrape needs a token.
	authorization []byte
}

// answer is what the adapters write back.
type answer struct {
	status      int
	contentType string
	body        []byte
	// gzip is body gzipped, for clients that accept it (full scrapes).
	gzip []byte
	// shared bodies are not the scratch's and are never changed: the
	// adapter sends them without a copy.
	shared bool
}

// handle routes one GET request. A refusal is logged at debug level with
// the request's id, so a client's complaint can be matched with the log.
func (h *Handler) handle(ctx context.Context, s *scratch, r *rawRequest) answer {
	a := h.route(ctx, s, r)
	if a.contentType == contentTypeFailure && h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.LogAttrs(ctx, slog.LevelDebug, "http tracker: request refused",
			slog.String("request_id", string(s.rid)), slog.String("path", logPath(r.path)),
			slog.String("answer", string(a.body)))
	}
	return a
}

// logPath is a request path for the log, a peer key in it (the segment
// after /announce/ or /scrape/) replaced: keys are secrets, in the log
// or not.
func logPath(path []byte) string {
	for _, p := range []string{"/announce/", "/scrape/"} {
		if bytes.HasPrefix(path, []byte(p)) && len(path) > len(p) {
			return p + "REDACTED"
		}
	}
	return string(path)
}

func (h *Handler) route(ctx context.Context, s *scratch, r *rawRequest) answer {
	path := r.path
	var key []byte
	hasKey := false
	switch {
	case string(path) == "/health_check":
		return answer{status: 200, contentType: contentTypeJSON, body: healthBody}
	case string(path) == "/announce", string(path) == "/scrape":
	case bytes.HasPrefix(path, []byte("/announce/")), bytes.HasPrefix(path, []byte("/scrape/")):
		i := bytes.IndexByte(path[1:], '/') + 1
		key, hasKey = path[i+1:], true
		path = path[:i]
		if len(key) == 0 || bytes.IndexByte(key, '/') >= 0 {
			return answer{status: 404}
		}
	default:
		return answer{status: 404}
	}
	var start time.Time
	if h.timed {
		start = time.Now()
	}
	if string(path) == "/announce" {
		a := h.announce(ctx, s, r, key, hasKey)
		if h.timed {
			s.lat.ObserveSince(metrics.HTTPAnnounce, start)
		}
		return a
	}
	a := h.scrape(ctx, s, r, key, hasKey)
	if h.timed {
		s.lat.ObserveSince(metrics.HTTPScrape, start)
	}
	return a
}

func (h *Handler) announce(ctx context.Context, s *scratch, r *rawRequest, key []byte, hasKey bool) answer {
	req := &s.areq
	*req = bittorrent.AnnounceRequest{}
	port, compact, perr := parseAnnounce(r.query, r.hasQuery, req, &s.perr)
	if perr != nil {
		return h.parseFailure(s, perr)
	}
	if hasKey {
		if req.Key, req.HasKey = bittorrent.ParseKeyBytes(key); !req.HasKey {
			return h.failure(s, prefixAuth, bittorrent.ErrKeyFormat.Msg)
		}
	}
	ip, ok := h.clientIP(r)
	if !ok {
		if err := h.tracker.Authorize(req); err != nil {
			return h.trackerFailure(s, "announce", err)
		}
		return h.failure(s, msgXForwardedFor, "")
	}
	req.Addr = netip.AddrPortFrom(ip, port)
	req.Families = bittorrent.BothFamilies
	req.Compact = compact
	resp := &s.aresp
	resp.Reset()
	if err := h.tracker.Announce(ctx, req, resp); err != nil {
		return h.trackerFailure(s, "announce", err)
	}
	if ip.Is4() {
		s.stripe.Inc(metrics.TCP4Connections)
		s.stripe.Inc(metrics.TCP4Announces)
	} else {
		s.stripe.Inc(metrics.TCP6Connections)
		s.stripe.Inc(metrics.TCP6Announces)
	}
	s.out = appendAnnounce(s.out[:0], resp, compact)
	return answer{status: 200, contentType: contentTypeBencode, body: s.out}
}

func (h *Handler) scrape(ctx context.Context, s *scratch, r *rawRequest, key []byte, hasKey bool) answer {
	req := &s.sreq
	*req = bittorrent.ScrapeRequest{}
	hashes, perr := parseScrape(r.query, r.hasQuery, s.hashes[:0], h.maxScrape, &s.perr)
	s.hashes = hashes
	if perr != nil {
		if h.full != nil && wantsFullScrape(perr, r) {
			return h.fullScrape(ctx, s, r)
		}
		return h.parseFailure(s, perr)
	}
	if hasKey {
		if req.Key, req.HasKey = bittorrent.ParseKeyBytes(key); !req.HasKey {
			return h.failure(s, prefixAuth, bittorrent.ErrKeyFormat.Msg)
		}
	}
	ip, ok := h.clientIP(r)
	if !ok {
		return h.failure(s, msgXForwardedFor, "")
	}
	// The files dictionary needs its keys sorted and unique; Torrust merges
	// duplicates too.
	slices.SortFunc(hashes, func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) })
	hashes = slices.Compact(hashes)
	req.InfoHashes = hashes
	req.Addr = netip.AddrPortFrom(ip, 0)
	resp := &s.sresp
	resp.Reset()
	if err := h.tracker.Scrape(ctx, req, resp); err != nil {
		return h.trackerFailure(s, "scrape", err)
	}
	if len(resp.Files) != len(hashes) {
		h.log.Error("http tracker: scrape answered the wrong number of torrents", "want", len(hashes), "got", len(resp.Files),
			"request_id", string(s.rid))
		return h.failure(s, msgInternal, "")
	}
	if ip.Is4() {
		s.stripe.Inc(metrics.TCP4Connections)
		s.stripe.Inc(metrics.TCP4Scrapes)
	} else {
		s.stripe.Inc(metrics.TCP6Connections)
		s.stripe.Inc(metrics.TCP6Scrapes)
	}
	s.out = appendScrape(s.out[:0], hashes, resp.Files)
	return answer{status: 200, contentType: contentTypeBencode, body: s.out}
}

// trackerFailure answers an error of the rules: client errors with Torrust's
// prefix for their kind, anything else generically (and logged, since the
// client cannot do anything about it).
func (h *Handler) trackerFailure(s *scratch, op string, err error) answer {
	ce, ok := err.(*bittorrent.ClientError)
	if !ok && !errors.As(err, &ce) {
		h.log.Error("http tracker: "+op+" failed", "err", err, "request_id", string(s.rid))
		return h.failure(s, msgInternal, "")
	}
	switch ce.Kind {
	case bittorrent.KindAuth:
		return h.failure(s, prefixAuth, ce.Msg)
	case bittorrent.KindTracker:
		return h.failure(s, prefixTracker, ce.Msg)
	default:
		return h.failure(s, ce.Msg, "")
	}
}

// failure answers HTTP 200 with d14:failure reason<msg>e, as every tracker
// client expects. msg is given in two parts so a prefix and a message can be
// written without building a string.
func (h *Handler) failure(s *scratch, msg1, msg2 string) answer {
	s.stripe.Inc(metrics.HTTPErrors)
	b := append(s.out[:0], bencode.DictStart)
	b = bencode.AppendString(b, "failure reason")
	b = bencode.AppendStringHeader(b, len(msg1)+len(msg2))
	b = append(b, msg1...)
	b = append(b, msg2...)
	s.out = append(b, bencode.End)
	return answer{status: 200, contentType: contentTypeFailure, body: s.out}
}

// parseFailure answers a request the parser refused.
func (h *Handler) parseFailure(s *scratch, e *parseError) answer {
	s.stripe.Inc(metrics.HTTPErrors)
	s.msg = e.append(s.msg[:0])
	b := append(s.out[:0], bencode.DictStart)
	b = bencode.AppendString(b, "failure reason")
	b = bencode.AppendBytes(b, s.msg)
	s.out = append(b, bencode.End)
	return answer{status: 200, contentType: contentTypeFailure, body: s.out}
}

// clientIP is the address the client is recorded as: the TCP peer, or behind
// a reverse proxy the right-most valid X-Forwarded-For entry. IPv4-mapped
// addresses become IPv4.
func (h *Handler) clientIP(r *rawRequest) (netip.Addr, bool) {
	if !h.reverseProxy {
		a := r.remote.Addr()
		return bittorrent.NormalizeAddr(a), a.IsValid()
	}
	rest := r.xff
	for len(rest) > 0 {
		entry := rest
		if i := bytes.LastIndexByte(rest, ','); i >= 0 {
			entry, rest = rest[i+1:], rest[:i]
		} else {
			rest = nil
		}
		entry = bytes.TrimSpace(entry)
		if len(entry) == 0 {
			continue
		}
		if a, ok := parseAddr(entry); ok {
			return bittorrent.NormalizeAddr(a), true
		}
	}
	return netip.Addr{}, false
}

// parseAddr parses an IP address. Dotted IPv4, the usual case behind a proxy,
// is parsed here without allocating; netip.ParseAddr takes a string, which
// would cost a copy per request.
func parseAddr(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	i := 0
	for part := 0; part < 4; part++ {
		if part > 0 {
			if i >= len(b) || b[i] != '.' {
				goto slow
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if i == start || v > 255 || (i-start > 1 && b[start] == '0') {
			goto slow
		}
		ip[part] = byte(v)
	}
	if i == len(b) {
		return netip.AddrFrom4(ip), true
	}
slow:
	a, err := netip.ParseAddr(string(b))
	return a, err == nil
}

// Keys are written as pre-encoded constants (length prefix included): on
// the hot path the length of a constant key need not be formatted per peer.
const (
	keyComplete    = "8:complete"
	keyIncomplete  = "10:incomplete"
	keyInterval    = "8:interval"
	keyMinInterval = "12:min interval"
	keyPeers       = "5:peers"
	keyPeers6      = "6:peers6"
	keyIP          = "2:ip"
	keyPeerID      = "7:peer id20:" // with the 20-byte value's header
	keyPort        = "4:port"
	keyFiles       = "5:files"
	keyDownloaded  = "10:downloaded"
)

// appendAnnounce writes a successful announce answer: compact (BEP 23 peers
// and BEP 7 peers6, both always present) or Torrust's default list of
// dictionaries with both families mixed. Keys are in sorted order.
func appendAnnounce(b []byte, resp *bittorrent.AnnounceResponse, compact bool) []byte {
	b = append(b, bencode.DictStart)
	b = append(b, keyComplete...)
	b = bencode.AppendUint(b, uint64(resp.Seeders))
	b = append(b, keyIncomplete...)
	b = bencode.AppendUint(b, uint64(resp.Leechers))
	b = append(b, keyInterval...)
	b = bencode.AppendUint(b, uint64(resp.Interval))
	b = append(b, keyMinInterval...)
	b = bencode.AppendUint(b, uint64(resp.MinInterval))
	b = append(b, keyPeers...)
	if compact {
		// The tracker asked the store for compact lists (Compact).
		b = bencode.AppendStringHeader(b, len(resp.Compact4))
		b = append(b, resp.Compact4...)
		b = append(b, keyPeers6...)
		b = bencode.AppendStringHeader(b, len(resp.Compact6))
		b = append(b, resp.Compact6...)
	} else {
		b = append(b, bencode.ListStart)
		for i := range resp.Peers4 {
			b = appendPeerDict(b, &resp.Peers4[i])
		}
		for i := range resp.Peers6 {
			b = appendPeerDict(b, &resp.Peers6[i])
		}
		b = append(b, bencode.End)
	}
	return append(b, bencode.End)
}

func appendPeerDict(b []byte, p *bittorrent.Peer) []byte {
	var text [48]byte
	ip := p.Addr.Addr().AppendTo(text[:0])
	b = append(b, bencode.DictStart)
	b = append(b, keyIP...)
	b = bencode.AppendBytes(b, ip)
	b = append(b, keyPeerID...)
	b = append(b, p.ID[:]...)
	b = append(b, keyPort...)
	b = bencode.AppendUint(b, uint64(p.Addr.Port()))
	return append(b, bencode.End)
}

// appendScrape writes d5:filesd<hash>d8:complete…e…ee; hashes are sorted and unique.
func appendScrape(b []byte, hashes []bittorrent.InfoHash, files []bittorrent.SwarmStats) []byte {
	b = append(b, bencode.DictStart)
	b = append(b, keyFiles...)
	b = append(b, bencode.DictStart)
	for i := range hashes {
		b = append(b, "20:"...)
		b = append(b, hashes[i][:]...)
		f := &files[i]
		b = append(b, bencode.DictStart)
		b = append(b, keyComplete...)
		b = bencode.AppendUint(b, uint64(f.Seeders))
		b = append(b, keyDownloaded...)
		b = bencode.AppendUint(b, uint64(f.Completed))
		b = append(b, keyIncomplete...)
		b = bencode.AppendUint(b, uint64(f.Leechers))
		b = append(b, bencode.End)
	}
	b = append(b, bencode.End)
	return append(b, bencode.End)
}
