package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/database"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print or check the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the default configuration (every key with its default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return config.Default().Encode(cmd.OutOrStdout())
		},
	}, &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a configuration file, or the configuration the tracker would load; print every problem",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				data, err := os.ReadFile(args[0])
				if err != nil {
					return fmt.Errorf("read %s: %w", args[0], err)
				}
				cfg, err := config.Parse(data)
				var ps config.Problems
				if !errors.As(err, &ps) {
					ps = fileProblems(cfg)
				}
				if len(ps) > 0 {
					for _, p := range ps {
						fmt.Fprintf(out, "%s: %s\n", args[0], p)
					}
					return exitError{1}
				}
				fmt.Fprintf(out, "%s: ok\n", args[0])
				return nil
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			cfg, src, err := config.Load(config.LoadOptions{Env: os.Environ(), Dir: wd, ReadOnly: true})
			if err != nil {
				var ps config.Problems
				if errors.As(err, &ps) {
					for _, p := range ps {
						fmt.Fprintln(out, p)
					}
					return exitError{1}
				}
				return err
			}
			if ps := fileProblems(cfg); len(ps) > 0 {
				for _, p := range ps {
					fmt.Fprintln(out, p)
				}
				return exitError{1}
			}
			where := src.Kind.String()
			if src.Path != "" {
				where = src.Path
			}
			fmt.Fprintf(out, "%s: ok\n", where)
			return nil
		},
	})
	return cmd
}

// fileProblems is what config.Parse cannot see in a valid configuration:
// TLS files that cannot be read, and a database URL that Open would
// refuse (its options are the database package's to know).
func fileProblems(cfg *config.Config) config.Problems {
	ps := cfg.FileProblems()
	if err := database.CheckPath(cfg.Core.Database.Driver, cfg.Core.Database.Path); err != nil {
		ps = append(ps, &config.Problem{Key: "core.database.path", Msg: err.Error()})
	}
	return ps
}
