package httptracker

import (
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

const (
	// hash20 is the 20 bytes "3b245504cf5f11bbdbe1201cea6a6bf45aee1bc0" percent-encoded as clients do.
	hash20   = "%3B%24U%04%CF%5F%11%BB%DB%E1%20%1C%EAjk%F4Z%EE%1B%C0"
	hash20X  = "3b245504cf5f11bbdbe1201cea6a6bf45aee1bc0"
	peer20   = "-qB00000000000000001"
	minQuery = "info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=17548"
)

func TestParseAnnounce(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		noQuery bool
		check   func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool)
		wantErr string
	}{
		{name: "mandatory only", query: minQuery, check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.InfoHash.String() != hash20X || string(req.PeerID[:]) != peer20 || port != 17548 || compact {
				t.Fatalf("got %s %q %d %v", req.InfoHash, req.PeerID, port, compact)
			}
			if req.Event != bittorrent.EventNone || req.NumWant != 0 || req.Left != bittorrent.LeftUnknown {
				t.Fatalf("defaults: %+v", req)
			}
			if bittorrent.Complete(req.Left) {
				t.Fatal("an announce without left counts as complete")
			}
		}},
		{name: "left zero is complete", query: minQuery + "&left=0", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.Left != 0 || !bittorrent.Complete(req.Left) {
				t.Fatalf("left %d, complete %v", req.Left, bittorrent.Complete(req.Left))
			}
		}},
		{name: "left one is a leecher", query: minQuery + "&left=1", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.Left != 1 || bittorrent.Complete(req.Left) {
				t.Fatalf("left %d, complete %v", req.Left, bittorrent.Complete(req.Left))
			}
		}},
		{name: "all params", query: minQuery + "&uploaded=1&downloaded=2&left=3&event=completed&compact=1&numwant=30&ip=1.2.3.4&key=x",
			check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
				if req.Uploaded != 1 || req.Downloaded != 2 || req.Left != 3 || req.Event != bittorrent.EventCompleted || !compact || req.NumWant != 30 {
					t.Fatalf("got %+v compact=%v", req, compact)
				}
			}},
		{name: "first value wins", query: minQuery + "&port=1&event=started&event=bogus",
			check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
				if port != 17548 || req.Event != bittorrent.EventStarted {
					t.Fatalf("got port %d event %v", port, req.Event)
				}
			}},
		{name: "empty event is none (BEP 3)", query: minQuery + "&left=5&event=", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.Event != bittorrent.EventNone || req.Left != 5 {
				t.Fatalf("got %+v", req)
			}
		}},
		{name: "paused event is none (BEP 21)", query: minQuery + "&left=5&event=paused", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.Event != bittorrent.EventNone || req.Left != 5 {
				t.Fatalf("got %+v", req)
			}
		}},
		{name: "leading question mark", query: "?" + minQuery, check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {}},
		{name: "port zero accepted", query: "info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=0",
			check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
				if port != 0 {
					t.Fatal(port)
				}
			}},
		{name: "left max int64", query: minQuery + "&left=9223372036854775807", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.Left != 1<<63-1 {
				t.Fatal(req.Left)
			}
		}},
		{name: "numwant above int32 is capped", query: minQuery + "&numwant=4294967295", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.NumWant != 1<<31-1 {
				t.Fatal(req.NumWant)
			}
		}},
		{name: "negative numwant asks for the default", query: minQuery + "&numwant=-1", check: func(t *testing.T, req *bittorrent.AnnounceRequest, port uint16, compact bool) {
			if req.NumWant != 0 {
				t.Fatal(req.NumWant)
			}
		}},
		{name: "no query", noQuery: true, wantErr: "Cannot parse query params for announce request: missing query params for announce request"},
		{name: "empty query", query: "", wantErr: "Cannot parse query params: invalid param "},
		{name: "two equals", query: minQuery + "&a=b=c", wantErr: "Cannot parse query params: invalid param a=b=c"},
		{name: "no equals", query: "flag&" + minQuery, wantErr: "Cannot parse query params: invalid param flag"},
		{name: "trailing ampersand", query: minQuery + "&", wantErr: "Cannot parse query params: invalid param "},
		{name: "missing info_hash", query: "peer_id=" + peer20 + "&port=1", wantErr: "Cannot parse query params for announce request: missing param info_hash"},
		{name: "missing peer_id", query: "info_hash=" + hash20 + "&port=1", wantErr: "Cannot parse query params for announce request: missing param peer_id"},
		{name: "missing port", query: "info_hash=" + hash20 + "&peer_id=" + peer20, wantErr: "Cannot parse query params for announce request: missing param port"},
		{name: "19-byte info_hash", query: "info_hash=" + strings.Repeat("a", 19) + "&peer_id=" + peer20 + "&port=1",
			wantErr: "Cannot parse query params for announce request: invalid param value aaaaaaaaaaaaaaaaaaa for info_hash in not enough bytes for infohash: got 19 bytes, expected 20"},
		{name: "21-byte info_hash", query: "info_hash=" + strings.Repeat("%FF", 21) + "&peer_id=" + peer20 + "&port=1",
			wantErr: "Cannot parse query params for announce request: invalid param value " + strings.Repeat("%FF", 21) + " for info_hash in too many bytes for infohash: got 21 bytes, expected 20"},
		{name: "19-byte peer_id", query: "info_hash=" + hash20 + "&peer_id=" + peer20[:19] + "&port=1",
			wantErr: "Cannot parse query params for announce request: invalid param value " + peer20[:19] + " for peer_id in not enough bytes for peer id: got 19 bytes, expected 20"},
		{name: "21-byte peer_id", query: "info_hash=" + hash20 + "&peer_id=" + peer20 + "x&port=1",
			wantErr: "Cannot parse query params for announce request: invalid param value " + peer20 + "x for peer_id in too many bytes for peer id: got 21 bytes, expected 20"},
		{name: "bad port", query: "info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=65536",
			wantErr: "Cannot parse query params for announce request: invalid param value 65536 for port"},
		{name: "negative port", query: "info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=-1",
			wantErr: "Cannot parse query params for announce request: invalid param value -1 for port"},
		{name: "bad uploaded", query: minQuery + "&uploaded=x", wantErr: "Cannot parse query params for announce request: invalid param value x for uploaded"},
		{name: "negative left", query: minQuery + "&left=-1", wantErr: "Cannot parse query params for announce request: invalid param value -1 for left"},
		{name: "empty left", query: minQuery + "&left=", wantErr: "Cannot parse query params for announce request: invalid param value  for left"},
		{name: "bad left", query: minQuery + "&left=1e3", wantErr: "Cannot parse query params for announce request: invalid param value 1e3 for left"},
		{name: "left overflow", query: minQuery + "&left=9223372036854775808",
			wantErr: "Cannot parse query params for announce request: param value overflow 9223372036854775808 for left"},
		{name: "downloaded beyond u64", query: minQuery + "&downloaded=18446744073709551616",
			wantErr: "Cannot parse query params for announce request: invalid param value 18446744073709551616 for downloaded"},
		{name: "unknown event", query: minQuery + "&event=bogus", wantErr: "Cannot parse query params for announce request: invalid param value bogus for event"},
		{name: "event case matters", query: minQuery + "&event=Started", wantErr: "Cannot parse query params for announce request: invalid param value Started for event"},
		{name: "bad compact", query: minQuery + "&compact=2", wantErr: "Cannot parse query params for announce request: invalid param value 2 for compact"},
		{name: "bad numwant", query: minQuery + "&numwant=-x", wantErr: "Cannot parse query params for announce request: invalid param value -x for numwant"},
		{name: "lone minus numwant", query: minQuery + "&numwant=-", wantErr: "Cannot parse query params for announce request: invalid param value - for numwant"},
		{name: "numwant beyond u32", query: minQuery + "&numwant=4294967296", wantErr: "Cannot parse query params for announce request: invalid param value 4294967296 for numwant"},
		{name: "info_hash checked before a bad port", query: "port=x&peer_id=" + peer20 + "&info_hash=abc",
			wantErr: "Cannot parse query params for announce request: invalid param value abc for info_hash in not enough bytes for infohash: got 3 bytes, expected 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req bittorrent.AnnounceRequest
			port, compact, err := parseAnnounce([]byte(tt.query), !tt.noQuery, &req, new(parseError))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, &req, port, compact)
		})
	}
}

