package wstracker

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
)

const (
	eventStopped   = bittorrent.EventStopped
	eventCompleted = bittorrent.EventCompleted
	// maxFullScrape bounds the swarms a full scrape lists.
	maxFullScrape = 1000
)

// conn is one client's WebSocket. Its reader is a goroutine of its own
// (serve); a writer goroutine runs only while messages wait in its queue,
// so an idle connection holds one goroutine.
type conn struct {
	srv    *Server
	ws     *websocket.Conn
	ip     netip.Addr
	v6     bool
	key    bittorrent.Key
	hasKey bool
	badKey bool // a key in the path that is not 32 alphanumerics
	stripe *metrics.Stripe

	lastRequest atomic.Int64 // unix nanoseconds of the last announce or scrape
	pending     atomic.Int32 // offers relayed from here, waiting for an answer

	// nc is the socket under ws. The writer writes frames to it itself,
	// several in one write (gorilla's WriteMessage is a system call per
	// message); gorilla writes only its control frames on close and on
	// protocol errors, each in one Write, which net.Conn keeps whole.
	nc net.Conn

	mu sync.Mutex
	// out holds frames waiting for the writer, encoded (a pooled buffer;
	// nil while nothing waits), outMsgs how many, outBytes their payloads.
	out      *[]byte
	outMsgs  int
	outBytes int
	// queuedMsgs and queued (payload bytes) count the frames waiting and
	// those being written, for the bounds.
	queuedMsgs int
	queued     int
	writing    bool
	closed     bool
	// writeBy is the write deadline last set (by the writer, one at a
	// time).
	writeBy time.Time
	// peers are the peers this connection announced (the registry changes
	// it under the swarm's shard lock); nil until the first.
	peers map[peerKey]struct{}

	// out1 builds the messages of the one being handled (only the
	// reader uses it; send copies them): a pooled buffer, held only while
	// a message is handled.
	out1 []byte

	// flushFn is c.flush, bound once: `go c.flush()` allocates a closure
	// each time.
	flushFn func()

	closeOnce sync.Once
}

func newConn(s *Server, ws *websocket.Conn, ip netip.Addr, k key) *conn {
	c := &conn{srv: s, ws: ws, nc: ws.NetConn(), ip: ip, v6: ip.Is6(), stripe: s.counters.Stripe()}
	if k.has {
		var err error
		c.key, err = bittorrent.ParseKey(k.raw)
		c.hasKey, c.badKey = err == nil, err != nil
	}
	c.flushFn = c.flush
	c.lastRequest.Store(time.Now().UnixNano())
	return c
}

// serve reads messages until the connection fails or is closed, then takes
// the connection's peers out of their swarms.
func (c *conn) serve(ctx context.Context) {
	s := c.srv
	defer func() {
		if p := recover(); p != nil {
			c.stripe.Inc(metrics.Panics)
			s.log.Error("websocket tracker: panic", "remote", c.ip, "panic", p)
		}
		c.close(websocket.CloseNormalClosure, "")
		s.uncount(ctx, s.reg.removeConn(c))
		s.forget(c)
		s.wg.Done()
	}()
	ws := c.ws
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	idle := 2*s.cfg.PingInterval + s.cfg.WriteTimeout
	var readBy time.Time // the read deadline last set
	alive := func() {
		// Moved on at most every sixteenth of it: setting a deadline
		// moves a runtime timer, a cost per message otherwise.
		if now := time.Now(); now.Add(idle).Sub(readBy) >= idle/16 {
			readBy = now.Add(idle)
			_ = ws.SetReadDeadline(readBy)
		}
	}
	alive()
	ws.SetPongHandler(func(string) error { alive(); return nil })
	ws.SetPingHandler(func(data string) error {
		alive()
		// The pong goes out through the writer, in order with the rest.
		c.enqueue(opPong, []byte(data))
		return nil
	})
	for {
		typ, r, err := ws.NextReader()
		if err != nil {
			return
		}
		bp := msgBufs.Get().(*[]byte)
		msg, err := readAll(r, (*bp)[:0])
		if err != nil {
			return
		}
		alive()
		if typ == websocket.TextMessage || typ == websocket.BinaryMessage {
			c.lastRequest.Store(time.Now().UnixNano())
			ob := msgBufs.Get().(*[]byte)
			c.out1 = (*ob)[:0]
			c.handle(ctx, msg)
			if cap(c.out1) <= msgBufSize {
				*ob = c.out1[:0]
				msgBufs.Put(ob)
			}
			c.out1 = nil
		}
		// Nothing keeps msg after handle: relayed offers and answers
		// were copied into the messages sent.
		if cap(msg) <= msgBufSize {
			*bp = msg[:0]
			msgBufs.Put(bp)
		}
	}
}

// msgBufs hold messages while they are handled: a read buffer that grows
// per message, as ReadMessage's does, was several allocations and copies
// for each, and a buffer this size lets bufio hand the socket's bytes
// over in one read. A connection holds one only while a message arrives.
const msgBufSize = 4096

