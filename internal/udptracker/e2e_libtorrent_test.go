package udptracker

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/metrics"
)

// libtorrentPython finds a Python that imports libtorrent: python3 on PATH,
// else the system's /usr/bin/python3, where Debian's python3-libtorrent
// installs it (a PATH may put another Python first, pyenv's say). Without
// one the test skips, except in CI, where it fails.
func libtorrentPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import libtorrent").Run() == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3 with libtorrent is required in CI (Debian package python3-libtorrent)")
	}
	t.Skip("libtorrent for python3 not installed (apt-get install python3-libtorrent)")
	return ""
}

// ltAnswer is what testdata/libtorrent_announce.py prints: libtorrent's
// first tracker alert.
type ltAnswer struct {
	Alert         string `json:"alert"`
	NumPeers      int    `json:"num_peers"`
	FailureReason string `json:"failure_reason"`
	Error         string `json:"error"`
	Version       string `json:"version"`
}

// TestLibtorrentPrivateUDP: libtorrent, a client that sends its tracker
// URL's path as BEP 41 URL data, announces to a private tracker at
// udp://127.0.0.1:P/announce/KEY and gets the peer seeded over HTTP with the
// same key; without the key, or with a wrong or expired one, it is refused.
// That the keyed announce is answered at all shows libtorrent sent the URL
// data: a private tracker refuses an announce without it.
//
// libtorrent 2.0.8 shows every UDP tracker error with an empty message: it
// reads the text from the start of the packet, whose first byte (of the
// action, 3) is 0, not after the 8-byte header. So this test sees that the
// announce was refused; TestPrivateKeysOverUDPAndHTTP checks the texts sent.
// A libtorrent that shows the text must show HTTP's.
func TestLibtorrentPrivateUDP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a real client; runs without -short")
	}
	py := libtorrentPython(t)
	p := startPrivate(t)
	tests := []struct {
		name, path, want string // want: failure reason, "" = answered
	}{
		{"with the key", "/announce/" + validKey, ""},
		{"without the key", "/announce", "Authentication error: Missing authentication key param for private tracker."},
		{"without a path", "", "Authentication error: Missing authentication key param for private tracker."},
		{"wrong key", "/announce/" + unknownKey, "Authentication error: Failed to read key: " + unknownKey},
		{"expired key", "/announce/" + expiredKey, "Authentication error: Key has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			url := p.udp + tt.path
			out, err := exec.CommandContext(ctx, py, "testdata/libtorrent_announce.py", url, hashN(1).String(), t.TempDir(), "30").Output()
			var a ltAnswer
			if jerr := json.Unmarshal(out, &a); jerr != nil {
				t.Fatalf("libtorrent_announce.py %s: %v, output %q (%v)", url, err, out, jerr)
			}
			t.Logf("libtorrent %s, %s: %+v", a.Version, url, a)
			switch {
			case tt.want == "" && (a.Alert != "tracker_reply" || a.NumPeers < 1):
				t.Fatalf("want an answer with the seeded peer, got %+v", a)
			case tt.want != "" && (a.Alert != "tracker_error" || a.Error != "tracker sent a failure message"):
				t.Fatalf("want the tracker's refusal (%q), got %+v", tt.want, a)
			case tt.want != "" && a.FailureReason != "" && a.FailureReason != tt.want:
				t.Fatalf("libtorrent shows the refusal as %q, want %q", a.FailureReason, tt.want)
			}
		})
	}
	if n := p.counters.Value(metrics.UDPErrors); n < 4 {
		t.Errorf("udp errors %d, want at least the 4 refused announces", n)
	}
	// The keyed announce put libtorrent in the swarm beside the seeded peer;
	// the refused ones did not.
	tor, ok, err := p.store.Torrent(context.Background(), hashN(1))
	if err != nil || !ok || tor.Seeders+tor.Leechers != 2 {
		t.Fatalf("swarm after the announces: %+v ok %v err %v, want the seeded peer and libtorrent", tor, ok, err)
	}
}
