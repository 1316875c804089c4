package daemon

import (
	"context"
	"net"
	"net/netip"
	"time"

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
		key:      "health_check_api",
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
		addrs := reachable(u.Addr())
		targets = append(targets, healthcheck.UDP(u.Addr().String(), func(ctx context.Context) error {
			return probeFirst(ctx, addrs, func(ctx context.Context, a netip.AddrPort) error { return udptracker.Probe(ctx, a.String()) })
		}))
	}
	for _, h := range d.http {
		addrs := reachable(addrPortOf(h.ln.Addr()))
		targets = append(targets, healthcheck.HTTP(h.ln.Addr().String(), h.scheme+"://"+addrs[0].String(), func(ctx context.Context) error {
			return probeFirst(ctx, addrs, func(ctx context.Context, a netip.AddrPort) error {
				return httptracker.Probe(ctx, h.scheme+"://"+a.String())
			})
		}))
	}
	targets = append(targets, d.webSocketHealthTargets()...)
	for _, s := range d.aux {
		if s.name != "API" || s.ln == nil {
			continue
		}
		scheme := "http"
		if s.tls != nil {
			scheme = "https"
		}
		addrs := reachable(addrPortOf(s.ln.Addr()))
		targets = append(targets, healthcheck.API(s.ln.Addr().String(), scheme+"://"+addrs[0].String(), func(ctx context.Context) error {
			return probeFirst(ctx, addrs, func(ctx context.Context, a netip.AddrPort) error { return adminapi.Probe(ctx, scheme+"://"+a.String()) })
		}))
	}
	if db := d.db; db != nil {
		targets = append(targets, healthcheck.Database(db.String(), func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, dbProbeTimeout)
			defer cancel()
			return db.Ping(ctx)
		}))
	}
	if d.redis != nil {
		targets = append(targets, d.redis.healthTarget())
	}
	d.health.SetTargets(targets)
}

// dbProbeTimeout bounds the health check's query to the database: a
// loopback or LAN database answers in milliseconds, and a hung one must
// not hold the report for the probe's full 2 s.
const dbProbeTimeout = time.Second

// markShuttingDown makes the health check report unhealthy.
func (d *Daemon) markShuttingDown() {
	if d.health != nil {
		d.health.BeginShutdown()
	}
}

// reachable is where a probe on this host reaches a listener bound to ap:
// ap itself, or for a wildcard the loopback address of its family. A
// dual-stack [::] listener is tried at 127.0.0.1 too: a host or container
// whose loopback has no ::1 (IPv6 switched off) still reaches it there, and
// would otherwise report it unhealthy for ever.
func reachable(ap netip.AddrPort) []netip.AddrPort {
	switch {
	case !ap.Addr().IsUnspecified():
		return []netip.AddrPort{ap}
	case ap.Addr().Is4():
		return []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())}
	}
	return []netip.AddrPort{
		netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port()),
		netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()),
	}
}

// probeFirst probes the addresses in turn and succeeds with the first that
// answers; the error is the first address's.
func probeFirst(ctx context.Context, addrs []netip.AddrPort, probe func(context.Context, netip.AddrPort) error) error {
	var first error
	for _, a := range addrs {
		err := probe(ctx, a)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return first
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
