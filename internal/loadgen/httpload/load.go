// Package httpload is the load generator behind "starling bench http": it
// announces and scrapes against an HTTP(S) tracker over keep-alive
// connections (or a new connection per request) with a configurable mix and
// concurrency, for a bounded time, and reports throughput, errors and
// latency percentiles.
//
// It speaks HTTP/1.1 on raw connections instead of using net/http's client:
// the generator must cost less CPU per request than the tracker it loads,
// and a request here is one write of prebuilt bytes and one buffered read.
package httpload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/starling-tracker/starling/internal/loadgen/latency"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	// URL is the tracker's base URL, e.g. http://127.0.0.1:7070 (https works).
	URL string
	// Key is a private tracker's peer key, put in the path (/announce/KEY).
	Key string
	// Duration bounds the run.
	Duration time.Duration
	// Concurrency is the number of connections, each with one request in flight.
	Concurrency int
	// ScrapeRatio is the fraction of requests that are scrapes (0..1).
	ScrapeRatio float64
	// NewConnPerRequest closes the connection after every request.
	NewConnPerRequest bool
	// Torrents and Peers size the simulated population: each announce is
	// from one of Peers ports for one of Torrents hashes.
	Torrents int
	Peers    int
	// Compact asks for compact answers.
	Compact bool
	// NumWant is sent when above 0.
	NumWant int
	// Timeout bounds each request (default 5 s).
	Timeout time.Duration
	// Progress, when not nil, receives one line per second.
	Progress io.Writer
}

// Result sums up a run.
type Result struct {
	Requests  uint64
	Answered  uint64 // requests answered with 200 (failure reasons included)
	Errors    uint64 // transport errors, non-200 statuses and failure reasons
	Failures  uint64 // of Errors, answers carrying a failure reason
	Elapsed   time.Duration
	P50, P90  time.Duration
	P99, Max  time.Duration
	FirstErr  string
	Announces uint64
	Scrapes   uint64
}

// RPS is the throughput of the run.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r Result) String() string {
	s := fmt.Sprintf("requests %d (announces %d, scrapes %d) in %.1fs: %.0f req/s, answered %d (%.0f/s), errors %d (failure reasons %d), latency p50 %v p90 %v p99 %v max %v",
		r.Requests, r.Announces, r.Scrapes, r.Elapsed.Seconds(), r.RPS(), r.Answered, float64(r.Answered)/r.Elapsed.Seconds(),
		r.Errors, r.Failures, r.P50, r.P90, r.P99, r.Max)
	if r.FirstErr != "" {
		s += "; first error: " + r.FirstErr
	}
	return s
}

type worker struct {
	cfg      *Config
	addr     string
	host     string
	tls      *tls.Config
	rng      *rand.Rand
	conn     net.Conn
	br       *bufio.Reader
	req      []byte
	body     []byte
	lat      latency.Hist
	requests atomic.Uint64
	errors   atomic.Uint64
	failures uint64
	// transportErrs are the requests not answered with 200: refused,
	// reset, timed out, or another status.
	transportErrs uint64
	ann, scr      uint64
	firstErr      string
}

