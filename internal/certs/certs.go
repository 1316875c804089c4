// Package certs serves a TLS certificate that can be replaced while
// listening: a reload re-reads the files, and new connections get the new
// certificate while open ones keep theirs.
package certs

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Pair is a certificate and key read from their files.
type Pair struct {
	CertPath, KeyPath string
	cert              *tls.Certificate
}

// Load reads a certificate and its key (PEM). The error names both files.
func Load(certPath, keyPath string) (*Pair, error) {
	if certPath == "" || keyPath == "" {
		return nil, fmt.Errorf("both ssl_cert_path and ssl_key_path are needed")
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load certificate %q and key %q (check the paths): %w", certPath, keyPath, err)
	}
	return &Pair{CertPath: certPath, KeyPath: keyPath, cert: &c}, nil
}

// Reloader hands out the current pair to each TLS handshake.
type Reloader struct {
	cur atomic.Pointer[Pair]
}

// New serves p until Set replaces it.
func New(p *Pair) *Reloader {
	r := &Reloader{}
	r.cur.Store(p)
	return r
}

// Set serves p to the handshakes that follow.
func (r *Reloader) Set(p *Pair) { r.cur.Store(p) }

// Current is the pair being served.
func (r *Reloader) Current() *Pair { return r.cur.Load() }

// Config is a server TLS configuration that asks r for the certificate at
// every handshake.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cur.Load().cert, nil
		},
	}
}
