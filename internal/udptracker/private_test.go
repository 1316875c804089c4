package udptracker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/httptracker"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/trackerclient"
)

const (
	validKey   = "ValidKey0123456789abcdefghijklmn"
	expiredKey = "ExpiredKey0123456789abcdefghijkl"
	unknownKey = "UnknownKey0123456789abcdefghijkl"
)

// privateEnv is a private tracker served over UDP (keys from BEP 41 URL
// data) and over HTTP by the same rules, with a valid and an expired key and
// one leecher on hashN(1), announced over HTTP with the valid key.
type privateEnv struct {
	*testEnv
	http string // http://127.0.0.1:port
	udp  string // udp://127.0.0.1:port
}

func startPrivate(t *testing.T) *privateEnv {
	t.Helper()
	cfg := tracker.DefaultConfig()
	cfg.Private = true
	e := startEnv(t, envOpts{trCfg: &cfg, private: true})
	ctx := context.Background()
	for _, r := range []struct {
		key string
		rec access.KeyRecord
	}{
		{validKey, access.KeyRecord{Permanent: true}},
		{expiredKey, access.KeyRecord{ValidUntil: e.clk.Now() - 1}},
	} {
		k, err := bittorrent.ParseKey(r.key)
		if err != nil {
			t.Fatal(err)
		}
		r.rec.Key = k
		if err := e.lists.AddKey(ctx, r.rec); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := httptracker.New(httptracker.Config{BindAddress: "127.0.0.1:0"}, e.tr, e.counters, quietLog())
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("http shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, httptracker.ErrServerClosed) {
			t.Errorf("http Serve returned %v", err)
		}
	})
	p := &privateEnv{testEnv: e, http: srv.URL(), udp: "udp://" + e.target(false).String()}
	if _, err := p.announce(p.http+"/announce/"+validKey, 7001, 100); err != nil {
		t.Fatalf("seeding the swarm over HTTP: %v", err)
	}
	return p
}

// announce announces hashN(1) to url with our own client, which sends a
// udp:// URL's path as BEP 41 URL data.
func (p *privateEnv) announce(url string, port uint16, left int64) (trackerclient.AnnounceResult, error) {
	c, err := trackerclient.New(url, trackerclient.Options{Timeout: 5 * time.Second})
	if err != nil {
		return trackerclient.AnnounceResult{}, err
	}
	defer c.Close()
	var id bittorrent.PeerID
	binary.BigEndian.PutUint16(id[:], port)
	return c.Announce(context.Background(), trackerclient.Announce{
		InfoHash: hashN(1), PeerID: id, Port: port, Left: left, Event: bittorrent.EventStarted, NumWant: -1,
	})
}

// refusal is the tracker's error text, "" when it answered.
func refusal(t *testing.T, err error) string {
	t.Helper()
	var te *trackerclient.TrackerError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &te):
		return te.Message
	}
	t.Fatalf("no answer: %v", err)
	return ""
}

// TestPrivateKeysOverUDPAndHTTP: a private tracker checks a UDP announce's
// key (BEP 41 URL data) with the rules and the texts of HTTP. Each row goes
// to both transports with the same URL path, and gets the same answer.
func TestPrivateKeysOverUDPAndHTTP(t *testing.T) {
	p := startPrivate(t)
	const (
		missing = "Authentication error: Missing authentication key param for private tracker."
		format  = "Authentication error: Invalid format for authentication key param."
	)
	tests := []struct {
		name, path, want string
		udpOnly          bool // no HTTP route has that path
	}{
		{name: "valid key", path: "/announce/" + validKey},
		{name: "valid key, path without announce", path: "/" + validKey, udpOnly: true},
		{name: "valid key and a query", path: "/announce/" + validKey + "?passkey=x", udpOnly: true},
		{name: "expired key", path: "/announce/" + expiredKey, want: "Authentication error: Key has expired"},
		{name: "wrong key", path: "/announce/" + unknownKey, want: "Authentication error: Failed to read key: " + unknownKey},
		{name: "no key", path: "/announce", want: missing},
		{name: "no path", path: "", want: missing, udpOnly: true},
		{name: "short key", path: "/announce/short", want: format},
		{name: "key with a slash", path: "/announce/" + validKey + "/x", want: format, udpOnly: true},
		// Over UDP, 600 bytes of URL data are more than maxURLData: refused
		// whole, never cut to a valid key.
		{name: "longer than allowed", path: "/announce/" + validKey + strings.Repeat("k", 600-42), want: format},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			transports := []string{p.udp}
			if !tt.udpOnly {
				transports = append(transports, p.http)
			}
			for j, base := range transports {
				r, err := p.announce(base+tt.path, uint16(8000+10*i+j), 50)
				if got := refusal(t, err); got != tt.want {
					t.Fatalf("%s: %q, want %q", base, got, tt.want)
				}
				if tt.want == "" && (len(r.Peers) == 0 || r.Leechers < 2) {
					t.Fatalf("%s: answered %+v, want the seeded leecher", base, r)
				}
			}
		})
	}
	if n := p.counters.Value(metrics.UDPErrors); n != 7 {
		t.Errorf("udp errors %d, want one per refused UDP announce (7)", n)
	}
}

