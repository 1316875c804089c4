// Package sdnotify tells systemd about the service's state (sd_notify(3)):
// READY=1 once serving, MAINPID= when an upgrade hands the service to a new
// process, STOPPING=1 and RELOADING=1. It writes one datagram to the socket
// named by NOTIFY_SOCKET; without it (not under systemd, or Type= not
// notify) it does nothing. Written by hand: the protocol is one datagram,
// not worth a dependency.
package sdnotify

import (
	"net"
	"os"
	"strings"
)

// Notify sends state (lines of KEY=VALUE) to systemd, if it listens.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
