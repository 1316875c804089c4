package healthcheck_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/httptracker"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/udptracker"
)

// TestRealListeners probes a real UDP tracker, HTTP tracker and API, wired
// as the daemon wires them, then stops the UDP tracker: the report must
// turn to Error for that listener only.
func TestRealListeners(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	store := memswarm.New(swarm.Options{})
	lists := access.New(nil)
	counters := metrics.NewCounters(1, true)
	trk := tracker.New(tracker.DefaultConfig(), store, lists, clock.NewManual(time.Now().Unix()), nil)
	ctx := context.Background()

	udp, err := udptracker.New(udptracker.Config{BindAddress: "127.0.0.1:0", Sockets: 1}, trk, counters, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := udp.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	udpDone := make(chan error, 1)
	go func() { udpDone <- udp.Serve() }()
	stopUDP := func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := udp.Shutdown(sctx); err != nil {
			t.Errorf("udp shutdown: %v", err)
		}
		if err := <-udpDone; !errors.Is(err, udptracker.ErrServerClosed) {
			t.Errorf("udp Serve: %v", err)
		}
	}
	udpStopped := false
	t.Cleanup(func() {
		if !udpStopped {
			stopUDP()
		}
	})

	httpSrv, err := httptracker.New(httptracker.Config{BindAddress: "127.0.0.1:0"}, trk, counters, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
		<-httpDone
	})
	httpURL := "http://" + ln.Addr().String()

	apiURL, _ := runningAPI(t)

	udpAddr := udp.Addr().String()
	targets := []healthcheck.Target{
		healthcheck.UDP(udpAddr, func(ctx context.Context) error { return udptracker.Probe(ctx, udpAddr) }),
		healthcheck.HTTP(ln.Addr().String(), httpURL, func(ctx context.Context) error { return httptracker.Probe(ctx, httpURL) }),
		healthcheck.API(apiURL[len("http://"):], apiURL, func(ctx context.Context) error { return adminapi.Probe(ctx, apiURL) }),
	}
	hc := healthcheck.New(healthcheck.Config{ProbeTimeout: 500 * time.Millisecond, Logger: quiet}, targets)

	rep := hc.Check(ctx)
	if rep.Status != "Ok" || rep.Message != "" || len(rep.Details) != 3 {
		t.Fatalf("all running: %+v", rep)
	}
	for i, want := range []string{"Connected", "200 OK", "200 OK"} {
		if r := rep.Details[i].Result; r.Ok == nil || *r.Ok != want || r.Err != nil {
			t.Errorf("%s: %+v", rep.Details[i].Info, r)
		}
	}

	stopUDP()
	udpStopped = true
	rep = hc.Check(ctx)
	if rep.Status != "Error" || rep.Message != "health check failed" {
		t.Fatalf("UDP stopped: %+v", rep)
	}
	if rep.Details[0].Result.Err == nil {
		t.Errorf("stopped UDP tracker passed: %+v", rep.Details[0])
	}
	if rep.Details[1].Result.Ok == nil || rep.Details[2].Result.Ok == nil {
		t.Errorf("running listeners failed: %+v", rep.Details[1:])
	}
}