// TestPrivateURLDataOptions sends URL data split over several options and
// malformed or oversized options, as raw packets.
func TestPrivateURLDataOptions(t *testing.T) {
	p := startPrivate(t)
	c := newRawClient(t, "127.0.0.1:0", p.target(false))
	cid := c.connect()
	opt := func(s string) []byte { return append([]byte{optURLData, byte(len(s))}, s...) }
	join := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	long := func(n int) []byte { // n bytes of URL data: a key and a query, in 255-byte options
		b := opt("/announce/" + validKey + "?")
		for n -= 43; n > 0; n -= 255 {
			b = append(b, opt(strings.Repeat("x", min(n, 255)))...)
		}
		return b
	}
	tests := []struct {
		name string
		opts []byte
		want string // "" = answered
	}{
		{"split over three options with NOPs", join(opt("/ann"), []byte{optNOP}, opt("ounce/"+validKey[:7]), []byte{optNOP, optNOP}, opt(validKey[7:])), ""},
		{"split key, end of options, then junk", join(opt("/announce/"+validKey[:16]), opt(validKey[16:]), []byte{optEndOfOptions, optURLData, 3, 'x', 'y', 'z'}), ""},
		{"unknown option between", join(opt("/announce/"), []byte{0x7f, 2, 0, 0}, opt(validKey)), ""},
		{"option past the end after the key", join(opt("/announce/"+validKey), []byte{optURLData, 200, 'x'}), ""},
		{"key option past the end", []byte{optURLData, 200, '/', 'a'}, "Authentication error: Missing authentication key param for private tracker."},
		{"exactly the longest allowed", long(maxURLData), ""},
		{"one byte longer than allowed", long(maxURLData + 1), "Authentication error: Invalid format for authentication key param."},
		{"expired key split", join(opt("/announce/"+expiredKey[:1]), opt(expiredKey[1:])), "Authentication error: Key has expired"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			pkt := announcePacket(announceSpec{cid: cid, txid: uint32(100 + i), hash: hashN(1), port: uint16(9000 + i), left: 1, event: 2, options: tt.opts})
			resp := c.roundTrip(pkt)
			if tt.want == "" {
				if binary.BigEndian.Uint32(resp) != actionAnnounce || len(resp) < 20+6 {
					t.Fatalf("want an announce answer with the seeded peer, got %q", resp)
				}
				return
			}
			if got := errorText(t, resp, uint32(100+i)); got != tt.want {
				t.Fatalf("%q, want %q", got, tt.want)
			}
		})
	}
}

