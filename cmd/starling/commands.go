package main

import "github.com/spf13/cobra"

// addOptionalCommands registers the commands that live in their own files.
func addOptionalCommands(root *cobra.Command) {
}

// addBenchCommands registers the load generators under "starling bench".
func addBenchCommands(bench *cobra.Command) {
}
