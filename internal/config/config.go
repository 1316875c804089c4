// Package config reads Starling's configuration: Torrust Tracker's TOML schema
// 2.0.0 (so an existing tracker.toml works unchanged) plus a few Starling keys,
// from built-in defaults < a TOML file or text < environment overrides.
//
// Nothing is mandatory. Unknown keys and invalid values are errors that name
// the key, and every problem is reported at once, because a typo in a
// security setting must never be ignored silently.
//
// The package imports no other Starling package: the daemon translates these
// plain fields into each component's own settings.
package config

import (
	"log/slog"
	"math"
	"net/netip"
	"time"
)

// Values of core.full_scrape.
const (
	FullScrapeOff    = "off"
	FullScrapeAPI    = "api"
	FullScrapePublic = "public"
)

// DefaultFullScrapeInterval is core.full_scrape_interval's default: a
// minute keeps the counts about as fresh as announces make them (clients
// announce every interval, 120 s by default) while a build of a million
// torrents, about a second of one core, runs at most once a minute.
const DefaultFullScrapeInterval = 60

// MaxFullScrapeInterval bounds core.full_scrape_interval (a day).
const MaxFullScrapeInterval = 86400

// SchemaVersion is the only Torrust configuration schema Starling reads.
const SchemaVersion = "2.0.0"

// Database drivers.
const (
	DriverSQLite3    = "sqlite3"
	DriverMySQL      = "mysql"
	DriverPostgreSQL = "postgresql"
)

// DefaultSQLitePath is Torrust's default database file, relative to the
// working directory.
const DefaultSQLitePath = "./storage/tracker/lib/database/sqlite3.db"

// Limits on values that size per-request work or per-listener resources. They
// are far above any sensible setting and exist so a typo (an extra zero or
// three) is caught instead of turning into huge buffers.
const (
	MaxPeersPerAnnounceLimit = 1000
	MaxScrapeTorrentsLimit   = 1000
	// DefaultMaxConnectionsPerIP is [[http_trackers]] max_connections_per_ip's default.
	DefaultMaxConnectionsPerIP = 256
	MaxSocketsPerListener      = 256
)

// Config is the whole configuration. Field names follow the TOML keys.
type Config struct {
	Metadata Metadata `toml:"metadata"`
	Logging  Logging  `toml:"logging"`
	Core     Core     `toml:"core"`
	// UDPTrackers are the UDP listeners. In a file, no [[udp_trackers]]
	// means no UDP tracker (as in Torrust); only the file-less defaults
	// start one.
	UDPTrackers []UDPTracker `toml:"udp_trackers"`
	// HTTPTrackers are the HTTP listeners; absent in a file means none.
	HTTPTrackers []HTTPTracker `toml:"http_trackers"`
	// WebSocketTrackers are the WebSocket (WebTorrent) listeners, a
	// Starling extension (websocket.go); absent means none.
	WebSocketTrackers []WebSocketTracker `toml:"websocket_trackers"`
	// HTTPAPI is the REST API; nil (no [http_api] in a file) means off.
	HTTPAPI        *HTTPAPI       `toml:"http_api"`
	HealthCheckAPI HealthCheckAPI `toml:"health_check_api"`
}

// Metadata identifies the file's schema.
type Metadata struct {
	App           string `toml:"app"`     // "torrust-tracker" (or "starling")
	Purpose       string `toml:"purpose"` // "configuration"
	SchemaVersion string `toml:"schema_version"`
}

// Logging holds the log threshold.
type Logging struct {
	// Threshold is one of off, error, warn, info, debug, trace.
	Threshold string `toml:"threshold"`
}

// Level is the slog level for the threshold; trace is below debug. Use Off
// to tell whether logging is disabled.
func (l Logging) Level() slog.Level {
	switch l.Threshold {
	case "error":
		return slog.LevelError
	case "warn":
		return slog.LevelWarn
	case "debug":
		return slog.LevelDebug
	case "trace":
		return slog.LevelDebug - 4
	case "off":
		return slog.Level(math.MaxInt32)
	default:
		return slog.LevelInfo
	}
}

// Off reports whether logging is disabled.
func (l Logging) Off() bool { return l.Threshold == "off" }

