package httptracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	anabencode "github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/tracker"
)

// announceSignal wraps the rules and reports every successful announce, so
// the test knows when the seeder is registered without sleeping.
type announceSignal struct {
	Tracker
	seen chan bittorrent.AnnounceRequest
}

func (a announceSignal) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	err := a.Tracker.Announce(ctx, req, resp)
	if err == nil {
		select {
		case a.seen <- *req:
		default:
		}
	}
	return err
}

// TestAria2 has two aria2 processes find each other only through the HTTP
// tracker (DHT, LPD and PEX off) and move a file from one to the other,
// checked byte for byte; public and private (key in the announce path).
func TestAria2(t *testing.T) {
	aria2, err := exec.LookPath("aria2c")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("aria2c is not installed; CI must install the Debian package aria2")
		}
		t.Skip("aria2c not installed (apt-get install -y aria2)")
	}
	for _, private := range []bool{false, true} {
		name := "public"
		if private {
			name = "private"
		}
		t.Run(name, func(t *testing.T) { runAria2(t, aria2, private) })
	}
}

func runAria2(t *testing.T, aria2 string, private bool) {
	cfg := tracker.DefaultConfig()
	cfg.Private = private
	cfg.Interval, cfg.MinInterval = 2, 1
	r := newRules(t, cfg)
	key := ""
	if private {
		key = "aria2e2eKey0123456789abcdefGHIJK"
		k, err := bittorrent.ParseKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.lists.AddKey(context.Background(), access.KeyRecord{Key: k, Permanent: true}); err != nil {
			t.Fatal(err)
		}
	}
	sig := announceSignal{Tracker: r, seen: make(chan bittorrent.AnnounceRequest, 256)}
	srv := startServer(t, "tcp4", Config{}, sig, r.counters)
	announce := srv.URL() + "/announce"
	if private {
		announce += "/" + key
	}

	dir := t.TempDir()
	seedDir, leechDir := filepath.Join(dir, "seed"), filepath.Join(dir, "leech")
	for _, d := range []string{seedDir, leechDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	content := make([]byte, 3<<20+12345)
	rand.Read(content)
	const fileName = "payload.bin"
	if err := os.WriteFile(filepath.Join(seedDir, fileName), content, 0o644); err != nil {
		t.Fatal(err)
	}
	torrentPath := filepath.Join(dir, "payload.torrent")
	infoHash := writeTorrent(t, torrentPath, announce, fileName, content, private)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	common := []string{
		"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--disable-ipv6=true", "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
		"--auto-file-renaming=false", "--allow-overwrite=true", "--bt-tracker-connect-timeout=10",
		"--bt-tracker-timeout=10", "--follow-torrent=false",
	}
	seedPort, leechPort := freePort(t), freePort(t)
	seeder := exec.CommandContext(ctx, aria2, append(common,
		"--dir="+seedDir, "--listen-port="+strconv.Itoa(seedPort), "--check-integrity=true",
		"--seed-ratio=0.0", torrentPath)...)
	var seedOut bytes.Buffer
	seeder.Stdout, seeder.Stderr = &seedOut, &seedOut
	if err := seeder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		seeder.Process.Kill()
		seeder.Wait()
		if t.Failed() {
			t.Logf("seeder output:\n%s", seedOut.String())
		}
	}()
	// Wait until the seeder is registered as a seeder of this torrent.
	for registered := false; !registered; {
		select {
		case req := <-sig.seen:
			registered = req.InfoHash == infoHash && req.Left == 0 && int(req.Addr.Port()) == seedPort
		case <-ctx.Done():
			t.Fatalf("the seeder never announced itself as a seeder; output:\n%s", seedOut.String())
		}
	}

	// freePort's port can be taken by another test's process before
	// aria2 binds it: then the leecher gets another one.
	var out []byte
	var err error
	for attempt := 0; ; attempt++ {
		leecher := exec.CommandContext(ctx, aria2, append(common,
			"--dir="+leechDir, "--listen-port="+strconv.Itoa(leechPort), "--seed-time=0",
			"--bt-stop-timeout=60", torrentPath)...)
		out, err = leecher.CombinedOutput()
		if err != nil && attempt < 3 && bytes.Contains(out, []byte("Failed to bind")) {
			leechPort = freePort(t)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("leecher: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(leechDir, fileName))
	if err != nil {
		t.Fatalf("downloaded file: %v\n%s", err, out)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("downloaded %d bytes that differ from the %d seeded", len(got), len(content))
	}
	// The leecher found the seeder through its own announce (with the key
	// in private mode): nothing else could have told it.
	leecherSeen := false
	for len(sig.seen) > 0 {
		req := <-sig.seen
		if int(req.Addr.Port()) == leechPort && req.InfoHash == infoHash && req.HasKey == private {
			leecherSeen = true
		}
	}
	if !leecherSeen {
		t.Fatal("no announce of the leecher reached the tracker")
	}
}

// writeTorrent bencodes a single-file .torrent with anacrolix's encoder and
// returns its info hash.
func writeTorrent(t *testing.T, path, announce, name string, content []byte, private bool) bittorrent.InfoHash {
	t.Helper()
	const pieceLength = 256 << 10
	var pieces []byte
	for off := 0; off < len(content); off += pieceLength {
		sum := sha1.Sum(content[off:min(off+pieceLength, len(content))])
		pieces = append(pieces, sum[:]...)
	}
	info := map[string]any{
		"name":         name,
		"length":       len(content),
		"piece length": pieceLength,
		"pieces":       string(pieces),
	}
	if private {
		info["private"] = 1
	}
	infoBytes, err := anabencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := anabencode.Marshal(map[string]any{"announce": announce, "info": anabencode.Bytes(infoBytes)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, mi, 0o644); err != nil {
		t.Fatal(err)
	}
	return bittorrent.InfoHash(sha1.Sum(infoBytes))
}

// freePort returns a TCP port that was free a moment ago, for aria2's
// listening socket (aria2 cannot report a port it picked itself).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return p
}
