// Package wsload is the WebSocket (WebTorrent) tracker load generator, after
// aquatic's ws load tester: many connections from several loopback source
// addresses announce with offers, answer every offer they are handed, and
// count what the tracker sends them (announce answers, offers and answers
// relayed) per second, with the announce round-trip latency. An idle mode
// opens connections that announce once and stay, to measure the tracker's
// memory per idle connection.
package wsload

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/starling-tracker/starling/internal/loadgen/latency"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Config is one run.
type Config struct {
	// URL is the tracker, ws://host:port[/path].
	URL string
	// Connections is how many connections to open; Sources spreads them
	// over 127.0.0.1 .. 127.0.0.<Sources> (a loopback target only), so
	// neither the per-IP limit nor one address's ports run out.
	Connections int
	Sources     int
	// Torrents is how many torrents the connections announce to.
	Torrents int
	// Offers per announce, each with an SDP of OfferBytes.
	Offers     int
	OfferBytes int
	// Duration of the load (after every connection is open).
	Duration time.Duration
	// Idle opens the connections, announces once on each without offers
	// and holds them for Duration without further traffic.
	Idle bool
	// TargetPID, when set, is the tracker's process: its resident memory
	// is read before the connections open and after, for Idle runs.
	TargetPID int
	// Timeout bounds one announce round trip and each dial.
	Timeout time.Duration
	// Progress, when set, gets a line per second.
	Progress io.Writer
}

// Result is what a run measured.
type Result struct {
	Connections int           // opened
	Elapsed     time.Duration // of the load phase
	Announces   uint64        // announce answers received
	Offers      uint64        // offers received (relayed to us)
	Answers     uint64        // answers received (relayed to us)
	Errors      uint64        // failures, dial and read errors, timeouts
	FirstErr    string
	P50, P99    time.Duration // announce round trip
	Max         time.Duration
	// RSSBefore and RSSAfter are the target's resident memory in bytes
	// (0 without TargetPID).
	RSSBefore, RSSAfter int64
}

// Responses is everything the tracker sent, as aquatic counts responses.
func (r Result) Responses() uint64 { return r.Announces + r.Offers + r.Answers }

func (r Result) String() string {
	secs := r.Elapsed.Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "connections %d, %.1f s: %.0f responses/s (announce answers %.0f/s, offers %.0f/s, answers %.0f/s), errors %d",
		r.Connections, secs, float64(r.Responses())/secs, float64(r.Announces)/secs, float64(r.Offers)/secs, float64(r.Answers)/secs, r.Errors)
	if r.Announces > 0 {
		fmt.Fprintf(&b, "; announce round trip p50 %v p99 %v max %v", r.P50, r.P99, r.Max)
	}
	if r.RSSBefore > 0 {
		fmt.Fprintf(&b, "; target RSS %.1f MiB -> %.1f MiB, %.1f KiB per connection",
			float64(r.RSSBefore)/(1<<20), float64(r.RSSAfter)/(1<<20), float64(r.RSSAfter-r.RSSBefore)/1024/float64(max(r.Connections, 1)))
	}
	if r.FirstErr != "" {
		fmt.Fprintf(&b, " (first error: %s)", r.FirstErr)
	}
	return b.String()
}

type counters struct {
	announces, offers, answers, errors atomic.Uint64
	firstErr                           atomic.Pointer[string]
}

func (c *counters) fail(err error) {
	c.errors.Add(1)
	s := err.Error()
	c.firstErr.CompareAndSwap(nil, &s)
}

