// Package wstracker is the WebSocket (WebTorrent) tracker: browsers and
// other WebRTC peers announce over a WebSocket with WebRTC offers, and the
// tracker relays each offer to a few other WebSocket peers of the swarm and
// each answer back to the one peer whose offer it answers. The tracker
// never reads the SDP.
//
// WebSocket peers can only be reached through their connection, so they
// are kept here, by connection, and never handed to UDP or HTTP peers (nor
// those to them); the swarm store counts them (swarm.RelayCounter), so
// scrape, the API and the stats cover every transport.
//
// The WebSocket library is gorilla/websocket, for the upgrade and reading:
// its connection is a net.Conn with deadlines (an idle connection costs no
// timer goroutine: pongs and messages push the read deadline, the
// runtime's netpoller enforces it), it allocates no write buffer when given
// a pool, and its read buffer can be small. coder/websocket's Ping waits
// for the pong in the caller (a goroutine per ping). Writing is ours: a
// server's frames are a two-to-ten-byte header and the payload, unmasked,
// and a connection's writer puts all that is queued for it in one write
// (gorilla's WriteMessage is a system call per message, which a CPU profile
// under load showed as the largest cost left); reads go through a buffer
// lent while bytes wait (lend.go), so one read takes several messages.
package wstracker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/certs"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/tracker"
)

// Tracker is what the WebSocket tracker asks of the tracker's rules.
type Tracker interface {
	// Authorize applies the mode (peer key, whitelist) to an announce.
	Authorize(req *bittorrent.AnnounceRequest) error
	// Scrape answers counts (zeros where the mode hides them).
	Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error
	// CountRelayed tells the swarm store of WebSocket peers coming and
	// going, and returns the swarm's counts over every transport.
	CountRelayed(ctx context.Context, h bittorrent.InfoHash, seeders, leechers int32, completed bool) (bittorrent.SwarmStats, error)
	// Config gives the intervals and the mode.
	Config() tracker.Config
}

// Config is one [[websocket_trackers]] listener. Zero values take the
// defaults below.
type Config struct {
	// BindAddress is host:port; port 0 picks a free port.
	BindAddress string
	// TLSCertPath and TLSKeyPath (tls_config) turn on wss://. Both or
	// neither.
	TLSCertPath string
	TLSKeyPath  string
	// OnReverseProxy takes the client address from X-Forwarded-For (its
	// last entry) for the per-IP connection limit and the family counters.
	OnReverseProxy bool

	// MaxMessageBytes bounds one client message (64 KiB, as aquatic_ws):
	// a larger one closes the connection with 1009 (message too big).
	MaxMessageBytes int64
	// FullScrape answers a scrape without info_hash with the swarms that
	// have WebSocket peers (at most 1,000); off, it is refused, as
	// aquatic_ws refuses it (core.full_scrape = "public" turns it on).
	FullScrape bool
	// MaxOffers bounds the offers of one announce that are relayed (10,
	// as aquatic_ws); clients send at most 10, the reference client 5.
	MaxOffers int
	// MaxScrapeHashes bounds the hashes of one scrape (74, as HTTP).
	MaxScrapeHashes int
	// MaxPendingOffers bounds the offers a connection has relayed that
	// are still waiting for their answer; past it, further offers are
	// not relayed until some are answered or expire.
	MaxPendingOffers int
	// OfferTTL is how long an offer waits for its answer (120 s).
	OfferTTL time.Duration
	// MaxPeersPerConnection bounds the peers one connection announces: a
	// client shares one socket between all its torrents (and the clients
	// of one page share it too), one peer each.
	MaxPeersPerConnection int
	// MaxConnections bounds the open connections of this listener, and
	// MaxConnectionsPerIP those from one source address.
	MaxConnections      int
	MaxConnectionsPerIP int
	// PingInterval is how often the server pings every connection; one
	// that sends nothing (not even a pong) for two intervals is closed.
	PingInterval time.Duration
	// IdleTimeout closes a connection that sent no announce or scrape
	// for that long, and takes out of its swarm a peer that was not
	// announced again for that long.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a client (of what was queued for
	// it: one message or several).
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the HTTP upgrade request.
	HandshakeTimeout time.Duration
	// MaxQueuedMessages and MaxQueuedBytes bound what waits to be sent to
	// one connection; a client that reads slower than it is sent to is
	// closed, not buffered for.
	MaxQueuedMessages int
	MaxQueuedBytes    int
}

