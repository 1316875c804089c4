package main

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/database"
)

// newDBCmd is "starling db": database tools.
func newDBCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Database tools",
	}
	cmd.AddCommand(newDBImportCmd())
	return cmd
}

func newDBImportCmd() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "import --from <url-or-path> --to <url-or-path>",
		Short: "Copy keys, whitelist and completed counts from one database to another",
		Long: `Copy the keys, whitelist and torrents (completed counts) tables from one
database to another, between any two of SQLite, MySQL/MariaDB and PostgreSQL.
A database is a SQLite file path, mysql://user:password@host:3306/database or
postgresql://user:password@host:5432/database. The source is only read (a
SQLite file must exist and is opened read-only; a server database needs only
SELECT), so it may be a database Torrust is still using. The destination's
tables are created when missing; rows it already holds are replaced by the
source's, other rows are kept. The number of rows copied is printed per table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("db import: both --from and --to are required")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return database.Import(ctx, from, to, cmd.OutOrStdout(), log)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "source database: SQLite file path, mysql://… or postgresql://… URL")
	cmd.Flags().StringVar(&to, "to", "", "destination database: SQLite file path, mysql://… or postgresql://… URL")
	return cmd
}
