package wstracker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// tricky holds every byte the encoding must treat specially: a control
// character, '"', '\\', DEL, and the two ends of the two-byte UTF-8 range.
var tricky = id{0x00, 0x22, 0x5C, 0x7F, 0x80, 0xFF, 0x01, 0x1F, 0x20, 'a', 0xC3, 0xA9, 0x0A, 0x0D, 0x09, 0x08, 0x0C, 0x2F, 0x3C, 0xFE}

func jsonID(b id) string { return string(appendID(nil, &b)) }

func TestIDRoundTrip(t *testing.T) {
	for _, b := range []id{tricky, {}, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}} {
		enc := jsonID(b)
		// What a JavaScript client reads: encoding/json decodes JSON as
		// JSON.parse does; the string must be the 20 latin1 code points.
		var s string
		if err := json.Unmarshal([]byte(enc), &s); err != nil {
			t.Fatalf("%x: encoded %q is not JSON: %v", b, enc, err)
		}
		want := make([]rune, 20)
		for i, c := range b {
			want[i] = rune(c)
		}
		if s != string(want) {
			t.Fatalf("%x: decoded %q, want %q", b, s, string(want))
		}
		var got id
		if !decodeJSONID(json.RawMessage(enc), &got) || got != b {
			t.Fatalf("%x: round trip gave %x", b, got)
		}
	}
}

func TestDecodeIDRefuses(t *testing.T) {
	twenty := strings.Repeat("a", 20)
	for _, tc := range []struct {
		name string
		s    string
		ok   bool
	}{
		{"20 ascii", twenty, true},
		{"20 latin1", strings.Repeat("\u00ff", 20), true},
		{"19", twenty[:19], false},
		{"21", twenty + "a", false},
		{"U+0100", twenty[:19] + "\u0100", false},
		{"U+FFFD (invalid UTF-8)", twenty[:19] + "\ufffd", false},
		{"emoji", twenty[:19] + "😀", false},
		{"40 hex", strings.Repeat("ab", 20), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out id
			if got := decodeID(tc.s, &out); got != tc.ok {
				t.Fatalf("decodeID(%q) = %v, want %v", tc.s, got, tc.ok)
			}
		})
	}
}

func announceJSON(h, p id, extra string) string {
	return `{"action":"announce","info_hash":` + jsonID(h) + `,"peer_id":` + jsonID(p) + extra + `}`
}

