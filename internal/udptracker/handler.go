package udptracker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
)

// Tracker is what the UDP tracker needs of the rules; *tracker.Tracker
// satisfies it. Refusals a client may read are *bittorrent.ClientError.
type Tracker interface {
	Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error
	Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error
}

// Clock gives unix seconds; *clock.Coarse and *clock.Manual satisfy it.
type Clock interface{ Now() int64 }

// handler turns one request datagram into at most one response. Each
// socket worker owns one, with every request and response struct and buffer
// it needs, so steady-state handling allocates nothing.
type handler struct {
	tracker Tracker
	cookies *cookies
	limiter *limiter
	clock   Clock
	stripe  *metrics.Stripe
	log     *slog.Logger
	// private reads each announce's peer key from its BEP 41 URL data
	// (Config.Private).
	private *atomic.Bool
	// tally counts the requests handled since the last flush; the worker
	// flushes it into stripe after each batch, before sending the answers.
	tally metrics.Tally

	// sample is the randomness the next announce draws its peers from
	// (bittorrent.AnnounceRequest.Sample), set by the worker; 0 for none.
	sample uint64
	areq   bittorrent.AnnounceRequest
	aresp  bittorrent.AnnounceResponse
	// compact4 and compact6 hold the peers of the family an announce does
	// not ask for (none); its own family's go straight into the answer.
	compact4, compact6 []byte
	fields             announceFields
	opts               announceOptions
	hashes             [maxScrapeHashes]bittorrent.InfoHash
	sreq               bittorrent.ScrapeRequest
	sresp              bittorrent.ScrapeResponse

	// Internal errors are logged at most once per second per worker, so a
	// failing store cannot flood the log; the rest are counted.
	lastLog    int64
	suppressed int
}

func newHandler(t Tracker, c *cookies, l *limiter, clk Clock, stripe *metrics.Stripe, log *slog.Logger, private *atomic.Bool) *handler {
	h := &handler{tracker: t, cookies: c, limiter: l, clock: clk, stripe: stripe, log: log, private: private}
	// Announces ask for compact answers only.
	h.compact4 = make([]byte, 0, 6*maxPeers4)
	h.compact6 = make([]byte, 0, 18*maxPeers6)
	h.sresp.Files = make([]bittorrent.SwarmStats, 0, maxScrapeHashes)
	return h
}