// Core holds the tracker rules, the database and the network policy.
type Core struct {
	AnnouncePolicy AnnouncePolicy `toml:"announce_policy"`
	Database       Database       `toml:"database"`
	// FullScrape (a Starling key) answers an HTTP scrape without info_hash
	// with every torrent's counts: FullScrapeOff (refused, as in Torrust),
	// FullScrapeAPI (only with an admin token) or FullScrapePublic.
	FullScrape string `toml:"full_scrape"`
	// FullScrapeInterval is how long one full-scrape answer is served
	// before the next request rebuilds it, in seconds (a Starling key).
	FullScrapeInterval Seconds `toml:"full_scrape_interval"`
	// Limits caps the torrents and peers the tracker keeps (a Starling
	// section).
	Limits Limits `toml:"limits"`
	// InactivePeerCleanupInterval is how often inactive peers are swept,
	// in seconds; 0 disables the sweep.
	InactivePeerCleanupInterval Seconds `toml:"inactive_peer_cleanup_interval"`
	Listed                      bool    `toml:"listed"`
	Net                         Net     `toml:"net"`
	Private                     bool    `toml:"private"`
	// PrivateMode is nil when the file has no [core.private_mode] section;
	// keys' expiry is then still checked. Use CheckKeysExpiration.
	PrivateMode *PrivateMode `toml:"private_mode"`
	// Swarm is where the swarms live and how they survive a restart (a
	// Starling section).
	Swarm                  Swarm         `toml:"swarm"`
	TrackerPolicy          TrackerPolicy `toml:"tracker_policy"`
	TrackerUsageStatistics bool          `toml:"tracker_usage_statistics"`
}

// CheckKeysExpiration reports whether expired peer keys are refused.
func (c Core) CheckKeysExpiration() bool {
	return c.PrivateMode == nil || c.PrivateMode.CheckKeysExpiration
}

// Mode names the mode as Torrust does: public, listed, private,
// private_listed.
func (c Core) Mode() string {
	switch {
	case c.Private && c.Listed:
		return "private_listed"
	case c.Private:
		return "private"
	case c.Listed:
		return "listed"
	default:
		return "public"
	}
}

// AnnouncePolicy is what announce answers tell clients.
type AnnouncePolicy struct {
	Interval    Seconds `toml:"interval"`
	IntervalMin Seconds `toml:"interval_min"`
	// MaxPeersPerAnnounce caps the peers in one answer (newer Torrust key).
	MaxPeersPerAnnounce uint32 `toml:"max_peers_per_announce"`
}

// Database selects the persistence engine.
type Database struct {
	// Driver is sqlite3, mysql or postgresql.
	Driver string `toml:"driver"`
	// Path is the SQLite file, or for mysql/postgresql a URL such as
	// mysql://user:password@host:3306/db. It may hold a password: log the
	// Database (it redacts itself), never Path.
	Path string `toml:"path"`
}

// Net is the client address policy.
// Limits is [core.limits], a Starling section. At a limit, an announce
// that would add a torrent or a peer is refused ("tracker is full, try
// later") while the peers already there are served. 0 derives
// max_torrents and max_peers from the memory the process may use
// (GOMEMLIMIT, else the cgroup's limit, else the machine's memory), and
// leaves max_peers_per_torrent without a cap.
type Limits struct {
	MaxTorrents        uint64 `toml:"max_torrents"`
	MaxPeers           uint64 `toml:"max_peers"`
	MaxPeersPerTorrent uint64 `toml:"max_peers_per_torrent"`
	// CompletedBuffer is how many torrents' completed counts wait in memory
	// while the database is down (persistent_torrent_completed_stat); past
	// it, a torrent not yet waiting is dropped until its next completion.
	// 0: database.DefaultBufferLimit (1,000,000).
	CompletedBuffer uint64 `toml:"completed_buffer"`
}

// Swarm is [core.swarm], a Starling section: where the swarms live (in
// memory, or in Redis shared by several nodes) and the memory store's
// snapshot.
type Swarm struct {
	// Store is StoreMemory (the default) or StoreRedis.
	Store string `toml:"store"`
	// RedisURL is the Redis of StoreRedis: redis://, rediss:// (TLS) or
	// unix://, user and password in the URL; for a Cluster, any node (more
	// as ?addr=host:port).
	RedisURL string `toml:"redis_url"`
	// RedisKeyPrefix starts every key the store writes; nodes with the
	// same prefix share their swarms.
	RedisKeyPrefix string `toml:"redis_key_prefix"`
	// RedisPeerDetail keeps each peer's peer_id, uploaded, downloaded,
	// left and event in Redis (the API's torrent view, answers with peer
	// ids), about three times the memory. Off by default: issue 17 asks
	// for at most 40 bytes of Redis per IPv4 peer in small swarms, and no
	// layout that keeps the 20-byte peer_id meets it (see README).
	RedisPeerDetail bool `toml:"redis_peer_detail"`
	// SnapshotPath is the file the swarms are written to on a graceful
	// stop and every SnapshotInterval, and read from at start; "" turns
	// snapshots off.
	SnapshotPath string `toml:"snapshot_path"`
	// SnapshotInterval is the seconds between snapshots while running; 0
	// writes one only on a graceful stop.
	SnapshotInterval Seconds `toml:"snapshot_interval"`
}

