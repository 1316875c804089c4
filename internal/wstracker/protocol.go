package wstracker

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// The WebTorrent protocol carries 20-byte values (info_hash, peer_id,
// offer_id, to_peer_id) as JSON strings of 20 characters, one code point
// U+0000 to U+00FF per byte (latin1). encoding/json gets both directions
// wrong for such bytes (string(b) turns 0x80..0xFF into U+FFFD, []byte
// becomes base64), so they are decoded rune by rune and encoded by hand.

// id is one 20-byte binary string of the protocol.
type id = [20]byte

// Actions.
const (
	actionAnnounce = "announce"
	actionScrape   = "scrape"
)

// Parse errors, with the texts the reference server sends for them.
var (
	errBadJSON     = errors.New("invalid request: not a JSON object")
	errBadUTF8     = errors.New("invalid request: not UTF-8")
	errBadAction   = errors.New("invalid action")
	errBadInfoHash = errors.New("invalid info_hash")
	errBadPeerID   = errors.New("invalid peer_id")
	errBadOfferID  = errors.New("invalid offer_id")
	errBadToPeerID = errors.New("invalid `to_peer_id` (required with `answer`)")
	errBadOffer    = errors.New("invalid offer: expected {\"offer\":{…},\"offer_id\":…}")
	errBadAnswer   = errors.New("invalid answer: expected a JSON object")
	errBadNumber   = errors.New("invalid number")
	errBadEvent    = errors.New("invalid event")
)

// request is one client message, decoded and checked.
type request struct {
	action   string
	infoHash id
	// hasHash says infoHash was read (a failure can then name it).
	hasHash bool
	// hashes are a scrape's info hashes; allHashes is a scrape without any.
	hashes    []id
	allHashes bool
	// single says the scrape named one hash as a string (not an array).
	single bool

	peerID  id
	event   bittorrent.Event
	left    int64 // bittorrent.LeftUnknown for null, absent or negative
	numWant int
	offers  []offer
	// wireOffers, picked and targets are scratch of the request's
	// handling, kept with it for the next.
	wireOffers []wireOffer
	picked     []*member
	targets    []target
	areq       bittorrent.AnnounceRequest
	answer     json.RawMessage // an answer to relay, with toPeerID and offerID
	toPeerID   id
	offerID    id
}

type offer struct {
	sdp json.RawMessage // the "offer" object, relayed as sent
	id  id
}

// wire is the JSON shape of a client message. Unknown fields (trackerid,
// corrupt, key, ...) are ignored, as the reference server ignores them.
type wire struct {
	Action     jstr
	InfoHash   json.RawMessage
	PeerID     jstr
	Event      jstr
	Left       json.RawMessage
	NumWant    json.RawMessage
	Offers     json.RawMessage
	Answer     json.RawMessage
	ToPeerID   jstr
	OfferID    jstr
	Uploaded   json.RawMessage
	Downloaded json.RawMessage
}

type wireOffer struct {
	Offer   json.RawMessage
	OfferID jstr
}

// jstr is a JSON string field as read, left encoded: its contents between
// the quotes point into the message and are decoded only where used (a
// decoded string was two allocations per field). Absent or null is unset.
type jstr struct {
	raw      []byte
	esc, set bool
}

// is compares the decoded string with v.
func (j jstr) is(v string) bool {
	if !j.esc {
		return string(j.raw) == v
	}
	return unquote(j.raw, true) == v
}

// id decodes the string as a binary id (decodeID's rules).
func (j jstr) id(out *id) bool { return j.set && decodeRawID(j.raw, j.esc, out) }

// limits bound what one message may ask for; parse refuses more.
type limits struct {
	maxOffers int // offers beyond this are dropped, not refused (clients send up to 10)
	maxHashes int
}

// parse decodes one text message. On error, the returned request still
// holds the action and info hash when they were read, so the failure can
// name them.
func parse(msg []byte, lim limits) (*request, error) {
	r := &request{}
	return r, parseInto(r, msg, lim)
}

