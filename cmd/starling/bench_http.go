package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/loadgen/httpload"
)

// newBenchHTTPCmd is "starling bench http": the HTTP tracker load generator,
// with "target" to serve what it is measured against.
func newBenchHTTPCmd() *cobra.Command {
	cfg := httpload.Config{
		URL:         "http://127.0.0.1:7070",
		Duration:    10 * time.Second,
		Concurrency: 64,
		Torrents:    1000,
		Peers:       10000,
		Compact:     true,
		Timeout:     5 * time.Second,
	}
	cmd := &cobra.Command{
		Use:   "http",
		Short: "Load-test an HTTP(S) tracker with announces and scrapes",
		Long: `Send announces and scrapes to an HTTP(S) tracker from --concurrency connections, each with one
request in flight, for --duration. Requests go over keep-alive connections, or with --new-conn over a new
connection each. Announces come from --peers simulated peers (a quarter of them seeders) on --torrents
torrents; --scrape-ratio of the requests are scrapes. Progress goes to stderr every second; the summary
(requests per second, those answered with 200, errors, latency percentiles) to stdout. Failure reasons
count as errors. It exits 1 when no request was answered at all.
"starling bench http target" serves the tracker or a trivial fixed answer to measure against.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			switch {
			case cfg.Concurrency < 1 || cfg.Duration <= 0 || cfg.Torrents < 1 || cfg.Peers < 1 || cfg.Timeout <= 0:
				return fmt.Errorf("bench http: --concurrency, --duration, --torrents, --peers and --timeout must be positive")
			case cfg.NumWant < 0:
				return fmt.Errorf("bench http: --numwant %d: use 0 (not sent) or more", cfg.NumWant)
			case cfg.ScrapeRatio < 0 || cfg.ScrapeRatio > 1:
				return fmt.Errorf("bench http: --scrape-ratio %g: use a fraction between 0 and 1", cfg.ScrapeRatio)
			}
			cfg.Progress = cmd.ErrOrStderr()
			fmt.Fprintf(cmd.ErrOrStderr(), "load: %s, %d connections (new per request: %v), %v, %d torrents, %d peers, scrape ratio %g, compact %v\n",
				cfg.URL, cfg.Concurrency, cfg.NewConnPerRequest, cfg.Duration, cfg.Torrents, cfg.Peers, cfg.ScrapeRatio, cfg.Compact)
			res, err := httpload.Run(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.String())
			if res.Answered == 0 {
				return fmt.Errorf("bench http: no request to %s was answered: %s", cfg.URL, res.FirstErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", cfg.URL, "tracker base URL, http:// or https://")
	f.StringVar(&cfg.Key, "key", "", "private tracker peer key, sent in the path (/announce/KEY)")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to run")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "connections, each with one request in flight")
	f.Float64Var(&cfg.ScrapeRatio, "scrape-ratio", 0, "fraction of requests that are scrapes (0..1)")
	f.BoolVar(&cfg.NewConnPerRequest, "new-conn", false, "open a new connection for every request")
	f.IntVar(&cfg.Torrents, "torrents", cfg.Torrents, "number of torrents")
	f.IntVar(&cfg.Peers, "peers", cfg.Peers, "number of peers (at most 60000)")
	f.BoolVar(&cfg.Compact, "compact", cfg.Compact, "ask for compact answers")
	f.IntVar(&cfg.NumWant, "numwant", 0, "numwant of every announce (0: not sent)")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout")
	cmd.AddCommand(newBenchHTTPTargetCmd())
	return cmd
}

// newBenchHTTPTargetCmd is "starling bench http target": an in-memory public
// HTTP tracker, or a trivial handler with a fixed answer, on fasthttp or
// net/http, to load-test on a pinned core.
func newBenchHTTPTargetCmd() *cobra.Command {
	cfg := httpload.TargetConfig{Addr: "127.0.0.1:7070", Engine: httpload.EngineFastHTTP}
	cmd := &cobra.Command{
		Use:   "target",
		Short: "Serve an in-memory HTTP tracker (or a trivial fixed answer) to benchmark against",
		Long: `Serve a public, in-memory HTTP tracker on --engine (fasthttp, the one the tracker uses, or
nethttp, net/http around the same handler), or with --trivial a handler that answers every request with
a fixed announce body: the ceiling of the engine. Runs until interrupted, then prints the requests served
and the heap allocations per request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			stats, err := httpload.ServeStats(ctx, cfg, log, func(a net.Addr) {
				fmt.Fprintf(cmd.ErrOrStderr(), "target: %s trivial=%v listening on http://%s\n", cfg.Engine, cfg.Trivial, a)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "served %d requests, %.2f heap allocations per request\n", stats.Requests, stats.AllocsPerRequest())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address host:port")
	f.StringVar(&cfg.Engine, "engine", cfg.Engine, "fasthttp or nethttp")
	f.BoolVar(&cfg.Trivial, "trivial", false, "answer every request with a fixed announce body")
	return cmd
}
