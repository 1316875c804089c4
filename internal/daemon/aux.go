package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/metrics"
)

// auxServer is an HTTP listener beside the trackers: the REST API or the
// health check.
type auxServer struct {
	name     string // as logged: "API", "Health check API"
	bind     string
	tls      *tls.Config
	ln       net.Listener
	serve    func(net.Listener) error
	shutdown func(context.Context) error
	ready    chan struct{}
}

func (d *Daemon) buildAux() error {
	if api := d.cfg.HTTPAPI; api != nil {
		reg := metrics.NewRegistry(d.counters, d.latency, d.store, d.log)
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
		})
		if err != nil {
			return err
		}
		s := &auxServer{name: "API", bind: api.BindAddress.String(), serve: a.Serve, shutdown: a.Shutdown}
		if api.TLS != nil {
			cfg, err := loadTLS("http_api", api.TLS.SSLCertPath, api.TLS.SSLKeyPath)
			if err != nil {
				return err
			}
			s.tls = cfg
		}
		d.aux = append(d.aux, s)
	}
	return d.buildHealth()
}

func loadTLS(section, cert, key string) (*tls.Config, error) {
	if cert == "" || key == "" {
		return nil, fmt.Errorf("%s.tsl_config: both ssl_cert_path and ssl_key_path are needed", section)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s.tsl_config: load certificate %q and key %q (check the paths): %w", section, cert, key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

func (d *Daemon) bindAux(ctx context.Context) error {
	for _, s := range d.aux {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, tcpNetwork(s.bind, false), s.bind)
		if err != nil {
			return fmt.Errorf("%s: listen on %s: %w (is another process using it? change its bind_address)", s.name, s.bind, err)
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
