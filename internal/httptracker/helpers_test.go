package httptracker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	anabencode "github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

const testNow = 1_700_000_000

// rules is an in-process tracker over memswarm, as the daemon builds it.
type rules struct {
	*tracker.Tracker
	lists    *access.Lists
	clock    *clock.Manual
	counters *metrics.Counters
}

func newRules(t testing.TB, cfg tracker.Config) *rules {
	t.Helper()
	lists := access.New(nil)
	clk := clock.NewManual(testNow)
	store := memswarm.New(swarm.Options{RemovePeerlessTorrents: true})
	return &rules{
		Tracker:  tracker.New(cfg, store, lists, clk, nil),
		lists:    lists,
		clock:    clk,
		counters: metrics.NewCounters(4, true),
	}
}

// startServer serves the tracker on network ("tcp4" or "tcp6") loopback,
// port 0, and shuts it down at the end of the test.
func startServer(t testing.TB, network string, cfg Config, tr Tracker, counters *metrics.Counters) *Server {
	t.Helper()
	srv, err := New(cfg, tr, counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	host := "127.0.0.1:0"
	if network == "tcp6" {
		host = "[::1]:0"
	}
	ln, err := net.Listen(network, host)
	if err != nil {
		t.Fatalf("listen %s: %v", host, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	<-srv.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv
}

// writeCert makes a self-signed certificate for the loopback addresses and
// returns the paths of its PEM files and a pool that trusts it.
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
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:     []string{"localhost"},
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

// newClient is an HTTP client for the tests, trusting pool when not nil.
func newClient(t testing.TB, pool *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches url and returns the status, the content type and the body.
func get(t testing.TB, c *http.Client, url string, header http.Header) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// decode parses a bencoded dictionary with anacrolix's decoder.
func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := anabencode.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return m
}
