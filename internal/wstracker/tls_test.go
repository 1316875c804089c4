package wstracker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-tracker/starling/internal/tracker"
)

// writeCert makes a self-signed certificate for 127.0.0.1 and returns the
// paths of its PEM files and a pool that trusts it.
func writeCert(t testing.TB) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "starling test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

func TestWSS(t *testing.T) {
	certPath, keyPath, pool := writeCert(t)
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{TLSCertPath: certPath, TLSKeyPath: keyPath}, r)
	if !strings.HasPrefix(srv.URL(), "wss://") {
		t.Fatalf("URL %s", srv.URL())
	}
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	a, b := dialWith(t, d, srv, "", true), dialWith(t, d, srv, "/announce", true)
	a.announce(id{1}, id{'a'}, "")
	b.announce(id{1}, id{'b'}, offersJSON(id{3}))
	if m := a.read(); m.id("peer_id") != (id{'b'}) || m.raw["offer"] == nil {
		t.Fatalf("a got %s", m.text)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	for _, cfg := range []Config{
		{TLSCertPath: "only-cert.pem"},
		{TLSCertPath: "/nonexistent/cert.pem", TLSKeyPath: "/nonexistent/key.pem"},
	} {
		if _, err := New(cfg, r, nil, nil); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	if err := Probe(ctx, srv.URL()); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, _ := writeCert(t)
	tlsSrv := start(t, Config{TLSCertPath: certPath, TLSKeyPath: keyPath}, r)
	if err := Probe(ctx, tlsSrv.URL()); err != nil {
		t.Fatalf("wss: %v", err)
	}
	cfg := tracker.DefaultConfig()
	cfg.Private = true
	private := start(t, Config{}, newRules(t, cfg))
	if err := Probe(ctx, private.URL()); err != nil {
		t.Fatalf("private: %v", err)
	}
	// A swarm store that fails (Redis down) fails the store's entry in the
	// health check, not the listener's: a failure answer passes.
	fr := newRules(t, tracker.DefaultConfig())
	failing := startTracker(t, Config{}, &failingScrape{fr}, fr.counters)
	if err := Probe(ctx, failing.URL()); err != nil {
		t.Fatalf("a scrape answered with a failure: %v", err)
	}
	// A listener at its per-address cap answers 429: it is up, and the
	// refusal is counted.
	capped := start(t, Config{MaxConnectionsPerIP: 1}, r)
	hold := dial(t, capped, "")
	hold.announce(id{1}, id{2}, "")
	if err := Probe(ctx, capped.URL()); err != nil {
		t.Fatalf("at the per-address cap: %v", err)
	}
	if total, perIP := capped.Refused(); total != 0 || perIP != 1 {
		t.Fatalf("refused %d in total, %d per address", total, perIP)
	}
	// Not a WebSocket tracker.
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	ln.Close()
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := Probe(short, "ws://"+ln.Addr().String()); err == nil {
		t.Fatal("a closed port passed the probe")
	}
}

// failingScrape is a tracker whose swarm store cannot be reached.
type failingScrape struct{ *rules }

func (f *failingScrape) Scrape(context.Context, *bittorrent.ScrapeRequest, *bittorrent.ScrapeResponse) error {
	return &bittorrent.ClientError{Kind: bittorrent.KindTracker, Msg: "swarm store unavailable, try later"}
}
