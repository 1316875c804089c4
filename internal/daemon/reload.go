package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/certs"
	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/tracker"
)

// reloader is what a configuration reload (SIGHUP, POST /api/v1/reload)
// needs: where the configuration comes from, the log level to change, and
// the parts that take new settings while serving.
type reloader struct {
	mu    sync.Mutex // one reload at a time; guards Daemon.cfg
	load  func() (*config.Config, error)
	level *slog.LevelVar

	maxPeerTimeout atomic.Int64 // seconds, read by the sweeper
	apiCerts       *certs.Reloader
	fullTokens     interface{ Set(map[string]string) }
	total          *prometheus.CounterVec
}

func newReloader() *reloader {
	return &reloader{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "starling_config_reloads_total",
		Help: "Configuration reloads (SIGHUP or POST /api/v1/reload), by result: ok, or failed (the running configuration kept).",
	}, []string{"result"})}
}

// EnableReload lets Reload read the configuration with load (the same
// sources as at start) and set the log threshold through level.
func (d *Daemon) EnableReload(load func() (*config.Config, error), level *slog.LevelVar) {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	d.reload.load, d.reload.level = load, level
}

// ErrNoReload is Reload's error when the daemon has nowhere to read the
// configuration from.
var ErrNoReload = errors.New("this tracker cannot reload its configuration (it was not started from a configuration source)")

// Reload reads the configuration again and applies what can change while
// serving: the log threshold, announce policy, max_peer_timeout, mode,
// external_ip, the keys and whitelist from the database, the API's tokens,
// the UDP error limits and the TLS certificates (read from disk again).
// Settings that need a restart keep their running value and are logged by
// name. A configuration that does not load, or a certificate or database
// that cannot be read, leaves everything as it was.
func (d *Daemon) Reload(ctx context.Context) (adminapi.ReloadResult, error) {
	r := d.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	res, err := d.reloadLocked(ctx)
	if err != nil {
		r.total.WithLabelValues("failed").Inc()
		d.log.Error("configuration reload failed: the running configuration is kept", "err", err)
		return res, err
	}
	r.total.WithLabelValues("ok").Inc()
	for _, k := range res.NeedsRestart {
		d.log.Warn("setting changed in the configuration but needs a restart: the running value is kept", "key", k)
	}
	d.log.Info("configuration reloaded", "changed", res.Changed, "needs_restart", res.NeedsRestart)
	return res, nil
}

func (d *Daemon) reloadLocked(ctx context.Context) (adminapi.ReloadResult, error) {
	r := d.reload
	if r.load == nil {
		return adminapi.ReloadResult{}, ErrNoReload
	}
	next, err := r.load()
	if err != nil {
		return adminapi.ReloadResult{}, err
	}
	merged, changed, restart := config.Reload(d.cfg, next)
	res := adminapi.ReloadResult{Changed: changed, NeedsRestart: restart}

	// Everything that can fail first, so a failure changes nothing.
	httpPairs := make([]*certs.Pair, len(d.http))
	for i, h := range d.http {
		if rl := h.srv.Certificates(); rl != nil && i < len(merged.HTTPTrackers) && merged.HTTPTrackers[i].TLS != nil {
			tc := merged.HTTPTrackers[i].TLS
			if httpPairs[i], err = certs.Load(tc.SSLCertPath, tc.SSLKeyPath); err != nil {
				return res, fmt.Errorf("http_trackers[%d].tls_config: %w", i, err)
			}
		}
	}
	var apiPair *certs.Pair
	if r.apiCerts != nil && merged.HTTPAPI != nil && merged.HTTPAPI.TLS != nil {
		tc := merged.HTTPAPI.TLS
		if apiPair, err = certs.Load(tc.SSLCertPath, tc.SSLKeyPath); err != nil {
			return res, fmt.Errorf("http_api.tls_config: %w", err)
		}
	}
	wsPairs, err := d.loadWebSocketCerts(merged)
	if err != nil {
		return res, err
	}
	if merged.Core.Private {
		if err := d.lists.ReloadKeys(ctx); err != nil {
			return res, fmt.Errorf("reload peer keys from %s: %w", d.db, err)
		}
	}
	if merged.Core.Listed {
		if err := d.lists.ReloadWhitelist(ctx); err != nil {
			return res, fmt.Errorf("reload the whitelist from %s: %w", d.db, err)
		}
	}

	// Then apply; nothing below fails.
	if r.level != nil {
		r.level.Set(LogLevel(merged.Logging))
	}
	d.tracker.SetConfig(trackerConfig(merged.Core))
	r.maxPeerTimeout.Store(int64(merged.Core.TrackerPolicy.MaxPeerTimeout))
	for i, u := range d.udp {
		u.SetPrivate(merged.Core.Private)
		if i < len(merged.UDPTrackers) {
			u.SetMaxConnectionIDErrorsPerIP(udpErrorLimit(merged.UDPTrackers[i].MaxConnectionIDErrorsPerIP))
		}
	}
	for i, h := range d.http {
		if httpPairs[i] != nil {
			h.srv.Certificates().Set(httpPairs[i])
		}
	}
	d.setWebSocketCerts(wsPairs)
	if apiPair != nil {
		r.apiCerts.Set(apiPair)
	}
	if merged.HTTPAPI != nil {
		if d.api != nil {
			d.api.SetAccessTokens(merged.HTTPAPI.AccessTokens)
		}
		if r.fullTokens != nil {
			r.fullTokens.Set(merged.HTTPAPI.AccessTokens)
		}
	}
	d.cfg = merged
	return res, nil
}

// LogLevel is the slog level of [logging] threshold; "off" is above every
// level a line is logged at.
func LogLevel(l config.Logging) slog.Level {
	if l.Off() {
		return slog.LevelError + 1000
	}
	return l.Level()
}

// trackerConfig is the rules' part of [core].
func trackerConfig(core config.Core) tracker.Config {
	return tracker.Config{
		Private:             core.Private,
		Listed:              core.Listed,
		CheckKeysExpiration: core.CheckKeysExpiration(),
		Interval:            uint32(core.AnnouncePolicy.Interval),
		MinInterval:         uint32(core.AnnouncePolicy.IntervalMin),
		MaxPeersPerAnnounce: int(core.AnnouncePolicy.MaxPeersPerAnnounce),
		ExternalIP:          core.Net.ExternalIP,
	}
}
