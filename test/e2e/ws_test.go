package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
	"github.com/gorilla/websocket"
)

var wsListenLine = regexp.MustCompile(`WebSocket tracker listening on (wss?://[^\s"]+)`)

// wsConfig is ephemeralConfig with a WebSocket tracker on 127.0.0.1, port 0.
func wsConfig(dir, core string) string {
	return ephemeralConfig(dir, core) + "\n[[websocket_trackers]]\nbind_address = \"127.0.0.1:0\"\n"
}

func wsURL(t *testing.T, p *process) string {
	t.Helper()
	m := wsListenLine.FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("no WebSocket tracker in the log:\n%s", p.Log())
	}
	return m[1]
}

// TestWebSocketTrackerJS runs webtorrent's bittorrent-tracker Client (Node,
// with real WebRTC offers and answers from node-datachannel) against the
// binary's WebSocket tracker: two Clients on their own connections, one
// handed the other's offer and its answer going back, scrape counts before
// and after a connection closes, and a stop.
func TestWebSocketTrackerJS(t *testing.T) {
	js := needJS(t)
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + wsConfig(dir, "")})
	u := wsURL(t, p)
	var r struct {
		First, Second                   []int
		AGotOfferFromB, BGotAnswerFromA bool
		Both, AfterClose, Stopped       []int
	}
	node(t, js, 60*time.Second, &r, "ws-tracker-client.mjs", "pair", u)
	want := `{[0 1] [0 2] true true [0 2 0] [0 1 0] [0 0]}`
	if got := fmt.Sprint(r); got != want {
		t.Errorf("bittorrent-tracker Client over %s: %s, want %s", u, got, want)
	}
	if t.Failed() {
		t.Logf("starling's log:\n%s", p.Log())
	}
}

// TestWebSocketTrackerOneSwarm checks that the three transports share one
// swarm's counts, while WebSocket peers are never handed to UDP or HTTP
// peers (they have no address to connect to), and that the API, the
// metrics and a graceful stop cover the WebSocket tracker.
func TestWebSocketTrackerOneSwarm(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + wsConfig(dir, "")})
	u := wsURL(t, p)
	var ih infohash.T
	copy(ih[:], "\x00\"\\\x7f\x80\xffws-e2e-swarm")

	ws, _, err := websocket.DefaultDialer.Dial(u+"/announce", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	latin1 := func(b []byte) string {
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r)
	}
	msg, _ := json.Marshal(map[string]any{
		"action": "announce", "info_hash": latin1(ih[:]), "peer_id": latin1([]byte("-WW0100-e2e-browser0")),
		"left": 0, "event": "started", "numwant": 5,
	})
	if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var answer map[string]any
	if err := ws.ReadJSON(&answer); err != nil {
		t.Fatal(err)
	}
	if answer["action"] != "announce" || answer["info_hash"] != latin1(ih[:]) || answer["complete"] != 1.0 {
		t.Fatalf("announce answer %v", answer)
	}

	// A UDP leecher and an HTTP leecher see the WebSocket seeder counted,
	// but are handed only each other.
	udp := announceWith(t, p.addr("udp"), ih, 1, 7001, 100, tracker.Started)
	if udp.Seeders != 1 || udp.Leechers != 1 || len(udp.Peers) != 0 {
		t.Fatalf("UDP answer: %d seeders, %d leechers, peers %v", udp.Seeders, udp.Leechers, udp.Peers)
	}
	http := announceWith(t, p.addr("http")+"/announce", ih, 2, 7002, 100, tracker.Started)
	if http.Seeders != 1 || http.Leechers != 2 || len(http.Peers) != 1 || http.Peers[0].Port != 7001 {
		t.Fatalf("HTTP answer: %d seeders, %d leechers, peers %v", http.Seeders, http.Leechers, http.Peers)
	}

	api := p.addr("api")
	status, body := apiGet(t, api, "/api/v1/stats?token="+e2eToken)
	var stats struct{ Torrents, Seeders, Leechers int }
	if err := json.Unmarshal([]byte(body), &stats); status != 200 || err != nil || stats.Torrents != 1 || stats.Seeders != 1 || stats.Leechers != 2 {
		t.Fatalf("stats %d %s", status, body)
	}
	status, body = apiGet(t, api, "/api/v1/torrents?token="+e2eToken)
	if status != 200 || !strings.Contains(body, `"seeders":1`) || !strings.Contains(body, `"leechers":2`) {
		t.Fatalf("torrents %d %s", status, body)
	}
	_, metrics := apiGet(t, api, "/metrics?token="+e2eToken)
	if !strings.Contains(metrics, `starling_requests_total{family="ipv4",kind="announce",protocol="websocket"} 1`) {
		t.Errorf("/metrics lacks the WebSocket announce:\n%s", metrics)
	}

	// The health check opens a WebSocket and scrapes through it.
	_, health := apiGet(t, p.addr("health"), "/health_check")
	if !strings.Contains(health, `"status":"Ok"`) || !strings.Contains(health, "checking websocket tracker at: "+u) {
		t.Errorf("health check: %s", health)
	}

	// The WebSocket peer leaves with its connection.
	ws.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = apiGet(t, api, "/api/v1/stats?token="+e2eToken)
		if json.Unmarshal([]byte(body), &stats) == nil && stats.Seeders == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the WebSocket seeder is still counted: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A graceful stop closes WebSocket clients with 1001 (going away).
	ws2, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	done := make(chan error, 1)
	go func() {
		_ = ws2.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _, err := ws2.ReadMessage()
		done <- err
	}()
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, p.Log())
	}
	if err := <-done; !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("client at shutdown: %v", err)
	}
	if strings.Contains(p.Log(), "level=ERROR") {
		t.Errorf("errors in the log:\n%s", p.Log())
	}
}

