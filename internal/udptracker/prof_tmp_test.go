package udptracker

import (
	"context"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/loadgen/udpload"
)

func TestProfTmp(t *testing.T) {
	if os.Getenv("PROF_TMP") == "" {
		t.Skip()
	}
	e := startEnv(t, envOpts{})
	cfg := udpload.DefaultConfig()
	cfg.Addr = e.target(false).String()
	cfg.Warmup, cfg.Duration = time.Second, 4*time.Second
	res, err := udpload.Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.String())
}

func TestProfTmpEcho(t *testing.T) {
	if os.Getenv("PROF_TMP") == "" {
		t.Skip()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	go udpload.Echo(ctx, "127.0.0.1:0", 1, func(a netip.AddrPort) { ready <- a.String() })
	cfg := udpload.DefaultConfig()
	cfg.Addr = <-ready
	cfg.Warmup, cfg.Duration = time.Second, 4*time.Second
	res, err := udpload.Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.String())
}
