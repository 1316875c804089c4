package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/redisswarm"
)

// TestRedisStoreStartsDegraded: a node whose Redis is down starts, its
// health target and metric say degraded, and it stops cleanly.
func TestRedisStoreStartsDegraded(t *testing.T) {
	sw := config.Swarm{Store: config.StoreRedis, RedisURL: "redis://:secret@127.0.0.1:1/0", RedisKeyPrefix: "t:"}
	counts := []swarm.CompletedCount{{Completed: 3}}
	r, err := newRedisStore(t.Context(), sw, swarm.Options{}, counts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	target := r.healthTarget()
	if err := target.Probe(t.Context()); err == nil {
		t.Fatal("the health probe passes with Redis down")
	}
	if target.Degraded == "" || strings.Contains(target.Binding, "secret") {
		t.Fatalf("target %+v: want a degraded message and no password", target)
	}
	reg := metrics.NewRegistry(nil, nil, nil, nil)
	reg.RegisterSwarmStore(r.stats)
	mfs, err := reg.Gather(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var degraded float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "starling_swarm_store_degraded" {
			degraded = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if degraded != 1 {
		t.Fatalf("starling_swarm_store_degraded = %v, want 1", degraded)
	}
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while Redis is down")
	}
}

// TestDaemonOnRedis builds a daemon with store = "redis" on the test Redis
// and announces through its tracker.
func TestDaemonOnRedis(t *testing.T) {
	u := os.Getenv("STARLING_TEST_REDIS_URL")
	if u == "" {
		t.Skip("STARLING_TEST_REDIS_URL is not set")
	}
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Core.Database.Path = filepath.Join(dir, "db.sqlite3")
	cfg.Core.Swarm = config.Swarm{Store: config.StoreRedis, RedisURL: u, RedisKeyPrefix: "daemontest:" + filepath.Base(dir) + ":",
		SnapshotPath: filepath.Join(dir, "swarms.snapshot")}
	d, err := New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.closeStorage(context.Background())
	s, ok := d.store.(*redisswarm.Store)
	if !ok {
		t.Fatalf("store is %T, want the Redis store", d.store)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store is not healthy: %v", s.Health())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d.snap != nil {
		t.Fatal("snapshots are on with the Redis store")
	}
	if _, err := d.store.Totals(t.Context()); err != nil {
		t.Fatal(err)
	}
}
