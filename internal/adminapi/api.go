// Package adminapi is the REST API v1 of Torrust Tracker v3 (/api/v1 on
// [http_api] bind_address): statistics, torrents, whitelist and peer keys,
// with Torrust's paths, JSON shapes, status codes and error texts, so the
// Torrust Index and operators' scripts keep working. It also serves the
// Prometheus metrics (/metrics, and /api/v1/metrics behind the token).
package adminapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/requestid"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Config are the API's settings, from [http_api].
type Config struct {
	// AccessTokens is [http_api.access_tokens]: label → token. Every token
	// grants full access. Empty tokens are ignored: an empty ?token= never
	// grants access.
	AccessTokens map[string]string
	// HandlerTimeout answers 408 when a request takes longer (default 5 s,
	// as in Torrust).
	HandlerTimeout time.Duration
	// MaxBodyBytes bounds request bodies (default 64 KiB).
	MaxBodyBytes int64
	// MetricsNeedToken protects /metrics with the access token too. Off by
	// default: /metrics exposes only counts, the API listens on loopback by
	// default, and Prometheus scrapers are simplest to set up without one.
	// /api/v1/metrics always needs the token.
	MetricsNeedToken bool
	// Logger receives one debug line per request (route pattern, never the
	// path or query) and warnings for failed operations.
	Logger *slog.Logger
}

// Deps are the data the API reads and changes.
type Deps struct {
	Store swarm.Store
	Lists *access.Lists
	// Counters are the tracker's request counters (nil: all zero).
	Counters *metrics.Counters
	// Metrics serves /metrics (nil: /metrics is 404).
	Metrics http.Handler
	// Now is the clock for key expiry (nil: time.Now).
	Now func() time.Time
	// FullScrape serves GET /api/v1/scrape/full (nil: 404, as with
	// core.full_scrape = "off").
	FullScrape *fullscrape.Builder
	// Reload reads the configuration again and applies it, as SIGHUP does,
	// for POST /api/v1/reload (nil: 404).
	Reload func(context.Context) (ReloadResult, error)
	// Limits are the store's capacity limits, shown by GET /stats beside
	// their use (zero: no limit).
	Limits swarm.Limits
}

// ReloadResult says what a configuration reload changed: the settings
// applied, and those that need a restart and kept their running value.
type ReloadResult struct {
	Changed      []string `json:"changed"`
	NeedsRestart []string `json:"needs_restart"`
}

// API serves the REST API. It is an http.Handler and can run its own server
// with Serve and Shutdown.
type API struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// tokens are the digests of the access tokens; SetAccessTokens (a
	// reload) replaces them whole.
	tokens atomic.Pointer[[][sha256.Size]byte]
	now    func() time.Time
	// panics counts recovered handler panics in the tracker's counters.
	panics *metrics.Stripe

	mu  sync.Mutex
	srv *http.Server
}

// New builds the API. It fails when a dependency is missing.
func New(cfg Config, deps Deps) (*API, error) {
	if deps.Store == nil || deps.Lists == nil {
		return nil, errors.New("adminapi: a swarm store and access lists are required")
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = 5 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	a := &API{cfg: cfg, deps: deps, log: cfg.Logger, now: deps.Now}
	if a.log == nil {
		a.log = slog.Default()
	}
	// Every line logged with a request's context names its request id.
	a.log = slog.New(requestIDHandler{a.log.Handler()})
	if a.now == nil {
		a.now = time.Now
	}
	if a.deps.Counters == nil {
		a.deps.Counters = metrics.NewCounters(1, false)
	}
	a.panics = a.deps.Counters.Stripe()
	a.SetAccessTokens(cfg.AccessTokens)
	return a, nil
}

// SetAccessTokens replaces the tokens that grant access (label → token);
// requests that follow are checked against the new ones.
func (a *API) SetAccessTokens(tokens map[string]string) {
	var sums [][sha256.Size]byte
	for _, tok := range tokens {
		if tok != "" {
			// Comparing fixed-size digests keeps the comparison's time
			// independent of the tokens' lengths as well as their contents.
			sums = append(sums, sha256.Sum256([]byte(tok)))
		}
	}
	a.tokens.Store(&sums)
}

// Serve answers requests on ln (which the caller opened, plain or TLS)
// until Shutdown; it then returns http.ErrServerClosed.
func (a *API) Serve(ln net.Listener) error {
	a.mu.Lock()
	if a.srv == nil {
		a.srv = &http.Server{
			Handler:           a,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		}
	}
	srv := a.srv
	a.mu.Unlock()
	return srv.Serve(ln)
}

// Shutdown stops accepting, waits for requests in flight and returns
// ctx.Err() if they outlast ctx. Safe to call twice, and before Serve.
func (a *API) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.srv == nil {
		// Serve after Shutdown returns ErrServerClosed at once.
		a.srv = &http.Server{Handler: a}
	}
	srv := a.srv
	a.mu.Unlock()
	return srv.Shutdown(ctx)
}

