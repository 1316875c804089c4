//go:build linux

package udpload_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/loadgen/udpload"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/udptracker"
)

// A burst stops its server with SIGSTOP, so the server must be another
// process: the test binary runs itself as one when this variable is set.
const helperEnv = "UDPLOAD_BURST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperServer(mode))
	}
	os.Exit(m.Run())
}

// helperServer serves echo or a tracker on loopback, prints its address,
// and exits on SIGTERM or after 30 s.
func helperServer(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch mode {
	case "echo":
		err := udpload.Echo(ctx, "127.0.0.1:0", 2, udpload.EchoReply, func(a netip.AddrPort) { fmt.Println(a) })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "tracker":
		clk := clock.NewManual(1_700_000_000)
		tr := tracker.New(tracker.DefaultConfig(), memswarm.New(swarm.Options{}), access.New(nil), clk, nil)
		srv, err := udptracker.New(udptracker.Config{BindAddress: "127.0.0.1:0", Sockets: 2, Clock: clk},
			tr, metrics.NewCounters(2, true), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			err = srv.Listen(context.Background())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go srv.Serve()
		fmt.Println(srv.Addr())
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}
	return 0
}

func startHelper(t *testing.T, mode string) (pid int, addr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper %s: %v", mode, err)
	}
	return cmd.Process.Pid, strings.TrimSpace(line)
}

func TestBurst(t *testing.T) {
	for _, mode := range []string{"echo", "tracker"} {
		t.Run(mode, func(t *testing.T) {
			pid, addr := startHelper(t, mode)
			cfg := udpload.DefaultConfig()
			cfg.Addr, cfg.ServerPID = addr, pid
			cfg.Torrents, cfg.Peers = 100, 1000
			cfg.Sockets, cfg.SourceIPs = 16, 4
			cfg.Burst, cfg.Bursts = 3001, 2
			var progress strings.Builder
			res, err := udpload.RunBurst(context.Background(), cfg, &progress)
			if err != nil {
				t.Fatalf("%v\n%s", err, progress.String())
			}
			if len(res) != 2 || strings.Count(progress.String(), "\n") != 2 {
				t.Fatalf("want 2 bursts:\n%s", progress.String())
			}
			for _, r := range res {
				if !r.Valid() || r.Announces != 3001 || r.Rate <= 0 || r.Span <= 0 || r.FromResume < r.Span {
					t.Fatalf("burst: %s", r)
				}
				if len(r.Shares) != 2 || r.Shares[0] <= 0 || r.Shares[1] <= 0 {
					t.Fatalf("two server sockets should share the burst: %s", r)
				}
			}
			if m, valid, counted := udpload.BurstSummary(res); m != res[1].Rate || valid != 1 || counted != 1 {
				t.Fatalf("summary %v %d %d of %v", m, valid, counted, res)
			}
			// The server runs again: a steady run gets answers.
			run := shortRun(addr)
			if r, err := udpload.Run(context.Background(), run, io.Discard); err != nil || r.Announces == 0 {
				t.Fatalf("after the bursts: %v\n%s", err, r)
			}
		})
	}
}

func TestBurstChecks(t *testing.T) {
	cfg := udpload.DefaultConfig()
	cfg.Burst = 100
	if _, err := udpload.RunBurst(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "server-pid") {
		t.Fatalf("burst without a server pid: %v", err)
	}
	cfg.ServerPID, cfg.Burst = os.Getpid(), 2
	if _, err := udpload.RunBurst(context.Background(), cfg, io.Discard); err == nil {
		t.Fatal("burst smaller than the sockets accepted")
	}
}
