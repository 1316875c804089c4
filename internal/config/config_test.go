package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/config"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDefault(t *testing.T) {
	c := config.Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"schema", c.Metadata.SchemaVersion, "2.0.0"},
		{"app", c.Metadata.App, "torrust-tracker"},
		{"threshold", c.Logging.Threshold, "info"},
		{"interval", c.Core.AnnouncePolicy.Interval, config.Seconds(120)},
		{"interval_min", c.Core.AnnouncePolicy.IntervalMin, config.Seconds(120)},
		{"max_peers", c.Core.AnnouncePolicy.MaxPeersPerAnnounce, uint32(74)},
		{"driver", c.Core.Database.Driver, "sqlite3"},
		{"path", c.Core.Database.Path, "./storage/tracker/lib/database/sqlite3.db"},
		{"cleanup", c.Core.InactivePeerCleanupInterval, config.Seconds(600)},
		{"listed", c.Core.Listed, false},
		{"private", c.Core.Private, false},
		{"private_mode", c.Core.PrivateMode, (*config.PrivateMode)(nil)},
		{"check_keys_expiration", c.Core.CheckKeysExpiration(), true},
		{"external_ip", c.Core.Net.ExternalIP, netip.MustParseAddr("0.0.0.0")},
		{"on_reverse_proxy", c.Core.Net.OnReverseProxy, false},
		{"max_peer_timeout", c.Core.TrackerPolicy.MaxPeerTimeout, config.Seconds(900)},
		{"persistent", c.Core.TrackerPolicy.PersistentTorrentCompletedStat, false},
		{"remove_peerless", c.Core.TrackerPolicy.RemovePeerlessTorrents, true},
		{"stats", c.Core.TrackerUsageStatistics, true},
		{"udp", c.UDPTrackers, []config.UDPTracker{{BindAddress: ap("0.0.0.0:6969"), CookieLifetime: 120, MaxConnectionIDErrorsPerIP: 10}}},
		{"http", c.HTTPTrackers, []config.HTTPTracker{{BindAddress: ap("0.0.0.0:7070"), MaxScrapeTorrents: 74, MaxConnectionsPerIP: 256}}},
		{"api", *c.HTTPAPI, config.HTTPAPI{BindAddress: ap("127.0.0.1:1212"), AccessTokens: config.AccessTokens{}}},
		{"health", c.HealthCheckAPI.BindAddress, ap("127.0.0.1:1313")},
		{"mode", c.Core.Mode(), "public"},
		{"interval duration", c.Core.AnnouncePolicy.Interval.Duration().Seconds(), 120.0},
	}
	for _, ck := range checks {
		t.Run(ck.name, func(t *testing.T) {
			if !reflect.DeepEqual(ck.got, ck.want) {
				t.Errorf("got %#v, want %#v", ck.got, ck.want)
			}
		})
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestParseFiles(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, c *config.Config)
	}{
		{"torrust/tracker.development.sqlite3.toml", func(t *testing.T, c *config.Config) {
			want := config.Default()
			want.HTTPAPI.BindAddress = ap("0.0.0.0:1212")
			want.HTTPAPI.AccessTokens = config.AccessTokens{"admin": "MyAccessToken"}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got\n%#v\nwant\n%#v", c, want)
			}
		}},
		{"torrust/tracker.container.mysql.toml", func(t *testing.T, c *config.Config) {
			if c.Core.Database.Driver != "mysql" || c.Core.Database.Path != "mysql://db_user:db_user_secret_password@mysql:3306/torrust_tracker" {
				t.Errorf("database = %+v", c.Core.Database)
			}
			// The services are commented out: none is started.
			if c.UDPTrackers != nil || c.HTTPTrackers != nil || c.HTTPAPI != nil {
				t.Errorf("listeners = %v %v %v, want none", c.UDPTrackers, c.HTTPTrackers, c.HTTPAPI)
			}
			if c.HealthCheckAPI.BindAddress != ap("127.0.0.1:1313") {
				t.Errorf("health = %v", c.HealthCheckAPI.BindAddress)
			}
		}},
		{"torrust/tracker.container.sqlite3.toml", func(t *testing.T, c *config.Config) {
			if c.Core.Database != (config.Database{Driver: "sqlite3", Path: "/var/lib/torrust/tracker/database/sqlite3.db"}) {
				t.Errorf("database = %+v", c.Core.Database)
			}
		}},
		{"torrust/tracker.e2e.container.sqlite3.toml", func(t *testing.T, c *config.Config) {
			if c.HealthCheckAPI.BindAddress != ap("0.0.0.0:1313") || len(c.UDPTrackers) != 1 || len(c.HTTPTrackers) != 1 {
				t.Errorf("got %+v", c)
			}
		}},
		{"torrust/tracker.udp.benchmarking.toml", func(t *testing.T, c *config.Config) {
			if c.Logging.Threshold != "error" || c.Core.TrackerUsageStatistics || c.Core.TrackerPolicy.RemovePeerlessTorrents ||
				c.Core.Database.Path != "./sqlite3.db" || len(c.UDPTrackers) != 1 || c.HTTPTrackers != nil || c.HTTPAPI != nil {
				t.Errorf("got %+v", c)
			}
		}},
		{"full.toml", func(t *testing.T, c *config.Config) {
			want := &config.Config{
				Metadata: config.Metadata{App: "torrust-tracker", Purpose: "configuration", SchemaVersion: "2.0.0"},
				Logging:  config.Logging{Threshold: "debug"},
				Core: config.Core{
					AnnouncePolicy:              config.AnnouncePolicy{Interval: 1800, IntervalMin: 900, MaxPeersPerAnnounce: 50},
					Database:                    config.Database{Driver: "postgresql", Path: "postgresql://starling:s3cretPassw0rd@db.internal:5432/tracker?sslmode=disable"},
					FullScrape:                  "api",
					FullScrapeInterval:          30,
					InactivePeerCleanupInterval: 300,
					Listed:                      true,
					Net:                         config.Net{ExternalIP: netip.MustParseAddr("203.0.113.7"), OnReverseProxy: true},
					Private:                     true,
					PrivateMode:                 &config.PrivateMode{CheckKeysExpiration: false},
					Swarm: config.Swarm{Store: "redis", RedisURL: "redis://starling:r3disPassw0rd@redis.internal:6379/0",
						RedisKeyPrefix: "tracker1:", RedisPeerDetail: true, SnapshotPath: "/var/lib/starling/swarms.snapshot", SnapshotInterval: 60},
					Limits:        config.Limits{MaxTorrents: 2000000, MaxPeers: 10000000, MaxPeersPerTorrent: 100000},
					TrackerPolicy: config.TrackerPolicy{MaxPeerTimeout: 3600, PersistentTorrentCompletedStat: true},
				},
				UDPTrackers: []config.UDPTracker{
					{BindAddress: ap("0.0.0.0:6969"), CookieLifetime: 60, Sockets: 4},
					{BindAddress: ap("[::]:6969"), CookieLifetime: 120, MaxConnectionIDErrorsPerIP: 10, IPv6V6Only: true},
				},
				HTTPTrackers: []config.HTTPTracker{
					{BindAddress: ap("0.0.0.0:7070"), MaxScrapeTorrents: 100, MaxConnections: 20000, MaxConnectionsPerIP: 64},
					{BindAddress: ap("[::1]:7443"), MaxScrapeTorrents: 74, MaxConnectionsPerIP: 256, TLS: &config.TLSConfig{
						SSLCertPath: "./storage/tracker/lib/tls/localhost.crt", SSLKeyPath: "./storage/tracker/lib/tls/localhost.key",
						Spelling: "tsl_config"}},
				},
				WebSocketTrackers: []config.WebSocketTracker{
					{BindAddress: ap("0.0.0.0:8000"), MaxOffers: 5, MaxConnections: 100_000, MaxConnectionsPerIP: 256},
					{BindAddress: ap("[::]:8443"), MaxOffers: 10, MaxConnections: 50000, MaxConnectionsPerIP: 16, TLS: &config.TLSConfig{
						SSLCertPath: "/etc/starling/ws.crt", SSLKeyPath: "/etc/starling/ws.key"}},
				},
				HTTPAPI: &config.HTTPAPI{
					BindAddress: ap("127.0.0.1:1212"),
					TLS:         &config.TLSConfig{SSLCertPath: "/etc/starling/api.crt", SSLKeyPath: "/etc/starling/api.key"},
					AccessTokens: config.AccessTokens{
						"admin":        "Adm1nTokenThatIsLongEnoughToGuessNot",
						"index server": "Ind3xTokenThatIsLongEnoughToGuessNot",
					},
				},
				HealthCheckAPI: config.HealthCheckAPI{BindAddress: ap("127.0.0.1:1314")},
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got\n%#v\nwant\n%#v", c, want)
			}
			if c.Core.Mode() != "private_listed" || c.Core.CheckKeysExpiration() {
				t.Errorf("mode %s, check expiry %v", c.Core.Mode(), c.Core.CheckKeysExpiration())
			}
		}},
		{"develop.toml", func(t *testing.T, c *config.Config) {
			u := c.UDPTrackers[0]
			if u.CookieLifetime != 300 || !u.TrackerUsageStatistics || u.IPv6V6Only {
				t.Errorf("udp = %+v", u)
			}
			h := c.HTTPTrackers[0]
			if !h.IPv6V6Only || !h.TrackerUsageStatistics {
				t.Errorf("http = %+v", h)
			}
			if c.Logging.Threshold != "trace" || c.Logging.Level() >= slog.LevelDebug {
				t.Errorf("trace level = %v", c.Logging.Level())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := config.Parse(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseMinimal(t *testing.T) {
	// A file that says nothing gets every default but no listener, as in
	// Torrust.
	for _, text := range []string{"", "# nothing\n", "[metadata]\n", "[core]\n[core.net]\n"} {
		data := []byte(text)
		if text == "" {
			data = nil // Parse(nil) is an empty file too
		}
		c, err := config.Parse(data)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		want := config.Default()
		want.UDPTrackers, want.HTTPTrackers, want.HTTPAPI = nil, nil, nil
		if !reflect.DeepEqual(c, want) {
			t.Errorf("%q: got %#v", text, c)
		}
	}
}

func TestParseSectionDefaults(t *testing.T) {
	c, err := config.Parse([]byte("[http_api]\n[[udp_trackers]]\n[[http_trackers]]\n[core]\nprivate = true\n[core.private_mode]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*c.HTTPAPI, config.DefaultHTTPAPI()) {
		t.Errorf("api = %+v", c.HTTPAPI)
	}
	if len(c.HTTPAPI.AccessTokens) != 0 || c.HTTPAPI.AccessTokens == nil {
		t.Errorf("tokens = %#v", c.HTTPAPI.AccessTokens)
	}
	if !reflect.DeepEqual(c.UDPTrackers, []config.UDPTracker{config.DefaultUDPTracker()}) ||
		!reflect.DeepEqual(c.HTTPTrackers, []config.HTTPTracker{config.DefaultHTTPTracker()}) {
		t.Errorf("listeners = %+v %+v", c.UDPTrackers, c.HTTPTrackers)
	}
	if c.Core.PrivateMode == nil || !c.Core.PrivateMode.CheckKeysExpiration {
		t.Errorf("private_mode = %+v, want present with check_keys_expiration = true", c.Core.PrivateMode)
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		toml string
		key  string // every problem must name this key
		msg  string // and contain this
	}{
		{"unknown top-level key", "foo = 1", "foo", "unknown key"},
		{"schema v1 key", `mode = "public"`, "mode", "schema 1 key: Starling reads schema 2.0.0, where it is [core] private and listed"},
		{"schema v1 log level", `log_level = "info"`, "log_level", "where it is [logging] threshold"},
		{"schema v1 database", `db_path = "x.db"`, "db_path", "where it is [core.database] path"},
		{"schema v1 timeout", `max_peer_timeout = 900`, "max_peer_timeout", "where it is [core.tracker_policy] max_peer_timeout"},
		{"unknown nested key", "[core.announce_policy]\nintervall = 10", "core.announce_policy.intervall", `did you mean "interval"`},
		{"unknown section", "[core.nett]\nexternal_ip = \"1.2.3.4\"", "core.nett", `did you mean "net"`},
		{"unknown key in list entry", "[[udp_trackers]]\nbind_adress = \"0.0.0.0:1\"", "udp_trackers[0].bind_adress", "unknown key"},
		{"unknown key in tls", "[http_api.tsl_config]\nssl_cert = \"a\"", "http_api.tsl_config.ssl_cert", "unknown key"},
		{"schema version", "[metadata]\nschema_version = \"3.0.0\"", "metadata.schema_version", "unsupported configuration version"},
		{"app", "[metadata]\napp = \"opentracker\"", "metadata.app", "torrust-tracker"},
		{"threshold", "[logging]\nthreshold = \"verbose\"", "logging.threshold", "off, error, warn, info, debug, trace"},
		{"bool type", "[core]\nprivate = \"yes\"", "core.private", "expected true or false, got a string"},
		{"int type", "[core.announce_policy]\ninterval = \"120\"", "core.announce_policy.interval", "expected a number of seconds"},
		{"float", "[core.announce_policy]\ninterval = 1.5", "core.announce_policy.interval", "got a float"},
		{"negative", "[core.announce_policy]\ninterval = -1", "core.announce_policy.interval", "out of range"},
		{"too big", "[core.tracker_policy]\nmax_peer_timeout = 4294967296", "core.tracker_policy.max_peer_timeout", "out of range"},
		{"zero interval", "[core.announce_policy]\ninterval = 0\ninterval_min = 0", "core.announce_policy.interval", "at least 1 second"},
		{"max peers zero", "[core.announce_policy]\nmax_peers_per_announce = 0", "core.announce_policy.max_peers_per_announce", "between 1 and"},
		{"max peers huge", "[core.announce_policy]\nmax_peers_per_announce = 100000", "core.announce_policy.max_peers_per_announce", "between 1 and"},
		{"peer timeout zero", "[core.tracker_policy]\nmax_peer_timeout = 0", "core.tracker_policy.max_peer_timeout", "at least 1 second"},
		{"driver", "[core.database]\ndriver = \"oracle\"", "core.database.driver", "sqlite3, mysql or postgresql"},
		{"empty sqlite path", "[core.database]\npath = \"\"", "core.database.path", "is empty"},
		{"url with sqlite", "[core.database]\npath = \"mysql://u:p@h:3306/d\"", "core.database.path", "looks like a URL"},
		{"mysql without url", "[core.database]\ndriver = \"mysql\"", "core.database.path", "mysql:// URL"},
		{"mysql without db", "[core.database]\ndriver = \"mysql\"\npath = \"mysql://u:p@h:3306\"", "core.database.path", "names no database"},
		{"postgres wrong scheme", "[core.database]\ndriver = \"postgresql\"\npath = \"mysql://u:p@h/d\"", "core.database.path", "postgres:// URL"},
		{"bad external ip", "[core.net]\nexternal_ip = \"1.2.3\"", "core.net.external_ip", "not an IP address"},
		{"external ip type", "[core.net]\nexternal_ip = 1", "core.net.external_ip", "got an integer"},
		{"private_mode while public", "[core]\nprivate = false\n[core.private_mode]\ncheck_keys_expiration = true", "core.private_mode", "only be included when the tracker is running in private mode"},
		{"udp address without port", "[[udp_trackers]]\nbind_address = \"0.0.0.0\"", "udp_trackers[0].bind_address", "not an ip:port"},
		{"udp host name", "[[udp_trackers]]\nbind_address = \"localhost:6969\"", "udp_trackers[0].bind_address", "not an ip:port"},
		{"udp bad port", "[[udp_trackers]]\nbind_address = \"0.0.0.0:70000\"", "udp_trackers[0].bind_address", "not an ip:port"},
		{"cookie zero", "[[udp_trackers]]\ncookie_lifetime = 0", "udp_trackers[0].cookie_lifetime", "at least 1 second"},
		{"cookie nanos", "[[udp_trackers]]\ncookie_lifetime = { secs = 1, nanos = 5 }", "udp_trackers[0].cookie_lifetime.nanos", "whole seconds"},
		{"cookie table key", "[[udp_trackers]]\ncookie_lifetime = { secs = 1, millis = 5 }", "udp_trackers[0].cookie_lifetime.millis", "unknown key"},
		{"sockets", "[[udp_trackers]]\nsockets = 100000", "udp_trackers[0].sockets", "between 0"},
		{"sockets negative", "[[udp_trackers]]\nsockets = -1", "udp_trackers[0].sockets", "negative"},
		{"duplicate udp address", "[[udp_trackers]]\n[[udp_trackers]]", "udp_trackers[1].bind_address", "already the bind_address of udp_trackers[0]"},
		{"api on health port", "[http_api]\nbind_address = \"127.0.0.1:1313\"", "health_check_api.bind_address", "already the bind_address of http_api"},
		{"full scrape value", "[core]\nfull_scrape = \"yes\"", "core.full_scrape", `use "off", "api" (admin token only) or "public"`},
		{"full scrape type", "[core]\nfull_scrape = true", "core.full_scrape", "expected a string"},
		{"public full scrape on a private tracker", "[core]\nprivate = true\nfull_scrape = \"public\"", "core.full_scrape", "private tracker"},
		{"limit negative", "[core.limits]\nmax_peers = -1", "core.limits.max_peers", ""},
		{"unknown limit", "[core.limits]\nmax_peer = 5", "core.limits.max_peer", "did you mean"},
		{"snapshot interval huge", "[core.swarm]\nsnapshot_interval = 86401", "core.swarm.snapshot_interval", "at most 86400"},
		{"snapshot path a directory", "[core.swarm]\nsnapshot_path = \"/var/lib/starling/\"", "core.swarm.snapshot_path", "not a file name"},
		{"snapshot path type", "[core.swarm]\nsnapshot_path = 5", "core.swarm.snapshot_path", "expected a string"},
		{"unknown swarm key", "[core.swarm]\nsnapshot_pth = \"x\"", "core.swarm.snapshot_pth", "did you mean \"snapshot_path\""},
		{"unknown swarm store", "[core.swarm]\nstore = \"etcd\"", "core.swarm.store", `use "memory" (the default) or "redis"`},
		{"redis without url", "[core.swarm]\nstore = \"redis\"", "core.swarm.redis_url", "needs the Redis URL"},
		{"redis url scheme", "[core.swarm]\nstore = \"redis\"\nredis_url = \"http://h:6379\"", "core.swarm.redis_url", "use redis://, rediss://"},
		{"redis url no host", "[core.swarm]\nstore = \"redis\"\nredis_url = \"redis:///0\"", "core.swarm.redis_url", "names no host"},
		{"redis url bad db", "[core.swarm]\nstore = \"redis\"\nredis_url = \"redis://h:6379/x\"", "core.swarm.redis_url", "not a number"},
		{"redis url unparsable", "[core.swarm]\nstore = \"redis\"\nredis_url = \"redis://h:6379/%zz\"", "core.swarm.redis_url", "is not a URL"},
		{"unix socket without path", "[core.swarm]\nstore = \"redis\"\nredis_url = \"unix://\"", "core.swarm.redis_url", "socket's path"},
		{"redis prefix with a hash tag", "[core.swarm]\nstore = \"redis\"\nredis_url = \"redis://h\"\nredis_key_prefix = \"a{b}\"", "core.swarm.redis_key_prefix", "hash slot"},
		{"redis store type", "[core.swarm]\nstore = 1", "core.swarm.store", "expected a string"},
		{"full scrape interval zero", "[core]\nfull_scrape_interval = 0", "core.full_scrape_interval", "between 1 and 86400"},
		{"full scrape interval huge", "[core]\nfull_scrape_interval = 86401", "core.full_scrape_interval", "between 1 and 86400"},
		{"scrape cap", "[[http_trackers]]\nmax_scrape_torrents = 0", "http_trackers[0].max_scrape_torrents", "between 1 and"},
		{"tls only cert", "[[http_trackers]]\n[http_trackers.tsl_config]\nssl_cert_path = \"c.pem\"", "http_trackers[0].tsl_config.ssl_key_path", "both"},
		{"tls only key", "[http_api]\n[http_api.tls_config]\nssl_key_path = \"k.pem\"", "http_api.tls_config.ssl_cert_path", "both"},
		{"tls empty", "[http_api]\n[http_api.tls_config]\n", "http_api.tls_config", "neither"},
		{"both tls spellings", "[http_api]\n[http_api.tls_config]\nssl_cert_path = \"c\"\nssl_key_path = \"k\"\n[http_api.tsl_config]\nssl_cert_path = \"c\"\nssl_key_path = \"k\"", "http_api.tsl_config", "keep one"},
		{"empty token", "[http_api.access_tokens]\nadmin = \"\"", "http_api.access_tokens.admin", "empty token"},
		{"token type", "[http_api.access_tokens]\nadmin = 12345", "http_api.access_tokens.admin", "expected a string, got an integer"},
		{"tokens not a table", "[http_api]\naccess_tokens = \"x\"", "http_api.access_tokens", "expected a table"},
		{"section as value", "core = 1", "core", "expected a table"},
		{"list as table", "[udp_trackers]\nbind_address = \"0.0.0.0:1\"", "udp_trackers", "expected a list of tables"},
		{"syntax", "[core]\nprivate = tru", "", "TOML syntax error on line 2"},
		{"duplicate key", "[core]\nprivate = true\nprivate = false", "", "TOML syntax error"},
		{"not utf-8", "threshold = \"\xff\"", "", "not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.toml))
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			var ps config.Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %T %v is not Problems", err, err)
			}
			found := false
			for _, p := range ps {
				if p.Key == tt.key && strings.Contains(p.Msg, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem with key %q and %q in:\n%v", tt.key, tt.msg, err)
			}
			if tt.key != "" && !strings.Contains(err.Error(), tt.key+": ") {
				t.Errorf("error text does not name %s: %v", tt.key, err)
			}
			if got := config.Check([]byte(tt.toml)); len(got) != len(ps) {
				t.Errorf("Check found %d problems, Parse %d", len(got), len(ps))
			}
		})
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	text := `
[metadata]
schema_version = "1.0.0"
[logging]
threshold = "loud"
[core]
private = false
privat = true
[core.announce_policy]
max_peers_per_announce = 0
[core.database]
driver = "oracle"
[core.net]
external_ip = "not-an-ip"
[core.private_mode]
check_keys_expiration = true
[[udp_trackers]]
bind_address = "0.0.0.0"
[[http_trackers]]
max_scrape_torrents = 0
[http_trackers.tsl_config]
ssl_cert_path = "cert.pem"
[http_api.access_tokens]
admin = ""
`
	want := []string{
		"metadata.schema_version", "logging.threshold", "core.privat", "core.announce_policy.max_peers_per_announce",
		"core.database.driver", "core.net.external_ip", "core.private_mode", "udp_trackers[0].bind_address",
		"http_trackers[0].max_scrape_torrents", "http_trackers[0].tsl_config.ssl_key_path", "http_api.access_tokens.admin",
	}
	ps := config.Check([]byte(text))
	for _, k := range want {
		if !hasKey(ps, k) {
			t.Errorf("missing a problem for %s in:\n%v", k, ps.Err())
		}
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ps), len(want), ps.Err())
	}
}

func TestCheckSkipsChecksOfUnreadableKeys(t *testing.T) {
	// interval cannot be read, so comparing interval_min with its default
	// would report a problem that is not there.
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"interval", "[core.announce_policy]\ninterval = \"600\"\ninterval_min = 300", []string{"core.announce_policy.interval"}},
		{"driver", "[core.database]\ndriver = 1\npath = \"mysql://u:p@h/d\"", []string{"core.database.driver"}},
		{"address", "[[udp_trackers]]\nbind_address = \"x\"\n[[udp_trackers]]\nbind_address = \"0.0.0.0:6969\"", []string{"udp_trackers[0].bind_address"}},
		{"private", "[core]\nprivate = \"true\"\n[core.private_mode]", []string{"core.private"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := config.Check([]byte(tt.toml))
			if len(ps) != len(tt.want) {
				t.Fatalf("problems:\n%v", ps.Err())
			}
			for _, k := range tt.want {
				if !hasKey(ps, k) {
					t.Errorf("missing %s in:\n%v", k, ps.Err())
				}
			}
		})
	}
}

func hasKey(ps config.Problems, key string) bool {
	for _, p := range ps {
		if p.Key == key {
			return true
		}
	}
	return false
}

func TestEncodeRoundTrip(t *testing.T) {
	withTLS := config.Default()
	withTLS.HTTPTrackers[0].TLS = &config.TLSConfig{SSLCertPath: `C:\certs\"a".pem`, SSLKeyPath: "k\tey\x01.pem"}
	withTLS.HTTPAPI.AccessTokens = config.AccessTokens{"admin": "tok\"en\\", "with space": "x", "ünï": "z", "a.b": "w"}
	withTLS.Core.PrivateMode = &config.PrivateMode{}
	withTLS.Core.Private = true
	withTLS.UDPTrackers = nil
	withTLS.HTTPTrackers = append(withTLS.HTTPTrackers, config.HTTPTracker{BindAddress: ap("[fe80::1%eth0]:0"), MaxScrapeTorrents: 3, TrackerUsageStatistics: true})
	noAPI := config.Default()
	noAPI.HTTPAPI = nil
	noAPI.HTTPTrackers = nil
	noAPI.UDPTrackers[0].TrackerUsageStatistics = true

	cases := map[string]*config.Config{"default": config.Default(), "tls and odd strings": withTLS, "no api": noAPI}
	for _, f := range []string{"full.toml", "develop.toml", "torrust/tracker.development.sqlite3.toml", "torrust/tracker.container.mysql.toml"} {
		c, err := config.Parse(readTestdata(t, f))
		if err != nil {
			t.Fatal(err)
		}
		cases[f] = c
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := c.Encode(&buf); err != nil {
				t.Fatal(err)
			}
			back, err := config.Parse(buf.Bytes())
			if err != nil {
				t.Fatalf("encoded config does not load: %v\n%s", err, buf.String())
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip changed it:\ngot  %#v\nwant %#v\n%s", back, c, buf.String())
			}
		})
	}
}