// Run opens the connections, runs the load (or holds them, Idle) for
// Duration, and closes them.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Connections < 1 || cfg.Torrents < 1 || cfg.Duration <= 0 {
		return Result{}, errors.New("wsload: connections, torrents and duration must be positive")
	}
	cfg.Sources = max(cfg.Sources, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	var res Result
	var cnt counters
	if cfg.TargetPID > 0 {
		res.RSSBefore = rss(cfg.TargetPID)
	}
	hashes := make([]string, cfg.Torrents)
	for i := range hashes {
		hashes[i] = randomID()
	}
	sdp := strings.Repeat("x", max(cfg.OfferBytes, 1))

	// Open every connection first, 64 dials at a time.
	conns := make([]*conn, cfg.Connections)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range conns {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx, cfg, i)
			if err != nil {
				cnt.fail(err)
				return
			}
			c.hash, c.peer, c.sdp, c.cnt, c.cfg = hashes[i%len(hashes)], randomID(), sdp, &cnt, &cfg
			conns[i] = c
		}()
	}
	wg.Wait()
	conns = slices.DeleteFunc(conns, func(c *conn) bool { return c == nil })
	res.Connections = len(conns)
	if len(conns) == 0 {
		return res, fmt.Errorf("wsload: no connection to %s opened: %s", cfg.URL, deref(cnt.firstErr.Load()))
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	hists := make([]latency.Hist, len(conns))
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(runCtx, &hists[i])
		}()
	}
	if cfg.Progress != nil {
		go progress(runCtx, cfg.Progress, &cnt)
	}
	<-runCtx.Done()
	res.Elapsed = time.Since(start)
	if cfg.Idle && cfg.TargetPID > 0 {
		res.RSSAfter = rss(cfg.TargetPID)
	}
	for _, c := range conns {
		c.ws.Close()
	}
	wg.Wait()

	var all latency.Hist
	for i := range hists {
		all.Merge(&hists[i])
	}
	res.Announces, res.Offers, res.Answers, res.Errors = cnt.announces.Load(), cnt.offers.Load(), cnt.answers.Load(), cnt.errors.Load()
	res.FirstErr = deref(cnt.firstErr.Load())
	res.P50, res.P99, res.Max = all.Quantile(0.5), all.Quantile(0.99), all.Max()
	if !cfg.Idle && cfg.TargetPID > 0 {
		res.RSSAfter = rss(cfg.TargetPID)
	}
	return res, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func progress(ctx context.Context, w io.Writer, cnt *counters) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n := cnt.announces.Load() + cnt.offers.Load() + cnt.answers.Load()
			fmt.Fprintf(w, "%d responses/s, %d errors\n", n-last, cnt.errors.Load())
			last = n
		}
	}
}

type conn struct {
	ws *websocket.Conn
	nc net.Conn // under ws: the writer writes its frames itself

	mu      sync.Mutex
	out     []byte // frames waiting for the writer
	spare   []byte // the buffer last written, for the next frames
	writing bool
	werr    error // the writer's failure, reported by the next send

	rbuf []byte // the message being read
	abuf []byte // the answer being built (by the reader)

	hash string
	peer string
	sdp  string
	cnt  *counters
	cfg  *Config
}

func dial(ctx context.Context, cfg Config, i int) (*conn, error) {
	d := &websocket.Dialer{HandshakeTimeout: cfg.Timeout}
	if cfg.Sources > 1 {
		src := net.IPv4(127, 0, 0, byte(1+i%cfg.Sources))
		d.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: cfg.Timeout}).DialContext
	}
	ws, _, err := d.DialContext(ctx, cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	return &conn{ws: ws, nc: ws.NetConn()}, nil
}

// The tracker's messages are told apart by their keys, and the ids read at
// fixed places: the generator's ids are 20 ASCII letters, which the tracker
// sends back as they are. Decoding every message with encoding/json made
// the generator, not the tracker, the bottleneck of a run.
var (
	keyInterval = []byte(`"interval":`)
	keyOffer    = []byte(`"offer":{`)
	keyAnswer   = []byte(`"answer":{`)
	keyFailure  = []byte(`"failure reason":`)
	keyPeerID   = []byte(`"peer_id":"`)
	keyOfferID  = []byte(`"offer_id":"`)
)

// idAfter returns the 20 characters after key in b (a slice of b).
func idAfter(b, key []byte) ([]byte, bool) {
	i := bytes.Index(b, key)
	if i < 0 || i+len(key)+20 > len(b) {
		return nil, false
	}
	return b[i+len(key) : i+len(key)+20], true
}

// run announces (one in flight) until ctx ends, answering the offers it
// is handed; in Idle mode it announces once and waits.
func (c *conn) run(ctx context.Context, h *latency.Hist) {
	answered := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		c.ws.Close()
	}()
	go c.read(ctx, answered)
	timeout := time.NewTimer(c.cfg.Timeout)
	defer timeout.Stop()
	first := true
	for ctx.Err() == nil {
		offers := c.cfg.Offers
		if c.cfg.Idle {
			offers = 0
		}
		sent := time.Now()
		if err := c.send(c.announce(first, offers)); err != nil {
			if ctx.Err() == nil {
				c.cnt.fail(err)
			}
			return
		}
		first = false
		timeout.Reset(c.cfg.Timeout)
		select {
		case <-answered:
			h.Record(time.Since(sent))
		case <-timeout.C:
			c.cnt.fail(errors.New("announce answer timed out"))
		case <-ctx.Done():
			return
		}
		if c.cfg.Idle {
			<-ctx.Done()
			return
		}
	}
}

