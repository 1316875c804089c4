package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/loadgen/wsload"
)

// newBenchWSCmd is "starling bench ws": the WebSocket (WebTorrent) tracker
// load generator.
func newBenchWSCmd() *cobra.Command {
	cfg := wsload.Config{
		URL:         "ws://127.0.0.1:8000",
		Connections: 1000,
		Sources:     8,
		Torrents:    100,
		Offers:      5,
		OfferBytes:  400,
		Duration:    10 * time.Second,
		Timeout:     10 * time.Second,
	}
	cmd := &cobra.Command{
		Use:   "ws",
		Short: "Load-test a WebSocket (WebTorrent) tracker with announces, offers and answers",
		Long: `Open --connections WebSocket connections from --sources loopback addresses (127.0.0.1 up), then for
--duration each announces with --offers offers of --offer-bytes (one announce in flight per connection) and
answers every offer it is handed. Progress goes to stderr every second; the summary to stdout: responses
per second (announce answers, offers and answers the tracker sent, as aquatic's load tester counts them),
errors, and the announce round trip's p50 and p99. With --idle the connections announce once and stay
quiet; with --pid the tracker's resident memory is read before and after, per connection.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cfg.Connections < 1 || cfg.Torrents < 1 || cfg.Duration <= 0 || cfg.Offers < 0 || cfg.Sources < 1 || cfg.Sources > 254 {
				return fmt.Errorf("bench ws: --connections, --torrents and --duration must be positive, --offers at least 0, --sources 1 to 254")
			}
			cfg.Progress = cmd.ErrOrStderr()
			fmt.Fprintf(cmd.ErrOrStderr(), "load: %s, %d connections from %d addresses, %d torrents, %d offers of %d bytes, %v, idle %v\n",
				cfg.URL, cfg.Connections, cfg.Sources, cfg.Torrents, cfg.Offers, cfg.OfferBytes, cfg.Duration, cfg.Idle)
			res, err := wsload.Run(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.String())
			if res.Announces == 0 {
				return fmt.Errorf("bench ws: no announce to %s was answered: %s", cfg.URL, res.FirstErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", cfg.URL, "tracker URL, ws://")
	f.IntVar(&cfg.Connections, "connections", cfg.Connections, "connections to open")
	f.IntVar(&cfg.Sources, "sources", cfg.Sources, "loopback source addresses to spread them over (127.0.0.1..)")
	f.IntVar(&cfg.Torrents, "torrents", cfg.Torrents, "number of torrents")
	f.IntVar(&cfg.Offers, "offers", cfg.Offers, "offers per announce")
	f.IntVar(&cfg.OfferBytes, "offer-bytes", cfg.OfferBytes, "size of each offer's SDP")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to run (or, with --idle, to hold the connections)")
	f.BoolVar(&cfg.Idle, "idle", false, "announce once per connection and hold it, without load")
	f.IntVar(&cfg.TargetPID, "pid", 0, "the tracker's process id, to read its resident memory (Linux)")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on a dial and an announce round trip")
	return cmd
}
