package trackerclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// fakeUDP is a scripted UDP tracker: handle gets each datagram and returns the
// datagrams to send back. Its goroutine is owned by the test and stopped in
// Cleanup.
type fakeUDP struct {
	conn     *net.UDPConn
	received atomic.Int32
	mu       sync.Mutex
	requests [][]byte
}

func startFakeUDP(t *testing.T, network, addr string, handle func(req []byte) [][]byte) *fakeUDP {
	t.Helper()
	la, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP(network, la)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	f := &fakeUDP{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := bytes.Clone(buf[:n])
			f.received.Add(1)
			f.mu.Lock()
			f.requests = append(f.requests, req)
			f.mu.Unlock()
			for _, out := range handle(req) {
				_, _ = conn.WriteToUDPAddrPort(out, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return f
}

func (f *fakeUDP) url() string { return "udp://" + f.conn.LocalAddr().String() }

const fakeConnID = 0x1122334455667788

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// tracker answers as BEP 15 says, with the given announce peers (raw bytes)
// and scrape counts, after checking the request's shape.
func tracker(t *testing.T, peers []byte, counts func(ih []byte) [3]uint32) func([]byte) [][]byte {
	return func(req []byte) [][]byte {
		if len(req) < 16 {
			t.Errorf("request of %d bytes", len(req))
			return nil
		}
		action, tid := binary.BigEndian.Uint32(req[8:]), req[12:16]
		switch action {
		case 0:
			if binary.BigEndian.Uint64(req) != udpProtocolID || len(req) != 16 {
				t.Errorf("bad connect request %x", req)
			}
			out := append(be32(0), tid...)
			return [][]byte{binary.BigEndian.AppendUint64(out, fakeConnID)}
		case 1:
			if binary.BigEndian.Uint64(req) != fakeConnID || len(req) < 98 {
				t.Errorf("bad announce request %x", req)
			}
			out := append(be32(1), tid...)
			out = append(out, be32(1800)...)
			out = append(out, be32(3)...) // leechers
			out = append(out, be32(7)...) // seeders
			return [][]byte{append(out, peers...)}
		case 2:
			if binary.BigEndian.Uint64(req) != fakeConnID || (len(req)-16)%20 != 0 {
				t.Errorf("bad scrape request %x", req)
			}
			out := append(be32(2), tid...)
			for ih := req[16:]; len(ih) > 0; ih = ih[20:] {
				c := counts(ih[:20])
				out = append(out, be32(c[0])...)
				out = append(out, be32(c[1])...)
				out = append(out, be32(c[2])...)
			}
			return [][]byte{out}
		}
		t.Errorf("unexpected action %d", action)
		return nil
	}
}

func testHash(i byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for j := range h {
		h[j] = i ^ byte(j)
	}
	return h
}

func testAnnounce() Announce {
	a := Announce{InfoHash: testHash(1), Port: 6881, Left: 5, Uploaded: 2, Downloaded: 3, Event: bittorrent.EventStarted, NumWant: 50, Key: 99}
	copy(a.PeerID[:], "-ST0001-abcdefghijkl")
	return a
}

func TestUDPAnnounceIPv4(t *testing.T) {
	peers := []byte{10, 0, 0, 1, 0x1a, 0xe1, 192, 168, 1, 2, 0, 80}
	f := startFakeUDP(t, "udp4", "127.0.0.1:0", tracker(t, peers, nil))
	c, err := New(f.url(), Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Announce(context.Background(), testAnnounce())
	if err != nil {
		t.Fatal(err)
	}
	want := AnnounceResult{Interval: 1800, Leechers: 3, Seeders: 7, Peers: []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.1:6881"), netip.MustParseAddrPort("192.168.1.2:80")}}
	if !equalAnnounce(res, want) {
		t.Fatalf("got %+v, want %+v", res, want)
	}
	// The announce carries every field in BEP 15's layout.
	f.mu.Lock()
	req := f.requests[len(f.requests)-1]
	f.mu.Unlock()
	a := testAnnounce()
	checks := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"info_hash", req[16:36], a.InfoHash[:]},
		{"peer_id", req[36:56], a.PeerID[:]},
		{"downloaded", req[56:64], binary.BigEndian.AppendUint64(nil, 3)},
		{"left", req[64:72], binary.BigEndian.AppendUint64(nil, 5)},
		{"uploaded", req[72:80], binary.BigEndian.AppendUint64(nil, 2)},
		{"event", req[80:84], be32(2)},
		{"key", req[88:92], be32(99)},
		{"num_want", req[92:96], be32(50)},
		{"port", req[96:98], []byte{0x1a, 0xe1}},
	}
	for _, ck := range checks {
		t.Run(ck.name, func(t *testing.T) {
			if !bytes.Equal(ck.got, ck.want) {
				t.Errorf("%x, want %x", ck.got, ck.want)
			}
		})
	}
	// A second announce reuses the connection id: no second connect.
	if _, err := c.Announce(context.Background(), testAnnounce()); err != nil {
		t.Fatal(err)
	}
	if n := f.received.Load(); n != 3 {
		t.Errorf("%d datagrams for connect + 2 announces, want 3", n)
	}
}

func TestUDPAnnounceIPv6Has18BytePeers(t *testing.T) {
	peers := append(netip.MustParseAddr("2001:db8::1").AsSlice(), 0x1a, 0xe1)
	f := startFakeUDP(t, "udp6", "[::1]:0", tracker(t, peers, nil))
	c, err := New(f.url(), Options{Timeout: 2 * time.Second, Family: IPv6})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Announce(context.Background(), testAnnounce())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Peers) != 1 || res.Peers[0] != netip.MustParseAddrPort("[2001:db8::1]:6881") {
		t.Fatalf("peers %v", res.Peers)
	}
}

func TestUDPScrapeSplitsAt74(t *testing.T) {
	counts := func(ih []byte) [3]uint32 { return [3]uint32{uint32(ih[0]), uint32(ih[0]) + 1, uint32(ih[0]) + 2} }
	f := startFakeUDP(t, "udp4", "127.0.0.1:0", tracker(t, nil, counts))
	c, err := New(f.url(), Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{1, 74, 100} {
		t.Run(strings.Repeat("h", n/10+1), func(t *testing.T) {
			hashes := make([]bittorrent.InfoHash, n)
			for i := range hashes {
				hashes[i] = testHash(byte(i))
			}
			files, err := c.Scrape(context.Background(), hashes)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != n {
				t.Fatalf("%d files for %d hashes", len(files), n)
			}
			for i, f := range files {
				c := counts(hashes[i][:])
				if f.InfoHash != hashes[i] || f.Seeders != c[0] || f.Completed != c[1] || f.Leechers != c[2] {
					t.Fatalf("file %d = %+v, want %v", i, f, c)
				}
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.requests {
		if len(r) > 16+20*MaxUDPScrape {
			t.Errorf("scrape packet of %d bytes exceeds %d hashes", len(r), MaxUDPScrape)
		}
	}
}

func TestUDPErrors(t *testing.T) {
	errPacket := func(tid []byte, msg string) []byte { return append(append(be32(3), tid...), msg...) }
	tests := []struct {
		name     string
		handle   func(req []byte) [][]byte
		wantErr  error
		wantText string
		wantExit int
	}{
		{"error packet", func(req []byte) [][]byte {
			return [][]byte{errPacket(req[12:16], "bad request: Port can't be 0\n")}
		}, nil, "Port can't be 0", ExitRefused},
		{"error packet with transaction id 0 (Torrust v3)", func(req []byte) [][]byte {
			return [][]byte{errPacket([]byte{0, 0, 0, 0}, "bad request: invalid data")}
		}, nil, "invalid data", ExitRefused},
		{"junk", func([]byte) [][]byte { return [][]byte{[]byte("hello")} }, ErrMalformed, "shorter than", ExitNoAnswer},
		{"unknown action", func(req []byte) [][]byte {
			return [][]byte{append(be32(9), req[12:16]...)}
		}, ErrMalformed, "unknown action 9", ExitNoAnswer},
		{"short connect answer", func(req []byte) [][]byte {
			return [][]byte{append(be32(0), req[12:16]...)}
		}, ErrMalformed, "want 16", ExitNoAnswer},
		{"wrong action for the request", func(req []byte) [][]byte {
			return [][]byte{append(append(be32(2), req[12:16]...), make([]byte, 12)...)}
		}, ErrMalformed, "answers a request", ExitNoAnswer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeUDP(t, "udp4", "127.0.0.1:0", tc.handle)
			c, err := New(f.url(), Options{Timeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.Announce(context.Background(), testAnnounce())
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
			if got := ExitCode(err); got != tc.wantExit {
				t.Errorf("exit code %d, want %d", got, tc.wantExit)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v: a bad answer must be reported at once, not after the timeout", d)
			}
		})
	}
}

func TestUDPIgnoresOtherTransactions(t *testing.T) {
	f := startFakeUDP(t, "udp4", "127.0.0.1:0", func(req []byte) [][]byte {
		good := tracker(t, nil, nil)(req)
		stale := bytes.Clone(good[0])
		stale[4] ^= 0xff // another transaction id
		return [][]byte{stale, good[0]}
	})
	c, err := New(f.url(), Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Announce(context.Background(), testAnnounce()); err != nil {
		t.Fatal(err)
	}
}

func TestUDPTimeoutRetransmits(t *testing.T) {
	f := startFakeUDP(t, "udp4", "127.0.0.1:0", func([]byte) [][]byte { return nil })
	c, err := New(f.url(), Options{Timeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Announce(context.Background(), testAnnounce())
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) || ExitCode(err) != ExitNoAnswer {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	if d < 1400*time.Millisecond || d > 3*time.Second {
		t.Errorf("gave up after %v, want about 1.5 s", d)
	}
	if n := f.received.Load(); n != 2 {
		t.Errorf("%d connect datagrams in 1.5 s, want 2 (sent at 0 s and 1 s)", n)
	}
}

func TestUDPCancel(t *testing.T) {
	f := startFakeUDP(t, "udp4", "127.0.0.1:0", func([]byte) [][]byte { return nil })
	c, err := New(f.url(), Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = c.Announce(ctx, testAnnounce())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
}

func TestUDPRefused(t *testing.T) {
	// A port that was just free: the kernel answers ICMP port unreachable.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	c, err := New("udp://"+addr, Options{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("error %v, want a refusal", err)
	}
	if errors.Is(err, ErrTimeout) || ExitCode(err) != ExitNoAnswer {
		t.Errorf("error %v classified wrongly", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v", d)
	}
}

func TestUDPFamilyMismatch(t *testing.T) {
	c, err := New("udp://127.0.0.1:6969", Options{Timeout: time.Second, Family: IPv6})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(context.Background()); err == nil {
		t.Fatal("IPv6 connect to an IPv4 address succeeded")
	}
}

func TestDecodeUDP(t *testing.T) {
	tid := uint32(0xabcdef01)
	hdr := func(action uint32) []byte { return append(be32(action), be32(tid)...) }
	hashes := []bittorrent.InfoHash{testHash(1), testHash(2)}
	tests := []struct {
		name     string
		in       []byte
		action   uint32
		peerSize int
		ours     bool
		wantErr  bool
	}{
		{"connect", append(hdr(0), 1, 2, 3, 4, 5, 6, 7, 8), actionConnect, 6, true, false},
		{"announce no peers", append(hdr(1), make([]byte, 12)...), actionAnnounce, 6, true, false},
		{"announce v6 peer", append(hdr(1), make([]byte, 12+18)...), actionAnnounce, 18, true, false},
		{"announce v4 peer on v6 socket", append(hdr(1), make([]byte, 12+6)...), actionAnnounce, 18, false, true},
		{"announce truncated header", append(hdr(1), make([]byte, 11)...), actionAnnounce, 6, false, true},
		{"scrape two", append(hdr(2), make([]byte, 24)...), actionScrape, 6, true, false},
		{"scrape one of two", append(hdr(2), make([]byte, 12)...), actionScrape, 6, false, true},
		{"scrape ragged", append(hdr(2), make([]byte, 13)...), actionScrape, 6, false, true},
		{"other transaction", append(append(be32(1), be32(tid+1)...), make([]byte, 12)...), actionAnnounce, 6, false, false},
		{"error", append(hdr(3), "nope"...), actionAnnounce, 6, true, true},
		{"empty", nil, actionConnect, 6, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ours, err := decodeUDP(tc.in, tid, tc.action, tc.peerSize, hashes)
			if ours != tc.ours || (err != nil) != tc.wantErr {
				t.Fatalf("ours=%v err=%v, want ours=%v err=%v", ours, err, tc.ours, tc.wantErr)
			}
		})
	}
}

// FuzzDecodeUDP: any datagram gets a result or an error, never a panic, and
// an accepted announce accounts for every byte.
func FuzzDecodeUDP(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 120, 0, 0, 0, 1, 0, 0, 0, 2, 127, 0, 0, 1, 0x1a, 0xe1}, uint8(1), false)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8}, uint8(0), false)
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, uint8(2), true)
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 0, 'o', 'o', 'p', 's'}, uint8(1), true)
	f.Fuzz(func(t *testing.T, b []byte, action uint8, v6 bool) {
		peerSize := 6
		if v6 {
			peerSize = 18
		}
		ans, ours, err := decodeUDP(b, 7, uint32(action%3), peerSize, []bittorrent.InfoHash{testHash(0)})
		if err == nil && ours && action%3 == actionAnnounce && 20+len(ans.announce.Peers)*peerSize != len(b) {
			t.Fatalf("%d peers from %d bytes", len(ans.announce.Peers), len(b))
		}
	})
}

func equalAnnounce(a, b AnnounceResult) bool {
	if a.Interval != b.Interval || a.MinInterval != b.MinInterval || a.Seeders != b.Seeders || a.Leechers != b.Leechers || a.Warning != b.Warning || len(a.Peers) != len(b.Peers) {
		return false
	}
	for i := range a.Peers {
		if a.Peers[i] != b.Peers[i] {
			return false
		}
	}
	return true
}

// TestUDPAnnounceSendsURLData: a udp:// URL's path and query go after the
// announce as BEP 41 URL data, in options of at most 255 bytes; a URL
// without a path sends the 98 bytes of BEP 15 alone, as before.
func TestUDPAnnounceSendsURLData(t *testing.T) {
	long := "/announce/" + strings.Repeat("k", 590) // 600 bytes: 255 + 255 + 90
	opt := func(s string) []byte { return append([]byte{optURLData, byte(len(s))}, s...) }
	tests := []struct {
		name, path string
		opts       []byte
	}{
		{"no path", "", nil},
		{"announce", "/announce", opt("/announce")},
		{"key", "/announce/" + testKey, opt("/announce/" + testKey)},
		{"key and query", "/announce/" + testKey + "?a=b%20c", opt("/announce/" + testKey + "?a=b%20c")},
		{"escaped path", "/a%2Fb", opt("/a%2Fb")},
		{"split at 255", long, bytes.Join([][]byte{opt(long[:255]), opt(long[255:510]), opt(long[510:])}, nil)},
		{"at the bound", "/" + strings.Repeat("k", MaxUDPURLData-1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeUDP(t, "udp4", "127.0.0.1:0", tracker(t, nil, nil))
			c, err := New(f.url()+tt.path, Options{Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Announce(context.Background(), testAnnounce()); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			req := f.requests[len(f.requests)-1]
			f.mu.Unlock()
			if tt.name == "at the bound" {
				if n := len(req) - 98 - 2*((MaxUDPURLData+254)/255); n != MaxUDPURLData {
					t.Fatalf("%d bytes of URL data, want %d", n, MaxUDPURLData)
				}
				return
			}
			if got := req[98:]; !bytes.Equal(got, tt.opts) {
				t.Fatalf("options %q, want %q", got, tt.opts)
			}
		})
	}
	if _, err := New("udp://127.0.0.1:1/"+strings.Repeat("k", MaxUDPURLData), Options{}); err == nil ||
		strings.Contains(err.Error(), "kkkk") {
		t.Fatalf("a path past the bound: %v", err)
	}
}

func TestRedactUDP(t *testing.T) {
	for in, want := range map[string]string{
		"udp://h:1/announce/" + testKey: "udp://h:1/announce/REDACTED",
		"udp://h:1/" + testKey:          "udp://h:1/REDACTED",
		"udp://h:1/announce":            "udp://h:1/announce",
		"udp://h:1":                     "udp://h:1",
		"http://h:1/" + testKey:         "http://h:1/" + testKey, // HTTP keys are only ever after announce or scrape
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