// TestWebSocketTrackerTLS serves wss:// and, on SIGHUP, a certificate renewed
// at the same paths.
func TestWebSocketTrackerTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "ws.crt"), filepath.Join(dir, "ws.key")
	writeCertPair(t, cert, key, 3001)
	path := filepath.Join(dir, "tracker.toml")
	cfg := ephemeralConfig(dir, "") + fmt.Sprintf("\n[[websocket_trackers]]\nbind_address = \"127.0.0.1:0\"\ntls_config = { ssl_cert_path = %q, ssl_key_path = %q }\n", cert, key)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, dir, []string{"STARLING_CONFIG_TOML_PATH=" + path})
	u := wsURL(t, p)
	if !strings.HasPrefix(u, "wss://") {
		t.Fatalf("listening on %s", u)
	}
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.Close()
	host := strings.TrimPrefix(u, "wss://")
	if got := servedSerial(t, host); got != 3001 {
		t.Fatalf("certificate %d", got)
	}
	writeCertPair(t, cert, key, 3002)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(p.Log(), "configuration reloaded") })
	if got := servedSerial(t, host); got != 3002 {
		t.Fatalf("certificate %d after the reload, want the renewed 3002", got)
	}
}

// TestWebSocketTrackerUpgrade: an upgrade hands the WebSocket listener to
// the new process; the old one closes its WebSocket clients with 1001
// (going away), and they reconnect to the same URL, now the new process's.
func TestWebSocketTrackerUpgrade(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "starling.pid")
	cfg := snapshotConfig(dir, "") + "\n[[websocket_trackers]]\nbind_address = \"127.0.0.1:0\"\n"
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + cfg}, "serve", "--pid-file", pidFile)
	u := wsURL(t, p)
	var ih infohash.T
	copy(ih[:], "ws-upgrade-e2e-hash!")
	announce := func(ws *websocket.Conn, peer string) map[string]any {
		t.Helper()
		latin1 := func(b []byte) string {
			r := make([]rune, len(b))
			for i, c := range b {
				r[i] = rune(c)
			}
			return string(r)
		}
		msg, _ := json.Marshal(map[string]any{"action": "announce", "info_hash": latin1(ih[:]), "peer_id": peer, "left": 0})
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		var answer map[string]any
		if err := ws.ReadJSON(&answer); err != nil {
			t.Fatal(err)
		}
		return answer
	}
	before, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if a := announce(before, "-WW0100-before-upgr!"); a["complete"] != 1.0 {
		t.Fatalf("announce before the upgrade: %v", a)
	}
	oldPID, err := readPIDFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, dir, nil, "upgrade", "--pid-file", pidFile, "--timeout", "60s"); code != 0 {
		t.Fatalf("upgrade (exit %d): %s\n%s", code, out, p.Log())
	}
	_ = before.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, _, err := before.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("the old process's client: %v", err)
	}
	after, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("reconnect to %s after the upgrade: %v\n%s", u, err, p.Log())
	}
	defer after.Close()
	// The old process's WebSocket peers went with their connections.
	if a := announce(after, "-WW0100-after-upgra!"); a["complete"] != 1.0 || a["incomplete"] != 0.0 {
		t.Fatalf("announce after the upgrade: %v", a)
	}
	newPID, err := readPIDFile(pidFile)
	if err != nil || newPID == oldPID {
		t.Fatalf("pid file after the upgrade: %d %v", newPID, err)
	}
	_ = syscall.Kill(newPID, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the new process did not stop:\n%s", p.Log())
	}
}