// Run generates load until cfg.Duration has passed or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, fmt.Errorf("bench http: url %q: want http(s)://host:port", cfg.URL)
	}
	switch {
	case cfg.Concurrency < 0 || cfg.Duration < 0 || cfg.Torrents < 0 || cfg.Peers < 0 || cfg.Timeout < 0 || cfg.NumWant < 0:
		return Result{}, errors.New("bench http: concurrency, duration, torrents, peers, timeout and numwant must not be negative")
	case cfg.ScrapeRatio < 0 || cfg.ScrapeRatio > 1:
		return Result{}, fmt.Errorf("bench http: scrape ratio %g: want a fraction between 0 and 1", cfg.ScrapeRatio)
	}
	// Zero values are the defaults.
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Torrents == 0 {
		cfg.Torrents = 1000
	}
	if cfg.Peers == 0 {
		cfg.Peers = 10000
	}
	if cfg.Peers > 60000 {
		return Result{}, errors.New("bench http: at most 60000 peers (they are told apart by port)")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	var tlsCfg *tls.Config
	if u.Scheme == "https" {
		// A load generator measures the tracker, not the certificate chain;
		// test deployments use self-signed certificates.
		tlsCfg = &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname()}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = &worker{cfg: &cfg, addr: addr, host: u.Host, tls: tlsCfg,
			rng: rand.New(rand.NewPCG(uint64(i)+1, 0x5eed)), body: make([]byte, 0, 4096)}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress(ctx, cfg.Progress, workers, start)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var res Result
	var all latency.Hist
	for _, w := range workers {
		res.Requests += w.requests.Load()
		res.Answered += w.requests.Load() - w.transportErrs
		res.Errors += w.errors.Load()
		res.Failures += w.failures
		res.Announces += w.ann
		res.Scrapes += w.scr
		if res.FirstErr == "" {
			res.FirstErr = w.firstErr
		}
		all.Merge(&w.lat)
	}
	res.Elapsed = elapsed
	res.P50, res.P90, res.P99, res.Max = all.Quantile(0.50), all.Quantile(0.90), all.Quantile(0.99), all.Max()
	return res, nil
}

func progress(ctx context.Context, out io.Writer, workers []*worker, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastReq, lastErr uint64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var req, errs uint64
			for _, w := range workers {
				req += w.requests.Load()
				errs += w.errors.Load()
			}
			fmt.Fprintf(out, "%4.0fs  %8d req/s  %6d errors/s  total %d\n",
				now.Sub(start).Seconds(), req-lastReq, errs-lastErr, req)
			lastReq, lastErr = req, errs
		}
	}
}

func (w *worker) run(ctx context.Context) {
	defer w.close()
	for !w.ended(ctx) {
		scrape := w.cfg.ScrapeRatio > 0 && w.rng.Float64() < w.cfg.ScrapeRatio
		w.build(scrape)
		begin := time.Now()
		err := w.roundTrip(ctx)
		if err != nil && w.ended(ctx) {
			return // the run ended mid-request; not the tracker's error
		}
		w.lat.Record(time.Since(begin))
		w.requests.Add(1)
		if scrape {
			w.scr++
		} else {
			w.ann++
		}
		if err != nil {
			w.errors.Add(1)
			w.transportErrs++
			if w.firstErr == "" {
				w.firstErr = err.Error()
			}
			w.close()
			continue
		}
		if bytes.Contains(w.body, []byte("14:failure reason")) {
			w.errors.Add(1)
			w.failures++
			if w.firstErr == "" {
				w.firstErr = "failure reason: " + string(w.body)
			}
		}
		if w.cfg.NewConnPerRequest {
			w.close()
		}
	}
}

// ended reports whether the run is over; the connection deadline set from
// the run's end can fire a moment before ctx reports it.
func (w *worker) ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	end, ok := ctx.Deadline()
	return ok && !time.Now().Before(end)
}

// closeAfterServer waits for the server's close before closing: the side
// that closes first keeps the connection in TIME_WAIT, and on the client
// side that would use up the ephemeral ports within seconds at the rates a
// new-connection-per-request run reaches.
func (w *worker) closeAfterServer() {
	var one [1]byte
	w.br.Read(one[:]) // EOF, or an error at the deadline
	w.close()
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn, w.br = nil, nil
	}
}

const hexDigits = "0123456789ABCDEF"