// Defaults of Config.
const (
	DefaultMaxMessageBytes       = 64 << 10
	DefaultMaxOffers             = 10
	DefaultMaxScrapeHashes       = 74
	DefaultMaxPendingOffers      = 100
	DefaultOfferTTL              = 120 * time.Second
	DefaultMaxPeersPerConnection = 1000
	DefaultMaxConnections        = 100_000
	DefaultMaxConnectionsPerIP   = 256
	DefaultPingInterval          = 60 * time.Second
	DefaultIdleTimeout           = 300 * time.Second
	DefaultWriteTimeout          = 10 * time.Second
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultMaxQueuedMessages     = 256
	DefaultMaxQueuedBytes        = 1 << 20
)

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	def(&c.MaxOffers, DefaultMaxOffers)
	def(&c.MaxScrapeHashes, DefaultMaxScrapeHashes)
	def(&c.MaxPendingOffers, DefaultMaxPendingOffers)
	def(&c.MaxPeersPerConnection, DefaultMaxPeersPerConnection)
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	def(&c.MaxQueuedMessages, DefaultMaxQueuedMessages)
	def(&c.MaxQueuedBytes, DefaultMaxQueuedBytes)
	defd(&c.OfferTTL, DefaultOfferTTL)
	defd(&c.PingInterval, DefaultPingInterval)
	defd(&c.IdleTimeout, DefaultIdleTimeout)
	defd(&c.WriteTimeout, DefaultWriteTimeout)
	defd(&c.HandshakeTimeout, DefaultHandshakeTimeout)
}

// readBufferSize is each connection's read buffer.
const readBufferSize = 512

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("websocket tracker: server closed")

// Server is one WebSocket tracker listener.
type Server struct {
	cfg      Config
	tracker  Tracker
	counters *metrics.Counters
	log      *slog.Logger
	tls      *tls.Config
	certs    *certs.Reloader
	upgrader websocket.Upgrader
	http     *http.Server
	reg      *registry
	// ctx is the connections' context, ended by Shutdown once they are
	// gone (net/http's request context ends when the upgrade returns).
	ctx    context.Context
	cancel context.CancelFunc

	// refusedTotal and refusedPerIP count upgrades refused at the caps
	// (starling_connections_refused_total).
	refusedTotal, refusedPerIP atomic.Uint64

	mu       sync.Mutex
	conns    map[*conn]struct{}
	perIP    map[netip.Addr]int // connections and upgrades under way, by source
	total    int                // the sum of perIP
	closed   bool
	addr     net.Addr
	ready    chan struct{}
	stop     chan struct{} // closed by Shutdown: ends the pinger and sweeper
	shutdown chan struct{} // closed when the first Shutdown has finished
	shutErr  error

	// wg counts every goroutine the server owns: per connection its
	// reader and, while it has something to send, its writer; the
	// pinger and the sweeper.
	wg sync.WaitGroup
}

// Certificates is the wss:// certificate, which a reload may replace (nil
// for ws://).
func (s *Server) Certificates() *certs.Reloader { return s.certs }

// New builds a server. The TLS certificate is loaded now, so a missing
// file stops start-up with its path in the error.
func New(cfg Config, t Tracker, counters *metrics.Counters, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if counters == nil {
		counters = metrics.NewCounters(1, false)
	}
	cfg.setDefaults()
	s := &Server{
		cfg: cfg, tracker: t, counters: counters, log: log,
		reg:      newRegistry(),
		conns:    make(map[*conn]struct{}),
		perIP:    make(map[netip.Addr]int),
		ready:    make(chan struct{}),
		stop:     make(chan struct{}),
		shutdown: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.TLSCertPath != "" || cfg.TLSKeyPath != "" {
		if cfg.TLSCertPath == "" || cfg.TLSKeyPath == "" {
			return nil, fmt.Errorf("websocket tracker %s: tls_config needs both ssl_cert_path and ssl_key_path", cfg.BindAddress)
		}
		pair, err := certs.Load(cfg.TLSCertPath, cfg.TLSKeyPath)
		if err != nil {
			return nil, fmt.Errorf("websocket tracker %s: tls_config: %w", cfg.BindAddress, err)
		}
		s.certs = certs.New(pair)
		s.tls = s.certs.Config()
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// A small read buffer of its own (net/http's 4 KiB one is let go):
		// an idle connection keeps it, and messages are read through it
		// in pieces. The write buffer comes from the pool and goes back
		// after each message, so an idle connection holds none.
		ReadBufferSize:  readBufferSize,
		WriteBufferPool: &sync.Pool{},
		// Trackers are used by pages of any origin (instant.io, βTorrent).
		CheckOrigin: func(*http.Request) bool { return true },
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve accepts connections on ln (wrapped in TLS when configured) until
// Shutdown, then returns ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.addr = ln.Addr()
	s.mu.Unlock()
	ln = lendListener{ln}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.log.Info(fmt.Sprintf("WebSocket tracker listening on %s", s.URL()))
	s.wg.Add(2)
	go s.pinger()
	go s.sweeper()
	close(s.ready)
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// ListenAndServe listens on BindAddress and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.BindAddress)
	if err != nil {
		return fmt.Errorf("websocket tracker: listen %s: %w", s.cfg.BindAddress, err)
	}
	return s.Serve(ln)
}

// Ready is closed once Serve accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the listening address (after Ready).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is ws://ADDR or wss://ADDR (after Ready).
func (s *Server) URL() string {
	scheme := "ws"
	if s.tls != nil {
		scheme = "wss"
	}
	return scheme + "://" + s.Addr().String()
}

// Connections is the number of open WebSocket connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, closes every connection with 1001 (going away;
// clients reconnect elsewhere or later), which takes their peers out of the
// swarms, and waits for the server's goroutines or ctx. Safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if !first {
		select {
		case <-s.shutdown:
			return s.shutErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	close(s.stop)
	err := s.http.Shutdown(ctx)
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(websocket.CloseGoingAway, "tracker shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.cancel()
	s.shutErr = err
	close(s.shutdown)
	return err
}

// ServeHTTP upgrades a request to a WebSocket connection, on any path: the
// last path segment is the peer key of a private tracker.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUpgradeRequired)
		_, _ = w.Write([]byte("This is a WebSocket (WebTorrent) tracker: announce over ws:// or wss://.\n"))
		return
	}
	ip := s.clientIP(r)
	if ok, status := s.admit(ip); !ok {
		http.Error(w, http.StatusText(status), status)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.release(ip)
		s.log.Debug("websocket tracker: upgrade failed", "remote", r.RemoteAddr, "error", err)
		return // the upgrader answered already
	}
	c := newConn(s, ws, ip, pathKey(r.URL.Path))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.release(ip)
		_ = ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	// The reader is a goroutine of its own, started with a small stack,
	// rather than net/http's, whose stack grew reading the upgrade
	// request and which would keep net/http's state of the connection.
	go c.serve(s.ctx)
}

// admit takes a connection slot for ip, or says which status refuses it.
func (s *Server) admit(ip netip.Addr) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return false, http.StatusServiceUnavailable
	case s.total >= s.cfg.MaxConnections:
		s.refusedTotal.Add(1)
		return false, http.StatusServiceUnavailable
	case s.perIP[ip] >= s.cfg.MaxConnectionsPerIP:
		s.refusedPerIP.Add(1)
		return false, http.StatusTooManyRequests
	}
	s.perIP[ip]++
	s.total++
	return true, 0
}

