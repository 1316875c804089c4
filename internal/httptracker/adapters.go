package httptracker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/requestid"
)

// ServeFastHTTP is the fasthttp adapter: it hands the raw request URI, the
// peer address and X-Forwarded-For to the core without copying.
func (h *Handler) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	s := h.getScratch()
	defer h.recoverFast(ctx, s)
	s.rid = appendRequestID(s.rid[:0], ctx.Request.Header.Peek(requestid.Header))
	ctx.Response.Header.SetCanonical(headerRequestID, s.rid)
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		h.putScratch(s)
		return
	}
	var r rawRequest
	uri := ctx.RequestURI()
	if len(uri) > 0 && uri[0] == '/' {
		r.path = uri
		if i := bytes.IndexByte(uri, '?'); i >= 0 {
			r.path, r.query, r.hasQuery = uri[:i], uri[i+1:], true
		}
		if i := bytes.IndexByte(r.path, '#'); i >= 0 {
			r.path = r.path[:i]
		}
	} else {
		// Absolute-form request target (a client talking as to a proxy).
		u := ctx.URI()
		r.path, r.query = u.PathOriginal(), u.QueryString()
		if i := bytes.IndexByte(r.path, '?'); i >= 0 {
			r.path = r.path[:i]
		}
		r.hasQuery = bytes.IndexByte(uri, '?') >= 0
	}
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		r.remote = ta.AddrPort()
	}
	if h.reverseProxy {
		s.xff = s.xff[:0]
		for _, v := range ctx.Request.Header.PeekAll("X-Forwarded-For") {
			s.xff = append(append(s.xff, v...), ',')
		}
		r.xff = s.xff
	}
	if h.full != nil && h.full.Tokens != nil {
		r.authorization = ctx.Request.Header.Peek("Authorization")
	}
	a := h.handle(ctx, s, &r)
	ctx.SetStatusCode(a.status)
	if a.contentType != "" {
		ctx.SetContentType(a.contentType)
	}
	if a.shared {
		// A full scrape: tens of megabytes shared by every request, sent
		// as they are.
		body := a.body
		if a.gzip != nil {
			ctx.Response.Header.SetCanonical(headerVary, headerAcceptEncoding)
			if acceptsGzip(ctx.Request.Header.Peek("Accept-Encoding")) {
				body = a.gzip
				ctx.Response.Header.SetCanonical(headerContentEncoding, headerGzip)
			}
		}
		// Tens of megabytes do not go out within the write timeout
		// meant for announce answers: a client reading at least
		// fullScrapeMinRate gets the time it needs.
		_ = ctx.SetWriteDeadline(time.Now().Add(fullScrapeWriteTime(h.writeTimeout, len(body))))
		ctx.Response.SetBodyRaw(body)
	} else {
		ctx.SetBody(a.body) // copies, so the scratch can go back to the pool
	}
	h.putScratch(s)
}

// fullScrapeMinRate is the slowest reading, in bytes per second, that a
// full scrape's write deadline allows for.
const fullScrapeMinRate = 1 << 20

// fullScrapeWriteTime is the time allowed to write a full scrape of n
// bytes: the usual write timeout plus n at fullScrapeMinRate.
func fullScrapeWriteTime(base time.Duration, n int) time.Duration {
	return base + time.Duration(n)*time.Second/fullScrapeMinRate
}

// Header names and values as bytes, made once.
var (
	headerRequestID       = []byte(requestid.Header)
	headerVary            = []byte("Vary")
	headerAcceptEncoding  = []byte("Accept-Encoding")
	headerContentEncoding = []byte("Content-Encoding")
	headerGzip            = []byte("gzip")
)

// appendRequestID appends the client's id when it is well-formed, else a
// fresh one.
func appendRequestID(dst, client []byte) []byte {
	if requestid.Valid(client) {
		return append(dst, client...)
	}
	return requestid.AppendNew(dst)
}

// recoverFast turns a panic in one request into a logged, counted, generic
// failure; fasthttp itself would let it crash the process. The scratch of a
// panicked request is dropped rather than reused.
func (h *Handler) recoverFast(ctx *fasthttp.RequestCtx, s *scratch) {
	v := recover()
	if v == nil {
		return
	}
	h.panicked(s, v)
	ctx.ResetBody()
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentTypeFailure)
	ctx.SetBody(failureBody(msgInternal))
}

func (h *Handler) panicked(s *scratch, v any) {
	s.stripe.Inc(metrics.Panics)
	s.stripe.Inc(metrics.HTTPErrors)
	h.log.Error("http tracker: request panicked", "panic", fmt.Sprint(v), "request_id", string(s.rid), "stack", string(debug.Stack()))
}

func failureBody(msg string) []byte {
	return []byte("d14:failure reason" + strconv.Itoa(len(msg)) + ":" + msg + "e")
}

// Content types as header values, made once: assigning a fresh []string to
// the header map per request would allocate.
var (
	headerBencode = []string{contentTypeBencode}
	headerFailure = []string{contentTypeFailure}
	headerJSON    = []string{contentTypeJSON}
)

// ServeHTTP is the net/http adapter. net/http keeps the query as a string;
// it is copied into the scratch so the core parses bytes either way.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s := h.getScratch()
	defer h.recoverHTTP(w, s)
	s.rid = appendRequestID(s.rid[:0], []byte(req.Header.Get(requestid.Header)))
	w.Header().Set(requestid.Header, string(s.rid))
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		h.putScratch(s)
		return
	}
	s.in = append(s.in[:0], req.URL.RawQuery...)
	pathStart := len(s.in)
	s.in = append(s.in, req.URL.Path...)
	r := rawRequest{
		query:    s.in[:pathStart],
		path:     s.in[pathStart:],
		hasQuery: req.URL.RawQuery != "" || req.URL.ForceQuery,
	}
	r.remote, _ = netip.ParseAddrPort(req.RemoteAddr)
	if h.reverseProxy {
		s.xff = s.xff[:0]
		for _, v := range req.Header["X-Forwarded-For"] {
			s.xff = append(append(s.xff, v...), ',')
		}
		r.xff = s.xff
	}
	if h.full != nil && h.full.Tokens != nil {
		r.authorization = []byte(req.Header.Get("Authorization"))
	}
	a := h.handle(req.Context(), s, &r)
	if a.gzip != nil {
		w.Header().Set("Vary", "Accept-Encoding")
		if acceptsGzip([]byte(strings.Join(req.Header.Values("Accept-Encoding"), ","))) {
			a.body = a.gzip
			w.Header().Set("Content-Encoding", "gzip")
		}
	}
	switch a.contentType {
	case contentTypeBencode:
		w.Header()["Content-Type"] = headerBencode
	case contentTypeFailure:
		w.Header()["Content-Type"] = headerFailure
	case contentTypeJSON:
		w.Header()["Content-Type"] = headerJSON
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
	h.putScratch(s)
}

func (h *Handler) recoverHTTP(w http.ResponseWriter, s *scratch) {
	v := recover()
	if v == nil {
		return
	}
	h.panicked(s, v)
	w.Header()["Content-Type"] = headerFailure
	w.WriteHeader(http.StatusOK)
	w.Write(failureBody(msgInternal))
}

// Probe checks that the HTTP tracker at baseURL (for example
// http://127.0.0.1:7070) answers GET /health_check with {"status":"Ok"}.
// Certificates are not verified: the probe targets the tracker's own
// listener by address, which a certificate names by host name, and only
// checks that it answers.
func Probe(ctx context.Context, baseURL string) error {
	return healthcheck.GetOK(ctx, strings.TrimSuffix(baseURL, "/")+"/health_check", string(healthBody))
}
