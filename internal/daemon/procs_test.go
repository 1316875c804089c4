package daemon

import (
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

func TestRaiseProcs(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		name      string
		env       string
		have, udp int
		want      int
	}{
		{"one core, one socket: a P to spare", "", 1, 1, 2},
		{"a socket per core", "", 4, 4, 5},
		{"enough already", "", 8, 2, 8},
		{"more sockets than cores: one more P, no more", "", 2, 16, 3},
		{"no UDP tracker", "", 1, 0, 1},
		{"the operator's GOMAXPROCS stands", "1", 1, 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tt.env)
			runtime.GOMAXPROCS(tt.have)
			raiseProcs(tt.udp, log)
			if got := runtime.GOMAXPROCS(0); got != tt.want {
				t.Errorf("GOMAXPROCS %d, want %d", got, tt.want)
			}
		})
	}
}

type remoteFake struct{ swarm.Store }

func (remoteFake) Remote() bool { return true }

// Only a store that waits on another process is remote: the daemon keeps
// UDP sockets in the netpoller for it (see raiseProcs' caller).
func TestRemoteStore(t *testing.T) {
	mem := memswarm.New(swarm.Options{})
	if remoteStore(mem) {
		t.Error("the memory store reported remote")
	}
	if !remoteStore(remoteFake{mem}) {
		t.Error("a Remote store reported local")
	}
}
