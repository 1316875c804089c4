package httptracker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	trhttp "github.com/anacrolix/torrent/tracker/http"
	"github.com/anacrolix/torrent/tracker/shared"
	"github.com/anacrolix/torrent/tracker/udp"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/tracker"
)

var testHash = bittorrent.InfoHash{0x3b, 0x24, 0x55, 0x04, 0xcf, 0x5f, 0x11, 0xbb, 0xdb, 0xe1, 0x20, 0x1c, 0xea, 0x6a, 0x6b, 0xf4, 0x5a, 0xee, 0x1b, 0xc0}

// announceURL builds an announce query for peer n of testHash.
func announceURL(base string, n int, extra string) string {
	q := "info_hash=" + url.QueryEscape(string(testHash[:])) +
		"&peer_id=" + url.QueryEscape(fmt.Sprintf("-ST0001-%012d", n)) +
		fmt.Sprintf("&port=%d&left=100", 10000+n)
	if extra != "" {
		q = extra + "&" + q // the first value of a name wins
	}
	return base + "/announce?" + q
}

// TestAnacrolixClient announces and scrapes with anacrolix's HTTP tracker
// client over IPv4 and IPv6, plain and TLS: the second peer must be handed
// the first, in the list of its family.
func TestAnacrolixClient(t *testing.T) {
	certPath, keyPath, pool := writeCert(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, useTLS := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s tls=%v", network, useTLS), func(t *testing.T) {
				r := newRules(t, tracker.DefaultConfig())
				cfg := Config{}
				if useTLS {
					cfg.TLSCertPath, cfg.TLSKeyPath = certPath, keyPath
				}
				srv := startServer(t, network, cfg, r, r.counters)
				u, err := url.Parse(srv.URL() + "/announce")
				if err != nil {
					t.Fatal(err)
				}
				// anacrolix's client does not verify certificates; the
				// test's own client below does, against the test CA.
				cl := trhttp.NewClient(u, trhttp.NewClientOpts{})
				if useTLS {
					if status, _, _ := get(t, newClient(t, pool), srv.URL()+"/health_check", nil); status != 200 {
						t.Fatalf("verified TLS health check: %d", status)
					}
				}
				defer cl.Close()
				ctx := context.Background()
				req := func(n int, left int64) udp.AnnounceRequest {
					var ar udp.AnnounceRequest
					copy(ar.InfoHash[:], testHash[:])
					copy(ar.PeerId[:], fmt.Sprintf("-AN0001-%012d", n))
					ar.Port = uint16(20000 + n)
					ar.Left = left
					ar.Event = shared.Started
					return ar
				}
				first, err := cl.Announce(ctx, req(1, 0), trhttp.AnnounceOpt{})
				if err != nil {
					t.Fatalf("first announce: %v", err)
				}
				if first.Seeders != 1 || first.Leechers != 0 || len(first.Peers) != 0 || first.Interval != 120 {
					t.Fatalf("first announce: %+v", first)
				}
				second, err := cl.Announce(ctx, req(2, 50), trhttp.AnnounceOpt{})
				if err != nil {
					t.Fatalf("second announce: %v", err)
				}
				if second.Seeders != 1 || second.Leechers != 1 || len(second.Peers) != 1 {
					t.Fatalf("second announce: %+v", second)
				}
				p, ok := second.Peers[0].ToNetipAddrPort()
				wantIP := "127.0.0.1"
				if network == "tcp6" {
					wantIP = "::1"
				}
				if !ok || p.Addr().String() != wantIP || p.Port() != 20001 {
					t.Fatalf("peer %v, want %s:20001", second.Peers[0], wantIP)
				}
				sc, err := cl.Scrape(ctx, []infohash.T{infohash.T(testHash), {1}})
				if err != nil {
					t.Fatalf("scrape: %v", err)
				}
				if len(sc) != 2 || sc[0].Seeders != 1 || sc[0].Leechers != 1 || sc[1] != (udp.ScrapeInfohashResult{}) {
					t.Fatalf("scrape: %+v", sc)
				}
				ann, scr := metrics.TCP4Announces, metrics.TCP4Scrapes
				if network == "tcp6" {
					ann, scr = metrics.TCP6Announces, metrics.TCP6Scrapes
				}
				if r.counters.Value(ann) != 2 || r.counters.Value(scr) != 1 {
					t.Fatalf("counters: announces %d scrapes %d", r.counters.Value(ann), r.counters.Value(scr))
				}
			})
		}
	}
}