func TestParseClientVariants(t *testing.T) {
	h, p := tricky, id{1, 2, 3}
	offer := `,"offers":[{"offer":{"type":"offer","sdp":"v=0"},"offer_id":` + jsonID(id{9}) + `}]`
	for _, tc := range []struct {
		name  string
		extra string
		event bittorrent.Event
		left  int64
		offs  int
	}{
		{"reference client started", `,"numwant":5,"uploaded":0,"downloaded":0,"left":1234,"event":"started"` + offer, bittorrent.EventStarted, 1234, 1},
		{"webtorrent magnet, left null", `,"left":null,"event":"started"`, bittorrent.EventStarted, bittorrent.LeftUnknown, 0},
		{"anacrolix left -1 and <regular>", `,"left":-1,"event":"<regular>"` + offer, bittorrent.EventNone, bittorrent.LeftUnknown, 1},
		{"libtorrent paused, corrupt and key", `,"left":0,"event":"paused","corrupt":0,"key":"abc"`, bittorrent.EventNone, 0, 0},
		{"update and unknown fields", `,"event":"update","left":7,"trackerid":"x","something":{"deep":[1,2]}`, bittorrent.EventNone, 7, 0},
		{"no event", `,"left":1e3`, bittorrent.EventNone, 1000, 0},
		{"completed", `,"left":0,"event":"completed"`, bittorrent.EventCompleted, 0, 0},
		{"stopped", `,"event":"stopped"`, bittorrent.EventStopped, bittorrent.LeftUnknown, 0},
		{"huge numbers", `,"left":1e300,"uploaded":18446744073709551615`, bittorrent.EventNone, 1<<63 - 1, 0},
		{"offers null", `,"offers":null`, bittorrent.EventNone, bittorrent.LeftUnknown, 0},
		{"event a number", `,"event":3,"left":5`, bittorrent.EventNone, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := parse([]byte(announceJSON(h, p, tc.extra)), limits{maxOffers: 10, maxHashes: 10})
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if q.infoHash != h || q.peerID != p || q.event != tc.event || q.left != tc.left || len(q.offers) != tc.offs {
				t.Fatalf("got hash %x peer %x event %v left %d offers %d", q.infoHash, q.peerID, q.event, q.left, len(q.offers))
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	h, p := id{1}, id{2}
	j19 := `"` + strings.Repeat("a", 19) + `"`
	j21 := `"` + strings.Repeat("a", 21) + `"`
	jBig := `"` + strings.Repeat("a", 19) + `\u0100"`
	for _, tc := range []struct {
		name, msg string
		want      error
	}{
		{"not json", `hello`, errBadJSON},
		{"invalid UTF-8 in an offer", announceJSON(h, p, ",\"offers\":[{\"offer\":{\"type\":\"offer\",\"sdp\":\"\xff\xfe\"},\"offer_id\":"+jsonID(p)+"}]"), errBadUTF8},
		{"invalid UTF-8 in an unknown field", announceJSON(h, p, ",\"x\":\"\xc3\""), errBadUTF8},
		{"array", `[1]`, errBadJSON},
		{"no action", `{"info_hash":` + jsonID(h) + `}`, errBadAction},
		{"unknown action", `{"action":"connect"}`, errBadAction},
		{"info_hash 19", `{"action":"announce","info_hash":` + j19 + `,"peer_id":` + jsonID(p) + `}`, errBadInfoHash},
		{"info_hash 21", `{"action":"announce","info_hash":` + j21 + `,"peer_id":` + jsonID(p) + `}`, errBadInfoHash},
		{"info_hash U+0100", `{"action":"announce","info_hash":` + jBig + `,"peer_id":` + jsonID(p) + `}`, errBadInfoHash},
		{"info_hash number", `{"action":"announce","info_hash":5,"peer_id":` + jsonID(p) + `}`, errBadInfoHash},
		{"peer_id 19", announceJSON(h, p, "")[:0] + `{"action":"announce","info_hash":` + jsonID(h) + `,"peer_id":` + j19 + `}`, errBadPeerID},
		{"peer_id 21", `{"action":"announce","info_hash":` + jsonID(h) + `,"peer_id":` + j21 + `}`, errBadPeerID},
		{"peer_id U+0100", `{"action":"announce","info_hash":` + jsonID(h) + `,"peer_id":` + jBig + `}`, errBadPeerID},
		{"offer_id 21", announceJSON(h, p, `,"offers":[{"offer":{"type":"offer","sdp":"x"},"offer_id":`+j21+`}]`), errBadOfferID},
		{"offer_id U+0100", announceJSON(h, p, `,"offers":[{"offer":{"type":"offer","sdp":"x"},"offer_id":`+jBig+`}]`), errBadOfferID},
		{"offer not an object", announceJSON(h, p, `,"offers":[{"offer":"sdp","offer_id":`+jsonID(p)+`}]`), errBadOffer},
		{"offers not an array", announceJSON(h, p, `,"offers":{}`), errBadOffer},
		{"answer without to_peer_id", announceJSON(h, p, `,"answer":{"type":"answer","sdp":"x"},"offer_id":`+jsonID(p)), errBadToPeerID},
		{"to_peer_id 19", announceJSON(h, p, `,"answer":{"type":"answer","sdp":"x"},"offer_id":`+jsonID(p)+`,"to_peer_id":`+j19), errBadToPeerID},
		{"to_peer_id U+0100", announceJSON(h, p, `,"answer":{"type":"answer","sdp":"x"},"offer_id":`+jsonID(p)+`,"to_peer_id":`+jBig), errBadToPeerID},
		{"answer offer_id 21", announceJSON(h, p, `,"answer":{"type":"answer","sdp":"x"},"to_peer_id":`+jsonID(p)+`,"offer_id":`+j21), errBadOfferID},
		{"answer not an object", announceJSON(h, p, `,"answer":"x","to_peer_id":`+jsonID(p)+`,"offer_id":`+jsonID(p)), errBadAnswer},
		{"left a string", announceJSON(h, p, `,"left":"10"`), errBadNumber},
		{"scrape hash 21", `{"action":"scrape","info_hash":` + j21 + `}`, errBadInfoHash},
		{"scrape list with U+0100", `{"action":"scrape","info_hash":[` + jsonID(h) + `,` + jBig + `]}`, errBadInfoHash},
		{"peer_id a number", `{"action":"announce","info_hash":` + jsonID(h) + `,"peer_id":7}`, errBadPeerID},
		{"action a number", `{"action":1,"info_hash":` + jsonID(h) + `}`, errBadAction},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse([]byte(tc.msg), limits{maxOffers: 10, maxHashes: 3})
			if err != tc.want {
				t.Fatalf("parse(%s) = %v, want %v", tc.msg, err, tc.want)
			}
		})
	}
}

func TestParseScrapeForms(t *testing.T) {
	a, b := tricky, id{7}
	for _, tc := range []struct {
		name   string
		msg    string
		hashes []id
		single bool
		all    bool
	}{
		{"one string", `{"action":"scrape","info_hash":` + jsonID(a) + `}`, []id{a}, true, false},
		{"array", `{"action":"scrape","info_hash":[` + jsonID(a) + `,` + jsonID(b) + `]}`, []id{a, b}, false, false},
		{"none", `{"action":"scrape"}`, nil, false, true},
		{"null", `{"action":"scrape","info_hash":null}`, nil, false, true},
		{"empty array", `{"action":"scrape","info_hash":[]}`, nil, false, false},
		{"past the limit", `{"action":"scrape","info_hash":[` + strings.Repeat(jsonID(a)+",", 10) + jsonID(b) + `]}`,
			[]id{a, a, a, a, a, a, a, a, a, a}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := parse([]byte(tc.msg), limits{maxOffers: 10, maxHashes: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(q.hashes) != len(tc.hashes) || q.single != tc.single || q.allHashes != tc.all {
				t.Fatalf("got %x single %v all %v", q.hashes, q.single, q.allHashes)
			}
			for i := range tc.hashes {
				if q.hashes[i] != tc.hashes[i] {
					t.Fatalf("hash %d = %x", i, q.hashes[i])
				}
			}
		})
	}
}

func TestOffersBeyondTheLimitAreDropped(t *testing.T) {
	var offers []string
	for i := range 12 {
		offers = append(offers, `{"offer":{"type":"offer","sdp":"x"},"offer_id":`+jsonID(id{byte(i)})+`}`)
	}
	q, err := parse([]byte(announceJSON(id{1}, id{2}, `,"offers":[`+strings.Join(offers, ",")+`]`)), limits{maxOffers: 10, maxHashes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.offers) != 10 {
		t.Fatalf("%d offers kept, want 10", len(q.offers))
	}
}

// Every message the server builds is JSON with action, and info_hash when
// it names one, whatever the bytes.
func TestServerMessagesAreJSON(t *testing.T) {
	h, p, o := tricky, id{0xFF}, id{0x22, 0x5C}
	sdp := json.RawMessage(`{"type":"offer","sdp":"v=0\r\n"}`)
	for name, msg := range map[string][]byte{
		"announce": appendAnnounceResponse(nil, &h, 120, bittorrent.SwarmStats{Seeders: 1, Leechers: 2}),
		"offer":    appendRelay(nil, &h, &p, &o, "offer", sdp),
		"answer":   appendRelay(nil, &h, &p, &o, "answer", sdp),
		"failure":  appendFailure(nil, "announce", &h, "a \"quoted\" reason\n"),
		"scrape":   appendScrape(nil, []scrapeFile{{hash: h}, {hash: p}}, false, 600),
		"scrape 1": appendScrape(nil, []scrapeFile{{hash: h}}, true, 600),
	} {
		var m map[string]any
		if err := json.Unmarshal(msg, &m); err != nil {
			t.Fatalf("%s: %s is not JSON: %v", name, msg, err)
		}
		if m["action"] == nil || m["info_hash"] == nil {
			t.Fatalf("%s: %s lacks action or info_hash", name, msg)
		}
	}
}