func TestParseScrape(t *testing.T) {
	h1 := strings.Repeat("%01", 20)
	h2 := strings.Repeat("b", 20)
	tests := []struct {
		name    string
		query   string
		noQuery bool
		max     int
		want    int
		wantErr string
	}{
		{name: "one", query: "info_hash=" + h1, max: 74, want: 1},
		{name: "several and others ignored", query: "info_hash=" + h1 + "&x=y&info_hash=" + h2, max: 74, want: 2},
		{name: "cap ignores the rest, even malformed", query: "info_hash=" + h1 + "&info_hash=" + h2 + "&info_hash=short", max: 2, want: 2},
		{name: "no query", noQuery: true, max: 74, wantErr: "Cannot parse query params for scrape request: missing query params for scrape request"},
		{name: "no info_hash", query: "a=b", max: 74, wantErr: "Cannot parse query params for scrape request: missing param info_hash"},
		{name: "bad item", query: "info_hash=" + h1 + "&zz", max: 74, wantErr: "Cannot parse query params: invalid param zz"},
		{name: "short hash", query: "info_hash=" + h1 + "&info_hash=abc", max: 74,
			wantErr: "Cannot parse query params for scrape request: invalid param value abc for info_hash in not enough bytes for infohash: got 3 bytes, expected 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScrape([]byte(tt.query), !tt.noQuery, nil, tt.max, new(parseError))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("got %d hashes, want %d", len(got), tt.want)
			}
			if got[0] != (bittorrent.InfoHash{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}) {
				t.Fatalf("first hash %x", got[0])
			}
		})
	}
}