// TestPrivateScrape: a UDP scrape has no room for options, so in private mode
// it is answered as a keyless HTTP scrape is: zeros, for a torrent that has a
// peer. A keyed HTTP scrape sees the peer.
func TestPrivateScrape(t *testing.T) {
	p := startPrivate(t)
	scrape := func(url string) trackerclient.ScrapeFile {
		t.Helper()
		c, err := trackerclient.New(url, trackerclient.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fs, err := c.Scrape(context.Background(), []bittorrent.InfoHash{hashN(1)})
		if err != nil {
			t.Fatalf("scrape %s: %v", url, err)
		}
		return fs[0]
	}
	zero := trackerclient.ScrapeFile{InfoHash: hashN(1)}
	for _, url := range []string{p.udp, p.udp + "/announce/" + validKey, p.http + "/announce"} {
		if f := scrape(url); f != zero {
			t.Errorf("%s: %+v, want zeros", url, f)
		}
	}
	if f := scrape(p.http + "/announce/" + validKey); f.Leechers != 1 {
		t.Errorf("keyed HTTP scrape: %+v, want the leecher", f)
	}
}

// TestPublicIgnoresURLData: without private mode, URL data is not read, and
// an announce with a malformed key in it gets the same bytes as one without.
func TestPublicIgnoresURLData(t *testing.T) {
	e := startEnv(t, envOpts{})
	e.addPeers(t, hashN(1), 1, v4Peer)
	c := newRawClient(t, "127.0.0.1:0", e.target(false))
	cid := c.connect()
	spec := announceSpec{cid: cid, txid: 5, hash: hashN(1), port: 5, left: 1}
	plain := c.roundTrip(announcePacket(spec))
	for _, opts := range [][]byte{
		append([]byte{optURLData, 15}, "/announce/short"...),
		append([]byte{optURLData, 42}, "/announce/"+unknownKey...),
		bytes.Repeat(append([]byte{optURLData, 255}, bytes.Repeat([]byte{'k'}, 255)...), 3),
	} {
		spec.options = opts
		if got := c.roundTrip(announcePacket(spec)); !bytes.Equal(got, plain) {
			t.Fatalf("with URL data % x: % x, want % x", opts[:4], got, plain)
		}
	}
}

func TestURLKey(t *testing.T) {
	tests := []struct {
		in, key string
		has     bool
	}{
		{"", "", false},
		{"/", "", false},
		{"/announce", "", false},
		{"/announce?x=1", "", false},
		{"?passkey=1", "", false},
		{"/announce/" + validKey, validKey, true},
		{"/announce/" + validKey + "?a=b&c", validKey, true},
		{"/" + validKey, validKey, true},
		{"/announce/", "", true},
		{"/announce/a/b", "a/b", true},
		{"/announcex", "announcex", true},
		{"/scrape/" + validKey, "scrape/" + validKey, true},
		{validKey, validKey, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			key, has := urlKey([]byte(tt.in))
			if string(key) != tt.key || has != tt.has {
				t.Fatalf("urlKey(%q) = %q, %v; want %q, %v", tt.in, key, has, tt.key, tt.has)
			}
		})
	}
}

func TestParseOptionsURLData(t *testing.T) {
	opt := func(s string) []byte { return append([]byte{optURLData, byte(len(s))}, s...) }
	tests := []struct {
		name               string
		in                 []byte
		url                string
		tooLong, malformed bool
	}{
		{"none", nil, "", false, false},
		{"one", opt("/announce"), "/announce", false, false},
		{"joined", bytes.Join([][]byte{opt("/a"), {optNOP}, opt("nn"), {0x7f, 1, 0}, opt("ounce")}, nil), "/announce", false, false},
		{"end stops", bytes.Join([][]byte{opt("/a"), {optEndOfOptions}, opt("b")}, nil), "/a", false, false},
		{"past the end", bytes.Join([][]byte{opt("/a"), {optURLData, 9, 'b'}}, nil), "/a", false, true},
		{"length missing", []byte{optNOP, optURLData}, "", false, true},
		{"exactly the bound", bytes.Join([][]byte{opt(strings.Repeat("a", 255)), opt(strings.Repeat("b", maxURLData-255))}, nil),
			strings.Repeat("a", 255) + strings.Repeat("b", maxURLData-255), false, false},
		{"past the bound", bytes.Join([][]byte{opt(strings.Repeat("a", 255)), opt(strings.Repeat("b", maxURLData-255)), opt("c")}, nil),
			strings.Repeat("a", 255) + strings.Repeat("b", maxURLData-255), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o announceOptions
			o.tooLong, o.malformed, o.urlDataLen = true, true, 3 // a previous packet's
			parseOptions(tt.in, &o)
			if string(o.url()) != tt.url || o.tooLong != tt.tooLong || o.malformed != tt.malformed {
				t.Fatalf("url %q tooLong %v malformed %v; want %q %v %v", o.url(), o.tooLong, o.malformed, tt.url, tt.tooLong, tt.malformed)
			}
		})
	}
}

