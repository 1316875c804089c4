// Package bittorrent is the tracker's vocabulary: info hashes, peer ids, peers,
// events, and the announce and scrape requests and responses that every
// transport (UDP, HTTP) translates its bytes into. It knows no wire format.
package bittorrent

import (
	"encoding/hex"
	"errors"
	"net/netip"
)

// InfoHash identifies a torrent (BEP 3, v1 SHA-1).
type InfoHash [20]byte

// String is the lowercase hex form used by the API and the database.
func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// ErrBadInfoHash reports a hex info hash that is not 40 hex characters.
var ErrBadInfoHash = errors.New("expected a 40 character long string")

// ParseInfoHash decodes 40 hex characters in either case.
func ParseInfoHash(s string) (InfoHash, error) {
	var h InfoHash
	if len(s) != 40 {
		return h, ErrBadInfoHash
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, ErrBadInfoHash
	}
	return h, nil
}

// PeerID is the 20-byte id a client picks for itself. It is public (every
// peer of the swarm sees it), so it never authorises anything.
type PeerID [20]byte

// Event is the announce event. The zero value is a regular interval announce.
type Event uint8

// Events in the order of their names; the UDP codec maps BEP 15's numbers.
const (
	EventNone Event = iota
	EventStarted
	EventStopped
	EventCompleted
)

// String gives the name the REST API shows for a peer's last event.
func (e Event) String() string {
	switch e {
	case EventStarted:
		return "Started"
	case EventStopped:
		return "Stopped"
	case EventCompleted:
		return "Completed"
	default:
		return "None"
	}
}

// LeftUnknown is the left of a peer that did not say how much it lacks: an
// HTTP announce without left. UDP's left is a signed 64-bit field, and
// clients that do not know their progress send a negative value there
// (bittorrent-tracker's Client sends all ones, -1), which means the same.
const LeftUnknown int64 = -1

// Complete says whether a peer that announced left is a seeder: only when it
// says it lacks nothing. A negative (unknown) left is a leecher, where
// Torrust counts left <= 0 as complete: a peer that has not told us it is
// complete is not handed out as a seeder, nor handed only leechers.
func Complete(left int64) bool { return left == 0 }

// Family selects which address families of peers an answer carries.
type Family uint8

// Family bits.
const (
	IPv4 Family = 1 << iota
	IPv6
	BothFamilies = IPv4 | IPv6
)

// FamilyOf is the family of a normalised address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// NormalizeAddr turns IPv4-mapped IPv6 addresses into IPv4 and drops zones,
// so a peer has one identity whichever socket it came through.
func NormalizeAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// Key is a private tracker's peer key (BEP 27 style): 32 ASCII alphanumerics.
type Key [32]byte

// KeyLength is the length of every peer key.
const KeyLength = len(Key{})

// ParseKey checks that s is 32 characters of [0-9A-Za-z].
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != KeyLength {
		return k, ErrKeyLength
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return k, ErrKeyChars
		}
		k[i] = s[i]
	}
	return k, nil
}

// ParseKeyBytes is ParseKey for a byte slice, without allocating.
func ParseKeyBytes(b []byte) (Key, bool) {
	var k Key
	if len(b) != KeyLength {
		return k, false
	}
	for i, c := range b {
		if !isAlnum(c) {
			return k, false
		}
		k[i] = c
	}
	return k, true
}

// Errors of ParseKey, worded as Torrust words them.
var (
	ErrKeyLength = errors.New("Invalid key length. Key must be have 32 chars")
	ErrKeyChars  = errors.New("Invalid chars for key. Key can only alphanumeric chars (0-9, a-z, A-Z)")
)

func (k Key) String() string { return string(k[:]) }

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Peer is one entry of an announce answer.
type Peer struct {
	ID   PeerID
	Addr netip.AddrPort
}

// AnnounceRequest is an announce as every transport hands it to the tracker.
type AnnounceRequest struct {
	InfoHash InfoHash
	PeerID   PeerID
	// Addr is the client's address as the transport saw it (the UDP source,
	// the TCP peer or the X-Forwarded-For entry) with the announced port.
	// The tracker normalises it and applies external_ip.
	Addr       netip.AddrPort
	Uploaded   int64
	Downloaded int64
	// Left is what the peer still has to download; negative means unknown
	// (LeftUnknown): see Complete.
	Left  int64
	Event Event
	// NumWant is the number of peers asked for; 0 or less means the default.
	NumWant int32
	// Families says which peer lists the answer carries: UDP asks for the
	// client's own family, HTTP for both.
	Families Family
	// Key is the peer key from the URL path (HTTP), when HasKey.
	Key    Key
	HasKey bool
	// Compact asks for the peers in compact form (UDP, compact HTTP), in
	// AnnounceResponse.Compact4 and Compact6, without peer ids.
	Compact bool
	// Sample, when not 0, is the randomness the swarm store draws the
	// sample of peers from (swarm.Announce.Sample); never from the client.
	Sample uint64
}

// AnnounceResponse is filled by the tracker. The peer lists are appended to,
// so a transport can keep one response per worker and reuse its buffers.
type AnnounceResponse struct {
	Interval    uint32
	MinInterval uint32
	Seeders     uint32 // "complete"
	Leechers    uint32 // "incomplete"
	Peers4      []Peer
	Peers6      []Peer
	// Compact4 and Compact6 hold the peers instead of Peers4 and Peers6
	// when the request asked for a compact answer (AnnounceRequest.Compact):
	// 6 bytes per IPv4 peer and 18 per IPv6 peer, the address and then the
	// port, big-endian, as BEP 23 and BEP 7 put them on the wire.
	Compact4 []byte
	Compact6 []byte
}

// Reset empties the response, keeping its buffers. Field by field, for the
// reason given in tracker.Announce (a literal is a stack copy that stalls);
// TestResetClearsEveryField counts the fields.
func (r *AnnounceResponse) Reset() {
	r.Interval, r.MinInterval, r.Seeders, r.Leechers = 0, 0, 0, 0
	r.Peers4, r.Peers6 = r.Peers4[:0], r.Peers6[:0]
	r.Compact4, r.Compact6 = r.Compact4[:0], r.Compact6[:0]
}

// ScrapeRequest asks for the counts of one or more torrents.
type ScrapeRequest struct {
	InfoHashes []InfoHash
	// Addr is the client's address, for statistics by family.
	Addr   netip.AddrPort
	Key    Key
	HasKey bool
}

// SwarmStats are a torrent's counts as a scrape reports them.
type SwarmStats struct {
	Seeders   uint32 // "complete"
	Completed uint32 // "downloaded"
	Leechers  uint32 // "incomplete"
}

// ScrapeResponse holds one entry per requested hash, in request order.
type ScrapeResponse struct {
	Files []SwarmStats
}

// Reset empties the response, keeping its buffer.
func (r *ScrapeResponse) Reset() { r.Files = r.Files[:0] }