// handle answers the datagram pkt from src into out (at least maxPayload4
// bytes) and returns the answer's length; 0 means send nothing. truncated
// says the datagram did not fit the receive buffer. A panic is recovered,
// counted and logged, and the packet gets no answer.
func (h *handler) handle(ctx context.Context, src netip.AddrPort, pkt []byte, truncated bool, out []byte) (n int) {
	defer func() {
		if v := recover(); v != nil {
			h.stripe.Inc(metrics.Panics)
			h.log.Error("UDP tracker request panicked; no answer sent",
				"client", src.String(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			n = 0
		}
	}()
	return h.serve(ctx, src, pkt, truncated, out)
}

// flush makes the counts of the requests handled so far visible in the
// statistics.
func (h *handler) flush() { h.tally.FlushTo(h.stripe) }

func (h *handler) serve(ctx context.Context, src netip.AddrPort, pkt []byte, truncated bool, out []byte) int {
	h.tally.Inc(metrics.UDPRequests)
	if len(pkt) < headerLen {
		// No transaction id to answer with: a client could not match an
		// answer, and answering garbage would feed reflection attacks.
		return 0
	}
	ip := bittorrent.NormalizeAddr(src.Addr())
	fam := bittorrent.FamilyOf(ip)
	if fam == bittorrent.IPv6 && len(out) > maxPayload6 {
		out = out[:maxPayload6]
	} else if len(out) > maxPayload4 {
		out = out[:maxPayload4]
	}
	txid := pkt[12:16]
	now := h.clock.Now()
	action := binary.BigEndian.Uint32(pkt[8:12])
	if truncated && action == actionScrape {
		// Torrust reads datagrams into a fixed buffer and drops the
		// rest; so does the receive buffer here. What is left of a
		// scrape is its first whole hashes (more than the 74 answered),
		// of an announce its body and the BEP 41 options that fit.
		pkt = pkt[:headerLen+(len(pkt)-headerLen)/20*20]
	}
	switch action {
	case actionConnect:
		if binary.BigEndian.Uint64(pkt[0:8]) != protocolID {
			return h.refuse(out, txid, ip, now, msgNoProtocolID)
		}
		h.count(fam, metrics.UDP4Connections, metrics.UDP6Connections)
		return writeConnect(out, txid, h.cookies.mint(ip, now))
	case actionAnnounce:
		if len(pkt) < announceLen {
			return h.refuse(out, txid, ip, now, msgShortPacket)
		}
		if !h.cookies.valid(binary.BigEndian.Uint64(pkt[0:8]), ip, now) {
			return h.badConnectionID(out, txid, ip, now)
		}
		return h.announce(ctx, src, ip, fam, pkt, out)
	case actionScrape:
		if !h.cookies.valid(binary.BigEndian.Uint64(pkt[0:8]), ip, now) {
			return h.badConnectionID(out, txid, ip, now)
		}
		return h.scrape(ctx, src, ip, fam, pkt, out)
	default:
		return h.refuse(out, txid, ip, now, msgInvalidAction)
	}
}

func (h *handler) announce(ctx context.Context, src netip.AddrPort, ip netip.Addr, fam bittorrent.Family, pkt, out []byte) int {
	txid := pkt[12:16]
	f := &h.fields
	parseAnnounce(pkt, f)
	if f.event == eventPaused {
		// BEP 21: libtorrent (qBittorrent, Deluge) sends 4 on the
		// regular announces of a partial seed. Torrust refuses it, which
		// drops those peers from their swarms; as over HTTP, it is a
		// regular announce here.
		f.event = 0
	}
	if f.event >= uint32(len(udpEvent)) {
		return h.refuse(out, txid, ip, h.clock.Now(), msgInvalidEvent)
	}
	parseOptions(pkt[announceLen:], &h.opts)
	r := &h.areq
	r.HasKey = false
	if h.private.Load() {
		// Only a private tracker reads the key: elsewhere URL data stays
		// ignored, and the answers stay what they were before keys.
		key, has := urlKey(h.opts.url())
		if h.opts.tooLong {
			has, key = true, nil
		}
		if has {
			if r.Key, r.HasKey = bittorrent.ParseKeyBytes(key); !r.HasKey {
				return h.trackerError(out, txid, src, "announce", bittorrent.ErrKeyFormat)
			}
		}
	}

	// Peers of the client's own family only, and no more than fit one
	// 1500-byte packet; -1 and 0 mean the tracker's default.
	limit := int32(maxPeers4)
	if fam == bittorrent.IPv6 {
		limit = maxPeers6
	}
	want := f.numWant
	if want <= 0 || want > limit {
		want = limit
	}
	// Field by field, as tracker.Announce explains; the key is set above.
	r.InfoHash = f.infoHash
	r.PeerID = f.peerID
	r.Addr = netip.AddrPortFrom(ip, f.port)
	r.Uploaded = f.uploaded
	r.Downloaded = f.downloaded
	r.Left = f.left
	r.Event = udpEvent[f.event]
	r.NumWant = want
	r.Families = fam
	r.Compact = true
	r.Sample = h.sample
	h.aresp.Reset()
	// The store writes the peers straight into out, after the header, where
	// writeAnnounce then finds them: copying them there afterwards cost a
	// copy and a wait for the narrow stores that wrote them to drain before
	// they could be read back. The other family's list is the handler's own
	// (UDP asks for one family; the store leaves the other empty).
	body := out[announceHdrLen:announceHdrLen:max(len(out), announceHdrLen)]
	if fam == bittorrent.IPv4 {
		h.aresp.Compact4, h.aresp.Compact6 = body, h.compact6[:0]
	} else {
		h.aresp.Compact4, h.aresp.Compact6 = h.compact4[:0], body
	}
	if err := h.tracker.Announce(ctx, &h.areq, &h.aresp); err != nil {
		return h.trackerError(out, txid, src, "announce", err)
	}
	// Counted once answered, as Torrust counts: a refused announce (not
	// whitelisted, say) is an error, not a handled announce.
	h.count(fam, metrics.UDP4Announces, metrics.UDP6Announces)
	return writeAnnounce(out, txid, &h.aresp, fam)
}

func (h *handler) scrape(ctx context.Context, src netip.AddrPort, ip netip.Addr, fam bittorrent.Family, pkt, out []byte) int {
	txid := pkt[12:16]
	body := pkt[headerLen:]
	if len(body) == 0 {
		return h.refuse(out, txid, ip, h.clock.Now(), msgFullScrape)
	}
	if len(body)%20 != 0 {
		return h.refuse(out, txid, ip, h.clock.Now(), msgInvalidHashList)
	}
	n := min(len(body)/20, maxScrapeHashes)
	for i := 0; i < n; i++ {
		copy(h.hashes[i][:], body[i*20:])
	}
	h.sreq = bittorrent.ScrapeRequest{InfoHashes: h.hashes[:n], Addr: netip.AddrPortFrom(ip, src.Port())}
	h.sresp.Reset()
	if err := h.tracker.Scrape(ctx, &h.sreq, &h.sresp); err != nil {
		return h.trackerError(out, txid, src, "scrape", err)
	}
	h.count(fam, metrics.UDP4Scrapes, metrics.UDP6Scrapes)
	return writeScrape(out, txid, h.sresp.Files)
}

func (h *handler) count(fam bittorrent.Family, v4, v6 metrics.Counter) {
	if fam == bittorrent.IPv4 {
		h.tally.Inc(v4)
	} else {
		h.tally.Inc(v6)
	}
}

// refuse answers a malformed request with an error packet, within the
// client IP's error budget.
func (h *handler) refuse(out, txid []byte, ip netip.Addr, now int64, msg string) int {
	if !h.limiter.allow(ip, now) {
		h.tally.Inc(metrics.UDPRateLimited)
		return 0
	}
	h.tally.Inc(metrics.UDPErrors)
	return writeError(out, txid, msg)
}

func (h *handler) badConnectionID(out, txid []byte, ip netip.Addr, now int64) int {
	h.tally.Inc(metrics.UDPBadConnectionIDs)
	return h.refuse(out, txid, ip, now, msgBadConnectionID)
}

// trackerError sends a ClientError's text to the client; anything else is
// logged and answered with a generic message.
func (h *handler) trackerError(out, txid []byte, src netip.AddrPort, op string, err error) int {
	h.tally.Inc(metrics.UDPErrors)
	var ce *bittorrent.ClientError
	if errors.As(err, &ce) {
		// A key refusal reads as over HTTP; the others keep Torrust's
		// UDP prefix.
		prefix := prefixClientError
		if ce.Kind == bittorrent.KindAuth {
			prefix = bittorrent.AuthErrorPrefix
		}
		putHeader(out, actionError, txid)
		n := errorHdrLen + copy(out[errorHdrLen:], prefix)
		return n + copy(out[n:], ce.Msg)
	}
	h.logInternal(op, src, err)
	return writeError(out, txid, msgInternal)
}

func (h *handler) logInternal(op string, src netip.AddrPort, err error) {
	now := time.Now().Unix()
	if now == h.lastLog {
		h.suppressed++
		return
	}
	h.lastLog = now
	h.log.Error("UDP tracker "+op+" failed; the client got a generic error",
		"client", src.String(), "err", err, "suppressed_since_last", h.suppressed)
	h.suppressed = 0
}
