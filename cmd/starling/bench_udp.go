package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/loadgen/udpload"
)

// newBenchUDPCmd is "starling bench udp": the UDP tracker load generator.
func newBenchUDPCmd() *cobra.Command {
	cfg := udpload.DefaultConfig()
	var profile, slowLog string
	addrs := []string{cfg.Addr}
	cmd := &cobra.Command{
		Use:   "udp",
		Short: "Load-test a UDP tracker (BEP 15) with simulated clients",
		Long: `Simulate many UDP tracker clients: each socket connects, then keeps --window announces and
scrapes in flight over --torrents torrents and --peers peers, picking torrents uniformly or with
Zipf-skewed popularity (--skew). After --warmup it measures for --duration and prints requests sent,
responses received (per kind), errors and responses per second. Progress goes to stderr every second.
With --requests N the measured window ends instead once N requests were sent in it and as many
answers (or timeouts) came back: exactly N requests without a warm-up; with one, up to one batch
per socket more, and the answers to requests sent before the window count in it.
Run it against "starling bench udp-echo" to measure the network stack's ceiling on the same machine.
Several --addr (repeated, or separated by commas) aim one run at several nodes of a cluster: the
sockets, and the peers each announces for, are spread round-robin over them, and the summary gives
the total and each node's share. The summary gives the round-trip latency of the requests sent and
answered in the measured window (p50, p90, p99, p99.9, max).

By default each socket sends and receives whole batches (sendmmsg, or UDP segmentation offload with
--gso, and recvmmsg). With --batch=false each socket is a plain client instead: one datagram per
write and per read system call, and one new request for each answer, so exactly --window requests
are in flight (--gso does not apply). The "conventional generator" of a fair comparison is
  --sockets 16 --source-ips 0 --window 16 --batch=false --gso=false
With --rate N the run is paced at N requests per second over all sockets: each socket sends one
datagram at a time, evenly spaced, and reads the answers as they come; --window then caps the
requests in flight per socket (a send that finds it full is skipped and counted), and the summary
gives the rate achieved. For latency at low load, e.g. --rate 1000 --sockets 4 --batch=false.

With --burst N (Linux, needs --server-pid) it measures the server's drain rate instead: it pauses
the server (SIGSTOP), queues N announces spread over --sockets sockets, resumes it (SIGCONT) and
sleeps while the server answers, then reads every answer and takes the drain time from the kernel's
receive timestamps of the first and last answer. It does this --bursts times and prints the median
rate of the valid bursts after the first (which inserts the peers). A burst with a missing, wrong or
dropped answer is reported as invalid. The receive buffers must hold a whole burst: the server asks
for net.core.rmem_max, so raise that first (see bench-udp-scaling.sh).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Addr = strings.Join(addrs, ",")
			if cmd.Flags().Changed("profile") {
				torrents, peers, skew := cfg.Torrents, cfg.Peers, cfg.Skew
				if err := cfg.Profile(profile); err != nil {
					return err
				}
				// Explicit flags win over the profile's values.
				if cmd.Flags().Changed("torrents") {
					cfg.Torrents = torrents
				}
				if cmd.Flags().Changed("peers") {
					cfg.Peers = peers
				}
				if cmd.Flags().Changed("skew") {
					cfg.Skew = skew
				}
			}
			if cfg.Requests > 0 && cfg.Burst > 0 {
				return fmt.Errorf("bench udp: --requests bounds a load run, --burst measures bursts: use one of them")
			}
			if cfg.Walk && !cmd.Flags().Changed("warmup") {
				cfg.Warmup = 0
			}
			if cfg.Walk && !cmd.Flags().Changed("duration") {
				cfg.Duration = time.Hour // the walk ends the run; this bounds a stuck one
			}
			if cfg.Requests > 0 && !cmd.Flags().Changed("duration") {
				cfg.Duration = time.Hour // the count ends the run; this bounds a stuck one
			}
			if slowLog != "" {
				f, err := os.Create(slowLog)
				if err != nil {
					return fmt.Errorf("bench udp: --slow-log: %w", err)
				}
				defer f.Close()
				w := bufio.NewWriter(f)
				defer w.Flush()
				cfg.SlowLog = w
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			mode := "batched"
			switch {
			case cfg.Rate > 0:
				mode = fmt.Sprintf("paced at %g/s, one datagram per send", cfg.Rate)
				if cfg.Poisson {
					mode = fmt.Sprintf("paced at %g/s as a Poisson process, one datagram per send", cfg.Rate)
				}
			case !cfg.Batch:
				mode = "one datagram per send and per receive"
			case cfg.GSO:
				mode = "batched, GSO"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "load: %s, %d torrents, %d peers, skew %g, numwant %d, scrape share %g, %d sockets over %d source IPs, window %d, %s\n",
				cfg.Addr, cfg.Torrents, cfg.Peers, cfg.Skew, cfg.NumWant, cfg.ScrapeShare, cfg.Sockets, cfg.SourceIPs, cfg.Window, mode)
			if cfg.Burst > 0 {
				return runBursts(ctx, cmd, cfg)
			}
			res, err := udpload.Run(ctx, cfg, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("bench udp: %w", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), res.String())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&addrs, "addr", addrs, "tracker address host:port; several (repeated or comma-separated) spread the sockets over them")
	f.StringVar(&profile, "profile", "uniform", "population preset: uniform (10,000 torrents, 200,000 peers) or skewed (1,000,000 torrents, 2,000,000 peers, skew 1.3)")
	f.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "time before measuring")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time (the longest, with --requests)")
	f.Uint64Var(&cfg.Requests, "requests", 0, "end the measured window after this many requests and their answers (default: --duration alone; with --requests and no --duration, up to an hour)")
	f.IntVar(&cfg.Torrents, "torrents", cfg.Torrents, "number of torrents")
	f.IntVar(&cfg.Peers, "peers", cfg.Peers, "number of peers")
	f.Int32Var(&cfg.NumWant, "numwant", cfg.NumWant, "num_want of every announce (-1: tracker default)")
	f.Float64Var(&cfg.ScrapeShare, "scrape-share", cfg.ScrapeShare, "fraction of requests that are scrapes (0..1)")
	f.IntVar(&cfg.ScrapeHashes, "scrape-hashes", cfg.ScrapeHashes, "info hashes per scrape (1..74)")
	f.Float64Var(&cfg.SeederShare, "seeder-share", cfg.SeederShare, "fraction of peers that are seeders (0..1)")
	f.Float64Var(&cfg.Skew, "skew", cfg.Skew, "Zipf exponent of torrent popularity, above 1; 0 for uniform")
	f.IntVar(&cfg.Sockets, "sockets", cfg.Sockets, "client sockets, one goroutine each")
	f.IntVar(&cfg.SourceIPs, "source-ips", cfg.SourceIPs, "spread IPv4 loopback sockets over 127.0.0.1..127.0.0.N (0: 127.0.0.1 alone)")
	f.IntVar(&cfg.Window, "window", cfg.Window, "requests in flight per socket")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up on in-flight requests after this long without an answer (0: 200ms)")
	f.IntVar(&cfg.ServerPID, "server-pid", 0, "report this process's CPU time per response (Linux /proc)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	f.BoolVar(&cfg.GSO, "gso", cfg.GSO, "send each batch of requests with UDP segmentation offload where the kernel has it (--gso=false: one datagram each)")
	f.BoolVar(&cfg.Batch, "batch", cfg.Batch, "send and receive whole batches (--batch=false: one datagram per write and per read, one new request per answer, no GSO)")
	f.BoolVar(&cfg.RecvBatch, "recv-batch", cfg.RecvBatch, "with --batch=false, read the answers that have arrived with one recvmmsg (up to 64) instead of one read each; requests still go one per write")
	f.Float64Var(&cfg.Rate, "rate", 0, "pace the run at this many requests per second over all sockets, one datagram per send (0: as fast as the window allows)")
	f.BoolVar(&cfg.Poisson, "poisson", false, "with --rate, send at the times of a Poisson process of that rate (exponential gaps) instead of evenly spaced")
	f.BoolVar(&cfg.Walk, "walk", false, "announce each peer once, in order, and end (loads a tracker with the whole population; --warmup 0)")
	f.StringVar(&slowLog, "slow-log", "", "write \"SENT LATENCY\" (unix µs, µs) to this file for each timed answer slower than --slow-over, to line two side-by-side runs' slow answers up in time")
	f.DurationVar(&cfg.SlowOver, "slow-over", 300*time.Microsecond, "the round trip above which --slow-log lists an answer")
	f.IntVar(&cfg.Burst, "burst", 0, "measure the drain rate of bursts of this many announces (needs --server-pid)")
	f.IntVar(&cfg.Bursts, "bursts", 4, "bursts to run with --burst")
	return cmd
}

// runBursts is "bench udp --burst": one line per burst, then the median.
func runBursts(ctx context.Context, cmd *cobra.Command, cfg udpload.Config) error {
	out := cmd.OutOrStdout()
	res, err := udpload.RunBurst(ctx, cfg, out)
	if err != nil {
		return fmt.Errorf("bench udp: %w", err)
	}
	median, valid, counted := udpload.BurstSummary(res)
	fmt.Fprintf(out, "drain rate: %.0f/s (median of %d valid of %d bursts after the first)\n", median, valid, counted)
	if valid == 0 {
		return fmt.Errorf("bench udp: no valid burst")
	}
	return nil
}

// newBenchUDPEchoCmd is "starling bench udp-echo": the ceiling to compare
// a tracker's throughput with.
func newBenchUDPEchoCmd() *cobra.Command {
	var addr string
	var sockets, reply int
	cmd := &cobra.Command{
		Use:   "udp-echo",
		Short: "Answer every UDP datagram with a fixed reply, 20 bytes by default (the network ceiling for bench udp)",
		Long: `Serve a minimal UDP "tracker" that answers every datagram with a fixed reply (16 bytes to a
connect, 20 bytes, an empty announce answer, to anything else), with the same batched sockets as the
UDP tracker. Like a tracker, it does not answer datagrams shorter than 16 bytes: they carry no
transaction id. "starling bench udp" against it measures what the network stack alone allows.
--reply-size makes the answers to anything but a connect longer, e.g. 200 bytes, the size of the
tracker's answers with 30 IPv4 peers, to see what the answers' size alone costs.
SIGINT or SIGTERM stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return udpload.Echo(ctx, addr, sockets, reply, func(a netip.AddrPort) {
				fmt.Fprintf(cmd.ErrOrStderr(), "UDP echo listening on udp://%s\n", a)
			})
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:6970", "bind address host:port (port 0 picks one)")
	cmd.Flags().IntVar(&sockets, "sockets", 1, "SO_REUSEPORT sockets, one worker each")
	cmd.Flags().IntVar(&reply, "reply-size", udpload.EchoReply, "bytes of the answer to anything but a connect (20 to 1472)")
	return cmd
}
