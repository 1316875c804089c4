// Command starling is the Starling BitTorrent tracker: one binary whose
// subcommands run the tracker, check its configuration, talk to trackers and
// load-test them. The work is done in internal/; this file only wires flags.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		// An exitError has already been reported by its command.
		if _, ok := err.(exitError); !ok {
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	if e, ok := err.(exitError); ok {
		return e.code
	}
	return 1
}

func newRootCmd() *cobra.Command {
	serve := newServeCmd()
	root := &cobra.Command{
		Use:   "starling",
		Short: "Starling BitTorrent tracker (UDP, HTTP, REST API), a drop-in for Torrust Tracker",
		// With no subcommand, starling runs the tracker.
		RunE:          serve.RunE,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Flags().AddFlagSet(serve.Flags())
	root.AddCommand(
		serve,
		newConfigCmd(),
		newVersionCmd(),
		newBenchCmd(),
	)
	addOptionalCommands(root)
	return root
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generators for UDP and HTTP trackers",
	}
	addBenchCommands(cmd)
	return cmd
}
