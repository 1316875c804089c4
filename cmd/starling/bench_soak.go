package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/loadgen/soak"
)

// newBenchSoakCmd is "starling bench soak": a long mixed load with the
// tracker's own figures sampled, ending with a verdict.
func newBenchSoakCmd() *cobra.Command {
	cfg := soak.Config{
		UDP: "udp://127.0.0.1:6969", HTTP: "http://127.0.0.1:7070", API: "http://127.0.0.1:1212",
		Duration: time.Hour, Rate: 2000, Workers: 64, Torrents: 100000, Swarm: 20,
		Report: time.Minute, Timeout: 5 * time.Second, Seed: 1,
	}
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run a long mixed, churning load and judge whether the tracker's resources stay flat",
		Long: `Send --rate requests per second for --duration, mixed as real traffic is: UDP announces (60 %) and
scrapes (10 %), HTTP announces (15 %) and scrapes (5 %), API reads (5 %) and whitelist writes (2 %), and bursts of
announces for random hashes never seen again (3 %). Peers of --torrents torrents (up to --swarm each) join,
announce, complete, stop, or vanish without a stop. Every --report it prints the requests answered, errors,
p50/p99 latency and the tracker's RSS, heap, goroutines, open files, peers and torrents, read from its API's
/metrics (--api, --token: an admin token, also from STARLING_SOAK_TOKEN).

It ends with a verdict: OK when nothing failed and, over the second half of the run, RSS grew less than 5 % and
goroutines and open files did not grow. Exit codes: 0 OK, 1 the verdict failed, 2 usage errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Token == "" {
				cfg.Token = os.Getenv("STARLING_SOAK_TOKEN")
			}
			switch {
			case cfg.Duration <= 0 || cfg.Rate < 1 || cfg.Workers < 1 || cfg.Torrents < 1 || cfg.Swarm < 1 || cfg.Report <= 0 || cfg.Timeout <= 0:
				return usageError(cmd, "--duration, --rate, --workers, --torrents, --swarm, --report and --timeout must be positive")
			case cfg.Report*2 > cfg.Duration:
				return usageError(cmd, "--report %v leaves fewer than two samples in --duration %v", cfg.Report, cfg.Duration)
			case cfg.Token == "":
				return usageError(cmd, "--token (or STARLING_SOAK_TOKEN) is needed: the figures come from the API")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Out = cmd.OutOrStdout()
			fmt.Fprintf(cmd.ErrOrStderr(), "soak: %s, %s, API %s; %d requests/s for %v; %d torrents of up to %d peers\n",
				cfg.UDP, cfg.HTTP, cfg.API, cfg.Rate, cfg.Duration, cfg.Torrents, cfg.Swarm)
			res, err := soak.Run(ctx, cfg)
			if err != nil {
				return err
			}
			if !res.OK {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.UDP, "udp", cfg.UDP, "UDP tracker URL")
	f.StringVar(&cfg.HTTP, "http", cfg.HTTP, "HTTP tracker URL")
	f.StringVar(&cfg.API, "api", cfg.API, "REST API base URL")
	f.StringVar(&cfg.Token, "token", "", "admin token of the API (default: $STARLING_SOAK_TOKEN)")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to run")
	f.IntVar(&cfg.Rate, "rate", cfg.Rate, "requests per second, all kinds together")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "requests in flight at most")
	f.IntVar(&cfg.Torrents, "torrents", cfg.Torrents, "torrents of the peer population")
	f.IntVar(&cfg.Swarm, "swarm", cfg.Swarm, "peers per torrent at most")
	f.DurationVar(&cfg.Report, "report", cfg.Report, "how often to print a line and sample the tracker")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	return cmd
}
