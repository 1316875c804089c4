package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/starling-tracker/starling/internal/certs"
	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/wstracker"
)

// The WebSocket (WebTorrent) trackers, [[websocket_trackers]]: built with
// the other listeners, bound before anything serves, stopped with the
// trackers (their peers leave the swarms as their connections close). In
// an upgrade the listening sockets go to the new process like the HTTP
// ones; open connections cannot move, so the old process closes them with
// 1001 (going away) and clients reconnect, to the new one.

type wsListener struct {
	srv  *wstracker.Server
	bind string
	ln   net.Listener
}

// buildWebSocket builds the configured WebSocket trackers.
func (d *Daemon) buildWebSocket() error {
	core := d.cfg.Core
	for _, w := range d.cfg.WebSocketTrackers {
		wc := wstracker.Config{
			BindAddress:         w.BindAddress.String(),
			OnReverseProxy:      core.Net.OnReverseProxy,
			FullScrape:          core.FullScrape == config.FullScrapePublic,
			MaxOffers:           w.MaxOffers,
			MaxConnections:      w.MaxConnections,
			MaxConnectionsPerIP: w.MaxConnectionsPerIP,
		}
		if w.TLS != nil {
			wc.TLSCertPath, wc.TLSKeyPath = w.TLS.SSLCertPath, w.TLS.SSLKeyPath
		}
		srv, err := wstracker.New(wc, d.tracker, d.counters, d.log)
		if err != nil {
			return err
		}
		d.ws = append(d.ws, &wsListener{srv: srv, bind: wc.BindAddress})
	}
	return nil
}

func wsName(i int) string { return fmt.Sprintf("websocket_trackers[%d]", i) }

func (d *Daemon) bindWebSocket(ctx context.Context) error {
	for i, w := range d.ws {
		ln, err := d.inheritedTCP(wsName(i), w.bind)
		if err != nil {
			return err
		}
		if ln != nil {
			w.ln = ln
			continue
		}
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, tcpNetwork(w.bind, false), w.bind)
		if err != nil {
			return fmt.Errorf("websocket tracker: listen on %s: %w (is another process using it? change [[websocket_trackers]] bind_address)", w.bind, err)
		}
		w.ln = ln
	}
	return nil
}

// serveWebSocket serves every WebSocket tracker and waits until they accept.
func (d *Daemon) serveWebSocket(serve func(string, func() error, error)) {
	for _, w := range d.ws {
		w := w
		serve("websocket tracker", func() error { return w.srv.Serve(w.ln) }, wstracker.ErrServerClosed)
	}
	for _, w := range d.ws {
		<-w.srv.Ready()
	}
}

// closeWebSocketUnserved closes sockets bound before a later bind failed.
func (d *Daemon) closeWebSocketUnserved() {
	for _, w := range d.ws {
		if w.ln != nil {
			_ = w.ln.Close()
			w.ln = nil
		}
	}
}

// handoffWebSocket hands the listening sockets to the new process of an
// upgrade, through handoffFiles' tcp.
func (d *Daemon) handoffWebSocket(tcp func(name, bind string, ln net.Listener) error) error {
	for i, w := range d.ws {
		if w.ln != nil {
			if err := tcp(wsName(i), w.bind, w.ln); err != nil {
				return err
			}
		}
	}
	return nil
}

// stopWebSocket shuts down the WebSocket trackers that serve.
func (d *Daemon) stopWebSocket(stop func(func(context.Context) error)) {
	for _, w := range d.ws {
		if w.ln != nil {
			stop(w.srv.Shutdown)
		}
	}
}

// loadWebSocketCerts reads the wss:// certificates and keys again, for a
// reload (a certificate renewed at the same paths); nothing is applied yet,
// so a file that cannot be read changes nothing.
func (d *Daemon) loadWebSocketCerts(cfg *config.Config) ([]*certs.Pair, error) {
	pairs := make([]*certs.Pair, len(d.ws))
	for i, w := range d.ws {
		if w.srv.Certificates() == nil || i >= len(cfg.WebSocketTrackers) || cfg.WebSocketTrackers[i].TLS == nil {
			continue
		}
		tc := cfg.WebSocketTrackers[i].TLS
		p, err := certs.Load(tc.SSLCertPath, tc.SSLKeyPath)
		if err != nil {
			return nil, fmt.Errorf("websocket_trackers[%d].tls_config: %w", i, err)
		}
		pairs[i] = p
	}
	return pairs, nil
}

// setWebSocketCerts serves the certificates loadWebSocketCerts read to new
// connections.
func (d *Daemon) setWebSocketCerts(pairs []*certs.Pair) {
	for i, p := range pairs {
		if p != nil {
			d.ws[i].srv.Certificates().Set(p)
		}
	}
}

// webSocketHealthTargets has the health check open a WebSocket to each
// listener and scrape through it.
func (d *Daemon) webSocketHealthTargets() []healthcheck.Target {
	var targets []healthcheck.Target
	for i, w := range d.ws {
		if w.ln == nil {
			continue
		}
		scheme := "ws"
		if d.cfg.WebSocketTrackers[i].TLS != nil {
			scheme = "wss"
		}
		addrs := reachable(addrPortOf(w.ln.Addr()))
		url := scheme + "://" + addrs[0].String()
		targets = append(targets, healthcheck.Target{
			Binding: w.ln.Addr().String(),
			Info:    "checking websocket tracker at: " + url,
			OK:      "Ok",
			Probe: func(ctx context.Context) error {
				return probeFirst(ctx, addrs, func(ctx context.Context, a netip.AddrPort) error {
					return wstracker.Probe(ctx, scheme+"://"+a.String())
				})
			},
		})
	}
	return targets
}