// TestFailures sends raw URLs for every refusal of the spec and checks the
// exact failure reason (Torrust's text without its source location).
func TestFailures(t *testing.T) {
	validKey := strings.Repeat("A", 32)
	expiredKey := strings.Repeat("E", 32)
	unknownKey := strings.Repeat("U", 32)
	notListed := bittorrent.InfoHash{9}
	tests := []struct {
		name    string
		private bool
		listed  bool
		proxy   bool
		path    string // after the base URL
		header  http.Header
		want    string // failure reason; "" means success
	}{
		{name: "no query", path: "/announce", want: "Cannot parse query params for announce request: missing query params for announce request"},
		{name: "empty query", path: "/announce?", want: "Cannot parse query params: invalid param "},
		{name: "malformed item", path: "/announce?a=b=c", want: "Cannot parse query params: invalid param a=b=c"},
		{name: "missing info_hash", path: "/announce?peer_id=-qB00000000000000001&port=1", want: "Cannot parse query params for announce request: missing param info_hash"},
		{name: "19-byte hash", path: "/announce?info_hash=" + strings.Repeat("a", 19) + "&peer_id=-qB00000000000000001&port=1",
			want: "Cannot parse query params for announce request: invalid param value aaaaaaaaaaaaaaaaaaa for info_hash in not enough bytes for infohash: got 19 bytes, expected 20"},
		{name: "21-byte hash", path: "/announce?info_hash=" + strings.Repeat("a", 21) + "&peer_id=-qB00000000000000001&port=1",
			want: "Cannot parse query params for announce request: invalid param value aaaaaaaaaaaaaaaaaaaaa for info_hash in too many bytes for infohash: got 21 bytes, expected 20"},
		{name: "missing peer_id", path: "/announce?info_hash=" + hash20 + "&port=1", want: "Cannot parse query params for announce request: missing param peer_id"},
		{name: "missing port", path: "/announce?info_hash=" + hash20 + "&peer_id=-qB00000000000000001", want: "Cannot parse query params for announce request: missing param port"},
		{name: "bad event", path: "/announce?" + minQuery + "&event=pause", want: "Cannot parse query params for announce request: invalid param value pause for event"},
		{name: "bad compact", path: "/announce?" + minQuery + "&compact=yes", want: "Cannot parse query params for announce request: invalid param value yes for compact"},
		{name: "overflow", path: "/announce?" + minQuery + "&uploaded=9223372036854775808", want: "Cannot parse query params for announce request: param value overflow 9223372036854775808 for uploaded"},
		{name: "bad key format in public mode", path: "/announce/short?" + minQuery, want: "Authentication error: Invalid format for authentication key param."},
		{name: "bad key format on scrape", path: "/scrape/" + strings.Repeat("-", 32) + "?info_hash=" + hash20, want: "Authentication error: Invalid format for authentication key param."},
		{name: "query error before key format", path: "/announce/short?a", want: "Cannot parse query params: invalid param a"},
		{name: "public ignores a valid key", path: "/announce/" + unknownKey + "?" + minQuery},
		{name: "private without key", private: true, path: "/announce?" + minQuery, want: "Authentication error: Missing authentication key param for private tracker."},
		{name: "private unknown key", private: true, path: "/announce/" + unknownKey + "?" + minQuery, want: "Authentication error: Failed to read key: " + unknownKey},
		{name: "private expired key", private: true, path: "/announce/" + expiredKey + "?" + minQuery, want: "Authentication error: Key has expired"},
		{name: "private valid key", private: true, path: "/announce/" + validKey + "?" + minQuery},
		{name: "not whitelisted", listed: true, path: "/announce?" + minQuery, want: "Tracker error: The torrent: " + hash20X + ", is not whitelisted"},
		{name: "whitelisted", listed: true, path: "/announce?info_hash=" + url.QueryEscape(string(notListed[:])) + "&peer_id=-qB00000000000000001&port=1",
			want: "Tracker error: The torrent: " + notListed.String() + ", is not whitelisted"},
		{name: "reverse proxy without header", proxy: true, path: "/announce?" + minQuery,
			want: "Error resolving peer IP: missing or invalid the right most X-Forwarded-For IP (mandatory on reverse proxy tracker configuration)"},
		{name: "reverse proxy with garbage header", proxy: true, path: "/announce?" + minQuery, header: http.Header{"X-Forwarded-For": {"unknown"}},
			want: "Error resolving peer IP: missing or invalid the right most X-Forwarded-For IP (mandatory on reverse proxy tracker configuration)"},
		{name: "reverse proxy scrape without header", proxy: true, path: "/scrape?info_hash=" + hash20,
			want: "Error resolving peer IP: missing or invalid the right most X-Forwarded-For IP (mandatory on reverse proxy tracker configuration)"},
		{name: "reverse proxy with header", proxy: true, path: "/announce?" + minQuery, header: http.Header{"X-Forwarded-For": {"203.0.113.9"}}},
		// Torrust checks the key and the whitelist before the client address.
		{name: "reverse proxy without header, private without key", proxy: true, private: true, path: "/announce?" + minQuery,
			want: "Authentication error: Missing authentication key param for private tracker."},
		{name: "reverse proxy without header, not whitelisted", proxy: true, listed: true, path: "/announce?" + minQuery,
			want: "Tracker error: The torrent: " + hash20X + ", is not whitelisted"},
		{name: "reverse proxy without header, private with valid key", proxy: true, private: true, path: "/announce/" + validKey + "?" + minQuery,
			want: "Error resolving peer IP: missing or invalid the right most X-Forwarded-For IP (mandatory on reverse proxy tracker configuration)"},
		{name: "scrape without hash", path: "/scrape?x=1", want: "Cannot parse query params for scrape request: missing param info_hash"},
		{name: "scrape without query", path: "/scrape", want: "Cannot parse query params for scrape request: missing query params for scrape request"},
		{name: "scrape bad hash", path: "/scrape?info_hash=abc", want: "Cannot parse query params for scrape request: invalid param value abc for info_hash in not enough bytes for infohash: got 3 bytes, expected 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tracker.DefaultConfig()
			cfg.Private, cfg.Listed = tt.private, tt.listed
			r := newRules(t, cfg)
			ctx := context.Background()
			mustKey := func(s string, rec access.KeyRecord) {
				k, err := bittorrent.ParseKey(s)
				if err != nil {
					t.Fatal(err)
				}
				rec.Key = k
				if err := r.lists.AddKey(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			mustKey(validKey, access.KeyRecord{Permanent: true})
			mustKey(expiredKey, access.KeyRecord{ValidUntil: testNow - 1})
			if err := r.lists.AddToWhitelist(ctx, bittorrent.InfoHash{8}); err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, "tcp4", Config{OnReverseProxy: tt.proxy}, r, r.counters)
			status, ctype, body := get(t, newClient(t, nil), srv.URL()+tt.path, tt.header)
			if status != 200 {
				t.Fatalf("status %d, want 200", status)
			}
			m := decode(t, body)
			reason, _ := m["failure reason"].(string)
			if reason != tt.want {
				t.Fatalf("failure reason %q, want %q (body %q)", reason, tt.want, body)
			}
			if tt.want != "" && (ctype != contentTypeFailure || r.counters.Value(metrics.HTTPErrors) != 1) {
				t.Fatalf("content type %q, http_errors %d", ctype, r.counters.Value(metrics.HTTPErrors))
			}
			if tt.want == "" && ctype != contentTypeBencode {
				t.Fatalf("content type %q", ctype)
			}
		})
	}
}

