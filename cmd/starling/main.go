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
	// serve takes no arguments: a word is a mistyped command.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		return unknownCommand(cmd, args[0])
	}
	root.AddCommand(
		serve,
		newConfigCmd(),
		newVersionCmd(),
		newBenchCmd(),
	)
	addOptionalCommands(root)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every group of commands below root (config,
// db, bench, …) fail on a word that names none of its subcommands, as root
// does: cobra would print the group's help and exit 0, so a mistyped
// "starling config chek" in a deployment script would pass without checking
// anything.
func refuseUnknownSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		refuseUnknownSubcommands(c)
		if !c.HasSubCommands() || c.Runnable() {
			continue
		}
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return unknownCommand(cmd, args[0])
		}
	}
}

// unknownCommand reports a word that names no subcommand of cmd, with the
// closest one: a usage error, exit status 2, as the tools' help texts give
// for bad arguments.
func unknownCommand(cmd *cobra.Command, word string) error {
	msg := fmt.Sprintf("unknown command %q for %q", word, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // what cobra uses for its own message
	}
	if s := cmd.SuggestionsFor(word); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s; see %s --help\n", msg, cmd.CommandPath())
	return exitError{2}
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generators for UDP, HTTP and WebSocket trackers",
	}
	addBenchCommands(cmd)
	return cmd
}
