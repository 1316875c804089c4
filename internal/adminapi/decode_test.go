package adminapi

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		path  string
		route route
		param string
	}{
		{"/api/health_check", routeHealth, ""},
		{"/metrics", routeMetricsOpen, ""},
		{"/api/v1/metrics", routeMetricsV1, ""},
		{"/api/v1/stats", routeStats, ""},
		{"/api/v1/torrents", routeTorrents, ""},
		{"/api/v1/torrent/abc", routeTorrent, "abc"},
		{"/api/v1/torrent/a%2Fb", routeTorrent, "a/b"},
		{"/api/v1/torrent/a%zz", routeTorrent, "a%zz"},
		{"/api/v1/torrent/", routeNone, ""},
		{"/api/v1/torrent/a/b", routeNone, ""},
		{"/api/v1/whitelist/reload", routeWhitelistReload, ""},
		{"/api/v1/whitelist/x", routeWhitelist, "x"},
		{"/api/v1/keys", routeKeys, ""},
		{"/api/v1/keys/reload", routeKeysReload, ""},
		{"/api/v1/key/60", routeKey, "60"},
		{"/api/v1/stats/", routeNone, ""},
		{"/api/v1/", routeNone, ""},
		{"/API/v1/stats", routeNone, ""},
		{"/", routeNone, ""},
		{"", routeNone, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r, p := match(tt.path)
			if r != tt.route || p != tt.param {
				t.Fatalf("match(%q) = %v %q, want %v %q", tt.path, r, p, tt.route, tt.param)
			}
		})
	}
}