// TestPeerLists puts an IPv4 and an IPv6 peer in one swarm through two
// listeners of one server and checks both answer formats.
func TestPeerLists(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{}, r, r.counters)
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln6)
	base4 := srv.URL()
	base6 := "http://" + ln6.Addr().String()
	c := newClient(t, nil)
	get(t, c, announceURL(base4, 1, ""), nil)
	get(t, c, announceURL(base6, 2, ""), nil)

	t.Run("non-compact mixes both families", func(t *testing.T) {
		_, _, body := get(t, c, announceURL(base4, 3, ""), nil)
		m := decode(t, body)
		peers, ok := m["peers"].([]any)
		if !ok || len(peers) != 2 {
			t.Fatalf("peers = %#v", m["peers"])
		}
		got := map[string]bool{}
		for _, p := range peers {
			d := p.(map[string]any)
			got[fmt.Sprintf("%s %s %d", d["ip"], d["peer id"], d["port"])] = true
		}
		for _, want := range []string{"127.0.0.1 -ST0001-000000000001 10001", "::1 -ST0001-000000000002 10002"} {
			if !got[want] {
				t.Errorf("missing peer %q in %v", want, got)
			}
		}
		if _, has := m["peers6"]; has {
			t.Error("non-compact answer carries peers6")
		}
		for _, k := range []string{"complete", "incomplete", "interval", "min interval"} {
			if _, ok := m[k].(int64); !ok {
				t.Errorf("missing %q in %v", k, m)
			}
		}
		if m["incomplete"] != int64(3) {
			t.Errorf("incomplete = %v, want 3", m["incomplete"])
		}
	})
	t.Run("compact splits peers and peers6", func(t *testing.T) {
		_, _, body := get(t, c, announceURL(base6, 4, "compact=1"), nil)
		m := decode(t, body)
		p4, _ := m["peers"].(string)
		p6, ok6 := m["peers6"].(string)
		if !ok6 || len(p4)%6 != 0 || len(p6)%18 != 0 {
			t.Fatalf("peers %q peers6 %q", p4, p6)
		}
		var addrs []string
		for i := 0; i < len(p4); i += 6 {
			a := netip.AddrPortFrom(netip.AddrFrom4([4]byte([]byte(p4[i:i+4]))), uint16(p4[i+4])<<8|uint16(p4[i+5]))
			addrs = append(addrs, a.String())
		}
		for i := 0; i < len(p6); i += 18 {
			a := netip.AddrPortFrom(netip.AddrFrom16([16]byte([]byte(p6[i:i+16]))), uint16(p6[i+16])<<8|uint16(p6[i+17]))
			addrs = append(addrs, a.String())
		}
		want := map[string]bool{"127.0.0.1:10001": true, "127.0.0.1:10003": true, "[::1]:10002": true}
		if len(addrs) != 3 {
			t.Fatalf("peers %v, want %v", addrs, want)
		}
		for _, a := range addrs {
			if !want[a] {
				t.Fatalf("unexpected peer %s in %v", a, addrs)
			}
		}
	})
	t.Run("compact with no peers still has both keys", func(t *testing.T) {
		u := strings.Replace(announceURL(base4, 5, "compact=1"), url.QueryEscape(string(testHash[:])), strings.Repeat("z", 20), 1)
		_, _, body := get(t, c, u, nil)
		m := decode(t, body)
		if m["peers"] != "" || m["peers6"] != "" {
			t.Fatalf("peers %q peers6 %q", m["peers"], m["peers6"])
		}
	})
}

