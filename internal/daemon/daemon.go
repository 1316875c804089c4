// Package daemon builds a running tracker from a configuration: it opens the
// database, loads keys, whitelist and completed counts, builds the rules and
// the swarm store, binds every listener, and stops them all in order.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/database"
	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/handoff"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/httptracker"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/udptracker"
)

// ShutdownTimeout bounds a graceful stop: in-flight requests get this long.
const ShutdownTimeout = 10 * time.Second

// FlushTimeout bounds the last write of completed counts at shutdown.
const FlushTimeout = 15 * time.Second

// LoadTimeout bounds loading keys, whitelist and completed counts at
// start-up: a Torrust database can hold millions of torrents.
const LoadTimeout = 2 * time.Minute

// Daemon is a tracker built from a configuration.
type Daemon struct {
	cfg *config.Config
	log *slog.Logger

	clock    *clock.Coarse
	db       *database.DB
	lists    *access.Lists
	store    swarm.Store
	batcher  *database.Batcher
	counters *metrics.Counters
	latency  *metrics.Latency
	tracker  *tracker.Tracker
	// full builds the full scrape (nil: core.full_scrape = "off").
	full *fullscrape.Builder

	udp  []*udptracker.Server
	http []*httpListener
	ws   []*wsListener // websocket.go
	aux  []*auxServer  // the REST API and the health check

	health *healthcheck.Server

	stopSweep chan struct{}
	sweepDone chan struct{}

	limited []limited    // listeners with connection caps
	limits  swarm.Limits // [core.limits], derived where 0

	redis  *redisStore // redisstore.go; nil with the memory store
	snap   *snapshots  // nil without snapshots
	reload *reloader
	api    *adminapi.API // nil without [http_api]

	// Upgrades: child is set in the new process; upgrading while one runs
	// in the old one, handedOver once the new one serves (upgraded closed).
	child   *handoff.Child
	onReady func()
	// onUpgradeFailed is told why an upgrade failed (OnUpgradeFailed).
	onUpgradeFailed func(error)
	upgrading       atomic.Bool
	handedOver      atomic.Bool
	upgraded        chan struct{}
	// late passes the announces answered after the swarms were written to
	// the new process (old process, once handed over); lateDone holds a
	// channel closed once they are all applied (new process; nil when none
	// come), set while signals may already ask for an upgrade.
	late     *lateLog
	lateDone atomic.Pointer[chan struct{}]
}

type httpListener struct {
	srv    *httptracker.Server
	bind   string
	scheme string
	v6only bool
	ln     net.Listener // raw, with the connection caps
	raw    net.Listener // the socket, for an upgrade
	// max, perIP are max_connections and max_connections_per_ip.
	max, perIP int
}