// FuzzURLData: any options parse within the bound, and a key found is a
// part of the URL data's path.
func FuzzURLData(f *testing.F) {
	f.Add(append([]byte{optURLData, 42}, "/announce/"+validKey...))
	f.Add([]byte{optNOP, optURLData, 4, '/', 'a', '?', '/', optURLData, 1})
	f.Add(bytes.Repeat([]byte{optURLData, 255}, 300))
	var o announceOptions
	f.Fuzz(func(t *testing.T, b []byte) {
		parseOptions(b[:len(b):len(b)], &o)
		u := o.url()
		if len(u) > maxURLData || (o.tooLong && len(u) != maxURLData) {
			t.Fatalf("url data of %d bytes, tooLong %v", len(u), o.tooLong)
		}
		key, has := urlKey(u)
		if !has {
			if len(key) != 0 {
				t.Fatalf("no key, but %q", key)
			}
			return
		}
		path, _, _ := bytes.Cut(u, []byte("?"))
		if !bytes.HasSuffix(path, key) || bytes.IndexByte(key, '?') >= 0 {
			t.Fatalf("key %q is not the end of the path %q", key, path)
		}
	})
}

// newPrivateHandlerFixture is newHandlerFixture's private twin: keys read
// from URL data, validKey valid, 50 IPv4 leechers on hashN(1). It shares
// cookies c (nil: new ones), so one connection id serves both fixtures.
func newPrivateHandlerFixture(tb testing.TB, c *cookies) *handlerFixture {
	tb.Helper()
	clk := clock.NewManual(1_700_000_000)
	cfg := tracker.DefaultConfig()
	cfg.Private = true
	lists := access.New(nil)
	k, _ := bittorrent.ParseKey(validKey)
	if err := lists.AddKey(context.Background(), access.KeyRecord{Key: k, Permanent: true}); err != nil {
		tb.Fatal(err)
	}
	tr := tracker.New(cfg, memswarm.New(swarm.Options{}), lists, clk, nil)
	var resp bittorrent.AnnounceResponse
	for i := 0; i < 50; i++ {
		req := bittorrent.AnnounceRequest{InfoHash: hashN(1), Addr: v4Peer(i), Left: 1, Key: k, HasKey: true}
		resp.Reset()
		if err := tr.Announce(context.Background(), &req, &resp); err != nil {
			tb.Fatal(err)
		}
	}
	if c == nil {
		var err error
		if c, err = newCookies(120); err != nil {
			tb.Fatal(err)
		}
	}
	counters := metrics.NewCounters(1, true)
	return &handlerFixture{
		h:        newHandler(tr, c, newLimiter(-1, 10, 1, 2), clk, counters.Stripe(), quietLog(), flag(true)),
		counters: counters,
		clk:      clk,
		src:      netip.MustParseAddrPort("192.0.2.7:40000"),
		out:      make([]byte, maxPayload4),
	}
}

// TestPrivateAnnounceAllocations: reading and checking the key adds no
// allocation to the announce path.
func TestPrivateAnnounceAllocations(t *testing.T) {
	f := newPrivateHandlerFixture(t, nil)
	opt := func(s string) []byte { return append([]byte{optURLData, byte(len(s))}, s...) }
	for _, tt := range []struct {
		name string
		opts []byte
	}{
		{"key in one option", opt("/announce/" + validKey)},
		{"key split over options, with a query", bytes.Join([][]byte{opt("/announce/" + validKey[:3]), {optNOP}, opt(validKey[3:] + "?a=b")}, nil)},
		{"short path", opt("/" + validKey)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pkt := announcePacket(announceSpec{cid: f.cid(), txid: 2, hash: hashN(1), port: 9, numWant: 74, options: tt.opts})
			if resp := f.do(pkt); binary.BigEndian.Uint32(resp) != actionAnnounce || len(resp) < 20+6*50 {
				t.Fatalf("answer % x", resp)
			}
			if allocs := testing.AllocsPerRun(200, func() { f.do(pkt) }); allocs != 0 {
				t.Fatalf("%v allocations per announce, want 0", allocs)
			}
		})
	}
}
