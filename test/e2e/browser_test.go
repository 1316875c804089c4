package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestTwoBrowsers shares a file between two real browsers through Starling's
// WebSocket tracker alone: two headless Chromium processes (Debian's
// chromium) load a page with webtorrent's browser bundle (from npm, as
// test/e2e/js installs it); one seeds bytes made in the page, the other
// downloads them by a magnet link whose only tracker is Starling's ws://
// URL, over WebRTC, and the SHA-256 of the bytes match. Chromium is driven
// over its DevTools protocol with the WebSocket library the tracker uses.
// --allow-loopback-in-peer-connection keeps WebRTC on loopback, and
// WebRtcHideLocalIpsWithMdns is turned off so that host candidates are
// addresses, not mDNS names nothing here resolves.
func TestTwoBrowsers(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is required in CI")
		}
		t.Skip("chromium not installed")
	}
	js := needJS(t)
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + wsConfig(dir, "")})
	tracker := wsURL(t, p)

	bundle, err := os.ReadFile(filepath.Join(js, "node_modules", "webtorrent", "dist", "webtorrent.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/webtorrent.min.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write(bundle)
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			// No tracker but Starling: webtorrent would add its public
			// defaults (WEBTORRENT_ANNOUNCE) otherwise.
			_, _ = io.WriteString(w, `<!doctype html><title>starling</title><script type="module">
globalThis.WEBTORRENT_ANNOUNCE = []
import WebTorrent from '/webtorrent.min.js'
window.WebTorrent = WebTorrent
</script>`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer page.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seeder := openBrowser(ctx, t, chromium, page.URL+"/")
	leecher := openBrowser(ctx, t, chromium, page.URL+"/")

	const size = 1 << 20
	common := `
const hex = b => Array.from(new Uint8Array(b), x => x.toString(16).padStart(2, '0')).join('')
while (!window.WebTorrent) await new Promise(r => setTimeout(r, 20))
const client = new WebTorrent({ tracker: { rtcConfig: { iceServers: [] } } })
const failed = new Promise((_, reject) => client.on('error', reject))
`
	var seeded struct{ InfoHash, Magnet, Hash string }
	seeder.eval(ctx, t, `(async () => {`+common+`
const bytes = new Uint8Array(`+fmt.Sprint(size)+`)
for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536))
const hash = hex(await crypto.subtle.digest('SHA-256', bytes))
const file = new File([bytes], 'made-in-the-page.bin')
const torrent = await Promise.race([failed, new Promise(resolve =>
  client.seed(file, { announce: [`+jsString(tracker)+`], announceList: [[`+jsString(tracker)+`]] }, resolve))])
window.client = client
return JSON.stringify({ infoHash: torrent.infoHash, magnet: torrent.magnetURI, hash })
})()`, &seeded)
	if len(seeded.InfoHash) != 40 || len(seeded.Hash) != 64 {
		t.Fatalf("seeder: %+v", seeded)
	}

	magnet := "magnet:?xt=urn:btih:" + seeded.InfoHash + "&tr=" + url.QueryEscape(tracker)
	var got struct {
		Hash  string
		Bytes int
		Peers int
	}
	leecher.eval(ctx, t, `(async () => {`+common+`
const torrent = client.add(`+jsString(magnet)+`)
await Promise.race([failed, new Promise(resolve => torrent.on('done', resolve))])
const buf = await torrent.files[0].arrayBuffer()
return JSON.stringify({ hash: hex(await crypto.subtle.digest('SHA-256', buf)), bytes: buf.byteLength, peers: torrent.numPeers })
})()`, &got)
	if got.Hash != seeded.Hash || got.Bytes != size {
		t.Fatalf("downloaded %d bytes with sha256 %s, want %d with %s", got.Bytes, got.Hash, size, seeded.Hash)
	}
	t.Logf("%d bytes from one browser to the other through %s (magnet %s), sha256 %s", got.Bytes, tracker, magnet, got.Hash)
	if t.Failed() {
		t.Logf("starling's log:\n%s", p.Log())
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// browser is one headless Chromium with one page, driven over DevTools.
type browser struct {
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
}

var devToolsLine = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

func openBrowser(ctx context.Context, t *testing.T, chromium, pageURL string) *browser {
	t.Helper()
	cmd := exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
		pageURL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	var log strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := devToolsLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium did not start:\n%s", log.String())
	}
	// The page's own DevTools socket, from the browser's target list.
	u, _ := url.Parse(browserWS)
	var pageWS string
	for end := time.Now().Add(20 * time.Second); pageWS == "" && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + u.Host + "/json/list")
		if err != nil {
			continue
		}
		var targets []struct{ Type, URL, WebSocketDebuggerURL string }
		_ = json.NewDecoder(resp.Body).Decode(&targets)
		resp.Body.Close()
		for _, tg := range targets {
			if tg.Type == "page" && tg.URL == pageURL {
				pageWS = tg.WebSocketDebuggerURL
			}
		}
	}
	if pageWS == "" {
		t.Fatalf("no page %s in chromium", pageURL)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, pageWS, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &browser{ws: ws}
}

// eval runs an expression that yields a promise of a JSON string in the
// page, and decodes the string into out. It first waits for the page to
// have loaded the bundle (an evaluation during the load is lost with the
// page's first context).
func (b *browser) eval(ctx context.Context, t *testing.T, expr string, out any) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var ready bool
		err := b.evalErr(ctx, `(async () => JSON.stringify(document.readyState === 'complete' && !!window.WebTorrent))()`, &ready)
		if err == nil && ready {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the page did not load webtorrent: %v", err)
		}
	}
	if err := b.evalErr(ctx, expr, out); err != nil {
		t.Fatal(err)
	}
}

func (b *browser) evalErr(ctx context.Context, expr string, out any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	req := map[string]any{"id": id, "method": "Runtime.evaluate", "params": map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true}}
	if err := b.ws.WriteJSON(req); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = b.ws.SetReadDeadline(dl)
	}
	for {
		var resp struct {
			ID     int
			Result struct {
				Result           struct{ Value any }
				ExceptionDetails *struct {
					Text      string
					Exception struct{ Description string }
				}
			}
			Error *struct{ Message string }
		}
		if err := b.ws.ReadJSON(&resp); err != nil {
			return fmt.Errorf("devtools: %w", err)
		}
		if resp.ID != id {
			continue // an event
		}
		if resp.Error != nil {
			return fmt.Errorf("devtools: %s", resp.Error.Message)
		}
		if e := resp.Result.ExceptionDetails; e != nil {
			return fmt.Errorf("page: %s %s", e.Text, e.Exception.Description)
		}
		s, ok := resp.Result.Result.Value.(string)
		if !ok {
			return fmt.Errorf("page returned %v", resp.Result.Result.Value)
		}
		if err := json.Unmarshal([]byte(s), out); err != nil {
			return fmt.Errorf("page returned %q: %w", s, err)
		}
		return nil
	}
}