// New builds everything the configuration asks for without binding any
// socket: it opens the database and loads what the mode needs from it.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (_ *Daemon, err error) {
	d := &Daemon{cfg: cfg, log: log, reload: newReloader(), upgraded: make(chan struct{})}
	for _, o := range opts {
		o(d)
	}
	d.reload.maxPeerTimeout.Store(int64(cfg.Core.TrackerPolicy.MaxPeerTimeout))
	defer func() {
		if err != nil {
			_ = d.closeStorage(ctx)
		}
	}()
	core := cfg.Core

	db, err := database.Open(ctx, core.Database.Driver, core.Database.Path, log)
	if err != nil {
		return nil, fmt.Errorf("open the %s database (core.database.path): %w", core.Database.Driver, err)
	}
	d.db = db
	log.Info("database opened", "driver", core.Database.Driver, "database", db.String())

	db.SetTimeout(LoadTimeout)
	d.lists = access.New(db)
	if core.Private {
		if err := d.lists.ReloadKeys(ctx); err != nil {
			return nil, fmt.Errorf("load peer keys from %s: %w", db, err)
		}
		log.Info("peer keys loaded", "keys", len(d.lists.Keys()))
	}
	if core.Listed {
		if err := d.lists.ReloadWhitelist(ctx); err != nil {
			return nil, fmt.Errorf("load the whitelist from %s: %w", db, err)
		}
		log.Info("whitelist loaded", "torrents", len(d.lists.Whitelist()))
	}

	persist := core.TrackerPolicy.PersistentTorrentCompletedStat
	var counts []swarm.CompletedCount
	if persist {
		if counts, err = db.LoadCompleted(ctx); err != nil {
			return nil, fmt.Errorf("load completed counts from %s: %w", db, err)
		}
	}
	// The store with the persisted completed counts; the snapshot's swarms
	// go on top (a count there is never lowered).
	d.limits = storeLimits(core.Limits, core.Swarm.Store, log)
	newStore := func() (swarm.Store, error) {
		if core.Swarm.Store == config.StoreRedis {
			var load func(context.Context) ([]swarm.CompletedCount, error)
			if persist {
				load = db.LoadCompleted
			}
			r, err := newRedisStore(ctx, core.Swarm, swarm.Options{
				RemovePeerlessTorrents: core.TrackerPolicy.RemovePeerlessTorrents,
				KeepCompleted:          persist,
			}, counts, load, log)
			if err != nil {
				return nil, fmt.Errorf("core.swarm.redis_url: %w", err)
			}
			d.redis = r
			return r.store, nil
		}
		store := memswarm.New(swarm.Options{
			RemovePeerlessTorrents: core.TrackerPolicy.RemovePeerlessTorrents,
			KeepCompleted:          persist,
			Limits:                 d.limits,
		})
		if err := store.SetCompleted(ctx, counts); err != nil {
			return nil, fmt.Errorf("restore completed counts: %w", err)
		}
		return store, nil
	}
	if d.store, err = newStore(); err != nil {
		return nil, err
	}
	if persist {
		log.Info("completed counts loaded", "torrents", len(counts))
	}
	if err := d.restoreSnapshot(newStore); err != nil {
		return nil, err
	}
	var sink tracker.CompletionSink
	// Loading is over: back to the per-operation bound, before anything
	// else uses the database.
	db.SetTimeout(database.DefaultTimeout)
	if persist {
		d.batcher = database.StartBatcher(db, 0, int(min(core.Limits.CompletedBuffer, 1<<30)), log)
		sink = d.batcher
	}

	workers := runtime.GOMAXPROCS(0) * (len(cfg.UDPTrackers) + len(cfg.HTTPTrackers) + 1)
	d.counters = metrics.NewCounters(workers, core.TrackerUsageStatistics)
	d.latency = metrics.NewLatency(workers)
	d.clock = clock.NewCoarse()
	d.tracker = tracker.New(trackerConfig(core), d.store, d.lists, d.clock, sink)
	d.tracker.SetLogger(log)

	// Unlike Torrust, a private tracker serves UDP too: the peer key comes
	// in the announce's BEP 41 URL data (udp://host:port/announce/KEY).
	udpConns := make([][]*net.UDPConn, len(cfg.UDPTrackers))
	udpSockets := make([]int, len(cfg.UDPTrackers))
	cores := runtime.GOMAXPROCS(0)
	total := 0
	for i, u := range cfg.UDPTrackers {
		conns, err := d.inheritedUDP(i, u.BindAddress.String())
		if err != nil {
			return nil, err
		}
		udpConns[i] = conns
		// Resolved here, before GOMAXPROCS may rise: 0 is one per core.
		udpSockets[i] = int(u.Sockets)
		if udpSockets[i] <= 0 {
			udpSockets[i] = cores
		}
		if conns != nil {
			udpSockets[i] = len(conns)
		}
		total += udpSockets[i]
	}
	// On a remote store (Redis) the workers hand each batch to a pool of
	// goroutines and wait for Redis: a waiting reader gains them little,
	// and the extra P on one core cost 8 % of the announces per second
	// and its share of Redis CPU (BENCHMARKS.md, UDP).
	detach := !remoteStore(d.store)
	if detach {
		raiseProcs(total, log)
	}
	for i, u := range cfg.UDPTrackers {
		conns := udpConns[i]
		srv, err := udptracker.New(udptracker.Config{
			Conns:                      conns,
			BindAddress:                u.BindAddress.String(),
			IPv6Only:                   u.IPv6V6Only,
			Sockets:                    udpSockets[i],
			Detach:                     detach,
			CookieLifetime:             u.CookieLifetime.Duration(),
			MaxConnectionIDErrorsPerIP: udpErrorLimit(u.MaxConnectionIDErrorsPerIP),
			ErrorWindow:                time.Minute,
			Clock:                      d.clock,
			Latency:                    d.latency,
			Private:                    core.Private,
		}, d.tracker, d.counters, log)
		if err != nil {
			return nil, err
		}
		d.udp = append(d.udp, srv)
	}
	httpFull := d.buildFullScrape()
	for _, h := range cfg.HTTPTrackers {
		hc := httptracker.Config{
			BindAddress:       h.BindAddress.String(),
			OnReverseProxy:    core.Net.OnReverseProxy,
			MaxScrapeTorrents: h.MaxScrapeTorrents,
			Latency:           d.latency,
			FullScrape:        httpFull,
		}
		if h.TLS != nil {
			hc.TLSCertPath, hc.TLSKeyPath = h.TLS.SSLCertPath, h.TLS.SSLKeyPath
		}
		srv, err := httptracker.New(hc, d.tracker, d.counters, log)
		if err != nil {
			return nil, err
		}
		scheme := "http"
		if h.TLS != nil {
			scheme = "https"
		}
		perIP := int(h.MaxConnectionsPerIP)
		if core.Net.OnReverseProxy && perIP > 0 {
			// Every connection comes from the proxy: a cap per address
			// would cap the proxy, and so every client behind it.
			log.Info("behind a reverse proxy: max_connections_per_ip is not applied (the proxy's connections all come from one address)",
				"http_tracker", hc.BindAddress)
			perIP = 0
		}
		d.http = append(d.http, &httpListener{srv: srv, bind: hc.BindAddress, scheme: scheme, v6only: h.IPv6V6Only,
			max: int(h.MaxConnections), perIP: perIP})
	}
	if err := d.buildWebSocket(); err != nil {
		return nil, err
	}
	if err := d.buildAux(); err != nil {
		return nil, err
	}
	return d, nil
}

