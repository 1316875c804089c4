package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// holdSlow opens n connections from local to addr and sends each the start
// of a request and nothing more, as a slowloris does.
func holdSlow(t *testing.T, local, addr string, n int) []net.Conn {
	t.Helper()
	la, _ := net.ResolveTCPAddr("tcp", local)
	d := net.Dialer{LocalAddr: la, Timeout: 2 * time.Second}
	var cs []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(cs), err)
		}
		_, _ = c.Write([]byte("GET /announce?info_hash="))
		cs = append(cs, c)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs
}

// getFrom does a GET from the local address and returns its status and how
// long the answer took.
func getFrom(t *testing.T, local, u string) (int, time.Duration, error) {
	t.Helper()
	la, _ := net.ResolveTCPAddr("tcp", local)
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: la}).DialContext,
		DisableKeepAlives: true,
	}}
	began := time.Now()
	resp, err := c.Get(u)
	if err != nil {
		return 0, time.Since(began), err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, time.Since(began), nil
}

// TestSlowloris: one address holding connections open to the HTTP tracker
// and the API gets only its share (max_connections_per_ip); the rest of its
// connections are closed at once, and another address is answered within
// 100 ms meanwhile.
func TestSlowloris(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(ephemeralConfig(dir, ""), "[[http_trackers]]\nbind_address = \"127.0.0.1:0\"",
		"[[http_trackers]]\nbind_address = \"127.0.0.1:0\"\nmax_connections_per_ip = 20", 1)
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + cfg})
	httpAddr := strings.TrimPrefix(p.addr("http"), "http://")
	apiAddr := strings.TrimPrefix(p.addr("api"), "http://")
	holdSlow(t, "127.0.0.1:0", httpAddr, 100)
	holdSlow(t, "127.0.0.1:0", apiAddr, 100)

	announce := p.addr("http") + "/announce?info_hash=" + url.QueryEscape(strings.Repeat("\x42", 20)) +
		"&peer_id=-SL0001-000000000001&port=6881&left=1"
	for _, tc := range []struct{ name, url string }{
		{"HTTP tracker", announce},
		{"API", p.addr("api") + "/api/v1/stats?token=" + e2eAPIToken},
	} {
		code, took, err := getFrom(t, "127.0.0.2:0", tc.url)
		if err != nil || code != 200 || took > 100*time.Millisecond {
			t.Errorf("%s from another address during the slowloris: %d in %v (%v), want 200 within 100 ms", tc.name, code, took, err)
		}
		if _, _, err := getFrom(t, "127.0.0.1:0", tc.url); err == nil {
			t.Errorf("%s: the slowloris's address got another connection served past its cap", tc.name)
		}
	}
	// From another address: 127.0.0.1 has used its share of the API.
	la, _ := net.ResolveTCPAddr("tcp", "127.0.0.2:0")
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: la}).DialContext}}
	resp, err := c.Get(p.addr("api") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	// 100 held against caps of 20 (the tracker's, as configured) and 64
	// (the API's).
	for want, least := range map[string]float64{
		`starling_connections_refused_total{cap="per_ip",listener="http_trackers[0]"}`: 80,
		`starling_connections_refused_total{cap="per_ip",listener="http_api"}`:         36,
	} {
		line := grepLines(body, want)
		var n float64
		if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, want)), &n); err != nil || n < least {
			t.Errorf("metric %s = %q, want at least %v refused", want, line, least)
		}
	}
}

// TestSlowlorisHealthAndWebSocket: the same against the health check and
// a WebSocket tracker. One address holds 300 half-sent requests on each;
// past its share its connections are closed, and another address gets a
// health report and a WebSocket handshake within 100 ms meanwhile.
func TestSlowlorisHealthAndWebSocket(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + wsConfig(dir, "")})
	healthAddr := strings.TrimPrefix(p.addr("health"), "http://")
	ws := wsURL(t, p)
	holdSlow(t, "127.0.0.1:0", healthAddr, 300)
	holdSlow(t, "127.0.0.1:0", strings.TrimPrefix(ws, "ws://"), 300)

	code, took, err := getFrom(t, "127.0.0.2:0", p.addr("health")+"/health_check")
	if err != nil || code != 200 || took > 100*time.Millisecond {
		t.Errorf("health check from another address during the slowloris: %d in %v (%v), want 200 within 100 ms", code, took, err)
	}
	la, _ := net.ResolveTCPAddr("tcp", "127.0.0.2:0")
	d := websocket.Dialer{NetDial: (&net.Dialer{LocalAddr: la, Timeout: 3 * time.Second}).Dial, HandshakeTimeout: 3 * time.Second}
	began := time.Now()
	c, _, err := d.Dial(ws, nil)
	if took := time.Since(began); err != nil || took > 100*time.Millisecond {
		t.Errorf("WebSocket handshake from another address during the slowloris: %v in %v, want one within 100 ms", err, took)
	}
	if c != nil {
		c.Close()
	}
	if _, _, err := getFrom(t, "127.0.0.1:0", p.addr("health")+"/health_check"); err == nil {
		t.Errorf("health check: the slowloris's address got another connection served past its cap")
	}
}
