package checker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// fakeUDPTracker answers BEP 15 connect, announce and scrape with fixed
// counts, and records the announce events it saw.
func fakeUDPTracker(t *testing.T, silent bool) (addr string, events func() []uint32) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []uint32
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if silent || n < 16 {
				continue
			}
			req := buf[:n]
			out := binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(req[8:]))
			out = append(out, req[12:16]...)
			switch binary.BigEndian.Uint32(req[8:]) {
			case 0:
				out = binary.BigEndian.AppendUint64(out, 42)
			case 1:
				mu.Lock()
				seen = append(seen, binary.BigEndian.Uint32(req[80:]))
				mu.Unlock()
				out = append(out, 0, 0, 0, 120, 0, 0, 0, 0, 0, 0, 0, 1)
			case 2:
				out = append(out, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0)
			}
			_, _ = conn.WriteToUDPAddrPort(out, from)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return conn.LocalAddr().String(), func() []uint32 { mu.Lock(); defer mu.Unlock(); return append([]uint32(nil), seen...) }
}

func fakeHTTPTracker(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v any
		switch {
		case strings.HasPrefix(r.URL.Path, "/announce"):
			v = map[string]any{"interval": 120, "complete": 1, "incomplete": 0, "peers": ""}
		case strings.HasPrefix(r.URL.Path, "/scrape"):
			v = map[string]any{"files": map[string]any{r.URL.Query().Get("info_hash"): map[string]any{"complete": 1, "downloaded": 0, "incomplete": 0}}}
		case r.URL.Path == "/health_check":
			_, _ = w.Write([]byte(`{"status":"Ok","message":"","details":[]}`))
			return
		case r.URL.Path == "/sick":
			_, _ = w.Write([]byte(`{"status":"Error","message":"health check failed","details":[{"binding":"0.0.0.0:6969","info":"checking udp","result":{"Err":"timeout"}}]}`))
			return
		default:
			http.NotFound(w, r)
			return
		}
		b, _ := bencode.Marshal(v)
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func closedPort(t *testing.T, network string) string {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
}

func TestRun(t *testing.T) {
	udpAddr, events := fakeUDPTracker(t, false)
	silentAddr, _ := fakeUDPTracker(t, true)
	h := fakeHTTPTracker(t)
	cfg := Config{
		UDPTrackers:  []string{udpAddr, "udp://" + udpAddr, "udp://" + closedPort(t, "udp"), "udp://" + silentAddr, h.URL},
		HTTPTrackers: []string{h.URL, h.URL + "/announce", "http://" + closedPort(t, "tcp") + "/announce", "udp://" + udpAddr},
		HealthChecks: []string{h.URL + "/health_check", h.URL + "/sick", h.URL + "/nothing", "http://" + closedPort(t, "tcp")},
	}
	want := []struct {
		kind, code, text string
	}{
		{KindUDP, CodeOK, "answered in"},
		{KindUDP, CodeOK, "answered in"},
		{KindUDP, CodeError, "nothing listens"},
		{KindUDP, CodeError, "no answer"},
		{KindUDP, CodeError, "not a udp:// URL"},
		{KindHTTP, CodeOK, "answered in"},
		{KindHTTP, CodeOK, "answered in"},
		{KindHTTP, CodeError, "connection refused"},
		{KindHTTP, CodeError, "not an http"},
		{KindHealth, CodeOK, "status Ok"},
		{KindHealth, CodeError, "health check failed"},
		{KindHealth, CodeError, "404"},
		{KindHealth, CodeError, "refused"},
	}
	start := time.Now()
	results := Checker{Timeout: 1500 * time.Millisecond}.Run(context.Background(), cfg)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("checks took %v: targets must be checked in parallel", d)
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for i, w := range want {
		r := results[i]
		t.Run(r.Kind+" "+r.URL, func(t *testing.T) {
			if r.Kind != w.kind || r.Status.Code != w.code || !strings.Contains(r.Status.Message, w.text) {
				t.Errorf("got %+v, want kind %s code %s message containing %q", r, w.kind, w.code, w.text)
			}
		})
	}
	if AllOK(results) {
		t.Error("AllOK with failures")
	}
	if !AllOK(results[:2]) {
		t.Error("not AllOK for passing targets")
	}
	// UDP steps: connect, announce, scrape, stop; the peer is removed again.
	var steps []string
	for _, s := range results[0].Steps {
		steps = append(steps, s.Name)
	}
	if strings.Join(steps, ",") != "connect,announce,scrape,stop" {
		t.Errorf("steps %v", steps)
	}
	ev := events()
	slices.Sort(ev)
	if len(ev) != 4 || ev[0] != 2 || ev[1] != 2 || ev[2] != 3 || ev[3] != 3 {
		t.Errorf("announce events %v, want started then stopped for each of two checks", ev)
	}
	// The JSON shape operators script against.
	b, _ := json.Marshal(results[0])
	var decoded map[string]any
	_ = json.Unmarshal(b, &decoded)
	st, _ := decoded["status"].(map[string]any)
	if decoded["url"] != udpAddr || decoded["kind"] != "udp" || st["code"] != "ok" {
		t.Errorf("JSON %s", b)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string
		udp      int
	}{
		{"torrust example", `{"udp_trackers":["127.0.0.1:6969"],"http_trackers":["http://127.0.0.1:7070"],"health_checks":["http://127.0.0.1:1212/api/health_check"]}`, "", 1},
		{"partial", `{"health_checks":["http://x/health_check"]}`, "", 0},
		{"typo", `{"udp_tracker":["127.0.0.1:6969"]}`, `unknown field "udp_tracker"`, 0},
		{"not a list", `{"udp_trackers":"127.0.0.1:6969"}`, "cannot unmarshal", 0},
		{"trailing", `{} {}`, "after the JSON", 0},
		{"empty url", `{"udp_trackers":[" "]}`, "empty URL", 0},
		{"garbage", `udp`, "invalid character", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil || len(c.UDPTrackers) != tc.udp {
					t.Fatalf("%+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestHealthStatus(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"status":"Ok"}`, true},
		{`{"status":"None","message":"","details":[]}`, false},
		{`{"status":"ok"}`, false},
		{`OK`, false},
		{``, false},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			if _, err := healthStatus([]byte(tc.body)); (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzParseConfig: any input is a configuration or an error, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"udp_trackers":["127.0.0.1:6969"],"http_trackers":["http://127.0.0.1:7070"],"health_checks":[]}`))
	f.Add([]byte(`{"udp_trackers":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil {
			for _, u := range append(append(c.UDPTrackers, c.HTTPTrackers...), c.HealthChecks...) {
				if strings.TrimSpace(u) == "" {
					t.Fatal("empty URL accepted")
				}
			}
		}
	})
}

// FuzzHealthStatus: any health answer is judged without a panic.
func FuzzHealthStatus(f *testing.F) {
	f.Add([]byte(`{"status":"Ok","message":"","details":[]}`))
	f.Add([]byte(`{"status":"Error","message":"health check failed","details":[{"binding":"x","result":{"Err":"y"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = healthStatus(b) })
}

// A private tracker's key, in the URL's path, stays out of the results
// (they end up in cron and CI logs), as it stays out of their messages.
func TestHTTPResultHidesKey(t *testing.T) {
	h := fakeHTTPTracker(t)
	const key = "Secret0Key0That0Must0Not0Show00"
	for _, target := range []string{h.URL + "/announce/" + key, "ftp://host/announce/" + key} {
		r := Checker{Timeout: 1500 * time.Millisecond}.CheckHTTP(context.Background(), target)
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), key) {
			t.Errorf("result shows the key: %s", b)
		}
		if !strings.Contains(r.URL, "/announce/REDACTED") {
			t.Errorf("result URL %q", r.URL)
		}
	}
}
