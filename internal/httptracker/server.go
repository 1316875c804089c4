package httptracker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/starling-tracker/starling/internal/certs"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/requestid"
)

// Config is one [[http_trackers]] listener plus the [core.net] setting it
// needs. Zero durations and sizes take the defaults below.
type Config struct {
	// BindAddress is host:port for ListenAndServe; port 0 picks a free port.
	BindAddress string
	// TLSCertPath and TLSKeyPath (from tsl_config/tls_config) turn on HTTPS.
	// Both or neither.
	TLSCertPath string
	TLSKeyPath  string
	// OnReverseProxy takes the client address from X-Forwarded-For.
	OnReverseProxy bool
	// MaxScrapeTorrents caps the hashes answered per scrape (default 74).
	MaxScrapeTorrents int
	// ReadTimeout bounds reading one request, headers included (default 5 s,
	// Torrust's request timeout).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one answer (default 5 s).
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection (default 60 s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus headers (default 16 KiB,
	// or what a scrape of MaxScrapeTorrents percent-encoded hashes needs
	// when that is more: 74 of them are about 5 KiB).
	MaxHeaderBytes int
	// Latency, when set, observes the time from a parsed request to its
	// encoded answer (metrics.HTTPAnnounce, metrics.HTTPScrape).
	Latency *metrics.Latency
	// FullScrape, when set, answers a scrape without info_hash with every
	// torrent (core.full_scrape); nil refuses it, as Torrust does.
	FullScrape *FullScrape
}

// Defaults of Config.
const (
	DefaultReadTimeout    = 5 * time.Second
	DefaultWriteTimeout   = 5 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultMaxHeaderBytes = 16 << 10
	// scrapeHashBytes is one hash of a scrape's query: "info_hash=", 20
	// bytes percent-encoded, "&".
	scrapeHashBytes = len("info_hash=") + 3*20 + 1
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("http tracker: server closed")

// Server is one HTTP(S) tracker listener. fasthttp carries the connections:
// it was measured faster than net/http on the announce path (BENCHMARKS.md,
// "HTTP tracker"), and it covers what the tracker needs of a server: TLS
// through a tls listener, read/write/idle timeouts, a bounded header buffer,
// IPv6 and graceful shutdown.
type Server struct {
	cfg     Config
	handler *Handler
	log     *slog.Logger
	tls     *tls.Config
	certs   *certs.Reloader // with tls: the certificate a reload replaces
	fast    *fasthttp.Server

	mu        sync.Mutex
	closed    bool
	listeners []net.Listener
	addr      net.Addr
	ready     chan struct{}
	shutdown  chan struct{} // closed when the first Shutdown has finished waiting
	shutErr   error
}

// Certificates is the HTTPS certificate, which a reload may replace (nil
// for plain HTTP).
func (s *Server) Certificates() *certs.Reloader { return s.certs }

// New builds a server. It loads the TLS certificate and key now, so a
// missing or unreadable file stops start-up with its path in the error.
func New(cfg Config, t Tracker, counters *metrics.Counters, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		// An operator who raises max_scrape_torrents gets requests that
		// long read, not refused with 431 before the cap can apply.
		cfg.MaxHeaderBytes = max(DefaultMaxHeaderBytes, cfg.MaxScrapeTorrents*scrapeHashBytes+4<<10)
	}
	s := &Server{cfg: cfg, log: log, ready: make(chan struct{})}
	if cfg.TLSCertPath != "" || cfg.TLSKeyPath != "" {
		if cfg.TLSCertPath == "" || cfg.TLSKeyPath == "" {
			return nil, fmt.Errorf("http tracker %s: tls config needs both ssl_cert_path and ssl_key_path", cfg.BindAddress)
		}
		pair, err := certs.Load(cfg.TLSCertPath, cfg.TLSKeyPath)
		if err != nil {
			return nil, fmt.Errorf("http tracker %s: tsl_config: %w", cfg.BindAddress, err)
		}
		s.certs = certs.New(pair)
		s.tls = s.certs.Config()
	}
	s.handler = NewHandler(cfg, t, counters, log)
	s.fast = &fasthttp.Server{
		Handler:                       s.handler.ServeFastHTTP,
		ErrorHandler:                  errorHandler,
		NoDefaultServerHeader:         true, // Torrust sends none; nothing else in the answers changes
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		ReadBufferSize:                cfg.MaxHeaderBytes,
		MaxRequestBodySize:            4 << 10, // GET only; a body is never read
		DisableHeaderNamesNormalizing: false,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		CloseOnShutdown:               true,
		Logger:                        newFastLogger(log),
	}
	return s, nil
}

// Handler returns the handler core, for serving it through net/http.
func (s *Server) Handler() *Handler { return s.handler }

// errorHandler answers requests fasthttp could not read (too large, timed
// out, malformed) with a status and no body.
func errorHandler(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Header.SetCanonical(headerRequestID, requestid.AppendNew(nil))
	var big *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &big):
		ctx.SetStatusCode(fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.SetStatusCode(fasthttp.StatusRequestEntityTooLarge)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ctx.SetStatusCode(fasthttp.StatusRequestTimeout)
		} else {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
		}
	}
	ctx.SetConnectionClose()
}

