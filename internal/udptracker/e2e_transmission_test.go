package udptracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/tracker"
)

// TestTransmissionDownload: two real BitTorrent clients (transmission-cli)
// find each other only through this UDP tracker (DHT, PEX and LPD off) and
// one downloads a file from the other, checked byte for byte.
func TestTransmissionDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real clients; runs without -short")
	}
	cli, err := exec.LookPath("transmission-cli")
	create, err2 := exec.LookPath("transmission-create")
	if err != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("transmission-cli and transmission-create are required in CI (Debian package transmission-cli)")
		}
		t.Skip("transmission-cli not installed (apt-get install transmission-cli)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Transmission 3.00 treats 127.0.0.0/8 as a martian address and never
	// connects to a peer there, so the tracker hands the (loopback) peers
	// out as this host's own address: external_ip's very purpose. The
	// clients still talk to the tracker on 127.0.0.1, and the peer traffic
	// to the host's own address never leaves the host.
	hostIP := localNonLoopbackIPv4(t)
	cfg := tracker.DefaultConfig()
	cfg.ExternalIP = hostIP
	// Short intervals: should a client announce before it is ready (the
	// seeder before its data is verified), its next announce comes soon.
	cfg.Interval, cfg.MinInterval = 5, 5
	e := startEnv(t, envOpts{trCfg: &cfg})
	dir := t.TempDir()
	seedDir, leechDir := filepath.Join(dir, "seed"), filepath.Join(dir, "leech")
	for _, d := range []string{seedDir, leechDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := make([]byte, 3<<20+12345) // several pieces and a short last one
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	const name = "payload.bin"
	if err := os.WriteFile(filepath.Join(seedDir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	torrent := filepath.Join(dir, "payload.torrent")
	announce := fmt.Sprintf("udp://127.0.0.1:%d/announce", e.addr.Port())
	if out, err := exec.CommandContext(ctx, create, "-t", announce, "-s", "256", "-o", torrent, filepath.Join(seedDir, name)).CombinedOutput(); err != nil {
		t.Fatalf("transmission-create: %v\n%s", err, out)
	}

	start := time.Now()
	// No -v for the seeder: Transmission verifies a new torrent's existing
	// data by itself, and transmission-cli 3.00 with -v can read the
	// torrent's state as stopped between its two checks and exit.
	seeder := startTransmission(ctx, t, cli, filepath.Join(dir, "seed-config"), seedDir, torrent)
	// The leecher starts once the tracker knows the seeder as a seeder
	// (its data verified), so its first announce already returns a peer
	// that has the pieces.
	var h bittorrent.InfoHash
	waitFor(ctx, t, "the seeder's announce as a seeder", seeder, func() bool {
		seeders, ih := swarmSeeders(t, e)
		h = ih
		return seeders > 0
	})
	t.Logf("%v: the tracker has the seeder", time.Since(start).Round(time.Millisecond))
	leecher := startTransmission(ctx, t, cli, filepath.Join(dir, "leech-config"), leechDir, torrent)
	got := filepath.Join(leechDir, name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seeder said:\n%s", tail(seeder.out.String()))
			tor, _, _ := e.store.Torrent(context.Background(), h)
			t.Logf("tracker: announces %d, swarm %+v", e.counters.Value(metrics.UDP4Announces), tor)
		}
	})
	waitFor(ctx, t, "the download", leecher, func() bool {
		b, err := os.ReadFile(got)
		return err == nil && bytes.Equal(b, data)
	})
	seeders, leechers := swarmCounts(t, e, h)
	t.Logf("%v: downloaded", time.Since(start).Round(time.Millisecond))
	t.Logf("downloaded %d bytes through udp://%s; swarm %x has %d seeders, %d leechers", len(data), e.addr, h[:4], seeders, leechers)
}

// swarmSeeders returns the seeders of the only torrent the tracker knows
// and its hash (0 if it knows none yet).
func swarmSeeders(t *testing.T, e *testEnv) (int, bittorrent.InfoHash) {
	t.Helper()
	ts, err := e.store.Torrents(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) == 0 {
		return 0, bittorrent.InfoHash{}
	}
	return int(ts[0].Seeders), ts[0].InfoHash
}

func swarmCounts(t *testing.T, e *testEnv, h bittorrent.InfoHash) (uint32, uint32) {
	t.Helper()
	tor, ok, err := e.store.Torrent(context.Background(), h)
	if err != nil || !ok {
		t.Fatalf("torrent %x: ok %v err %v", h, ok, err)
	}
	return tor.Seeders, tor.Leechers
}

type transmission struct {
	cmd *exec.Cmd
	out *lockedWriter
}

// lockedWriter collects a process's output while the test reads it.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func startTransmission(ctx context.Context, t *testing.T, cli, configDir, downloadDir, torrent string) *transmission {
	t.Helper()
	if err := os.MkdirAll(configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// Only the tracker may introduce the peers: no DHT, PEX, local peer
	// discovery or port mapping. Both peers are 127.0.0.1 with their own
	// ports.
	settings := map[string]any{
		"dht-enabled": false, "pex-enabled": false, "lpd-enabled": false, "utp-enabled": false,
		"port-forwarding-enabled": false, "blocklist-enabled": false, "peer-port": port,
		"peer-port-random-on-start": false, "encryption": 1, "rename-partial-files": true,
		"speed-limit-up-enabled": false, "speed-limit-down-enabled": false, "message-level": 2,
	}
	b, _ := json.Marshal(settings)
	if err := os.WriteFile(filepath.Join(configDir, "settings.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-g", configDir, "-w", downloadDir, "-p", fmt.Sprint(port), "-M", "-B", "-er"}
	args = append(args, torrent)
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = append(os.Environ(), "HOME="+configDir, "TR_CURL_VERBOSE=0")
	tr := &transmission{cmd: cmd, out: &lockedWriter{}}
	cmd.Stdout, cmd.Stderr = tr.out, tr.out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start transmission-cli: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return tr
}

// waitFor polls cond every 100 ms until it holds, failing with the
// client's output when ctx ends first. Polling is the only way to see a
// download complete: transmission-cli keeps running to seed.
func waitFor(ctx context.Context, t *testing.T, what string, tr *transmission, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; transmission-cli said:\n%s", what, tail(tr.out.String()))
		case <-tick.C:
		}
	}
}

func localNonLoopbackIPv4(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no non-loopback IPv4 address on this host for the peers (Transmission ignores 127.0.0.0/8 peers)")
	}
	t.Skip("no non-loopback IPv4 address on this host (Transmission ignores 127.0.0.0/8 peers)")
	return netip.Addr{}
}

// freePort finds a port free for TCP and UDP on every address, picked
// below Linux's ephemeral range (32768 and up) so that the many port-0
// binds of tests running beside this one cannot take it between this
// check and transmission-cli binding it.
// tail shortens a client's output: its log lines, then the last of the
// progress lines it repeats.
func tail(out string) string {
	if i := strings.Index(out, "Progress:"); i > 0 {
		out = out[:i] + "\n(last) " + out[max(len(out)-300, i):]
	}
	return strings.ToValidUTF8(out, "?")
}

func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}
