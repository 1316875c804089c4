package config

import (
	"fmt"
	"log/slog"
	"net/netip"
)

// WebSocketTracker is one [[websocket_trackers]] listener, a Starling
// extension: the WebTorrent tracker that browsers announce to over ws:// or
// wss://. Absent in a file (and in the defaults) means none.
type WebSocketTracker struct {
	BindAddress netip.AddrPort `toml:"bind_address"`
	// TLS turns the listener into wss://, which pages served over HTTPS
	// require.
	TLS *TLSConfig `toml:"tls_config" alias:"tsl_config"`
	// MaxOffers caps the WebRTC offers of one announce that are relayed.
	MaxOffers int `toml:"max_offers"`
	// MaxConnections and MaxConnectionsPerIP cap the open connections of
	// the listener, in all and from one source address.
	MaxConnections      int `toml:"max_connections"`
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
}

// Limits of [[websocket_trackers]].
const (
	MaxOffersLimit = 100
)

// DefaultWebSocketTracker is a [[websocket_trackers]] entry with every key
// defaulted.
func DefaultWebSocketTracker() WebSocketTracker {
	return WebSocketTracker{
		BindAddress:         netip.AddrPortFrom(netip.IPv4Unspecified(), 8000),
		MaxOffers:           10,
		MaxConnections:      100_000,
		MaxConnectionsPerIP: 256,
	}
}

func (e *encoder) webSocketTrackers(c *Config) {
	if len(c.WebSocketTrackers) == 0 {
		e.blank()
		e.comment("No [[websocket_trackers]] section: no WebSocket (WebTorrent) tracker. Starling's extension:")
		e.comment("[[websocket_trackers]]")
		e.comment("bind_address = \"0.0.0.0:8000\"")
		e.comment("tls_config = { ssl_cert_path = \"...\", ssl_key_path = \"...\" }   # wss://, for pages served over HTTPS")
	}
	for _, w := range c.WebSocketTrackers {
		e.blank()
		e.arrayTable("websocket_trackers")
		e.str("bind_address", w.BindAddress.String())
		e.comment("WebRTC offers of one announce relayed to other peers.")
		e.uint("max_offers", uint64(w.MaxOffers))
		e.comment("Open connections, in all and from one source address.")
		e.uint("max_connections", uint64(w.MaxConnections))
		e.uint("max_connections_per_ip", uint64(w.MaxConnectionsPerIP))
		if w.TLS != nil {
			e.tls("websocket_trackers", w.TLS)
		}
	}
}

// validateWebSocketTrackers checks the listeners' values; claim reports a
// TCP address used twice (with the HTTP listeners and the API).
func (c *Config) validateWebSocketTrackers(add func(key, format string, args ...any), claim func(ap netip.AddrPort, key string)) {
	for i, w := range c.WebSocketTrackers {
		key := fmt.Sprintf("websocket_trackers[%d]", i)
		claim(w.BindAddress, key+".bind_address")
		if w.MaxOffers < 1 || w.MaxOffers > MaxOffersLimit {
			add(key+".max_offers", "must be between 1 and %d, got %d (10 is the usual value)", MaxOffersLimit, w.MaxOffers)
		}
		if w.MaxConnections < 1 {
			add(key+".max_connections", "must be at least 1, got %d", w.MaxConnections)
		}
		if w.MaxConnectionsPerIP < 1 {
			add(key+".max_connections_per_ip", "must be at least 1, got %d", w.MaxConnectionsPerIP)
		}
		validateTLS(w.TLS, key, add)
	}
}

// LogValue shows the listener.
func (w WebSocketTracker) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("bind_address", w.BindAddress.String()),
		slog.Bool("tls", w.TLS != nil),
		slog.Int("max_offers", w.MaxOffers),
		slog.Int("max_connections", w.MaxConnections),
		slog.Int("max_connections_per_ip", w.MaxConnectionsPerIP),
	}
	if w.TLS != nil {
		attrs = append(attrs, slog.String("ssl_cert_path", w.TLS.SSLCertPath), slog.String("ssl_key_path", w.TLS.SSLKeyPath))
	}
	return slog.GroupValue(attrs...)
}
