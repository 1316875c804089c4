package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Thresholds are the accepted logging thresholds.
var Thresholds = []string{"off", "error", "warn", "info", "debug", "trace"}

// wellKnownTokens are tokens published in Torrust's example files; anyone can
// guess them.
var wellKnownTokens = []string{"MyAccessToken"}

// Validate checks the values of a configuration built or changed in code;
// Parse and Load already do. The error is Problems.
func (c *Config) Validate() error { return c.validate().Err() }

func (c *Config) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, &Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	// dep marks the last problem as depending on other keys too.
	dep := func(keys ...string) { ps[len(ps)-1].deps = keys }

	switch c.Metadata.App {
	case "torrust-tracker", "starling":
	default:
		add("metadata.app", "%q is not an app this file can be for; use \"torrust-tracker\"", c.Metadata.App)
	}
	if c.Metadata.Purpose != "configuration" {
		add("metadata.purpose", "%q is not a purpose of this file; use \"configuration\"", c.Metadata.Purpose)
	}
	if c.Metadata.SchemaVersion != SchemaVersion {
		add("metadata.schema_version", "unsupported configuration version %q: Starling reads Torrust's schema %q", c.Metadata.SchemaVersion, SchemaVersion)
	}
	if !slices.Contains(Thresholds, c.Logging.Threshold) {
		add("logging.threshold", "%q is not a threshold; use one of %s", c.Logging.Threshold, strings.Join(Thresholds, ", "))
	}

	ap := c.Core.AnnouncePolicy
	if ap.Interval == 0 {
		add("core.announce_policy.interval", "must be at least 1 second (clients wait this long between announces)")
	}
	if ap.IntervalMin == 0 {
		add("core.announce_policy.interval_min", "must be at least 1 second (clients must not announce faster than this)")
	}
	if ap.MaxPeersPerAnnounce == 0 || ap.MaxPeersPerAnnounce > MaxPeersPerAnnounceLimit {
		add("core.announce_policy.max_peers_per_announce", "must be between 1 and %d, got %d (74 is the usual value)", MaxPeersPerAnnounceLimit, ap.MaxPeersPerAnnounce)
	}

	// The path is judged by the driver: if the driver is unreadable, so is
	// the judgement.
	c.validateDatabase(func(key, format string, args ...any) {
		add(key, format, args...)
		if key == "core.database.path" {
			dep("core.database.driver")
		}
	})

	if c.Core.TrackerPolicy.MaxPeerTimeout == 0 {
		add("core.tracker_policy.max_peer_timeout", "must be at least 1 second; 0 would forget every peer at once")
	}
	switch c.Core.FullScrape {
	case FullScrapeOff, FullScrapeAPI:
	case FullScrapePublic:
		if c.Core.Private {
			add("core.full_scrape", "\"public\" would list a private tracker's torrents to anyone; use \"api\" (admin token only) or \"off\"")
			dep("core.private")
		}
	default:
		add("core.full_scrape", "%q is not a full-scrape setting; use \"off\", \"api\" (admin token only) or \"public\"", c.Core.FullScrape)
	}
	c.Core.Swarm.validate(add, dep)
	if i := c.Core.Swarm.SnapshotInterval; i > MaxSnapshotInterval {
		add("core.swarm.snapshot_interval", "must be at most %d seconds (0 writes a snapshot only on a graceful stop), got %d", MaxSnapshotInterval, i)
	}
	if p := c.Core.Swarm.SnapshotPath; p != "" && (strings.HasSuffix(p, "/") || strings.ContainsRune(p, 0)) {
		add("core.swarm.snapshot_path", "%q is not a file name; name the snapshot file, or \"\" to turn snapshots off", p)
	}
	if i := c.Core.FullScrapeInterval; i == 0 || i > MaxFullScrapeInterval {
		add("core.full_scrape_interval", "must be between 1 and %d seconds, got %d (%d is the default)", MaxFullScrapeInterval, i, DefaultFullScrapeInterval)
	}
	if c.Core.PrivateMode != nil && !c.Core.Private {
		add("core.private_mode", "Private mode section in configuration can only be included when the tracker is running in private mode: set core.private = true or remove [core.private_mode]")
		dep("core.private")
	}

	udp := map[netip.AddrPort]string{}
	tcp := map[netip.AddrPort]string{}
	claim := func(seen map[netip.AddrPort]string, ap netip.AddrPort, key string) {
		if ap.Port() == 0 {
			return // each port-0 listener gets its own free port
		}
		if other, ok := seen[ap]; ok {
			add(key, "%s is already the bind_address of %s; two listeners cannot share one address", ap, other)
			dep(other + ".bind_address")
			return
		}
		seen[ap] = strings.TrimSuffix(key, ".bind_address")
	}
	for i, u := range c.UDPTrackers {
		key := fmt.Sprintf("udp_trackers[%d]", i)
		claim(udp, u.BindAddress, key+".bind_address")
		if u.CookieLifetime == 0 {
			add(key+".cookie_lifetime", "must be at least 1 second (connection ids live this long)")
		}
		if u.Sockets < 0 || u.Sockets > MaxSocketsPerListener {
			add(key+".sockets", "must be between 0 (one per CPU core) and %d, got %d", MaxSocketsPerListener, u.Sockets)
		}
	}
	for i, h := range c.HTTPTrackers {
		key := fmt.Sprintf("http_trackers[%d]", i)
		claim(tcp, h.BindAddress, key+".bind_address")
		if h.MaxScrapeTorrents < 1 || h.MaxScrapeTorrents > MaxScrapeTorrentsLimit {
			add(key+".max_scrape_torrents", "must be between 1 and %d, got %d (74 is the usual value)", MaxScrapeTorrentsLimit, h.MaxScrapeTorrents)
		}
		validateTLS(h.TLS, key, add)
	}
	c.validateWebSocketTrackers(add, func(ap netip.AddrPort, key string) { claim(tcp, ap, key) })
	if a := c.HTTPAPI; a != nil {
		claim(tcp, a.BindAddress, "http_api.bind_address")
		validateTLS(a.TLS, "http_api", add)
		labels := make([]string, 0, len(a.AccessTokens))
		for l := range a.AccessTokens {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		for _, l := range labels {
			key := "http_api.access_tokens." + quoteKeyIfNeeded(l)
			if l == "" {
				add(key, "a token needs a non-empty label")
			}
			if a.AccessTokens[l] == "" {
				add(key, "is empty; an empty token would let anyone in: set a long random token or remove the entry")
			}
		}
	}
	claim(tcp, c.HealthCheckAPI.BindAddress, "health_check_api.bind_address")
	return ps
}