// udpErrorLimit maps the config's "0 = no limit" onto the server's
// "negative = no limit".
func udpErrorLimit(n uint32) int {
	if n == 0 {
		return -1
	}
	return int(n)
}

// Tracker is the rules, for tests and tools that run in-process.
func (d *Daemon) Tracker() *tracker.Tracker { return d.tracker }

// Run binds every listener, serves until ctx ends, then stops gracefully:
// listeners stop accepting and finish in-flight requests, completed counts
// are flushed, and the database is closed. A listener that cannot bind
// stops start-up with its address in the error.
func (d *Daemon) Run(ctx context.Context) error {
	errc := make(chan error, len(d.udp)+len(d.http)+len(d.ws)+len(d.aux))
	var wg sync.WaitGroup
	serve := func(name string, f func() error, closed error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, closed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}

	bindErr := d.bind(ctx)
	if bindErr == nil && d.child != nil {
		bindErr = d.takeOver(ctx)
	}
	if bindErr == nil {
		for _, u := range d.udp {
			serve("udp tracker", u.Serve, udptracker.ErrServerClosed)
		}
		for _, h := range d.http {
			h := h
			serve("http tracker", func() error { return h.srv.Serve(h.ln) }, httptracker.ErrServerClosed)
		}
		d.serveAux(serve)
		d.serveWebSocket(serve)
		for _, h := range d.http {
			<-h.srv.Ready()
		}
		d.waitAuxReady()
		d.startSweeper()
		d.startSnapshots()
		d.log.Info("Starling is ready", "mode", d.tracker.Mode(),
			"udp_trackers", len(d.udp), "http_trackers", len(d.http), "websocket_trackers", len(d.ws),
			"http_api", d.api != nil)
		if d.child != nil {
			if err := d.child.Ready(); err != nil {
				d.log.Warn("upgrade: could not tell the old process this one serves", "err", err)
			}
			d.log.Info("upgrade complete: this process serves", "pid", os.Getpid(), "old_pid", d.child.Manifest.OldPID)
		}
		if d.onReady != nil {
			d.onReady()
		}
	}

	var runErr error
	if bindErr != nil {
		runErr = bindErr
		d.closeUnserved()
	} else {
		select {
		case <-ctx.Done():
			d.log.Info("shutting down", "reason", context.Cause(ctx))
		case runErr = <-errc:
			d.log.Error("a listener failed; shutting down", "err", runErr)
		case <-d.upgraded:
			d.log.Info("shutting down", "reason", "handed over to the new process")
		}
	}

	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := d.shutdown(stopCtx); err != nil && runErr == nil {
		runErr = err
	}
	wg.Wait()
	if runErr == nil {
		d.log.Info("stopped")
	}
	return runErr
}

