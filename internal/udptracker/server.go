// Package udptracker is the UDP tracker (BEP 15): the packet codec,
// stateless connection ids, a per-IP limit on error answers, and a server
// whose workers each own a SO_REUSEPORT socket and move datagrams in
// batches (recvmmsg/sendmmsg). The rules live behind the Tracker interface.
//
// In private mode an announce carries its peer key in BEP 41 URL data
// (udp://host:port/announce/KEY), which the rules check as they check an
// HTTP key; a scrape has no room for options, so it gets zeros, as a keyless
// HTTP scrape does. (Torrust does not start UDP trackers in private mode.)
package udptracker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// Defaults of Config.
const (
	DefaultCookieLifetime             = 120 * time.Second
	DefaultMaxConnectionIDErrorsPerIP = 10
	DefaultErrorWindow                = 10 * time.Second
	maxCookieLifetime                 = 24 * time.Hour
	// batchSize is how many datagrams one system call moves.
	batchSize = 64
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("udptracker: server closed")

// Config is one [[udp_trackers]] listener.
type Config struct {
	// BindAddress is host:port; port 0 picks a free port. 0.0.0.0 binds
	// IPv4 only, [::] both families (IPv4 clients are answered as IPv4).
	BindAddress string
	// IPv6Only makes an IPv6 wildcard address ([::]) serve IPv6 only
	// (ipv6_v6only); otherwise it is dual-stack.
	IPv6Only bool
	// Sockets is the number of SO_REUSEPORT sockets, each with its own
	// worker; 0 means one per core (GOMAXPROCS).
	Sockets int
	// CookieLifetime is how long a connection id stays valid (0: 120 s).
	CookieLifetime time.Duration
	// MaxConnectionIDErrorsPerIP caps the error answers (bad connection
	// ids and malformed requests) one IP gets per ErrorWindow; further
	// ones are dropped and counted as rate limited. 0 means the default
	// (10); negative means no limit.
	MaxConnectionIDErrorsPerIP int
	// ErrorWindow is the period of that limit (0: 10 s).
	ErrorWindow time.Duration
	// Clock gives the time for connection ids; nil means the wall clock.
	// The daemon passes its coarse clock, tests a manual one.
	Clock Clock
	// Latency, when set, observes each answered connect, announce and
	// scrape: the time from the batch read that brought the request to the
	// batch write that answered it (two clock reads per batch).
	Latency *metrics.Latency
	// Conns, when set, are sockets already bound to BindAddress (handed
	// over by the process this one upgrades); Listen takes them instead of
	// binding.
	Conns []*net.UDPConn
	// Private reads each announce's peer key from its BEP 41 URL data
	// ("/announce/KEY" or "/KEY") and refuses a malformed one; set it with
	// the tracker's private mode. Off, URL data is ignored.
	Private bool
	// Detach takes the sockets out of Go's netpoller once serving, each
	// worker blocking in recvmmsg itself (batch.Conn.Detach), as long as
	// the process keeps a P more than its detached sockets (see
	// DetachedSockets); the others stay in the netpoller.
	Detach bool
}

// detached counts the process's detached sockets: each one's worker
// holds a P while it waits, and Go's runtime takes Ps back from blocked
// goroutines (with a thread hand-off at every sysmon tick) when no P is
// left idle, so at most GOMAXPROCS-1 are.
var detached atomic.Int32

// DetachedSockets is how many sockets the process has taken out of Go's
// netpoller (Config.Detach).
func DetachedSockets() int { return int(detached.Load()) }

// Server is one UDP tracker listener.
type Server struct {
	cfg      Config
	tracker  Tracker
	counters *metrics.Counters
	log      *slog.Logger
	cookies  *cookies
	limiter  *limiter
	clock    Clock
	// private is Config.Private, which SetPrivate changes (a reload).
	private atomic.Bool
	// paused is set by Pause: workers park at their next read until
	// Resume closes resume.
	paused atomic.Bool
	resume chan struct{}
	parked sync.WaitGroup

	mu    sync.Mutex
	conns []*net.UDPConn
	// bconns are the workers' sockets once serving; Files, Pause and
	// Shutdown use them (a detached one no longer has its *net.UDPConn).
	bconns   []*batch.Conn
	detached int32 // how many of bconns are detached
	// handedOn is set once Files gave the sockets out (an upgrade): they
	// may live on in another process, so Shutdown must not shut them
	// for reading.
	handedOn bool
	addr     netip.AddrPort
	ready    chan struct{}
	serving  bool
	closing  atomic.Bool
	closed   chan struct{} // closed by the first Shutdown
	workers  sync.WaitGroup
	cancel   context.CancelFunc
	shutOnce sync.Once
}

type wallClock struct{}

func (wallClock) Now() int64 { return time.Now().Unix() }

// New builds a server; Listen binds it. counters may not be nil.
func New(cfg Config, t Tracker, counters *metrics.Counters, log *slog.Logger) (*Server, error) {
	if cfg.CookieLifetime == 0 {
		cfg.CookieLifetime = DefaultCookieLifetime
	}
	// Ids carry expBits bits of their expiry time (see cookies); the
	// limit keeps a lifetime well inside that range.
	if cfg.CookieLifetime < time.Second || cfg.CookieLifetime > maxCookieLifetime {
		return nil, fmt.Errorf("udp tracker %s: cookie_lifetime %v is out of range; set it between 1 and %d seconds",
			cfg.BindAddress, cfg.CookieLifetime, int(maxCookieLifetime/time.Second))
	}
	if cfg.MaxConnectionIDErrorsPerIP == 0 {
		cfg.MaxConnectionIDErrorsPerIP = DefaultMaxConnectionIDErrorsPerIP
	}
	if cfg.ErrorWindow <= 0 {
		cfg.ErrorWindow = DefaultErrorWindow
	}
	if cfg.Sockets <= 0 {
		cfg.Sockets = runtime.GOMAXPROCS(0)
	}
	if log == nil {
		log = slog.Default()
	}
	c, err := newCookies(uint32(cfg.CookieLifetime / time.Second))
	if err != nil {
		return nil, fmt.Errorf("udp tracker %s: %w", cfg.BindAddress, err)
	}
	s := &Server{
		cfg: cfg, tracker: t, counters: counters, log: log, cookies: c,
		limiter: newLimiter(cfg.MaxConnectionIDErrorsPerIP, int64(cfg.ErrorWindow/time.Second), c.k1, c.k0),
		clock:   cfg.Clock,
		ready:   make(chan struct{}),
		closed:  make(chan struct{}),
	}
	if s.clock == nil {
		s.clock = wallClock{}
	}
	s.private.Store(cfg.Private)
	return s, nil
}

// SetPrivate turns the reading of peer keys from URL data on or off, as
// the tracker's mode changes on a reload.
func (s *Server) SetPrivate(private bool) { s.private.Store(private) }

// SetMaxConnectionIDErrorsPerIP changes the error answers one IP gets per
// window (0: the default, negative: no limit), as on a reload.
func (s *Server) SetMaxConnectionIDErrorsPerIP(n int) {
	if n == 0 {
		n = DefaultMaxConnectionIDErrorsPerIP
	}
	s.limiter.setLimit(n)
}

// Listen binds the sockets and logs the bound address. After it returns,
// Addr is the bound address and Ready is closed.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return ErrServerClosed
	}
	if s.conns != nil {
		return errors.New("udp tracker: Listen called twice")
	}
	conns := s.cfg.Conns
	if conns == nil {
		var err error
		if conns, err = batch.ListenGroup(ctx, s.cfg.BindAddress, s.cfg.Sockets, s.cfg.IPv6Only); err != nil {
			return fmt.Errorf("udp tracker: %w", err)
		}
	}
	s.conns = conns
	s.addr = conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
	s.log.Info("UDP tracker listening on udp://"+s.addr.String(), "sockets", len(conns))
	close(s.ready)
	return nil
}