func TestParseUint(t *testing.T) {
	tests := []struct {
		in   string
		max  uint64
		want uint64
		err  error
	}{
		{"0", math.MaxUint32, 0, nil},
		{"+7", math.MaxUint32, 7, nil},
		{"4294967295", math.MaxUint32, math.MaxUint32, nil},
		{"4294967296", math.MaxUint32, 0, errTooLarge},
		{"18446744073709551615", math.MaxUint64, math.MaxUint64, nil},
		{"18446744073709551616", math.MaxUint64, 0, errTooLarge},
		{"99999999999999999999x", math.MaxUint64, 0, errInvalidDigit},
		{"", math.MaxUint32, 0, errEmpty},
		{"+", math.MaxUint32, 0, errEmpty},
		{"-0", math.MaxUint32, 0, errInvalidDigit},
		{" 1", math.MaxUint32, 0, errInvalidDigit},
		{"1e3", math.MaxUint32, 0, errInvalidDigit},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseUint(tt.in, tt.max)
			if got != tt.want || err != tt.err {
				t.Fatalf("parseUint(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		raw  string
		want []pair
	}{
		{"", nil},
		{"a=1&b=2", []pair{{"a", "1"}, {"b", "2"}}},
		{"a&&b=", []pair{{"a", ""}, {"b", ""}}},
		{"t=a+b%20c", []pair{{"t", "a b c"}}},
		{"t=100%&u=%zz%41", []pair{{"t", "100%"}, {"u", "%zzA"}}},
		{"info_hash=1&info_hash=2", []pair{{"info_hash", "1"}, {"info_hash", "2"}}},
		{"x=a=b", []pair{{"x", "a=b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			if got := parseQuery(tt.raw); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseQuery(%q) = %v, want %v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestClientName(t *testing.T) {
	tests := []struct{ id, want string }{
		{"-qB4250-abcdefghijkl", "qBittorrent"},
		{"-TR3000-abcdefghijkl", "Transmission"},
		{"-lt0D80-abcdefghijkl", "libTorrent"},
		{"-LT1200-abcdefghijkl", "libtorrent"},
		{"-UT3550-abcdefghijkl", "µTorrent"},
		{"-DE13F0-abcdefghijkl", "Deluge"},
		{"-BI2000-abcdefghijkl", "BiglyBT"},
		{"-ZZ1000-abcdefghijkl", ""},
		{"-qB4250xabcdefghijkl", ""},
		{"M4-3-6--abcdefghijkl", "Mainline"},
		{"M7-10-2-abcdefghijkl", "Mainline"},
		{"S58B-----abcdefghijk", "Shadow's client"},
		{"T03I-----abcdefghijk", "BitTornado"},
		{"Sxxxxxxxxxxxxxxxxxxx", ""},
		{"xxxxxxxxxxxxxxxxxxxx", ""},
		{"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			var id bittorrent.PeerID
			copy(id[:], tt.id)
			if got := ClientName(id); got != tt.want {
				t.Fatalf("ClientName(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
}

func TestRandomKey(t *testing.T) {
	seen := map[bittorrent.Key]bool{}
	for range 100 {
		k, err := randomKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bittorrent.ParseKey(k.String()); err != nil {
			t.Fatalf("random key %q: %v", k, err)
		}
		if seen[k] {
			t.Fatalf("random key %q repeated", k)
		}
		seen[k] = true
	}
}

func TestRustEscape(t *testing.T) {
	if got := rustEscape("a \"b\" \\ c\nd"); got != `a \"b\" \\ c\nd` {
		t.Fatalf("got %s", got)
	}
}

// FuzzParseQuery compares the lenient decoder with net/url's on the inputs
// net/url accepts: the pairs must be the same, in order.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "token=MyAccessToken", "a=1&a=2&b", "x=%41+%2B", "%zz=1", "a;b=1", "&&=&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := parseQuery(raw)
		if strings.Contains(raw, ";") {
			return
		}
		want, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		byName := map[string][]string{}
		for _, p := range got {
			byName[p.name] = append(byName[p.name], p.value)
		}
		if len(byName) != len(want) {
			t.Fatalf("parseQuery(%q) = %v, net/url gives %v", raw, got, want)
		}
		for k, v := range want {
			if !reflect.DeepEqual(byName[k], v) {
				t.Fatalf("parseQuery(%q)[%q] = %q, net/url gives %q", raw, k, byName[k], v)
			}
		}
	})
}

// FuzzDecodeKeyForm checks the POST /keys decoder against encoding/json
// decoding the same fields into *string and *uint64: both must accept the
// same bodies and find the same values.
func FuzzDecodeKeyForm(f *testing.F) {
	for _, s := range []string{`{}`, `{"key":null,"seconds_valid":null}`, `{"key":"abc","seconds_valid":60}`,
		`{"seconds_valid":-1}`, `{"seconds_valid":1.5}`, `{"seconds_valid":"1"}`, `{"key":5}`, `[]`, `null`,
		`{"seconds_valid":18446744073709551616}`, `{"key":"x"} y`, `{"a":{"b":[1,2,{}]}}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		form, err := decodeKeyForm(body)
		var obj map[string]json.RawMessage
		goErr := json.Unmarshal(body, &obj)
		if goErr == nil && obj == nil {
			// encoding/json accepts null for a map; serde rejects it for a struct.
			if err == nil {
				t.Fatalf("decodeKeyForm(%q) accepted null", body)
			}
			return
		}
		var key *string
		var secs *uint64
		if goErr == nil {
			if raw, ok := obj["key"]; ok {
				goErr = json.Unmarshal(raw, &key)
			}
		}
		if goErr == nil {
			if raw, ok := obj["seconds_valid"]; ok {
				goErr = json.Unmarshal(raw, &secs)
			}
		}
		if (err == nil) != (goErr == nil) {
			t.Fatalf("decodeKeyForm(%q) err = %v, encoding/json err = %v", body, err, goErr)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("empty error for %q", body)
			}
			return
		}
		if form.hasKey != (key != nil) || key != nil && form.key != *key {
			t.Fatalf("decodeKeyForm(%q) key = %q/%v, encoding/json %v", body, form.key, form.hasKey, key)
		}
		if form.hasSeconds != (secs != nil) || secs != nil && form.seconds != *secs {
			t.Fatalf("decodeKeyForm(%q) seconds = %d/%v, encoding/json %v", body, form.seconds, form.hasSeconds, secs)
		}
	})
}

// FuzzRequest drives the whole handler with arbitrary methods, paths,
// queries, headers and bodies: no panic, only the statuses the API uses,
// empty bodies where Torrust sends none, and valid JSON in JSON answers.
func FuzzRequest(f *testing.F) {
	seeds := []struct{ method, path, query, auth, ctype, body string }{
		{"GET", "/api/v1/stats", "token=MyAccessToken", "", "", ""},
		{"GET", "/api/v1/stats", "token=MyAccessToken&format=prometheus", "", "", ""},
		{"GET", "/api/v1/torrents", "token=MyAccessToken&offset=1&limit=x", "", "", ""},
		{"GET", "/api/v1/torrents", "info_hash=" + strings.Repeat("ab", 20), "Bearer MyAccessToken", "", ""},
		{"GET", "/api/v1/torrent/" + strings.Repeat("ab", 20), "token=MyAccessToken", "", "", ""},
		{"POST", "/api/v1/whitelist/" + strings.Repeat("AB", 20), "token=MyAccessToken", "", "", ""},
		{"DELETE", "/api/v1/whitelist/zz", "token=MyAccessToken", "", "", ""},
		{"POST", "/api/v1/keys", "token=MyAccessToken", "", "application/json", `{"key":null,"seconds_valid":60}`},
		{"POST", "/api/v1/keys", "", "Bearer MyAccessToken", "application/json", `{"key":"YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ"}`},
		{"POST", "/api/v1/key/18446744073709551615", "token=MyAccessToken", "", "", ""},
		{"DELETE", "/api/v1/key/YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ", "token=MyAccessToken", "", "", ""},
		{"GET", "/api/v1/keys/reload", "token=MyAccessToken", "", "", ""},
		{"GET", "/api/health_check", "", "", "", ""},
		{"GET", "/nothing", "token=a&token=b", "Basic x", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.auth, s.ctype, []byte(s.body))
	}
	store := memswarm.New(swarm.Options{})
	lists := access.New(nil)
	api, err := New(Config{
		AccessTokens:   map[string]string{"admin": "MyAccessToken"},
		Logger:         slog.New(slog.DiscardHandler),
		HandlerTimeout: time.Second,
	}, Deps{Store: store, Lists: lists})
	if err != nil {
		f.Fatal(err)
	}
	allowed := map[int]bool{200: true, 400: true, 404: true, 405: true, 413: true, 415: true, 422: true, 500: true}
	f.Fuzz(func(t *testing.T, method, path, query, auth, ctype string, body []byte) {
		u, err := url.Parse("http://tracker" + "/" + strings.TrimPrefix(path, "/") + "?" + query)
		if err != nil || !validMethod(method) {
			return
		}
		req := &http.Request{
			Method: method, URL: u, Header: http.Header{},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "tracker", RemoteAddr: "127.0.0.1:1",
		}
		req = req.WithContext(t.Context())
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		res := rec.Result()
		if !allowed[res.StatusCode] {
			t.Fatalf("%s %s?%s: status %d", method, path, query, res.StatusCode)
		}
		if res.Header.Get("X-Request-Id") == "" {
			t.Fatal("no x-request-id")
		}
		got := rec.Body.Bytes()
		switch res.StatusCode {
		case 404, 405:
			if len(got) != 0 {
				t.Fatalf("status %d with body %q", res.StatusCode, got)
			}
		}
		if res.Header.Get("Content-Type") == ctypeJSON && !json.Valid(got) {
			t.Fatalf("invalid JSON answer %q", got)
		}
	})
}

// validMethod is net/http's token rule for methods; a client cannot send others.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

func TestExpiryTime(t *testing.T) {
	base := time.Date(2023, 3, 28, 13, 25, 0, 0, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		ns   int
		want string
	}{
		{58085050, "2023-03-28 11:25:00.058085050 UTC"},
		{0, "2023-03-28 11:25:00 UTC"},
		{5_000_000, "2023-03-28 11:25:00.005 UTC"},
		{123_000, "2023-03-28 11:25:00.000123 UTC"},
		{1, "2023-03-28 11:25:00.000000001 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := expiryTime(base.Add(time.Duration(tt.ns))); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