// bind opens every socket before anything serves, so a busy port stops
// start-up cleanly.
func (d *Daemon) bind(ctx context.Context) error {
	for _, u := range d.udp {
		if err := u.Listen(ctx); err != nil {
			return fmt.Errorf("%w (is another process using it? change [[udp_trackers]] bind_address)", err)
		}
	}
	for i, h := range d.http {
		ln, err := d.inheritedTCP(httpName(i), h.bind)
		if err != nil {
			return err
		}
		if ln == nil {
			var lc net.ListenConfig
			ln, err = lc.Listen(ctx, tcpNetwork(h.bind, h.v6only), h.bind)
			if err != nil {
				return fmt.Errorf("http tracker: listen on %s: %w (is another process using it? change [[http_trackers]] bind_address)", h.bind, err)
			}
		}
		h.raw = ln
		h.ln = d.limit(httpName(i), ln, h.max, h.perIP)
	}
	if err := d.bindWebSocket(ctx); err != nil {
		return err
	}
	if err := d.bindAux(ctx); err != nil {
		return err
	}
	d.setHealthTargets()
	return nil
}

// tcpNetwork keeps an IPv4 bind address IPv4-only, as Torrust binds it; an
// IPv6 one ([::]) is dual-stack unless ipv6_v6only is set.
func tcpNetwork(bind string, v6only bool) string {
	ap, err := netip.ParseAddrPort(bind)
	switch {
	case err != nil:
		return "tcp"
	case ap.Addr().Is4():
		return "tcp4"
	case v6only:
		return "tcp6"
	default:
		return "tcp"
	}
}

// closeUnserved closes the sockets bound before a later bind failed; their
// servers never started, so their Shutdown would not close them.
func (d *Daemon) closeUnserved() {
	d.closeWebSocketUnserved()
	for _, h := range d.http {
		if h.ln != nil {
			_ = h.ln.Close()
			h.ln = nil
		}
	}
	for _, s := range d.aux {
		if s.ln != nil {
			_ = s.ln.Close()
			s.ln = nil
		}
	}
}

func (d *Daemon) shutdown(ctx context.Context) error {
	// After an upgrade the health check's socket is the new process's
	// too: this one must not answer it as going down.
	if !d.handedOver.Load() {
		d.markShuttingDown()
	}
	if d.stopSweep != nil {
		close(d.stopSweep)
		<-d.sweepDone
	}
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	stop := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for _, u := range d.udp {
		stop(u.Shutdown)
	}
	for _, h := range d.http {
		if h.ln != nil {
			stop(h.srv.Shutdown)
		}
	}
	d.stopWebSocket(stop)
	wg.Wait()
	d.shutdownAux(ctx, stop)
	wg.Wait()
	d.stopLate()
	d.waitLate(ctx)
	// Nothing changes the swarms any more: the last snapshot holds them
	// all, unless they went to the new process of an upgrade, which owns
	// the snapshot file now.
	if err := d.finalSnapshot(!d.handedOver.Load()); err != nil {
		errs = append(errs, err)
	}
	// The flush gets its own budget: slow clients may have used up ctx,
	// and counts not written now are lost.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FlushTimeout)
	defer cancel()
	if err := d.closeStorage(flushCtx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closeStorage flushes completed counts and closes the database.
func (d *Daemon) closeStorage(ctx context.Context) error {
	var errs []error
	if d.batcher != nil {
		if err := d.batcher.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush completed counts: %w", err))
		}
		d.batcher = nil
	}
	if d.db != nil {
		if err := d.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database: %w", err))
		}
		d.db = nil
	}
	if d.redis != nil {
		if err := d.redis.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the swarm store: %w", err))
		}
		d.redis = nil
	}
	if d.clock != nil {
		d.clock.Stop()
	}
	return errors.Join(errs...)
}

// startSweeper removes inactive peers every inactive_peer_cleanup_interval.
func (d *Daemon) startSweeper() {
	every := d.cfg.Core.InactivePeerCleanupInterval.Duration()
	if every <= 0 {
		return
	}
	d.stopSweep = make(chan struct{})
	d.sweepDone = make(chan struct{})
	give := newMemoryGiver(d.store, d.log)
	go func() {
		defer close(d.sweepDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-d.stopSweep:
				return
			case <-t.C:
				ctx, cancel := context.WithCancel(context.Background())
				go func() {
					select {
					case <-d.stopSweep:
						cancel()
					case <-ctx.Done():
					}
				}()
				// Read at every sweep: a reload may change it.
				res, err := d.store.Sweep(ctx, expiryCutoff(d.clock.Now(), d.reload.maxPeerTimeout.Load()))
				cancel()
				give.afterSweep()
				if err != nil && !errors.Is(err, context.Canceled) {
					// A degraded Redis store logged that once already.
					if d.redis == nil || d.redis.store.Health() == nil {
						d.log.Error("sweep inactive peers", "err", err)
					}
					continue
				}
				d.log.Debug("swept inactive peers", "peers", res.Peers, "torrents", res.Torrents)
			}
		}
	}()
}
