package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
)

// route identifies an endpoint.
type route int

const (
	routeNone route = iota
	routeHealth
	routeStats
	routeTorrent
	routeTorrents
	routeWhitelistReload
	routeWhitelist
	routeKeys
	routeKeysReload
	routeKey
	routeMetricsOpen
	routeMetricsV1
	routeFullScrape
	routeReload
)

// routeNames are the patterns the log shows instead of the path, so a key
// in DELETE /api/v1/key/{key} never reaches a log line.
var routeNames = [...]string{
	routeNone:            "<no route>",
	routeHealth:          "/api/health_check",
	routeStats:           "/api/v1/stats",
	routeTorrent:         "/api/v1/torrent/{info_hash}",
	routeTorrents:        "/api/v1/torrents",
	routeWhitelistReload: "/api/v1/whitelist/reload",
	routeWhitelist:       "/api/v1/whitelist/{info_hash}",
	routeKeys:            "/api/v1/keys",
	routeKeysReload:      "/api/v1/keys/reload",
	routeKey:             "/api/v1/key/{key}",
	routeMetricsOpen:     "/metrics",
	routeMetricsV1:       "/api/v1/metrics",
	routeFullScrape:      "/api/v1/scrape/full",
	routeReload:          "/api/v1/reload",
}

func (r route) String() string { return routeNames[r] }

// match finds the route of an escaped path and its decoded parameter.
// Paths are split before they are unescaped, so "%2F" inside a parameter
// stays part of it, as in Torrust's router. A path the router does not know
// gives routeNone.
func match(escapedPath string) (route, string) {
	const v1 = "/api/v1/"
	if escapedPath == "/api/health_check" {
		return routeHealth, ""
	}
	if escapedPath == "/metrics" {
		return routeMetricsOpen, ""
	}
	rest, ok := strings.CutPrefix(escapedPath, v1)
	if !ok {
		return routeNone, ""
	}
	switch rest {
	case "stats":
		return routeStats, ""
	case "torrents":
		return routeTorrents, ""
	case "whitelist/reload":
		return routeWhitelistReload, ""
	case "keys":
		return routeKeys, ""
	case "keys/reload":
		return routeKeysReload, ""
	case "metrics":
		return routeMetricsV1, ""
	case "scrape/full":
		return routeFullScrape, ""
	case "reload":
		return routeReload, ""
	}
	head, param, ok := strings.Cut(rest, "/")
	if !ok || param == "" || strings.Contains(param, "/") {
		return routeNone, ""
	}
	var r route
	switch head {
	case "torrent":
		r = routeTorrent
	case "whitelist":
		r = routeWhitelist
	case "key":
		r = routeKey
	default:
		return routeNone, ""
	}
	p, err := url.PathUnescape(param)
	if err != nil {
		// Torrust decodes parameters leniently; keep the raw text.
		p = param
	}
	return r, p
}

// allowed lists the methods of a route, for 405 answers.
func (r route) allowed() []string {
	switch r {
	case routeWhitelist:
		return []string{"POST", "DELETE"}
	case routeKeys, routeReload:
		return []string{"POST"}
	case routeKey:
		return []string{"POST", "DELETE"}
	case routeNone:
		return nil
	default:
		return []string{"GET"}
	}
}

// pair is one query parameter, decoded.
type pair struct{ name, value string }

// parseQuery decodes an application/x-www-form-urlencoded query the way
// Torrust's decoder does: "+" is a space and malformed escapes are kept as
// text instead of failing the request.
func parseQuery(raw string) []pair {
	var out []pair
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		out = append(out, pair{unescapeForm(name), unescapeForm(value)})
	}
	return out
}

func unescapeForm(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	// Lenient: decode the valid escapes, keep the rest.
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// errDuplicate is the query decoder's error for a repeated single-valued
// parameter, worded as serde words it.
type errDuplicate string

func (e errDuplicate) Error() string { return "duplicate field `" + string(e) + "`" }

// single returns the value of a parameter that may appear once.
func single(q []pair, name string) (value string, present bool, err error) {
	for _, p := range q {
		if p.name != name {
			continue
		}
		if present {
			return "", true, errDuplicate(name)
		}
		value, present = p.value, true
	}
	return value, present, nil
}

// Number errors worded as Rust's integer parser words them, since Torrust
// passes them through to clients.
var (
	errInvalidDigit = errors.New("invalid digit found in string")
	errTooLarge     = errors.New("number too large to fit in target type")
	errEmpty        = errors.New("cannot parse integer from empty string")
)

// parseUint parses s as Rust's from_str for an unsigned integer of at most
// max: an optional "+", then decimal digits only.
func parseUint(s string, max uint64) (uint64, error) {
	s = strings.TrimPrefix(s, "+")
	if s == "" {
		return 0, errEmpty
	}
	var n uint64
	tooLarge := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errInvalidDigit
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			tooLarge = true
			continue // a later non-digit is still reported as such
		}
		n = n*10 + d
	}
	if tooLarge {
		return 0, errTooLarge
	}
	return n, nil
}

