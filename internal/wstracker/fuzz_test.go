package wstracker

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// FuzzParse feeds the message parser anything: it must not panic, and what
// it accepts must round-trip: the binary strings re-encoded and parsed
// again give the same bytes, and every message built from the request is
// JSON in UTF-8. Seeds in testdata/fuzz/FuzzParse are the clients' shapes.
func FuzzParse(f *testing.F) {
	f.Add([]byte(announceJSON(tricky, id{1}, `,"left":null,"event":"started"`+offersJSON(id{2}))))
	f.Add([]byte(`{"action":"scrape","info_hash":["aaaaaaaaaaaaaaaaaaaa","\u00ff\u0000aaaaaaaaaaaaaaaaaa"]}`))
	lim := limits{maxOffers: 10, maxHashes: 74}
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := parse(data, lim)
		if q == nil {
			t.Fatal("nil request")
		}
		var h *id
		if q.hasHash {
			h = &q.infoHash
		}
		if err != nil {
			if !json.Valid(appendFailure(nil, q.action, h, err.Error())) {
				t.Fatal("failure message is not JSON")
			}
			return
		}
		if q.action == actionScrape {
			files := make([]scrapeFile, len(q.hashes))
			for i := range q.hashes {
				files[i].hash = q.hashes[i]
			}
			if !json.Valid(appendScrape(nil, files, q.single, 1)) {
				t.Fatal("scrape answer is not JSON")
			}
			return
		}
		again, err := parse([]byte(announceJSON(q.infoHash, q.peerID, "")), lim)
		if err != nil || again.infoHash != q.infoHash || again.peerID != q.peerID {
			t.Fatalf("ids do not round-trip: %x %x, %v", q.infoHash, q.peerID, err)
		}
		msgs := [][]byte{appendAnnounceResponse(nil, &q.infoHash, 120, bittorrent.SwarmStats{})}
		for _, o := range q.offers {
			msgs = append(msgs, appendRelay(nil, &q.infoHash, &q.peerID, &o.id, "offer", o.sdp))
		}
		if q.answer != nil {
			msgs = append(msgs, appendRelay(nil, &q.infoHash, &q.peerID, &q.offerID, "answer", q.answer))
		}
		for _, m := range msgs {
			// Valid JSON, and UTF-8 (a text frame that is not fails a
			// browser's connection; json.Valid does not check it).
			if !json.Valid(m) || !utf8.Valid(m) {
				t.Fatalf("%q is not JSON in UTF-8", m)
			}
		}
	})
}

// FuzzDecodeRawID: reading an id from a JSON string's contents as sent
// gives what decoding the string and then the id gives.
func FuzzDecodeRawID(f *testing.F) {
	f.Add([]byte(jsonID(tricky)))
	f.Add([]byte(`"\u00ff\u0000\"\\\/\b\f\n\r\taaaaaaaaaa"`))
	f.Add([]byte(`"\ud83d\ude00aaaaaaaaaaaaaaaaaaa"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) || len(data) < 2 || data[0] != '"' {
			return
		}
		sc := scanner{b: data}
		content, esc, ok := sc.str()
		if !ok {
			return
		}
		var want, got id
		wantOK := decodeID(unquote(content, esc), &want)
		gotOK := decodeRawID(content, esc, &got)
		if wantOK != gotOK || (wantOK && want != got) {
			t.Fatalf("%q: decodeID %v %x, decodeRawID %v %x", content, wantOK, want, gotOK, got)
		}
	})
}