// Ready is closed once the sockets are bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address (valid after Listen).
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// ListenAndServe is Listen then Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(ctx); err != nil {
		return err
	}
	return s.Serve()
}

// Serve runs one worker per socket until Shutdown, then returns
// ErrServerClosed. Listen must have been called.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.conns == nil {
		s.mu.Unlock()
		return errors.New("udp tracker: Serve called before Listen")
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("udp tracker: Serve called twice")
	}
	s.serving = true
	// Requests see this context; Shutdown cancels it only when its own
	// deadline passes, so in-flight work normally completes.
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ws := make([]*worker, 0, len(s.conns))
	for _, uc := range s.conns {
		bc, err := batch.NewConn(uc, batchSize)
		if err != nil {
			s.mu.Unlock()
			cancel()
			return fmt.Errorf("udp tracker: %w", err)
		}
		if s.cfg.Detach {
			s.detach(bc)
		}
		s.bconns = append(s.bconns, bc)
		ws = append(ws, s.newWorker(bc))
	}
	s.workers.Add(len(ws))
	s.mu.Unlock()
	for _, w := range ws {
		go w.run(ctx)
	}
	<-s.closed
	return ErrServerClosed
}

// detach takes bc out of the netpoller if the process can spare the P
// its worker will hold.
func (s *Server) detach(bc *batch.Conn) {
	if detached.Add(1) > int32(runtime.GOMAXPROCS(0)-1) {
		detached.Add(-1)
		return
	}
	if err := bc.Detach(s.stopReading); err != nil {
		detached.Add(-1)
		s.log.Warn("UDP tracker socket stays in Go's netpoller", "addr", s.addr.String(), "err", err)
		return
	}
	s.detached++
}