// pageParams are the /torrents query.
type pageParams struct {
	offset, limit uint32
	hashes        []string // raw info_hash values, in request order
}

const defaultLimit = 4000

// MaxLimit caps /torrents?limit= (Torrust has no cap: limit=4294967295
// over two million torrents built a 166 MB answer): a larger limit gets
// this many torrents, and a client pages on with offset.
const MaxLimit = 10000

// MaxTorrentPeers caps the peers one /torrent/{info_hash} answer lists (a
// swarm of 256,000 peers made a 58 MB answer); its counts stay exact.
const MaxTorrentPeers = 10000

// parseTorrentsQuery decodes offset, limit (u32, empty = absent) and the
// repeatable info_hash filter. Errors are the text after Torrust's
// "Failed to deserialize query string: ".
func parseTorrentsQuery(q []pair) (pageParams, error) {
	p := pageParams{limit: defaultLimit}
	for _, name := range []string{"offset", "limit"} {
		v, present, err := single(q, name)
		if err != nil {
			return p, err
		}
		if !present || v == "" {
			continue
		}
		n, err := parseUint(v, math.MaxUint32)
		if err != nil {
			return p, err
		}
		if name == "offset" {
			p.offset = uint32(n)
		} else {
			p.limit = uint32(min(n, MaxLimit))
		}
	}
	for _, kv := range q {
		if kv.name == "info_hash" && len(p.hashes) < MaxLimit {
			p.hashes = append(p.hashes, kv.value)
		}
	}
	return p, nil
}

// keyForm is POST /keys's body: {"key": string|null, "seconds_valid": u64|null}.
type keyForm struct {
	key        string
	hasKey     bool
	seconds    uint64
	hasSeconds bool
}

// errJSONSyntax marks a body that is not JSON at all (400 in Torrust);
// other decoding errors are type errors (422).
type errJSONSyntax struct{ err error }

func (e errJSONSyntax) Error() string { return e.err.Error() }

// decodeKeyForm decodes the body as serde would decode Torrust's form:
// unknown fields are ignored, absent and null fields are None, and a value
// of the wrong JSON type is an error naming the field.
func decodeKeyForm(body []byte) (keyForm, error) {
	var f keyForm
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		return f, errJSONSyntax{err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return f, errJSONSyntax{errors.New("trailing characters")}
	}
	obj, ok := top.(map[string]any)
	if !ok {
		return f, fmt.Errorf("invalid type: %s, expected struct AddKeyForm", describe(top))
	}
	if v, ok := obj["key"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return f, fmt.Errorf("key: invalid type: %s, expected a string", describe(v))
		}
		f.key, f.hasKey = s, true
	}
	if v, ok := obj["seconds_valid"]; ok && v != nil {
		num, ok := v.(json.Number)
		if !ok {
			return f, fmt.Errorf("seconds_valid: invalid type: %s, expected u64", describe(v))
		}
		s := num.String()
		if strings.HasPrefix(s, "-") {
			return f, fmt.Errorf("seconds_valid: invalid value: integer `%s`, expected u64", s)
		}
		if strings.ContainsAny(s, ".eE") {
			return f, fmt.Errorf("seconds_valid: invalid type: floating point `%s`, expected u64", s)
		}
		n, err := parseUint(s, math.MaxUint64)
		if err != nil {
			// Larger than u64: serde reads it as a float.
			return f, fmt.Errorf("seconds_valid: invalid type: floating point `%s`, expected u64", s)
		}
		f.seconds, f.hasSeconds = n, true
	}
	return f, nil
}

// describe names a JSON value as serde's "invalid type" errors do.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean `%t`", x)
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "floating point `" + x.String() + "`"
		}
		return "integer `" + x.String() + "`"
	case string:
		return fmt.Sprintf("string %q", x)
	case []any:
		return "sequence"
	default:
		return "map"
	}
}