func (c *conn) read(ctx context.Context, answered chan<- struct{}) {
	for {
		b, err := c.readMessage()
		if err != nil {
			if ctx.Err() == nil {
				c.cnt.fail(err)
			}
			return
		}
		switch {
		case bytes.Contains(b, keyFailure):
			// At the end, answers to peers already gone are refused.
			if ctx.Err() == nil {
				c.cnt.fail(errors.New(string(b)))
			}
			select {
			case answered <- struct{}{}:
			default:
			}
		case bytes.Contains(b, keyInterval):
			c.cnt.announces.Add(1)
			select {
			case answered <- struct{}{}:
			default:
			}
		case bytes.Contains(b, keyOffer):
			c.cnt.offers.Add(1)
			from, ok1 := idAfter(b, keyPeerID)
			offerID, ok2 := idAfter(b, keyOfferID)
			if !ok1 || !ok2 {
				c.cnt.fail(fmt.Errorf("offer without ids: %.200s", b))
				continue
			}
			c.abuf = c.answer(c.abuf[:0], from, offerID)
			if err := c.send(c.abuf); err != nil && ctx.Err() == nil {
				c.cnt.fail(err)
			}
		case bytes.Contains(b, keyAnswer):
			c.cnt.answers.Add(1)
		default:
			c.cnt.fail(fmt.Errorf("unexpected message: %.200s", b))
		}
	}
}

// readMessage reads the next message into the connection's buffer (valid
// until the next call): ReadMessage allocates each.
func (c *conn) readMessage() ([]byte, error) {
	_, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	b := c.rbuf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			c.rbuf = b
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// send queues b as a text frame and starts the writer if it is not
// running: what is queued while it writes goes out in its next write, as
// the tracker does, so the generator is not held back by a system call
// per message. b is copied.
func (c *conn) send(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.out = appendFrame(c.out, b)
	if !c.writing {
		c.writing = true
		go c.flush()
	}
	return nil
}

// appendFrame appends a client's text frame. A client's frames are masked;
// the key is zero, which leaves the payload as it is (the tracker cannot
// tell, and a load generator need not hide its bytes from proxies).
func appendFrame(dst, payload []byte) []byte {
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x81, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x81, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, payload...)
}

func (c *conn) flush() {
	for {
		c.mu.Lock()
		if len(c.out) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		b := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.Timeout))
		_, err := c.nc.Write(b)
		c.mu.Lock()
		c.spare = b[:0]
		if err != nil {
			c.werr = err
			c.writing = false
			c.out = c.out[:0]
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// The ids are 20 ASCII letters, so plain JSON strings carry them.

func (c *conn) announce(first bool, offers int) []byte {
	b := []byte(`{"action":"announce","info_hash":"` + c.hash + `","peer_id":"` + c.peer + `","left":1000,"numwant":` + strconv.Itoa(offers))
	if first {
		b = append(b, `,"event":"started"`...)
	}
	if offers > 0 {
		b = append(b, `,"offers":[`...)
		for i := range offers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"offer":{"type":"offer","sdp":"`+c.sdp+`"},"offer_id":"`+randomID()+`"}`...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (c *conn) answer(dst, to, offerID []byte) []byte {
	dst = append(dst, `{"action":"announce","info_hash":"`...)
	dst = append(dst, c.hash...)
	dst = append(dst, `","peer_id":"`...)
	dst = append(dst, c.peer...)
	dst = append(dst, `","to_peer_id":"`...)
	dst = append(dst, to...)
	dst = append(dst, `","offer_id":"`...)
	dst = append(dst, offerID...)
	dst = append(dst, `","answer":{"type":"answer","sdp":"`...)
	dst = append(dst, c.sdp...)
	return append(dst, `"}}`...)
}

func randomID() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 20)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

// rss reads a process's resident set size from /proc (Linux), 0 if it
// cannot.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
