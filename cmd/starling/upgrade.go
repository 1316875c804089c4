package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func newUpgradeCmd() *cobra.Command {
	var pidFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade a running tracker to the binary at its path, without downtime",
		Long: `Send SIGUSR2 to the tracker whose process id is in --pid-file (written by "starling serve
--pid-file") and wait until it has handed over to a new process of the binary at its path: the new
process takes the listening sockets, the swarms and the UDP connection-id key, and the old one
stops once the new one serves. Prints the new process id.

Exit codes: 0 upgraded; 1 the upgrade failed (printed with its reason as soon as the old process
gives up on it) or did not finish within --timeout (the old process keeps serving; its log says
why); 2 usage errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pidFile == "" {
				return usageError(cmd, "--pid-file is required")
			}
			old, err := readPID(pidFile)
			if err != nil {
				return err
			}
			failed := upgradeFailedPath(pidFile)
			if err := os.Remove(failed); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the last upgrade's outcome: %w", err)
			}
			if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
				return fmt.Errorf("signal process %d (from %s): %w", old, pidFile, err)
			}
			deadline := time.Now().Add(timeout)
			for time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				if why, err := os.ReadFile(failed); err == nil {
					os.Remove(failed)
					fmt.Fprintf(cmd.ErrOrStderr(), "upgrade failed, process %d serves on: %s", old, why)
					return exitError{1}
				}
				if exited(old) {
					if pid, err := readPID(pidFile); err == nil && pid != old {
						fmt.Fprintln(cmd.OutOrStdout(), pid)
						return nil
					}
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "process %d has not handed over after %v: see its log\n", old, timeout)
			return exitError{1}
		},
	}
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "the running tracker's PID file (starling serve --pid-file)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the new process to take over")
	return cmd
}

// upgradeFailedPath is where a process started with --pid-file says why
// its upgrade failed, for `starling upgrade`.
func upgradeFailedPath(pidFile string) string { return pidFile + ".upgrade-failed" }

// writeUpgradeFailure writes why an upgrade failed beside the PID file,
// atomically.
func writeUpgradeFailure(pidFile string, why error) error {
	path := upgradeFailedPath(pidFile)
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(why.Error()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// exited reports whether process pid is gone: no such process, or a
// zombie its parent has not reaped yet (Linux /proc).
func exited(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read the PID file: %w", err)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("the PID file %s holds %q, not a process id", path, bytes.TrimSpace(b))
	}
	return pid, nil
}

// writePIDFile writes this process's id atomically (an upgrade's new
// process replaces the old one's).
func writePIDFile(path string) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removePIDFile removes the PID file if it still names this process (after
// an upgrade it names the new one).
func removePIDFile(path string) {
	if pid, err := readPID(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}
