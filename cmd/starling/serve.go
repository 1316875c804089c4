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
)

func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the tracker (the default command)",
		Long: `Run the tracker. The configuration comes from STARLING_CONFIG_TOML, the file named by
STARLING_CONFIG_TOML_PATH, or ./tracker.toml, with STARLING_CONFIG_OVERRIDE_<SECTION>__<KEY> variables
on top (the TORRUST_TRACKER_CONFIG_* names work too). With none of them, the first run writes
./tracker.toml with a fresh admin token. SIGINT or SIGTERM stops it gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// After the first signal, a second one kills at once.
			go func() { <-ctx.Done(); stop() }()
			return serve(ctx, cmd.ErrOrStderr())
		},
	}
}

func serve(ctx context.Context, stderr io.Writer) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg, src, err := config.Load(config.LoadOptions{Env: os.Environ(), Dir: wd})
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			return fmt.Errorf("the configuration has problems (fix them, or run `starling config check`):\n%w", err)
		}
		return err
	}
	log := newLogger(stderr, cfg.Logging)
	logSource(log, src)
	log.Info("configuration", "config", cfg)

	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitError{1}
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
	if err := d.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return exitError{1}
	}
	return nil
}

func newLogger(w io.Writer, l config.Logging) *slog.Logger {
	if l.Off() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l.Level()}))
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