// The swarm stores core.swarm.store names.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
)

// DefaultRedisKeyPrefix is core.swarm.redis_key_prefix's default.
const DefaultRedisKeyPrefix = "starling:"

// DefaultSnapshotPath is core.swarm.snapshot_path's default, beside the
// default SQLite database.
const DefaultSnapshotPath = "./storage/tracker/lib/swarms.snapshot"

// DefaultSnapshotInterval is core.swarm.snapshot_interval's default: a
// SIGKILL or a crash loses at most five minutes of swarm changes.
const DefaultSnapshotInterval = 300

// MaxSnapshotInterval bounds core.swarm.snapshot_interval (a day).
const MaxSnapshotInterval = 86400

type Net struct {
	// ExternalIP replaces loopback client addresses when it is a specific
	// address; the default 0.0.0.0 keeps them.
	ExternalIP netip.Addr `toml:"external_ip"`
	// OnReverseProxy takes the HTTP client address from the right-most
	// X-Forwarded-For entry.
	OnReverseProxy bool `toml:"on_reverse_proxy"`
}

// PrivateMode tunes private mode.
type PrivateMode struct {
	CheckKeysExpiration bool `toml:"check_keys_expiration"`
}

// TrackerPolicy governs peer expiry and torrent removal.
type TrackerPolicy struct {
	// MaxPeerTimeout is how long a silent peer stays listed, in seconds.
	MaxPeerTimeout                 Seconds `toml:"max_peer_timeout"`
	PersistentTorrentCompletedStat bool    `toml:"persistent_torrent_completed_stat"`
	RemovePeerlessTorrents         bool    `toml:"remove_peerless_torrents"`
}

// UDPTracker is one UDP listener.
type UDPTracker struct {
	// BindAddress is ip:port; port 0 picks a free port.
	BindAddress netip.AddrPort `toml:"bind_address"`
	// CookieLifetime is how long a connection id stays valid, in seconds.
	// Newer Torrust writes it as { secs = 120, nanos = 0 }; both forms load.
	CookieLifetime Seconds `toml:"cookie_lifetime"`
	// Sockets is the number of SO_REUSEPORT sockets bound to BindAddress,
	// each with its own reader; 0 means one per CPU core.
	Sockets int `toml:"sockets"`
	// MaxConnectionIDErrorsPerIP is how many error answers (to bad or
	// expired connection ids and to malformed requests) one source IP gets
	// per minute; further ones are dropped unanswered until the minute is
	// over, so the tracker cannot be used to reflect traffic and a broken
	// client cannot flood it. Valid requests are always answered. 0 means
	// no limit.
	MaxConnectionIDErrorsPerIP uint32 `toml:"max_connection_id_errors_per_ip"`
	// IPv6V6Only sets IPV6_V6ONLY on an IPv6 socket (newer Torrust key).
	IPv6V6Only bool `toml:"ipv6_v6only"`
	// TrackerUsageStatistics is accepted from newer Torrust files; Starling's
	// counters follow core.tracker_usage_statistics for every listener.
	TrackerUsageStatistics bool `toml:"tracker_usage_statistics"`
}

// HTTPTracker is one HTTP(S) listener.
type HTTPTracker struct {
	BindAddress netip.AddrPort `toml:"bind_address"`
	// TLS turns the listener into HTTPS. Read from tls_config or Torrust's
	// spelling tsl_config.
	TLS *TLSConfig `toml:"tls_config" alias:"tsl_config"`
	// MaxScrapeTorrents caps the info hashes answered per scrape; the rest
	// of the request is ignored.
	MaxScrapeTorrents int `toml:"max_scrape_torrents"`
	// MaxConnections caps the connections the listener holds (0: no cap
	// but the process's open-file limit), and MaxConnectionsPerIP those
	// from one address (0: no cap), so a slowloris or a connection flood
	// from one address cannot starve the others. Starling keys.
	MaxConnections      uint32 `toml:"max_connections"`
	MaxConnectionsPerIP uint32 `toml:"max_connections_per_ip"`
	// IPv6V6Only sets IPV6_V6ONLY on an IPv6 socket (newer Torrust key).
	IPv6V6Only bool `toml:"ipv6_v6only"`
	// TrackerUsageStatistics is accepted from newer Torrust files; see
	// UDPTracker.TrackerUsageStatistics.
	TrackerUsageStatistics bool `toml:"tracker_usage_statistics"`
}

