package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/checker"
	"github.com/starling-tracker/starling/internal/trackerclient"
)

// Environment variables of `starling check`, Starling's names first; the
// Torrust names let existing tracker_checker setups run unchanged.
var (
	checkerConfigPathEnv = []string{"STARLING_CHECKER_CONFIG_PATH", "TORRUST_CHECKER_CONFIG_PATH"}
	checkerConfigEnv     = []string{"STARLING_CHECKER_CONFIG", "TORRUST_CHECKER_CONFIG"}
)

func newCheckCmd() *cobra.Command {
	var (
		configPath        string
		udp, http, health []string
		timeout           time.Duration
		insecure          bool
		family            string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that trackers and health checks answer (for cron and CI)",
		Long: `Check UDP trackers (connect, announce, scrape), HTTP trackers (announce, scrape) and
health-check URLs (200 with status Ok), and print one JSON status per target.
The check announces torrent ` + checker.CheckInfoHash + ` and removes its peer again
with a stopped announce.

Targets come from a JSON file in Torrust's tracker_checker format,
  {"udp_trackers":["127.0.0.1:6969"],"http_trackers":["http://127.0.0.1:7070"],
   "health_checks":["http://127.0.0.1:1313/health_check"]}
named by --config or STARLING_CHECKER_CONFIG_PATH (TORRUST_CHECKER_CONFIG_PATH), or given
inline in STARLING_CHECKER_CONFIG (TORRUST_CHECKER_CONFIG), plus any --udp, --http and
--health flags. For a private tracker put the key in the URL: http://host:7070/announce/KEY,
udp://host:6969/announce/KEY (sent as BEP 41 URL data).

Exit status: 0 every check passed; 1 at least one failed; 2 bad configuration or flags.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(cmd, "unexpected argument %q: targets go in --udp, --http, --health or --config", args[0])
			}
			cfg, err := loadCheckerConfig(configPath)
			if err != nil {
				return usageError(cmd, "%v", err)
			}
			cfg.UDPTrackers = append(cfg.UDPTrackers, udp...)
			cfg.HTTPTrackers = append(cfg.HTTPTrackers, http...)
			cfg.HealthChecks = append(cfg.HealthChecks, health...)
			if cfg.Empty() {
				return usageError(cmd, "nothing to check: give --config FILE, STARLING_CHECKER_CONFIG, or --udp/--http/--health URLs")
			}
			fam, err := trackerclient.ParseFamily(family)
			if err != nil {
				return usageError(cmd, "--ip-family: %v", err)
			}
			if timeout <= 0 {
				return usageError(cmd, "--timeout %s: give a positive duration such as 5s", timeout)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			results := checker.Checker{Timeout: timeout, Insecure: insecure, Family: fam}.Run(ctx, cfg)
			writeJSON(cmd.OutOrStdout(), results)
			failed := 0
			for _, r := range results {
				if !r.OK() {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "FAIL %s %s: %s\n", r.Kind, r.URL, r.Status.Message)
				}
			}
			if failed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d checks failed\n", failed, len(results))
				return exitError{1}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "JSON file listing the targets (Torrust tracker_checker format)")
	fs.StringVar(&configPath, "config-path", "", "alias of --config, as Torrust's tracker_checker names it")
	fs.StringArrayVar(&udp, "udp", nil, "UDP tracker to check, udp://host:port or host:port (repeatable)")
	fs.StringArrayVar(&http, "http", nil, "HTTP(S) tracker to check, http://host:port[/announce[/KEY]] (repeatable)")
	fs.StringArrayVar(&health, "health", nil, "health-check URL to GET, e.g. http://127.0.0.1:1313/health_check (repeatable)")
	fs.DurationVar(&timeout, "timeout", trackerclient.DefaultTimeout, "time each request may take")
	fs.BoolVar(&insecure, "insecure", false, "HTTPS: accept any certificate (self-signed test setups)")
	fs.StringVar(&family, "ip-family", "", "resolve and connect over IPv4 (4) or IPv6 (6) only")
	quietUsageErrors(cmd)
	return cmd
}

// loadCheckerConfig reads the target list from the flag, else the file or
// inline JSON named by the environment; none of them is an empty list.
func loadCheckerConfig(flagPath string) (checker.Config, error) {
	path, from := flagPath, "--config"
	if path == "" {
		for _, name := range checkerConfigPathEnv {
			if v := os.Getenv(name); v != "" {
				path, from = v, name
				break
			}
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return checker.Config{}, fmt.Errorf("read the checker configuration (%s): %w", from, err)
		}
		cfg, err := checker.ParseConfig(data)
		if err != nil {
			return cfg, fmt.Errorf("%s (%s): %w", path, from, err)
		}
		return cfg, nil
	}
	for _, name := range checkerConfigEnv {
		if v := os.Getenv(name); v != "" {
			cfg, err := checker.ParseConfig([]byte(v))
			if err != nil {
				return cfg, fmt.Errorf("%s: %w", name, err)
			}
			return cfg, nil
		}
	}
	return checker.Config{}, nil
}

// newHealthcheckCmd is the container's HEALTHCHECK: a tiny HTTP GET that needs
// no curl in the image (Torrust's http_health_check).
func newHealthcheckCmd() *cobra.Command {
	var timeout time.Duration
	var insecure bool
	cmd := &cobra.Command{
		Use:   "healthcheck [URL]",
		Short: "GET a health-check URL; exit 0 when it answers 200 with status Ok",
		Long: `GET a health-check URL (default http://127.0.0.1:1313/health_check) and exit 0 when it
answers 200 with {"status":"Ok"}, 1 otherwise, 2 for bad arguments. Used as the container
HEALTHCHECK.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(cmd, "give one URL")
			}
			url := "http://127.0.0.1:1313/health_check"
			if len(args) == 1 {
				url = args[0]
			}
			r := checker.Checker{Timeout: timeout, Insecure: insecure}.CheckHealth(cmd.Context(), url)
			if !r.OK() {
				fmt.Fprintf(cmd.ErrOrStderr(), "unhealthy: %s\n", r.Status.Message)
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "healthy: %s %s\n", url, r.Status.Message)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", trackerclient.DefaultTimeout, "time the request may take")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "HTTPS: accept any certificate")
	quietUsageErrors(cmd)
	return cmd
}
