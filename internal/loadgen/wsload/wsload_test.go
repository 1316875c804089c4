package wsload

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
	"github.com/starling-tracker/starling/internal/wstracker"
)

// A short run against an in-process WebSocket tracker: offers go out,
// answers come back, nothing fails.
func TestRun(t *testing.T) {
	store := memswarm.New(swarm.Options{})
	tr := tracker.New(tracker.DefaultConfig(), store, access.New(nil), clock.NewManual(time.Now().Unix()), nil)
	srv, err := wstracker.New(wstracker.Config{}, tr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	<-srv.Ready()
	defer srv.Shutdown(context.Background())

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"load", Config{Connections: 20, Sources: 2, Torrents: 2, Offers: 3, OfferBytes: 100, Duration: 500 * time.Millisecond}},
		{"idle", Config{Connections: 20, Torrents: 2, Idle: true, Duration: 200 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.URL = srv.URL()
			res, err := Run(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Connections != 20 || res.Errors != 0 || res.Announces == 0 {
				t.Fatalf("%s", res)
			}
			if !tc.cfg.Idle && (res.Offers == 0 || res.Answers == 0) {
				t.Fatalf("no offers or answers relayed: %s", res)
			}
			if tc.cfg.Idle && res.Announces != 20 {
				t.Fatalf("idle connections announced %d times, want once each", res.Announces)
			}
		})
	}
}
