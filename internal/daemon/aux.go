package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/certs"
	"github.com/starling-tracker/starling/internal/metrics"
)

// auxServer is an HTTP listener beside the trackers: the REST API or the
// health check.
type auxServer struct {
	name     string // as logged: "API", "Health check API"
	key      string // the configuration's: "http_api", "health_check_api"
	bind     string
	tls      *tls.Config
	ln       net.Listener
	raw      net.Listener // ln without TLS, for an upgrade
	serve    func(net.Listener) error
	shutdown func(context.Context) error
	ready    chan struct{}
}

func (d *Daemon) buildAux() error {
	if api := d.cfg.HTTPAPI; api != nil {
		reg := metrics.NewRegistry(d.counters, d.latency, d.store, d.log)
		reg.Prometheus().MustRegister(d.reload.total, refusedCollector{d}, limitsCollector{d.limits, d.tracker})
		reg.Prometheus().MustRegister(dbCollector{d.db, d.batcher})
		if d.redis != nil {
			reg.RegisterSwarmStore(d.redis.stats)
		}
		if d.full != nil {
			reg.RegisterFullScrape(d.full)
		}
		a, err := adminapi.New(adminapi.Config{
			AccessTokens: api.AccessTokens,
			// Metrics are open to scrapers only on a loopback API: Torrust
			// configurations often bind it to 0.0.0.0.
			MetricsNeedToken: !api.BindAddress.Addr().IsLoopback(),
			Logger:           d.log,
		}, adminapi.Deps{
			Store:      d.store,
			Lists:      d.lists,
			Counters:   d.counters,
			Metrics:    reg,
			FullScrape: d.full,
			Reload:     d.Reload,
			Limits:     d.limits,
		})
		if err != nil {
			return err
		}
		d.api = a
		s := &auxServer{name: "API", key: "http_api", bind: api.BindAddress.String(), serve: a.Serve, shutdown: a.Shutdown}
		if api.TLS != nil {
			pair, err := certs.Load(api.TLS.SSLCertPath, api.TLS.SSLKeyPath)
			if err != nil {
				return fmt.Errorf("http_api.tsl_config: %w", err)
			}
			// A reload replaces the certificate for new connections.
			d.reload.apiCerts = certs.New(pair)
			s.tls = d.reload.apiCerts.Config()
		}
		d.aux = append(d.aux, s)
	}
	return d.buildHealth()
}

func (d *Daemon) bindAux(ctx context.Context) error {
	for _, s := range d.aux {
		ln, err := d.inheritedTCP(s.key, s.bind)
		if err != nil {
			return err
		}
		if ln == nil {
			var lc net.ListenConfig
			if ln, err = lc.Listen(ctx, tcpNetwork(s.bind, false), s.bind); err != nil {
				return fmt.Errorf("%s: listen on %s: %w (is another process using it? change its bind_address)", s.name, s.bind, err)
			}
		}
		s.raw = ln
		if s.key == "http_api" {
			ln = d.limit(s.key, ln, apiMaxConnections, apiMaxConnectionsPerIP)
		} else {
			ln = d.limit(s.key, ln, healthMaxConnections, healthMaxConnectionsPerIP)
		}
		scheme := "http"
		if s.tls != nil {
			scheme = "https"
			ln = tls.NewListener(ln, s.tls)
		}
		s.ln = ln
		d.log.Info(fmt.Sprintf("%s listening on %s://%s", s.name, scheme, ln.Addr()))
	}
	return nil
}

func (d *Daemon) serveAux(serve func(string, func() error, error)) {
	for _, s := range d.aux {
		s := s
		serve(s.name, func() error { return s.serve(s.ln) }, http.ErrServerClosed)
	}
}

// waitAuxReady returns once the aux listeners answer; they were bound
// before serving, so connections queue in the backlog until then.
func (d *Daemon) waitAuxReady() {}

func (d *Daemon) shutdownAux(ctx context.Context, stop func(func(context.Context) error)) {
	for _, s := range d.aux {
		if s.ln == nil {
			continue
		}
		s := s
		stop(func(ctx context.Context) error {
			err := s.shutdown(ctx)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		})
	}
}
