package udptracker

import (
	"encoding/binary"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// BEP 15 wire constants.
const (
	protocolID = 0x41727101980

	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3

	headerLen      = 16 // connection id, action, transaction id
	announceLen    = 98 // BEP 15 announce body without BEP 41 options
	connectRespLen = 16
	announceHdrLen = 20
	scrapeEntryLen = 12
	errorHdrLen    = 8

	// maxScrapeHashes is how many hashes one scrape answers (Torrust's
	// MAX_SCRAPE_TORRENTS); more are ignored.
	maxScrapeHashes = 74

	// recvBufLen is the receive buffer per datagram, more than Torrust's
	// 1496 bytes: a longer datagram is cut to it, as Torrust cuts to its
	// own, and a scrape of more than 74 hashes is answered for the first
	// 74 either way.
	recvBufLen = 2048

	// The largest payloads that fit a 1500-byte packet: minus 20 (IPv4) or
	// 40 (IPv6) bytes of IP header and 8 of UDP header.
	maxPayload4 = 1500 - 20 - 8
	maxPayload6 = 1500 - 40 - 8
)

// Most peers an announce answer carries per family, so it fits maxPayload.
const (
	maxPeers4 = (maxPayload4 - announceHdrLen) / 6  // 242
	maxPeers6 = (maxPayload6 - announceHdrLen) / 18 // 79
)

// Messages of error packets. Parse errors use Torrust's wording.
const (
	msgBadConnectionID = "connection id could not be verified"
	msgInvalidAction   = "bad request: Invalid action"
	msgNoProtocolID    = "bad request: Protocol identifier missing"
	msgShortPacket     = "bad request: invalid data"
	msgInvalidEvent    = "bad request: Invalid announce event"
	msgFullScrape      = "bad request: Full scrapes are not allowed"
	msgInvalidHashList = "bad request: Invalid info hash list"
	msgInternal        = "tracker server error: internal error"
	prefixClientError  = "tracker server error: "
)

// eventPaused is the event number libtorrent sends for a partial seed
// (BEP 21); it is not in BEP 15.
const eventPaused = 4

// udpEvent maps BEP 15 event numbers (0 none, 1 completed, 2 started,
// 3 stopped) to events.
var udpEvent = [4]bittorrent.Event{
	bittorrent.EventNone, bittorrent.EventCompleted, bittorrent.EventStarted, bittorrent.EventStopped,
}

// announceFields are the fixed fields of an announce request.
type announceFields struct {
	infoHash   bittorrent.InfoHash
	peerID     bittorrent.PeerID
	downloaded int64
	left       int64
	uploaded   int64
	event      uint32
	numWant    int32
	port       uint16
}

// parseAnnounce reads the fixed part of an announce (b has announceLen
// bytes or more; the caller checked). The IP field (84..88) and key (88..92)
// are read by no one: the tracker uses the packet's source address.
func parseAnnounce(b []byte, f *announceFields) {
	_ = b[announceLen-1]
	copy(f.infoHash[:], b[16:36])
	copy(f.peerID[:], b[36:56])
	f.downloaded = int64(binary.BigEndian.Uint64(b[56:64]))
	f.left = int64(binary.BigEndian.Uint64(b[64:72]))
	f.uploaded = int64(binary.BigEndian.Uint64(b[72:80]))
	f.event = binary.BigEndian.Uint32(b[80:84])
	f.numWant = int32(binary.BigEndian.Uint32(b[92:96]))
	f.port = binary.BigEndian.Uint16(b[96:98])
}

// BEP 41 option types.
const (
	optEndOfOptions = 0x0
	optNOP          = 0x1
	optURLData      = 0x2
)

// maxURLData bounds the URL data (BEP 41) an announce may carry: the joined
// options, a URL's path and query. A private tracker's is "/announce/" and a
// 32-character key; twice one option's 255 bytes leaves room for any query a
// client adds, and more is refused rather than cut (a cut could keep a key
// the client did not send).
const maxURLData = 510

// announceOptions is what BEP 41 options after an announce carry.
type announceOptions struct {
	// urlData is the concatenated URLData (the announce URL's path and
	// query), up to maxURLData bytes. Private trackers read the peer key
	// from it (urlKey); otherwise it is unused, as in Torrust, and the parse
	// only has to be safe.
	urlData    [maxURLData]byte
	urlDataLen int
	// tooLong is set when the URL data is longer than maxURLData; urlData
	// then holds its first maxURLData bytes.
	tooLong bool
	// malformed is set when an option runs past the end of the packet; the
	// options read up to there are kept and the announce is still answered.
	malformed bool
}

// url is the URL data read.
func (o *announceOptions) url() []byte { return o.urlData[:o.urlDataLen] }

// parseOptions walks the BEP 41 options in b (the bytes after the announce
// body). Every read is bounds-checked against len(b): a length byte that
// points past the packet ends the walk.
func parseOptions(b []byte, o *announceOptions) {
	o.urlDataLen, o.tooLong, o.malformed = 0, false, false
	for i := 0; i < len(b); {
		switch b[i] {
		case optEndOfOptions:
			return
		case optNOP:
			i++
		default:
			if i+1 >= len(b) {
				o.malformed = true
				return
			}
			n := int(b[i+1])
			if i+2+n > len(b) {
				o.malformed = true
				return
			}
			if b[i] == optURLData {
				c := copy(o.urlData[o.urlDataLen:], b[i+2:i+2+n])
				o.urlDataLen += c
				o.tooLong = o.tooLong || c < n
			}
			i += 2 + n
		}
	}
}

// urlKey finds the peer key in URL data, the path and query of the announce
// URL: "/announce/KEY" as over HTTP, or "/KEY" (a tracker URL
// udp://host:port/KEY). The query is not part of it. has is false when the
// path names no key ("", "/", "/announce"); a key is returned as written,
// and the caller checks its format (an empty or slashed one is invalid).
func urlKey(u []byte) (key []byte, has bool) {
	for i, c := range u {
		if c == '?' {
			u = u[:i]
			break
		}
	}
	const announce = "/announce"
	switch {
	case len(u) == 0, string(u) == "/", string(u) == announce:
		return nil, false
	case len(u) > len(announce) && string(u[:len(announce)+1]) == announce+"/":
		return u[len(announce)+1:], true
	case u[0] == '/':
		return u[1:], true
	}
	return u, true
}

func putHeader(out []byte, action uint32, txid []byte) {
	binary.BigEndian.PutUint32(out[0:4], action)
	copy(out[4:8], txid)
}

// writeConnect writes a connect response; out has connectRespLen bytes.
func writeConnect(out []byte, txid []byte, id uint64) int {
	putHeader(out, actionConnect, txid)
	binary.BigEndian.PutUint64(out[8:16], id)
	return connectRespLen
}

// writeError writes an error packet, cutting msg to fit out.
func writeError(out []byte, txid []byte, msg string) int {
	putHeader(out, actionError, txid)
	return errorHdrLen + copy(out[errorHdrLen:], msg)
}

// writeAnnounce writes an announce response with the peers of fam, as many
// as fit out (which the caller sized for the client's family).
func writeAnnounce(out []byte, txid []byte, r *bittorrent.AnnounceResponse, fam bittorrent.Family) int {
	putHeader(out, actionAnnounce, txid)
	binary.BigEndian.PutUint32(out[8:12], r.Interval)
	binary.BigEndian.PutUint32(out[12:16], r.Leechers)
	binary.BigEndian.PutUint32(out[16:20], r.Seeders)
	n := announceHdrLen
	c := r.Compact4
	if fam != bittorrent.IPv4 {
		c = r.Compact6
	}
	// Whole entries only, as many as fit; the handler has the store write
	// them in place, and then there is nothing to copy.
	size := compactLen(fam)
	k := min(len(c), max(len(out)-n, 0)) / size * size
	if k > 0 && &c[0] == &out[n] {
		return n + k
	}
	return n + copy(out[n:], c[:k])
}

// compactLen is the size of a peer of fam in an announce response.
func compactLen(fam bittorrent.Family) int {
	if fam == bittorrent.IPv4 {
		return 6
	}
	return 18
}

// writeScrape writes a scrape response, one entry per file in order.
func writeScrape(out []byte, txid []byte, files []bittorrent.SwarmStats) int {
	putHeader(out, actionScrape, txid)
	n := errorHdrLen
	for _, f := range files {
		if n+scrapeEntryLen > len(out) {
			break
		}
		binary.BigEndian.PutUint32(out[n:], f.Seeders)
		binary.BigEndian.PutUint32(out[n+4:], f.Completed)
		binary.BigEndian.PutUint32(out[n+8:], f.Leechers)
		n += scrapeEntryLen
	}
	return n
}