// TestEncodeWritesEveryKey guards against a field added to the schema but
// not to Encode: every TOML key of the schema must appear in the encoding
// of a configuration that has every section.
func TestEncodeWritesEveryKey(t *testing.T) {
	c, err := config.Parse(readTestdata(t, "full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	c.UDPTrackers[0].TrackerUsageStatistics = true
	c.HTTPTrackers[0].TrackerUsageStatistics = true
	var buf bytes.Buffer
	if err := c.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	var walk func(t *testing.T, typ reflect.Type, path string)
	walk = func(t *testing.T, typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ.PkgPath() != reflect.TypeFor[config.Config]().PkgPath() {
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := f.Tag.Get("toml")
			if name == "-" {
				continue // not a key (TLSConfig.Spelling)
			}
			if name == "" {
				t.Errorf("%s.%s has no toml tag", typ.Name(), f.Name)
				continue
			}
			key := strings.TrimPrefix(path+"."+name, ".")
			torrust := strings.Replace(key, "tls_config", "tsl_config", 1) // written as the file spelled it
			if !strings.Contains(text, "\n"+name+" = ") && !strings.Contains(text, "["+key+"]") && !strings.Contains(text, "["+torrust+"]") {
				t.Errorf("Encode does not write %s", key)
			}
			walk(t, f.Type, key)
		}
	}
	walk(t, reflect.TypeFor[config.Config](), "")
}

func TestFileProblems(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		toml string
		want []string // keys with a problem
	}{
		{"no tls", "[[http_trackers]]\n[http_api]\n", nil},
		{"both readable", fmt.Sprintf("[[http_trackers]]\n[http_trackers.tsl_config]\nssl_cert_path = %q\nssl_key_path = %q\n", cert, cert), nil},
		{"tracker key missing", fmt.Sprintf("[[http_trackers]]\n[http_trackers.tsl_config]\nssl_cert_path = %q\nssl_key_path = %q\n", cert, missing),
			[]string{"http_trackers[0].tsl_config.ssl_key_path"}},
		{"api both missing", fmt.Sprintf("[http_api]\n[http_api.tsl_config]\nssl_cert_path = %q\nssl_key_path = %q\n", missing, missing),
			[]string{"http_api.tsl_config.ssl_cert_path", "http_api.tsl_config.ssl_key_path"}},
		{"tls_config spelling kept", fmt.Sprintf("[http_api]\n[http_api.tls_config]\nssl_cert_path = %q\nssl_key_path = %q\n", cert, missing),
			[]string{"http_api.tls_config.ssl_key_path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.toml))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range c.FileProblems() {
				got = append(got, p.Key)
				if !strings.Contains(p.Msg, "missing.pem") || !strings.Contains(p.Msg, "no such file") {
					t.Errorf("%s: message %q should name the file and why", p.Key, p.Msg)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems at %v, want %v", got, tt.want)
			}
		})
	}
}