// response is a handler's answer, written once the handler is done so that
// a handler that ran over its time can still be answered 408.
type response struct {
	status int
	ctype  string
	body   []byte
	// gzip, when set, is body gzipped ahead of time (the full scrape's
	// shared bodies), sent as it is to clients that accept it.
	gzip []byte
}

const (
	ctypeJSON = "application/json"
	ctypeText = "text/plain; charset=utf-8"
)

func jsonResponse(status int, body []byte) response {
	return response{status: status, ctype: ctypeJSON, body: body}
}
func textResponse(status int, s string) response {
	return response{status: status, ctype: ctypeText, body: []byte(s)}
}

// rejection is Torrust's 500 answer for auth failures and failed operations.
func rejection(reason string) response {
	return textResponse(http.StatusInternalServerError, `Unhandled rejection: Err { reason: "`+rustEscape(reason)+`" }`)
}

// failure answers an operation on the database that failed: Torrust's 500
// rejection, or the same body with 503 when the database is unavailable
// (down, cut or too slow; a Starling difference): nothing was changed and
// the same request may work later (Retry-After).
func failure(prefix string, err error) response {
	resp := rejection(prefix + ": " + err.Error())
	if errors.Is(err, access.ErrUnavailable) {
		resp.status = http.StatusServiceUnavailable
	}
	return resp
}

// rustEscape escapes s as Rust's Debug formatting of a string does, since
// Torrust prints the reason that way.
func rustEscape(s string) string {
	if !strings.ContainsAny(s, "\"\\\n\r\t") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return r.Replace(s)
}

var okBody = []byte(`{"status":"ok"}`)

const healthBody = `{"status":"Ok"}`

// ServeHTTP routes, authenticates and answers one request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r.Header.Get(requestid.Header))
	w.Header().Set(requestid.Header, id)

	rt, param := match(r.URL.EscapedPath())
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), requestIDKey{}, id), a.cfg.HandlerTimeout)
	defer cancel()

	var resp response
	streamed := false
	defer func() {
		if v := recover(); v != nil {
			a.panics.Inc(metrics.Panics)
			a.log.ErrorContext(ctx, "api handler panicked", "route", rt.String(), "panic", v,
				"stack", string(debug.Stack()))
			if streamed {
				panic(http.ErrAbortHandler) // part of the answer is out; drop the connection
			}
			a.write(w, r, rejection("internal error"))
		}
	}()
	resp = a.dispatch(ctx, w, r.WithContext(ctx), rt, param, &streamed)
	if !streamed {
		// A database that ran out the handler's time is still a 503.
		if ctx.Err() == context.DeadlineExceeded && resp.status != http.StatusServiceUnavailable {
			resp = response{status: http.StatusRequestTimeout}
		}
		a.write(w, r, resp)
	}
	a.log.LogAttrs(ctx, slog.LevelDebug, "api request",
		slog.String("method", r.Method), slog.String("route", rt.String()),
		slog.Int("status", resp.status), slog.Duration("took", time.Since(start)))
}