// Refused is how many upgrades the caps refused: in total
// (max_connections) and from one address (max_connections_per_ip).
func (s *Server) Refused() (total, perIP uint64) {
	return s.refusedTotal.Load(), s.refusedPerIP.Load()
}

func (s *Server) release(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(ip)
}

func (s *Server) releaseLocked(ip netip.Addr) {
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// forget is the end of a connection's reader. The connection leaves the
// set and gives back its slot in one hold of the lock, so no one sees it
// gone (Connections) while its slot is still taken.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.releaseLocked(c.ip)
}

func (s *Server) clientIP(r *http.Request) netip.Addr {
	if s.cfg.OnReverseProxy {
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return bittorrent.NormalizeAddr(a)
			}
		}
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return bittorrent.NormalizeAddr(ap.Addr())
}

// pathKey takes the peer key from the URL path's last segment:
// /announce/KEY or /KEY. "/", "/announce" and an empty segment carry none.
type key struct {
	raw string
	has bool
}

func pathKey(path string) key {
	path = strings.TrimSuffix(path, "/")
	i := strings.LastIndexByte(path, '/')
	last := path[i+1:]
	if last == "" || last == "announce" {
		return key{}
	}
	return key{raw: last, has: true}
}

// pinger pings every connection each PingInterval and closes those idle
// for IdleTimeout. A ping goes through the connection's writer; a client
// that does not read fails its write deadline or the queue's bounds and is
// closed.
func (s *Server) pinger() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			conns := make([]*conn, 0, len(s.conns))
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			for _, c := range conns {
				if now.Sub(time.Unix(0, c.lastRequest.Load())) > s.cfg.IdleTimeout {
					c.close(websocket.CloseNormalClosure, "idle")
					continue
				}
				// A connection being written to needs no ping: the write
				// fails on its own deadline if the client is gone.
				c.mu.Lock()
				busy := c.writing
				c.mu.Unlock()
				if !busy {
					// Queued, so the pinger never waits on a client.
					c.enqueue(opPing, nil)
				}
			}
		}
	}
}

// sweeper drops offers nobody answered in time and peers not announced
// again within IdleTimeout, every few seconds.
func (s *Server) sweeper() {
	defer s.wg.Done()
	every := min(s.cfg.OfferTTL/4, 15*time.Second)
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			gone := s.reg.sweep(now.UnixNano(), now.Add(-s.cfg.IdleTimeout).UnixNano())
			s.uncount(context.Background(), gone)
		}
	}
}

// uncount tells the store that peers left.
func (s *Server) uncount(ctx context.Context, gone []leaving) {
	for _, g := range gone {
		ds, dl := int32(0), int32(-1)
		if g.seeder {
			ds, dl = -1, 0
		}
		if _, err := s.tracker.CountRelayed(ctx, g.hash, ds, dl, false); err != nil {
			s.log.Warn("websocket tracker: uncount a peer", "info_hash", bittorrent.InfoHash(g.hash).String(), "error", err)
		}
	}
}
