package wstracker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// knownKeys are the fields scanMessage and scanOffers read.
var knownKeys = []string{"action", "info_hash", "peer_id", "event", "left", "numwant", "offers", "answer",
	"to_peer_id", "offer_id", "uploaded", "downloaded", "offer"}

// foldedKey reports whether data holds a string that encoding/json would
// take for a known key but is not one ("Action", "ſcrape"): the scanner
// matches keys exactly where encoding/json folds case, a difference on
// purpose.
func foldedKey(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if s, ok := tok.(string); ok {
			for _, k := range knownKeys {
				if s != k && strings.EqualFold(s, k) {
					return true
				}
			}
		}
	}
}

// wireJSON is wire as encoding/json reads it.
type wireJSON struct {
	Action     laxString       `json:"action"`
	InfoHash   json.RawMessage `json:"info_hash"`
	PeerID     laxString       `json:"peer_id"`
	Event      laxString       `json:"event"`
	Left       json.RawMessage `json:"left"`
	NumWant    json.RawMessage `json:"numwant"`
	Offers     json.RawMessage `json:"offers"`
	Answer     json.RawMessage `json:"answer"`
	ToPeerID   laxString       `json:"to_peer_id"`
	OfferID    laxString       `json:"offer_id"`
	Uploaded   json.RawMessage `json:"uploaded"`
	Downloaded json.RawMessage `json:"downloaded"`
}

// laxString is a string field as scanMessage reads it (laxStr): a JSON
// string is kept, any other value leaves it unset.
type laxString struct{ s *string }

func (l *laxString) UnmarshalJSON(b []byte) error {
	l.s = nil
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		l.s = &v
	}
	return nil
}

type wireOfferJSON struct {
	Offer   json.RawMessage `json:"offer"`
	OfferID *string         `json:"offer_id"`
}

func (j jstr) ptr() *string {
	if !j.set {
		return nil
	}
	v := unquote(j.raw, j.esc)
	return &v
}

func (w *wire) json() wireJSON {
	return wireJSON{
		Action: laxString{w.Action.ptr()}, InfoHash: w.InfoHash, PeerID: laxString{w.PeerID.ptr()}, Event: laxString{w.Event.ptr()},
		Left: w.Left, NumWant: w.NumWant, Offers: w.Offers, Answer: w.Answer,
		ToPeerID: laxString{w.ToPeerID.ptr()}, OfferID: laxString{w.OfferID.ptr()}, Uploaded: w.Uploaded, Downloaded: w.Downloaded,
	}
}

// FuzzScanMatchesEncodingJSON: on any UTF-8 input, the scanner accepts
// what encoding/json accepts into the same fields, with the same values,
// and refuses what it refuses (keys that differ only in case aside).
func FuzzScanMatchesEncodingJSON(f *testing.F) {
	f.Add([]byte(announceJSON(tricky, id{1}, `,"left":null,"event":"started","x":[1,{"y":-0.5e+3}]`+offersJSON(id{2}, id{3}))))
	f.Add([]byte(`{"action":"scrape","info_hash":["a\u0000\ud83d\ude00","\ud800"],"peer_id":null}`))
	f.Add([]byte(`{"action":"announce","action":"scrape","peer_id":5}`))
	f.Add([]byte(`{"offers":[{"offer":null,"offer_id":"\/x"},null,3,{"offer":{"a":[]},"offer_id":null,"offer_id":"z"}]}`))
	f.Add([]byte(` {"a":tru} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A top-level null is the one non-object encoding/json takes
		// into a struct (as a no-op); the scanner takes objects only, as
		// parseInto does before it.
		if !utf8.Valid(data) || foldedKey(data) || string(bytes.TrimSpace(data)) == "null" {
			return
		}
		var want wireJSON
		var gotW wire
		wantOK := json.Unmarshal(data, &want) == nil
		gotOK := scanMessage(data, &gotW)
		got := gotW.json()
		if wantOK != gotOK {
			t.Fatalf("%q: encoding/json ok %v, scanner ok %v", data, wantOK, gotOK)
		}
		if !wantOK {
			return
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%q:\nencoding/json %+v\nscanner       %+v", data, want, got)
		}
		if len(got.Offers) == 0 || isNull(got.Offers) { // parseInto checks for null before scanOffers
			return
		}
		var wantO []wireOfferJSON
		var gotWO []wireOffer
		wantOK = json.Unmarshal(got.Offers, &wantO) == nil
		gotOK = scanOffers(got.Offers, &gotWO)
		var gotO []wireOfferJSON
		for _, o := range gotWO {
			gotO = append(gotO, wireOfferJSON{Offer: o.Offer, OfferID: o.OfferID.ptr()})
		}
		if wantOK != gotOK {
			t.Fatalf("offers %q: encoding/json ok %v, scanner ok %v", got.Offers, wantOK, gotOK)
		}
		if wantOK && len(wantO)+len(gotO) > 0 && !reflect.DeepEqual(wantO, gotO) { // [] and nil alike
			t.Fatalf("offers %q:\nencoding/json %+v\nscanner       %+v", got.Offers, wantO, gotO)
		}
	})
}

func TestUnquote(t *testing.T) {
	for _, s := range []string{`plain`, `a\"b\\c\/d`, `\b\f\n\r\t`, `\u0000\u00ff\u0100`, `\ud83d\ude00`, `\ud800`, `\ud800x`, `\ud800\u0041`, `\udc00\ud800`, `é\u00e9`} {
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			t.Fatal(err)
		}
		if got := unquote([]byte(s), strings.Contains(s, `\`)); got != want {
			t.Errorf("unquote(%s) = %q, want %q", s, got, want)
		}
	}
}

// plain8 agrees with a byte-by-byte check, for every byte at every place.
func TestPlain8(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			var b [8]byte
			for i := range b {
				b[i] = 'a'
			}
			b[pos] = byte(c)
			want := c >= 0x20 && c != '"' && c != '\\'
			if got := plain8(binary.LittleEndian.Uint64(b[:])); got != want {
				t.Fatalf("byte %#x at %d: plain8 %v, want %v", c, pos, got, want)
			}
		}
	}
}