func (c *Config) validateDatabase(add func(key, format string, args ...any)) {
	d := c.Core.Database
	const key = "core.database.path"
	switch d.Driver {
	case DriverSQLite3:
		if d.Path == "" {
			add(key, "is empty; name the SQLite file, e.g. %q", DefaultSQLitePath)
		} else if strings.Contains(d.Path, "://") {
			add(key, "looks like a URL, but driver is sqlite3; set core.database.driver to mysql or postgresql, or give a file path")
		}
	case DriverMySQL, DriverPostgreSQL:
		schemes := []string{"mysql"}
		example := "mysql://user:password@host:3306/database"
		if d.Driver == DriverPostgreSQL {
			schemes = []string{"postgres", "postgresql"}
			example = "postgresql://user:password@host:5432/database"
		}
		// Messages here never repeat the path: it may hold a password.
		u, err := url.Parse(d.Path)
		switch {
		case d.Path == "":
			add(key, "is empty; driver %s needs a URL like %s", d.Driver, example)
		case err != nil:
			add(key, "is not a valid URL; driver %s needs a URL like %s", d.Driver, example)
		case !slices.Contains(schemes, u.Scheme):
			add(key, "must be a %s:// URL for driver %s, like %s", schemes[0], d.Driver, example)
		case u.Host == "":
			add(key, "has no host; driver %s needs a URL like %s", d.Driver, example)
		case strings.Trim(u.Path, "/") == "":
			add(key, "names no database; driver %s needs a URL like %s", d.Driver, example)
		}
	default:
		add("core.database.driver", "%q is not a driver; use sqlite3, mysql or postgresql", d.Driver)
	}
}

func validateTLS(t *TLSConfig, parent string, add func(key, format string, args ...any)) {
	if t == nil {
		return
	}
	key := t.key(parent)
	switch {
	case t.SSLCertPath == "" && t.SSLKeyPath == "":
		add(key, "names neither ssl_cert_path nor ssl_key_path; give both PEM files, or remove the section to serve plain HTTP")
	case t.SSLCertPath == "":
		add(key+".ssl_cert_path", "is missing; TLS needs both the certificate and the key file")
	case t.SSLKeyPath == "":
		add(key+".ssl_key_path", "is missing; TLS needs both the certificate and the key file")
	}
}

