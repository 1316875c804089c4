package config

import (
	"fmt"
	"reflect"
)

// Reload compares the running configuration with one read again (a
// SIGHUP) and returns what to run with: next's values for the settings
// that can change while serving, and running's for those that need a
// restart. changed names the live settings that differ; restart names the
// others that differ, which keep their running value.
//
// Live: logging.threshold, core.announce_policy, core.listed,
// core.private, core.private_mode, core.net.external_ip,
// core.tracker_policy.max_peer_timeout, each UDP listener's
// max_connection_id_errors_per_ip, the TLS files of HTTP listeners and of
// the API (re-read from disk by the caller) and the API's access tokens.
// Everything else binds a socket, opens the database or sizes the store.
func Reload(running, next *Config) (merged *Config, changed, restart []string) {
	m := *running
	live := func(key string, dst, src any) {
		d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src)
		if !reflect.DeepEqual(d.Interface(), s.Interface()) {
			changed = append(changed, key)
			d.Set(s)
		}
	}
	fixed := func(key string, run, nxt any) {
		if !reflect.DeepEqual(run, nxt) {
			restart = append(restart, key)
		}
	}
	live("logging.threshold", &m.Logging, next.Logging)
	live("core.announce_policy", &m.Core.AnnouncePolicy, next.Core.AnnouncePolicy)
	live("core.listed", &m.Core.Listed, next.Core.Listed)
	live("core.private", &m.Core.Private, next.Core.Private)
	live("core.private_mode", &m.Core.PrivateMode, next.Core.PrivateMode)
	live("core.net.external_ip", &m.Core.Net.ExternalIP, next.Core.Net.ExternalIP)
	live("core.tracker_policy.max_peer_timeout", &m.Core.TrackerPolicy.MaxPeerTimeout, next.Core.TrackerPolicy.MaxPeerTimeout)

	fixed("core.database", running.Core.Database, next.Core.Database)
	fixed("core.full_scrape", running.Core.FullScrape, next.Core.FullScrape)
	fixed("core.full_scrape_interval", running.Core.FullScrapeInterval, next.Core.FullScrapeInterval)
	fixed("core.inactive_peer_cleanup_interval", running.Core.InactivePeerCleanupInterval, next.Core.InactivePeerCleanupInterval)
	fixed("core.net.on_reverse_proxy", running.Core.Net.OnReverseProxy, next.Core.Net.OnReverseProxy)
	fixed("core.swarm", running.Core.Swarm, next.Core.Swarm)
	fixed("core.limits", running.Core.Limits, next.Core.Limits)
	fixed("core.tracker_policy.persistent_torrent_completed_stat", running.Core.TrackerPolicy.PersistentTorrentCompletedStat, next.Core.TrackerPolicy.PersistentTorrentCompletedStat)
	fixed("core.tracker_policy.remove_peerless_torrents", running.Core.TrackerPolicy.RemovePeerlessTorrents, next.Core.TrackerPolicy.RemovePeerlessTorrents)
	fixed("core.tracker_usage_statistics", running.Core.TrackerUsageStatistics, next.Core.TrackerUsageStatistics)
	fixed("health_check_api.bind_address", running.HealthCheckAPI, next.HealthCheckAPI)
	fixed("websocket_trackers", running.WebSocketTrackers, next.WebSocketTrackers)

	// Listeners: the lists must keep their length for any entry's live
	// settings to apply, since an entry is known only by its place.
	if len(running.UDPTrackers) != len(next.UDPTrackers) {
		restart = append(restart, "udp_trackers")
	} else {
		m.UDPTrackers = append([]UDPTracker(nil), running.UDPTrackers...)
		for i := range next.UDPTrackers {
			r, n := running.UDPTrackers[i], next.UDPTrackers[i]
			key := fmt.Sprintf("udp_trackers[%d]", i)
			live(key+".max_connection_id_errors_per_ip", &m.UDPTrackers[i].MaxConnectionIDErrorsPerIP, n.MaxConnectionIDErrorsPerIP)
			r.MaxConnectionIDErrorsPerIP, n.MaxConnectionIDErrorsPerIP = 0, 0
			fixed(key, r, n)
		}
	}
	if len(running.HTTPTrackers) != len(next.HTTPTrackers) {
		restart = append(restart, "http_trackers")
	} else {
		m.HTTPTrackers = append([]HTTPTracker(nil), running.HTTPTrackers...)
		for i := range next.HTTPTrackers {
			r, n := running.HTTPTrackers[i], next.HTTPTrackers[i]
			key := fmt.Sprintf("http_trackers[%d]", i)
			if (r.TLS == nil) == (n.TLS == nil) {
				live(key+".tls_config", &m.HTTPTrackers[i].TLS, n.TLS)
				r.TLS, n.TLS = nil, nil
			}
			fixed(key, r, n)
		}
	}
	switch r, n := running.HTTPAPI, next.HTTPAPI; {
	case r == nil && n == nil:
	case r == nil || n == nil:
		restart = append(restart, "http_api")
	default:
		api := *r
		m.HTTPAPI = &api
		live("http_api.access_tokens", &api.AccessTokens, n.AccessTokens)
		rc, nc := *r, *n
		if (r.TLS == nil) == (n.TLS == nil) {
			live("http_api.tls_config", &api.TLS, n.TLS)
			rc.TLS, nc.TLS = nil, nil
		}
		rc.AccessTokens, nc.AccessTokens = nil, nil
		fixed("http_api", rc, nc)
	}
	return &m, changed, restart
}