func TestPercentDecode(t *testing.T) {
	tests := []struct {
		in   string
		want string
		n    int
	}{
		{"%41%42", "AB", 2},
		{"%4", "%4", 2},     // incomplete escape kept literally
		{"%zz1", "%zz1", 4}, // invalid hex kept literally
		{"a+b", "a b", 3},   // '+' is a space, as form encoding has it
		{"%e2%82%AC", "\xe2\x82\xac", 3},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var dst [20]byte
			n := percentDecode20([]byte(tt.in), &dst)
			if n != tt.n || string(dst[:min(n, 20)]) != tt.want {
				t.Fatalf("got %q (%d), want %q (%d)", dst[:min(n, 20)], n, tt.want, tt.n)
			}
		})
	}
}

func TestParseAddr(t *testing.T) {
	for _, s := range []string{"1.2.3.4", "255.255.255.255", "0.0.0.0", "::1", "2001:db8::1", "::ffff:1.2.3.4"} {
		a, ok := parseAddr([]byte(s))
		if !ok || a.String() != s {
			t.Errorf("parseAddr(%q) = %v, %v", s, a, ok)
		}
	}
	for _, s := range []string{"", "1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4.5", "1.2.3.4x", "unknown", "1..2.3"} {
		if a, ok := parseAddr([]byte(s)); ok {
			t.Errorf("parseAddr(%q) = %v, want failure", s, a)
		}
	}
}

func FuzzParseAnnounce(f *testing.F) {
	f.Add(minQuery, true)
	f.Add(minQuery+"&uploaded=1&downloaded=2&left=3&event=completed&compact=1&numwant=30", true)
	f.Add("info_hash=%zz&peer_id=%&port=+1&left=99999999999999999999", true)
	f.Add("a=b=c&&", true)
	f.Add("", false)
	f.Fuzz(func(t *testing.T, q string, hasQuery bool) {
		var req bittorrent.AnnounceRequest
		_, _, err := parseAnnounce([]byte(q), hasQuery, &req, new(parseError))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "Cannot parse query params") {
				t.Fatalf("error %q has no Torrust prefix", err)
			}
			return
		}
		if req.NumWant < 0 || req.Left < 0 && req.Left != bittorrent.LeftUnknown || req.Uploaded < 0 || req.Downloaded < 0 {
			t.Fatalf("negative value accepted: %+v", req)
		}
	})
}

func FuzzParseScrape(f *testing.F) {
	f.Add("info_hash="+strings.Repeat("%01", 20), true, 74)
	f.Add("info_hash=a&info_hash=b", true, 1)
	f.Add("x", true, 0)
	f.Fuzz(func(t *testing.T, q string, hasQuery bool, max int) {
		max = max&127 + 1
		got, err := parseScrape([]byte(q), hasQuery, nil, max, new(parseError))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "Cannot parse query params") {
				t.Fatalf("error %q has no Torrust prefix", err)
			}
			return
		}
		if len(got) == 0 || len(got) > max {
			t.Fatalf("%d hashes with max %d and no error", len(got), max)
		}
	})
}
