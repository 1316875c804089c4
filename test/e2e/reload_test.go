package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
)

// writeCertPair writes a self-signed certificate for 127.0.0.1 with the
// given serial number, and its key, to cert and key.
func writeCertPair(t *testing.T, cert, key string, serial int64) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "starling e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{{127, 0, 0, 1}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial is the serial number of the certificate a TLS listener
// shows a new connection.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func reloadConfig(dir, core, threshold string) string {
	return fmt.Sprintf(`[metadata]
schema_version = "2.0.0"

[logging]
threshold = %q

[core]
%s

[core.database]
path = %q

[[udp_trackers]]
bind_address = "127.0.0.1:0"

[[http_trackers]]
bind_address = "127.0.0.1:0"
tls_config = { ssl_cert_path = %q, ssl_key_path = %q }

[http_api]
bind_address = "127.0.0.1:0"

[http_api.access_tokens]
admin = %q

[health_check_api]
bind_address = "127.0.0.1:0"
`, threshold, core, filepath.Join(dir, "tracker.db"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), e2eAPIToken)
}

// TestReload: SIGHUP applies a new announce interval, log threshold, mode
// and renewed TLS certificate over real sockets; a changed bind address is
// reported as needing a restart; a broken file keeps everything; POST
// /api/v1/reload does the same as SIGHUP; a metric counts them.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	writeCertPair(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 1001)
	path := filepath.Join(dir, "tracker.toml")
	if err := os.WriteFile(path, []byte(reloadConfig(dir, "", "info")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, dir, []string{"STARLING_CONFIG_TOML_PATH=" + path})
	udp := p.addr("udp") + "/announce"
	https := strings.TrimPrefix(p.addr("http"), "https://")
	ih := infohash.T{0x99}
	if r := announceWith(t, udp, ih, 1, 7001, 10, tracker.Started); r.Interval != 120 {
		t.Fatalf("interval %d before the reload", r.Interval)
	}
	if got := servedSerial(t, https); got != 1001 {
		t.Fatalf("certificate %d before the reload", got)
	}

	// The new file: longer intervals, debug logging, listed mode, a renewed
	// certificate at the same paths, and a health check elsewhere.
	writeCertPair(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 2002)
	next := strings.Replace(reloadConfig(dir, "listed = true\n\n[core.announce_policy]\ninterval = 1800\ninterval_min = 900\n", "debug"),
		"[health_check_api]\nbind_address = \"127.0.0.1:0\"", "[health_check_api]\nbind_address = \"127.0.0.1:1\"", 1)
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(p.Log(), "configuration reloaded") })
	log := p.Log()
	if !strings.Contains(log, "needs a restart") || !strings.Contains(log, "key=health_check_api.bind_address") {
		t.Fatalf("the changed bind address is not reported as needing a restart:\n%s", log)
	}
	if got := servedSerial(t, https); got != 2002 {
		t.Fatalf("certificate %d after the reload, want the renewed 2002", got)
	}
	c, err := tracker.NewClient(udp, tracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pid [20]byte
	copy(pid[:], "-qB4250-e2e-reload-1")
	if _, err := c.Announce(ctx, tracker.AnnounceRequest{InfoHash: ih, PeerId: pid, Port: 7003, Left: 1}, tracker.AnnounceOpt{}); err == nil || !strings.Contains(err.Error(), "not whitelisted") {
		t.Fatalf("listed mode after the reload: announce of a torrent not on the whitelist gave %v", err)
	}
	code, body := apiPost(t, p.addr("api")+"/api/v1/whitelist/"+ih.HexString()+"?token="+e2eAPIToken)
	if code != 200 {
		t.Fatalf("whitelist: %d %s", code, body)
	}
	if r := announceWith(t, udp, ih, 1, 7001, 10, tracker.Started); r.Interval != 1800 {
		t.Fatalf("interval %d after the reload, want 1800", r.Interval)
	}
	before := strings.Count(p.Log(), "level=DEBUG")
	apiGet(t, p.addr("api"), "/api/v1/stats?token="+e2eAPIToken)
	waitFor(t, "a debug line", func() bool { return strings.Count(p.Log(), "level=DEBUG") > before })

	// A broken file keeps the running values.
	if err := os.WriteFile(path, []byte("[core]\nlisted = maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the failed reload", func() bool { return strings.Contains(p.Log(), "configuration reload failed") })
	if r := announceWith(t, udp, ih, 1, 7001, 10, tracker.Started); r.Interval != 1800 {
		t.Fatalf("interval %d after a broken file, want 1800 kept", r.Interval)
	}

	// The API's reload, with the old file back: interval 120, public.
	if err := os.WriteFile(path, []byte(reloadConfig(dir, "", "info")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body = apiPost(t, p.addr("api")+"/api/v1/reload?token="+e2eAPIToken)
	if code != 200 || !strings.Contains(body, `"status":"ok"`) || !strings.Contains(body, "core.announce_policy") {
		t.Fatalf("POST /api/v1/reload: %d %s", code, body)
	}
	if r := announceWith(t, udp, infohash.T{0x98}, 1, 7001, 10, tracker.Started); r.Interval != 120 {
		t.Fatalf("interval %d after the API reload, want 120", r.Interval)
	}
	code, body = apiGet(t, p.addr("api"), "/metrics")
	if code != 200 || !strings.Contains(body, `starling_config_reloads_total{result="ok"} 2`) || !strings.Contains(body, `starling_config_reloads_total{result="failed"} 1`) {
		t.Fatalf("metrics (%d) do not count 2 good reloads and 1 failed:\n%s", code, grepLines(body, "reloads"))
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.Log())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