// TestReverseProxy checks that the right-most valid X-Forwarded-For entry
// is the address the peer is handed out as.
func TestReverseProxy(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{OnReverseProxy: true}, r, r.counters)
	c := newClient(t, nil)
	xff := http.Header{"X-Forwarded-For": {"198.51.100.1, 198.51.100.2", "203.0.113.7, not-an-ip"}}
	get(t, c, announceURL(srv.URL(), 1, ""), xff)
	get(t, c, announceURL(srv.URL(), 2, ""), http.Header{"X-Forwarded-For": {"::ffff:192.0.2.1"}})
	_, _, body := get(t, c, announceURL(srv.URL(), 3, "compact=1"), http.Header{"X-Forwarded-For": {"2001:db8::5"}})
	m := decode(t, body)
	p4, p6 := m["peers"].(string), m["peers6"].(string)
	if len(p6) != 0 || len(p4) != 12 {
		t.Fatalf("peers %q peers6 %q", p4, p6)
	}
	got := map[string]bool{}
	for i := 0; i < len(p4); i += 6 {
		got[netip.AddrFrom4([4]byte([]byte(p4[i:i+4]))).String()] = true
	}
	if !got["203.0.113.7"] || !got["192.0.2.1"] {
		t.Fatalf("peers %v, want 203.0.113.7 and 192.0.2.1 (mapped)", got)
	}
	if r.counters.Value(metrics.TCP6Announces) != 1 || r.counters.Value(metrics.TCP4Announces) != 2 {
		t.Fatalf("tcp4 %d tcp6 %d announces", r.counters.Value(metrics.TCP4Announces), r.counters.Value(metrics.TCP6Announces))
	}
}

