package config_test

import (
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/config"
)

func TestWebSocketTrackers(t *testing.T) {
	head := "[metadata]\nschema_version = \"2.0.0\"\n[[http_trackers]]\nbind_address = \"0.0.0.0:7070\"\n"
	tests := []struct {
		name    string
		toml    string
		problem string // a key with a problem, or "" for none
	}{
		{"defaults", "[[websocket_trackers]]\n", ""},
		{"tls", "[[websocket_trackers]]\nbind_address = \"0.0.0.0:8443\"\ntls_config = { ssl_cert_path = \"a.crt\", ssl_key_path = \"a.key\" }\n", ""},
		{"torrust spelling tsl_config", "[[websocket_trackers]]\n[websocket_trackers.tsl_config]\nssl_cert_path = \"a\"\nssl_key_path = \"b\"\n", ""},
		{"tls without key", "[[websocket_trackers]]\ntls_config = { ssl_cert_path = \"a.crt\" }\n", "websocket_trackers[0].tls_config.ssl_key_path"},
		{"same address as http", "[[websocket_trackers]]\nbind_address = \"0.0.0.0:7070\"\n", "websocket_trackers[0].bind_address"},
		{"max_offers 0", "[[websocket_trackers]]\nmax_offers = 0\n", "websocket_trackers[0].max_offers"},
		{"max_offers too many", "[[websocket_trackers]]\nmax_offers = 101\n", "websocket_trackers[0].max_offers"},
		{"max_connections 0", "[[websocket_trackers]]\nmax_connections = 0\n", "websocket_trackers[0].max_connections"},
		{"max_connections_per_ip 0", "[[websocket_trackers]]\nmax_connections_per_ip = 0\n", "websocket_trackers[0].max_connections_per_ip"},
		{"unknown key", "[[websocket_trackers]]\nmax_ofers = 3\n", "websocket_trackers[0].max_ofers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(head + tt.toml))
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				w := c.WebSocketTrackers[0]
				if w.MaxOffers != 10 || w.MaxConnections != 100_000 || w.MaxConnectionsPerIP != 256 {
					t.Errorf("defaults %+v", w)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("got %v, want a problem with %s", err, tt.problem)
			}
		})
	}
	if d := config.Default(); len(d.WebSocketTrackers) != 0 {
		t.Errorf("the defaults run a WebSocket tracker: %+v", d.WebSocketTrackers)
	}
}