// parseInto is parse into a request the caller reuses: its offers and
// hashes keep their backing arrays.
func parseInto(r *request, msg []byte, lim limits) error {
	*r = request{left: bittorrent.LeftUnknown, offers: r.offers[:0], hashes: r.hashes[:0],
		wireOffers: r.wireOffers[:0], picked: r.picked[:0], targets: r.targets[:0]}
	var w wire
	msg = bytes.TrimSpace(msg)
	if len(msg) == 0 || msg[0] != '{' {
		return errBadJSON
	}
	// Offers and answers are relayed as sent, in text frames, which must
	// be UTF-8: a browser fails the connection on a frame that is not.
	// encoding/json lets invalid UTF-8 through inside strings, and gorilla
	// does not check it, so one peer could cut its swarm off the tracker.
	if !utf8.Valid(msg) {
		return errBadUTF8
	}
	if !scanMessage(msg, &w) {
		return errBadJSON
	}
	// Read first, so that any failure below names the torrent: libtorrent
	// ignores a message without info_hash.
	if decodeJSONID(w.InfoHash, &r.infoHash) {
		r.hasHash = true
	}
	switch {
	case !w.Action.set:
		return errBadAction
	case w.Action.is(actionAnnounce):
		r.action = actionAnnounce
	case w.Action.is(actionScrape):
		r.action = actionScrape
	default:
		return errBadAction
	}
	if r.action == actionScrape {
		return parseScrapeHashes(r, w.InfoHash, lim)
	}
	if !decodeJSONID(w.InfoHash, &r.infoHash) {
		return errBadInfoHash
	}
	r.hasHash = true
	if !w.PeerID.id(&r.peerID) {
		return errBadPeerID
	}
	if len(w.Answer) > 0 && !isNull(w.Answer) {
		// An answer to someone's offer: it names whom and which offer.
		if w.Answer[0] != '{' {
			return errBadAnswer
		}
		if !w.ToPeerID.id(&r.toPeerID) {
			return errBadToPeerID
		}
		if !w.OfferID.id(&r.offerID) {
			return errBadOfferID
		}
		r.answer = w.Answer
		return nil
	}
	// "update", "paused" (libtorrent), "" and anacrolix's "<regular>"
	// are all a regular announce.
	switch ev := w.Event; {
	case !ev.set:
	case ev.is("started"):
		r.event = bittorrent.EventStarted
	case ev.is("stopped"):
		r.event = bittorrent.EventStopped
	case ev.is("completed"):
		r.event = bittorrent.EventCompleted
	}
	if n, ok, err := number(w.Left); err != nil {
		return err
	} else if ok && n >= 0 {
		r.left = n
	}
	if n, ok, err := number(w.NumWant); err != nil {
		return err
	} else if ok && n > 0 {
		r.numWant = int(min(n, math.MaxInt32))
	}
	if len(w.Offers) > 0 && !isNull(w.Offers) {
		if !scanOffers(w.Offers, &r.wireOffers) {
			return errBadOffer
		}
		for i := range r.wireOffers {
			o := &r.wireOffers[i]
			if len(o.Offer) == 0 || o.Offer[0] != '{' || !o.OfferID.set {
				return errBadOffer
			}
			var id id
			if !o.OfferID.id(&id) {
				return errBadOfferID
			}
			if len(r.offers) < lim.maxOffers {
				r.offers = append(r.offers, offer{sdp: o.Offer, id: id})
			}
		}
	}
	return nil
}

func parseScrapeHashes(r *request, raw json.RawMessage, lim limits) error {
	if len(raw) == 0 || isNull(raw) {
		r.allHashes = true
		return nil
	}
	if raw[0] == '"' {
		var h id
		if !decodeJSONID(raw, &h) {
			return errBadInfoHash
		}
		r.single = true
		r.infoHash, r.hasHash = h, true
		r.hashes = append(r.hashes, h)
		return nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return errBadInfoHash
	}
	// Hashes past the limit are ignored, as the HTTP tracker ignores
	// them; an empty list asks for none (the reference server answers it
	// with no files), not for a full scrape.
	list = list[:min(len(list), lim.maxHashes)]
	if len(list) == 0 {
		return nil
	}
	r.hashes = make([]id, len(list))
	for i, s := range list {
		if !decodeID(s, &r.hashes[i]) {
			return errBadInfoHash
		}
	}
	r.infoHash, r.hasHash = r.hashes[0], true
	return nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// number reads a JSON number (a JS client may send 1.5e3 or -1); null or
// absent is not ok. Values beyond int64 are clamped.
func number(raw json.RawMessage) (int64, bool, error) {
	if len(raw) == 0 || isNull(raw) {
		return 0, false, nil
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return n, true, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) {
		return 0, false, errBadNumber
	}
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64, true, nil
	case f <= math.MinInt64:
		return math.MinInt64, true, nil
	}
	return int64(f), true, nil
}

// decodeJSONID decodes a JSON string value that must hold a binary id.
func decodeJSONID(raw json.RawMessage, out *id) bool {
	if len(raw) < 2 || raw[0] != '"' {
		return false
	}
	sc := scanner{b: raw}
	content, esc, ok := sc.str()
	if !ok || sc.i != len(raw) {
		return false
	}
	return decodeRawID(content, esc, out)
}

// decodeID reads exactly 20 code points, each at most U+00FF. Invalid
// UTF-8 was turned into U+FFFD by encoding/json and fails here too.
func decodeID(s string, out *id) bool {
	n := 0
	for _, r := range s {
		if r > 0xFF || n == len(out) {
			return false
		}
		out[n] = byte(r)
		n++
	}
	return n == len(out)
}