var msgBufs = sync.Pool{New: func() any { b := make([]byte, 0, msgBufSize); return &b }}

// readAll reads r into b (from its length on), growing it as needed; the
// read limit bounds it.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// requests are reused between messages (with their offers' arrays), so
// a message is read without allocating.
var requests = sync.Pool{New: func() any { return new(request) }}

func (c *conn) handle(ctx context.Context, msg []byte) {
	s := c.srv
	q := requests.Get().(*request)
	defer func() {
		// Nothing in the pool points into msg.
		clear(q.offers)
		clear(q.wireOffers)
		clear(q.picked)
		clear(q.targets)
		q.answer = nil
		requests.Put(q)
	}()
	if err := parseInto(q, msg, limits{maxOffers: s.cfg.MaxOffers, maxHashes: s.cfg.MaxScrapeHashes}); err != nil {
		c.fail(q, err.Error())
		return
	}
	switch {
	case q.action == actionScrape:
		c.scrape(ctx, q)
	case q.answer != nil:
		c.answer(q)
	default:
		c.announce(ctx, q)
	}
}

func (c *conn) announce(ctx context.Context, q *request) {
	s := c.srv
	cfg := s.tracker.Config()
	if cfg.Private && c.badKey {
		c.fail(q, bittorrent.AuthErrorPrefix+bittorrent.ErrKeyFormat.Msg)
		return
	}
	// In the pooled request: passed to an interface, it would escape.
	areq := &q.areq
	*areq = bittorrent.AnnounceRequest{InfoHash: q.infoHash, PeerID: q.peerID, Key: c.key, HasKey: c.hasKey}
	if err := s.tracker.Authorize(areq); err != nil {
		c.failErr(q, err)
		return
	}
	ch, targets, err := s.reg.announce(c, q, time.Now().UnixNano(), &s.cfg)
	if err != nil {
		c.fail(q, err.Error())
		return
	}
	st, err := s.tracker.CountRelayed(ctx, q.infoHash, ch.seeders, ch.leechers, ch.completed)
	if err != nil {
		c.failErr(q, err)
		return
	}
	if c.v6 {
		c.stripe.Inc(metrics.WS6Announces)
	} else {
		c.stripe.Inc(metrics.WS4Announces)
	}
	c.out1 = appendAnnounceResponse(c.out1[:0], &q.infoHash, cfg.Interval, st)
	c.send(c.out1)
	if len(targets) == 0 {
		return
	}
	b := appendRelayHead(c.out1[:0], &q.infoHash, &q.peerID)
	head := len(b)
	for _, t := range targets {
		o := &q.offers[t.offer]
		b = appendRelayTail(b[:head], &o.id, "offer", o.sdp)
		if t.c.send(b) {
			c.stripe.Inc(metrics.WSOffersRelayed)
		}
	}
	c.out1 = b
}

func (c *conn) answer(q *request) {
	s := c.srv
	to, err := s.reg.answer(c, q, time.Now().UnixNano())
	if err != nil {
		c.fail(q, err.Error())
		return
	}
	c.out1 = appendRelay(c.out1[:0], &q.infoHash, &q.peerID, &q.offerID, "answer", q.answer)
	if to.send(c.out1) {
		c.stripe.Inc(metrics.WSAnswersRelayed)
	}
}

func (c *conn) scrape(ctx context.Context, q *request) {
	s := c.srv
	hashes := q.hashes
	if q.allHashes {
		if !s.cfg.FullScrape {
			c.fail(q, "Full scrapes are not allowed")
			return
		}
		hashes = s.reg.hashes(maxFullScrape)
	}
	// A JSON object's keys are unique: a hash asked twice is answered
	// once (at most MaxScrapeHashes to compare; the registry's are unique).
	uniq := make([]bittorrent.InfoHash, 0, len(hashes))
	for _, h := range hashes {
		if q.allHashes || !slices.Contains(uniq, h) {
			uniq = append(uniq, h)
		}
	}
	req := bittorrent.ScrapeRequest{InfoHashes: uniq, Key: c.key, HasKey: c.hasKey}
	var resp bittorrent.ScrapeResponse
	if err := s.tracker.Scrape(ctx, &req, &resp); err != nil {
		c.failErr(q, err)
		return
	}
	files := make([]scrapeFile, len(uniq))
	for i := range uniq {
		files[i] = scrapeFile{hash: uniq[i], st: resp.Files[i]}
	}
	if c.v6 {
		c.stripe.Inc(metrics.WS6Scrapes)
	} else {
		c.stripe.Inc(metrics.WS4Scrapes)
	}
	c.out1 = appendScrape(c.out1[:0], files, q.single, s.tracker.Config().MinInterval)
	c.send(c.out1)
}

