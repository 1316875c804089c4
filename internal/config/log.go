package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

const redacted = "REDACTED"

// LogValue is the effective configuration for the start-up log, with access
// tokens and any database password redacted.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("schema_version", c.Metadata.SchemaVersion),
		slog.String("log_threshold", c.Logging.Threshold),
		slog.Any("core", c.Core),
	}
	for i, u := range c.UDPTrackers {
		attrs = append(attrs, slog.Any("udp_trackers."+strconv.Itoa(i), u))
	}
	for i, h := range c.HTTPTrackers {
		attrs = append(attrs, slog.Any("http_trackers."+strconv.Itoa(i), h))
	}
	for i, w := range c.WebSocketTrackers {
		attrs = append(attrs, slog.Any("websocket_trackers."+strconv.Itoa(i), w))
	}
	if c.HTTPAPI != nil {
		attrs = append(attrs, slog.Any("http_api", *c.HTTPAPI))
	}
	attrs = append(attrs, slog.String("health_check_api.bind_address", c.HealthCheckAPI.BindAddress.String()))
	return slog.GroupValue(attrs...)
}

// LogValue shows the [core] settings; the database redacts itself.
func (c Core) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("mode", c.Mode()),
		slog.Uint64("interval", uint64(c.AnnouncePolicy.Interval)),
		slog.Uint64("interval_min", uint64(c.AnnouncePolicy.IntervalMin)),
		slog.Uint64("max_peers_per_announce", uint64(c.AnnouncePolicy.MaxPeersPerAnnounce)),
		slog.Any("database", c.Database),
		slog.Uint64("inactive_peer_cleanup_interval", uint64(c.InactivePeerCleanupInterval)),
		slog.String("external_ip", c.Net.ExternalIP.String()),
		slog.Bool("on_reverse_proxy", c.Net.OnReverseProxy),
		slog.Bool("check_keys_expiration", c.CheckKeysExpiration()),
		slog.Uint64("max_peer_timeout", uint64(c.TrackerPolicy.MaxPeerTimeout)),
		slog.Bool("persistent_torrent_completed_stat", c.TrackerPolicy.PersistentTorrentCompletedStat),
		slog.Bool("remove_peerless_torrents", c.TrackerPolicy.RemovePeerlessTorrents),
		slog.Bool("tracker_usage_statistics", c.TrackerUsageStatistics),
		slog.Any("swarm", c.Swarm),
	)
}

// LogValue shows the swarm store with the Redis password redacted.
func (s Swarm) LogValue() slog.Value {
	if s.Store != StoreRedis {
		return slog.GroupValue(slog.String("store", s.Store), slog.String("snapshot_path", s.SnapshotPath))
	}
	return slog.GroupValue(slog.String("store", s.Store), slog.String("redis_url", RedactURL(s.RedisURL)),
		slog.String("redis_key_prefix", s.RedisKeyPrefix), slog.Bool("redis_peer_detail", s.RedisPeerDetail))
}

// String is s with the Redis password redacted, so %v cannot leak it.
func (s Swarm) String() string {
	return fmt.Sprintf("{store:%s redis_url:%s redis_key_prefix:%s snapshot_path:%s snapshot_interval:%d}",
		s.Store, RedactURL(s.RedisURL), s.RedisKeyPrefix, s.SnapshotPath, s.SnapshotInterval)
}

// RedactURL is raw with a password replaced by REDACTED; a URL that does
// not parse is hidden entirely.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	return u.String()
}

// LogValue shows the driver and the path with any password redacted.
func (d Database) LogValue() slog.Value {
	return slog.GroupValue(slog.String("driver", d.Driver), slog.String("path", d.RedactedPath()))
}

// String is d with the password redacted, so %v cannot leak it either.
func (d Database) String() string { return d.Driver + " " + d.RedactedPath() }

// RedactedPath is Path with a URL's password (and any password=... query
// parameter) replaced by REDACTED. A URL that does not parse is hidden
// entirely, since where its password is cannot be told.
func (d Database) RedactedPath() string {
	if d.Driver == DriverSQLite3 && !strings.Contains(d.Path, "://") {
		return d.Path
	}
	u, err := url.Parse(d.Path)
	if err != nil {
		return redacted
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", redacted)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// LogValue shows the listener.
func (u UDPTracker) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("bind_address", u.BindAddress.String()),
		slog.Uint64("cookie_lifetime", uint64(u.CookieLifetime)),
		slog.Int("sockets", u.Sockets),
		slog.Uint64("max_connection_id_errors_per_ip", uint64(u.MaxConnectionIDErrorsPerIP)),
		slog.Bool("ipv6_v6only", u.IPv6V6Only),
	)
}

// LogValue shows the listener.
func (h HTTPTracker) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("bind_address", h.BindAddress.String()),
		slog.Bool("tls", h.TLS != nil),
		slog.Int("max_scrape_torrents", h.MaxScrapeTorrents),
		slog.Uint64("max_connections", uint64(h.MaxConnections)),
		slog.Uint64("max_connections_per_ip", uint64(h.MaxConnectionsPerIP)),
		slog.Bool("ipv6_v6only", h.IPv6V6Only),
	}
	if h.TLS != nil {
		attrs = append(attrs, slog.String("ssl_cert_path", h.TLS.SSLCertPath), slog.String("ssl_key_path", h.TLS.SSLKeyPath))
	}
	return slog.GroupValue(attrs...)
}

// LogValue shows the API listener and its token labels, never the tokens.
func (a HTTPAPI) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("bind_address", a.BindAddress.String()),
		slog.Bool("tls", a.TLS != nil),
		slog.Any("access_tokens", a.AccessTokens),
	}
	if a.TLS != nil {
		attrs = append(attrs, slog.String("ssl_cert_path", a.TLS.SSLCertPath), slog.String("ssl_key_path", a.TLS.SSLKeyPath))
	}
	return slog.GroupValue(attrs...)
}

// LogValue lists the labels with the tokens redacted.
func (t AccessTokens) LogValue() slog.Value {
	labels := t.Labels()
	attrs := make([]slog.Attr, len(labels))
	for i, l := range labels {
		attrs[i] = slog.String(l, redacted)
	}
	return slog.GroupValue(attrs...)
}

// Labels are the token labels, sorted.
func (t AccessTokens) Labels() []string {
	labels := make([]string, 0, len(t))
	for l := range t {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	return labels
}

// String shows the labels only, so printing a config cannot leak a token.
func (t AccessTokens) String() string {
	labels := t.Labels()
	for i, l := range labels {
		labels[i] = l + ":" + redacted
	}
	return "map[" + strings.Join(labels, " ") + "]"
}

// GoString shows the labels only, for %#v.
func (t AccessTokens) GoString() string {
	labels := t.Labels()
	for i, l := range labels {
		labels[i] = strconv.Quote(l) + ":" + strconv.Quote(redacted)
	}
	return "config.AccessTokens{" + strings.Join(labels, ", ") + "}"
}