func TestNumwant(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.MaxPeersPerAnnounce = 3
	r := newRules(t, cfg)
	srv := startServer(t, "tcp4", Config{}, r, r.counters)
	c := newClient(t, nil)
	for n := 1; n <= 6; n++ {
		get(t, c, announceURL(srv.URL(), n, ""), nil)
	}
	tests := []struct {
		extra string
		want  int
	}{
		{"", 3}, {"numwant=0", 3}, {"numwant=2", 2}, {"numwant=1", 1}, {"numwant=100", 3},
	}
	for _, tt := range tests {
		t.Run(tt.extra, func(t *testing.T) {
			_, _, body := get(t, c, announceURL(srv.URL(), 7, tt.extra), nil)
			m := decode(t, body)
			if peers, _ := m["peers"].([]any); len(peers) != tt.want {
				t.Fatalf("%d peers, want %d: %v", len(peers), tt.want, m)
			}
		})
	}
}

func TestScrape(t *testing.T) {
	cfg := tracker.DefaultConfig()
	r := newRules(t, cfg)
	srv := startServer(t, "tcp4", Config{MaxScrapeTorrents: 3}, r, r.counters)
	c := newClient(t, nil)
	get(t, c, announceURL(srv.URL(), 1, "left=0"), nil)
	get(t, c, announceURL(srv.URL(), 2, "event=completed"), nil)
	get(t, c, announceURL(srv.URL(), 3, ""), nil)
	h := url.QueryEscape(string(testHash[:]))
	unknown := strings.Repeat("%00", 20)
	ignored := strings.Repeat("%FF", 20)
	_, ctype, body := get(t, c, srv.URL()+"/scrape?info_hash="+unknown+"&info_hash="+h+"&info_hash="+h+"&info_hash="+ignored, nil)
	if ctype != contentTypeBencode {
		t.Fatalf("content type %q", ctype)
	}
	m := decode(t, body)
	files, ok := m["files"].(map[string]any)
	if !ok || len(files) != 2 {
		t.Fatalf("files = %#v", m)
	}
	f := files[string(testHash[:])].(map[string]any)
	// peer 1 announced left=0 and peer 2 completed with left=100: one seeder
	// (peer 1), two leechers, one completion.
	if f["complete"] != int64(1) || f["incomplete"] != int64(2) || f["downloaded"] != int64(1) {
		t.Fatalf("stats %v", f)
	}
	z := files[strings.Repeat("\x00", 20)].(map[string]any)
	if z["complete"] != int64(0) || z["incomplete"] != int64(0) || z["downloaded"] != int64(0) {
		t.Fatalf("unknown torrent %v", z)
	}

	t.Run("private without key gets zeros", func(t *testing.T) {
		cfg := tracker.DefaultConfig()
		cfg.Private = true
		pr := newRules(t, cfg)
		psrv := startServer(t, "tcp4", Config{}, pr, pr.counters)
		key := strings.Repeat("K", 32)
		k, _ := bittorrent.ParseKey(key)
		if err := pr.lists.AddKey(context.Background(), access.KeyRecord{Key: k, Permanent: true}); err != nil {
			t.Fatal(err)
		}
		get(t, c, strings.Replace(announceURL(psrv.URL(), 1, ""), "/announce?", "/announce/"+key+"?", 1), nil)
		for _, tc := range []struct {
			path string
			want int64
		}{{"/scrape", 0}, {"/scrape/" + strings.Repeat("U", 32), 0}, {"/scrape/" + key, 1}} {
			_, _, body := get(t, c, psrv.URL()+tc.path+"?info_hash="+h, nil)
			f := decode(t, body)["files"].(map[string]any)[string(testHash[:])].(map[string]any)
			if f["incomplete"] != tc.want {
				t.Errorf("%s: %v, want incomplete %d", tc.path, f, tc.want)
			}
		}
	})
}