// TLSConfig names the certificate and key files (PEM).
type TLSConfig struct {
	SSLCertPath string `toml:"ssl_cert_path"`
	SSLKeyPath  string `toml:"ssl_key_path"`
	// Spelling is the table's name as the file wrote it: "tsl_config"
	// (Torrust's) or "" for tls_config. Problems name the key the
	// operator can find in the file, and Encode writes it back as read.
	Spelling string `toml:"-"`
}

// name is the table's name, as the file spells it.
func (t *TLSConfig) name() string {
	if t.Spelling != "" {
		return t.Spelling
	}
	return "tls_config"
}

// key is the table's key under parent, as the file spells it.
func (t *TLSConfig) key(parent string) string { return parent + "." + t.name() }

// HTTPAPI is the REST API listener.
type HTTPAPI struct {
	BindAddress netip.AddrPort `toml:"bind_address"`
	TLS         *TLSConfig     `toml:"tls_config" alias:"tsl_config"`
	// AccessTokens maps a label to a token; every token has full access.
	AccessTokens AccessTokens `toml:"access_tokens"`
}

// AccessTokens maps labels to API tokens. Printing it shows the labels only.
type AccessTokens map[string]string

// HealthCheckAPI is the health-check listener; it is always on.
type HealthCheckAPI struct {
	BindAddress netip.AddrPort `toml:"bind_address"`
}

// Seconds is a duration in whole seconds, as Torrust writes them.
type Seconds uint32

// Duration converts s to a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// Default is the configuration used when there is no configuration at all:
// Torrust's defaults plus one UDP tracker on 0.0.0.0:6969, one HTTP tracker on
// 0.0.0.0:7070 and the API on 127.0.0.1:1212. It has no access token, so no
// well-known token ever grants access.
func Default() *Config {
	c := base()
	c.UDPTrackers = []UDPTracker{DefaultUDPTracker()}
	c.HTTPTrackers = []HTTPTracker{DefaultHTTPTracker()}
	api := DefaultHTTPAPI()
	c.HTTPAPI = &api
	return c
}

// base is what a configuration file starts from: the defaults of every key,
// but no UDP, HTTP or API listener unless the file lists them, as in Torrust.
func base() *Config {
	return &Config{
		Metadata: Metadata{App: "torrust-tracker", Purpose: "configuration", SchemaVersion: SchemaVersion},
		Logging:  Logging{Threshold: "info"},
		Core: Core{
			AnnouncePolicy:              AnnouncePolicy{Interval: 120, IntervalMin: 120, MaxPeersPerAnnounce: 74},
			Database:                    Database{Driver: DriverSQLite3, Path: DefaultSQLitePath},
			FullScrape:                  FullScrapeOff,
			FullScrapeInterval:          DefaultFullScrapeInterval,
			InactivePeerCleanupInterval: 600,
			Net:                         Net{ExternalIP: netip.IPv4Unspecified()},
			Swarm:                       Swarm{Store: StoreMemory, RedisKeyPrefix: DefaultRedisKeyPrefix, SnapshotPath: DefaultSnapshotPath, SnapshotInterval: DefaultSnapshotInterval},
			TrackerPolicy:               TrackerPolicy{MaxPeerTimeout: 900, RemovePeerlessTorrents: true},
			TrackerUsageStatistics:      true,
		},
		HealthCheckAPI: HealthCheckAPI{BindAddress: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 1313)},
	}
}

// DefaultUDPTracker is a [[udp_trackers]] entry with every key defaulted.
func DefaultUDPTracker() UDPTracker {
	return UDPTracker{
		BindAddress:                netip.AddrPortFrom(netip.IPv4Unspecified(), 6969),
		CookieLifetime:             120,
		MaxConnectionIDErrorsPerIP: 10,
	}
}

// DefaultHTTPTracker is a [[http_trackers]] entry with every key defaulted.
func DefaultHTTPTracker() HTTPTracker {
	return HTTPTracker{
		BindAddress:       netip.AddrPortFrom(netip.IPv4Unspecified(), 7070),
		MaxScrapeTorrents: 74,
		// Far above what clients behind one NAT keep open to a tracker,
		// far below the file limit.
		MaxConnectionsPerIP: DefaultMaxConnectionsPerIP,
	}
}

// DefaultHTTPAPI is an [http_api] section with every key defaulted: local
// only, and no token.
func DefaultHTTPAPI() HTTPAPI {
	return HTTPAPI{
		BindAddress:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 1212),
		AccessTokens: AccessTokens{},
	}
}