// stopReading tells detached workers to stop waiting for datagrams (the
// read deadline that Pause and Shutdown set stops the others).
func (s *Server) stopReading() bool { return s.paused.Load() || s.closing.Load() }

// Shutdown stops the workers: reads are unblocked with a deadline, each
// worker finishes its batch, and the sockets are closed. It returns
// ctx.Err() if the workers did not finish in time (the sockets are closed
// anyway). Safe to call twice and before Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.mu.Lock()
		s.closing.Store(true)
		// Only reads: a worker between its read and its write still sends
		// the answers of the batch it is handling.
		past := time.Unix(1, 0)
		for _, c := range s.undetached() {
			_ = c.SetReadDeadline(past)
		}
		if !s.handedOn {
			// Detached workers would see closing within their wait.
			for _, c := range s.bconns {
				c.StopReading()
			}
		}
		s.mu.Unlock()
		close(s.closed)
	})
	done := make(chan struct{})
	go func() { s.workers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	if s.bconns == nil {
		for _, c := range s.conns {
			_ = c.Close()
		}
	} else if err == nil {
		for _, c := range s.bconns {
			_ = c.Close()
		}
		detached.Add(-s.detached)
		s.detached = 0
	} else {
		// A worker may still be in a call on its socket: the
		// netpoller's sockets can be closed under it, a detached one's
		// descriptor (which another socket could then reuse) cannot.
		for _, c := range s.undetached() {
			_ = c.Close()
		}
	}
	s.bconns = nil
	s.mu.Unlock()
	return err
}

// undetached are the sockets still in Go's netpoller, whose deadlines
// stop their workers' reads. Called with mu held.
func (s *Server) undetached() []*net.UDPConn {
	if s.bconns == nil {
		return s.conns
	}
	var out []*net.UDPConn
	for _, c := range s.bconns {
		if !c.Detached() {
			out = append(out, c.UDPConn())
		}
	}
	return out
}

