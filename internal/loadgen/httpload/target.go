package httpload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bencode"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/httptracker"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// Engines a benchmark target can run.
const (
	EngineFastHTTP = "fasthttp"
	EngineNetHTTP  = "nethttp"
)

// TargetConfig describes a benchmark target: the HTTP tracker (an in-memory
// public tracker) on one engine, or a trivial handler on that engine that
// answers every request with a fixed announce body, the ceiling the tracker
// is measured against.
type TargetConfig struct {
	Addr    string
	Engine  string
	Trivial bool
}

// trivialServed counts the trivial handlers' answers (one target per process).
var trivialServed atomic.Uint64

// trivialBody is a compact announce answer with seven IPv4 peers, about
// what the tracker answers for the generator's default population.
var trivialBody = func() []byte {
	b := []byte{bencode.DictStart}
	b = bencode.AppendString(b, "complete")
	b = bencode.AppendInt(b, 3)
	b = bencode.AppendString(b, "incomplete")
	b = bencode.AppendInt(b, 7)
	b = bencode.AppendString(b, "interval")
	b = bencode.AppendInt(b, 120)
	b = bencode.AppendString(b, "min interval")
	b = bencode.AppendInt(b, 120)
	b = bencode.AppendString(b, "peers")
	b = bencode.AppendStringHeader(b, 7*6)
	for i := 0; i < 7; i++ {
		b = append(b, 127, 0, 0, 1, 0x1a, byte(i))
	}
	b = bencode.AppendString(b, "peers6")
	b = bencode.AppendString(b, "")
	return append(b, bencode.End)
}()

// TargetStats are what a target served, for allocations per request.
type TargetStats struct {
	Requests uint64
	Mallocs  uint64 // heap allocations while serving, the whole process
}

// AllocsPerRequest is Mallocs/Requests.
func (s TargetStats) AllocsPerRequest() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Mallocs) / float64(s.Requests)
}

// Serve runs a target until ctx ends. ready, when not nil, receives the
// bound address.
func Serve(ctx context.Context, cfg TargetConfig, log *slog.Logger, ready func(net.Addr)) error {
	_, err := ServeStats(ctx, cfg, log, ready)
	return err
}

// ServeStats is Serve, also reporting what was served.
func ServeStats(ctx context.Context, cfg TargetConfig, log *slog.Logger, ready func(net.Addr)) (TargetStats, error) {
	var stats TargetStats
	err := serveTarget(ctx, cfg, log, ready, &stats)
	return stats, err
}

func serveTarget(ctx context.Context, cfg TargetConfig, log *slog.Logger, ready func(net.Addr), stats *TargetStats) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("bench target: listen on %s: %w", cfg.Addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	clk := clock.NewCoarse()
	defer clk.Stop()
	rules := tracker.New(tracker.DefaultConfig(), memswarm.New(swarm.Options{RemovePeerlessTorrents: true}), access.New(nil), clk, nil)
	counters := metrics.NewCounters(8, true)
	srv, err := httptracker.New(httptracker.Config{BindAddress: cfg.Addr}, rules, counters, log)
	if err != nil {
		ln.Close()
		return err
	}
	var serve func() error
	var shutdown func(context.Context) error
	switch {
	case cfg.Engine == EngineFastHTTP && !cfg.Trivial:
		serve, shutdown = func() error { return srv.Serve(ln) }, srv.Shutdown
	case cfg.Engine == EngineFastHTTP:
		// The same server settings as httptracker.New, around a fixed answer.
		fs := &fasthttp.Server{
			Handler: func(ctx *fasthttp.RequestCtx) {
				trivialServed.Add(1)
				ctx.SetContentType("application/octet-stream")
				ctx.SetBody(trivialBody)
			},
			ReadTimeout: httptracker.DefaultReadTimeout, WriteTimeout: httptracker.DefaultWriteTimeout,
			IdleTimeout: httptracker.DefaultIdleTimeout, ReadBufferSize: httptracker.DefaultMaxHeaderBytes,
			NoDefaultDate: true, NoDefaultContentType: true, Name: "starling",
		}
		serve, shutdown = func() error { return fs.Serve(ln) }, fs.ShutdownWithContext
	case cfg.Engine == EngineNetHTTP:
		var h http.Handler = srv.Handler()
		if cfg.Trivial {
			ct := []string{"application/octet-stream"}
			h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				trivialServed.Add(1)
				w.Header()["Content-Type"] = ct
				w.Write(trivialBody)
			})
		}
		hs := &http.Server{Handler: h, ReadTimeout: httptracker.DefaultReadTimeout, ReadHeaderTimeout: httptracker.DefaultReadTimeout,
			WriteTimeout: httptracker.DefaultWriteTimeout, IdleTimeout: httptracker.DefaultIdleTimeout,
			MaxHeaderBytes: httptracker.DefaultMaxHeaderBytes}
		serve, shutdown = func() error { return hs.Serve(ln) }, hs.Shutdown
	default:
		ln.Close()
		return fmt.Errorf("bench target: unknown engine %q (want %s or %s)", cfg.Engine, EngineFastHTTP, EngineNetHTTP)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	trivialServed.Store(0)
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	defer func() {
		runtime.ReadMemStats(&after)
		stats.Mallocs = after.Mallocs - before.Mallocs
		stats.Requests = trivialServed.Load()
		for _, c := range []metrics.Counter{metrics.TCP4Announces, metrics.TCP4Scrapes, metrics.TCP6Announces, metrics.TCP6Scrapes, metrics.HTTPErrors} {
			stats.Requests += counters.Value(c)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, httptracker.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