// Warnings lists settings that are valid but probably not what the operator
// wants. They never contain a token.
func (c *Config) Warnings() []string {
	var ws []string
	if a := c.HTTPAPI; a != nil {
		if len(a.AccessTokens) == 0 {
			ws = append(ws, "http_api has no access_tokens: the REST API will refuse every request; add one under [http_api.access_tokens]")
		}
		labels := make([]string, 0, len(a.AccessTokens))
		for l, tok := range a.AccessTokens {
			if slices.Contains(wellKnownTokens, tok) {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		for _, l := range labels {
			ws = append(ws, fmt.Sprintf("http_api.access_tokens.%s is the example token published with Torrust; anyone can guess it: replace it with a long random token", quoteKeyIfNeeded(l)))
		}
	}
	if c.Core.FullScrape == FullScrapeAPI && (c.HTTPAPI == nil || len(c.HTTPAPI.AccessTokens) == 0) {
		ws = append(ws, "core.full_scrape is \"api\" but there is no [http_api.access_tokens] token: every full scrape will be refused; add a token or set full_scrape = \"public\"")
	}
	// Torrust starts with this (its defaults are 120 and 120, so lowering
	// interval alone gives it), and a drop-in replacement must start where
	// it does; the announce answers carry both values as set.
	if ap := c.Core.AnnouncePolicy; ap.Interval > 0 && ap.IntervalMin > ap.Interval {
		ws = append(ws, fmt.Sprintf("core.announce_policy.interval_min (%d) is more than interval (%d): clients are asked to announce every %d s but never more often than every %d s; set interval_min to at most interval", ap.IntervalMin, ap.Interval, ap.Interval, ap.IntervalMin))
	}
	return ws
}

// FileProblems reports the files the configuration names that cannot be
// read: the TLS certificates and keys, which Torrust requires to exist.
// Parse does not look at the file system (a configuration may be checked
// on another machine than the one it runs on); `starling config check`
// calls this too, so that it finds what would stop `serve`.
func (c *Config) FileProblems() Problems {
	var ps Problems
	check := func(key, path string) {
		if path == "" {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			ps = append(ps, &Problem{Key: key, Msg: fmt.Sprintf("cannot read %q: %v", path, errors.Unwrap(err))})
			return
		}
		f.Close()
	}
	tlsFiles := func(t *TLSConfig, parent string) {
		if t != nil {
			key := t.key(parent)
			check(key+".ssl_cert_path", t.SSLCertPath)
			check(key+".ssl_key_path", t.SSLKeyPath)
		}
	}
	for i, h := range c.HTTPTrackers {
		tlsFiles(h.TLS, fmt.Sprintf("http_trackers[%d]", i))
	}
	for i, w := range c.WebSocketTrackers {
		tlsFiles(w.TLS, fmt.Sprintf("websocket_trackers[%d]", i))
	}
	if a := c.HTTPAPI; a != nil {
		tlsFiles(a.TLS, "http_api")
	}
	return ps
}

// validate checks the swarm store's keys.
func (sw Swarm) validate(add func(key, format string, args ...any), dep func(keys ...string)) {
	switch sw.Store {
	case StoreMemory:
		return
	case StoreRedis:
	default:
		add("core.swarm.store", "%q is not a swarm store; use \"memory\" (the default) or \"redis\" (swarms shared by several nodes)", sw.Store)
		return
	}
	if strings.ContainsAny(sw.RedisKeyPrefix, "{}") {
		add("core.swarm.redis_key_prefix", "%q holds { or }, which would change the keys' Redis Cluster hash slot; use another prefix", sw.RedisKeyPrefix)
	}
	key := "core.swarm.redis_url"
	if sw.RedisURL == "" {
		add(key, "store = \"redis\" needs the Redis URL, for example redis://127.0.0.1:6379/0 (rediss:// for TLS, unix:///path/redis.sock)")
		dep("core.swarm.store")
		return
	}
	u, err := url.Parse(sw.RedisURL)
	if err != nil {
		add(key, "is not a URL (%v); write redis://[user:password@]host:port/db, rediss://... or unix:///path", errors.Unwrap(err))
		return
	}
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
		add(key, "scheme %q: use redis://, rediss:// (TLS) or unix://", u.Scheme)
	case u.Scheme == "unix" && u.Path == "":
		add(key, "unix:// needs the socket's path, as unix:///run/redis/redis.sock")
	case u.Scheme != "unix" && u.Host == "":
		add(key, "names no host; write %s://host:6379/0", u.Scheme)
	case u.Scheme != "unix" && strings.Trim(u.Path, "/") != "":
		if _, err := strconv.Atoi(strings.Trim(u.Path, "/")); err != nil {
			add(key, "database %q is not a number; write /0 to /15 after the host, or nothing", strings.Trim(u.Path, "/"))
		}
	}
}
