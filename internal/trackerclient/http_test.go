package trackerclient

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

const testKey = "YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ"

// startFakeHTTP serves handler on 127.0.0.1; answers are encoded with
// anacrolix's bencode, independent of the decoder under test.
func startFakeHTTP(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return s
}

func writeBencode(t *testing.T, w http.ResponseWriter, v any) {
	b, err := bencode.Marshal(v)
	if err != nil {
		t.Error(err)
		return
	}
	_, _ = w.Write(b)
}

func TestHTTPAnnounceCompact(t *testing.T) {
	a := testAnnounce()
	s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		// The standard library's query decoder is independent of ours.
		q := r.URL.Query()
		checks := map[string]string{
			"info_hash": string(a.InfoHash[:]), "peer_id": string(a.PeerID[:]), "port": "6881", "uploaded": "2",
			"downloaded": "3", "left": "5", "event": "started", "numwant": "50", "compact": "1",
		}
		for k, want := range checks {
			if got := q.Get(k); got != want {
				t.Errorf("query %s = %q, want %q", k, got, want)
			}
		}
		if r.URL.Path != "/announce/"+testKey {
			t.Errorf("path %q", r.URL.Path)
		}
		writeBencode(t, w, map[string]any{
			"complete": 4, "incomplete": 2, "interval": 120, "min interval": 60,
			"peers":  "\x0a\x00\x00\x01\x1a\xe1",
			"peers6": string(netip.MustParseAddr("2001:db8::2").AsSlice()) + "\x00\x50",
		})
	})
	c, err := New(s.URL+"/announce/"+testKey, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Announce(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	want := AnnounceResult{Interval: 120, MinInterval: 60, Seeders: 4, Leechers: 2, Peers: []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.1:6881"), netip.MustParseAddrPort("[2001:db8::2]:80")}}
	if !equalAnnounce(res, want) {
		t.Fatalf("got %+v, want %+v", res, want)
	}
}

func TestHTTPAnnounceForms(t *testing.T) {
	tests := []struct {
		name      string
		body      any
		raw       string
		want      AnnounceResult
		wantErr   error
		wantText  string
		noCompact bool
	}{
		{name: "non-compact list", noCompact: true, body: map[string]any{"interval": 120, "complete": 1, "incomplete": 0, "peers": []any{
			map[string]any{"ip": "10.1.2.3", "peer id": "-qB0000-000000000000", "port": 51413},
			map[string]any{"ip": "::1", "port": 6881},
		}}, want: AnnounceResult{Interval: 120, Seeders: 1, Peers: []netip.AddrPort{
			netip.MustParseAddrPort("10.1.2.3:51413"), netip.MustParseAddrPort("[::1]:6881")}}},
		{name: "warning", body: map[string]any{"interval": 60, "peers": "", "warning message": "slow down"},
			want: AnnounceResult{Interval: 60, Warning: "slow down", Peers: []netip.AddrPort{}}},
		{name: "failure reason", body: map[string]any{"failure reason": "Authentication error: Key has expired"},
			wantText: "Key has expired"},
		{name: "no interval", body: map[string]any{"peers": ""}, wantErr: ErrMalformed, wantText: `no "interval"`},
		{name: "ragged compact", body: map[string]any{"interval": 1, "peers": "12345"}, wantErr: ErrMalformed, wantText: "multiple of 6"},
		{name: "negative count", body: map[string]any{"interval": 1, "complete": -1}, wantErr: ErrMalformed, wantText: "complete"},
		{name: "bad peer ip", body: map[string]any{"interval": 1, "peers": []any{map[string]any{"ip": "nope", "port": 1}}}, wantErr: ErrMalformed, wantText: "ip"},
		{name: "html", raw: "<html>hello</html>", wantErr: ErrMalformed, wantText: "not bencode"},
		{name: "list", raw: "li1ee", wantErr: ErrMalformed, wantText: "not a dictionary"},
		{name: "empty", raw: "", wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.noCompact && r.URL.Query().Get("compact") != "0" {
					t.Errorf("compact=%q, want 0", r.URL.Query().Get("compact"))
				}
				if tc.body != nil {
					writeBencode(t, w, tc.body)
				} else {
					_, _ = w.Write([]byte(tc.raw))
				}
			})
			c, err := New(s.URL+"/announce", Options{Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a := testAnnounce()
			a.NoCompact = tc.noCompact
			res, err := c.Announce(context.Background(), a)
			if tc.wantText == "" && tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !equalAnnounce(res, tc.want) {
					t.Fatalf("got %+v, want %+v", res, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
			var te *TrackerError
			if tc.wantErr == nil && (!errors.As(err, &te) || ExitCode(err) != ExitRefused) {
				t.Errorf("error %v is not a tracker refusal", err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestHTTPScrape(t *testing.T) {
	hashes := []bittorrent.InfoHash{testHash(1), testHash(2), testHash(1)}
	s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/scrape/"+testKey {
			t.Errorf("path %q, want the scrape path with the key", r.URL.Path)
		}
		got := r.URL.Query()["info_hash"]
		if len(got) != 3 || got[0] != string(hashes[0][:]) || got[1] != string(hashes[1][:]) {
			t.Errorf("info_hash params %q", got)
		}
		files := map[string]any{}
		for i, h := range got {
			files[h] = map[string]any{"complete": i + 1, "downloaded": 10, "incomplete": 20}
		}
		writeBencode(t, w, map[string]any{"files": files})
	})
	c, err := New(s.URL+"/announce/"+testKey, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	files, err := c.Scrape(context.Background(), hashes)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[0].InfoHash != hashes[0] || files[1].Seeders != 2 || files[1].Completed != 10 || files[1].Leechers != 20 || files[2].InfoHash != hashes[0] {
		t.Fatalf("files %+v", files)
	}

	t.Run("more hashes than one request carries", func(t *testing.T) {
		var requests []int
		s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			got := r.URL.Query()["info_hash"]
			requests = append(requests, len(got))
			files := map[string]any{}
			for _, h := range got[:min(len(got), 74)] { // a tracker that answers 74 at most
				files[h] = map[string]any{"complete": int(h[0]), "downloaded": 0, "incomplete": 0}
			}
			writeBencode(t, w, map[string]any{"files": files})
		})
		many := make([]bittorrent.InfoHash, 160)
		for i := range many {
			many[i] = testHash(byte(i))
		}
		c, _ := New(s.URL+"/announce", Options{})
		defer c.Close()
		files, err := c.Scrape(context.Background(), many)
		if err != nil {
			t.Fatal(err)
		}
		if len(requests) != 3 || requests[0] != 74 || requests[2] != 12 {
			t.Fatalf("requests carried %v hashes, want 74, 74, 12", requests)
		}
		for i, f := range files {
			if f.InfoHash != many[i] || f.Seeders != uint32(many[i][0]) {
				t.Fatalf("file %d = %+v, want hash %x first", i, f, many[i][:2])
			}
		}
	})

	t.Run("missing hash", func(t *testing.T) {
		s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			writeBencode(t, w, map[string]any{"files": map[string]any{}})
		})
		c, _ := New(s.URL+"/announce", Options{})
		defer c.Close()
		if _, err := c.Scrape(context.Background(), hashes); !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v, want ErrMalformed", err)
		}
	})
}

func TestHTTPTransportErrors(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		c, _ := New(s.URL+"/announce", Options{Timeout: 300 * time.Millisecond})
		defer c.Close()
		start := time.Now()
		_, err := c.Announce(context.Background(), testAnnounce())
		if !errors.Is(err, ErrTimeout) || ExitCode(err) != ExitNoAnswer {
			t.Fatalf("error %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, _ := New("http://"+addr+"/announce", Options{Timeout: 2 * time.Second})
		defer c.Close()
		_, err = c.Announce(context.Background(), testAnnounce())
		if err == nil || !strings.Contains(err.Error(), "connection refused") || ExitCode(err) != ExitNoAnswer {
			t.Fatalf("error %v, want a refusal", err)
		}
	})
	t.Run("status 404", func(t *testing.T) {
		s := startFakeHTTP(t, http.NotFound)
		c, _ := New(s.URL+"/announce/"+testKey, Options{})
		defer c.Close()
		_, err := c.Announce(context.Background(), testAnnounce())
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "404") {
			t.Fatalf("error %v", err)
		}
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("error %q shows the key", err)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 1<<20)
			for i := 0; i < 9; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		c, _ := New(s.URL+"/announce", Options{})
		defer c.Close()
		_, err := c.Announce(context.Background(), testAnnounce())
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestHTTPSInsecure(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeBencode(t, w, map[string]any{"interval": 120, "peers": ""})
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	s.StartTLS()
	defer s.Close()
	c, _ := New(s.URL+"/announce", Options{Timeout: 2 * time.Second})
	defer c.Close()
	if _, err := c.Announce(context.Background(), testAnnounce()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed certificate accepted without --insecure: %v", err)
	}
	c2, _ := New(s.URL+"/announce", Options{Timeout: 2 * time.Second, Insecure: true})
	defer c2.Close()
	if _, err := c2.Announce(context.Background(), testAnnounce()); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPFamily(t *testing.T) {
	s := startFakeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		writeBencode(t, w, map[string]any{"interval": 120, "peers": ""})
	})
	port := s.Listener.Addr().(*net.TCPAddr).Port
	base := "http://localhost:" + strconv.Itoa(port) + "/announce"
	c4, _ := New(base, Options{Timeout: 2 * time.Second, Family: IPv4})
	defer c4.Close()
	if _, err := c4.Announce(context.Background(), testAnnounce()); err != nil {
		t.Fatalf("IPv4 to localhost: %v", err)
	}
	c6, _ := New("http://127.0.0.1:"+strconv.Itoa(port)+"/announce", Options{Timeout: 2 * time.Second, Family: IPv6})
	defer c6.Close()
	if _, err := c6.Announce(context.Background(), testAnnounce()); err == nil {
		t.Fatal("IPv6 to an IPv4 address succeeded")
	}
}

func TestDeriveURLs(t *testing.T) {
	tests := []struct{ in, announce, scrape string }{
		{"http://h:7070", "http://h:7070/announce", "http://h:7070/scrape"},
		{"http://h:7070/", "http://h:7070/announce", "http://h:7070/scrape"},
		{"http://h/announce", "http://h/announce", "http://h/scrape"},
		{"http://h/scrape", "http://h/announce", "http://h/scrape"},
		{"http://h/announce/" + testKey, "http://h/announce/" + testKey, "http://h/scrape/" + testKey},
		{"https://h/x/announce?passkey=1", "https://h/x/announce?passkey=1", "https://h/x/scrape?passkey=1"},
		{"http://h/tracker.php", "http://h/tracker.php", ""},
		{"http://h/announce.php?passkey=1", "http://h/announce.php?passkey=1", "http://h/scrape.php?passkey=1"},
		{"http://h/x/announce.php", "http://h/x/announce.php", "http://h/x/scrape.php"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			u, _ := url.Parse(tc.in)
			a, s := deriveURLs(u)
			if a.String() != tc.announce {
				t.Errorf("announce %s, want %s", a, tc.announce)
			}
			got := ""
			if s != nil {
				got = s.String()
			}
			if got != tc.scrape {
				t.Errorf("scrape %q, want %q", got, tc.scrape)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	u, _ := url.Parse("http://user:pw@h:7070/announce/" + testKey + "?passkey=secret")
	got := redact(u)
	if strings.Contains(got, testKey) || strings.Contains(got, "secret") || strings.Contains(got, "pw") {
		t.Fatalf("redact left a secret: %s", got)
	}
	if got != "http://h:7070/announce/REDACTED" {
		t.Errorf("redact = %s", got)
	}
}

func TestNewRejects(t *testing.T) {
	for _, in := range []string{"udp://h", "ftp://h/announce", "127.0.0.1:6969", "http://", "::"} {
		t.Run(in, func(t *testing.T) {
			if _, err := New(in, Options{}); err == nil {
				t.Fatalf("New(%q) accepted", in)
			}
		})
	}
}

// FuzzAppendEscaped: the standard library decodes what we encode back to the
// same bytes, and the encoding is plain ASCII without separators.
func FuzzAppendEscaped(f *testing.F) {
	f.Add([]byte("\x00\xff abc&=%+"))
	f.Add([]byte(testKey))
	f.Fuzz(func(t *testing.T, b []byte) {
		enc := string(appendEscaped(nil, b))
		if strings.ContainsAny(enc, "&=+ #?") {
			t.Fatalf("separator in %q", enc)
		}
		dec, err := url.QueryUnescape(enc)
		if err != nil || dec != string(b) {
			t.Fatalf("%q -> %q -> %q, %v", b, enc, dec, err)
		}
	})
}

// FuzzDecodeHTTPAnnounce: any body gets a result or an error, never a panic.
func FuzzDecodeHTTPAnnounce(f *testing.F) {
	f.Add([]byte("d8:completei1e10:incompletei0e8:intervali120e12:min intervali120e5:peers6:\x7f\x00\x00\x01\x1a\xe16:peers60:e"))
	f.Add([]byte("d14:failure reason6:denied e"))
	f.Add([]byte("d8:intervali1e5:peersld2:ip3:::14:porti1eeee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := decodeHTTPAnnounce(b)
		if err == nil && res.Peers == nil {
			t.Fatal("nil peers on success")
		}
	})
}

// FuzzDecodeHTTPScrape: any body gets counts for every hash or an error.
func FuzzDecodeHTTPScrape(f *testing.F) {
	h := testHash(1)
	f.Add([]byte("d5:filesd20:" + string(h[:]) + "d8:completei1e10:downloadedi2e10:incompletei3eeee"))
	f.Add([]byte("d14:failure reason2:noe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := decodeHTTPScrape(b, []bittorrent.InfoHash{h})
		if err == nil && (len(files) != 1 || files[0].InfoHash != h) {
			t.Fatalf("files %+v", files)
		}
	})
}