// Files returns duplicates of the bound sockets' descriptors, to hand to
// another process (an upgrade); the caller closes them.
func (s *Server) Files() ([]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handedOn = true
	var out []*os.File
	for i, c := range s.conns {
		var f *os.File
		var err error
		if s.bconns != nil {
			f, err = s.bconns[i].File()
		} else {
			f, err = c.File()
		}
		if err != nil {
			for _, f := range out {
				f.Close()
			}
			return nil, fmt.Errorf("udp tracker %s: %w", s.addr, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// Pause stops reading: each worker sends the answers of the batch it has
// and waits. The sockets stay open, so requests queue in them (and reach
// whoever reads them next: Resume, or the process of an upgrade). It
// returns once every worker waits, or ctx's error.
func (s *Server) Pause(ctx context.Context) error {
	s.mu.Lock()
	if s.closing.Load() || !s.serving || s.paused.Load() {
		s.mu.Unlock()
		return errors.New("udp tracker: not serving")
	}
	s.resume = make(chan struct{})
	s.parked.Add(len(s.conns))
	s.paused.Store(true)
	past := time.Unix(1, 0)
	for _, c := range s.undetached() {
		_ = c.SetReadDeadline(past)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.parked.Wait(); close(done) }()
	// A detached worker waiting on a quiet socket would see the pause
	// within a second; woken, at once (again and again, as a wake just
	// before its wait is missed).
	wake := time.NewTicker(10 * time.Millisecond)
	defer wake.Stop()
	for {
		batch.WakeDetached()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-wake.C:
		}
	}
}

// Resume lets paused workers read again.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.paused.Load() {
		return
	}
	if !s.closing.Load() {
		for _, c := range s.undetached() {
			_ = c.SetReadDeadline(time.Time{})
		}
	}
	s.paused.Store(false)
	close(s.resume)
}

// park waits, after a read that Pause cut short, until Resume or Shutdown.
func (w *worker) park() {
	w.s.mu.Lock()
	ch := w.s.resume
	w.s.mu.Unlock()
	w.s.parked.Done()
	select {
	case <-ch:
	case <-w.s.closed:
	}
}

// worker owns one socket, its batches and its handler.
type worker struct {
	s    *Server
	conn *batch.Conn
	h    *handler
	rx   []batch.Message
	tx   []batch.Message
	lat  *metrics.LatencyStripe // nil: latency not observed
	ops  [batchSize]metrics.Op  // the kind of each answer in tx
	// prefetch is the tracker when it takes prefetch hints; hints holds
	// a batch's announces for it, and samples the randomness each
	// announce of the batch draws its peers from (see swarm.Hint), from
	// rng.
	prefetch prefetcher
	hints    [batchSize]swarm.Hint
	samples  [batchSize]uint64
	rng      uint64
	// fan handles a batch's requests at once when the store is remote
	// (fanout.go); nil with the memory store.
	fan *fanout
}

// prefetcher is implemented by a Tracker that can warm the caches for a
// batch of announces before they are handled (*tracker.Tracker over the
// memory store).
type prefetcher interface {
	Prefetch(hints []swarm.Hint)
}

func (s *Server) newWorker(c *batch.Conn) *worker {
	w := &worker{
		s:    s,
		conn: c,
		h:    newHandler(s.tracker, s.cookies, s.limiter, s.clock, s.counters.Stripe(), s.log, &s.private),
		rx:   make([]batch.Message, batchSize),
		tx:   make([]batch.Message, batchSize),
	}
	if s.cfg.Latency != nil {
		w.lat = s.cfg.Latency.Stripe()
	}
	w.prefetch, _ = s.tracker.(prefetcher)
	w.fan = newFanout(w)
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // never fails on Linux; a zero seed is still a sequence
	w.rng = binary.LittleEndian.Uint64(seed[:])
	rbuf := make([]byte, batchSize*recvBufLen)
	tbuf := make([]byte, batchSize*maxPayload4)
	for i := range w.rx {
		w.rx[i].Buf = rbuf[i*recvBufLen : (i+1)*recvBufLen : (i+1)*recvBufLen]
		w.tx[i].Buf = tbuf[i*maxPayload4 : (i+1)*maxPayload4 : (i+1)*maxPayload4]
	}
	return w
}

func (w *worker) run(ctx context.Context) {
	defer w.s.workers.Done()
	var lastErr time.Time
	for {
		n, err := w.conn.Recv(w.rx)
		if err != nil {
			if w.s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if batch.IsTimeout(err) {
				if w.s.paused.Load() {
					w.park()
				}
				continue
			}
			// An unexpected socket error (out of memory, say): log it at
			// most once a second and back off so it cannot spin a core.
			if time.Since(lastErr) > time.Second {
				w.s.log.Error("UDP tracker read failed", "addr", w.s.addr.String(), "err", err)
				lastErr = time.Now()
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var start time.Time
		if w.lat != nil {
			start = time.Now()
		}
		out := w.answer(ctx, n)
		if out == 0 {
			continue
		}
		_, err = w.conn.Send(w.tx[:out])
		if w.lat != nil {
			d := time.Since(start)
			for _, op := range w.ops[:out] {
				if op >= 0 {
					w.lat.Observe(op, d)
				}
			}
		}
		if err != nil {
			if w.s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if time.Since(lastErr) > time.Second {
				w.s.log.Error("UDP tracker write failed", "addr", w.s.addr.String(), "err", err)
				lastErr = time.Now()
			}
		}
	}
}

// answer handles the first n datagrams of rx, writes their answers to
// tx and returns how many there are.
func (w *worker) answer(ctx context.Context, n int) int {
	if w.fan != nil {
		return w.fan.answer(ctx, n)
	}
	prefetched := w.prefetch != nil && n > 1 && w.prefetchAnnounces(n)
	out := 0
	for i := 0; i < n; i++ {
		m := &w.rx[i]
		t := &w.tx[out]
		w.h.sample = 0
		if prefetched {
			w.h.sample = w.samples[i]
		}
		k := w.h.handle(ctx, m.Addr, m.Buf[:m.N], m.Truncated, t.Buf)
		if k > 0 {
			t.N, t.Addr, t.Scope = k, m.Addr, m.Scope
			w.ops[out] = answerOp(t.Buf[:k], m.Buf[:m.N])
			out++
		}
	}
	w.h.sample = 0
	// Counted before the answers leave, so a client that reads the
	// statistics after its answer finds its request in them.
	w.h.flush()
	return out
}

// prefetchAnnounces hands the announces among the first n received
// datagrams to the tracker, so the store can load what they need together
// (their cache misses overlap) before they are handled one by one, and
// reports whether it did. A lone request gains nothing from it and skips
// it. Each announce gets its sample's randomness here (w.samples), so the
// store can load the peers it will hand out too. The store reads without
// its locks there; should that ever panic, the worker stops prefetching
// rather than the server stopping.
func (w *worker) prefetchAnnounces(n int) (done bool) {
	defer func() {
		if v := recover(); v != nil {
			w.prefetch = nil
			w.h.stripe.Inc(metrics.Panics)
			w.s.log.Error("UDP tracker prefetch panicked; this socket's worker goes on without it",
				"addr", w.s.addr.String(), "panic", fmt.Sprint(v))
		}
	}()
	k := 0
	for i := range n {
		m := &w.rx[i]
		if p := m.Buf[:m.N]; len(p) >= announceLen && binary.BigEndian.Uint32(p[8:12]) == actionAnnounce {
			hn := &w.hints[k]
			copy(hn.InfoHash[:], p[16:36])
			hn.Addr = netip.AddrPortFrom(bittorrent.NormalizeAddr(m.Addr.Addr()), binary.BigEndian.Uint16(p[96:98]))
			hn.Seeder = binary.BigEndian.Uint64(p[64:72]) == 0
			hn.NumWant = int32(binary.BigEndian.Uint32(p[92:96]))
			hn.Sample = w.rand()
			w.samples[i] = hn.Sample
			k++
		} else {
			w.samples[i] = 0
		}
	}
	if k < 2 {
		return false
	}
	w.prefetch.Prefetch(w.hints[:k])
	return true
}

// rand is wyrand, as the memory store's shards use.
func (w *worker) rand() uint64 {
	w.rng += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(w.rng, w.rng^0xe7037ed1a0b428db)
	return hi ^ lo
}

// answerOp is the measured operation an answer belongs to, from its action
// field, or for an error answer from the request's (an error is timed
// with its request's kind, as the HTTP tracker times its failures); -1
// when neither names one.
func answerOp(answer, request []byte) metrics.Op {
	if len(answer) < 4 {
		return -1
	}
	action := binary.BigEndian.Uint32(answer[0:4])
	if action == actionError {
		if len(request) < headerLen {
			return -1
		}
		action = binary.BigEndian.Uint32(request[8:12])
	}
	switch action {
	case actionConnect:
		return metrics.UDPConnect
	case actionAnnounce:
		return metrics.UDPAnnounce
	case actionScrape:
		return metrics.UDPScrape
	default:
		return -1
	}
}