// decodeRawID is decodeID on a JSON string's contents as read (esc: with
// escapes), without decoding them into a string first. Surrogates, paired
// or not, decode above U+00FF and are refused, as in decodeID.
func decodeRawID(raw []byte, esc bool, out *id) bool {
	n := 0
	for i := 0; i < len(raw); {
		if n == len(out) {
			return false
		}
		c := raw[i]
		switch {
		case c == '\\' && esc:
			var r rune
			switch raw[i+1] {
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				r = hex4(raw[i+2:])
				i += 4
			default: // '"', '\\', '/'
				r = rune(raw[i+1])
			}
			if r > 0xFF {
				return false
			}
			out[n] = byte(r)
			i += 2
		case c < utf8.RuneSelf:
			out[n] = c
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r > 0xFF {
				return false
			}
			out[n] = byte(r)
			i += size
		}
		n++
	}
	return n == len(out)
}

// appendID appends b as a quoted JSON string of 20 code points: bytes
// below 0x20, '"' and '\\' escaped, 0x80..0xFF as two-byte UTF-8.
func appendID(dst []byte, b *id) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			dst = append(dst, 0xC0|c>>6, 0x80|c&0x3F)
		}
	}
	return append(dst, '"')
}

// The server's messages. Each carries "action" (the reference client closes
// the socket on a message without one) and "info_hash" (the client shares
// one socket between its torrents, and libtorrent ignores messages without
// it), built by appending, since one is built for every relayed offer.

func appendAnnounceResponse(dst []byte, h *id, interval uint32, st bittorrent.SwarmStats) []byte {
	dst = append(dst, `{"action":"announce","interval":`...)
	dst = strconv.AppendUint(dst, uint64(interval), 10)
	dst = append(dst, `,"info_hash":`...)
	dst = appendID(dst, h)
	dst = append(dst, `,"complete":`...)
	dst = strconv.AppendUint(dst, uint64(st.Seeders), 10)
	dst = append(dst, `,"incomplete":`...)
	dst = strconv.AppendUint(dst, uint64(st.Leechers), 10)
	return append(dst, '}')
}

// appendRelay builds an offer (kind "offer") or answer (kind "answer")
// relayed to another peer; from is the peer that sent it.
func appendRelay(dst []byte, h, from, offerID *id, kind string, sdp json.RawMessage) []byte {
	return appendRelayTail(appendRelayHead(dst, h, from), offerID, kind, sdp)
}

// appendRelayHead is the part of a relay that an announce's offers share,
// encoded once for all of them.
func appendRelayHead(dst []byte, h, from *id) []byte {
	dst = append(dst, `{"action":"announce","info_hash":`...)
	dst = appendID(dst, h)
	dst = append(dst, `,"peer_id":`...)
	return appendID(dst, from)
}

func appendRelayTail(dst []byte, offerID *id, kind string, sdp json.RawMessage) []byte {
	dst = append(dst, `,"offer_id":`...)
	dst = appendID(dst, offerID)
	dst = append(dst, `,"`...)
	dst = append(dst, kind...)
	dst = append(dst, `":`...)
	dst = append(dst, sdp...)
	return append(dst, '}')
}

// appendFailure builds a failure; h is nil when the message named no valid
// info hash.
func appendFailure(dst []byte, action string, h *id, reason string) []byte {
	if action == "" {
		action = actionAnnounce
	}
	dst = append(dst, `{"action":`...)
	dst = strconv.AppendQuote(dst, action)
	if h != nil {
		dst = append(dst, `,"info_hash":`...)
		dst = appendID(dst, h)
	}
	dst = append(dst, `,"failure reason":`...)
	reasonJSON, _ := json.Marshal(reason)
	dst = append(dst, reasonJSON...)
	return append(dst, '}')
}

// scrapeFile is one entry of a scrape answer.
type scrapeFile struct {
	hash id
	st   bittorrent.SwarmStats
}

// appendScrape builds a scrape answer. info_hash repeats the request's
// (a string for one hash, else an array), so the message carries it too.
func appendScrape(dst []byte, files []scrapeFile, single bool, minInterval uint32) []byte {
	dst = append(dst, `{"action":"scrape","info_hash":`...)
	switch {
	case single && len(files) == 1:
		dst = appendID(dst, &files[0].hash)
	default:
		dst = append(dst, '[')
		for i := range files {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendID(dst, &files[i].hash)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"files":{`...)
	for i := range files {
		if i > 0 {
			dst = append(dst, ',')
		}
		f := &files[i]
		dst = appendID(dst, &f.hash)
		dst = append(dst, `:{"complete":`...)
		dst = strconv.AppendUint(dst, uint64(f.st.Seeders), 10)
		dst = append(dst, `,"incomplete":`...)
		dst = strconv.AppendUint(dst, uint64(f.st.Leechers), 10)
		dst = append(dst, `,"downloaded":`...)
		dst = strconv.AppendUint(dst, uint64(f.st.Completed), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `},"flags":{"min_request_interval":`...)
	dst = strconv.AppendUint(dst, uint64(minInterval), 10)
	return append(dst, `}}`...)
}
