package config_test

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/starling-tracker/starling/internal/config"
)

func TestReload(t *testing.T) {
	base := func() *config.Config {
		c := config.Default()
		c.HTTPTrackers[0].TLS = &config.TLSConfig{SSLCertPath: "a.pem", SSLKeyPath: "a.key"}
		c.HTTPAPI.AccessTokens = config.AccessTokens{"admin": "one"}
		return c
	}
	tests := []struct {
		name    string
		edit    func(c *config.Config)
		changed []string
		restart []string
		check   func(t *testing.T, m *config.Config)
	}{
		{name: "nothing", edit: func(*config.Config) {}},
		{name: "live settings", edit: func(c *config.Config) {
			c.Logging.Threshold = "debug"
			c.Core.AnnouncePolicy.Interval = 1800
			c.Core.Private, c.Core.Listed = true, true
			c.Core.TrackerPolicy.MaxPeerTimeout = 60
			c.UDPTrackers[0].MaxConnectionIDErrorsPerIP = 3
			c.HTTPTrackers[0].TLS = &config.TLSConfig{SSLCertPath: "b.pem", SSLKeyPath: "b.key"}
			c.HTTPAPI.AccessTokens = config.AccessTokens{"admin": "two"}
		}, changed: []string{"logging.threshold", "core.announce_policy", "core.listed", "core.private",
			"core.tracker_policy.max_peer_timeout", "udp_trackers[0].max_connection_id_errors_per_ip",
			"http_trackers[0].tls_config", "http_api.access_tokens"},
			check: func(t *testing.T, m *config.Config) {
				if m.Core.AnnouncePolicy.Interval != 1800 || !m.Core.Private || m.UDPTrackers[0].MaxConnectionIDErrorsPerIP != 3 ||
					m.HTTPTrackers[0].TLS.SSLCertPath != "b.pem" || m.HTTPAPI.AccessTokens["admin"] != "two" || m.Logging.Threshold != "debug" {
					t.Fatalf("merged %+v", m)
				}
			}},
		{name: "restart settings keep their running value", edit: func(c *config.Config) {
			c.UDPTrackers[0].BindAddress = netip.MustParseAddrPort("0.0.0.0:7000")
			c.Core.Database.Path = "/elsewhere.db"
			c.Core.Swarm.SnapshotInterval = 10
			c.HTTPTrackers[0].TLS = nil
			c.HealthCheckAPI.BindAddress = netip.MustParseAddrPort("127.0.0.1:9")
		}, restart: []string{"core.database", "core.swarm", "health_check_api.bind_address", "udp_trackers[0]", "http_trackers[0]"},
			check: func(t *testing.T, m *config.Config) {
				if m.UDPTrackers[0].BindAddress.Port() != 6969 || m.Core.Database.Path != config.DefaultSQLitePath ||
					m.HTTPTrackers[0].TLS == nil || m.Core.Swarm.SnapshotInterval != 300 || m.HealthCheckAPI.BindAddress.Port() != 1313 {
					t.Fatalf("merged %+v", m)
				}
			}},
		{name: "a listener more", edit: func(c *config.Config) {
			c.UDPTrackers = append(c.UDPTrackers, config.DefaultUDPTracker())
			c.HTTPAPI = nil
		}, restart: []string{"udp_trackers", "http_api"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running, next := base(), base()
			tt.edit(next)
			keep := base()
			m, changed, restart := config.Reload(running, next)
			slices.Sort(changed)
			slices.Sort(restart)
			slices.Sort(tt.changed)
			slices.Sort(tt.restart)
			if !slices.Equal(changed, tt.changed) || !slices.Equal(restart, tt.restart) {
				t.Fatalf("changed %q restart %q, want %q and %q", changed, restart, tt.changed, tt.restart)
			}
			if !reflect.DeepEqual(running, keep) {
				t.Fatal("Reload changed the running configuration")
			}
			if tt.check != nil {
				tt.check(t, m)
			}
			if len(tt.changed) == 0 && !reflect.DeepEqual(m, running) {
				t.Fatalf("nothing live changed, yet merged %+v differs from %+v", m, running)
			}
		})
	}
}