// fastLogger routes fasthttp's own messages to slog. A connection's
// errors are the client's doing (a malformed or oversized request,
// already answered with 400 or 431) and carry up to a whole request
// buffer: they go to debug, cut short. Anything else (accept errors such
// as running out of file descriptors) is the operator's business: warn,
// at most one message a second, so that neither clients nor a failing
// accept loop can flood the log.
type fastLogger struct {
	log   *slog.Logger
	limit *logLimit
}

func newFastLogger(log *slog.Logger) fastLogger {
	return fastLogger{log: log, limit: &logLimit{every: time.Second}}
}

// maxLoggedMessage bounds the text of one fasthttp message in the log.
const maxLoggedMessage = 256

func (l fastLogger) Printf(format string, args ...any) {
	level := slog.LevelWarn
	if strings.HasPrefix(format, "error when serving connection") {
		level = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	suppressed, ok := l.limit.allow(time.Now())
	if !ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxLoggedMessage {
		msg = strings.ToValidUTF8(msg[:maxLoggedMessage], "") + "…"
	}
	attrs := []slog.Attr{}
	if suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	}
	l.log.LogAttrs(context.Background(), level, "http tracker: "+msg, attrs...)
}

// logLimit lets one message through per interval and counts the others.
type logLimit struct {
	every      time.Duration
	mu         sync.Mutex
	next       time.Time
	suppressed uint64
}

// allow reports whether a message may be logged at now, and how many were
// held back since the last one that was.
func (l *logLimit) allow(now time.Time) (suppressed uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return 0, false
	}
	l.next = now.Add(l.every)
	suppressed, l.suppressed = l.suppressed, 0
	return suppressed, true
}

// ListenAndServe opens cfg.BindAddress and serves it.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.BindAddress)
	if err != nil {
		return fmt.Errorf("http tracker: listen on %s (is the address free and valid?): %w", s.cfg.BindAddress, err)
	}
	return s.Serve(ln)
}

// Serve answers requests on ln (which the caller opened) until Shutdown.
// It logs the bound address, closes Ready, and returns ErrServerClosed after
// Shutdown. Serve takes ownership of ln.
func (s *Server) Serve(ln net.Listener) error {
	ln = newAcceptRetry(ln, s.log)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	first := s.addr == nil
	if first {
		s.addr = ln.Addr()
	}
	s.mu.Unlock()
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
		ln = tls.NewListener(ln, s.tls)
	}
	s.log.Info(fmt.Sprintf("HTTP tracker listening on %s://%s", scheme, ln.Addr()))
	if first {
		close(s.ready)
	}
	err := s.fast.Serve(ln)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	if err == nil {
		err = errors.New("listener stopped")
	}
	return fmt.Errorf("http tracker %s: serve: %w", ln.Addr(), err)
}

// Ready is closed once Serve has bound its listener; Addr is valid then.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address of the first listener Serve was given (nil before).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the tracker's base URL once Ready, for example http://127.0.0.1:7070.
func (s *Server) URL() string {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	return scheme + "://" + s.Addr().String()
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish and waits for their connections to close, or returns
// ctx.Err() when ctx ends first. It is safe to call more than once; later
// calls wait for the first one's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		done := s.shutdown
		s.mu.Unlock()
		select {
		case <-done:
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.shutErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.closed = true
	s.shutdown = make(chan struct{})
	// Closing the listeners ourselves covers a Serve that has not yet handed
	// its listener to fasthttp.
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	err := s.fast.ShutdownWithContext(ctx)
	if err != nil && ctx.Err() == nil {
		err = nil // only the listeners' close errors: they are closed either way
	}
	s.mu.Lock()
	s.shutErr = err
	close(s.shutdown)
	s.mu.Unlock()
	return err
}
