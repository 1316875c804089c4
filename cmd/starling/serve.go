package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/daemon"
	"github.com/starling-tracker/starling/internal/handoff"
	"github.com/starling-tracker/starling/internal/sdnotify"
)

func newServeCmd() *cobra.Command {
	var pidFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the tracker (the default command)",
		Long: `Run the tracker. The configuration comes from STARLING_CONFIG_TOML, the file named by
STARLING_CONFIG_TOML_PATH, or ./tracker.toml, with STARLING_CONFIG_OVERRIDE_<SECTION>__<KEY> variables
on top (the TORRUST_TRACKER_CONFIG_* names work too). With none of them, the first run writes
./tracker.toml with a fresh admin token. SIGINT or SIGTERM stops it gracefully (the swarms are written to core.swarm.snapshot_path
and read back at the next start); SIGHUP reads the configuration again and applies what can change
while serving (settings that need a restart are logged by name and keep their running value).
SIGUSR2 upgrades without downtime: the binary at this process's path is started with the same
arguments, takes over the listening sockets and the swarms, and this process stops once it serves
(see "starling upgrade").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// After the first signal, a second one kills at once.
			go func() { <-ctx.Done(); stop() }()
			return serve(ctx, cmd.ErrOrStderr(), pidFile)
		},
	}
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "write the process id to this file once serving (an upgrade's new process rewrites it)")
	return cmd
}

func serve(ctx context.Context, stderr io.Writer, pidFile string) error {
	// Started by an upgrade: the old process hands over its sockets.
	child, err := handoff.Inherited()
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		if child != nil {
			child.Fail(err)
		}
		return err
	}
	cfg, src, err := config.Load(config.LoadOptions{Env: os.Environ(), Dir: wd, ReadOnly: child != nil})
	if err != nil {
		if child != nil {
			child.Fail(err)
		}
		var ps config.Problems
		if errors.As(err, &ps) {
			return fmt.Errorf("the configuration has problems (fix them, or run `starling config check`):\n%w", err)
		}
		return err
	}
	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Logging, level)
	logSource(log, src)
	log.Info("configuration", "config", cfg)

	opts := []daemon.Option{daemon.OnReady(func() {
		if pidFile != "" {
			if err := writePIDFile(pidFile); err != nil {
				log.Warn("cannot write the PID file", "path", pidFile, "err", err)
			}
		}
		// Under systemd (Type=notify), the main process may change with an
		// upgrade: NotifyAccess=all lets the new one say so.
		if err := sdnotify.Notify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid())); err != nil {
			log.Warn("cannot notify systemd", "err", err)
		}
	}), daemon.OnUpgradeFailed(func(err error) {
		if pidFile != "" {
			if err := writeUpgradeFailure(pidFile, err); err != nil {
				log.Warn("cannot write the upgrade's outcome beside the PID file", "path", upgradeFailedPath(pidFile), "err", err)
			}
		}
	})}
	if child != nil {
		log.Info("upgrade: taking over from the old process", "old_pid", child.Manifest.OldPID)
		opts = append(opts, daemon.WithHandoff(child))
	}
	d, err := daemon.New(ctx, cfg, log, opts...)
	if err != nil {
		log.Error("cannot start", "err", err)
		if child != nil {
			child.Fail(err)
		}
		return exitError{1}
	}
	if pidFile != "" {
		defer removePIDFile(pidFile)
	}
	if src.FirstRun {
		const ih = "9c38422213e30bff212b30c360d26f9a02136422"
		if len(cfg.UDPTrackers) > 0 {
			log.Info(fmt.Sprintf("try it: starling client announce udp://%s/announce %s", loopbackFor(cfg.UDPTrackers[0].BindAddress.String()), ih))
		}
		if len(cfg.HTTPTrackers) > 0 {
			log.Info(fmt.Sprintf("try it: starling client announce http://%s/announce %s", loopbackFor(cfg.HTTPTrackers[0].BindAddress.String()), ih))
		}
	}
	d.EnableReload(func() (*config.Config, error) {
		// The same sources as at start, never a first run's fresh token.
		cfg, src, err := config.Load(config.LoadOptions{Env: os.Environ(), Dir: wd, ReadOnly: true})
		if err != nil {
			return nil, err
		}
		if src.FirstRun {
			return nil, errors.New("there is no configuration file or variable to read again: write ./tracker.toml or set STARLING_CONFIG_TOML_PATH")
		}
		for _, w := range src.Warnings {
			log.Warn(w)
		}
		return cfg, nil
	}, level)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				if sig == syscall.SIGUSR2 {
					log.Info("SIGUSR2: upgrading")
					go func() { _ = d.Upgrade(ctx) }() // logged by Upgrade
					continue
				}
				log.Info("SIGHUP: reloading the configuration")
				_ = sdnotify.Notify("RELOADING=1")
				_, _ = d.Reload(ctx) // logged by Reload
				_ = sdnotify.Notify("READY=1")
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return exitError{1}
	}
	return nil
}

// newLogger logs at l's threshold, through level so that a reload can
// change it ("off" is a level above every line's).
func newLogger(w io.Writer, l config.Logging, level *slog.LevelVar) *slog.Logger {
	level.Set(daemon.LogLevel(l))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func logSource(log *slog.Logger, src *config.Source) {
	switch {
	case src.FirstRun && src.Written != "":
		log.Info("first run: no configuration found, wrote the defaults with a new admin token (the token is in that file)",
			"file", src.Written, "created_dirs", src.CreatedDirs)
	case src.FirstRun:
		log.Info("first run: no configuration found, using the defaults")
	default:
		log.Info("configuration loaded", "from", src.Kind.String(), "file", src.Path, "env", src.EnvVar, "overrides", src.Overrides)
	}
	for _, w := range src.Warnings {
		log.Warn(w)
	}
}

// loopbackFor turns a wildcard bind address into one a local client can use.
func loopbackFor(addr string) string {
	if host, port, ok := cutHostPort(addr); ok && (host == "0.0.0.0" || host == "[::]" || host == "::") {
		return "127.0.0.1:" + port
	}
	return addr
}

func cutHostPort(addr string) (host, port string, ok bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], true
		}
	}
	return "", "", false
}
