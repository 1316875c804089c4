package httptracker

import (
	"bytes"
	"strconv"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// The query parser works on the raw query bytes, as Torrust's does, instead
// of net/url: url.ParseQuery builds a map of string slices per request, and
// info_hash/peer_id are binary, so they are percent-decoded straight into
// their fixed arrays.

// parseError is a request the parser refuses. It is filled in place (the
// handler keeps one per scratch) and points into the query, so refusing a
// bad request allocates nothing; append writes the failure reason as Torrust
// words it, without its source location.
type parseError struct {
	prefix string // prefixQuery, prefixAnnounce or prefixScrape
	kind   errKind
	param  string
	raw    []byte // the offending item or value, inside the query
	what   string // "infohash" or "peer id", for length errors
	n      int    // the decoded length, for length errors
}

type errKind uint8

const (
	errNoQuery errKind = iota + 1
	errItem
	errMissing
	errInvalid
	errOverflow
	errLength
)

func (e *parseError) set(prefix string, kind errKind, param string, raw []byte) *parseError {
	*e = parseError{prefix: prefix, kind: kind, param: param, raw: raw}
	return e
}

// append writes the failure reason.
func (e *parseError) append(b []byte) []byte {
	b = append(b, e.prefix...)
	switch e.kind {
	case errNoQuery:
		if e.prefix == prefixScrape {
			return append(b, "missing query params for scrape request"...)
		}
		return append(b, "missing query params for announce request"...)
	case errItem:
		b = append(b, "invalid param "...)
		return append(b, e.raw...)
	case errMissing:
		b = append(b, "missing param "...)
		return append(b, e.param...)
	case errOverflow:
		b = append(b, "param value overflow "...)
	default:
		b = append(b, "invalid param value "...)
	}
	b = append(b, e.raw...)
	b = append(b, " for "...)
	b = append(b, e.param...)
	if e.kind == errLength {
		if e.n > 20 {
			b = append(b, " in too many bytes for "...)
		} else {
			b = append(b, " in not enough bytes for "...)
		}
		b = append(b, e.what...)
		b = append(b, ": got "...)
		b = strconv.AppendInt(b, int64(e.n), 10)
		b = append(b, " bytes, expected 20"...)
	}
	return b
}

func (e *parseError) Error() string { return string(e.append(nil)) }

const (
	prefixQuery    = "Cannot parse query params: "
	prefixAnnounce = "Cannot parse query params for announce request: "
	prefixScrape   = "Cannot parse query params for scrape request: "
)

// announceParams are the first raw values of the parameters an announce reads.
type announceParams struct {
	infoHash, peerID, port              []byte
	uploaded, downloaded, left          []byte
	event, compact, numwant             []byte
	hasInfoHash, hasPeerID, hasPort     bool
	hasUploaded, hasDownloaded, hasLeft bool
	hasEvent, hasCompact, hasNumwant    bool
}

// trimQuery drops surrounding blanks and leading '?', as Torrust does.
func trimQuery(q []byte) []byte {
	q = bytes.TrimSpace(q)
	for len(q) > 0 && q[0] == '?' {
		q = q[1:]
	}
	return q
}

// nextParam cuts the first '&'-separated item of q and splits it on '='. An
// item without exactly one '=' is Torrust's "invalid param" error.
func nextParam(q []byte, e *parseError) (name, value, rest []byte, err *parseError) {
	item := q
	if i := bytes.IndexByte(q, '&'); i >= 0 {
		item, rest = q[:i], q[i+1:]
	} else {
		rest = nil
	}
	eq := bytes.IndexByte(item, '=')
	if eq < 0 || bytes.IndexByte(item[eq+1:], '=') >= 0 {
		return nil, nil, nil, e.set(prefixQuery, errItem, "", item)
	}
	return item[:eq], item[eq+1:], rest, nil
}

// parseAnnounce fills the request fields of req from the raw query and says
// whether the client asked for a compact answer. hasQuery is false when the
// URL had no '?' at all.
func parseAnnounce(q []byte, hasQuery bool, req *bittorrent.AnnounceRequest, e *parseError) (port uint16, compact bool, err *parseError) {
	if !hasQuery {
		return 0, false, e.set(prefixAnnounce, errNoQuery, "", nil)
	}
	var p announceParams
	q = trimQuery(q)
	more := true
	for more {
		var name, value []byte
		name, value, q, err = nextParam(q, e)
		if err != nil {
			return 0, false, err
		}
		more = q != nil
		// The first value of a repeated name wins, as in Torrust.
		switch string(name) {
		case "info_hash":
			if !p.hasInfoHash {
				p.infoHash, p.hasInfoHash = value, true
			}
		case "peer_id":
			if !p.hasPeerID {
				p.peerID, p.hasPeerID = value, true
			}
		case "port":
			if !p.hasPort {
				p.port, p.hasPort = value, true
			}
		case "uploaded":
			if !p.hasUploaded {
				p.uploaded, p.hasUploaded = value, true
			}
		case "downloaded":
			if !p.hasDownloaded {
				p.downloaded, p.hasDownloaded = value, true
			}
		case "left":
			if !p.hasLeft {
				p.left, p.hasLeft = value, true
			}
		case "event":
			if !p.hasEvent {
				p.event, p.hasEvent = value, true
			}
		case "compact":
			if !p.hasCompact {
				p.compact, p.hasCompact = value, true
			}
		case "numwant":
			if !p.hasNumwant {
				p.numwant, p.hasNumwant = value, true
			}
		}
	}
	// Checked in Torrust's order, so the same request gets the same error.
	if !p.hasInfoHash {
		return 0, false, e.set(prefixAnnounce, errMissing, "info_hash", nil)
	}
	if n := percentDecode20(p.infoHash, (*[20]byte)(&req.InfoHash)); n != 20 {
		return 0, false, e.length(prefixAnnounce, "info_hash", "infohash", p.infoHash, n)
	}
	if !p.hasPeerID {
		return 0, false, e.set(prefixAnnounce, errMissing, "peer_id", nil)
	}
	if n := percentDecode20(p.peerID, (*[20]byte)(&req.PeerID)); n != 20 {
		return 0, false, e.length(prefixAnnounce, "peer_id", "peer id", p.peerID, n)
	}
	if !p.hasPort {
		return 0, false, e.set(prefixAnnounce, errMissing, "port", nil)
	}
	port64, ok := parseUint(p.port, 16)
	if !ok {
		return 0, false, e.set(prefixAnnounce, errInvalid, "port", p.port)
	}
	req.Downloaded, err = parseBytesParam("downloaded", p.downloaded, p.hasDownloaded, e)
	if err != nil {
		return 0, false, err
	}
	req.Uploaded, err = parseBytesParam("uploaded", p.uploaded, p.hasUploaded, e)
	if err != nil {
		return 0, false, err
	}
	req.Left, err = parseBytesParam("left", p.left, p.hasLeft, e)
	if err != nil {
		return 0, false, err
	}
	if !p.hasLeft {
		// Not told, so not complete: a leecher (Torrust reads 0, a seeder).
		req.Left = bittorrent.LeftUnknown
	}
	req.Event = bittorrent.EventNone
	if p.hasEvent {
		switch string(p.event) {
		case "started":
			req.Event = bittorrent.EventStarted
		case "stopped":
			req.Event = bittorrent.EventStopped
		case "completed":
			req.Event = bittorrent.EventCompleted
		case "", "paused":
			// BEP 3: an empty event is no event. BEP 21: libtorrent
			// (qBittorrent, Deluge) sends "paused" on the regular
			// announces of a partial seed. Torrust refuses both, which
			// drops those peers from their swarms; they are regular
			// announces here.
		default:
			return 0, false, e.set(prefixAnnounce, errInvalid, "event", p.event)
		}
	}
	if p.hasCompact {
		switch string(p.compact) {
		case "1":
			compact = true
		case "0":
		default:
			return 0, false, e.set(prefixAnnounce, errInvalid, "compact", p.compact)
		}
	}
	req.NumWant = 0
	if p.hasNumwant {
		n, ok := parseUint(p.numwant, 32)
		switch {
		case ok:
			// The tracker caps numwant at max_peers_per_announce anyway.
			req.NumWant = int32(min(n, 1<<31-1))
		case negative(p.numwant):
			// Torrust v3 refuses it (a u32); decisions.md: a negative
			// numwant asks for the default, as UDP's -1 does.
		default:
			return 0, false, e.set(prefixAnnounce, errInvalid, "numwant", p.numwant)
		}
	}
	return uint16(port64), compact, nil
}

// parseScrape appends the requested hashes to hashes, up to max of them;
// further info_hash parameters are ignored (decisions.md).
func parseScrape(q []byte, hasQuery bool, hashes []bittorrent.InfoHash, max int, e *parseError) ([]bittorrent.InfoHash, *parseError) {
	if !hasQuery {
		return hashes, e.set(prefixScrape, errNoQuery, "", nil)
	}
	q = trimQuery(q)
	// Torrust parses the whole query before reading any parameter, so a
	// malformed item anywhere wins over a bad hash.
	for rest, more := q, true; more; {
		var err *parseError
		_, _, rest, err = nextParam(rest, e)
		if err != nil {
			return hashes, err
		}
		more = rest != nil
	}
	found := false
	for rest, more := q, true; more; {
		name, value, r, _ := nextParam(rest, e)
		rest, more = r, r != nil
		if string(name) != "info_hash" {
			continue
		}
		found = true
		if len(hashes) >= max {
			continue
		}
		var h bittorrent.InfoHash
		if n := percentDecode20(value, (*[20]byte)(&h)); n != 20 {
			return hashes, e.length(prefixScrape, "info_hash", "infohash", value, n)
		}
		hashes = append(hashes, h)
	}
	if !found {
		return hashes, e.set(prefixScrape, errMissing, "info_hash", nil)
	}
	return hashes, nil
}

// percentDecode20 decodes s into dst and returns the decoded length, which
// may exceed 20 (then dst holds the first 20 bytes). As in Torrust, a '%'
// not followed by two hex digits is kept literally. Unlike Torrust, '+' is a
// space (form encoding): anacrolix's scrape sends byte 0x20 as '+', and no
// client sends a literal '+' unescaped, since it is reserved in queries.
func percentDecode20(s []byte, dst *[20]byte) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			c = ' '
		} else if c == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				c = hi<<4 | lo
				i += 2
			}
		}
		if n < 20 {
			dst[n] = c
		}
		n++
	}
	return n
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseUint parses a decimal unsigned integer of the given bit size, as
// Rust's u16/u32/u64::from_str: an optional '+', then at least one digit.
// negative reports whether s is a minus sign followed by decimal digits.
func negative(s []byte) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func parseUint(s []byte, bits int) (uint64, bool) {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var v uint64
	limit := uint64(1)<<bits - 1
	if bits == 64 {
		limit = ^uint64(0)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (limit-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseBytesParam reads uploaded/downloaded/left: a u64 that must fit in an i64.
func parseBytesParam(name string, raw []byte, has bool, e *parseError) (int64, *parseError) {
	if !has {
		return 0, nil
	}
	v, ok := parseUint(raw, 64)
	if !ok {
		return 0, e.set(prefixAnnounce, errInvalid, name, raw)
	}
	if v > 1<<63-1 {
		return 0, e.set(prefixAnnounce, errOverflow, name, raw)
	}
	return int64(v), nil
}

// length records a binary parameter of the wrong length.
func (e *parseError) length(prefix, param, what string, raw []byte, n int) *parseError {
	e.set(prefix, errLength, param, raw)
	e.what, e.n = what, n
	return e
}
