package httptracker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/url"
	"sync/atomic"

	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/metrics"
)

// FullScrape turns on full scrapes: GET /scrape with no info_hash answers
// every torrent's counts (core.full_scrape, a Starling extension).
type FullScrape struct {
	// Builder builds and caches the answer.
	Builder *fullscrape.Builder
	// Tokens, when not nil, is the "api" setting: a full scrape needs one
	// of these admin tokens, as ?token= or Authorization: Bearer. An empty
	// list refuses every full scrape.
	Tokens *Tokens
}

// Tokens checks admin tokens in constant time.
type Tokens struct {
	sums atomic.Pointer[[][sha256.Size]byte]
}

// NewTokens keeps the non-empty tokens.
func NewTokens(tokens map[string]string) *Tokens {
	t := &Tokens{}
	t.Set(tokens)
	return t
}

// Set replaces the tokens (a reload of the API's access tokens).
func (t *Tokens) Set(tokens map[string]string) {
	var sums [][sha256.Size]byte
	for _, tok := range tokens {
		if tok != "" {
			sums = append(sums, sha256.Sum256([]byte(tok)))
		}
	}
	t.sums.Store(&sums)
}

// Valid reports whether tok is one of the tokens. Comparing digests, and
// every one of them, keeps the time independent of which token (if any)
// matched and of the tokens' lengths.
func (t *Tokens) Valid(tok []byte) bool {
	if len(tok) == 0 {
		return false
	}
	sum := sha256.Sum256(tok)
	match := 0
	sums := *t.sums.Load()
	for i := range sums {
		match |= subtle.ConstantTimeCompare(sum[:], sums[i][:])
	}
	return match == 1
}

const (
	msgFullScrapeToken  = "Full scrape needs an admin token (?token=)"
	msgFullScrapeFailed = prefixTracker + "full scrape unavailable, try again later"
)

// wantsFullScrape reports whether a scrape the parser refused asked for no
// torrent at all: no query, an empty one, or one without info_hash. A
// malformed item does not matter then: a base64 token's '=' padding,
// unescaped, makes one (token=abc==).
func wantsFullScrape(e *parseError, r *rawRequest) bool {
	switch e.kind {
	case errNoQuery:
		return true
	case errMissing:
		return e.param == "info_hash"
	case errItem:
		for rest := trimQuery(r.query); len(rest) > 0; {
			item := rest
			if i := bytes.IndexByte(rest, '&'); i >= 0 {
				item, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			if bytes.HasPrefix(item, []byte("info_hash=")) || string(item) == "info_hash" {
				return false
			}
		}
		return true
	}
	return false
}

// fullScrape answers with the cached body, checking the token first in the
// "api" setting. The body is shared and never copied into the scratch.
func (h *Handler) fullScrape(ctx context.Context, s *scratch, r *rawRequest) answer {
	fs := h.full
	if fs.Tokens != nil && !fs.Tokens.Valid(requestToken(r)) {
		return h.failure(s, msgFullScrapeToken, "")
	}
	ip, ok := h.clientIP(r)
	if !ok {
		return h.failure(s, msgXForwardedFor, "")
	}
	body, err := fs.Builder.Get(ctx)
	if err != nil {
		h.log.LogAttrs(ctx, slog.LevelError, "http tracker: full scrape failed",
			slog.String("request_id", string(s.rid)), slog.String("err", err.Error()))
		return h.failure(s, msgFullScrapeFailed, "")
	}
	if ip.Is4() {
		s.stripe.Inc(metrics.TCP4Connections)
		s.stripe.Inc(metrics.TCP4Scrapes)
	} else {
		s.stripe.Inc(metrics.TCP6Connections)
		s.stripe.Inc(metrics.TCP6Scrapes)
	}
	return answer{status: 200, contentType: contentTypeBencode, body: body.Plain, gzip: body.Gzip, shared: true}
}

// requestToken is the Bearer token of the Authorization header, else the
// first ?token= value, percent-decoded.
func requestToken(r *rawRequest) []byte {
	if scheme, rest, ok := bytes.Cut(bytes.TrimSpace(r.authorization), []byte(" ")); ok && bytes.EqualFold(scheme, []byte("Bearer")) {
		return bytes.TrimSpace(rest)
	}
	for rest := trimQuery(r.query); len(rest) > 0; {
		item := rest
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			item, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		name, value, ok := bytes.Cut(item, []byte("="))
		if !ok || string(name) != "token" {
			continue
		}
		v, err := url.QueryUnescape(string(value))
		if err != nil {
			return nil
		}
		return []byte(v)
	}
	return nil
}

// acceptsGzip reports whether an Accept-Encoding value lists gzip (or *)
// with a quality above zero.
func acceptsGzip(v []byte) bool {
	for len(v) > 0 {
		part := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		coding, params, _ := bytes.Cut(part, []byte(";"))
		coding = bytes.TrimSpace(coding)
		if !bytes.EqualFold(coding, []byte("gzip")) && !bytes.Equal(coding, []byte("*")) {
			continue
		}
		q := bytes.ReplaceAll(bytes.TrimSpace(params), []byte(" "), nil)
		if bytes.HasPrefix(q, []byte("q=0")) && len(bytes.Trim(q[3:], ".0")) == 0 {
			continue
		}
		return true
	}
	return false
}