func appendEscaped(b []byte, raw []byte) []byte {
	for _, c := range raw {
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

// hashOf is torrent i's info hash: the index, spread so hashes differ early.
func hashOf(i int) [20]byte {
	var h [20]byte
	v := uint64(i)*0x9E3779B97F4A7C15 + 1
	for j := range h {
		h[j] = byte(v >> (8 * (j % 8)))
		if j%8 == 7 {
			v = v*0xBF58476D1CE4E5B9 + uint64(i)
		}
	}
	return h
}

// build writes the next request into w.req.
func (w *worker) build(scrape bool) {
	b := w.req[:0]
	b = append(b, "GET /"...)
	if scrape {
		b = append(b, "scrape"...)
	} else {
		b = append(b, "announce"...)
	}
	if w.cfg.Key != "" {
		b = append(b, '/')
		b = append(b, w.cfg.Key...)
	}
	b = append(b, "?info_hash="...)
	t := w.rng.IntN(w.cfg.Torrents)
	h := hashOf(t)
	b = appendEscaped(b, h[:])
	if !scrape {
		p := w.rng.IntN(w.cfg.Peers)
		id := []byte("-SB0001-000000000000")
		for j, v := 19, p; v > 0; j, v = j-1, v/10 {
			id[j] = '0' + byte(v%10)
		}
		b = append(b, "&peer_id="...)
		b = appendEscaped(b, id)
		b = append(b, "&port="...)
		b = strconv.AppendInt(b, int64(1024+p), 10)
		b = append(b, "&uploaded=0&downloaded=0&left="...)
		if p%4 == 0 {
			b = append(b, '0') // a quarter are seeders
		} else {
			b = append(b, "1000"...)
		}
		if w.cfg.Compact {
			b = append(b, "&compact=1"...)
		}
		if w.cfg.NumWant > 0 {
			b = append(b, "&numwant="...)
			b = strconv.AppendInt(b, int64(w.cfg.NumWant), 10)
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, w.host...)
	if w.cfg.NewConnPerRequest {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\nUser-Agent: starling-bench\r\n\r\n"...)
	w.req = b
}

func (w *worker) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: w.cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", w.addr)
	if err != nil {
		return err
	}
	if w.tls != nil {
		tc := tls.Client(c, w.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return err
		}
		c = tc
	}
	w.conn = c
	w.br = bufio.NewReaderSize(c, 16<<10)
	return nil
}

// roundTrip sends w.req and reads one response into w.body. A keep-alive
// connection the server closed while idle is redialled once.
func (w *worker) roundTrip(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		fresh := w.conn == nil
		if fresh {
			if err := w.dial(ctx); err != nil {
				return fmt.Errorf("dial: %w", err)
			}
		}
		deadline := time.Now().Add(w.cfg.Timeout)
		if end, ok := ctx.Deadline(); ok && end.Before(deadline) {
			deadline = end // the run's end interrupts a request in flight
		}
		w.conn.SetDeadline(deadline)
		err := w.exchange()
		if err == nil {
			return nil
		}
		w.close()
		if fresh || attempt > 0 || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
			return err
		}
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// exchange writes the request and parses the status line, the headers
// (Content-Length and Connection) and the body.
func (w *worker) exchange() error {
	if _, err := w.conn.Write(w.req); err != nil {
		return err
	}
	line, err := w.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return fmt.Errorf("bad status line %q", line)
	}
	status := line[9:12]
	ok := string(status) == "200"
	statusText := string(bytes.TrimSpace(line))
	length, closeConn := -1, false
	for {
		line, err = w.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return fmt.Errorf("bad header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 || n > 1<<20 {
				return fmt.Errorf("bad Content-Length %q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Connection")):
			closeConn = bytes.EqualFold(value, []byte("close"))
		}
	}
	if length < 0 {
		if !closeConn {
			return errors.New("answer without Content-Length on a kept-alive connection")
		}
		// Delimited by the connection's close (net/http does this when the
		// client asked to close).
		w.body, err = io.ReadAll(io.LimitReader(w.br, 1<<20))
		w.close()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("status %s", statusText)
		}
		return nil
	}
	w.body = w.body[:0]
	if cap(w.body) < length {
		w.body = make([]byte, 0, length)
	}
	w.body = w.body[:length]
	if _, err := io.ReadFull(w.br, w.body); err != nil {
		return err
	}
	if closeConn {
		w.closeAfterServer()
	}
	if !ok {
		return fmt.Errorf("status %s", statusText)
	}
	return nil
}
