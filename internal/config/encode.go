package config

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Encode writes c as a complete, commented TOML file that loads back to the
// same Config. Torrust reads it too (it ignores Starling's extra keys).
// Listener sections are written only when present, as an absent one means
// "no such listener" in a file.
func (c *Config) Encode(w io.Writer) error {
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}
	e.comment("Starling tracker configuration, in Torrust Tracker's schema 2.0.0.")
	e.comment("Every key is optional; a missing key takes its default. Any key can be")
	e.comment("overridden with STARLING_CONFIG_OVERRIDE_<SECTION>__<KEY>, e.g.")
	e.comment("STARLING_CONFIG_OVERRIDE_CORE__ANNOUNCE_POLICY__INTERVAL=300.")
	e.blank()

	e.table("metadata")
	e.str("app", c.Metadata.App)
	e.str("purpose", c.Metadata.Purpose)
	e.str("schema_version", c.Metadata.SchemaVersion)
	e.blank()

	e.table("logging")
	e.comment("off, error, warn, info, debug or trace.")
	e.str("threshold", c.Logging.Threshold)
	e.blank()

	e.table("core")
	e.comment("Starling: HTTP /scrape without info_hash lists every torrent. off (default, as Torrust),")
	e.comment("api (admin token only: ?token= or /api/v1/scrape/full) or public.")
	e.str("full_scrape", c.Core.FullScrape)
	e.comment("Seconds one full-scrape answer is served before it is rebuilt.")
	e.uint("full_scrape_interval", uint64(c.Core.FullScrapeInterval))
	e.comment("Seconds between sweeps of inactive peers; 0 turns the sweep off.")
	e.uint("inactive_peer_cleanup_interval", uint64(c.Core.InactivePeerCleanupInterval))
	e.comment("listed: only whitelisted torrents are tracked. private: peers need a key (/announce/<key>).")
	e.boolean("listed", c.Core.Listed)
	e.boolean("private", c.Core.Private)
	e.comment("false keeps every statistics counter at 0.")
	e.boolean("tracker_usage_statistics", c.Core.TrackerUsageStatistics)
	e.blank()

	e.table("core.announce_policy")
	e.comment("Seconds clients are told to wait between announces, and at least.")
	e.uint("interval", uint64(c.Core.AnnouncePolicy.Interval))
	e.uint("interval_min", uint64(c.Core.AnnouncePolicy.IntervalMin))
	e.comment("Most peers handed out per announce.")
	e.uint("max_peers_per_announce", uint64(c.Core.AnnouncePolicy.MaxPeersPerAnnounce))
	e.blank()

	e.table("core.database")
	e.comment("sqlite3 (path is a file), mysql (path = \"mysql://user:password@host:3306/db\")")
	e.comment("or postgresql (path = \"postgresql://user:password@host:5432/db\").")
	e.str("driver", c.Core.Database.Driver)
	e.str("path", c.Core.Database.Path)
	e.blank()

	e.table("core.net")
	e.comment("Replaces loopback client addresses when set to a specific address; 0.0.0.0 keeps them.")
	e.str("external_ip", c.Core.Net.ExternalIP.String())
	e.comment("true: the HTTP client address is the right-most X-Forwarded-For entry.")
	e.boolean("on_reverse_proxy", c.Core.Net.OnReverseProxy)
	e.blank()

	e.table("core.limits")
	e.comment("Starling: at a limit, announces that would add a torrent or a peer are refused (\"tracker is")
	e.comment("full, try later\"); known peers keep being served. 0: max_torrents and max_peers derived from")
	e.comment("the memory the process may use (logged at start); max_peers_per_torrent without a cap.")
	e.uint("max_torrents", c.Core.Limits.MaxTorrents)
	e.uint("max_peers", c.Core.Limits.MaxPeers)
	e.uint("max_peers_per_torrent", c.Core.Limits.MaxPeersPerTorrent)
	e.comment("Completed counts held while the database is down; past it a new torrent's count is dropped")
	e.comment("until its next completion (starling_completed_buffer_dropped_total). 0: 1000000.")
	e.uint("completed_buffer", c.Core.Limits.CompletedBuffer)
	e.blank()

	e.table("core.swarm")
	e.comment("Starling: where the swarms live: \"memory\", or \"redis\" to share them with other nodes")
	e.comment("(redis_url: redis://[user:password@]host:port/db, rediss:// for TLS, unix:///path;")
	e.comment("for a Cluster any one node; nodes with the same redis_key_prefix share their swarms).")
	e.str("store", c.Core.Swarm.Store)
	e.str("redis_url", c.Core.Swarm.RedisURL)
	e.str("redis_key_prefix", c.Core.Swarm.RedisKeyPrefix)
	e.comment("false: Redis keeps no peer_id, uploaded, downloaded or left per peer (a third of the memory;")
	e.comment("answers that are not compact carry no peer id, the API shows peers without them).")
	e.boolean("redis_peer_detail", c.Core.Swarm.RedisPeerDetail)
	e.comment("Starling: the memory store's swarms are written here on a graceful stop and every snapshot_interval")
	e.comment("seconds (0: only on stop), and read back at start; \"\" turns snapshots off.")
	e.str("snapshot_path", c.Core.Swarm.SnapshotPath)
	e.uint("snapshot_interval", uint64(c.Core.Swarm.SnapshotInterval))
	e.blank()

	if pm := c.Core.PrivateMode; pm != nil {
		e.table("core.private_mode")
		e.comment("false: expired keys keep working.")
		e.boolean("check_keys_expiration", pm.CheckKeysExpiration)
		e.blank()
	}

	e.table("core.tracker_policy")
	e.comment("Seconds a silent peer stays listed.")
	e.uint("max_peer_timeout", uint64(c.Core.TrackerPolicy.MaxPeerTimeout))
	e.comment("Keep completed counts in the database (and torrents with a count when peerless).")
	e.boolean("persistent_torrent_completed_stat", c.Core.TrackerPolicy.PersistentTorrentCompletedStat)
	e.boolean("remove_peerless_torrents", c.Core.TrackerPolicy.RemovePeerlessTorrents)

	if len(c.UDPTrackers) == 0 {
		e.blank()
		e.comment("No [[udp_trackers]] section: no UDP tracker.")
	}
	for _, u := range c.UDPTrackers {
		e.blank()
		e.arrayTable("udp_trackers")
		e.comment("ip:port; port 0 picks a free port.")
		e.str("bind_address", u.BindAddress.String())
		e.comment("Seconds a connection id stays valid.")
		e.uint("cookie_lifetime", uint64(u.CookieLifetime))
		e.comment("SO_REUSEPORT sockets on this address; 0 = one per CPU core.")
		e.uint("sockets", uint64(u.Sockets))
		e.comment("Error answers (bad connection ids, malformed requests) per source IP per minute; 0 = no limit.")
		e.uint("max_connection_id_errors_per_ip", uint64(u.MaxConnectionIDErrorsPerIP))
		e.boolean("ipv6_v6only", u.IPv6V6Only)
		if u.TrackerUsageStatistics {
			e.boolean("tracker_usage_statistics", true)
		}
	}

	if len(c.HTTPTrackers) == 0 {
		e.blank()
		e.comment("No [[http_trackers]] section: no HTTP tracker.")
	}
	for _, h := range c.HTTPTrackers {
		e.blank()
		e.arrayTable("http_trackers")
		e.str("bind_address", h.BindAddress.String())
		e.comment("Info hashes answered per scrape; further ones are ignored.")
		e.uint("max_scrape_torrents", uint64(h.MaxScrapeTorrents))
		e.comment("Connections held at once, in total (0: no cap) and from one address (0: no cap).")
		e.uint("max_connections", uint64(h.MaxConnections))
		e.uint("max_connections_per_ip", uint64(h.MaxConnectionsPerIP))
		e.boolean("ipv6_v6only", h.IPv6V6Only)
		if h.TrackerUsageStatistics {
			e.boolean("tracker_usage_statistics", true)
		}
		if h.TLS != nil {
			e.tls("http_trackers", h.TLS)
		}
	}

	e.webSocketTrackers(c)

	e.blank()
	if a := c.HTTPAPI; a == nil {
		e.comment("No [http_api] section: the REST API is off.")
	} else {
		e.table("http_api")
		e.str("bind_address", a.BindAddress.String())
		if a.TLS != nil {
			e.tls("http_api", a.TLS)
		}
		e.blank()
		e.table("http_api.access_tokens")
		e.comment("label = \"token\"; every token has full access to the API.")
		labels := make([]string, 0, len(a.AccessTokens))
		for l := range a.AccessTokens {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		for _, l := range labels {
			e.line(quoteKeyIfNeeded(l) + " = " + tomlString(a.AccessTokens[l]))
		}
	}

	e.blank()
	e.table("health_check_api")
	e.str("bind_address", c.HealthCheckAPI.BindAddress.String())
	if e.err != nil {
		return fmt.Errorf("encode configuration: %w", e.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	return nil
}

// encoder writes lines and keeps the first write error.
type encoder struct {
	w   *bufio.Writer
	err error
}

func (e *encoder) line(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s + "\n")
	}
}

func (e *encoder) blank()                    { e.line("") }
func (e *encoder) comment(s string)          { e.line("# " + s) }
func (e *encoder) table(name string)         { e.line("[" + name + "]") }
func (e *encoder) arrayTable(name string)    { e.line("[[" + name + "]]") }
func (e *encoder) str(key, v string)         { e.line(key + " = " + tomlString(v)) }
func (e *encoder) uint(key string, v uint64) { e.line(key + " = " + strconv.FormatUint(v, 10)) }
func (e *encoder) boolean(key string, v bool) {
	e.line(key + " = " + strconv.FormatBool(v))
}

func (e *encoder) tls(parent string, t *TLSConfig) {
	e.blank()
	e.comment("PEM certificate and key; Torrust's spelling tsl_config is read too.")
	e.table(t.key(parent))
	e.str("ssl_cert_path", t.SSLCertPath)
	e.str("ssl_key_path", t.SSLKeyPath)
}

// tomlString quotes s as a TOML basic string. TOML has no \x escape, so
// Go's strconv.Quote does not fit.
func tomlString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quoteKeyIfNeeded leaves bare keys (A-Za-z0-9_-) as they are and quotes
// any other key.
func quoteKeyIfNeeded(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return tomlString(k)
		}
	}
	return k
}