// A tracker whose max_scrape_torrents is raised past what 16 KiB of
// request line holds reads such scrapes whole, and still ignores the
// hashes past the cap.
func TestScrapeManyHashes(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	for _, tc := range []struct{ max, sent, want int }{
		{1000, 1000, 1000},
		{300, 320, 300},
		{74, 200, 74},
	} {
		srv := startServer(t, "tcp4", Config{MaxScrapeTorrents: tc.max}, r, r.counters)
		var q strings.Builder
		for i := range tc.sent {
			var h bittorrent.InfoHash
			binary.BigEndian.PutUint32(h[:], uint32(i)+1)
			q.WriteString("&info_hash=" + url.QueryEscape(string(h[:])))
		}
		status, _, body := get(t, newClient(t, nil), srv.URL()+"/scrape?"+q.String()[1:], nil)
		if status != 200 {
			t.Fatalf("max %d, %d hashes sent: status %d %q", tc.max, tc.sent, status, body)
		}
		if files := decode(t, body)["files"].(map[string]any); len(files) != tc.want {
			t.Fatalf("max %d, %d hashes sent: %d answered, want %d", tc.max, tc.sent, len(files), tc.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{}, r, r.counters)
	c := newClient(t, nil)
	status, ctype, body := get(t, c, srv.URL()+"/health_check", nil)
	if status != 200 || ctype != contentTypeJSON || string(body) != `{"status":"Ok"}` {
		t.Fatalf("health: %d %q %q", status, ctype, body)
	}
	for _, p := range []string{"/", "/announce/", "/announce/" + strings.Repeat("A", 32) + "/x", "/scrapes", "/nope"} {
		if status, _, _ := get(t, c, srv.URL()+p, nil); status != 404 {
			t.Errorf("GET %s: status %d, want 404", p, status)
		}
	}
	resp, err := c.Post(srv.URL()+"/announce", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

func TestProbe(t *testing.T) {
	certPath, keyPath, _ := writeCert(t)
	r := newRules(t, tracker.DefaultConfig())
	plain := startServer(t, "tcp4", Config{}, r, r.counters)
	secure := startServer(t, "tcp6", Config{TLSCertPath: certPath, TLSKeyPath: keyPath}, r, r.counters)
	ctx := context.Background()
	for _, u := range []string{plain.URL(), secure.URL()} {
		if err := Probe(ctx, u); err != nil {
			t.Errorf("probe %s: %v", u, err)
		}
	}
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if err := Probe(ctx, "http://"+addr); err == nil {
		t.Error("probe of a closed port succeeded")
	}
}

func TestTLSFilesMissing(t *testing.T) {
	certPath, _, _ := writeCert(t)
	_, err := New(Config{TLSCertPath: certPath, TLSKeyPath: "/nonexistent/key.pem"}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/key.pem") {
		t.Fatalf("error %v does not name the missing file", err)
	}
	if _, err := New(Config{TLSCertPath: certPath}, nil, nil, nil); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
}

// panicTracker panics on announce, to check recovery.
type panicTracker struct{ Tracker }

func (panicTracker) Announce(context.Context, *bittorrent.AnnounceRequest, *bittorrent.AnnounceResponse) error {
	panic("boom")
}

func TestPanicRecovered(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{}, panicTracker{r}, r.counters)
	c := newClient(t, nil)
	for i := 0; i < 2; i++ {
		status, _, body := get(t, c, announceURL(srv.URL(), 1, ""), nil)
		if reason := decode(t, body)["failure reason"]; status != 200 || reason != msgInternal {
			t.Fatalf("status %d reason %q", status, reason)
		}
	}
	if status, _, _ := get(t, c, srv.URL()+"/scrape?info_hash="+hash20, nil); status != 200 {
		t.Fatalf("scrape after panics: %d", status)
	}
	if n := r.counters.Value(metrics.Panics); n != 2 {
		t.Fatalf("panics counted %d, want 2", n)
	}
}

// blockingTracker holds announces until released, to test Shutdown.
type blockingTracker struct {
	Tracker
	entered chan struct{}
	release chan struct{}
}

func (b blockingTracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	b.entered <- struct{}{}
	<-b.release
	return b.Tracker.Announce(ctx, req, resp)
}

func TestShutdown(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	bt := blockingTracker{Tracker: r, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := New(Config{}, bt, r.counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	<-srv.Ready()
	c := newClient(t, nil)
	answered := make(chan int, 1)
	go func() {
		resp, err := c.Get(announceURL(srv.URL(), 1, ""))
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-bt.entered
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with a request in flight: %v, want deadline exceeded", err)
	}
	close(bt.release)
	if code := <-answered; code != 200 {
		t.Fatalf("in-flight request got %d", code)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := srv.Shutdown(ctx2); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestLimits checks that oversized headers are refused, that a client too
// slow to send its request is cut off, and that keep-alive serves several
// requests on one connection.
func TestLimits(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{ReadTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4096}, r, r.counters)
	addr := srv.Addr().String()

	t.Run("huge header", func(t *testing.T) {
		status, _, _ := get(t, newClient(t, nil), srv.URL()+"/health_check", http.Header{"X-Big": {strings.Repeat("x", 8000)}})
		if status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", status)
		}
	})
	t.Run("slow client", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET /health_check HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		buf := make([]byte, 512)
		for {
			if _, err := conn.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("server kept a slow connection open for 5 s")
				}
				break
			}
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		u, _ := url.Parse(announceURL("http://x", 1, "compact=1"))
		req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: x\r\n\r\n"
		if _, err := conn.Write([]byte(req + req + req)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		for i := 0; i < 3; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if _, ok := decode(t, body)["interval"]; !ok {
				t.Fatalf("response %d: %q", i, body)
			}
		}
	})
}

// TestConcurrent runs announces and scrapes from several goroutines, for
// the race detector.
func TestConcurrent(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{}, r, r.counters)
	c := newClient(t, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				resp, err := c.Get(announceURL(srv.URL(), g*100+i, "compact=1"))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n := r.counters.Value(metrics.TCP4Announces); n != 200 {
		t.Fatalf("announces %d", n)
	}
}

// TestNetHTTPAdapter serves the same handler core through net/http (the
// engine measured against fasthttp) and checks that it answers alike.
func TestNetHTTPAdapter(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	h := NewHandler(Config{OnReverseProxy: true}, r, r.counters, nil)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()
	c := newClient(t, nil)
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	get(t, c, announceURL(base, 1, ""), xff("192.0.2.10"))
	tests := []struct {
		name   string
		url    string
		header http.Header
		status int
		ctype  string
		check  func(t *testing.T, m map[string]any)
	}{
		{"announce", announceURL(base, 2, ""), xff("192.0.2.11"), 200, contentTypeBencode, func(t *testing.T, m map[string]any) {
			peers := m["peers"].([]any)
			if len(peers) != 1 || peers[0].(map[string]any)["ip"] != "192.0.2.10" {
				t.Fatalf("peers %v", peers)
			}
		}},
		{"failure", base + "/announce?a", xff("192.0.2.11"), 200, contentTypeFailure, func(t *testing.T, m map[string]any) {
			if m["failure reason"] != "Cannot parse query params: invalid param a" {
				t.Fatalf("%v", m)
			}
		}},
		{"missing header", announceURL(base, 3, ""), nil, 200, contentTypeFailure, func(t *testing.T, m map[string]any) {
			if m["failure reason"] != msgXForwardedFor {
				t.Fatalf("%v", m)
			}
		}},
		{"empty query", base + "/scrape?", xff("192.0.2.11"), 200, contentTypeFailure, func(t *testing.T, m map[string]any) {
			if m["failure reason"] != "Cannot parse query params: invalid param " {
				t.Fatalf("%v", m)
			}
		}},
		{"scrape", base + "/scrape?info_hash=" + url.QueryEscape(string(testHash[:])), xff("192.0.2.11"), 200, contentTypeBencode, func(t *testing.T, m map[string]any) {
			f := m["files"].(map[string]any)[string(testHash[:])].(map[string]any)
			if f["incomplete"] != int64(2) { // peers 1 and 2
				t.Fatalf("%v", f)
			}
		}},
		{"health", base + "/health_check", nil, 200, contentTypeJSON, nil},
		{"not found", base + "/x", nil, 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, ctype, body := get(t, c, tt.url, tt.header)
			if status != tt.status || (tt.ctype != "" && ctype != tt.ctype) {
				t.Fatalf("status %d content type %q, want %d %q", status, ctype, tt.status, tt.ctype)
			}
			if tt.check != nil {
				tt.check(t, decode(t, body))
			}
		})
	}
}

// TestPausedAndEmptyEvents: libtorrent's partial seeds announce with
// event=paused (BEP 21) and BEP 3 makes an empty event no event; both are
// regular announces that keep the peer in the swarm and are answered with
// peers.
func TestPausedAndEmptyEvents(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{}, r, r.counters)
	c := newClient(t, nil)
	get(t, c, announceURL(srv.URL(), 1, "event=started"), nil)
	for n, ev := range []string{"event=paused", "event="} {
		_, _, body := get(t, c, announceURL(srv.URL(), 2+n, ev), nil)
		m := decode(t, body)
		if fr, ok := m["failure reason"]; ok {
			t.Fatalf("%s: failure %q", ev, fr)
		}
		if peers, _ := m["peers"].([]any); len(peers) != 1+n {
			t.Fatalf("%s: %d peers, want %d: %v", ev, len(peers), 1+n, m)
		}
	}
	_, _, body := get(t, c, srv.URL()+"/scrape?info_hash="+url.QueryEscape(string(testHash[:])), nil)
	f := decode(t, body)["files"].(map[string]any)[string(testHash[:])].(map[string]any)
	if f["incomplete"] != int64(3) || f["complete"] != int64(0) {
		t.Fatalf("scrape %v: want the 3 leechers", f)
	}
}

// lockedBuffer is a log destination the server's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMalformedRequestsDoNotFloodLog: fasthttp reports each malformed
// request with its whole buffer; a client sending them must not be able
// to write the log at its own pace, even at debug level.
func TestMalformedRequestsDoNotFloodLog(t *testing.T) {
	var logged lockedBuffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newRules(t, tracker.DefaultConfig())
	srv, err := New(Config{}, r, r.counters, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	<-srv.Ready()
	defer srv.Shutdown(context.Background())

	const requests = 30
	start := time.Now()
	bad := "GET /announce?x=\x01" + strings.Repeat("A", 12<<10) + " HTTP/1.1\r\nHost: t\r\n\r\n"
	for i := range requests {
		conn, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(bad)); err != nil {
			t.Fatal(err)
		}
		status, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 400") {
			t.Fatalf("request %d: status %q, %v", i, status, err)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(50 * time.Millisecond) // the last message, if any, is written after the answer
	out := logged.String()
	lines := strings.Count(out, "\n")
	shown := out[:min(len(out), 2000)] // enough to see what was logged
	if lines == 0 {
		t.Fatal("nothing logged: the test no longer exercises fasthttp's messages")
	}
	if allowed := int(elapsed/time.Second) + 2; lines > allowed {
		t.Errorf("%d lines logged in %v, want at most %d:\n%s", lines, elapsed, allowed, shown)
	}
	if per := len(out) / lines; per > maxLoggedMessage+300 {
		t.Errorf("%d bytes per line, want the message cut to %d:\n%s", per, maxLoggedMessage, shown)
	}
	if strings.Contains(out, "level=WARN") {
		t.Errorf("a client's malformed request logged as a warning:\n%s", shown)
	}
}