// failErr sends a refusal by the tracker's rules with the texts HTTP uses;
// anything but a client error is logged and sent as a generic failure.
func (c *conn) failErr(q *request, err error) {
	var ce *bittorrent.ClientError
	if !errors.As(err, &ce) {
		c.srv.log.Warn("websocket tracker: request failed", "remote", c.ip, "error", err)
		c.fail(q, "Tracker error: internal error")
		return
	}
	switch ce.Kind {
	case bittorrent.KindAuth:
		c.fail(q, bittorrent.AuthErrorPrefix+ce.Msg)
	case bittorrent.KindTracker:
		c.fail(q, "Tracker error: "+ce.Msg)
	default:
		c.fail(q, ce.Msg)
	}
}

func (c *conn) fail(q *request, reason string) {
	var h *id
	if q.hasHash {
		h = &q.infoHash
	}
	c.stripe.Inc(metrics.WSErrors)
	c.out1 = appendFailure(c.out1[:0], q.action, h, reason)
	c.send(c.out1)
}

// Frame opcodes (RFC 6455 5.2) of what the writer sends.
const (
	opText = websocket.TextMessage
	opPing = websocket.PingMessage
	opPong = websocket.PongMessage
)

// appendFrame appends one final, unmasked frame (a server's frames are not
// masked) holding payload.
func appendFrame(dst []byte, op int, payload []byte) []byte {
	b0 := 0x80 | byte(op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// outBufs hold a connection's encoded frames from the first queued until
// the writer has written them; an idle connection holds none. One that
// grew past maxOutBuf (a burst of large offers) is left to the GC.
const (
	outBufSize = 8 << 10
	maxOutBuf  = 64 << 10
)

var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, outBufSize); return &b }}

func putOut(bp *[]byte) {
	if cap(*bp) <= maxOutBuf {
		*bp = (*bp)[:0]
		outBufs.Put(bp)
	}
}

// dropOut lets go of the frames not written (c.mu held).
func (c *conn) dropOut() {
	if c.out != nil {
		putOut(c.out)
	}
	c.out, c.outMsgs, c.outBytes = nil, 0, 0
	c.queuedMsgs, c.queued = 0, 0
}

// send queues a text message for the client; msg is copied, so the caller
// may reuse it. It reports whether msg was queued.
func (c *conn) send(msg []byte) bool { return c.enqueue(opText, msg) }

// enqueue encodes a frame onto the connection's queue and starts the
// writer if it is not running. A client that lets MaxQueuedMessages or
// MaxQueuedBytes pile up (it reads slower than its swarms send to it) is
// closed: the tracker does not buffer for it.
func (c *conn) enqueue(op int, payload []byte) bool {
	cfg := &c.srv.cfg
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if c.queuedMsgs >= cfg.MaxQueuedMessages || c.queued+len(payload) > cfg.MaxQueuedBytes {
		c.mu.Unlock()
		c.srv.log.Debug("websocket tracker: closing a client that does not read", "remote", c.ip)
		c.close(0, "")
		return false
	}
	if c.out == nil {
		c.out = outBufs.Get().(*[]byte)
	}
	*c.out = appendFrame(*c.out, op, payload)
	c.outMsgs++
	c.outBytes += len(payload)
	c.queuedMsgs++
	c.queued += len(payload)
	if !c.writing {
		c.writing = true
		// The reader holds its own count in wg until it has set closed,
		// so this Add never races Shutdown's Wait.
		c.srv.wg.Add(1)
		go c.flushFn()
	}
	c.mu.Unlock()
	return true
}

// flush writes what is queued, all of it in one write, until nothing is
// left. Frames count against the queue's bounds until they are written;
// WriteTimeout bounds each write.
func (c *conn) flush() {
	defer c.srv.wg.Done()
	// Let the goroutines ready to run (readers with messages waiting) go
	// first: what they queue for this client joins this write.
	runtime.Gosched()
	for {
		c.mu.Lock()
		if c.out == nil || c.closed {
			c.writing = false
			c.dropOut()
			c.mu.Unlock()
			return
		}
		bp, msgs, bytes := c.out, c.outMsgs, c.outBytes
		c.out, c.outMsgs, c.outBytes = nil, 0, 0
		c.mu.Unlock()
		// As the read deadline, moved on at most every sixteenth of it.
		if wt, now := c.srv.cfg.WriteTimeout, time.Now(); now.Add(wt).Sub(c.writeBy) >= wt/16 {
			c.writeBy = now.Add(wt)
			_ = c.nc.SetWriteDeadline(c.writeBy)
		}
		_, err := c.nc.Write(*bp)
		putOut(bp)
		c.mu.Lock()
		c.queuedMsgs -= msgs
		c.queued -= bytes
		c.mu.Unlock()
		if err != nil {
			c.close(0, "")
			c.mu.Lock()
			c.writing = false
			c.dropOut()
			c.mu.Unlock()
			return
		}
	}
}

// close ends the connection: with a close frame when code is not 0 (given
// a tenth of a second, so a client that does not read cannot hold up the
// caller), then the socket, which ends the reader.
func (c *conn) close(code int, text string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		if !c.writing {
			// A running writer lets go of its buffers itself.
			c.dropOut()
		}
		c.mu.Unlock()
		if code != 0 {
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(100*time.Millisecond))
		}
		_ = c.ws.Close()
	})
}
