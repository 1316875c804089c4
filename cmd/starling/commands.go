package main

import "github.com/spf13/cobra"

// addOptionalCommands registers the commands that live in their own files.
func addOptionalCommands(root *cobra.Command) {
	root.AddCommand(
		newClientCmd(),
		newCheckCmd(),
		newHealthcheckCmd(),
		newDBCmd(),
		newUpgradeCmd(),
	)
}

// addBenchCommands registers the load generators under "starling bench".
func addBenchCommands(bench *cobra.Command) {
	bench.AddCommand(
		newBenchUDPCmd(),
		newBenchUDPEchoCmd(),
		newBenchHTTPCmd(),
		newBenchWSCmd(),
		newBenchSoakCmd(),
	)
}
