package daemon

import (
	"log/slog"
	"os"
	"runtime"

	"github.com/starling-tracker/starling/internal/swarm"
)

// remoteStore reports whether the swarm store waits on another process.
func remoteStore(s swarm.Store) bool {
	r, ok := s.(swarm.Remote)
	return ok && r.Remote()
}

// raiseProcs gives the process a P more than its UDP sockets, up to one
// more than it has cores, unless the operator set GOMAXPROCS. A detached
// socket's worker (udptracker.Config.Detach) waits for datagrams blocked
// in the kernel, holding its P, and Go's runtime takes a P back from a
// blocked goroutine, handing it to another thread at every sysmon tick,
// when no P is idle; so a process detaches at most GOMAXPROCS-1 sockets.
// With the spare P the rest of the work (HTTP, the API, sweeps) goes on
// beside the waiting workers. On one core with one socket that means
// GOMAXPROCS 2: the kernel, not Go's scheduler, then shares the core
// between the waiting worker and the rest, as it does for a C tracker's
// threads. More sockets than cores stay in Go's netpoller rather than
// have more Ps than cores+1 contend for the cores under load.
func raiseProcs(udpSockets int, log *slog.Logger) {
	if udpSockets == 0 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	have := runtime.GOMAXPROCS(0)
	if want := min(udpSockets, have) + 1; have < want {
		runtime.GOMAXPROCS(want)
		log.Info("GOMAXPROCS raised by one: a UDP socket's worker waits for datagrams in the kernel, holding a P",
			"from", have, "to", want, "udp_sockets", udpSockets)
	}
}
