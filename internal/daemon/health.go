package daemon

import (
	"context"
	"net"
	"net/netip"

	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/httptracker"
	"github.com/starling-tracker/starling/internal/udptracker"
)

// buildHealth adds the health-check listener. Its targets are set once every
// listener is bound, because they probe the bound addresses.
func (d *Daemon) buildHealth() error {
	d.health = healthcheck.New(healthcheck.Config{Logger: d.log}, nil)
	d.aux = append(d.aux, &auxServer{
		name:     "Health check API",
		bind:     d.cfg.HealthCheckAPI.BindAddress.String(),
		serve:    d.health.Serve,
		shutdown: d.health.Shutdown,
	})
	return nil
}

// setHealthTargets points the health check at every bound listener.
func (d *Daemon) setHealthTargets() {
	var targets []healthcheck.Target
	for _, u := range d.udp {
		addr := reachable(u.Addr()).String()
		targets = append(targets, healthcheck.UDP(u.Addr().String(), func(ctx context.Context) error {
			return udptracker.Probe(ctx, addr)
		}))
	}
	for _, h := range d.http {
		url := h.scheme + "://" + reachable(addrPortOf(h.ln.Addr())).String()
		targets = append(targets, healthcheck.HTTP(h.ln.Addr().String(), url, func(ctx context.Context) error {
			return httptracker.Probe(ctx, url)
		}))
	}
	for _, s := range d.aux {
		if s.name != "API" || s.ln == nil {
			continue
		}
		scheme := "http"
		if s.tls != nil {
			scheme = "https"
		}
		url := scheme + "://" + reachable(addrPortOf(s.ln.Addr())).String()
		targets = append(targets, healthcheck.API(s.ln.Addr().String(), url, func(ctx context.Context) error {
			return adminapi.Probe(ctx, url)
		}))
	}
	d.health.SetTargets(targets)
}

// markShuttingDown makes the health check report unhealthy.
func (d *Daemon) markShuttingDown() {
	if d.health != nil {
		d.health.BeginShutdown()
	}
}

// reachable turns a wildcard bound address into the loopback address of its
// family, which a probe on this host can reach.
func reachable(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().IsUnspecified() {
		return ap
	}
	if ap.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
	}
	return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