// dispatch runs the route's handler. It sets *streamed before a handler
// that writes its answer itself (the metrics handlers) starts writing.
func (a *API) dispatch(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, param string, streamed *bool) response {
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
	}
	switch rt {
	case routeHealth:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return a.methodNotAllowed(w, rt)
		}
		return jsonResponse(http.StatusOK, []byte(healthBody))
	case routeMetricsOpen:
		if a.cfg.MetricsNeedToken {
			if resp, ok := a.authenticate(r); !ok {
				return resp
			}
		}
		return a.serveMetrics(w, r, streamed)
	}
	// Every other path, known or not, needs the token first, as in Torrust
	// (its auth layer wraps the fallback too), so probing for routes
	// without a token learns nothing.
	if resp, ok := a.authenticate(r); !ok {
		return resp
	}
	if rt == routeNone {
		return response{status: http.StatusNotFound}
	}
	if rt == routeMetricsV1 {
		return a.serveMetrics(w, r, streamed)
	}
	allowed := false
	for _, m := range rt.allowed() {
		// HEAD is answered like GET without the body, as axum does.
		allowed = allowed || m == r.Method || m == http.MethodGet && r.Method == http.MethodHead
	}
	if !allowed {
		return a.methodNotAllowed(w, rt)
	}
	switch rt {
	case routeStats:
		return a.stats(ctx, r)
	case routeTorrent:
		return a.torrent(ctx, param)
	case routeTorrents:
		return a.torrents(ctx, r)
	case routeWhitelist:
		return a.whitelist(ctx, r.Method, param)
	case routeWhitelistReload:
		return a.reloadWhitelist(ctx)
	case routeKeys:
		return a.addKey(ctx, r)
	case routeKeysReload:
		return a.reloadKeys(ctx)
	case routeKey:
		if r.Method == http.MethodPost {
			return a.generateKey(ctx, param)
		}
		return a.deleteKey(ctx, param)
	case routeFullScrape:
		return a.fullScrape(ctx)
	case routeReload:
		return a.reload(ctx)
	}
	return response{status: http.StatusNotFound}
}

func (a *API) methodNotAllowed(w http.ResponseWriter, rt route) response {
	w.Header().Set("Allow", strings.Join(rt.allowed(), ","))
	return response{status: http.StatusMethodNotAllowed}
}

func (a *API) serveMetrics(w http.ResponseWriter, r *http.Request, streamed *bool) response {
	if a.deps.Metrics == nil {
		return response{status: http.StatusNotFound}
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return response{status: http.StatusMethodNotAllowed}
	}
	*streamed = true
	a.deps.Metrics.ServeHTTP(w, r)
	return response{status: http.StatusOK}
}

// authenticate checks the access token: a "Bearer <token>" Authorization
// header wins over ?token=. Another scheme's header (Basic credentials a
// reverse proxy in front of the API forwards) is left to that proxy when
// the query has a token, as Torrust v3, which reads only ?token=, does;
// alone it is refused as Torrust's newer releases refuse it.
func (a *API) authenticate(r *http.Request) (response, bool) {
	var tok string
	bearer, otherScheme := false, false
	if h, ok := r.Header["Authorization"]; ok {
		v := strings.TrimSpace(strings.Join(h, ","))
		// The scheme name is case-insensitive (RFC 9110 §11.1).
		if scheme, rest, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Bearer") {
			bearer, tok = true, strings.TrimSpace(rest)
		} else {
			otherScheme = true
		}
	}
	if !bearer {
		v, present, err := single(parseQuery(r.URL.RawQuery), "token")
		if err != nil {
			return textResponse(http.StatusBadRequest, "Failed to deserialize query string: "+err.Error()), false
		}
		switch {
		case !present && otherScheme:
			return rejection("unknown token provided"), false
		case !present:
			return rejection("unauthorized"), false
		}
		tok = v
	}
	if !a.validToken(tok) {
		return rejection("token not valid"), false
	}
	return response{}, true
}

// validToken compares tok with every configured token in constant time and
// without stopping at a match, so timing tells neither whether nor which
// token matched.
func (a *API) validToken(tok string) bool {
	if tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	tokens := *a.tokens.Load()
	for i := range tokens {
		match |= subtle.ConstantTimeCompare(sum[:], tokens[i][:])
	}
	return match == 1
}

// write sends resp, gzipped when the client accepts it and the body is
// worth it (tower-http's default threshold is 32 bytes).
func (a *API) write(w http.ResponseWriter, r *http.Request, resp response) {
	h := w.Header()
	if resp.ctype != "" {
		h.Set("Content-Type", resp.ctype)
	}
	body := resp.body
	if resp.gzip != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body = resp.gzip
			h.Set("Content-Encoding", "gzip")
		}
	} else if len(body) >= 32 && acceptsGzip(r.Header.Values("Accept-Encoding")) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(body); err == nil && zw.Close() == nil {
			body = buf.Bytes()
			h.Set("Content-Encoding", "gzip")
			h.Add("Vary", "Accept-Encoding")
		}
	}
	if resp.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(resp.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or *) with a
// non-zero quality.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
				continue
			}
			return true
		}
	}
	return false
}

// requestID keeps a client's x-request-id when it is well-formed (short,
// and of characters that cannot forge or break a log line), else makes a
// random UUID v4, as Torrust's request-id layer does.
func requestID(client string) string {
	if requestid.ValidString(client) {
		return client
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
